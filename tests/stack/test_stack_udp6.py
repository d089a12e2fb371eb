"""UDP over IPv6 on the virtual clock: two stacks of the in-memory LAN with
addresses from 2001:db8::/64; the mandatory checksum, endpoints bound to an
address and to ``::``, fragments, and ICMPv6 errors reaching connected
endpoints as Linux's errno values."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from femtolan import Lan, make_lan

from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, icmp6, ip_bytes, ipv6, udp

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
ANY6 = bytes(16)
ROUTER_MAC = b"\x02\0\0\0\0\xfe"


def g6(i: int) -> bytes:
    """The global address of host ``i`` (0-based)."""
    return ip_bytes(f"2001:db8::{i + 1}")


def lan6(n: int = 2, modules: list[str] | None = None, **kw: Any) -> Lan:
    lan = make_lan(n, modules=modules or MODULES, **kw)
    for i, stack in enumerate(lan.stacks):
        assert stack.ipv6 is not None
        stack.ipv6.add_address(stack.interfaces[0], g6(i), 64)
    lan.run(3.0)     # DAD of every address
    for i, stack in enumerate(lan.stacks):
        assert g6(i) in stack.local_addresses
    return lan


def udp_of(stack: Stack) -> Any:
    assert stack.udp is not None
    return stack.udp


def frame6(src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    return ethernet.build(b"\x02\0\0\0\0\x01", ROUTER_MAC, ethernet.ETH_IPV6,
                          ipv6.build(src, dst, nh, payload))


def test_datagrams_both_ways_bound_to_an_address_and_to_the_wildcard() -> None:
    lan = lan6()
    a, b = lan.stacks
    server = udp_of(b).open(ANY6, 7000)
    client = udp_of(a).open(g6(0), 0)
    assert client.sendto(b"hello over six", g6(1), 7000) == 0
    assert lan.run_until(lambda: server.readable, 5)
    data, (src, sport), dst = server.recv_full()
    assert (data, src, sport, dst) == (b"hello over six", g6(0), client.local[1], g6(1))
    assert server.sendto(b"answer", src, sport) == 0     # source picked for ::
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv() == (b"answer", (g6(1), 7000))
    # A connected wildcard endpoint names the source its route picks.
    server.connect(g6(0), client.local[1])
    assert server.sockname == (g6(1), 7000)
    # The families do not mix.
    assert client.sendto(b"x", ip_bytes("192.0.2.2"), 7000) == errno.EAFNOSUPPORT
    assert b.counters["udp.rx"] == 1 and a.counters["udp.rx"] == 1


def test_modules_loaded_in_either_order_carry_udp_over_ipv6() -> None:
    lan = lan6(modules=["ipv6", "icmp6", "arp", "ipv4", "udp"])
    a, b = lan.stacks
    server = udp_of(b).open(g6(1), 53)
    assert udp_of(a).open(ANY6, 0).sendto(b"q", g6(1), 53) == 0
    assert lan.run_until(lambda: server.readable, 5)


def test_bind_rules_per_family() -> None:
    lan = lan6()
    a = lan.stacks[0]
    u = udp_of(a)
    u.open(ANY6, 9000)
    with pytest.raises(OSError) as exc:
        u.open(g6(0), 9000)
    assert exc.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as exc:
        u.open(g6(1), 9001)              # not ours
    assert exc.value.errno == errno.EADDRNOTAVAIL
    u.open(g6(0), 9001)
    u.open(ip_bytes("192.0.2.1"), 9001)  # the other family's address: no conflict here


def test_fragmented_datagrams_reassembled_both_ways() -> None:
    lan = lan6()
    a, b = lan.stacks
    server = udp_of(b).open(ANY6, 7001)
    client = udp_of(a).open(ANY6, 0)
    big = bytes(range(256)) * 40    # 10240 bytes: 8 fragments at MTU 1500
    assert client.sendto(big, g6(1), 7001) == 0
    assert lan.run_until(lambda: server.readable, 5)
    data, (src, sport), _ = server.recv_full()
    assert data == big
    assert server.sendto(data[::-1], src, sport) == 0
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv() == (big[::-1], (g6(1), 7001))
    assert a.counters["ipv6.tx_fragments"] >= 7 and b.counters["ipv6.reassembled"] == 1
    assert a.counters["ipv6.reassembled"] == 1


def test_zero_and_bad_checksums_dropped_and_counted() -> None:
    lan = lan6()
    a = lan.stacks[0]
    ep = udp_of(a).open(ANY6, 7002)
    peer = ip_bytes("2001:db8::fe")
    sniffer = lan.sniffer("peer")
    good = udp.build(peer, g6(0), 4000, 7002, b"ok")
    zero = good[:6] + b"\0\0" + good[8:]
    bad = good[:6] + bytes([good[6] ^ 0xFF, good[7]]) + good[8:]
    for msg in (zero, bad, good):
        sniffer.inject(frame6(peer, g6(0), ipv6.PROTO_UDP, msg))
    lan.run(0.1)
    assert a.counters["udp.zero_checksum_ipv6"] == 1
    assert a.counters["udp.bad_checksum"] == 1
    assert ep.recv() == (b"ok", (peer, 4000)) and ep.recv() is None
    # From a device that vouches for checksums (a TAP's NEEDS_CSUM leaves them
    # partial): not verified, but a zero one is still refused.
    iface = a.interfaces[0]
    a.receive(iface, frame6(peer, g6(0), ipv6.PROTO_UDP, bad), csum_ok=True)
    a.receive(iface, frame6(peer, g6(0), ipv6.PROTO_UDP, zero), csum_ok=True)
    assert ep.recv() == (b"ok", (peer, 4000)) and ep.recv() is None
    assert a.counters["udp.zero_checksum_ipv6"] == 2


def test_port_unreachable_refuses_a_connected_endpoint_only() -> None:
    lan = lan6()
    a, b = lan.stacks
    connected = udp_of(a).open(ANY6, 0)
    connected.connect(g6(1), 9999)
    loose = udp_of(a).open(ANY6, 0)
    assert connected.send(b"anyone?") == 0
    assert loose.sendto(b"anyone?", g6(1), 9998) == 0
    assert lan.run_until(lambda: connected.readable, 5)
    lan.run(0.1)
    assert connected.take_error() == errno.ECONNREFUSED
    assert loose.take_error() is None
    assert b.counters["udp.no_port6"] == 2
    assert b.counters[f"icmp6.tx_error_{icmp6.DEST_UNREACHABLE}_{icmp6.PORT_UNREACHABLE}"] == 2
    assert a.counters["udp.icmp_error_unconnected"] == 1
    # No error for a datagram to a group.
    b_before = b.counters["icmp6.error_suppressed"]
    assert loose.sendto(b"all", ipv6.ALL_NODES, 9997, iface=a.interfaces[0]) == 0
    lan.run(0.1)
    assert b.counters["udp.no_port6"] == 3
    assert b.counters["icmp6.error_suppressed"] == b_before
    assert b.counters[f"icmp6.tx_error_{icmp6.DEST_UNREACHABLE}_{icmp6.PORT_UNREACHABLE}"] == 2


@pytest.mark.parametrize(("type_", "code", "rest", "expected"), [
    (icmp6.DEST_UNREACHABLE, icmp6.ADMIN_PROHIBITED, 0, errno.EACCES),
    (icmp6.DEST_UNREACHABLE, icmp6.REJECT_ROUTE, 0, errno.EACCES),
    (icmp6.PARAMETER_PROBLEM, 0, 6, errno.EPROTO),
    (icmp6.PACKET_TOO_BIG, 0, 1300, errno.EMSGSIZE),
    (icmp6.DEST_UNREACHABLE, icmp6.NO_ROUTE, 0, None),            # soft
    (icmp6.DEST_UNREACHABLE, icmp6.ADDRESS_UNREACHABLE, 0, None),  # soft
    (icmp6.TIME_EXCEEDED, 0, 0, None),                            # soft
])
def test_icmp6_errors_as_linux_udpv6_err(type_: int, code: int, rest: int,
                                         expected: int | None) -> None:
    lan = lan6()
    a = lan.stacks[0]
    far = ip_bytes("2001:db8::77")
    ep = udp_of(a).open(ANY6, 0)
    ep.connect(far, 53)
    quoted = ipv6.build(g6(0), far, ipv6.PROTO_UDP, udp.build(g6(0), far, ep.local[1], 53, b"q"))
    router = ip_bytes("2001:db8::fe")
    sniffer = lan.sniffer("peer")
    msg = icmp6.build_error(router, g6(0), type_, code, quoted, rest)
    sniffer.inject(frame6(router, g6(0), ipv6.PROTO_ICMP6, msg))
    lan.run(0.1)
    assert ep.take_error() == expected
    if type_ == icmp6.PACKET_TOO_BIG:
        assert a.ipv6 is not None and a.ipv6.pmtu[far][0] == 1300
    if expected is None:
        assert a.counters["udp.icmp_error_soft"] == 1


def test_a_dual_stack_wildcard_endpoint_takes_ipv4_unless_v6only() -> None:
    lan = lan6()
    a, b = lan.stacks
    v4_b = ip_bytes("192.0.2.2")
    dual = udp_of(b).open(ANY6, 7100)
    only6 = udp_of(b).open(ANY6, 7101, v6only=True)
    client = udp_of(a).open(bytes(4), 0)
    assert client.sendto(b"four", v4_b, 7100) == 0
    assert client.sendto(b"four", v4_b, 7101) == 0
    assert lan.run_until(lambda: dual.readable, 5)
    data, src, dst = dual.recv_full()
    assert (data, src, dst) == (b"four", (ip_bytes("192.0.2.1"), client.local[1]), v4_b)
    lan.run(0.1)
    assert not only6.readable and b.counters["udp.no_port"] == 1
    assert client.take_error() is None      # not connected: the refusal is not reported
    # The dual endpoint answers over IPv4; the IPv6-only one cannot.
    assert dual.sendto(b"back", *src) == 0
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv() == (b"back", (v4_b, 7100))
    assert only6.sendto(b"x", *src) == errno.EAFNOSUPPORT
    # Bind conflicts as Linux: :: (dual) holds the IPv4 port, :: v6only does not.
    u = udp_of(b)
    with pytest.raises(OSError) as exc:
        u.open(bytes(4), 7100)
    assert exc.value.errno == errno.EADDRINUSE
    u.open(bytes(4), 7101)
    u.open(v4_b, 7102)
    with pytest.raises(OSError) as exc:
        u.open(ANY6, 7102)
    assert exc.value.errno == errno.EADDRINUSE
    u.open(ANY6, 7103, v6only=True)
    u.open(v4_b, 7103)


def test_packet_too_big_about_no_endpoint_leaves_the_path_mtu() -> None:
    """A Packet Too Big quoting a datagram from a port no endpoint holds changes
    nothing (Linux's __udp6_lib_err finds no socket): a forged one cannot shrink
    the path MTU; about a bound (even unconnected) endpoint's datagram it does."""
    lan = lan6()
    a = lan.stacks[0]
    far = ip_bytes("2001:db8::77")
    router = ip_bytes("2001:db8::fe")
    sniffer = lan.sniffer("peer")
    ep = udp_of(a).open(ANY6, 0)

    def ptb(sport: int, mtu: int) -> None:
        quoted = ipv6.build(g6(0), far, ipv6.PROTO_UDP, udp.build(g6(0), far, sport, 53, b"q"))
        msg = icmp6.build_error(router, g6(0), icmp6.PACKET_TOO_BIG, 0, quoted, mtu)
        sniffer.inject(frame6(router, g6(0), ipv6.PROTO_ICMP6, msg))
        lan.run(0.1)

    free = 1 if ep.local[1] != 1 else 2
    ptb(free, 1300)
    assert a.ipv6 is not None and far not in a.ipv6.pmtu
    assert a.counters["udp.icmp_error_no_port"] == 1
    assert a.counters["icmp6.too_big_not_ours"] == 1
    ptb(ep.local[1], 1300)
    assert a.ipv6.pmtu[far][0] == 1300
