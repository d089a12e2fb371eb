"""UDP endpoints in the core (RFC 768, RFC 1122 4.1) and the UDP echo service (RFC 862)."""

from __future__ import annotations

import errno

import pytest
from femtolan import (
    BCAST_MAC,
    SNIFF_IP,
    SNIFF_MAC,
    SUBNET_BCAST,
    addr,
    ip_frame,
    mac,
    make_lan,
    resolve,
    udp_frame,
)

from femtotcp.services.echo import start_udp_echo
from femtotcp.stack.config import StackConfig
from femtotcp.wire import icmp4, ip_bytes, ip_str, ipv4, udp


def test_exchange_between_two_stacks() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    server = b.udp.open(port=6000)
    client = a.udp.open()
    assert client.local[0] == b"\0\0\0\0"
    assert client.sendto(b"question", addr(1), 6000) == 0
    assert lan.run_until(lambda: server.readable, 5)
    data, (src, sport) = server.recv()
    assert (data, src, sport) == (b"question", addr(0), client.local[1])
    assert server.sendto(b"answer", src, sport) == 0
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv() == (b"answer", (addr(1), 6000))
    assert client.recv() is None


def test_wildcard_endpoint_source_follows_routes_and_addresses() -> None:
    """An endpoint on the wildcard sends from the address the stack picks for
    each datagram: it reuses its last choice only while the route table and
    the address set are unchanged (a new route, a new address)."""
    lan = make_lan(2)
    a, b = lan.stacks
    server = b.udp.open(port=6000)
    client = a.udp.open()

    def source_of_next(data: bytes) -> bytes:
        assert client.sendto(data, addr(1), 6000) == 0
        assert lan.run_until(lambda: server.readable, 5)
        got, (src, sport) = server.recv()
        assert (got, sport) == (data, client.local[1])
        return src

    assert source_of_next(b"one") == addr(0)
    assert source_of_next(b"two") == addr(0)
    a.add_address(a.interfaces[0], "198.51.100.1/24")
    b.add_address(b.interfaces[0], "198.51.100.9/24")
    assert source_of_next(b"three") == addr(0)
    a.add_route(f"{ip_str(addr(1))}/32", gateway="198.51.100.9")     # b, by another address
    assert source_of_next(b"four") == ip_bytes("198.51.100.1")
    a.remove_route(f"{ip_str(addr(1))}/32")
    assert source_of_next(b"five") == addr(0)
    a.add_address(a.interfaces[0], "192.0.2.77/24")
    assert source_of_next(b"six") == addr(0)
    a.remove_address(a.interfaces[0], addr(0))       # the subnet's route stays
    assert source_of_next(b"seven") == ip_bytes("192.0.2.77")
    assert source_of_next(b"eight") == ip_bytes("192.0.2.77")
    assert b.counters["udp.rx"] == 8


def test_empty_datagram() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    server = b.udp.open(port=6000)
    a.udp.open().sendto(b"", addr(1), 6000)
    assert lan.run_until(lambda: server.readable, 5)
    assert server.recv()[0] == b""


def test_on_readable_callback() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    server = b.udp.open(port=6000)
    calls: list[int] = []
    server.on_readable = lambda: calls.append(len(server.queue))
    for i in range(3):
        a.udp.open().sendto(b"%d" % i, addr(1), 6000)
    lan.run(1)
    assert calls == [1, 2, 3]


def test_take_only_while_nothing_is_queued() -> None:
    """An endpoint's ``take`` gets a datagram at once while its queue is
    empty; one it refuses is queued (``on_readable``), and later ones go
    behind it until the queue is empty again: never out of order."""
    lan = make_lan(2)
    a, b = lan.stacks
    server = b.udp.open(port=6000)
    client = a.udp.open()
    taken: list[bytes] = []
    accept = [True]
    server.take = lambda data, src: accept[0] and not taken.append(data)
    readable: list[int] = []
    server.on_readable = lambda: readable.append(len(server.queue))

    def send(data: bytes) -> None:
        assert client.sendto(data, addr(1), 6000) == 0
        lan.run(1)

    send(b"one")
    assert taken == [b"one"] and not server.queue and readable == []
    accept[0] = False
    send(b"two")
    accept[0] = True
    send(b"three")                  # behind "two", not taken
    assert taken == [b"one"] and readable == [1, 2]
    assert server.recv() == (b"two", (addr(0), client.local[1]))
    assert server.recv() == (b"three", (addr(0), client.local[1]))
    send(b"four")
    assert taken == [b"one", b"four"] and server.recv() is None


