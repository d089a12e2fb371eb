"""The ARP neighbour cache (RFC 826, RFC 1122 2.3.2.1) and RFC 5227 conflict detection,
on stacks joined by an in-memory switch with a virtual clock."""

from __future__ import annotations

import errno
import logging

import pytest
from femtolan import (
    BCAST_MAC,
    SNIFF_IP,
    SNIFF_MAC,
    addr,
    arp_frame,
    mac,
    make_lan,
    parse_arp,
    parse_ip,
)

from femtotcp.stack.config import StackConfig
from femtotcp.wire import arp, ethernet, ip_bytes, mac_bytes

STRANGER_IP = ip_bytes("192.0.2.77")
STRANGER_MAC = mac_bytes("02:00:00:00:00:77")
NOBODY = ip_bytes("192.0.2.99")


def failures_reported(stack) -> list[tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """Record (source port, destination port, errno) of every delivery failure the
    stack reports to UDP, before UDP decides what its sockets hear (Linux: a
    failed resolution is a soft host-unreachable that a UDP socket never sees)."""
    seen: list[tuple[int, int, int]] = []
    udp_handler = stack.ip_error_handlers[17]

    def record(src, dst, inner, err, icmp_type, icmp_code, mtu):  # type: ignore[no-untyped-def]
        seen.append((int.from_bytes(inner[0:2], "big"), int.from_bytes(inner[2:4], "big"),
                     err))
        udp_handler(src, dst, inner, err, icmp_type, icmp_code, mtu)

    stack.ip_error_handlers[17] = record
    return seen


def cache(stack, i: int = 0) -> dict:  # type: ignore[no-untyped-def]
    return stack.arp.caches.get(stack.interfaces[i], {})


def test_resolution_between_two_stacks() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    replies: list = []
    a.icmp.ping(addr(1), replies.append)
    assert lan.run_until(lambda: bool(replies), 5)
    n = cache(a)[addr(1)]
    assert n.mac == mac(1) and n.state == "REACHABLE"
    # b learned a from the request aimed at it.
    assert cache(b)[addr(0)].mac == mac(0)
    assert a.counters["arp.tx_request"] >= 1 and b.counters["arp.tx_reply"] == 1
    entries = a.arp.entries()
    assert {"address": "192.0.2.2", "mac": "02:00:00:00:00:02"}.items() <= entries[0].items()


def test_resolved_neighbour_is_not_asked_again() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    for _ in range(5):
        ep.sendto(b"x", addr(1), 9)
        lan.run(0.1)
    assert a.counters["arp.tx_request"] == 2     # the gratuitous ARP and one request


def test_gratuitous_arp_on_start() -> None:
    lan = make_lan(0)
    sniff = lan.sniffer()
    stack = lan.add_stack(0)
    lan.run(0)
    arps = sniff.arps()
    assert len(arps) == 1
    eth, pkt = arps[0]
    assert eth.dst == BCAST_MAC and eth.src == mac(0)
    assert pkt.op == arp.REQUEST and pkt.spa == pkt.tpa == addr(0) and pkt.sha == mac(0)
    assert stack.started


def test_no_arp_before_start() -> None:
    lan = make_lan(0)
    sniff = lan.sniffer()
    lan.add_stack(0, start=False)
    lan.run(5)
    assert sniff.arps() == []


def test_answers_within_a_second_of_start() -> None:
    lan = make_lan(0)
    sniff = lan.sniffer()
    lan.add_stack(0)
    sniff.inject(arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, b"\0" * 6, addr(0)))
    lan.run(1.0)
    replies = [(e, p) for e, p in sniff.arps() if p.op == arp.REPLY]
    assert len(replies) == 1
    eth, pkt = replies[0]
    assert eth.dst == SNIFF_MAC and pkt.sha == mac(0) and pkt.spa == addr(0)
    assert pkt.tha == SNIFF_MAC and pkt.tpa == SNIFF_IP


def test_no_reply_for_other_addresses() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, b"\0" * 6, NOBODY))
    lan.run(1)
    assert [p for _, p in sniff.arps() if p.op == arp.REPLY] == []
    assert lan.stacks[0].counters["arp.not_for_us"] == 1


# -- what the cache learns from ------------------------------------------------------

def test_learns_from_request_aimed_at_us() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, STRANGER_IP, b"\0" * 6, addr(0)))
    lan.run(0)
    assert cache(lan.stacks[0])[STRANGER_IP].mac == STRANGER_MAC


def test_learns_from_reply_aimed_at_us() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REPLY, STRANGER_MAC, STRANGER_IP, mac(0), addr(0),
                           eth_dst=mac(0)))
    lan.run(0)
    assert cache(lan.stacks[0])[STRANGER_IP].mac == STRANGER_MAC


