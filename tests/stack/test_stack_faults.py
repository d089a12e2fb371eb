"""Ping, UDP and fragmentation between stacks whose links lose, duplicate, reorder
and corrupt frames (the seeded fault injector), with retries in the test where loss
makes a single exchange unreliable. Every run is deterministic for its seed."""

from __future__ import annotations

from typing import Any

import pytest
from femtolan import Lan, addr, make_lan

from femtotcp.services.echo import start_udp_echo

FAULTS: dict[str, Any] = {"loss": 0.1, "duplicate": 0.1, "reorder": 0.2}
SEEDS = [1, 2, 3]


def lossy_lan(seed: int, n: int = 2, **extra: Any) -> Lan:
    return make_lan(n, faults={**FAULTS, **extra}, seed=seed)


def ping_with_retries(lan: Lan, i: int, j: int, seq: int, payload: bytes,
                      tries: int = 20, wait: float = 1.0) -> tuple[int, bytes]:
    """Ping until a reply for ``seq`` comes back; return (attempts, reply payload)."""
    ep = lan.stacks[i].icmp.open_echo()
    try:
        for attempt in range(1, tries + 1):
            ep.send(addr(j), seq, payload)
            end = lan.loop.now() + wait
            while lan.loop.now() < end:
                lan.run_until(lambda: bool(ep.queue), end - lan.loop.now())
                while (r := ep.recv()) is not None:
                    if r[1] == seq:
                        assert r[0] == addr(j)
                        return attempt, r[2]
        raise AssertionError(f"no echo reply for seq {seq} after {tries} tries")
    finally:
        ep.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_ping_under_faults(seed: int) -> None:
    lan = lossy_lan(seed)
    attempts = []
    for seq in range(20):
        n, payload = ping_with_retries(lan, 0, 1, seq, b"seq %d" % seq)
        assert payload == b"seq %d" % seq
        attempts.append(n)
    faults = sum(dev.counters["out.lost"] + dev.counters["in.lost"] for dev in lan.devices)
    assert faults > 0                              # the injector really was at work
    assert max(attempts) > 1                       # and some pings needed a retry
    assert sum(dev.counters["out.duplicated"] for dev in lan.devices) > 0
    assert sum(dev.counters["out.reordered"] for dev in lan.devices) > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_udp_request_response_under_faults(seed: int) -> None:
    lan = lossy_lan(seed)
    a, b = lan.stacks
    start_udp_echo(b, 7)
    client = a.udp.open()
    for k in range(30):
        request = b"request %d" % k
        for _ in range(20):
            client.sendto(request, addr(1), 7)
            lan.run_until(lambda: client.readable, 0.5)
            answers = []
            while (r := client.recv()) is not None:
                answers.append(r[0])
            # Late answers to earlier requests may show up (duplicates, retries).
            assert all(x.startswith(b"request ") for x in answers)
            if request in answers:
                break
        else:
            raise AssertionError(f"no answer to {request!r}")


def transfer(lan: Lan, src: int, dst: int, payload: bytes, port: int,
             tries: int = 30) -> int:
    """Send ``payload`` from host src to host dst until it arrives whole."""
    tx = lan.stacks[src].udp.open()
    rx = lan.stacks[dst].udp.open(port=port)
    try:
        for attempt in range(1, tries + 1):
            assert tx.sendto(payload, addr(dst), port) == 0
            lan.run_until(lambda: rx.readable, 1.0)
            got = []
            while (r := rx.recv()) is not None:
                got.append(r[0])
            # Whatever arrives is a whole, intact copy of what was sent.
            assert all(g == payload for g in got)
            if got:
                return attempt
        raise AssertionError("the datagram never arrived whole")
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_fragmented_5000_bytes_both_ways_under_faults(seed: int) -> None:
    lan = lossy_lan(seed)
    a, b = lan.stacks
    for k in range(5):
        payload = bytes((k * 7 + i) & 0xFF for i in range(5000))
        transfer(lan, 0, 1, payload, 9000 + k)
        transfer(lan, 1, 0, payload[::-1], 9100 + k)
    assert a.counters["ipv4.reassembled"] >= 5 and b.counters["ipv4.reassembled"] >= 5
    # Once every timer has run, nothing is left half-reassembled.
    lan.run(a.config.reasm_timeout + 1)
    for s in (a, b):
        assert s.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}


@pytest.mark.parametrize("seed", SEEDS)
def test_corruption_is_caught_by_checksums(seed: int) -> None:
    lan = lossy_lan(seed, corrupt=0.3)
    a, b = lan.stacks
    start_udp_echo(b, 7)
    client = a.udp.open()
    sent = {b"msg %d " % k + bytes(range(200)) for k in range(40)}
    got: list[bytes] = []
    for msg in sorted(sent):
        client.sendto(msg, addr(1), 7)
        lan.run(0.2)
        while (r := client.recv()) is not None:
            got.append(r[0])
    lan.run(2)
    while (r := client.recv()) is not None:
        got.append(r[0])
    assert got and all(g in sent for g in got)      # nothing corrupted got through
    drops = sum(s.counters[k] for s in (a, b) for k in (
        "udp.bad_checksum", "ipv4.bad_checksum", "icmp4.bad_checksum", "arp.bad_htype",
        "arp.bad_ptype", "arp.bad_length", "arp.bad_opcode"))
    corrupted = sum(d.counters["out.corrupted"] + d.counters["in.corrupted"]
                    for d in lan.devices)
    assert corrupted > 0 and drops > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_three_hosts_ping_each_other_under_faults(seed: int) -> None:
    lan = lossy_lan(seed, n=3)
    for i in range(3):
        for j in range(3):
            if i != j:
                _, payload = ping_with_retries(lan, i, j, 1, b"%d->%d" % (i, j))
                assert payload == b"%d->%d" % (i, j)


def test_large_ping_under_faults() -> None:
    lan = lossy_lan(4)
    sent = bytes(range(256)) * 15 + bytes(range(160))   # 4000 bytes, no two fragments alike
    n, payload = ping_with_retries(lan, 0, 1, 1, sent, tries=40)
    assert payload == sent
