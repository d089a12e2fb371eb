"""Software GRO (stack/gro.py): the merge rules one by one, against segments
built by our wire builders and by scapy, and random batches that never raise."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from femtotcp.core.counters import Counters
from femtotcp.stack.gro import MAX_DATAGRAM, coalesce
from femtotcp.wire import ethernet, ip_bytes, ipv4, ipv6, mac_bytes, tcp

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")
KMAC = mac_bytes("02:00:00:00:00:01")
SMAC = mac_bytes("02:00:00:00:00:02")
MSS = 1448
LIMIT = 1500 + 14
ISN = 7000
OPTS = tcp.build_options(ts=(100, 200))


def seg(i: int, payload: bytes | None = None, *, seq: int | None = None, ack: int = 5000,
        flags: int = tcp.ACK, window: int = 512, options: bytes = OPTS, ident: int | None = None,
        df: bool = True, tos: int = 0, ttl: int = 64, sport: int = 40000, dport: int = 9,
        src: bytes = SRC, ip_options: bytes = b"", frag: int = 0, smac: bytes = KMAC,
        urgent: int = 0) -> bytes:
    """The ``i``-th MSS-sized segment of a flow, as Linux sends it (DF, the ID
    counting up); every field can be changed."""
    if payload is None:
        payload = bytes([i & 0xFF]) * MSS
    if seq is None:
        seq = ISN + i * MSS
    t = tcp.build(src, DST, sport, dport, seq & 0xFFFFFFFF, ack, flags, window, payload,
                  options, urgent)
    packet = ipv4.build(src, DST, 6, t, ttl, tos, (100 + i if ident is None else ident) & 0xFFFF,
                        (0x4000 if df else 0) | frag, ip_options)
    return ethernet.build(SMAC, smac, ethernet.ETH_IPV4, packet)


def run(frames: list[bytes], trusted: bool = False, vouched: int = 0,
        limit: int = LIMIT) -> tuple[list[tuple[bytes, bool]], Counters]:
    counters = Counters()
    return coalesce([(f, vouched) for f in frames], trusted, limit, counters), counters


def parsed(frame: bytes) -> tuple[ipv4.Ipv4Header, tcp.TcpHeader, bytes]:
    """The frame parsed by the wire modules, its IP header checksum verified
    (the TCP checksum is stale in a merged frame: not verified here)."""
    _, body = ethernet.parse(frame)
    ip, payload = ipv4.parse(body)
    t, data = tcp.parse(payload)
    return ip, t, bytes(data)


def payload_of(frame: bytes) -> bytes:
    return parsed(frame)[2]


# -- merging --------------------------------------------------------------------------------

def test_a_run_becomes_one_verified_frame() -> None:
    frames = [seg(i) for i in range(10)]
    out, counters = run(frames)
    assert len(out) == 1
    frame, ok = out[0]
    assert ok
    ip, t, data = parsed(frame)
    assert data == b"".join(payload_of(f) for f in frames)
    assert ip.total_len == 20 + 32 + 10 * MSS and len(frame) == 14 + ip.total_len
    assert t.seq == ISN and t.ack == 5000 and t.flags == tcp.ACK and t.window == 512
    assert t.options == OPTS
    assert ip.ident == 100 and ip.ttl == 64
    assert counters["gro.merged_frames"] == 1 and counters["gro.merged_segments"] == 10


def test_a_lone_segment_passes_unchanged_and_verified() -> None:
    f = seg(0)
    out, counters = run([f])
    assert out == [(f, True)]
    assert counters["gro.merged_frames"] == 0


def test_two_runs_in_one_batch_and_order_kept() -> None:
    other = [seg(i, sport=40001) for i in range(3)]
    first = [seg(i) for i in range(3)]
    arp_like = ethernet.build(SMAC, KMAC, ethernet.ETH_ARP, bytes(28))
    out, counters = run(first + [arp_like] + other)
    assert [len(parsed(f)[2]) if f != arp_like else -1 for f, _ in out] == \
        [3 * MSS, -1, 3 * MSS]
    assert out[1] == (arp_like, False)
    assert counters["gro.merged_frames"] == 2 and counters["gro.merged_segments"] == 6


def test_psh_is_merged_and_ends_the_run() -> None:
    frames = [seg(0), seg(1, flags=tcp.ACK | tcp.PSH), seg(2), seg(3)]
    out, _ = run(frames)
    assert len(out) == 2
    assert parsed(out[0][0])[1].flags == tcp.ACK | tcp.PSH
    assert parsed(out[1][0])[1].flags == tcp.ACK
    assert payload_of(out[0][0]) + payload_of(out[1][0]) == \
        b"".join(payload_of(f) for f in frames)


def test_fin_with_data_is_merged_and_ends_the_run() -> None:
    frames = [seg(0), seg(1, flags=tcp.ACK | tcp.FIN | tcp.PSH), seg(2)]
    out, _ = run(frames)
    assert len(out) == 2
    assert parsed(out[0][0])[1].flags == tcp.ACK | tcp.FIN | tcp.PSH
    assert out[1] == (frames[2], True)


def test_a_psh_segment_first_stays_alone() -> None:
    frames = [seg(0, flags=tcp.ACK | tcp.PSH), seg(1), seg(2)]
    out, _ = run(frames)
    assert out[0] == (frames[0], True)
    assert len(out) == 2 and len(payload_of(out[1][0])) == 2 * MSS


def test_a_shorter_segment_is_merged_and_ends_the_run() -> None:
    frames = [seg(0), seg(1), seg(2, b"z" * 100), seg(3, seq=ISN + 2 * MSS + 100)]
    out, _ = run(frames)
    assert len(out) == 2
    assert len(payload_of(out[0][0])) == 2 * MSS + 100
    assert out[1] == (frames[3], True)


def test_a_longer_segment_does_not_join() -> None:
    frames = [seg(0, b"a" * 1000), seg(1, b"b" * 1200, seq=ISN + 1000)]
    out, _ = run(frames)
    assert out == [(frames[0], True), (frames[1], True)]


def test_runs_stop_under_64_kb() -> None:
    frames = [seg(i) for i in range(50)]
    out, counters = run(frames)
    sizes = [len(payload_of(f)) // MSS for f, _ in out]
    assert sizes == [45, 5]
    for f, _ in out:
        assert parsed(f)[0].total_len <= MAX_DATAGRAM
    assert counters["gro.merged_segments"] == 50


def test_sequence_and_ip_id_wrap_around() -> None:
    frames = [seg(i, seq=0xFFFFFFFF - MSS + 1 + i * MSS, ident=0xFFFE + i) for i in range(4)]
    out, _ = run(frames)
    assert len(out) == 1 and len(payload_of(out[0][0])) == 4 * MSS


def test_a_fixed_ip_id_merges_only_with_df() -> None:
    fixed = [seg(i, ident=7) for i in range(3)]
    out, _ = run(fixed)
    assert len(out) == 1
    no_df = [seg(i, ident=7, df=False) for i in range(3)]
    out, _ = run(no_df)
    assert len(out) == 3
    counting = [seg(i, df=False) for i in range(3)]      # no DF, the ID counting up: fine
    out, _ = run(counting)
    assert len(out) == 1


def test_the_ip_id_must_keep_its_step() -> None:
    frames = [seg(0, ident=1), seg(1, ident=2), seg(2, ident=2), seg(3, ident=3)]
    out, _ = run(frames)
    assert [len(payload_of(f)) // MSS for f, _ in out] == [2, 2]


# Each change to the third of four segments keeps it out of the run of the
# first two (Linux's flush conditions); it is delivered unchanged.
CHANGES: dict[str, Callable[[int], bytes]] = {
    "seq gap": lambda i: seg(i, seq=ISN + i * MSS + 1),
    "seq repeated": lambda i: seg(i, seq=ISN + (i - 1) * MSS),
    "ack": lambda i: seg(i, ack=5001),
    "window": lambda i: seg(i, window=513),
    "options": lambda i: seg(i, options=tcp.build_options(ts=(101, 200))),
    "no options": lambda i: seg(i, options=b""),
    "tos": lambda i: seg(i, tos=0x10),
    "ttl": lambda i: seg(i, ttl=63),
    "df": lambda i: seg(i, df=False),
    "ip id jump": lambda i: seg(i, ident=100 + i + 5),
    "source address": lambda i: seg(i, src=ip_bytes("192.0.2.9")),
    "source port": lambda i: seg(i, sport=40001),
    "destination port": lambda i: seg(i, dport=10),
    "source mac": lambda i: seg(i, smac=mac_bytes("02:00:00:00:00:09")),
    "syn": lambda i: seg(i, flags=tcp.ACK | tcp.SYN),
    "rst": lambda i: seg(i, flags=tcp.ACK | tcp.RST),
    "urg": lambda i: seg(i, flags=tcp.ACK | tcp.URG, urgent=5),
    "cwr": lambda i: seg(i, flags=tcp.ACK | tcp.CWR),
    "ece": lambda i: seg(i, flags=tcp.ACK | tcp.ECE),
    "no ack": lambda i: seg(i, flags=0),
    "ip options": lambda i: seg(i, ip_options=b"\x01\x01\x01\x01"),
    "more fragments": lambda i: seg(i, frag=0x2000),
    "no payload": lambda i: seg(i, b""),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_flush_condition_keeps_a_segment_out(change: str) -> None:
    frames = [seg(0), seg(1), CHANGES[change](2), seg(3)]
    out, _ = run(frames)
    assert out[0][0] != frames[0] and len(payload_of(out[0][0])) == 2 * MSS
    assert out[1][0] == frames[2]
    assert [f for f, _ in out[2:]] == [frames[3]]


def test_padded_and_tagged_frames_pass_through() -> None:
    padded = seg(1) + b"\0\0"                       # IP total length short of the frame
    tagged = ethernet.build(SMAC, KMAC, ethernet.ETH_IPV4, ipv4.build(
        SRC, DST, 6, tcp.build(SRC, DST, 40000, 9, ISN, 5000, tcp.ACK, 512, bytes(100))),
        vlan=5)
    for odd in (padded, tagged, seg6(1) + b"\0\0"):
        frames = [seg(0), odd, odd]
        out, counters = run(frames)
        assert out == [(frames[0], True), (odd, False), (odd, False)]
        assert counters["gro.merged_frames"] == 0


def test_frames_over_the_limit_pass_through() -> None:
    big = seg(1, bytes(3000))
    out, _ = run([seg(0), big, seg(2, seq=ISN + MSS + 3000)], limit=LIMIT)
    assert out[1] == (big, False)


# -- IPv6 ----------------------------------------------------------------------------------

SRC6 = ip_bytes("2001:db8::1")
DST6 = ip_bytes("2001:db8::2")
MSS6 = MSS - 20


def seg6(i: int, payload: bytes | None = None, *, seq: int | None = None, ack: int = 5000,
         flags: int = tcp.ACK, window: int = 512, options: bytes = OPTS, tc: int = 0,
         flow: int = 0x12345, hop: int = 64, src: bytes = SRC6, sport: int = 40000,
         ext: bool = False) -> bytes:
    """The ``i``-th MSS-sized segment of a flow over IPv6 (``ext``: behind an
    empty hop-by-hop options header)."""
    if payload is None:
        payload = bytes([i & 0xFF]) * MSS6
    if seq is None:
        seq = ISN + i * MSS6
    t = tcp.build(src, DST6, sport, 9, seq & 0xFFFFFFFF, ack, flags, window, payload, options)
    if ext:
        packet = ipv6.build(src, DST6, 0, b"\x06\x00" + bytes(6) + t, hop, tc, flow)
    else:
        packet = ipv6.build(src, DST6, 6, t, hop, tc, flow)
    return ethernet.build(SMAC, KMAC, ethernet.ETH_IPV6, packet)


def parsed6(frame: bytes) -> tuple[ipv6.Ipv6Header, tcp.TcpHeader, bytes]:
    _, body = ethernet.parse(frame)
    ip, payload = ipv6.parse(body)
    t, data = tcp.parse(payload)
    return ip, t, bytes(data)


def test_an_ipv6_run_becomes_one_verified_frame() -> None:
    frames = [seg6(i) for i in range(8)]
    frames[-1] = seg6(7, flags=tcp.ACK | tcp.PSH)
    out, counters = run(frames)
    assert len(out) == 1 and out[0][1]
    ip, t, data = parsed6(out[0][0])
    assert data == b"".join(parsed6(f)[2] for f in frames)
    assert ip.payload_len == 32 + 8 * MSS6 and len(out[0][0]) == 54 + ip.payload_len
    assert ip.flow_label == 0x12345 and ip.hop_limit == 64
    assert t.seq == ISN and t.flags == tcp.ACK | tcp.PSH and t.options == OPTS
    assert counters["gro.merged_frames"] == 1 and counters["gro.merged_segments"] == 8


def test_ipv6_runs_stop_under_64_kb() -> None:
    out, _ = run([seg6(i) for i in range(50)])
    assert [len(parsed6(f)[2]) // MSS6 for f, _ in out] == [45, 5]
    assert all(parsed6(f)[0].payload_len <= MAX_DATAGRAM for f, _ in out)


CHANGES6: dict[str, Callable[[int], bytes]] = {
    "seq gap": lambda i: seg6(i, seq=ISN + i * MSS6 + 1),
    "ack": lambda i: seg6(i, ack=5001),
    "window": lambda i: seg6(i, window=513),
    "options": lambda i: seg6(i, options=tcp.build_options(ts=(101, 200))),
    "traffic class": lambda i: seg6(i, tc=0x20),
    "flow label": lambda i: seg6(i, flow=0x54321),
    "hop limit": lambda i: seg6(i, hop=63),
    "source address": lambda i: seg6(i, src=ip_bytes("2001:db8::9")),
    "source port": lambda i: seg6(i, sport=40001),
    "extension header": lambda i: seg6(i, ext=True),
    "syn": lambda i: seg6(i, flags=tcp.ACK | tcp.SYN),
    "cwr": lambda i: seg6(i, flags=tcp.ACK | tcp.CWR),
    "no payload": lambda i: seg6(i, b""),
    "bad checksum": lambda i: corrupt_payload(seg6(i)),
}


@pytest.mark.parametrize("change", sorted(CHANGES6))
def test_each_ipv6_flush_condition_keeps_a_segment_out(change: str) -> None:
    frames = [seg6(0), seg6(1), CHANGES6[change](2), seg6(3)]
    out, _ = run(frames)
    assert len(parsed6(out[0][0])[2]) == 2 * MSS6
    assert out[1][0] == frames[2]
    assert [f for f, _ in out[2:]] == [frames[3]]
    if change == "bad checksum":
        assert not out[1][1]


def test_ipv4_and_ipv6_runs_side_by_side() -> None:
    frames = [seg(0), seg(1), seg6(0), seg6(1), seg(2), seg(3)]
    out, counters = run(frames)
    assert len(out) == 3 and counters["gro.merged_segments"] == 6
    assert len(parsed6(out[1][0])[2]) == 2 * MSS6


# -- checksums ---------------------------------------------------------------------------

def corrupt_payload(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def corrupt_ip_header(frame: bytes) -> bytes:
    return frame[:22] + bytes([frame[22] ^ 0x01]) + frame[23:]       # the TTL


def corrupt_ip_checksum(frame: bytes) -> bytes:
    return frame[:24] + bytes([frame[24] ^ 0x40]) + frame[25:]


def corrupt_ip_id(frame: bytes) -> bytes:
    """The ID one more than it should be, and the header checksum still the old one's."""
    return frame[:19] + bytes([frame[19] ^ 0x01]) + frame[20:]


