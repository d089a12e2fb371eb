"""IGMP (stack/igmp.py) and sockets' memberships (stack/mcast.py) on a virtual
clock: state-change reports and their retransmission, one membership for
several sockets, answers to queries within their Max Resp Time, the v1/v2
compatibility modes, and UDP delivery by membership and IP_MULTICAST_ALL."""

from __future__ import annotations

import errno
import socket

import pytest
from femtolan import SNIFF_IP, SNIFF_MAC, Lan, Sniffer, make_lan

from femtotcp.stack import mcast
from femtotcp.stack.igmp import ROBUSTNESS
from femtotcp.stack.ipv4 import multicast_mac
from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, igmp, ipv4

G = socket.inet_aton("239.1.2.3")
G2 = socket.inet_aton("239.1.2.4")
US = socket.inet_aton("192.0.2.1")


def reports(sniff: Sniffer) -> list[tuple[ipv4.Ipv4Header, igmp.IgmpMessage]]:
    """The IGMP messages the stack sent, in order."""
    out = []
    for frame in sniff.frames:
        eth, payload = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_IPV4 or eth.src == SNIFF_MAC:
            continue
        hdr, data = ipv4.parse(payload)
        if hdr.proto == igmp.PROTO:
            assert eth.dst == multicast_mac(hdr.dst)
            out.append((hdr, igmp.parse(data)))
    return out


def records(sniff: Sniffer) -> list[tuple[int, bytes, tuple[bytes, ...]]]:
    return [(r.type, r.group, r.sources) for _, m in reports(sniff)
            if isinstance(m, igmp.IgmpV3Report) for r in m.records]


def setup() -> tuple[Lan, Sniffer]:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.clear()
    return lan, sniff


def joined(group: bytes = G) -> tuple[Lan, Sniffer, Stack, mcast.Memberships]:
    """``setup``'s LAN with one socket's membership of ``group`` (by address)."""
    lan, sniff = setup()
    stack = lan.stacks[0]
    ms = mcast.Memberships()
    mcast.join(stack, ms, group, 0, US)
    return lan, sniff, stack, ms


def query(lan: Lan, sniff: Sniffer, message: bytes, dst: bytes = igmp.ALL_HOSTS) -> None:
    sniff.inject(ethernet.build(multicast_mac(dst), SNIFF_MAC, ethernet.ETH_IPV4,
                                igmp.packet(SNIFF_IP, dst, message)))
    lan.run(0)


def test_join_is_reported_robustness_times_then_leave() -> None:
    lan, sniff, stack, ms = joined()
    lan.run(0)
    sent = reports(sniff)
    assert len(sent) == 1                      # at once
    hdr, msg = sent[0]
    assert (hdr.dst, hdr.ttl, hdr.tos, hdr.src) == (igmp.ALL_V3_ROUTERS, 1, 0xC0, US)
    assert hdr.options.startswith(igmp.ROUTER_ALERT) and hdr.dont_fragment
    assert records(sniff) == [(igmp.CHANGE_TO_EXCLUDE, G, ())]
    lan.run(1.0)                               # Linux's unsolicited interval for v3
    assert records(sniff) == [(igmp.CHANGE_TO_EXCLUDE, G, ())] * ROBUSTNESS
    lan.run(30)
    assert len(reports(sniff)) == ROBUSTNESS   # then nothing until a query
    assert multicast_mac(G) in lan.ifaces[0].multicast_macs
    sniff.clear()
    mcast.leave(stack, ms, G, 0, US)
    lan.run(1.0)
    assert records(sniff) == [(igmp.CHANGE_TO_INCLUDE, G, ())] * ROBUSTNESS
    assert multicast_mac(G) not in lan.ifaces[0].multicast_macs
    assert G not in stack.ipv4.joined.get(lan.ifaces[0], {})


