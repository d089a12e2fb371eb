"""MLDv1 compatibility mode (RFC 3810 8.2.1, RFC 2710), on the virtual clock: an
MLDv1 query puts the interface in MLDv1 mode for the Older Version Querier
Present Timeout; meanwhile queries get MLDv1 Reports after a random delay,
another host's Report suppresses ours, joins send v1 Reports and leaves a Done
(when our report was the last), and afterwards MLDv2 comes back."""

from __future__ import annotations

from femtolan import Lan, Sniffer
from test_stack_ipv6 import ROUTER_LL, ROUTER_MAC, icmp6_of, lan6, ll, parse6

from femtotcp.stack.interface import Interface
from femtotcp.stack.ipv6 import MLD_OLDER_QUERIER_TIMEOUT, Ipv6
from femtotcp.wire import ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mld

GROUP = ip_bytes("ff05::1:3")


def _mld_frame(src: bytes, dst: bytes, message: bytes) -> bytes:
    return ethernet.build(ipv6.multicast_mac(dst), ROUTER_MAC, ethernet.ETH_IPV6,
                          mld.packet(src, dst, message))


def v1_query(max_delay_ms: int, group: bytes = ipv6.UNSPECIFIED) -> bytes:
    dst = ipv6.ALL_NODES if group == ipv6.UNSPECIFIED else group
    return _mld_frame(ROUTER_LL, dst, mld.build_query(ROUTER_LL, dst, max_delay_ms, group,
                                                      version=1))


def v2_query(max_response_ms: int) -> bytes:
    return _mld_frame(ROUTER_LL, ipv6.ALL_NODES,
                      mld.build_query(ROUTER_LL, ipv6.ALL_NODES, max_response_ms))


def v1_messages(sniffer: Sniffer, kind: int) -> list[tuple[bytes, bytes]]:
    """(IPv6 destination, group) of each MLDv1 message of ``kind`` sent."""
    return [(h.dst, body[:16]) for h, _, body in icmp6_of(sniffer, kind)]


def _one_stack() -> tuple[Lan, Sniffer, bytes, Ipv6, Interface]:
    """One stack after its DAD, a router port, its link-local address's
    solicited-node group, its IPv6 layer and interface."""
    lan = lan6(1)
    router = lan.sniffer("router")
    stack = lan.stacks[0]
    assert stack.ipv6 is not None
    return lan, router, ipv6.solicited_node(ll(stack)), stack.ipv6, stack.interfaces[0]


def test_a_v1_query_is_answered_with_v1_reports_and_joins_and_leaves_follow() -> None:
    lan, router, solicited, ip6, iface = _one_stack()
    stack = lan.stacks[0]
    router.clear()
    router.inject(v1_query(1000))
    lan.run(1.5)
    assert ip6.mld_v1(iface)
    assert v1_messages(router, icmp6.MLD_REPORT) == [(solicited, solicited)]
    assert icmp6_of(router, icmp6.MLDV2_REPORT) == []
    # The report is an MLD message: hop limit 1 and a Router Alert (RFC 2710 3).
    for f in router.frames:
        got = parse6(f)
        if got is not None and got[0].next_header == ipv6.PROTO_HOPOPTS:
            assert got[0].hop_limit == 1
            assert ipv6ext.walk(ipv6.PROTO_HOPOPTS, got[1]).router_alert == 0
    router.clear()
    ip6.join(iface, GROUP)
    lan.run(11.0)
    # A join: a Report at once and one more within the Unsolicited Report Interval.
    assert v1_messages(router, icmp6.MLD_REPORT) == [(GROUP, GROUP)] * 2
    assert icmp6_of(router, icmp6.MLDV2_REPORT) == []
    router.clear()
    ip6.leave(iface, GROUP)
    lan.run(1.0)
    assert v1_messages(router, icmp6.MLD_DONE) == [(ipv6.ALL_ROUTERS, GROUP)]
    assert stack.counters["mld.v1_query"] == 1
    # No MLDv1 query for the Older Version Querier Present Timeout: MLDv2 again.
    lan.run(MLD_OLDER_QUERIER_TIMEOUT)
    assert not ip6.mld_v1(iface)
    router.clear()
    ip6.join(iface, GROUP)
    lan.run(2.0)
    assert v1_messages(router, icmp6.MLD_REPORT) == []
    assert [body[4:20] for _, _, body in icmp6_of(router, icmp6.MLDV2_REPORT)] == [GROUP] * 2


def test_another_hosts_v1_report_suppresses_ours_and_then_no_done() -> None:
    lan, router, solicited, ip6, iface = _one_stack()
    stack = lan.stacks[0]
    ip6.join(iface, GROUP)
    lan.run(3.0)
    router.clear()
    router.inject(v1_query(5000, GROUP))
    other = ip_bytes("fe80::99")
    router.inject(_mld_frame(other, GROUP, mld.build_v1(other, GROUP, icmp6.MLD_REPORT,
                                                        GROUP)))
    lan.run(6.0)
    assert v1_messages(router, icmp6.MLD_REPORT) == []
    assert stack.counters["mld.v1_report_suppressed"] == 1
    ip6.leave(iface, GROUP)
    lan.run(1.0)
    assert v1_messages(router, icmp6.MLD_DONE) == []
    # A group-specific query is about that group only.
    router.clear()
    router.inject(v1_query(500, solicited))
    lan.run(1.0)
    assert v1_messages(router, icmp6.MLD_REPORT) == [(solicited, solicited)]


def test_in_v1_mode_an_mldv2_query_gets_v1_reports() -> None:
    lan, router, solicited, _, _ = _one_stack()
    stack = lan.stacks[0]
    router.inject(v1_query(100))
    lan.run(1.0)
    router.clear()
    router.inject(v2_query(1000))
    lan.run(1.5)
    assert v1_messages(router, icmp6.MLD_REPORT) == [(solicited, solicited)]
    assert icmp6_of(router, icmp6.MLDV2_REPORT) == []
    assert stack.counters["mld.v1_query"] == 1


def test_groups_of_interface_local_scope_are_never_reported() -> None:
    lan, router, _, ip6, iface = _one_stack()
    router.clear()
    ip6.join(iface, ip_bytes("ff01::1:3"))
    lan.run(2.0)
    assert icmp6_of(router, icmp6.MLDV2_REPORT) == []
    router.inject(v1_query(100))
    lan.run(1.0)
    assert all(g != ip_bytes("ff01::1:3") for _, g in v1_messages(router, icmp6.MLD_REPORT))
