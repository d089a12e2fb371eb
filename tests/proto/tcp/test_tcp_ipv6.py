"""TCP over IPv6 on the virtual clock: two stacks of the in-memory LAN with
addresses from 2001:db8::/64. Handshake with the MSS from the path MTU less
60, one non-zero flow label per connection (RFC 6437), bulk transfers
byte-exact (with loss and reordering too), RST for a closed port, ICMPv6
errors ending a connect as Linux's tcp_v6_err, Packet Too Big lowering the MSS."""

from __future__ import annotations

import errno
import time
from typing import Any

import pytest
from femtolan import Lan, make_lan
from tcp_harness import Transfer, bulk, digest, random_bytes

from femtotcp.proto.tcp.connection import TcpConnection
from femtotcp.stack.routes import Route
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, ethernet, icmp6, ip_bytes, ipv6, tcp

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
ANY6 = bytes(16)
ROUTER = ip_bytes("2001:db8::fe")
ROUTER_MAC = b"\x02\0\0\0\0\xfe"


def g6(i: int) -> bytes:
    return ip_bytes(f"2001:db8::{i + 1}")


def addresses(lan: Lan) -> None:
    for i, stack in enumerate(lan.stacks):
        assert stack.ipv6 is not None
        stack.ipv6.add_address(stack.interfaces[0], g6(i), 64)
    lan.run(3.0)     # DAD
    for i, stack in enumerate(lan.stacks):
        assert g6(i) in stack.local_addresses


def lan6(n: int = 2, **kw: Any) -> Lan:
    lan = make_lan(n, modules=MODULES, **kw)
    addresses(lan)
    return lan


def tcp_of(stack: Stack) -> Any:
    assert stack.tcp is not None
    return stack.tcp


def pair(lan: Lan, client: int = 0, server: int = 1,
         port: int = 6001) -> tuple[TcpConnection, TcpConnection]:
    lst = tcp_of(lan.stacks[server]).listen(ANY6, port)
    conn = tcp_of(lan.stacks[client]).connect(g6(server), port)
    assert lan.run_until(lambda: bool(lst.accept_queue), 30), conn.info()
    srv = lst.accept()
    assert srv is not None
    lst.close()
    return conn, srv


def sent6(frames: list[bytes]) -> list[tuple[ipv6.Ipv6Header, tcp.TcpHeader, bytes]]:
    """The TCP segments over IPv6 among captured frames."""
    out = []
    for frame in frames:
        try:
            eth, body = ethernet.parse(frame)
            if eth.ethertype != ethernet.ETH_IPV6:
                continue
            h, payload = ipv6.parse(body)
            if h.next_header != ipv6.PROTO_TCP:
                continue
            hdr, data = tcp.parse(payload, h.src, h.dst)
        except Malformed:
            continue
        out.append((h, hdr, bytes(payload)))
    return out


def inject(lan: Lan, dst: int, msg: bytes) -> None:
    """An ICMPv6 message from the router's address to stack ``dst``."""
    sniffer = lan.sniffer(f"router{len(lan.devices)}")
    packet = ipv6.build(ROUTER, g6(dst), ipv6.PROTO_ICMP6, msg)
    sniffer.inject(ethernet.build(lan.ifaces[dst].mac, ROUTER_MAC, ethernet.ETH_IPV6, packet))


def test_handshake_mss_and_one_flow_label_per_connection() -> None:
    lan = lan6()
    out_a = lan.capture(0)
    out_b = lan.capture(1)
    ca, cb = pair(lan)
    assert ca.state == "ESTABLISHED" and cb.state == "ESTABLISHED"
    assert cb.key == (g6(1), 6001, g6(0), ca.key[1])
    assert ca.mss_base == 1500 - 60 and cb.mss_base == 1500 - 60
    syn = next(s for s in sent6(out_a) if s[1].flags & tcp.SYN)
    assert tcp.parse_options(syn[1].options).mss == 1440
    ca2, _ = pair(lan, port=6002)
    assert ca.send(b"x" * 3000) == 3000 and ca2.send(b"y") == 1
    lan.run(1)
    labels_a: dict[int, set[int]] = {}
    for h, hdr, _ in sent6(out_a):
        labels_a.setdefault(hdr.src_port, set()).add(h.flow_label)
    labels_b = {h.flow_label for h, hdr, _ in sent6(out_b) if hdr.src_port == 6001}
    first, second = labels_a[ca.key[1]], labels_a[ca2.key[1]]
    assert len(first) == 1 and len(second) == 1 and len(labels_b) == 1
    assert 0 not in first | second | labels_b
    assert first != second     # two random 20-bit labels: equal once in a million