def test_does_not_learn_from_arp_for_others() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, STRANGER_IP, b"\0" * 6, NOBODY))
    sniff.inject(arp_frame(arp.REPLY, STRANGER_MAC, STRANGER_IP, SNIFF_MAC, SNIFF_IP))
    lan.run(0)
    assert STRANGER_IP not in cache(lan.stacks[0])


def test_gratuitous_arp_does_not_create_entries() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, STRANGER_IP, b"\0" * 6, STRANGER_IP))
    lan.run(0)
    assert STRANGER_IP not in cache(lan.stacks[0])


def test_gratuitous_arp_updates_a_known_neighbour() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, STRANGER_IP, b"\0" * 6, addr(0)))
    lan.run(0)
    moved = mac_bytes("02:00:00:00:00:78")
    sniff.inject(arp_frame(arp.REQUEST, moved, STRANGER_IP, b"\0" * 6, STRANGER_IP))
    lan.run(0)
    assert cache(stack)[STRANGER_IP].mac == moved
    assert stack.counters["arp.gratuitous_update"] == 1


@pytest.mark.parametrize("sha", [BCAST_MAC, mac_bytes("01:00:5e:00:00:01"),
                                 mac_bytes("33:33:00:00:00:01"), b"\0" * 6])
def test_never_learns_a_group_sender_mac(sha: bytes) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, sha, STRANGER_IP, b"\0" * 6, addr(0),
                           eth_src=STRANGER_MAC))
    sniff.inject(arp_frame(arp.REPLY, sha, STRANGER_IP, mac(0), addr(0), eth_dst=mac(0),
                           eth_src=STRANGER_MAC))
    lan.run(0)
    assert STRANGER_IP not in cache(stack)
    assert stack.counters["arp.bad_sender_mac"] == 2
    assert [p for _, p in sniff.arps() if p.op == arp.REPLY] == []


@pytest.mark.parametrize("spa", ["224.0.0.1", "255.255.255.255", "127.0.0.1", "239.1.2.3"])
def test_never_learns_a_group_sender_ip(spa: str) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, ip_bytes(spa), b"\0" * 6, addr(0)))
    lan.run(0)
    assert ip_bytes(spa) not in cache(stack)
    assert stack.counters["arp.bad_sender_ip"] == 1


def test_rarp_is_ignored_and_counted_as_unknown_ethertype() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    rarp = ethernet.build(BCAST_MAC, STRANGER_MAC, ethernet.ETH_RARP,
                          arp.build(arp.REQUEST, STRANGER_MAC, b"\0" * 4, STRANGER_MAC,
                                    b"\0" * 4)[:6] + b"\x00\x03" + bytes(20))
    sniff.clear()
    sniff.inject(rarp)
    lan.run(1)
    assert stack.counters["eth.unknown_ethertype"] == 1
    assert sniff.frames == []


@pytest.mark.parametrize(("mutate", "counter"), [
    (lambda p: b"\x00\x06" + p[2:], "arp.bad_htype"),
    (lambda p: p[:2] + b"\x86\xdd" + p[4:], "arp.bad_ptype"),
    (lambda p: p[:4] + b"\x08" + p[5:], "arp.bad_length"),
    (lambda p: p[:5] + b"\x10" + p[6:], "arp.bad_length"),
    (lambda p: p[:6] + b"\x00\x03" + p[8:], "arp.bad_opcode"),
    (lambda p: p[:20], "arp.truncated"),
])
def test_malformed_arp_counted_and_not_answered(mutate, counter: str) -> None:  # type: ignore[no-untyped-def]
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    good = arp.build(arp.REQUEST, STRANGER_MAC, STRANGER_IP, b"\0" * 6, addr(0))
    sniff.clear()
    sniff.inject(ethernet.build(BCAST_MAC, STRANGER_MAC, ethernet.ETH_ARP, mutate(good)))
    lan.run(1)
    assert stack.counters[counter] == 1
    assert sniff.frames == [] and STRANGER_IP not in cache(stack)


# -- requests: rate limit, failure, pending queue ------------------------------------

def requests_for(sniff, target: bytes) -> list:  # type: ignore[no-untyped-def]
    return [p for _, p in sniff.arps() if p.op == arp.REQUEST and p.tpa == target
            and p.spa != target]


