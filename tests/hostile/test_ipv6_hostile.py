"""Hostile IPv6 input: random and mutated IPv6, ICMPv6, ND, MLD and fragment
frames fed to a stack never raise, never make it send a malformed packet, and
never grow its state past the caps (neighbour cache, pending queues,
reassembly, addresses, routes, PMTU entries)."""

from __future__ import annotations

import random

from femtolan import Lan, make_lan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femtotcp.stack import ndp as stack_ndp
from femtotcp.stack.ipv6 import PMTU_MAX_ENTRIES
from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mac_bytes, mld, ndp

MODULES = ["arp", "ipv4", "icmp4", "udp", "ipv6", "icmp6"]
PEER = ip_bytes("fe80::fe")
PEER_MAC = mac_bytes("02:00:00:00:00:fe")
US_MAC = mac_bytes("02:00:00:00:00:01")
US = ip_bytes("2001:db8::1")


def frame(src: bytes, dst: bytes, nh: int, payload: bytes, hop: int = 64) -> bytes:
    mac = ipv6.multicast_mac(dst) if dst[0] == 0xFF else US_MAC
    return ethernet.build(mac, PEER_MAC, ethernet.ETH_IPV6, ipv6.build(src, dst, nh, payload, hop))


def corpus() -> list[bytes]:
    echo = icmp6.build_echo(PEER, US, icmp6.ECHO_REQUEST, 1, 1, b"x" * 40)
    big = icmp6.build_echo(PEER, US, icmp6.ECHO_REQUEST, 1, 2, bytes(3000))
    group = ipv6.solicited_node(US)
    ra = ndp.build_ra(PEER, ipv6.ALL_NODES, options=(
        ndp.opt_source_lladdr(PEER_MAC) + ndp.opt_prefix(ip_bytes("2001:db8:5::"), 64, 600, 300)
        + ndp.opt_mtu(1400) + ndp.opt_rdnss(60, [US]) + ndp.opt_dnssl(60, ["example.org"])))
    quoted = ipv6.build(US, ip_bytes("2001:db8:9::9"), 58, echo)
    frames = [
        frame(PEER, US, 58, echo),
        frame(PEER, ipv6.ALL_NODES, 58, icmp6.build_echo(PEER, ipv6.ALL_NODES, 128, 1, 1)),
        frame(PEER, group, 58, ndp.build_ns(PEER, group, US, PEER_MAC), 255),
        frame(ipv6.UNSPECIFIED, group, 58, ndp.build_ns(ipv6.UNSPECIFIED, group, US), 255),
        frame(PEER, US, 58, ndp.build_na(PEER, US, PEER, solicited=True,
                                          target_lladdr=PEER_MAC), 255),
        frame(PEER, ipv6.ALL_NODES, 58, ra, 255),
        frame(PEER, US, 58, ndp.build_redirect(PEER, US, ip_bytes("fe80::77"),
                                               ip_bytes("2001:db8:9::9"), PEER_MAC, quoted), 255),
        frame(PEER, US, 58, icmp6.build_packet_too_big(PEER, US, 1300, quoted)),
        frame(PEER, US, 58, icmp6.build_error(PEER, US, 1, 4, quoted)),
        frame(PEER, US, 60, ipv6ext.build_dest_options(58, [(0x3E, b"ab")]) + echo),
        frame(PEER, US, 0, ipv6ext.build_hop_by_hop(58, [ipv6ext.router_alert()]) + echo),
        frame(PEER, US, 43, ipv6ext.build_routing(58, 0, 1, bytes(4) + US) + echo),
        frame(PEER, US, 253, b"12345678"),
        ethernet.build(ipv6.multicast_mac(ipv6.ALL_NODES), PEER_MAC, ethernet.ETH_IPV6,
                       mld.packet(PEER, ipv6.ALL_NODES,
                                  mld.build_query(PEER, ipv6.ALL_NODES, 1000))),
    ]
    for nh, piece in ipv6ext.fragment(58, big, 1280, 0x1234):
        frames.append(frame(PEER, US, nh, piece))
    return frames


CORPUS = corpus()


