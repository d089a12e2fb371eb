"""Sources no IPv6 peer may use, dropped on input as Linux's ipv6_rcv and its
transports drop them, each under its own counter, in the full path and in the
fast path (frames that the fast path would take: TCP and ICMPv6 to one of our
unicast addresses). The unspecified source stays legal where RFC 4862 needs
it (a DAD Neighbour Solicitation is still answered), but TCP does not answer
it and an echo request from it is not answered nor counted as answered.

Frames are built by scapy, an encoder independent of the stack's own."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
from femtolan import Lan, Sniffer
from test_stack_ipv6 import A_MAC, ROUTER_MAC, _target, icmp6_of, lan6, parse6

from femtotcp.control.gather import gather_stats
from femtotcp.control.render import render as render_reply
from femtotcp.stack.stack import Stack
from femtotcp.wire import icmp6, ip_str, ipv6

PORT = 80


def _setup() -> tuple[Lan, Stack, bytes, Sniffer]:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    assert a.fast_receive6 is not None      # the fast path is in place: it is tested too
    a.tcp.listen(ipv6.UNSPECIFIED, PORT)
    return lan, a, dst, sniffer


def _frame(scapy: ModuleType, src: str, dst: bytes, upper: object, ext: bool = False) -> bytes:
    ip = scapy.IPv6(src=src, dst=ip_str(dst), hlim=64)
    if ext:
        ip = ip / scapy.IPv6ExtHdrDestOpt()
    return bytes(scapy.Ether(dst=A_MAC, src=ROUTER_MAC) / ip / upper)


def _syn(scapy: ModuleType, port: int = PORT) -> object:
    return scapy.TCP(sport=40000, dport=port, flags="S", seq=1000)


def _echo(scapy: ModuleType) -> object:
    return scapy.ICMPv6EchoRequest(id=7, seq=1, data=b"x" * 8)


def _sent(sniffer: Sniffer, nh: int) -> list[bytes]:
    return [f for f in sniffer.frames if (got := parse6(f)) is not None
            and got[0].next_header == nh]


@pytest.mark.parametrize("ext", [False, True], ids=["direct", "after_dest_opts"])
def test_tcp_from_unspecified_source_is_not_answered(scapy: ModuleType, ext: bool) -> None:
    lan, a, dst, sniffer = _setup()
    # A SYN to the listener (no SYN-ACK, no half-open connection) and one to a
    # closed port (no RST), both from ::.
    sniffer.inject(_frame(scapy, "::", dst, _syn(scapy), ext))
    sniffer.inject(_frame(scapy, "::", dst, _syn(scapy, PORT + 1), ext))
    lan.run(0.5)
    assert _sent(sniffer, ipv6.PROTO_TCP) == []
    assert a.counters["ipv6.tcp_from_unspecified"] == 2
    assert a.counters["ipv6.tx_martian"] == 0          # nothing was even tried
    assert gather_stats(SimpleNamespace(stack=a))["tcp"]["syn_queue"] == 0
    # The same SYN from a unicast source is answered (the check is the source's).
    sniffer.inject(_frame(scapy, "fe80::fe", dst, _syn(scapy), ext))
    lan.run(0.5)
    assert len(_sent(sniffer, ipv6.PROTO_TCP)) == 1


def test_echo_from_unspecified_source_is_not_answered_nor_counted(scapy: ModuleType) -> None:
    lan, a, dst, sniffer = _setup()
    sniffer.inject(_frame(scapy, "::", dst, _echo(scapy)))
    sniffer.inject(_frame(scapy, "::", dst, _echo(scapy), ext=True))
    lan.run(0.5)
    assert icmp6_of(sniffer, icmp6.ECHO_REPLY) == []
    assert a.counters["icmp6.echo_from_unspecified"] == 2
    assert a.counters["icmp6.echo_replied"] == 0
    assert a.counters["ipv6.tx_martian"] == 0
    sniffer.inject(_frame(scapy, "fe80::fe", dst, _echo(scapy)))
    lan.run(0.5)
    assert len(icmp6_of(sniffer, icmp6.ECHO_REPLY)) == 1
    assert a.counters["icmp6.echo_replied"] == 1


def test_echo_not_sent_is_not_counted_as_answered(scapy: ModuleType) -> None:
    """An IPv4-compatible source (::192.0.2.9, RFC 4291 2.5.5.1) is accepted as
    Linux accepts it, but with no router there is no route back: the echo is
    refused on output (``ipv6.no_route``), so it is not counted as answered."""
    lan, a, dst, sniffer = _setup()
    sniffer.inject(_frame(scapy, "::192.0.2.9", dst, _echo(scapy)))
    lan.run(0.5)
    assert icmp6_of(sniffer, icmp6.ECHO_REPLY) == []
    assert a.counters["ipv6.no_route"] == 1
    assert a.counters["icmp6.echo_replied"] == 0


def test_dad_neighbour_solicitation_from_unspecified_is_still_answered(
        scapy: ModuleType) -> None:
    lan, a, dst, sniffer = _setup()
    group = ipv6.solicited_node(dst)
    ns = (scapy.Ether(dst=ipv6.multicast_mac(group), src=ROUTER_MAC)
          / scapy.IPv6(src="::", dst=ip_str(group), hlim=255)
          / scapy.ICMPv6ND_NS(tgt=ip_str(dst)))
    sniffer.inject(bytes(ns))
    lan.run(0.5)
    nas = icmp6_of(sniffer, icmp6.NEIGHBOR_ADVERTISEMENT)
    assert [h.dst for h, _, _ in nas] == [ipv6.ALL_NODES]     # RFC 4861 7.2.4
    assert a.counters["ndp.dad_defended"] == 1


@pytest.mark.parametrize("src, reason", [
    ("ff02::1", "ipv6.multicast_source"),             # RFC 4291 2.7
    ("::1", "ipv6.loopback_address"),                 # RFC 4291 2.5.3
    ("::ffff:192.0.2.9", "ipv6.v4_mapped_address"),   # RFC 4291 2.5.5.2, RFC 4038
])
def test_forbidden_sources_dropped_and_counted(scapy: ModuleType, src: str,
                                               reason: str) -> None:
    lan, a, dst, sniffer = _setup()
    sniffer.inject(_frame(scapy, src, dst, _syn(scapy)))
    sniffer.inject(_frame(scapy, src, dst, _syn(scapy, PORT + 1)))
    sniffer.inject(_frame(scapy, src, dst, _echo(scapy)))
    lan.run(0.5)
    assert _sent(sniffer, ipv6.PROTO_TCP) == []
    assert icmp6_of(sniffer, icmp6.ECHO_REPLY) == []
    assert a.counters[reason] == 3
    assert a.counters["icmp6.echo_replied"] == 0
    assert a.counters["ipv6.tx_martian"] == 0
    assert a.counters["stack.internal_error"] == 0


def test_source_drop_counters_in_ctl_stats(scapy: ModuleType) -> None:
    lan, a, dst, sniffer = _setup()
    sniffer.inject(_frame(scapy, "::", dst, _syn(scapy)))
    sniffer.inject(_frame(scapy, "::", dst, _echo(scapy)))
    lan.run(0.5)
    doc = gather_stats(SimpleNamespace(stack=a))
    for name in ("ipv6.tcp_from_unspecified", "icmp6.echo_from_unspecified"):
        assert doc["counters"][name] == 1
        assert doc["drops"][name] == 1
        assert name in render_reply("stats", doc)
