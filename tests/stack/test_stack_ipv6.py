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
        if upper != ipv6.PROTO_ICMP6:
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
    groups = {body[4:20] for _, _, body in reports}
    assert ipv6.solicited_node(addrs[0]) in groups


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