def test_requests_rate_limited_then_ehostunreach() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    ep = stack.udp.open()
    ep.connect(NOBODY, 9)
    failures = failures_reported(stack)
    times: list[float] = []
    sniff.port.set_receiver(lambda f: (sniff.frames.append(f), times.append(lan.loop.now())))
    assert ep.send(b"first") == 0
    for _ in range(20):               # more traffic must not mean more requests
        lan.run(0.25)
        ep.send(b"more")
    lan.run(5)
    reqs = requests_for(sniff, NOBODY)
    assert len(reqs) >= 3
    req_times = [t for t, f in zip(times, sniff.frames, strict=True)
                 if f[12:14] == b"\x08\x06" and f[38:42] == NOBODY]
    # Never more than one request a second for one target.
    assert all(t2 - t1 >= 1.0 - 1e-9 for t1, t2 in zip(req_times, req_times[1:], strict=False))
    assert stack.counters["arp.resolution_failed"] >= 1
    assert failures[0][2] == errno.EHOSTUNREACH
    assert ep.take_error() is None     # soft for UDP, as on Linux (RFC 1122 4.1.3.3)


def test_three_requests_then_failure() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    ep = stack.udp.open()
    ep.connect(NOBODY, 9)
    failures = failures_reported(stack)
    ep.send(b"x")
    lan.run(10)
    assert len(requests_for(sniff, NOBODY)) == 3
    assert stack.counters["arp.resolution_failed"] == 1
    assert failures == [(ep.local[1], 9, errno.EHOSTUNREACH)]
    # A host unreachable is a soft error: a connected UDP socket does not hear
    # it (Linux udp_err without IP_RECVERR); TCP's connect does (tests/api).
    assert ep.take_error() is None
    assert stack.counters["udp.icmp_error_soft"] == 1
    assert NOBODY not in cache(stack)


def test_unconnected_udp_endpoint_gets_no_error() -> None:
    """As on Linux, only connected UDP sockets hear about delivery failures."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    ep = stack.udp.open()
    ep.sendto(b"x", NOBODY, 9)
    lan.run(10)
    assert stack.counters["arp.resolution_failed"] == 1
    assert ep.take_error() is None and not ep.readable
    assert stack.counters["udp.icmp_error_unconnected"] == 1


def test_failed_fragmented_datagram_reported_once_to_its_sender_only() -> None:
    """Only the first fragment names the sender: later fragments' data must not be
    read as ports (here it spells the ports of an unrelated connected endpoint)."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    bystander = stack.udp.open(port=40000)
    bystander.connect(NOBODY, 1234)
    sender = stack.udp.open(port=40001)
    sender.connect(NOBODY, 1234)
    payload = bytearray(3000)
    payload[1472:1476] = (40000).to_bytes(2, "big") + (1234).to_bytes(2, "big")
    failures = failures_reported(stack)
    assert sender.send(bytes(payload)) == 0
    lan.run(10)
    assert failures == [(40001, 1234, errno.EHOSTUNREACH)]
    assert bystander.take_error() is None
    assert stack.counters["udp.icmp_error_unconnected"] == 0


def test_failed_resolution_can_be_retried() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    ep = stack.udp.open()
    ep.sendto(b"x", NOBODY, 9)
    lan.run(10)
    sniff.clear()
    ep.sendto(b"y", NOBODY, 9)
    lan.run(0)
    assert len(requests_for(sniff, NOBODY)) == 1


def test_pending_queue_is_bounded_and_flushed_on_reply() -> None:
    cfg = StackConfig(arp_pending_max=4)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    sniff = lan.sniffer(answer_arp=False)
    ep = stack.udp.open()
    for i in range(10):
        ep.sendto(b"%d" % i, SNIFF_IP, 9)
    lan.run(0)
    n = cache(stack)[SNIFF_IP]
    assert len(n.pending) == 4
    assert stack.counters["arp.pending_overflow"] == 6
    sniff.clear()
    sniff.inject(arp_frame(arp.REPLY, SNIFF_MAC, SNIFF_IP, mac(0), addr(0), eth_dst=mac(0)))
    lan.run(0)
    got = [f.payload[8:] for f in sniff.ip_frames()]
    assert got == [b"6", b"7", b"8", b"9"]          # the newest ones, in order
    assert all(f.eth.dst == SNIFF_MAC for f in sniff.ip_frames())
    assert not n.pending


def test_pending_queue_is_bounded_in_bytes() -> None:
    cfg = StackConfig(arp_pending_bytes=3000)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    ep = stack.udp.open()
    for _ in range(10):
        ep.sendto(b"x" * 972, SNIFF_IP, 9)          # 1000-byte IP packets
    lan.run(0)
    n = cache(stack)[SNIFF_IP]
    assert len(n.pending) == 3 and sum(map(len, n.pending)) == n.pending_bytes == 3000
    assert stack.counters["arp.pending_overflow"] == 7