def test_several_sockets_one_membership() -> None:
    lan, sniff = setup()
    stack = lan.stacks[0]
    socks = [mcast.Memberships() for _ in range(3)]
    for ms in socks:
        mcast.join(stack, ms, G, lan.ifaces[0].index)
    lan.run(2)
    assert records(sniff) == [(igmp.CHANGE_TO_EXCLUDE, G, ())] * ROBUSTNESS
    assert stack.ipv4.joined[lan.ifaces[0]][G].users == 3
    sniff.clear()
    mcast.leave(stack, socks[0], G, lan.ifaces[0].index)
    mcast.drop_all(stack, socks[1])            # a socket closed
    lan.run(2)
    assert records(sniff) == []                # one socket still holds it
    with pytest.raises(OSError) as exc:     # joined by index: a leave naming an address misses
        mcast.leave(stack, socks[2], G, 0, US)
    assert exc.value.errno == errno.EADDRNOTAVAIL
    mcast.leave(stack, socks[2], G, lan.ifaces[0].index)
    lan.run(2)
    assert records(sniff) == [(igmp.CHANGE_TO_INCLUDE, G, ())] * ROBUSTNESS


def test_all_hosts_is_never_reported_and_errors_are_linuxs() -> None:
    lan, sniff, stack, ms = joined(igmp.ALL_HOSTS)
    lan.run(5)
    assert reports(sniff) == []
    cases = [(lambda: mcast.join(stack, ms, igmp.ALL_HOSTS, 0, US), errno.EADDRINUSE),
             (lambda: mcast.join(stack, ms, US, 0, US), errno.EINVAL),
             (lambda: mcast.join(stack, ms, G, 99), errno.ENODEV),
             (lambda: mcast.join(stack, ms, G), errno.ENODEV),        # no route to 239/8
             (lambda: mcast.leave(stack, ms, G, 0, US), errno.EADDRNOTAVAIL)]
    for call, code in cases:
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == code
    for i in range(mcast.MAX_GROUPS4 - 1):
        mcast.join(stack, ms, bytes([239, 9, 0, i]), 0, US)
    with pytest.raises(OSError) as exc:
        mcast.join(stack, ms, G, 0, US)
    assert exc.value.errno == errno.ENOBUFS


def test_general_query_answered_within_max_resp_time() -> None:
    lan, sniff = setup()
    stack = lan.stacks[0]
    for group in (G, G2):
        mcast.join(stack, mcast.Memberships(), group, 0, US)
    lan.run(5)
    sniff.clear()
    query(lan, sniff, igmp.build_v3_query(max_response=20))     # 2 s
    assert reports(sniff) == []                # a random delay first
    lan.run(2.0)
    assert sorted(records(sniff)) == [(igmp.MODE_IS_EXCLUDE, G, ()),
                                      (igmp.MODE_IS_EXCLUDE, G2, ())]
    assert len(reports(sniff)) == 1            # one report, both records
    assert stack.counters["igmp.query"] == 1


def test_group_and_source_queries() -> None:
    lan, sniff = setup()
    stack = lan.stacks[0]
    mcast.join(stack, mcast.Memberships(), G, 0, US)
    lan.run(5)
    sniff.clear()
    src = socket.inet_aton("192.0.2.77")
    query(lan, sniff, igmp.build_v3_query(G, 10, [src]), G)
    query(lan, sniff, igmp.build_v3_query(G2, 10), G2)          # not ours: not even taken
    lan.run(1.0)
    assert records(sniff) == [(igmp.MODE_IS_INCLUDE, G, (src,))]
    sniff.clear()
    query(lan, sniff, igmp.build_v3_query(G, 10), G)
    lan.run(1.0)
    assert records(sniff) == [(igmp.MODE_IS_EXCLUDE, G, ())]
    assert stack.counters["ipv4.multicast_not_joined"] == 1