def fix_icmp6(out: bytearray) -> None:
    """Recompute the ICMPv6 checksum of a packet whose next header is ICMPv6."""
    if len(out) < 14 + 40 + 4 or out[12:14] != b"\x86\xdd":
        return
    plen = int.from_bytes(out[18:20], "big")
    body = out[54:54 + plen]
    upper, offset = 0, 0
    try:
        upper, offset = ipv6ext.skip_chain(out[20], body)
    except Exception:   # noqa: BLE001 - a broken chain: leave it broken
        return
    if upper != 58 or len(body) < offset + 4:
        return
    msg = bytearray(body[offset:])
    msg[2:4] = b"\0\0"
    c = ipv6.upper_checksum(bytes(out[22:38]), bytes(out[38:54]), 58, msg)
    start = 54 + offset
    out[start + 2:start + 4] = c.to_bytes(2, "big")


def mutate(rng: random.Random, data: bytes, rounds: int) -> bytes:
    out = bytearray(data)
    for _ in range(rounds):
        n = len(out)
        op = rng.randrange(5)
        if op == 0 and n:
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            out[rng.randrange(n)] = rng.choice([0, 1, 2, 7, 8, 0x3A, 0x80, 0xC0, 0xFF])
        elif op == 2 and n > 1:
            i = rng.randrange(n - 1)
            out[i:i + 2] = rng.choice([0, 1, 8, 40, 1280, 0xFFFF, n]).to_bytes(2, "big")
        elif op == 3:
            del out[rng.randrange(n + 1):]
        else:
            out += rng.randbytes(rng.randrange(1, 32))
    if rng.random() < 0.7:
        fix_icmp6(out)
    return bytes(out)


def new_host() -> tuple[Lan, Stack, list[bytes]]:
    lan = make_lan(1, modules=MODULES)
    stack = lan.stacks[0]
    assert stack.ipv6 is not None
    stack.ipv6.add_address(stack.interfaces[0], US, 64)
    lan.run(3.0)
    sent = lan.capture(0)
    return lan, stack, sent


def check(stack: Stack, sent: list[bytes]) -> None:
    assert stack.counters["stack.internal_error"] == 0
    ipv6_mod = stack.ipv6
    assert ipv6_mod is not None
    cfg = stack.config
    for cache in ipv6_mod.ndp.caches.values():
        assert len(cache) <= cfg.arp_cache_max
        for n in cache.values():
            assert len(n.pending) <= cfg.arp_pending_max
    stats = ipv6_mod.reassembly.stats()
    assert stats["datagrams"] <= cfg.reasm_max_datagrams
    assert stats["bytes"] <= cfg.reasm_max_bytes
    assert len(stack.interfaces[0].ipv6) <= 2 + stack_ndp.MAX_PREFIXES * 4
    assert len(ipv6_mod.routes.routes) <= 2 + stack_ndp.MAX_PREFIXES + stack_ndp.MAX_REDIRECTS + 1
    assert len(ipv6_mod.pmtu) <= PMTU_MAX_ENTRIES
    assert len(ipv6_mod.ndp.routers) <= stack_ndp.MAX_ROUTERS
    for f in sent:
        eth, body = ethernet.parse(f)
        assert eth.src == US_MAC
        if eth.ethertype != ethernet.ETH_IPV6:
            continue
        hdr, payload = ipv6.parse(body)
        assert len(body) <= 1500 and hdr.src[0] != 0xFF
        assert hdr.dst != ipv6.UNSPECIFIED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), picks=st.lists(st.integers(0, 10_000), min_size=1,
                                                       max_size=12))
def test_mutated_ipv6_frames(seed: int, picks: list[int]) -> None:
    rng = random.Random(seed)
    lan, stack, sent = new_host()
    port = lan.sniffer("peer", answer_arp=False)
    for p in picks:
        port.inject(mutate(rng, CORPUS[p % len(CORPUS)], rng.randrange(1, 6)))
    lan.run(2.0)
    check(stack, sent)
    lan.run(120.0)       # timers: reassembly, NUD, lifetimes
    check(stack, sent)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_random_ipv6_payloads(data: bytes) -> None:
    lan, stack, sent = new_host()
    port = lan.sniffer("peer", answer_arp=False)
    port.inject(ethernet.build(US_MAC, PEER_MAC, ethernet.ETH_IPV6, data))
    port.inject(ethernet.build(US_MAC, PEER_MAC, ethernet.ETH_IPV6,
                               ipv6.build(PEER, US, data[0] if data else 59, data[1:])))
    lan.run(1.0)
    check(stack, sent)
