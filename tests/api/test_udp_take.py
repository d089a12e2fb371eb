"""A datagram for a UDP socket goes from the stack to the program's end of its
pair at once (``UdpEndpoint.take``) only while nothing waits in the endpoint's
queue: a burst larger than the pair holds arrives in order, without
duplicates, the rest counted as ``udp.rcvbuf_full`` as before."""

from __future__ import annotations

import os
import socket as std

from apilan import Lan

from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, udp


def to_b(lan: Lan, i: int, repeat: int) -> bytes:
    """A frame from A's address to B's port 5000: ``i`` in 4 bytes, ``repeat`` times."""
    src, dst = ip_bytes(lan.ip_a), ip_bytes(lan.ip_b)
    return ethernet.build(lan.b.interfaces[0].mac, mac_bytes("02:00:00:00:05:01"),
                          ethernet.ETH_IPV4, ipv4.build(src, dst, udp.PROTO, udp.build(
                              src, dst, 4000, 5000, i.to_bytes(4, "big") * repeat)))


def test_a_burst_past_the_pair_arrives_in_order(lan: Lan) -> None:
    b = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    with b:
        b.bind(("", 5000))
        b.settimeout(5)
        iface = lan.b.interfaces[0]
        n = 3000
        frames = [to_b(lan, i, 100) for i in range(n)]

        def burst() -> tuple[int, int]:
            for frame in frames:
                lan.b.receive(iface, frame)
            ep = lan.b.udp.endpoints[(bytes(4), 5000)]   # type: ignore[union-attr]
            return len(ep.queue), lan.b.counters["udp.rcvbuf_full"]

        queued, dropped = lan.runtime.call(burst)
        assert queued > 0            # the pair filled: some waited in the endpoint
        got = []
        for _ in range(n - dropped):
            data, addr = b.recvfrom(2048)
            assert addr == (lan.ip_a, 4000) and len(data) == 400
            got.append(int.from_bytes(data[:4], "big"))
        # In order, none twice; the ones the queue had no room for are the last.
        assert got == list(range(n - dropped))
        b.setblocking(False)
        try:
            extra = b.recv(2048)
        except BlockingIOError:
            extra = b""
        assert extra == b""


def test_a_datagram_never_overtakes_queued_ones(lan: Lan) -> None:
    """The pair fills, datagrams wait in the endpoint, the program reads a few
    (the pair has room again) and one more arrives before the loop has
    pumped: it goes behind the waiting ones, not straight to the pair."""
    b = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    with b:
        b.bind(("", 5000))
        b.settimeout(5)
        iface = lan.b.interfaces[0]

        def frame(i: int) -> bytes:
            return to_b(lan, i, 25)

        def scenario() -> tuple[list[int], int]:
            ep = lan.b.udp.endpoints[(bytes(4), 5000)]   # type: ignore[union-attr]
            i = 0
            while len(ep.queue) < 5:
                lan.b.receive(iface, frame(i))
                i += 1
                assert i < 100_000
            # The program's end, read here before the loop can pump (a record:
            # 20 bytes of kind, address length, port and address, then the data).
            with std.socket(fileno=os.dup(b.fileno())) as p:
                first = [int.from_bytes(p.recv(2048, std.MSG_DONTWAIT)[20:24], "big")
                         for _ in range(3)]
            lan.b.receive(iface, frame(i))
            return first, i + 1

        first, total = lan.runtime.call(scenario)
        assert first == [0, 1, 2]
        got = [int.from_bytes(b.recv(2048)[:4], "big") for _ in range(total - 3)]
        assert got == list(range(3, total))
        assert lan.b.counters.get("udp.rcvbuf_full", 0) == 0
