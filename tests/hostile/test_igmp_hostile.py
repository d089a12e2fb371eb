"""Hostile IGMP: random and mutated messages (short, bad checksums, bad counts,
every type) to a stack that joined groups never raise and are counted under
named drops; a query flood changes deadlines, never grows state or the
number of reports."""

from __future__ import annotations

import socket

from femtolan import SNIFF_IP, SNIFF_MAC, Lan, Sniffer, make_lan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femtotcp.core.counters import DROP, kind_of
from femtotcp.stack import mcast
from femtotcp.stack.ipv4 import multicast_mac
from femtotcp.wire import ethernet, igmp, ipv4
from femtotcp.wire.checksum import checksum

G = socket.inet_aton("239.1.2.3")
US = socket.inet_aton("192.0.2.1")


def _lan() -> tuple[Lan, Sniffer]:
    lan = make_lan(1)
    sniff = lan.sniffer()
    mcast.join(lan.stacks[0], mcast.Memberships(), G, 0, US)
    lan.run(2)
    sniff.clear()
    return lan, sniff


def _frame(message: bytes, dst: bytes) -> bytes:
    return ethernet.build(multicast_mac(dst), SNIFF_MAC, ethernet.ETH_IPV4,
                          igmp.packet(SNIFF_IP, dst, message))


def _seeds() -> list[bytes]:
    return [igmp.build_v3_query(), igmp.build_v3_query(G, 5, [SNIFF_IP]),
            igmp.build_v2(igmp.QUERY, bytes(4), 10), igmp.build_v2(igmp.V2_REPORT, G),
            igmp.build_v3_report([igmp.GroupRecord(igmp.MODE_IS_EXCLUDE, G, (SNIFF_IP,))])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(_seeds()), cut=st.integers(0, 64),
       flips=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=6),
       tail=st.binary(max_size=40), fix=st.booleans(), to_group=st.booleans())
def test_mutated_igmp_never_raises(seed: bytes, cut: int, flips: list[tuple[int, int]],
                                   tail: bytes, fix: bool, to_group: bool) -> None:
    lan, sniff = _lan()
    stack = lan.stacks[0]
    body = bytearray(seed[:cut] + tail if cut < len(seed) else seed + tail)
    for at, value in flips:
        if at < len(body):
            body[at] = value
    if fix and len(body) >= 4:
        body[2:4] = b"\0\0"
        body[2:4] = checksum(body).to_bytes(2, "big")
    sniff.inject(_frame(bytes(body), G if to_group else igmp.ALL_HOSTS))
    lan.run(30)
    counters = dict(stack.counters)
    assert counters.get("stack.internal_error", 0) == 0
    dropped = [k for k, v in counters.items() if k.startswith("igmp.") and v
               and kind_of(k) is DROP]
    assert all(k in counters for k in dropped)
    # Whatever came in, what went out is well-formed IGMP.
    for frame in sniff.frames:
        eth, payload = ethernet.parse(frame)
        if eth.src == SNIFF_MAC or eth.ethertype != ethernet.ETH_IPV4:
            continue
        hdr, data = ipv4.parse(payload)
        if hdr.proto == igmp.PROTO:
            igmp.parse(data)


def test_short_and_bad_messages_are_named_drops() -> None:
    lan, sniff = _lan()
    stack = lan.stacks[0]
    good = igmp.build_v3_query(G, 5)
    for raw in (good[:5], good[:2] + b"\0\0" + good[4:], good[:10]):
        sniff.inject(_frame(raw, G))
    lan.run(1)
    c = stack.counters
    assert (c["igmp.truncated"], c["igmp.bad_checksum"]) == (1, 1)
    assert c["igmp.bad_query_length"] == 1


def test_a_query_flood_keeps_one_answer_pending() -> None:
    lan, sniff = _lan()
    stack = lan.stacks[0]
    heap_before = len(stack.timers._heap)
    for i in range(5000):
        general = i % 2 == 0
        sniff.inject(_frame(igmp.build_v3_query(bytes(4) if general else G, 1 + i % 200,
                                                [] if general else [bytes([192, 0, 2, i % 250])]),
                            igmp.ALL_HOSTS if general else G))
        if i % 500 == 0:
            lan.run(0)
    lan.run(0)
    assert stack.counters["igmp.query"] == 5000
    st_ = stack.modules["igmp"].ifaces[lan.ifaces[0]]
    assert len(st_.queried) <= 1 and st_.general is not None
    assert len(stack.timers._heap) < heap_before + 600       # compacted, bounded
    lan.run(30)
    assert len(sniff.frames) < 50          # answers, not one per query
