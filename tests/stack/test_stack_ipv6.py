"""IPv6 host on the virtual clock: link-local and DAD, SLAAC from a router's RAs,
NUD, fragments both ways, hostile packets counted, ICMPv6 errors rate limited."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from femtolan import Lan, Sniffer, make_lan

from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mac_bytes, ndp

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
ROUTER_MAC = mac_bytes("02:00:00:00:00:fe")
ROUTER_LL = ip_bytes("fe80::fe")
PREFIX = ip_bytes("2001:db8:1::")


def lan6(n: int = 2, **kw: Any) -> Lan:
    lan = make_lan(n, modules=MODULES, **kw)
    lan.run(3.0)     # DAD of the link-local addresses (1 s delay at most, 1 s wait)
    return lan


def ll(stack: Stack) -> bytes:
    return next(a.addr for a in stack.interfaces[0].ipv6 if ipv6.is_link_local(a.addr))


def frame6(src: bytes, dst: bytes, nh: int, payload: bytes, hop: int = 64,
           dst_mac: bytes | None = None) -> bytes:
    mac = dst_mac or (ipv6.multicast_mac(dst) if dst[0] == 0xFF else b"\x02\0\0\0\0\x01")
    return ethernet.build(mac, ROUTER_MAC, ethernet.ETH_IPV6,
                          ipv6.build(src, dst, nh, payload, hop))


def parse6(frame: bytes) -> tuple[ipv6.Ipv6Header, bytes] | None:
    try:
        eth, body = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_IPV6:
            return None
        h, payload = ipv6.parse(body)
    except Malformed:
        return None
    return h, bytes(payload)


def icmp6_of(sniffer: Sniffer, type_: int) -> list[tuple[ipv6.Ipv6Header, icmp6.Icmp6Header,
                                                          bytes]]:
    out = []
    for f in sniffer.frames:
        got = parse6(f)
        if got is None:
            continue
        h, payload = got
        upper, offset = ipv6ext.skip_chain(h.next_header, payload)
        if upper != ipv6.PROTO_ICMP6 or h.next_header == ipv6.PROTO_FRAGMENT:
            continue
        hdr, body = icmp6.parse(payload[offset:], h.src, h.dst)
        if hdr.type == type_:
            out.append((h, hdr, bytes(body)))
    return out


def ra_frame(prefix: bytes = PREFIX, plen: int = 64, lifetime: int = 1800,
             valid: int = 86400, preferred: int = 14400, extra: bytes = b"") -> bytes:
    opts = (ndp.opt_source_lladdr(ROUTER_MAC) + ndp.opt_prefix(prefix, plen, valid, preferred)
            + ndp.opt_mtu(1400) + ndp.opt_rdnss(600, [ip_bytes("2001:db8:1::53")]) + extra)
    msg = ndp.build_ra(ROUTER_LL, ipv6.ALL_NODES, router_lifetime=lifetime, options=opts)
    return frame6(ROUTER_LL, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, msg, hop=255)


def ping6(lan: Lan, i: int, dst: bytes, size: int = 0, timeout: float = 10) -> list[Any]:
    replies: list[Any] = []
    stack = lan.stacks[i]
    assert stack.icmp6 is not None
    ep = stack.icmp6.ping(dst, replies.append, payload=bytes(range(256)) * (size // 256)
                          + bytes(size % 256) if size else b"hello")
    lan.run_until(lambda: bool(replies), timeout)
    ep.close()
    return replies


def test_link_local_dad_and_ping() -> None:
    lan = lan6()
    a, b = lan.stacks
    for s in (a, b):
        (entry,) = s.interfaces[0].ipv6
        assert entry.state == "preferred" and entry.origin == "link"
        assert entry.addr in s.local_addresses
        assert s.counters["ndp.tx_dad"] == 1
    replies = ping6(lan, 0, ll(b))
    assert replies and replies[0][0] == ll(b) and replies[0][2] == b"hello"
    # b learnt a from a's NS (STALE, RFC 4861 7.2.3); a has b REACHABLE.
    (entry_ab,) = a.ipv6.ndp.entries()
    assert entry_ab["state"] == "REACHABLE" and entry_ab["mac"] == "02:00:00:00:00:02"


def test_slaac_default_route_mtu_rdnss_from_router() -> None:
    lan = lan6(3)
    router = lan.sniffer("router")
    router.inject(ra_frame())
    lan.run(3.0)
    addrs = []
    for s in lan.stacks:
        glob = [a for a in s.interfaces[0].ipv6 if a.origin == "slaac"]
        assert len(glob) == 1 and glob[0].state == "preferred"
        assert glob[0].addr[:8] == PREFIX[:8]
        # Stable privacy (RFC 7217): not the EUI-64 of the MAC.
        assert glob[0].addr[8:] != ipv6.eui64_iid(s.interfaces[0].mac)
        assert s.ipv6.routes.lookup(ip_bytes("2001:db8:99::1")).gateway == ROUTER_LL
        assert s.ipv6.path_mtu(ip_bytes("2001:db8:99::1"), s.interfaces[0]) == 1400
        assert ip_bytes("2001:db8:1::53") in s.ipv6.ndp.dns_servers
        addrs.append(glob[0].addr)
    assert len(set(addrs)) == 3
    assert ping6(lan, 0, addrs[1]) and ping6(lan, 2, addrs[0])
    # MLDv2 reports for the solicited-node groups went out.
    reports = icmp6_of(router, icmp6.MLDV2_REPORT)
    groups = [body[4:20] for _, _, body in reports]
    # RFC 3810 6.1: each state change reported twice (robustness variable 2).
    assert groups.count(ipv6.solicited_node(addrs[0])) == 2


def test_dad_detects_a_duplicate(caplog: pytest.LogCaptureFixture) -> None:
    lan = lan6()
    a, b = lan.stacks
    addr = ip_bytes("2001:db8::7")
    a.ipv6.add_address(a.interfaces[0], addr, 64)
    lan.run(3.0)
    assert addr in a.local_addresses
    caplog.set_level(logging.ERROR, "femtotcp.ipv6")
    entry = b.ipv6.add_address(b.interfaces[0], addr, 64)
    lan.run(3.0)
    assert entry.state == "duplicate"
    assert addr not in b.local_addresses and addr in a.local_addresses
    assert b.counters["ndp.dad_conflict"] == 1
    assert any("2001:db8::7" in r.getMessage() and "duplicate" in r.getMessage()
               for r in caplog.records)


def test_nud_moves_through_its_states_and_re_resolves() -> None:
    cfg = StackConfig()
    lan = lan6(config=cfg)
    a, b = lan.stacks
    assert ping6(lan, 0, ll(b))
    nd = a.ipv6.ndp
    n = nd.caches[a.interfaces[0]][ll(b)]
    assert n.state == "REACHABLE"
    lan.run(cfg.ndp_reachable + 1)
    assert nd.entries()[0]["state"] == "STALE"
    a.ipv6.output(ll(b), ipv6.PROTO_NONE, b"")
    assert n.state == "DELAY"
    lan.run(cfg.ndp_delay_first_probe + 0.1)
    assert n.state in ("PROBE", "REACHABLE")
    lan.run(1.0)
    assert n.state == "REACHABLE"     # b answered the unicast probe
    # Now b is gone: STALE -> DELAY -> PROBE -> removed.
    lan.devices[1].set_receiver(lambda frame: None)
    lan.run(cfg.ndp_reachable + 1)
    a.ipv6.output(ll(b), ipv6.PROTO_NONE, b"")
    lan.run(cfg.ndp_delay_first_probe + cfg.ndp_unicast_solicit * cfg.ndp_retrans + 1)
    assert ll(b) not in nd.caches[a.interfaces[0]]
    assert a.counters["ndp.probe_failed"] == 1


def test_fragments_both_ways() -> None:
    lan = lan6()
    a, b = lan.stacks
    replies = ping6(lan, 0, ll(b), size=4000)
    assert replies and len(replies[0][2]) == 4000
    assert a.counters["ipv6.tx_fragments"] >= 3 and b.counters["ipv6.tx_fragments"] >= 3
    assert a.counters["ipv6.reassembled"] == 1 and b.counters["ipv6.reassembled"] == 1


# -- hostile and rule-breaking packets ------------------------------------------------

A_MAC = b"\x02\0\0\0\0\x01"


def _target(lan: Lan) -> tuple[Stack, bytes, Sniffer]:
    a = lan.stacks[0]
    sniffer = lan.sniffer("peer")
    answer_ns(sniffer, ROUTER_LL)
    # An NS with our link-layer address: the stack learns us (STALE) and answers.
    dst = ll(a)
    group = ipv6.solicited_node(dst)
    sniffer.inject(frame6(ROUTER_LL, group, ipv6.PROTO_ICMP6,
                          ndp.build_ns(ROUTER_LL, group, dst, ROUTER_MAC), 255))
    lan.run(0.01)
    assert icmp6_of(sniffer, icmp6.NEIGHBOR_ADVERTISEMENT)
    sniffer.clear()
    return a, dst, sniffer


def answer_ns(sniffer: Sniffer, addr: bytes) -> None:
    """Make the sniffer a neighbour: it answers NS for ``addr`` with a solicited NA."""
    record = sniffer._receive

    def receive(frame: bytes) -> None:
        record(frame)
        got = parse6(frame)
        if got is None or got[0].next_header != ipv6.PROTO_ICMP6 or got[1][0] != 135:
            return
        h, payload = got
        if payload[8:24] == addr and h.src != ipv6.UNSPECIFIED:
            na = ndp.build_na(addr, h.src, addr, solicited=True, target_lladdr=ROUTER_MAC)
            sniffer.inject(frame6(addr, h.src, ipv6.PROTO_ICMP6, na, 255, dst_mac=frame[6:12]))

    sniffer.port.set_receiver(receive)


def _echo(src: bytes, dst: bytes, data: bytes = b"x" * 8) -> bytes:
    return icmp6.build_echo(src, dst, icmp6.ECHO_REQUEST, 7, 1, data)


def test_rh0_dropped_with_parameter_problem() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    rh0 = ipv6ext.build_routing(ipv6.PROTO_ICMP6, 0, 1, bytes(4) + ip_bytes("2001:db8::9"))
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_ROUTING, rh0 + _echo(ROUTER_LL, dst),
                          dst_mac=A_MAC))
    lan.run(0.1)
    assert a.counters["ipv6.rh0"] == 1
    assert not icmp6_of(sniffer, icmp6.ECHO_REPLY)
    (err,) = icmp6_of(sniffer, icmp6.PARAMETER_PROBLEM)
    assert err[1].code == 0 and err[1].pointer == 42


def test_unknown_option_and_next_header_answered_by_the_rules() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    # Option type 0x80 (bits 10): discard and Parameter Problem code 2.
    dest = ipv6ext.build_dest_options(ipv6.PROTO_ICMP6, [(0x80, b"ab")])
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS, dest + _echo(ROUTER_LL, dst),
                          dst_mac=A_MAC))
    # Option type 0x3e (bits 00): skipped, the echo answered.
    dest = ipv6ext.build_dest_options(ipv6.PROTO_ICMP6, [(0x3E, b"ab")])
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS, dest + _echo(ROUTER_LL, dst),
                          dst_mac=A_MAC))
    # Next header 253 (experimental): Parameter Problem code 1 at byte 6.
    sniffer.inject(frame6(ROUTER_LL, dst, 253, b"12345678", dst_mac=A_MAC))
    lan.run(0.1)
    codes = sorted((e[1].code, e[1].pointer) for e in icmp6_of(sniffer, icmp6.PARAMETER_PROBLEM))
    assert codes == [(1, 6), (2, 42)]
    assert len(icmp6_of(sniffer, icmp6.ECHO_REPLY)) == 1
    assert a.counters["ipv6.unknown_option"] == 1 and a.counters["ipv6.unknown_next_header"] == 1


def test_hostile_packets_dropped_and_counted() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    eth = ethernet.build(A_MAC, ROUTER_MAC, ethernet.ETH_IPV6, b"")
    good = ipv6.build(ROUTER_LL, dst, ipv6.PROTO_ICMP6, _echo(ROUTER_LL, dst))
    cases = {
        # payload length past the data
        "ipv6.truncated": good[:4] + (4000).to_bytes(2, "big") + good[6:],
        # Hop-by-Hop length byte 255: 2048 bytes claimed, 8 present
        "ipv6.ext_truncated": ipv6.build(ROUTER_LL, dst, ipv6.PROTO_HOPOPTS,
                                         bytes((58, 255)) + bytes(6)),
        # an option running past the header's end
        "ipv6.bad_option_length": ipv6.build(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS,
                                             bytes((58, 0, 0x3E, 9, 0, 0, 0, 0))),
        # an ICMPv6 echo of 6 bytes
        "icmp6.truncated": ipv6.build(ROUTER_LL, dst, ipv6.PROTO_ICMP6, b"\x80\0\0\0\0\0"),
        # a Hop-by-Hop header after another header
        "ipv6.hbh_not_first": ipv6.build(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS,
                                         bytes((0, 0, 1, 4, 0, 0, 0, 0))
                                         + bytes((58, 0, 1, 4, 0, 0, 0, 0))),
    }
    for packet in cases.values():
        sniffer.inject(eth + packet)
    # Destination Options claiming 16 bytes with 8 present (past the end).
    sniffer.inject(eth + ipv6.build(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS,
                                    bytes((58, 1, 1, 4, 0, 0, 0, 0))))
    # ND option of length 0 (a loop), and an RA whose prefix length is 200.
    na = bytearray(ndp.build_na(ROUTER_LL, dst, ROUTER_LL, target_lladdr=ROUTER_MAC))
    na[-7] = 0
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_ICMP6, _resum(bytes(na), dst), 255,
                          dst_mac=A_MAC))
    ra = bytearray(ndp.build_ra(ROUTER_LL, ipv6.ALL_NODES,
                                options=ndp.opt_prefix(PREFIX, 64, 100, 100)))
    ra[8 + 8 + 2] = 200
    sniffer.inject(frame6(ROUTER_LL, ipv6.ALL_NODES, ipv6.PROTO_ICMP6,
                          _resum(bytes(ra), ipv6.ALL_NODES), 255))
    # ND with a hop limit below 255 (forwarded).
    sniffer.inject(frame6(ROUTER_LL, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, ra_frame()[54:], 64))
    lan.run(0.1)
    for reason in cases:
        assert a.counters[reason] == (2 if reason == "ipv6.ext_truncated" else 1), reason
    assert a.counters["ndp.bad_option_length"] == 1
    assert a.counters["ndp.bad_prefix_length"] == 1
    assert a.counters["ndp.bad_hop_limit"] == 1
    assert a.counters["stack.internal_error"] == 0
    assert not [x for x in a.interfaces[0].ipv6 if x.origin == "slaac"]
    sniffer.clear()
    sniffer.inject(eth + good)           # still alive: a good echo is answered
    lan.run(0.1)
    assert len(icmp6_of(sniffer, icmp6.ECHO_REPLY)) == 1
    assert a.ipv6.reassembly.stats() == {"datagrams": 0, "bytes": 0}


def _resum(message: bytes, dst: bytes) -> bytes:
    """``message`` with its ICMPv6 checksum recomputed (after a test edited it)."""
    body = bytearray(message)
    body[2:4] = b"\0\0"
    csum = ipv6.upper_checksum(ROUTER_LL, dst, ipv6.PROTO_ICMP6, body)
    body[2:4] = csum.to_bytes(2, "big")
    return bytes(body)


def test_icmp6_error_rate_limit_holds() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    for _ in range(50):
        sniffer.inject(frame6(ROUTER_LL, dst, 253, b"12345678", dst_mac=A_MAC))
    lan.run(0.01)
    sent = len(icmp6_of(sniffer, icmp6.PARAMETER_PROBLEM))
    burst = a.config.icmp_burst_per_dest
    assert sent == burst
    assert a.counters["icmp6.error_rate_limited"] == 50 - burst


def _frag(dst: bytes, data: bytes, offset: int, more: bool, ident: int = 9) -> bytes:
    payload = ipv6ext.build_fragment(ipv6.PROTO_ICMP6, offset, more, ident) + data
    return frame6(ROUTER_LL, dst, ipv6.PROTO_FRAGMENT, payload, dst_mac=A_MAC)


def test_reassembly_overlap_timeout_and_limits() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    echo = _echo(ROUTER_LL, dst, bytes(2000))
    # An overlapping piece discards the datagram (RFC 5722).
    sniffer.inject(_frag(dst, echo[:1024], 0, True, 1))
    sniffer.inject(_frag(dst, echo[1016:2008], 1016, False, 1))
    # A first fragment alone times out with Time Exceeded code 1.
    sniffer.inject(_frag(dst, echo[:1024], 0, True, 2))
    # The whole datagram in two pieces is answered.
    sniffer.inject(_frag(dst, echo[:1024], 0, True, 3))
    sniffer.inject(_frag(dst, echo[1024:], 1024, False, 3))
    lan.run(0.1)
    assert a.counters["ipv6.frag_overlap"] == 1
    assert a.counters["icmp6.echo_replied"] == 1 and a.counters["ipv6.reassembled"] == 1
    lan.run(a.config.ipv6_reasm_timeout + 1)
    (te,) = icmp6_of(sniffer, icmp6.TIME_EXCEEDED)
    assert te[1].code == 1
    assert a.counters["ipv6.reasm_timeout"] == 2   # the dead overlap one and ident 2
    # Bounded in datagrams.
    for ident in range(a.config.reasm_max_datagrams + 10):
        sniffer.inject(_frag(dst, echo[:1024], 0, True, 100 + ident))
    lan.run(0.1)
    assert a.ipv6.reassembly.stats()["datagrams"] == a.config.reasm_max_datagrams
    assert a.counters["ipv6.reasm_table_full"] == 10
    # A first fragment without the whole header chain (RFC 7112): dropped.
    sniffer.inject(_frag(dst, b"", 0, True, 5))
    lan.run(0.1)
    assert a.counters["ipv6.incomplete_chain"] == 1


def test_packet_too_big_lowers_the_path_mtu_never_below_1280() -> None:
    lan = lan6(2)
    a, b = lan.stacks
    sniffer = lan.sniffer("peer")
    far = ip_bytes("2001:db8:5::1")
    src = ll(a)
    quoted = ipv6.build(src, far, ipv6.PROTO_ICMP6, _echo(src, far, bytes(1400)))
    for mtu in (1400, 600):
        ptb = icmp6.build_packet_too_big(ROUTER_LL, src, mtu, quoted)
        sniffer.inject(frame6(ROUTER_LL, src, ipv6.PROTO_ICMP6, ptb, dst_mac=A_MAC))
        lan.run(0.1)
    assert a.ipv6.pmtu[far][0] == 1280
    assert a.ipv6.path_mtu(far, a.interfaces[0]) == 1280


def test_redirect_only_from_the_current_router() -> None:
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    sniffer.inject(ra_frame())
    lan.run(3.0)
    far = ip_bytes("2001:db8:77::1")
    better = ip_bytes("fe80::99")
    for src in (ip_bytes("fe80::66"), ROUTER_LL):
        msg = ndp.build_redirect(src, dst, better, far, target_lladdr=b"\x02\0\0\0\0\x99")
        sniffer.inject(frame6(src, dst, ipv6.PROTO_ICMP6, msg, 255, dst_mac=A_MAC))
        lan.run(0.1)
    assert a.counters["ndp.redirect_not_from_router"] == 1
    assert a.counters["ndp.redirect_accepted"] == 1
    assert a.ipv6.routes.lookup(far).gateway == better


def test_modules_removable() -> None:
    # Without icmp6: neighbour discovery still works, echo is not answered.
    lan = make_lan(2, modules=["arp", "ipv4", "ipv6"])
    lan.run(3.0)
    a, b = lan.stacks
    assert a.icmp6 is None and any(x.usable for x in a.interfaces[0].ipv6)
    a.ipv6.output(ll(b), ipv6.PROTO_ICMP6, _echo(ll(a), ll(b)))
    lan.run(1.0)
    assert b.counters["icmp6.module_not_loaded"] == 1
    assert a.ipv6.ndp.entries()[0]["state"] == "REACHABLE"
    # Without ipv6: an IPv6 frame is an unknown ethertype.
    lan2 = make_lan(1)
    lan2.sniffer("peer").inject(frame6(ROUTER_LL, ipv6.ALL_NODES, 59, b"", dst_mac=A_MAC))
    lan2.run(0.1)
    assert lan2.stacks[0].counters["eth.unknown_ethertype"] == 1


def test_ra_flood_keeps_state_bounded_and_bad_prefixes_ignored() -> None:
    lan = lan6(1)
    a = lan.stacks[0]
    sniffer = lan.sniffer("router")
    sniffer.inject(ra_frame())
    lan.run(3.0)
    timers = len(a.timers)
    for _ in range(300):
        sniffer.inject(ra_frame())
    # A multicast prefix and a prefix inside ::ffff:0:0/96 make no address.
    sniffer.inject(ra_frame(prefix=ip_bytes("ff05::"), lifetime=0))
    lan.run(0.5)
    assert len(a.timers) <= timers + 2
    assert a.counters["ndp.rx_ra"] == 302 and a.counters["ndp.prefix_multicast"] == 1
    assert a.counters["stack.internal_error"] == 0
    assert len([x for x in a.interfaces[0].ipv6 if x.origin == "slaac"]) == 1
    assert not a.ipv6.ndp.routers          # router lifetime 0 in the last RA
    assert a.ipv6.routes.lookup(ip_bytes("2001:db8:99::1")) is None


def test_another_nodes_dad_probe_makes_a_tentative_address_duplicate() -> None:
    lan = lan6(1)
    a = lan.stacks[0]
    sniffer = lan.sniffer("peer")
    addr = ip_bytes("2001:db8::42")
    entry = a.ipv6.add_address(a.interfaces[0], addr, 64)
    group = ipv6.solicited_node(addr)
    # Before our own first probe (its random delay) another node probes the address.
    sniffer.inject(frame6(ipv6.UNSPECIFIED, group, ipv6.PROTO_ICMP6,
                          ndp.build_ns(ipv6.UNSPECIFIED, group, addr, nonce=b"abcdef"), 255))
    lan.run(0.0)
    assert entry.state == "duplicate"
    assert addr not in a.local_addresses


def test_temporary_addresses_preferred_as_sources_and_regenerated() -> None:
    cfg = StackConfig(ipv6_temporary=True, ipv6_temp_preferred=100.0, ipv6_temp_valid=300.0)
    lan = lan6(1, config=cfg)
    a = lan.stacks[0]
    lan.sniffer("router").inject(ra_frame())
    lan.run(3.0)
    iface = a.interfaces[0]
    stable = [x for x in iface.ipv6 if x.origin == "slaac"]
    temps = [x for x in iface.ipv6 if x.origin == "temporary"]
    assert len(stable) == 1 and len(temps) == 1 and temps[0].state == "preferred"
    assert temps[0].addr[:8] == PREFIX[:8] and temps[0].addr != stable[0].addr
    far = ip_bytes("2001:db8:99::1")
    assert a.ipv6.source_for(iface, far) == temps[0].addr
    # Lifetimes from the settings (less the desync factor), not the prefix's.
    assert temps[0].valid_until - a.now <= 300 and temps[0].preferred_until - a.now <= 100
    first = temps[0]
    lan.run(first.preferred_until - a.now + 2)
    temps = [x for x in iface.ipv6 if x.origin == "temporary"]
    assert first.state == "deprecated" and len(temps) == 2
    new = next(x for x in temps if x is not first)
    assert new.state == "preferred" and a.ipv6.source_for(iface, far) == new.addr
    lan.run(first.valid_until - a.now + 1)
    assert first not in iface.ipv6 and first.addr not in a.local_addresses
    # Without the option there are none.
    lan2 = lan6(1)
    lan2.sniffer("router").inject(ra_frame())
    lan2.run(3.0)
    assert not [x for x in lan2.stacks[0].interfaces[0].ipv6 if x.origin == "temporary"]


def test_removing_the_last_address_of_a_prefix_removes_its_route() -> None:
    lan = lan6(1)
    a = lan.stacks[0]
    iface = a.interfaces[0]
    net = ip_bytes("2001:db8:3::9")
    a.ipv6.add_address(iface, ip_bytes("2001:db8:3::1"), 64)
    a.ipv6.add_address(iface, ip_bytes("2001:db8:3::2"), 64)
    lan.run(3.0)
    assert a.ipv6.routes.lookup(net) is not None
    a.ipv6.remove_address(iface, ip_bytes("2001:db8:3::1"))
    assert a.ipv6.routes.lookup(net) is not None       # ::2 still holds the prefix
    a.ipv6.remove_address(iface, ip_bytes("2001:db8:3::2"))
    assert a.ipv6.routes.lookup(net) is None
    assert ip_bytes("2001:db8:3::2") not in a.local_addresses


def test_an_ra_withdrawing_a_prefix_leaves_a_static_addresss_route() -> None:
    """A prefix that is on-link both by a static address and by an RA keeps
    its route when the RA withdraws it (valid lifetime 0) or lets it expire:
    only routes learned from RAs go, as on Linux."""
    lan = lan6(1)
    a = lan.stacks[0]
    iface = a.interfaces[0]
    a.ipv6.add_address(iface, PREFIX[:8] + bytes(7) + b"\x07", 64)
    lan.run(3.0)
    peer = PREFIX[:8] + bytes(7) + b"\x09"
    router = lan.sniffer("router")
    router.inject(ra_frame(valid=30, preferred=20))
    lan.run(1.0)
    assert a.ipv6.routes.lookup(peer) is not None
    router.inject(ra_frame(valid=0, preferred=0))
    lan.run(1.0)
    route = a.ipv6.routes.lookup(peer)
    assert route is not None and route.gateway is None and route.origin != "ra"
    router.inject(ra_frame(valid=5, preferred=5))
    lan.run(10.0)                                   # the RA's prefix expires
    route = a.ipv6.routes.lookup(peer)
    assert route is not None and route.gateway is None and route.origin != "ra"


def test_the_ipv6_modules_load_no_openssl() -> None:
    """RFC 7217 IIDs, fragment identifications and jitter come from BLAKE2s and
    os.urandom: an IPv6 stack never maps libcrypto (secrets/hashlib would)."""
    import subprocess
    import sys

    code = ("import femtotcp.stack.stack as s, sys\n"
            "st = s.Stack('x', modules=['ipv6', 'icmp6'])\n"
            "print(sorted(m for m in sys.modules if m in "
            "('_hashlib', '_ssl', 'hashlib', 'secrets')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_extension_headers_repeat_any_number_of_times() -> None:
    """RFC 8200 4.1: headers in any order, any number of times (Linux answers an
    echo behind ten Destination Options headers; so do we)."""
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    chain = b"".join(ipv6ext.build_dest_options(ipv6.PROTO_DSTOPTS, []) for _ in range(9))
    chain += ipv6ext.build_dest_options(ipv6.PROTO_ICMP6, [])
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_DSTOPTS, chain + _echo(ROUTER_LL, dst),
                          dst_mac=A_MAC))
    lan.run(0.1)
    assert len(icmp6_of(sniffer, icmp6.ECHO_REPLY)) == 1


@pytest.mark.parametrize("dst_mac", [b"\xff" * 6, ipv6.multicast_mac(ipv6.ALL_NODES)])
def test_link_layer_group_frames_draw_no_error_and_no_tcp_answer(dst_mac: bytes) -> None:
    """A packet to our unicast address in a link-layer broadcast or multicast
    frame: RFC 4443 2.4 (e.3, e.4) forbids an ICMPv6 error about it (no Port
    Unreachable), and TCP takes no such segment (Linux's tcp_v6_rcv drops
    what is not PACKET_HOST): neither a SYN-ACK nor a reset. An echo is still
    answered (as Linux)."""
    from femtotcp.wire import tcp, udp
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    assert a.tcp is not None
    a.tcp.listen(bytes(16), 7)
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_UDP,
                          udp.build(ROUTER_LL, dst, 4000, 9, b"x"), dst_mac=dst_mac))
    for port in (7, 9):
        sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_TCP,
                              tcp.build(ROUTER_LL, dst, 4000, port, 1, 0, tcp.SYN, 1000),
                              dst_mac=dst_mac))
    sniffer.inject(frame6(ROUTER_LL, dst, ipv6.PROTO_ICMP6, _echo(ROUTER_LL, dst),
                          dst_mac=dst_mac))
    lan.run(0.1)
    assert not icmp6_of(sniffer, icmp6.DEST_UNREACHABLE)
    assert not [f for f in sniffer.frames
                if (got := parse6(f)) is not None and got[0].next_header == ipv6.PROTO_TCP]
    assert a.counters["ipv6.tcp_link_multicast"] == 2
    assert a.counters["icmp6.error_suppressed"] == 1
    assert len(icmp6_of(sniffer, icmp6.ECHO_REPLY)) == 1


def test_fragmented_neighbour_discovery_is_ignored() -> None:
    """RFC 6980 5: an NS in an atomic fragment or in two fragments draws no NA
    (Linux's suppress_frag_ndisc); the same NS whole is answered."""
    lan = lan6(1)
    a, dst, sniffer = _target(lan)
    group = ipv6.solicited_node(dst)
    msg = ndp.build_ns(ROUTER_LL, group, dst, ROUTER_MAC)
    atomic = ipv6ext.build_fragment(ipv6.PROTO_ICMP6, 0, False, 1) + msg
    first = ipv6ext.build_fragment(ipv6.PROTO_ICMP6, 0, True, 2) + msg[:16]
    second = ipv6ext.build_fragment(ipv6.PROTO_ICMP6, 16, False, 2) + msg[16:]
    for payload in (atomic, first, second):
        sniffer.inject(frame6(ROUTER_LL, group, ipv6.PROTO_FRAGMENT, payload, 255))
    lan.run(0.1)
    assert not icmp6_of(sniffer, icmp6.NEIGHBOR_ADVERTISEMENT)
    assert a.counters["ndp.fragmented"] == 2
    sniffer.inject(frame6(ROUTER_LL, group, ipv6.PROTO_ICMP6, msg, 255))
    lan.run(0.1)
    assert len(icmp6_of(sniffer, icmp6.NEIGHBOR_ADVERTISEMENT)) == 1
