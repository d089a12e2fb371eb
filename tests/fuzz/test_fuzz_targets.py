"""The fuzz targets (fuzz/targets.py) work without atheris: their seeds, built from the
project's own builders, parse as valid, and the stack target's live world is what it
claims to be. ``make fuzz`` runs them at scale; this keeps them from rotting."""

from __future__ import annotations

import pytest

from fuzz.targets import TARGETS
from fuzz.world import reset

PARSERS = [n for n in TARGETS if n not in ("stack", "stack6")]
#: Seeds that reach a Parameter Problem on purpose (an unknown option whose
#: type says "send an error", a type 0 Routing header with segments left).
PROBLEM_SEEDS = {"ipv6ext": {"ipv6.unknown_option", "ipv6.rh0"}}


@pytest.mark.parametrize("name", PARSERS)
def test_parser_seeds_are_accepted(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds
    got = [target.run(s) for s in seeds]
    allowed = PROBLEM_SEEDS.get(name, set())
    assert [r for r in got if r is not None and r not in allowed] == []
    assert got.count(None) > len(got) // 2
    assert {r for r in got if r is not None} == allowed


def test_a_truncated_seed_is_a_named_drop() -> None:
    for name in ("arp", "ipv4", "udp", "tcp", "dns", "dhcp"):
        target = TARGETS[name]
        seed = target.seeds()[0]
        reason = target.run(seed[:9])
        assert reason is not None and reason.startswith(name.rstrip("4") if name != "ipv4"
                                                        else "ipv4"), (name, reason)


@pytest.mark.parametrize(("name", "cut", "prefix"), [
    ("ipv6", 30, "ipv6."), ("ipv6ext", 5, "ipv6."), ("icmp6", 5, "icmp6."),
    ("ndp", 12, "ndp."), ("mld", 12, "mld.")])
def test_a_truncated_ipv6_seed_is_a_named_drop(name: str, cut: int, prefix: str) -> None:
    target = TARGETS[name]
    seed = next(s for s in target.seeds() if len(s) > cut + 20 and target.run(s) is None)
    reason = target.run(seed[:cut])
    assert reason is not None and reason.startswith(prefix), reason


def test_the_stack_world_is_live() -> None:
    w = reset()
    assert w.conn.state == "ESTABLISHED" and w.accepted
    assert w.accepted[0].state == "ESTABLISHED"
    assert w.victim.resolver.lookups and w.in_flight() is not None
    assert w.client.state in ("SELECTING", "BOUND")


def test_stack_seeds_run_without_internal_errors() -> None:
    target = TARGETS["stack"]
    seeds = target.seeds()
    assert len(seeds) > 100
    reset()
    for s in seeds:
        assert target.before is not None
        target.before()
        target.run(s)          # raises InternalError if the stack swallowed one
    from fuzz.world import current
    w = current()
    assert w.victim.counters.get("stack.internal_error", 0) == 0
    # The seeds reach deep: the live connection, the responder, the DHCP server.
    c = w.victim.counters
    assert c["tcp.icmp_errors"] > 0 and c["dhcpd.tx_offer"] > 0


def test_adapted_tcp_segment_lands_on_the_live_connection() -> None:
    from femtotcp.wire import ethernet, ipv4, tcp
    from fuzz import world
    w = reset()
    before = w.conn.rcv_nxt
    seg = tcp.build(world.PEER_IP, world.VICTIM_IP, 1, 2, 0, 0, tcp.ACK | tcp.PSH, 1000,
                    b"adapted")
    frame = ethernet.build(world.VICTIM_MAC, world.PEER_MAC, ethernet.ETH_IPV4,
                           ipv4.build(world.PEER_IP, world.VICTIM_IP, tcp.PROTO, seg))
    w.inject(bytes([2 | 4]) + frame)
    assert w.conn.rcv_nxt == before + len(b"adapted")


# -- the IPv6 world (fuzz/world6.py) --------------------------------------------------------

def test_the_ipv6_world_is_live() -> None:
    from femtotcp.wire import ipv6
    from fuzz import world6
    w = world6.reset()
    assert ipv6.is_link_local(w.victim_ll) and w.victim_g[:8] == world6.PREFIX[:8]
    assert sorted(a.origin for a in w.victim.interfaces[0].ipv6 if a.state == "preferred") \
        == ["link", "slaac", "temporary"]
    assert len(w.conn.key[0]) == 16 and w.conn.state == "ESTABLISHED"
    assert w.accepted and w.accepted[0].state == "ESTABLISHED"
    assert len(w.accepted[0].key[0]) == 16
    assert w.udp.sockname == (bytes(16), world6.UDP_PORT)
    assert w.in_flight() is not None and list(w.victim.resolver.lookups)[0][1] == 28
    pending = [e for e in w.victim.ipv6.ndp.entries() if e["state"] == "INCOMPLETE"]
    assert [e["address"] for e in pending] == ["2001:db8:1::dead:1"] and pending[0]["pending"]
    assert w.victim.ipv6.reassembly.stats()["datagrams"] == 1


def test_stack6_seeds_run_without_internal_errors() -> None:
    from fuzz import world6
    target = TARGETS["stack6"]
    seeds = target.seeds()
    assert len(seeds) > 100
    world6.reset()
    for s in seeds:
        assert target.before is not None
        target.before()
        target.run(s)          # raises InternalError if the stack swallowed one
    c = world6.current().victim.counters
    assert c.get("stack.internal_error", 0) == 0
    # The seeds reach deep: the connection's ICMP errors, reassembly, ND, MLD, echo.
    for name in ("tcp.icmp_errors", "ipv6.reassembled", "ndp.rx_ra", "ndp.rx_ns",
                 "mld.query", "icmp6.echo_replied", "udp.rx", "tcp.passive_opens"):
        assert c[name] > 0, name


def _inject6(w: object, ctl: int, src: bytes, nh: int, payload: bytes, hop: int = 64) -> None:
    from femtotcp.wire import ethernet, ipv6
    from fuzz import world6
    frame = ethernet.build(world6.VICTIM_MAC, world6.PEER_MAC, ethernet.ETH_IPV6,
                           ipv6.build(src, bytes(16), nh, payload, hop))
    w.inject(bytes([ctl]) + frame)   # type: ignore[attr-defined]


def test_adapted_ipv6_segment_lands_on_the_live_connection() -> None:
    from femtotcp.wire import tcp
    from fuzz import world6
    w = world6.reset()
    before = w.conn.rcv_nxt
    seg = tcp.build(bytes(16), bytes(16), 1, 2, 0, 0, tcp.ACK | tcp.PSH, 1000, b"adapted")
    _inject6(w, 2 | 4, bytes(16), 6, seg)
    assert w.conn.rcv_nxt == before + len(b"adapted")


def test_adapted_na_resolves_the_pending_neighbour_and_it_is_restarted() -> None:
    from femtotcp.wire import ndp
    from fuzz import world6
    w = world6.reset()
    na = ndp.build_na(bytes(16), bytes(16), bytes(16), solicited=True,
                      target_lladdr=world6.PEER_MAC)
    sent = w.victim.counters["udp.tx"]
    _inject6(w, 1 << 6 | 2 | 4, bytes(16), 58, na, hop=255)
    entries = {e["address"]: e for e in w.victim.ipv6.ndp.entries()}
    # Resolved, its datagram sent; then the upkeep started the next one.
    assert entries["2001:db8:1::dead:1"]["state"] == "REACHABLE"
    assert entries["2001:db8:1::dead:2"]["state"] == "INCOMPLETE"
    assert w.victim.counters["udp.tx"] == sent + 1


def test_adapted_fragment_joins_the_reassembly_in_progress() -> None:
    from femtotcp.wire import ipv6ext
    from fuzz import world6
    w = world6.reset()
    last = ipv6ext.build_fragment(17, 72, False, 0) + b"z" * 8
    _inject6(w, 2, bytes(16), 44, last)
    assert w.victim.counters["ipv6.reassembled"] == 1
    assert w.victim.ipv6.reassembly.stats()["datagrams"] == 1     # restarted


def test_the_ipv6_world_lives_on_without_a_route_to_its_peer() -> None:
    """An RA may end the on-link prefix and the default router (RFC 4861
    6.3.4): the victim then has no route to the peer, connect fails with
    ENETUNREACH, and the harness carries on (a crash the stack6 fuzzer found
    in the harness, not the stack) until an RA brings the route back."""
    from femtotcp.wire import ethernet, ipv6, ndp
    from fuzz import world6
    w = world6.reset()

    def ra(valid: int, router_lifetime: int) -> bytes:
        opts = ndp.opt_prefix(world6.PREFIX, 64, valid, 0, autonomous=False)
        msg = ndp.build_ra(world6.ROUTER_LL, ipv6.ALL_NODES, router_lifetime=router_lifetime,
                           options=opts)
        return ethernet.build(ipv6.multicast_mac(ipv6.ALL_NODES), world6.ROUTER_MAC,
                              ethernet.ETH_IPV6, ipv6.build(world6.ROUTER_LL, ipv6.ALL_NODES,
                                                            ipv6.PROTO_ICMP6, msg, 255))
    w.inject(bytes([4]) + ra(0, 0))
    w.conn.abort()
    w.inject(bytes([4]) + ra(0, 0))           # the upkeep's connect: ENETUNREACH
    assert w.conn is None and w.victim.ipv6.routes.lookup(w.peer_g) is None
    assert w.victim.counters["ndp.rx_ra"] >= 2
    w.inject(bytes([4]) + ra(86400, 1800))
    assert w.conn is not None and w.conn.state == "ESTABLISHED"


def test_gro_seeds_reach_the_merge() -> None:
    """The gro target's seeds are read batches whose runs merge (and one spoiled
    segment that splits its run), so the fuzzer starts inside the merge."""
    from femtotcp.core.counters import Counters
    from femtotcp.stack import gro
    merged = 0
    for seed in TARGETS["gro"].seeds():
        frames, i = [], 1
        while i + 3 <= len(seed):
            n = int.from_bytes(seed[i + 1:i + 3], "big")
            frames.append((seed[i + 3:i + 3 + n], seed[i] & 1))
            i += 3 + n
        counters = Counters()
        gro.coalesce(frames, bool(seed[0] & 1), 1514, counters)
        merged += counters["gro.merged_frames"]
    assert merged >= 5