def test_pending_queue_holds_a_64k_datagram() -> None:
    """The 45 fragments of a 64 KiB datagram wait together for the first resolution."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer(answer_arp=False)
    stack.udp.open().sendto(b"F" * 65507, SNIFF_IP, 9)
    lan.run(0)
    assert len(cache(stack)[SNIFF_IP].pending) == 45
    assert stack.counters["arp.pending_overflow"] == 0
    sniff.inject(arp_frame(arp.REPLY, SNIFF_MAC, SNIFF_IP, mac(0), addr(0), eth_dst=mac(0)))
    lan.run(0)
    assert len(sniff.ip_frames()) == 45


def test_cache_size_is_bounded() -> None:
    cfg = StackConfig(arp_cache_max=8)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    for i in range(40):
        ip = bytes([192, 0, 2, 100 + i])
        sniff.inject(arp_frame(arp.REQUEST, bytes([2, 0, 0, 1, 0, i]), ip, b"\0" * 6, addr(0)))
    lan.run(0)
    assert len(cache(stack)) <= 8


def test_cache_full_of_pending_entries_refuses_new_ones() -> None:
    cfg = StackConfig(arp_cache_max=4)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    ep = stack.udp.open()
    ep.connect(ip_bytes("192.0.2.200"), 9)
    for i in range(4):
        stack.udp.open().sendto(b"x", bytes([192, 0, 2, 100 + i]), 9)
    failures = failures_reported(stack)
    ep.send(b"x")
    lan.run(0)
    assert len(cache(stack)) == 4
    assert stack.counters["arp.cache_full"] >= 1
    assert failures == [(ep.local[1], 9, errno.EHOSTUNREACH)]


# -- aging ---------------------------------------------------------------------------

def test_unused_entries_age_out() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    ep.sendto(b"x", addr(1), 9)
    lan.run(1)
    assert addr(1) in cache(a)
    lan.run(a.config.arp_stale_timeout * 2 + 1)
    assert addr(1) not in cache(a)


def test_stale_entry_is_reconfirmed_by_unicast_probe() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    sent = lan.capture(0)
    ep = a.udp.open()
    ep.sendto(b"x", addr(1), 9)
    lan.run(1)
    lan.run(a.config.arp_reachable + 1)
    assert a.arp.entries()[0]["state"] == "STALE"
    sent.clear()
    ep.sendto(b"y", addr(1), 9)
    lan.run(0)
    # The datagram went straight out to the known MAC, without waiting...
    ips = [f for f in map(parse_ip, sent) if f is not None]
    assert [f.payload[8:] for f in ips] == [b"y"] and ips[0].eth.dst == mac(1)
    # ...and the reachability check is a unicast request to that MAC.
    probes = [(e, p) for e, p in map(parse_arp, sent) if p is not None and p.op == arp.REQUEST]
    assert len(probes) == 1
    eth, pkt = probes[0]
    assert eth.dst == mac(1) and pkt.op == arp.REQUEST and pkt.tpa == addr(1)
    assert pkt.tha == mac(1)
    lan.run(1)
    assert cache(a)[addr(1)].state == "REACHABLE"
    assert a.arp.entries()[0]["state"] == "REACHABLE"


def test_entry_in_use_survives_aging() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    for _ in range(30):
        ep.sendto(b"x", addr(1), 9)
        lan.run(10)
    assert addr(1) in cache(a)
    assert a.counters["arp.resolution_failed"] == 0


def test_entry_for_vanished_host_is_dropped() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.udp.open()
    ep.sendto(b"x", addr(1), 9)
    lan.run(1)
    lan.devices[1].up = False          # b's port goes dead
    lan.run(a.config.arp_reachable + 1)
    ep.sendto(b"y", addr(1), 9)
    lan.run(10)
    assert addr(1) not in cache(a)


# -- conflicts -----------------------------------------------------------------------

def test_arp_claiming_our_address_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    with caplog.at_level(logging.WARNING, logger="femtotcp.arp"):
        sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, addr(0), b"\0" * 6, addr(0)))
        lan.run(0)
    assert stack.counters["arp.address_conflict"] == 1
    assert "192.0.2.1" in caplog.text and "02:00:00:00:00:77" in caplog.text
    assert addr(0) not in cache(stack)
    # We defend the address once with an announcement (RFC 5227 2.4 (b))...
    defends = [p for _, p in sniff.arps() if p.spa == addr(0) and p.sha == mac(0)]
    assert len(defends) == 1
    # ...and neither defend nor log again within 10 seconds: a flood of claims
    # is counted, not written to the log frame by frame.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="femtotcp.arp"):
        for _ in range(50):
            sniff.inject(arp_frame(arp.REPLY, STRANGER_MAC, addr(0), mac(0), addr(0)))
        lan.run(5)
    assert stack.counters["arp.address_conflict"] == 51
    assert len([p for _, p in sniff.arps() if p.spa == addr(0) and p.sha == mac(0)]) == 1
    assert caplog.records == []
    lan.run(6)
    with caplog.at_level(logging.WARNING, logger="femtotcp.arp"):
        sniff.inject(arp_frame(arp.REPLY, STRANGER_MAC, addr(0), mac(0), addr(0)))
        lan.run(0)
    assert len(caplog.records) == 1
    assert len([p for _, p in sniff.arps() if p.spa == addr(0) and p.sha == mac(0)]) == 2


def test_acd_uses_a_free_address() -> None:
    cfg = StackConfig(acd=True)
    lan = make_lan(0)
    sniff = lan.sniffer()
    other = lan.add_stack(1)
    stack = lan.add_stack(0, config=cfg)
    lan.run(0)
    assert not stack.is_local(addr(0))           # tentative while probing
    lan.run(15)
    assert stack.is_local(addr(0))
    probes = [p for _, p in sniff.arps() if p.spa == b"\0\0\0\0" and p.tpa == addr(0)]
    announces = [p for _, p in sniff.arps() if p.spa == p.tpa == addr(0)]
    assert len(probes) == cfg.acd_probe_num and len(announces) == cfg.acd_announce_num
    assert stack.counters["arp.acd_conflict"] == 0
    replies: list = []
    other.icmp.ping(addr(0), replies.append)
    assert lan.run_until(lambda: bool(replies), 5)


def test_acd_does_not_answer_for_tentative_address() -> None:
    cfg = StackConfig(acd=True)
    lan = make_lan(0)
    sniff = lan.sniffer()
    lan.add_stack(0, config=cfg)
    sniff.inject(arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, b"\0" * 6, addr(0)))
    lan.run(0.5)
    assert [p for _, p in sniff.arps() if p.op == arp.REPLY] == []


def test_acd_refuses_an_address_in_use(caplog: pytest.LogCaptureFixture) -> None:
    cfg = StackConfig(acd=True)
    lan = make_lan(1)                         # 192.0.2.1 is taken by stack 0
    holder = lan.stacks[0]
    conflicts: list = []
    with caplog.at_level(logging.ERROR, logger="femtotcp.arp"):
        newcomer = lan.add_stack(5, config=cfg, ip="192.0.2.1/24", start=False)
        newcomer.arp.on_conflict = lambda iface, a, m: conflicts.append((a, m))
        newcomer.start()
        lan.run(15)
    assert newcomer.counters["arp.acd_conflict"] == 1
    assert conflicts == [(addr(0), mac(0))]
    assert newcomer.arp.conflicts == {addr(0): mac(0)}
    assert not newcomer.is_local(addr(0))
    assert newcomer.interfaces[0].ipv4 == []
    assert "in use" in caplog.text and "192.0.2.1" in caplog.text
    # The holder keeps its address and never learned the newcomer's MAC for it.
    assert holder.is_local(addr(0))
    assert cache(holder).get(addr(0)) is None


def test_acd_conflict_from_simultaneous_probe() -> None:
    """RFC 5227 2.1.1: a probe for the address we are probing is a conflict too."""
    cfg = StackConfig(acd=True)
    lan = make_lan(0)
    sniff = lan.sniffer()
    stack = lan.add_stack(0, config=cfg)
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, b"\0\0\0\0", b"\0" * 6, addr(0)))
    lan.run(15)
    assert stack.counters["arp.acd_conflict"] == 1
    assert not stack.is_local(addr(0))


def test_arp_probe_for_our_address_is_answered() -> None:
    """RFC 5227 2.1.1: answer a probe for an address we hold, so the prober backs off."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(arp_frame(arp.REQUEST, STRANGER_MAC, b"\0\0\0\0", b"\0" * 6, addr(0)))
    lan.run(0)
    replies = [(e, p) for e, p in sniff.arps() if p.op == arp.REPLY]
    assert len(replies) == 1
    eth, pkt = replies[0]
    assert eth.dst == STRANGER_MAC and pkt.tha == STRANGER_MAC
    assert pkt.sha == mac(0) and pkt.spa == addr(0)
    assert stack.counters["arp.probe_seen"] == 1
    assert stack.counters["arp.address_conflict"] == 0
    assert STRANGER_IP not in cache(stack) and b"\0\0\0\0" not in cache(stack)