def test_one_megabyte_each_way_byte_exact() -> None:
    lan = lan6()
    ca, cb = pair(lan)
    up, down, t1, t2 = bulk(lan, ca, cb, 1_000_000, 300)
    assert bytes(t2.got) == up and bytes(t1.got) == down
    assert ca.sack_ok and ca.ts_ok
    a = lan.stacks[0]
    assert a.counters["ipv6.tx"] > 700 and a.counters["tcp.tso_sent"] == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_20mb_each_way_with_loss_duplication_reordering() -> None:
    """The IPv4 test's twin: 5% loss, 1% duplication, 2% reordering, 1 ms delay."""
    lan = make_lan(0)
    lan.add_stack(0, modules=MODULES)
    lan.add_stack(1, modules=MODULES,
                  faults=dict(loss=0.05, duplicate=0.01, reorder=0.02, delay=0.001), seed=3)
    lan.loop.run(duration=0)
    addresses(lan)
    ca, cb = pair(lan, client=1, server=0)
    started = time.monotonic()
    up, down, t1, t2 = bulk(lan, ca, cb, 20_000_000, 3000)
    wall = time.monotonic() - started
    assert digest(t2.got) == digest(up)
    assert digest(t1.got) == digest(down)
    a, b = lan.stacks
    assert a.counters["tcp.fast_retransmit"] > 100 and b.counters["tcp.fast_retransmit"] > 100
    assert ca.sack_ok and cb.sack_ok and ca.snd_wscale == 7
    print(f"IPv6 20 MB each way: {wall:.1f} s wall, {lan.loop.now():.1f} s virtual")


def test_connect_to_a_closed_port_is_reset() -> None:
    lan = lan6()
    a, b = lan.stacks
    conn = tcp_of(a).connect(g6(1), 4444)
    assert lan.run_until(lambda: conn.state == "CLOSED", 5)
    assert conn.error == errno.ECONNREFUSED
    assert b.counters["tcp.rst_sent"] == 1 and b.counters["tcp.no_socket"] == 1


@pytest.mark.parametrize(("type_", "code", "expected"), [
    (icmp6.DEST_UNREACHABLE, icmp6.PORT_UNREACHABLE, errno.ECONNREFUSED),
    (icmp6.DEST_UNREACHABLE, icmp6.ADMIN_PROHIBITED, errno.EACCES),
    (icmp6.DEST_UNREACHABLE, icmp6.NO_ROUTE, errno.ENETUNREACH),
    (icmp6.DEST_UNREACHABLE, icmp6.ADDRESS_UNREACHABLE, errno.EHOSTUNREACH),
    (icmp6.TIME_EXCEEDED, 0, errno.EHOSTUNREACH),
])
def test_icmp6_error_ends_a_connect_in_syn_sent(type_: int, code: int, expected: int) -> None:
    """Linux's tcp_v6_err: any error about the SYN ends the connect with
    icmpv6_err_convert's errno."""
    lan = lan6()
    a = lan.stacks[0]
    far = ip_bytes("2001:db8:9::1")
    assert a.ipv6 is not None
    a.ipv6.routes.add(Route(int.from_bytes(ip_bytes("2001:db8:9::"), "big"), 64, ROUTER,
                            a.interfaces[0], "static", 128))
    conn = tcp_of(a).connect(far, 80)
    assert conn.state == "SYN_SENT"
    syn = tcp.build(g6(0), far, conn.key[1], 80, conn.snd.iss, 0, tcp.SYN, 65535)
    quoted = ipv6.build(g6(0), far, ipv6.PROTO_TCP, syn)
    inject(lan, 0, icmp6.build_error(ROUTER, g6(0), type_, code, quoted, 0))
    lan.run(0.1)
    assert conn.state == "CLOSED" and conn.error == expected
    assert a.counters["tcp.icmp_errors"] == 1


def test_packet_too_big_lowers_the_mss_and_the_transfer_completes() -> None:
    lan = lan6()
    a, b = lan.stacks
    ca, cb = pair(lan)
    out = lan.capture(0)
    data = random_bytes(200_000, 5)
    t, sink = Transfer(ca, data), Transfer(cb, b"")
    t.event()           # segments handed to the device, none acknowledged yet
    big = [s for s in sent6(out) if len(s[2]) > 1000]
    assert big and ca.snd.snd_una < ca.snd.snd_max
    h, hdr, segment = big[-1]
    quoted = ipv6.build(h.src, h.dst, ipv6.PROTO_TCP, segment, flow_label=h.flow_label)
    # The router's complaint, handed to the stack at once (before any ACK).
    msg = icmp6.build_packet_too_big(ROUTER, g6(0), 1280, quoted)
    a.receive(a.interfaces[0], ethernet.build(lan.ifaces[0].mac, ROUTER_MAC, ethernet.ETH_IPV6,
                                              ipv6.build(ROUTER, g6(0), ipv6.PROTO_ICMP6, msg)))
    a.end_batch(lan.loop.now())
    assert ca.mss_base == 1280 - 60
    assert a.counters["tcp.pmtu_reduced"] == 1
    assert a.ipv6 is not None and a.ipv6.pmtu[g6(1)][0] == 1280
    sent_before = len(out)
    assert lan.run_until(lambda: sink.eof, 30)
    assert bytes(sink.got) == data
    later = sent6(out[sent_before:])
    assert later and all(40 + len(s[2]) <= 1280 for s in later)