def test_bind_conflicts() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    ep = s.udp.open(port=7000)
    with pytest.raises(OSError) as e:
        s.udp.open(port=7000)
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        s.udp.open(addr(0), 7000)           # specific address under a wildcard
    assert e.value.errno == errno.EADDRINUSE
    ep.close()
    s.udp.open(addr(0), 7000)
    with pytest.raises(OSError) as e:
        s.udp.open(port=7000)               # wildcard over a specific address
    assert e.value.errno == errno.EADDRINUSE


def test_bind_foreign_address_refused() -> None:
    lan = make_lan(1)
    with pytest.raises(OSError) as e:
        lan.stacks[0].udp.open(ip_bytes("198.51.100.1"), 1)
    assert e.value.errno == errno.EADDRNOTAVAIL


@pytest.mark.parametrize("port", [-1, 65536])
def test_bind_bad_port(port: int) -> None:
    lan = make_lan(1)
    with pytest.raises(OSError) as e:
        lan.stacks[0].udp.open(port=port)
    assert e.value.errno == errno.EINVAL


def test_ephemeral_ports_random_and_distinct() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    ports = [s.udp.open().local[1] for _ in range(200)]
    assert len(set(ports)) == 200
    cfg = s.config
    assert all(cfg.ephemeral_low <= p <= cfg.ephemeral_high for p in ports)
    assert ports != sorted(ports)


def test_ephemeral_exhaustion() -> None:
    cfg = StackConfig(ephemeral_low=40000, ephemeral_high=40004)
    lan = make_lan(1, config=cfg)
    s = lan.stacks[0]
    for _ in range(5):
        s.udp.open()
    with pytest.raises(OSError) as e:
        s.udp.open()
    assert e.value.errno == errno.EADDRINUSE


def test_sendto_errors() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    ep = s.udp.open()
    assert ep.sendto(b"x" * 65508, addr(1), 9) == errno.EMSGSIZE
    assert ep.sendto(b"x", addr(1), 0) == errno.EINVAL
    assert ep.send(b"x") == errno.EDESTADDRREQ
    ep.close()
    assert ep.sendto(b"x", addr(1), 9) == errno.EBADF


def test_closed_port_reopened_receives() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    ep = b.udp.open(port=6000)
    ep.close()
    ep.close()                               # twice is harmless
    ep2 = b.udp.open(port=6000)
    a.udp.open().sendto(b"x", addr(1), 6000)
    lan.run(1)
    assert ep2.recv()[0] == b"x" and ep.recv() is None


def test_receive_queue_bounded_in_datagrams() -> None:
    cfg = StackConfig(udp_queue_max=5)
    lan = make_lan(2, config=cfg)
    a, b = lan.stacks
    resolve(lan, 0, 1)
    server = b.udp.open(port=6000)
    client = a.udp.open()
    for i in range(20):
        client.sendto(b"%d" % i, addr(1), 6000)
    lan.run(1)
    assert len(server.queue) == 5
    assert b.counters["udp.rcvbuf_full"] == 15
    assert [server.recv()[0] for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]


def test_receive_queue_bounded_in_bytes() -> None:
    cfg = StackConfig(udp_rcvbuf=10000)
    lan = make_lan(2, config=cfg)
    a, b = lan.stacks
    resolve(lan, 0, 1)
    server = b.udp.open(port=6000)
    client = a.udp.open()
    for _ in range(10):
        client.sendto(b"x" * 3000, addr(1), 6000)
    lan.run(1)
    assert server.queued_bytes <= 10000 and len(server.queue) == 3
    assert b.counters["udp.rcvbuf_full"] == 7
    server.recv()
    assert server.queued_bytes == 6000


def test_connected_endpoint_filters_other_peers() -> None:
    lan = make_lan(3)
    a, b, c = lan.stacks
    ep = a.udp.open(port=6000)
    ep.connect(addr(1), 7000)
    b.udp.open(port=7000).sendto(b"from b", addr(0), 6000)
    c.udp.open(port=7000).sendto(b"from c", addr(0), 6000)
    lan.run(1)
    assert ep.recv() == (b"from b", (addr(1), 7000))
    assert ep.recv() is None
    assert a.counters["udp.not_from_peer"] == 1


def test_connected_endpoint_gets_econnrefused() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    ep.connect(addr(1), 6000)
    assert ep.send(b"knock") == 0
    assert lan.run_until(lambda: ep.readable, 5)
    assert ep.take_error() == errno.ECONNREFUSED
    assert ep.take_error() is None and ep.recv() is None


