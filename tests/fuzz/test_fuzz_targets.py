"""The fuzz targets (fuzz/targets.py) work without atheris: their seeds, built from the
project's own builders, parse as valid, and the stack target's live world is what it
claims to be. ``make fuzz`` runs them at scale; this keeps them from rotting."""

from __future__ import annotations

import pytest

from fuzz.targets import TARGETS
from fuzz.world import reset

PARSERS = [n for n in TARGETS if n != "stack"]


@pytest.mark.parametrize("name", PARSERS)
def test_parser_seeds_are_accepted(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds
    assert [target.run(s) for s in seeds] == [None] * len(seeds)


def test_a_truncated_seed_is_a_named_drop() -> None:
    for name in ("arp", "ipv4", "udp", "tcp", "dns", "dhcp"):
        target = TARGETS[name]
        seed = target.seeds()[0]
        reason = target.run(seed[:9])
        assert reason is not None and reason.startswith(name.rstrip("4") if name != "ipv4"
                                                        else "ipv4"), (name, reason)


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