def test_a_dual_stack_listener_accepts_ipv4_unless_v6only() -> None:
    lan = lan6()
    a, b = lan.stacks
    v4_b = ip_bytes("192.0.2.2")
    lst = tcp_of(b).listen(ANY6, 7000)
    conn = tcp_of(a).connect(v4_b, 7000)
    assert lan.run_until(lambda: bool(lst.accept_queue), 5)
    srv = lst.accept()
    assert srv is not None and srv.key == (v4_b, 7000, ip_bytes("192.0.2.1"), conn.key[1])
    assert srv.mss_base == 1500 - 40       # an IPv4 connection on the wire
    assert srv.send(b"mapped") == 6
    lan.run(0.5)
    assert conn.recv(100) == b"mapped"
    only6 = tcp_of(b).listen(ANY6, 7001, v6only=True)
    refused = tcp_of(a).connect(v4_b, 7001)
    assert lan.run_until(lambda: refused.state == "CLOSED", 5)
    assert refused.error == errno.ECONNREFUSED and not only6.accept_queue
    # Bind conflicts as Linux's: a dual :: holds the IPv4 port, a v6only one does not.
    t = tcp_of(b)
    for addr in (bytes(4), v4_b):
        with pytest.raises(OSError) as exc:
            t.listen(addr, 7000)
        assert exc.value.errno == errno.EADDRINUSE
    t.listen(bytes(4), 7001)
    t.listen(v4_b, 7002)
    with pytest.raises(OSError) as exc:
        t.listen(ANY6, 7002)
    assert exc.value.errno == errno.EADDRINUSE
    t.listen(ANY6, 7002, v6only=True)


def test_packet_too_big_about_no_connection_leaves_the_path_mtu() -> None:
    """RFC 8201 5.2 / RFC 5927 4.1, as Linux's tcp_v6_err: a Packet Too Big
    quoting a segment of no connection (or one outside the window) changes
    nothing; a live connection to the same peer keeps its full-size segments
    (before, the path MTU dropped under it while its MSS stayed, and every
    full segment was refused on output)."""
    lan = lan6()
    a, b = lan.stacks
    ca, cb = pair(lan)
    out = lan.capture(0)
    src, dst = g6(0), g6(1)
    forged = [ipv6.build(src, dst, ipv6.PROTO_TCP,
                         tcp.build(src, dst, 45000, 7, 1, 1, tcp.ACK, 1000, bytes(1300))),
              # the connection's ports, a sequence number far from the window
              ipv6.build(src, dst, ipv6.PROTO_TCP,
                         tcp.build(src, dst, ca.key[1], ca.key[3],
                                   ca.snd.snd_una + 2**30, 1, tcp.ACK, 1000, bytes(1300)))]
    for quoted in forged:
        msg = icmp6.build_packet_too_big(ROUTER, src, 1280, quoted)
        a.receive(a.interfaces[0], ethernet.build(lan.ifaces[0].mac, ROUTER_MAC,
                                                  ethernet.ETH_IPV6,
                                                  ipv6.build(ROUTER, src, ipv6.PROTO_ICMP6, msg)))
    assert a.counters["icmp6.too_big_not_ours"] == 2
    assert a.ipv6 is not None and dst not in a.ipv6.pmtu
    data = random_bytes(50_000, 6)
    t, sink = Transfer(ca, data), Transfer(cb, b"")
    t.event()
    assert lan.run_until(lambda: len(sink.got) == len(data), 30)
    assert max(40 + len(s[2]) for s in sent6(out)) == 1500
    assert a.counters["ipv6.tx_needs_fragmentation"] == 0


def test_a_path_mtu_lowered_by_another_packet_is_followed() -> None:
    """RFC 8201 4 (as Linux's tcp_current_mss): a Packet Too Big about an echo
    to the peer lowers the path MTU under a live connection; the connection's
    MSS follows it and the transfer completes in 1280-byte packets (before,
    every full segment was refused on output, EMSGSIZE, until the end)."""
    lan = lan6()
    a, b = lan.stacks
    ca, cb = pair(lan)
    src, dst = g6(0), g6(1)
    quoted = ipv6.build(src, dst, ipv6.PROTO_ICMP6,
                        icmp6.build_echo(src, dst, icmp6.ECHO_REPLY, 7, 1, bytes(1400)))
    msg = icmp6.build_packet_too_big(ROUTER, src, 1280, quoted)
    a.receive(a.interfaces[0], ethernet.build(lan.ifaces[0].mac, ROUTER_MAC, ethernet.ETH_IPV6,
                                              ipv6.build(ROUTER, src, ipv6.PROTO_ICMP6, msg)))
    assert a.ipv6 is not None and a.ipv6.pmtu[dst][0] == 1280
    assert ca.mss_base > 1280 - 60          # nobody told the connection
    out = lan.capture(0)
    data = random_bytes(100_000, 7)
    t, sink = Transfer(ca, data), Transfer(cb, b"")
    t.event()
    assert lan.run_until(lambda: len(sink.got) == len(data), 30)
    assert bytes(sink.got) == data
    assert ca.mss_base == 1280 - 60 and a.counters["tcp.pmtu_reduced"] == 1
    assert all(40 + len(s[2]) <= 1280 for s in sent6(out))
    assert not ca.soft_error