def test_v2_querier_switches_to_v2_reports_and_leaves_then_back() -> None:
    lan, sniff = setup()
    stack = lan.stacks[0]
    igmp_mod = stack.modules["igmp"]
    query(lan, sniff, igmp.build_v2(igmp.QUERY, bytes(4), 100))
    assert igmp_mod.version(lan.ifaces[0]) == 2
    ms = mcast.Memberships()
    mcast.join(stack, ms, G, 0, US)
    lan.run(0)
    first = reports(sniff)
    assert [(h.dst, m) for h, m in first] == [(G, igmp.IgmpReport(igmp.V2_REPORT, G))]
    lan.run(10)                                # repeated once (RFC 2236 3)
    assert len(reports(sniff)) == 2
    sniff.clear()
    mcast.leave(stack, ms, G, 0, US)
    lan.run(0)
    assert [(h.dst, m) for h, m in reports(sniff)] == [
        (igmp.ALL_ROUTERS, igmp.IgmpReport(igmp.V2_LEAVE, G))]
    lan.run(260)                               # Older Version Querier Present Timeout
    assert igmp_mod.version(lan.ifaces[0]) == 3


def test_v1_querier_and_report_suppression() -> None:
    lan, sniff, stack, ms = joined()
    lan.run(5)
    sniff.clear()
    query(lan, sniff, igmp.build_v2(igmp.QUERY, bytes(4)))     # v1: Max Resp Code 0
    assert stack.modules["igmp"].version(lan.ifaces[0]) == 1
    lan.run(10)
    assert [m for _, m in reports(sniff)] == [igmp.IgmpReport(igmp.V1_REPORT, G)]
    sniff.clear()
    query(lan, sniff, igmp.build_v2(igmp.QUERY, bytes(4)))
    # Another member reports first: ours is suppressed.
    sniff.inject(ethernet.build(multicast_mac(G), SNIFF_MAC, ethernet.ETH_IPV4, igmp.packet(
        SNIFF_IP, G, igmp.build_v2(igmp.V1_REPORT, G))))
    lan.run(10)
    assert reports(sniff) == [] and stack.counters["igmp.report_suppressed"] == 1
    mcast.leave(stack, ms, G, 0, US)
    lan.run(5)
    assert reports(sniff) == []                # v1 has no leave


def test_udp_delivery_by_membership_and_multicast_all() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    iface = lan.ifaces[1]
    joined = b.udp.open(port=5000, reuse_addr=True)
    joined.mcast = mcast.Memberships()
    mcast.join(b, joined.mcast, G, iface.index)
    other = b.udp.open(port=5000, reuse_addr=True)
    other.mcast = mcast.Memberships()                 # IP_MULTICAST_ALL on (the default)
    strict = b.udp.open(port=5000, reuse_addr=True)
    strict.mcast = mcast.Memberships()
    strict.mcast.all4 = False                         # IP_MULTICAST_ALL 0
    elsewhere = b.udp.open(port=5001)
    sender = a.udp.open()
    assert sender.sendto(b"hi", G, 5000, iface=lan.ifaces[0]) == 0
    assert sender.sendto(b"no", G2, 5000, iface=lan.ifaces[0]) == 0   # nobody joined G2
    lan.run(0.1)
    assert [ep.recv() is not None for ep in (joined, other, strict, elsewhere)] == [
        True, True, False, False]
    assert b.counters["ipv4.multicast_not_joined"] == 1
    assert b.counters["udp.multicast_filtered"] == 0
    joined.close()
    other.close()
    sender.sendto(b"again", G, 5000, iface=lan.ifaces[0])
    lan.run(0.1)
    assert strict.recv() is None and b.counters["udp.multicast_filtered"] == 1


def test_multicast_loop() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    ep = stack.udp.open(port=5000)
    ep.mcast = mcast.Memberships()
    mcast.join(stack, ep.mcast, G, 0, US)
    ep.sendto(b"looped", G, 5000, iface=lan.ifaces[0])
    lan.run(0.1)
    got = ep.recv()
    assert got is not None and got == (b"looped", (US, 5000))
    ep.mcast_loop = False
    ep.sendto(b"not", G, 5000, iface=lan.ifaces[0])
    lan.run(0.1)
    assert ep.recv() is None


