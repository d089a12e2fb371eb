"""The parts of TCP that need no stack: out-of-order queue, SACK scoreboard,
NewReno arithmetic, RTO estimation, ISNs, SYN cookies and ephemeral ports."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.proto.tcp.buffers import OutOfOrderQueue
from femtotcp.proto.tcp.congestion import NewReno, Scoreboard
from femtotcp.proto.tcp.isn import (
    IsnGenerator,
    SynCookies,
    decode_ts_options,
    encode_ts_options,
)
from femtotcp.proto.tcp.ports import EphemeralPorts
from femtotcp.proto.tcp.rtt import RttEstimator

A = bytes([192, 0, 2, 1])
B = bytes([192, 0, 2, 2])


# -- out-of-order queue --------------------------------------------------------------

def test_ooo_merges_and_releases_in_order() -> None:
    q = OutOfOrderQueue(max_blocks=64, max_bytes=1 << 20)
    data = bytes(range(256)) * 40
    # segments of 100 bytes starting at 1000, delivered in a shuffled order, minus the first
    pieces = [(1000 + i, data[i:i + 100]) for i in range(100, 3000, 100)]
    random.Random(1).shuffle(pieces)
    for seq, chunk in pieces:
        assert q.add(seq, chunk)
    assert len(q) == 1 and q.nbytes == 2900
    chunks, nxt = q.pop_ready(1000)
    assert chunks == [] and nxt == 1000         # the hole at 1000 is still open
    chunks, nxt = q.pop_ready(1100)
    assert b"".join(chunks) == data[100:3000] and nxt == 4000
    assert q.nbytes == 0 and len(q) == 0


def test_ooo_overlaps_keep_first_copy() -> None:
    q = OutOfOrderQueue()
    q.add(100, b"A" * 10)          # 100..110
    q.add(120, b"C" * 10)          # 120..130
    q.add(105, b"x" * 20)          # 105..125 overlaps both
    assert len(q) == 1
    chunks, nxt = q.pop_ready(100)
    assert bytes(chunks[0]) == b"A" * 10 + b"x" * 10 + b"C" * 10 and nxt == 130


def test_ooo_bounded_in_blocks_and_bytes() -> None:
    q = OutOfOrderQueue(max_blocks=3, max_bytes=1000)
    for i in range(3):
        assert q.add(1000 * (i + 1), b"z" * 10)
    assert not q.add(10_000, b"z")            # a fourth block
    assert q.add(1010, b"y" * 5)              # extending a block is fine
    assert not q.add(2010, b"q" * 2000)       # too many bytes
    assert q.dropped == 2
    assert q.nbytes == 35


def test_ooo_sack_blocks_most_recent_first() -> None:
    q = OutOfOrderQueue()
    q.add(100, b"a" * 10)
    q.add(300, b"b" * 10)
    q.add(200, b"c" * 10)
    assert q.sack_blocks(3) == [(200, 210), (300, 310), (100, 110)]
    q.add(310, b"d" * 10)
    assert q.sack_blocks(2) == [(300, 320), (200, 210)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 60)), max_size=40))
def test_ooo_random_reassembly(segments: list[tuple[int, int]]) -> None:
    data = bytes(random.Random(7).randbytes(500))
    q = OutOfOrderQueue(max_blocks=1000, max_bytes=10_000)
    covered = set()
    for off, n in segments:
        q.add(1 + off, data[off:off + n])
        covered.update(range(off, min(off + n, 500)))
    # blocks are sorted, disjoint, hold the right bytes
    last_end = -1
    for blk in q.blocks:
        assert blk.start > last_end and blk.end - blk.start == len(blk.data)
        assert bytes(blk.data) == data[blk.start - 1:blk.end - 1]
        last_end = blk.end
    assert q.nbytes == len(covered)


# -- SACK scoreboard -------------------------------------------------------------------

def test_scoreboard_merge_and_newly_sacked() -> None:
    sb = Scoreboard()
    assert sb.add(200, 300) == 100
    assert sb.add(250, 350) == 50
    assert sb.add(400, 500) == 100
    assert sb.add(350, 400) == 50           # joins the two ranges
    assert sb.starts == [200] and sb.ends == [500] and sb.sacked == 300
    sb.advance(250)
    assert sb.starts == [250] and sb.sacked == 250
    sb.advance(600)
    assert not sb and sb.sacked == 0


def test_scoreboard_islost_pipe_nextseg() -> None:
    mss = 100
    sb = Scoreboard()
    # una = 0, sent up to 1000; holes 0-100 and 300-400; sacked 100-300 and 400-600
    sb.add(100, 300)
    sb.add(400, 600)
    holes = sb.holes(0, mss, 3)
    # 300-400: 200 bytes sacked above -> not more than 2*MSS -> not lost
    # 0-100: 400 bytes sacked above -> lost
    assert holes == [(0, 100, True), (300, 400, False)]
    assert sb.first_lost(0, mss, 3)
    # pipe: above highest (600..1000) = 400, plus the not-lost hole 100 = 500
    assert sb.pipe(holes, 1000, 0) == 500
    # after retransmitting 0..100 (HighRxt = 100) it counts once more
    assert sb.pipe(holes, 1000, 100) == 600
    assert Scoreboard.next_hole(holes, 0, True) == (0, 100)
    assert Scoreboard.next_hole(holes, 100, True) is None
    assert Scoreboard.next_hole(holes, 100, False) == (300, 400)


def test_scoreboard_skip() -> None:
    sb = Scoreboard()
    sb.add(100, 200)
    sb.add(300, 400)
    assert sb.skip(50) == (50, 100)
    assert sb.skip(150) == (200, 300)
    assert sb.skip(350) == (400, -1)


def test_scoreboard_bounded() -> None:
    sb = Scoreboard(max_blocks=4)
    for i in range(10):
        sb.add(i * 100, i * 100 + 10)
    assert len(sb.starts) == 4


# -- congestion control ----------------------------------------------------------------

def test_newreno_slow_start_and_avoidance() -> None:
    cc = NewReno(1000, 10)
    assert cc.cwnd == 10_000
    cc.on_ack(5000)                       # byte counting, a stretch ACK counts fully
    assert cc.cwnd == 15_000
    cc.on_ack(1000)
    assert cc.cwnd == 16_000
    cc.ssthresh = 17_000
    cc.on_ack(5000)                       # ... but slow start stops at ssthresh
    assert cc.cwnd == 17_000
    cc.ssthresh = 1 << 62
    assert cc.on_loss(20_000) == 10_000
    cc.cwnd = cc.ssthresh
    for _ in range(10):
        cc.on_ack(1000)                   # one cwnd of bytes acked -> +1 SMSS
    assert cc.cwnd == 11_000
    cc.on_timeout(30_000, first=True)
    assert cc.cwnd == 1000 and cc.ssthresh == 15_000
    cc.on_timeout(30_000, first=False)
    assert cc.ssthresh == 15_000         # held on repeated timeouts (RFC 5681 3.1)
    cc.cwnd = 50_000
    cc.after_idle()
    assert cc.cwnd == 10_000


# -- RTO -------------------------------------------------------------------------------

def test_rto_rfc6298() -> None:
    r = RttEstimator(initial=1.0, rto_min=0.2, rto_max=60.0, granularity=0.001)
    assert r.rto == 1.0
    r.sample(0.1)
    assert r.srtt == 0.1 and r.rttvar == 0.05
    assert abs(r.rto - 0.3) < 1e-9            # srtt + 4 * rttvar
    r.sample(0.1)
    assert abs(r.rttvar - 0.0375) < 1e-9
    r.backoff = 3
    assert abs(r.rto - 8 * r.base_rto) < 1e-9
    r.backoff = 40
    assert r.rto == 60.0
    r.sample(0.1)                             # Karn: a valid sample clears the backoff
    assert r.backoff == 0 and r.rto < 0.3
    fast = RttEstimator(initial=1.0, rto_min=0.2)
    fast.sample(0.001)
    assert fast.rto == 0.2                    # the floor


# -- ISN, cookies, ports -------------------------------------------------------------------

def test_isn_rfc6528() -> None:
    gen = IsnGenerator(b"k" * 32)
    a = gen.isn(10.0, A, 1000, B, 80)
    assert gen.isn(10.0, A, 1000, B, 80) == a
    assert (gen.isn(10.000004, A, 1000, B, 80) - a) & 0xFFFFFFFF == 1    # the 4 us clock
    assert gen.isn(10.0, A, 1001, B, 80) != a                           # per 4-tuple
    assert IsnGenerator(b"j" * 32).isn(10.0, A, 1000, B, 80) != a       # per secret
    assert IsnGenerator().isn(0.0, A, 1, B, 2) != IsnGenerator().isn(0.0, A, 1, B, 2)


def test_keyed_hashes_are_the_documented_functions() -> None:
    """The generators hash copies of states keyed once; each value is still
    the keyed BLAKE2s of the 4-tuple (F of RFC 6528 3, RFC 6056 3.3.4)."""
    from femtotcp.core import rand

    key = b"k" * 32
    data = A + (1000).to_bytes(2, "big") + B + (80).to_bytes(2, "big")

    def f(person: bytes, raw: bytes, size: int = 4) -> int:
        return int.from_bytes(rand.blake2s(raw, key=key, digest_size=size,
                                           person=person).digest(), "big")

    gen = IsnGenerator(key)
    other = A + (1001).to_bytes(2, "big") + B + (80).to_bytes(2, "big")
    for _ in range(2):      # the keyed state is copied, never consumed
        # F and the timestamp offset: the halves of one 64-bit hash (the last
        # 4-tuple's is kept: asked in either order, for another tuple between)
        assert gen.isn(10.0, A, 1000, B, 80) == \
            (2_500_000 + (f(b"isn+ts", data, 8) >> 32)) & 0xFFFFFFFF
        assert gen.ts_offset(A, 1000, B, 80) == f(b"isn+ts", data, 8) & 0xFFFFFFFF
        assert gen.ts_offset(A, 1001, B, 80) == f(b"isn+ts", other, 8) & 0xFFFFFFFF
        assert gen.flow_label(A, 1000, B, 80) == (f(b"flow", data) & 0xFFFFF or 1)
    ports = EphemeralPorts(32768, 60999, key)
    raw = A + B + (80).to_bytes(2, "big")
    # F and G of RFC 6056 3.3.4: the halves of one 64-bit hash
    both = f(b"port", raw, 8)
    offset, index = both >> 32, both % 256
    assert ports.pick(A, B, 80, lambda _: False) == 32768 + offset % 28232
    assert ports._table[index] == 1
    # The last destination's hash is kept: the same F and G again, and those
    # of another destination in between
    assert ports.pick(A, B, 80, lambda _: False) == 32768 + (offset + 1) % 28232
    other_both = f(b"port", A + B + (443).to_bytes(2, "big"), 8)
    step = ports._table[other_both % 256]
    assert ports.pick(A, B, 443, lambda _: False) == \
        32768 + ((other_both >> 32) + step) % 28232
    assert ports.pick(A, B, 80, lambda _: False) == \
        32768 + (offset + ports._table[index] - 1) % 28232


def test_syn_cookies_round_trip_and_expiry() -> None:
    c = SynCookies(b"s" * 32)
    isn, mss = c.make(1000.0, A, 80, B, 5555, 12345, 1460)
    assert mss == 1460
    assert c.check(1000.0, A, 80, B, 5555, 12345, isn) == 1460
    assert c.check(1000.0 + 64, A, 80, B, 5555, 12345, isn) == 1460
    assert c.check(1000.0 + 64 * 4, A, 80, B, 5555, 12345, isn) is None   # too old
    assert c.check(1000.0, A, 80, B, 5556, 12345, isn) is None            # other tuple
    assert c.check(1000.0, A, 80, B, 5555, 12346, isn) is None            # other peer ISN
    assert c.check(1000.0, A, 80, B, 5555, 12345, isn ^ 1) is None
    isn2, mss2 = c.make(1000.0, A, 80, B, 5555, 1, 1000)
    assert mss2 == 536 and c.check(1000.0, A, 80, B, 5555, 1, isn2) == 536


def test_cookie_ts_bits() -> None:
    for tsval in (0x12345678, 0x10, 0xFFFFFFFF, 0x20):
        for ws in (None, 0, 7, 14):
            for sack in (False, True):
                v = encode_ts_options(tsval, ws, sack)
                assert decode_ts_options(v) == (ws, sack)
                assert (tsval - v) & 0xFFFFFFFF < 64       # never ahead of the clock


def test_ephemeral_ports_rfc6056() -> None:
    p = EphemeralPorts(32768, 60999, b"p" * 32)
    used: set[int] = set()
    first = p.pick(A, B, 80, used.__contains__)
    assert first is not None and 32768 <= first <= 60999
    used.add(first)
    second = p.pick(A, B, 80, used.__contains__)
    assert second is not None and second != first
    # another key starts elsewhere: not a global counter
    other = EphemeralPorts(32768, 60999, b"q" * 32).pick(A, B, 80, lambda _: False)
    assert other != first
    small = EphemeralPorts(5000, 5002, b"p" * 32)
    taken: set[int] = set()
    for _ in range(3):
        port = small.pick(A, B, 80, taken.__contains__)
        assert port is not None
        taken.add(port)
    assert taken == {5000, 5001, 5002}
    assert small.pick(A, B, 80, taken.__contains__) is None


def test_syn_options_from_templates_match_build_options() -> None:
    """Our SYN and SYN-ACK options come from a template per option set; the
    bytes are those ``build_options`` lays out, timestamps included (a
    connection's and a SYN cookie's, ``syn_option_bytes``)."""
    from femtotcp.proto.tcp.options import Negotiated, syn_option_bytes
    from femtotcp.wire.tcp import build_options

    for mss in (216, 1460):
        for wscale in (None, 0, 14):
            for sack in (False, True):
                assert syn_option_bytes(mss, wscale, sack, None, 99) == build_options(
                    mss=mss, wscale=wscale, sack_perm=sack)
                assert syn_option_bytes(mss, wscale, sack, 0xFFFFFFFF, 0x1234) == \
                    build_options(mss=mss, wscale=wscale, sack_perm=sack,
                                  ts=(0xFFFFFFFF, 0x1234))

    for ts in (False, True):
        for sack in (False, True):
            for ws in (False, True):
                for mss in (536, 1460, 8960):
                    for synack in (False, True):
                        opt = Negotiated(ts, sack, ws, 0xFFFFFF00)
                        opt.adv_mss = mss
                        opt.rcv_wscale = 7
                        opt.ts_recent = 0x12345678
                        for now in (0.0, 12.345, 5e6):
                            want = build_options(
                                mss=mss, wscale=7 if ws else None, sack_perm=sack,
                                ts=(opt.tsval(now), 0x12345678 if synack else 0)
                                if ts else None)
                            assert opt.syn_options(now, synack) == want
