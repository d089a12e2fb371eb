"""TCP header and options: round trips, every malformed length, scapy as the oracle."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, tcp
from femtotcp.wire.checksum import ones_sum

SRC = bytes([192, 0, 2, 1])
DST = bytes([192, 0, 2, 2])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000002")


def scapy_segment(scapy: ModuleType, src: str, dst: str, **kw: object) -> bytes:
    payload = kw.pop("load", b"")
    pkt = scapy.IP(src=src, dst=dst) / scapy.TCP(**kw)
    if payload:
        pkt = pkt / scapy.Raw(load=payload)
    return bytes(pkt)[20:]


# -- scapy builds, femtotcp parses ------------------------------------------------

def test_parse_scapy_syn_with_all_options(scapy: ModuleType) -> None:
    seg = scapy_segment(scapy, "192.0.2.1", "192.0.2.2", sport=40000, dport=80,
                        seq=123456789, flags="S", window=64240,
                        options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (11, 0)),
                                 ("NOP", None), ("WScale", 7)])
    hdr, payload = tcp.parse(seg, SRC, DST)
    assert (hdr.src_port, hdr.dst_port, hdr.seq, hdr.flags, hdr.window) == (
        40000, 80, 123456789, tcp.SYN, 64240)
    assert len(payload) == 0
    opts = tcp.parse_options(hdr.options)
    assert opts.mss == 1460 and opts.wscale == 7 and opts.sack_perm
    assert (opts.ts_val, opts.ts_ecr) == (11, 0)
    assert opts.bad is None


def test_parse_scapy_data_with_sack_blocks(scapy: ModuleType) -> None:
    seg = scapy_segment(scapy, "192.0.2.1", "192.0.2.2", sport=1, dport=2, seq=5, ack=0xFFFFFFF0,
                        flags="PA", window=5,
                        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2)),
                                 ("NOP", None), ("NOP", None),
                                 ("SAck", (100, 200, 300, 400))],
                        load=b"hello")
    hdr, payload = tcp.parse(seg, SRC, DST)
    assert bytes(payload) == b"hello"
    assert hdr.flags == tcp.PSH | tcp.ACK and hdr.ack == 0xFFFFFFF0
    opts = tcp.parse_options(hdr.options)
    assert opts.sack_blocks == ((100, 200), (300, 400))
    assert (opts.ts_val, opts.ts_ecr) == (1, 2)


def test_parse_scapy_ipv6_checksum(scapy: ModuleType) -> None:
    pkt = (scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
           / scapy.TCP(sport=7, dport=8, flags="A") / scapy.Raw(b"abc"))
    seg = bytes(pkt)[40:]
    hdr, payload = tcp.parse(seg, SRC6, DST6)
    assert bytes(payload) == b"abc"


def test_bad_checksum() -> None:
    seg = bytearray(tcp.build(SRC, DST, 1, 2, 0, 0, tcp.ACK, 100, b"x"))
    seg[-1] ^= 0x55
    with pytest.raises(Malformed) as exc:
        tcp.parse(seg, SRC, DST)
    assert exc.value.reason == "tcp.bad_checksum"
    hdr, payload = tcp.parse(seg)  # without addresses the checksum is not checked
    assert (hdr.src_port, hdr.dst_port, bytes(payload)) == (1, 2, bytes([ord("x") ^ 0x55]))


def test_scapy_segment_with_bad_checksum_rejected(scapy: ModuleType) -> None:
    seg = bytearray(scapy_segment(scapy, "192.0.2.1", "192.0.2.2", sport=1, dport=2, load=b"x"))
    hdr, payload = tcp.parse(seg, SRC, DST)  # scapy's checksum is right ...
    assert (hdr.src_port, hdr.dst_port, bytes(payload)) == (1, 2, b"x")
    seg[-1] ^= 0x55
    with pytest.raises(Malformed) as exc:    # ... and one flipped payload bit is caught
        tcp.parse(seg, SRC, DST)
    assert exc.value.reason == "tcp.bad_checksum"


# -- femtotcp builds, scapy parses ------------------------------------------------

def test_build_parsed_by_scapy(scapy: ModuleType) -> None:
    opts = tcp.build_options(mss=1460, wscale=9, sack_perm=True, ts=(1000, 2000))
    seg = tcp.build(SRC, DST, 5555, 80, 0xFFFFFFFF, 17, tcp.SYN | tcp.ACK, 1234, b"data",
                    opts)
    pkt = scapy.IP(src="192.0.2.1", dst="192.0.2.2", proto=6) / scapy.Raw(seg)
    parsed = scapy.IP(bytes(pkt))
    t = parsed[scapy.TCP]
    assert (t.sport, t.dport, t.seq, t.ack, t.window) == (5555, 80, 0xFFFFFFFF, 17, 1234)
    assert t.flags == "SA"
    options = dict(t.options)
    assert options["MSS"] == 1460 and options["WScale"] == 9
    assert options["Timestamp"] == (1000, 2000) and "SAckOK" in options
    assert bytes(t.payload) == b"data"
    # scapy recomputes the checksum: it must agree with ours
    t2 = t.copy()
    del t2.chksum
    rebuilt = scapy.IP(bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2") / t2))
    assert rebuilt[scapy.TCP].chksum == t.chksum


def test_build_sack_blocks_parsed_by_scapy(scapy: ModuleType) -> None:
    opts = tcp.build_options(ts=(5, 6), sack_blocks=[(10, 20), (30, 40), (50, 60), (70, 80)])
    assert len(opts) <= 40 and len(opts) % 4 == 0
    seg = tcp.build(SRC, DST, 1, 2, 3, 4, tcp.ACK, 5, b"", opts)
    pkt = scapy.IP(src="192.0.2.1", dst="192.0.2.2", proto=6) / scapy.Raw(seg)
    t = scapy.IP(bytes(pkt))[scapy.TCP]
    options = dict(t.options)
    # with timestamps there is room for three blocks only (RFC 2018 3)
    assert options["SAck"] == (10, 20, 30, 40, 50, 60)
    assert options["Timestamp"] == (5, 6)


def test_build_fast_matches_build() -> None:
    for payload in (b"", b"x", b"odd-length", bytes(range(256)) * 6):
        opts = tcp.build_options(ts=(123, 456))
        slow = tcp.build(SRC, DST, 1000, 2000, 77, 88, tcp.ACK | tcp.PSH, 999, payload, opts)
        fast = tcp.build_fast(tcp.pseudo_sum(SRC, DST), 1000, 2000, 77, 88, tcp.ACK | tcp.PSH,
                              999, opts, payload)
        assert fast == slow
        tcp.parse(fast, SRC, DST)
        fast6 = tcp.build_fast(tcp.pseudo_sum(SRC6, DST6), 1, 2, 3, 4, tcp.ACK, 5, b"",
                               payload)
        tcp.parse(fast6, SRC6, DST6)


# -- malformed ---------------------------------------------------------------------

def raw_header(offset_words: int, options: bytes = b"", total_extra: bytes = b"") -> bytes:
    return struct.pack("!HHIIHHHH", 1, 2, 3, 4, (offset_words << 12) | tcp.ACK, 5, 0, 0) + \
        options + total_extra


@pytest.mark.parametrize("words", [0, 1, 4])
def test_offset_below_minimum(words: int) -> None:
    with pytest.raises(Malformed) as exc:
        tcp.parse(raw_header(words))
    assert exc.value.reason == "tcp.bad_offset"


def test_offset_past_end() -> None:
    with pytest.raises(Malformed) as exc:
        tcp.parse(raw_header(15, b"\x01" * 8))
    assert exc.value.reason == "tcp.bad_offset"


def test_truncated() -> None:
    with pytest.raises(Malformed) as exc:
        tcp.parse(b"\x00" * 19)
    assert exc.value.reason == "tcp.truncated"


@pytest.mark.parametrize("raw", [
    b"\x02\x00\x05\xb4",          # length 0
    b"\x02\x01\x05\xb4",          # length 1
    b"\x08\x0a\x00\x00",          # timestamp running past the end
    b"\x01\x01\x01\x02",          # a kind with no room for its length
    b"\x99\x00",                  # unknown option, length 0
])
def test_bad_option_lengths_stop_the_walk(raw: bytes) -> None:
    opts = tcp.parse_options(raw)
    assert opts.bad == "tcp.bad_option_length"


def test_bad_option_keeps_what_came_before() -> None:
    opts = tcp.parse_options(b"\x02\x04\x05\xb4\x03\x00\x07\x01")
    assert opts.mss == 1460 and opts.wscale is None and opts.bad == "tcp.bad_option_length"


def test_mss_zero_ignored() -> None:
    opts = tcp.parse_options(b"\x02\x04\x00\x00")
    assert opts.mss is None and opts.bad == "tcp.bad_option_mss"


def test_wscale_clamped_to_14() -> None:
    opts = tcp.parse_options(b"\x01\x03\x03\x0f")
    assert opts.wscale == 14 and opts.bad == "tcp.bad_option_wscale"
    assert tcp.parse_options(b"\x01\x03\x03\x0e").wscale == 14


def test_wrong_length_known_options_skipped() -> None:
    # MSS with length 6, then a valid window scale: the MSS is skipped, the walk goes on
    opts = tcp.parse_options(b"\x02\x06\x05\xb4\x00\x00\x03\x03\x02\x00")
    assert opts.mss is None and opts.wscale == 2 and opts.bad == "tcp.bad_option_length"
    opts = tcp.parse_options(b"\x05\x0b" + b"\x00" * 9 + b"\x00")  # SACK, 9 bytes of blocks
    assert opts.sack_blocks == () and opts.bad == "tcp.bad_option_length"
    opts = tcp.parse_options(b"\x08\x06\x00\x00\x00\x00")  # short timestamp
    assert opts.ts_val is None


def test_eol_ends_options() -> None:
    opts = tcp.parse_options(b"\x00\x02\x04\x05\xb4")
    assert opts.mss is None and opts.bad is None


def test_unknown_option_skipped() -> None:
    opts = tcp.parse_options(b"\x1e\x04\xaa\xbb\x02\x04\x02\x00")
    assert opts.mss == 512 and opts.bad is None


@given(st.binary(max_size=40))
def test_random_options_never_raise(raw: bytes) -> None:
    opts = tcp.parse_options(raw)
    if opts.wscale is not None:
        assert 0 <= opts.wscale <= 14
    assert opts.mss is None or opts.mss > 0
    assert len(opts.sack_blocks) <= 4


@given(st.binary(min_size=0, max_size=100))
def test_random_segments_raise_only_malformed(data: bytes) -> None:
    try:
        hdr, payload = tcp.parse(data, SRC, DST)
    except Malformed as exc:
        assert exc.reason.startswith("tcp.")
    else:
        assert 20 <= hdr.header_len <= len(data)
        tcp.parse_options(hdr.options)


def test_pseudo_sum_matches_build() -> None:
    seg = tcp.build(SRC, DST, 1, 2, 3, 4, tcp.ACK, 5, b"xyz")
    assert ones_sum(seg, tcp.pseudo_sum(SRC, DST) + len(seg)) == 0xFFFF


def test_flags_str() -> None:
    assert tcp.flags_str(tcp.SYN | tcp.ACK) == "S."
    assert tcp.flags_str(tcp.FIN | tcp.PSH | tcp.ACK) == "FP."
    assert tcp.flags_str(0) == "none"


def _walk(raw: bytes) -> tuple[object, ...]:
    """An independent option walk (RFC 9293 3.1 with parse_options' rules for
    bad lengths and values), the oracle for its shortcuts."""
    mss = ws = tsv = ecr = bad = None
    sack = False
    blocks: tuple[tuple[int, int], ...] = ()
    i = 0
    while i < len(raw) and raw[i] != 0:
        if raw[i] == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            bad = bad or "tcp.bad_option_length"
            break
        kind, n, body = raw[i], raw[i + 1], raw[i + 2:i + raw[i + 1]]
        want = {2: 4, 3: 3, 4: 2, 8: 10}.get(kind)
        if want is not None and n != want or kind == 5 and ((n - 2) % 8 or not 1 <= (n - 2) // 8 <= 4):
            bad = bad or "tcp.bad_option_length"
        elif kind == 2:
            if int.from_bytes(body, "big"):
                mss = int.from_bytes(body, "big")
            else:
                bad = bad or "tcp.bad_option_mss"
        elif kind == 3:
            if body[0] > 14:
                bad = bad or "tcp.bad_option_wscale"
            ws = min(body[0], 14)
        elif kind == 4:
            sack = True
        elif kind == 8:
            tsv, ecr = struct.unpack("!II", body)
        elif kind == 5:
            vals = struct.unpack(f"!{(n - 2) // 4}I", body)
            blocks = tuple(zip(vals[0::2], vals[1::2], strict=True))
        i += n
    return mss, ws, sack, blocks, tsv, ecr, bad


def _got(raw: bytes) -> tuple[object, ...]:
    o = tcp.parse_options(memoryview(raw))
    return o.mss, o.wscale, o.sack_perm, o.sack_blocks, o.ts_val, o.ts_ecr, o.bad


@pytest.mark.parametrize("layout", [
    dict(mss=1460, wscale=7, sack_perm=True, ts=(0x01020304, 0x05060708)),   # SYN, 20 bytes
    dict(ts=(0x01020304, 0x05060708)),                                       # every segment
])
def test_option_shortcuts_agree_with_a_plain_walk(layout: dict[str, object]) -> None:
    """The layouts parse_options reads in one unpack (Linux's SYN options,
    the aligned timestamp alone): every byte of them changed to values that
    matter (0, 1, 2, 14, 15, 0xFF, the kinds) parses as a plain walk does."""
    raw = tcp.build_options(**layout)     # type: ignore[arg-type]
    assert _got(raw) == _walk(raw) and _got(raw)[4] == 0x01020304
    for i in range(len(raw)):
        for v in (0, 1, 2, 3, 4, 5, 8, 10, 14, 15, 0xFF):
            mutated = raw[:i] + bytes((v,)) + raw[i + 1:]
            assert _got(mutated) == _walk(mutated), (i, v, mutated.hex())