def test_socket_groups_share_ipv6_counts_with_the_stacks_own() -> None:
    """A socket joining the solicited-node group and leaving it again leaves the
    stack's own membership (NDP needs it) in place; an MLDv2 report for a
    socket's group on join and leave."""
    from femtotcp.stack.config import StackConfig
    from femtotcp.wire import ip_bytes, ipv6, mld
    lan = make_lan(1, modules=["arp", "ipv4", "icmp4", "igmp", "udp", "ipv6", "icmp6"],
                   config=StackConfig(ipv6_dad_transmits=0))
    stack = lan.stacks[0]
    iface = lan.ifaces[0]
    us6 = ip_bytes("2001:db8::1")
    stack.ipv6.add_address(iface, us6, 64)
    lan.run(5)
    sn = ipv6.solicited_node(us6)
    before = stack.ipv6.groups[iface][sn]
    ms = mcast.Memberships(v6=True)
    mcast.join(stack, ms, sn, iface.index)
    assert stack.ipv6.groups[iface][sn] == before + 1
    mcast.drop_all(stack, ms)
    assert stack.ipv6.groups[iface][sn] == before
    assert ipv6.multicast_mac(sn) in iface.multicast_macs
    frames = lan.capture(0)
    group = ip_bytes("ff15::5")
    mcast.join(stack, ms, group)               # ifindex 0: the route's (the interface)
    mcast.leave(stack, ms, group)
    lan.run(2)
    kinds = []
    for frame in frames:
        eth, view = ethernet.parse(frame)
        payload = bytes(view)
        if eth.ethertype == ethernet.ETH_IPV6 and payload[48] == mld.V2_REPORT:
            at = payload.find(group)
            kinds.append(payload[at - 4])
    assert kinds.count(mld.CHANGE_TO_EXCLUDE) == 2 and kinds.count(mld.CHANGE_TO_INCLUDE) == 2
    assert group not in stack.ipv6.groups[iface]


def test_source_filters_reports_queries_and_delivery() -> None:
    """Source-specific memberships (RFC 3678 through stack/mcast.source): the
    interface's state is RFC 3376 3.2's merge of its sockets' filters, each
    change reported as 5.1 says (merged while retransmitting), queries
    answered from the state, datagrams filtered by it and by each socket's."""
    lan, sniff = setup()
    stack = lan.stacks[0]
    iface = lan.ifaces[0]
    s1, s2, s3, s4 = (bytes([192, 0, 2, n]) for n in (11, 12, 13, 14))
    a = stack.udp.open(port=5000, reuse_addr=True)
    a.mcast = mcast.Memberships()
    mcast.join(stack, a.mcast, G, 0, US, include=True)         # IP_ADD_SOURCE_MEMBERSHIP
    mcast.source(stack, a.mcast, True, True, G, US, s1)
    lan.run(0)
    assert records(sniff) == [(igmp.ALLOW_NEW_SOURCES, G, (s1,))]      # IN() -> IN(s1)
    mcast.source(stack, a.mcast, True, True, G, US, s2)
    lan.run(2)
    # The retransmission carries the merged change, from IN() to IN(s1, s2).
    assert records(sniff)[1:] == [(igmp.ALLOW_NEW_SOURCES, G, (s1, s2))] * ROBUSTNESS
    sniff.clear()
    b = stack.udp.open(port=5000, reuse_addr=True)
    b.mcast = mcast.Memberships()
    mcast.join(stack, b.mcast, G, 0, US)                        # any source: EXCLUDE
    mcast.source(stack, b.mcast, True, False, G, US, s3)        # IP_BLOCK_SOURCE s3
    lan.run(2)
    assert stack.ipv4.state(iface, G) == (False, frozenset({s3}))
    assert records(sniff)[0] == (igmp.CHANGE_TO_EXCLUDE, G, ())
    assert records(sniff)[-1] == (igmp.CHANGE_TO_EXCLUDE, G, (s3,))
    sniff.clear()
    query(lan, sniff, igmp.build_v3_query(max_response=10))
    query(lan, sniff, igmp.build_v3_query(G2, 10), G2)
    lan.run(1)
    assert records(sniff) == [(igmp.MODE_IS_EXCLUDE, G, (s3,))]
    sniff.clear()
    query(lan, sniff, igmp.build_v3_query(G, 10, [s1, s3]), G)
    lan.run(1)
    assert records(sniff) == [(igmp.MODE_IS_INCLUDE, G, (s1,))]    # asked minus excluded
    # Delivery: s3 is filtered by the interface; s4 reaches b (EXCLUDE {s3})
    # but not a (INCLUDE {s1, s2}); s1 reaches both.
    from femtolan import udp_frame
    for src in (s3, s4, s1):
        sniff.inject(udp_frame(src, G, 7, 5000, src, dst_mac=multicast_mac(G)))
    lan.run(0.1)
    got_a = [a.recv() for _ in range(3)]
    got_b = [b.recv() for _ in range(3)]
    assert [d for d, _ in filter(None, got_a)] == [s1]
    assert [d for d, _ in filter(None, got_b)] == [s4, s1]
    assert stack.counters["ipv4.multicast_source_filtered"] == 1
    # Unblocking s3 and dropping a's sources: EXCLUDE {} and b alone.
    sniff.clear()
    mcast.source(stack, b.mcast, False, False, G, US, s3)
    mcast.source(stack, a.mcast, False, True, G, US, s1)
    mcast.source(stack, a.mcast, False, True, G, US, s2)       # the last: a leaves
    assert (G, iface.index) not in a.mcast.groups
    lan.run(2)
    assert stack.ipv4.state(iface, G) == (False, frozenset())
    assert records(sniff)[-1] == (igmp.ALLOW_NEW_SOURCES, G, (s3,))
    mcast.drop_all(stack, b.mcast)
    assert stack.ipv4.state(iface, G) == mcast.NO_STATE