@pytest.mark.parametrize("corrupt", [corrupt_payload, corrupt_ip_header, corrupt_ip_checksum,
                                     corrupt_ip_id])
def test_a_bad_checksum_inside_a_run_is_not_merged(
        corrupt: Callable[[bytes], bytes]) -> None:
    frames = [seg(0), seg(1), corrupt(seg(2)), seg(3), seg(4)]
    out, counters = run(frames)
    assert [ok for _, ok in out] == [True, False, True]
    assert out[1][0] == frames[2]
    assert len(payload_of(out[0][0])) == 2 * MSS
    assert counters["gro.merged_segments"] == 4


def test_vouched_frames_skip_the_tcp_checksum_only_when_trusted() -> None:
    frames = [seg(0), corrupt_payload(seg(1)), seg(2)]
    out, _ = run(frames, trusted=True, vouched=1)
    assert len(out) == 1 and out[0][1]            # the device vouched: taken as is
    out, _ = run(frames, trusted=False, vouched=1)
    assert [ok for _, ok in out] == [True, False, True]   # untrusted: verified here


def test_a_vouched_frame_with_a_bad_ip_header_is_not_merged() -> None:
    frames = [seg(0), corrupt_ip_header(seg(1)), seg(2)]
    out, _ = run(frames, trusted=True, vouched=1)
    assert out[1] == (frames[1], True)          # as vouched, to the stack, which drops it
    assert len(out) == 3


