"""Hostile TCP segments against established and closing connections.

Sequences of well-checksummed but adversarial segments (any flags, sequence
and acknowledgment numbers near and far from the window, window scale
extremes, broken and overlong option lists, urgent pointers, SACK blocks
pointing anywhere) are thrown at a connection that has data in flight both
ways. Invariants checked after each run: no exception escaped the stack
(``stack.internal_error`` stays 0), SND.UNA <= SND.NXT <= SND.MAX, the receive
buffer and the out-of-order queue stay within their bounds, and a clean
transfer still works on a fresh connection afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto" / "tcp"))

from tcp_harness import (  # noqa: E402
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Transfer,
    connect_pair,
    lan_with_peer,
    open_passive,
)

from femtotcp.wire import tcp  # noqa: E402

MASK = 0xFFFFFFFF

OPTION_BLOBS = [
    b"",
    tcp.build_options(ts=(5, 0)),
    tcp.build_options(sack_blocks=[(0, 0xFFFFFFFF)]),
    tcp.build_options(ts=(1, 1), sack_blocks=[(10, 5), (7, 7), (0x80000000, 1)]),
    b"\x05\x22" + b"\x00" * 34 + b"\x01" * 4,        # SACK claiming 4 blocks and more
    b"\x08\x0a" + b"\xff" * 8 + b"\x00\x00",         # timestamp far in the future
    b"\x02\x04\x00\x01\x03\x03\xff\x00",             # MSS 1, window scale 255
    b"\x00" * 40,
    b"\x01" * 40,
    b"\x1f\x02" * 20,                               # unknown options, minimal length
]

segment = st.tuples(
    st.sampled_from([ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST, RST | ACK, URG | ACK,
                     0, 0xFF, FIN, ACK | PSH | FIN]),
    st.integers(-200_000, 200_000),      # seq offset from the peer's next sequence number
    st.integers(-200_000, 200_000),      # ack offset from what the stack has sent
    st.integers(0, 3000),                # payload length
    st.integers(0, 0xFFFF),              # window
    st.integers(0, 0xFFFF),              # urgent pointer
    st.sampled_from(range(len(OPTION_BLOBS))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=25), st.booleans(), st.booleans())
def test_hostile_segment_sequences(segs: list[tuple[int, int, int, int, int, int, int]],
                                   closing: bool, with_ts: bool) -> None:
    lan, peer = lan_with_peer()
    options = tcp.build_options(mss=1460, wscale=14, sack_perm=True,
                                ts=(100, 0) if with_ts else None)
    p = open_passive(lan, peer, options=options)
    conn = p.conn
    conn.send(b"q" * 20_000)                         # data in flight towards the peer
    if closing:
        conn.shutdown(1)
    lan.run(0)
    peer.received()
    for flags, dseq, dack, plen, window, urgent, opt in segs:
        payload = bytes([plen & 0xFF]) * plen
        opts = OPTION_BLOBS[opt]
        if len(opts) + 20 > 60:
            opts = opts[:40]
        peer.send(flags, (p.snd + dseq) & MASK, (p.rcv + dack) & MASK, payload, window=window,
                  options=opts, urgent=urgent, run=False)
    lan.run(0)
    lan.run(5)
    stack = peer.stack
    assert stack.counters["stack.internal_error"] == 0
    assert conn.snd_una <= conn.snd_nxt <= conn.snd_max or conn.state == "CLOSED"
    assert len(conn.rcv_buf) <= conn.rcvbuf + (1 << 14)
    assert len(conn.ooo) <= stack.tcp.config.ooo_max_segments
    assert conn.ooo.nbytes <= conn.rcvbuf
    # The stack still works for everyone else.
    from femtolan import make_lan
    lan2 = make_lan(2)
    ca, cb = connect_pair(lan2)
    t1, t2 = Transfer(ca, b"ok" * 5000), Transfer(cb, b"")
    t1.event()
    assert lan2.run_until(lambda: t2.eof, 30) and bytes(t2.got) == b"ok" * 5000


def _held(conn: object) -> int:
    """The memory a connection's receive buffer holds: its chunks, and the
    frame behind each chunk that is a view of one."""
    total = 0
    for c in conn.rcv_buf.chunks:   # type: ignore[attr-defined]
        total += sys.getsizeof(c)
        if isinstance(c, memoryview):
            total += len(c.obj)
    return total


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 1460), min_size=1, max_size=8), st.integers(500, 2000))
def test_tiny_segments_do_not_grow_memory_beyond_the_bytes(sizes: list[int], count: int) -> None:
    """A peer sends many in-order segments, most of them tiny, to a program that
    does not read: the receive buffer holds the bytes within its bound, and the
    memory it holds stays within twice the bytes (small payloads are copied
    together, a view never pins a frame much larger than its payload)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    seq = p.snd
    sent = bytearray()
    for i in range(count):
        n = sizes[i % len(sizes)] if i % 50 == 0 else 1
        payload = bytes((len(sent) + k) & 0xFF for k in range(n))
        peer.send(ACK, seq, p.rcv, payload, run=False)
        seq += n
        sent += payload
        if i % 64 == 63:
            lan.run(0)
    lan.run(0)
    held = len(conn.rcv_buf)
    assert 0 < held <= conn.rcvbuf + (1 << 14)
    assert held <= len(sent)
    assert _held(conn) <= 2 * held + 8192
    assert conn.recv(1 << 20) == sent[:held]       # in order, nothing lost or repeated


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=20))
def test_hostile_segments_at_a_listener(segs: list[tuple[int, int, int, int, int, int, int]]
                                        ) -> None:
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(b"\0\0\0\0", 80)
    for i, (flags, dseq, dack, plen, window, urgent, opt) in enumerate(segs):
        peer.send(flags, 1000 + dseq, dack, bytes(plen), window=window,
                  options=OPTION_BLOBS[opt][:40], urgent=urgent, sport=20000 + i % 3,
                  run=False)
    lan.run(0)
    lan.run(300)
    stack = peer.stack
    assert stack.counters["stack.internal_error"] == 0
    assert len(lst.syn_queue) == 0          # every half-open connection timed out
    assert all(c.state != "SYN_RECEIVED" for c in stack.tcp.connections())
