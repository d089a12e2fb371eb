"""IPV6_UNICAST_HOPS and IPV6_TCLASS on AF_INET6 stream sockets reach the
wire: set before connect they are on the SYN already, set on a listener its
SYN-ACKs and accepted connections carry them (as Linux's inherited
ipv6_pinfo), changed on a live connection its next segments carry the new
values. The frames are read back with scapy."""

from __future__ import annotations

import socket as std
from typing import Any

from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from test_api_ipv6 import B6, nets, s6  # noqa: F401 - nets is the fixture

from femtotcp.api.socket import Network


def tcp_capture(net: Network) -> list[Any]:
    """scapy packets of every TCP-over-IPv6 frame ``net``'s stack sends."""
    seen: list[Any] = []

    def capture(frame: bytes, outbound: bool) -> None:
        if outbound:
            pkt = Ether(frame)
            if IPv6 in pkt and TCP in pkt:
                seen.append(pkt)
    net.stack.interfaces[0].device.add_capture(capture)
    return seen


def marks(pkts: list[Any]) -> set[tuple[int, int]]:
    return {(p[IPv6].hlim, p[IPv6].tc) for p in pkts}


def test_hops_and_traffic_class_of_stream_sockets_on_the_wire(
        nets: tuple[Network, Network]) -> None:  # noqa: F811
    na, nb = nets
    sent_a, sent_b = tcp_capture(na), tcp_capture(nb)
    with s6(nb) as srv, s6(na) as cli:
        srv.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, 9)
        srv.bind(("::", 0))
        srv.listen()
        srv.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 0x48)    # after listen too
        port = srv.getsockname()[1]
        cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, 7)
        cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 0x28)
        cli.connect((B6, port))
        conn, _ = srv.accept()
        with conn:
            assert conn.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 9
            cli.sendall(b"a" * 3000)
            got = b""
            while len(got) < 3000:
                got += conn.recv(65536)
            conn.sendall(b"b" * 2000)
            got = b""
            while len(got) < 2000:
                got += cli.recv(65536)
            before = len(sent_a)
            cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, -1)
            cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 0x10)
            assert cli.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 64
            cli.sendall(b"c" * 100)
            assert conn.recv(100) == b"c" * 100
    first = sent_a[:before]
    assert str(first[0][TCP].flags) == "S" and marks(first) == {(7, 0x28)}
    later = [p for p in sent_a[before:] if len(p[TCP].payload)]
    assert later and marks(later) == {(64, 0x10)}
    syn_ack = [p for p in sent_b if str(p[TCP].flags) == "SA"]
    assert len(syn_ack) == 1
    # Every segment of the accepted connection, from the SYN-ACK on.
    assert marks(sent_b) == {(9, 0x48)}
    # One flow label per connection, never zero.
    assert len({p[IPv6].fl for p in sent_a}) == 1 and sent_a[0][IPv6].fl != 0