def test_unconnected_endpoint_ignores_icmp_errors() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    ep.sendto(b"knock", addr(1), 6000)
    lan.run(1)
    assert a.counters["icmp4.error_received"] == 1
    assert ep.take_error() is None
    assert a.counters["udp.icmp_error_unconnected"] == 1


def test_spoofed_icmp_error_for_other_port_ignored() -> None:
    lan = make_lan(1)
    a = lan.stacks[0]
    ep = a.udp.open(port=6000)
    ep.connect(SNIFF_IP, 7000)
    sniff = lan.sniffer()
    # An error quoting a datagram from us to a *different* peer port.
    inner = udp_frame(addr(0), SNIFF_IP, 6000, 7001, b"x")[14:42]
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1,
                          icmp4.build(icmp4.DEST_UNREACHABLE, 3, 0, inner), dst_mac=mac(0)))
    lan.run(0)
    assert ep.take_error() is None


@pytest.mark.parametrize(("flags_frag", "hit"), [(0, True), (ipv4.MF, True), (185, False)])
def test_icmp_error_about_a_later_fragment_not_read_as_ports(flags_frag: int,
                                                             hit: bool) -> None:
    """Only a quote of a first fragment (offset 0) carries the ports to match."""
    lan = make_lan(1)
    a = lan.stacks[0]
    ep = a.udp.open(port=6000)
    ep.connect(SNIFF_IP, 7000)
    sniff = lan.sniffer()
    quoted = ipv4.build(addr(0), SNIFF_IP, 17, (6000).to_bytes(2, "big")
                        + (7000).to_bytes(2, "big") + bytes(4), flags_frag=flags_frag)
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1,
                          icmp4.build(icmp4.DEST_UNREACHABLE, 3, 0, quoted), dst_mac=mac(0)))
    lan.run(0)
    assert (ep.take_error() == errno.ECONNREFUSED) is hit
    assert a.counters["icmp4.error_about_fragment"] == (0 if hit else 1)


def test_bad_checksum_dropped_and_zero_checksum_accepted() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    ep = s.udp.open(port=6000)
    sniff = lan.sniffer()
    good = udp.build(SNIFF_IP, addr(0), 1, 6000, b"payload")
    bad = good[:-1] + bytes([good[-1] ^ 0x20])
    zero = good[:6] + b"\0\0" + good[8:]
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 17, bad, dst_mac=mac(0)))
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 17, zero, dst_mac=mac(0)))
    lan.run(0)
    assert s.counters["udp.bad_checksum"] == 1
    assert ep.recv() == (b"payload", (SNIFF_IP, 1)) and ep.recv() is None


@pytest.mark.parametrize("claimed", [4, 100])
def test_bad_udp_length_dropped(claimed: int) -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    ep = s.udp.open(port=6000)
    sniff = lan.sniffer()
    msg = bytearray(udp.build(SNIFF_IP, addr(0), 1, 6000, b"payload"))
    msg[4:6] = claimed.to_bytes(2, "big")
    sniff.clear()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 17, bytes(msg), dst_mac=mac(0)))
    lan.run(1)
    assert s.counters["udp.bad_length"] == 1
    assert ep.recv() is None and sniff.frames == []


def test_broadcast_received_on_wildcard_endpoint() -> None:
    lan = make_lan(3)
    a, b, c = lan.stacks
    eb, ec = b.udp.open(port=5353), c.udp.open(port=5353)
    a.udp.open().sendto(b"all of you", SUBNET_BCAST, 5353)
    lan.run(1)
    for ep in (eb, ec):
        data, src, dst = ep.recv_full()
        assert data == b"all of you" and src[0] == addr(0) and dst == SUBNET_BCAST


def test_limited_broadcast_sent_in_broadcast_frame() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    # Without a route for 255.255.255.255 the interface must be named (as DHCP does).
    assert s.udp.open().sendto(b"hello all", b"\xff\xff\xff\xff", 67,
                               iface=lan.ifaces[0]) == 0
    lan.run(0)
    (f,) = sniff.ip_frames()
    assert f.eth.dst == BCAST_MAC and f.ip.dst == b"\xff\xff\xff\xff"
    assert sniff.arps() == []


def test_endpoint_bound_to_address_gets_only_that_address() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    ep = b.udp.open(addr(1), 6000)
    a.udp.open().sendto(b"bcast", SUBNET_BCAST, 6000)
    a.udp.open().sendto(b"ucast", addr(1), 6000)
    lan.run(1)
    assert ep.recv()[0] == b"ucast" and ep.recv() is None


# -- echo service -------------------------------------------------------------------