def test_a_join_right_after_a_leave_is_reported() -> None:
    """A change while the last one is still being retransmitted: the report
    brings a router that heard either state to the new one (RFC 3376 5.1)."""
    lan, sniff, stack, ms = joined()
    lan.run(2)
    sniff.clear()
    mcast.leave(stack, ms, G, 0, US)
    lan.run(0)
    mcast.join(stack, ms, G, 0, US)         # before the leave's retransmission
    lan.run(2)
    assert records(sniff) == [(igmp.CHANGE_TO_INCLUDE, G, ()),
                              (igmp.CHANGE_TO_EXCLUDE, G, ()),
                              (igmp.CHANGE_TO_EXCLUDE, G, ())]


def test_v2_no_leave_when_another_host_reported_last() -> None:
    """RFC 2236 3: a Leave only from the host whose report was the last."""
    lan, sniff = setup()
    stack = lan.stacks[0]
    query(lan, sniff, igmp.build_v2(igmp.QUERY, bytes(4), 100))
    ms = mcast.Memberships()
    mcast.join(stack, ms, G, 0, US)
    lan.run(0)
    sniff.inject(ethernet.build(multicast_mac(G), SNIFF_MAC, ethernet.ETH_IPV4, igmp.packet(
        SNIFF_IP, G, igmp.build_v2(igmp.V2_REPORT, G))))
    lan.run(20)
    sniff.clear()
    mcast.leave(stack, ms, G, 0, US)
    lan.run(5)
    assert reports(sniff) == []
    assert stack.counters["igmp.report_suppressed"] == 1    # (our repeat, too)


def test_without_the_igmp_module_joins_work_and_nothing_is_reported() -> None:
    lan = make_lan(2, modules=["arp", "ipv4", "icmp4", "udp"])
    a, b = lan.stacks
    assert "igmp" not in b.modules
    frames = lan.capture(1)
    ep = b.udp.open(port=5000)
    ep.mcast = mcast.Memberships()
    mcast.join(b, ep.mcast, G, lan.ifaces[1].index)
    a.udp.open().sendto(b"hi", G, 5000, iface=lan.ifaces[0])
    lan.run(5)
    assert ep.recv() is not None
    assert not [f for f in frames if f[23:24] == bytes([igmp.PROTO])]
    mcast.drop_all(b, ep.mcast)
    assert G not in b.ipv4.joined.get(lan.ifaces[1], {})