# -- an independent oracle ---------------------------------------------------------------

def test_scapy_built_segments_merge_into_what_scapy_reads() -> None:
    frames = []
    data = bytes(range(256)) * 24
    for i in range(6):
        chunk = data[i * 1000:(i + 1) * 1000]
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src="192.0.2.1", dst="192.0.2.2", flags="DF", id=500 + i)
               / TCP(sport=5555, dport=80, seq=1 + i * 1000, ack=99, flags="A" if i < 5
                           else "PA", window=1000, options=[("NOP", None), ("NOP", None),
                                                           ("Timestamp", (7, 8))])
               / chunk)
        frames.append(bytes(pkt))
    out, _ = run(frames)
    assert len(out) == 1
    got = Ether(out[0][0])
    assert bytes(got[TCP].payload) == data[:6000]
    assert got[IP].len == 20 + 32 + 6000 and got[IP].id == 500
    assert str(got[TCP].flags) == "PA" and got[TCP].seq == 1
    ip = got[IP]
    sent = ip.chksum
    del ip.chksum
    assert IP(bytes(ip)).chksum == sent          # the rewritten header checksum


# -- random input ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 80), st.integers(0, 255)),
                max_size=24),
       st.booleans())
def test_random_batches_never_raise_and_keep_every_byte(
        edits: list[tuple[int, int, int]], trusted: bool) -> None:
    """A batch of segments, some with a byte changed anywhere in their headers
    (or cut short): nothing raises, no more frames come out than went in, and
    the payload bytes of what comes out are those that went in, in order."""
    frames = []
    for i, (what, pos, value) in enumerate(edits):
        f = seg(i, bytes([i]) * 200, seq=ISN + i * 200)
        if what >= 5:                          # IPv6 instead
            f = seg6(i, bytes([i]) * 200, seq=ISN + i * 200)
        if what == 1 or what == 5:
            f = f[:pos] + bytes([value]) + f[pos + 1:]
        elif what == 2 or what == 6:
            f = f[:pos]
        frames.append(f)
    out, counters = run(frames, trusted, vouched=1)
    assert len(out) <= len(frames)
    assert counters["gro.merged_segments"] == \
        (len(frames) - len(out) + counters["gro.merged_frames"])
    merged = [f for f, _ in out if f not in frames]
    merged_seqs = []
    for f in merged:
        if f[12:14] == b"\x86\xdd":
            ip6, t, data = parsed6(f)
            assert ip6.payload_len <= MAX_DATAGRAM
        else:
            ip, t, data = parsed(f)
            assert ip.total_len <= MAX_DATAGRAM
        assert len(data) % 200 == 0
        merged_seqs += [(f[12], t.seq + k * 200) for k in range(len(data) // 200)]
    # Every frame that went in either comes out unchanged or inside a merged one.
    ins = [(f[12], struct.unpack_from("!I", f, 38 if f[12] == 8 else 58)[0]) for f in frames
           if f not in {g for g, _ in out}]
    assert sorted(ins) == sorted(merged_seqs)