def test_udp_echo_service() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    echo = start_udp_echo(b, 7)
    client = a.udp.open()
    client.sendto(b"say it back", addr(1), 7)
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv() == (b"say it back", (addr(1), 7))
    assert echo.echoed == 1
    client.sendto(b"E" * 5000, addr(1), 7)
    assert lan.run_until(lambda: client.readable, 5)
    assert client.recv()[0] == b"E" * 5000
    echo.close()
    client.sendto(b"gone", addr(1), 7)
    lan.run(1)
    assert client.recv() is None


def test_udp_echo_ignores_broadcasts() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    echo = start_udp_echo(b, 7)
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(udp_frame(SNIFF_IP, SUBNET_BCAST, 7, 7, b"amplify me", dst_mac=BCAST_MAC))
    lan.run(1)
    assert echo.echoed == 0 and b.counters["echo.group_ignored"] == 1
    assert sniff.ip_frames() == []


def test_udp_echo_answers_from_the_address_asked() -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    s.add_address(lan.ifaces[0], "192.0.2.50/24")
    start_udp_echo(s, 7)
    sniff = lan.sniffer()
    sniff.inject(udp_frame(SNIFF_IP, ip_bytes("192.0.2.50"), 1000, 7, b"hi", dst_mac=mac(0)))
    lan.run(1)
    (f,) = sniff.ip_frames(lambda f: f.ip.proto == 17)
    assert f.ip.src == ip_bytes("192.0.2.50") and f.eth.dst == SNIFF_MAC


def test_udp_echo_does_not_loop_with_another_echo_service() -> None:
    """One datagram spoofed from host 1's echo port to host 0's echo port must not
    bounce between the two services forever (CVE-1999-0103)."""
    lan = make_lan(2)
    a, b = lan.stacks
    ea, eb = start_udp_echo(a, 7), start_udp_echo(b, 7)
    resolve(lan, 0, 1)
    sniff = lan.sniffer()
    sniff.inject(udp_frame(addr(1), addr(0), 7, 7, b"loop?", dst_mac=mac(0)))
    for _ in range(1000):
        if not lan.loop.step():
            break
    assert ea.echoed + eb.echoed == 0
    assert a.counters["echo.loop_refused"] == 1


@pytest.mark.parametrize("sport", [0, 7, 13, 19, 37])
def test_udp_echo_ignores_small_service_source_ports(sport: int) -> None:
    lan = make_lan(1)
    s = lan.stacks[0]
    echo = start_udp_echo(s, 7)
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), sport, 7, b"x", dst_mac=mac(0)))
    lan.run(1)
    assert echo.echoed == 0 and sniff.ip_frames() == []


@pytest.mark.parametrize(("icmp_type", "code", "rest", "expected"), [
    (icmp4.DEST_UNREACHABLE, 3, 0, errno.ECONNREFUSED),     # port
    (icmp4.DEST_UNREACHABLE, 2, 0, errno.ENOPROTOOPT),      # protocol
    (icmp4.DEST_UNREACHABLE, 10, 0, errno.EHOSTUNREACH),    # host prohibited
    (icmp4.DEST_UNREACHABLE, 13, 0, errno.EHOSTUNREACH),    # administratively filtered
    (icmp4.PARAMETER_PROBLEM, 0, 20 << 24, errno.EPROTO),
    (icmp4.DEST_UNREACHABLE, 0, 0, None),                   # net unreachable: soft
    (icmp4.DEST_UNREACHABLE, 1, 0, None),                   # host unreachable: soft
    (icmp4.DEST_UNREACHABLE, 4, 1400, errno.EMSGSIZE),      # frag needed: DF was ours
    (icmp4.TIME_EXCEEDED, 0, 0, None),
    (icmp4.SOURCE_QUENCH, 0, 0, None),
])
def test_only_hard_icmp_errors_reach_a_connected_endpoint(
        icmp_type: int, code: int, rest: int, expected: int | None) -> None:
    """RFC 1122 4.1.3.3 as Linux's udp_err applies it without IP_RECVERR; after a
    soft error the next datagram is delivered normally."""
    lan = make_lan(1)
    a = lan.stacks[0]
    ep = a.udp.open(port=6000)
    ep.connect(SNIFF_IP, 7000)
    sniff = lan.sniffer()
    quoted = udp_frame(addr(0), SNIFF_IP, 6000, 7000, b"knock")[14:]
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1, icmp4.build(icmp_type, code, rest, quoted),
                          dst_mac=mac(0)))
    lan.run(0)
    assert ep.take_error() == expected
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 7000, 6000, b"after", dst_mac=mac(0)))
    lan.run(0)
    got = ep.recv()
    assert got is not None and got[0] == b"after"
