"""IPv4 headers (RFC 791): round trips, every length check, options, scapy as the oracle."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, ip_bytes, ipv4
from femtotcp.wire.checksum import checksum

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")


def header(*, vihl: int = 0x45, tos: int = 0, total_len: int | None = None, ident: int = 1,
           flags_frag: int = 0, ttl: int = 64, proto: int = 17, options: bytes = b"",
           payload: bytes = b"", fix_checksum: bool = True, csum: int = 0) -> bytes:
    """Raw header bytes with any field set, checksum fixed unless asked not to."""
    hlen = 20 + len(options)
    if total_len is None:
        total_len = hlen + len(payload)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", vihl, tos, total_len, ident, flags_frag, ttl,
                              proto, 0, SRC, DST) + options)
    c = checksum(h) if fix_checksum else csum
    h[10:12] = c.to_bytes(2, "big")
    return bytes(h) + payload


def reason(data: bytes) -> str:
    with pytest.raises(Malformed) as e:
        ipv4.parse(data)
    return e.value.reason


addrs = st.binary(min_size=4, max_size=4)


@given(addrs, addrs, st.integers(0, 255), st.binary(max_size=1480), st.integers(1, 255),
       st.integers(0, 255), st.integers(0, 0xFFFF),
       st.sampled_from([0, ipv4.DF, ipv4.MF, ipv4.MF | 185, 8191]))
def test_round_trip(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int, tos: int,
                    ident: int, flags_frag: int) -> None:
    pkt = ipv4.build(src, dst, proto, payload, ttl=ttl, tos=tos, ident=ident,
                     flags_frag=flags_frag)
    hdr, body = ipv4.parse(pkt)
    assert (hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.tos, hdr.ident, hdr.flags_frag) == (
        src, dst, proto, ttl, tos, ident, flags_frag)
    assert hdr.total_len == 20 + len(payload) and hdr.header_len == 20 and hdr.options == b""
    assert bytes(body) == payload


@given(st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"\x01")), st.binary(max_size=64))
def test_round_trip_with_nop_options(opts: bytes, payload: bytes) -> None:
    """NOP-only option lists of any length are padded to 4 bytes and read back."""
    pkt = ipv4.build(SRC, DST, 6, payload, options=b"\x01" * len(opts))
    hdr, body = ipv4.parse(pkt)
    assert hdr.header_len == 20 + (len(opts) + 3) // 4 * 4
    assert bytes(body) == payload


def test_header_only_matches_build() -> None:
    payload = b"x" * 100
    pkt = ipv4.build(SRC, DST, 17, payload, ttl=9, tos=4, ident=77, flags_frag=ipv4.MF | 3)
    assert ipv4.header_only(SRC, DST, 17, 100, 9, 4, 77, ipv4.MF | 3) + payload == pkt


def test_fragment_fields() -> None:
    hdr, _ = ipv4.parse(header(flags_frag=ipv4.MF | ipv4.DF | 185, payload=b"x" * 8))
    assert hdr.more_fragments and hdr.dont_fragment and hdr.frag_offset == 185 * 8


# -- malformed, one class at a time -------------------------------------------------

@pytest.mark.parametrize("length", range(0, 20))
def test_shorter_than_header(length: int) -> None:
    assert reason(header(payload=b"abc")[:length]) == "ipv4.truncated"


@pytest.mark.parametrize("version", [0, 1, 5, 6, 15])
def test_bad_version(version: int) -> None:
    assert reason(header(vihl=(version << 4) | 5)) == "ipv4.bad_version"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ihl_below_five(ihl: int) -> None:
    assert reason(header(vihl=0x40 | ihl, payload=b"x" * 40)) == "ipv4.bad_ihl"


@pytest.mark.parametrize(("ihl", "total"), [(6, 20), (15, 59), (5, 19), (5, 0)])
def test_header_longer_than_total_length(ihl: int, total: int) -> None:
    opts = b"\x01" * (ihl * 4 - 20)
    assert reason(header(vihl=0x40 | ihl, options=opts, total_len=total,
                         payload=b"\x00" * 60)) == "ipv4.bad_total_length"


def test_ihl_beyond_frame() -> None:
    """IHL 15 but only a 20-byte frame: caught by total_len against the frame."""
    pkt = header(payload=b"")
    bad = bytes([0x4F]) + pkt[1:]
    assert reason(bad) in ("ipv4.truncated", "ipv4.bad_total_length")


@pytest.mark.parametrize("extra", [1, 2, 100, 0xFFFF - 24])
def test_total_length_beyond_frame(extra: int) -> None:
    pkt = header(payload=b"abcd", total_len=24 + extra)
    assert reason(pkt) == "ipv4.truncated"


def test_ethernet_padding_cut_off() -> None:
    """A minimum frame pads a short datagram: total length decides, not the frame."""
    pkt = header(payload=b"abcd") + b"\x00" * 22
    hdr, body = ipv4.parse(pkt)
    assert hdr.total_len == 24 and bytes(body) == b"abcd"


def test_bad_header_checksum() -> None:
    pkt = bytearray(header(payload=b"abcd"))
    pkt[11] ^= 0x01
    assert reason(bytes(pkt)) == "ipv4.bad_checksum"


def test_header_checksum_ignores_payload() -> None:
    pkt = bytearray(header(payload=b"abcd"))
    pkt[-1] ^= 0xFF                       # payload is not covered by the header checksum
    hdr, body = ipv4.parse(bytes(pkt))
    assert (hdr.src, hdr.dst, hdr.proto, hdr.total_len) == (SRC, DST, 17, 24)
    assert bytes(body) == b"abc" + bytes([ord("d") ^ 0xFF])


def test_checksum_covers_options() -> None:
    pkt = bytearray(header(vihl=0x46, options=b"\x01\x01\x01\x00"))
    pkt[21] = 0x00
    assert reason(bytes(pkt)) == "ipv4.bad_checksum"


def test_checksum_check_can_be_skipped() -> None:
    pkt = header(payload=b"ab", fix_checksum=False, csum=0x1234)
    hdr, body = ipv4.parse(pkt, verify_checksum=False)
    assert bytes(body) == b"ab"


def test_reserved_flag_is_ignored_on_receipt() -> None:
    """RFC 791 says send it as zero; Linux ignores it on receipt, and so do we."""
    hdr, body = ipv4.parse(header(flags_frag=0x8000, payload=b"ab"))
    assert hdr.flags_frag == 0x8000 and not hdr.more_fragments and hdr.frag_offset == 0
    assert bytes(body) == b"ab"


# -- options -----------------------------------------------------------------------

@pytest.mark.parametrize("opts", [
    b"\x07\x00\x00\x00",                  # length 0
    b"\x07\x01\x00\x00",                  # length 1: shorter than type + length
    b"\x94\x05\x00\x00",                  # runs one byte past the end
    b"\x07\xff\x00\x00",                  # far past the end
    b"\x01\x01\x01\x07",                  # the last byte is a type with no length byte
    b"\x94\x04\x00\x00\x1e\x02\x07\x0c",  # a good option, then one past the end
    b"\x01\x07\x00\x01",                  # NOP, then length 0
])
def test_bad_option_lengths(opts: bytes) -> None:
    vihl = 0x40 | ((20 + len(opts)) // 4)
    assert reason(header(vihl=vihl, options=opts)) == "ipv4.bad_option_length"


@pytest.mark.parametrize(("opts", "parsed"), [
    (b"\x00\x07\x00\x00", []),                          # EOL stops the walk
    (b"\x01\x01\x01\x01", []),
    (b"\x94\x04\x00\x00", [(0x94, b"\x00\x00")]),       # router alert
    (b"\x1e\x02\x01\x00", [(0x1E, b"")]),               # length 2: type + length only
    (b"\x07\x07\x04\x00\x00\x00\x00\x01", [(7, b"\x04\x00\x00\x00\x00")]),
])
def test_good_options(opts: bytes, parsed: list[tuple[int, bytes]]) -> None:
    vihl = 0x40 | ((20 + len(opts)) // 4)
    hdr, _ = ipv4.parse(header(vihl=vihl, options=opts))
    assert hdr.options == opts
    assert ipv4.check_options(hdr.options) == parsed


@pytest.mark.parametrize("opts", [
    b"\x07\x02\x00\x00",                  # record route too short for its pointer
    b"\x07\x07\x03\x00\x00\x00\x00\x01",  # record route pointer below 4
    b"\x44\x03\x05\x00",                  # timestamp shorter than 4
    b"\x44\x08\x04\x00\x00\x00\x00\x00",  # timestamp pointer below 5
])
def test_bad_option_pointers(opts: bytes) -> None:
    vihl = 0x40 | ((20 + len(opts)) // 4)
    assert reason(header(vihl=vihl, options=opts)) == "ipv4.bad_option_pointer"


@pytest.mark.parametrize(("opts", "at", "why"), [
    (b"\x07\x07\x06\x00\x00\x00\x00\x01", 2, "pointer"),   # RR: half a slot left
    (b"\x44\x0a\x09\x00" + bytes(6) + b"\x00\x00", 2, "pointer"),  # TS: the same
    (b"\x44\x0c\x09\x01" + bytes(8), 2, "pointer"),    # TS address+time: 4 of 8 left
    (b"\x44\x0c\x0d\xf0" + bytes(8), 3, "pointer"),    # TS full, 15 hosts counted
    (b"\x07\x03\x04\x07\x03\x04\x00\x00", 3, "duplicate"),  # a second record route
    (b"\x94\x03\x00\x00", 1, "length"),                # router alert shorter than 4
])
def test_options_linux_cannot_record_in(opts: bytes, at: int, why: str) -> None:
    """Linux's ip_options_compile refuses these; the offset is its pointer's."""
    _, problem = ipv4.walk_options(opts)
    assert problem is not None
    assert problem == (f"ipv4.{'duplicate_option' if why == 'duplicate' else 'bad_option_' + why}",
                       at)


US = ip_bytes("192.0.2.2")
NOW = 0x01020304


def echoed(opts: bytes, ours: bytes = US) -> bytes | None:
    return ipv4.reply_options(opts, ours, NOW, lambda a: a == ours)


def test_reply_options_record_route_in_and_out() -> None:
    """RFC 1122 3.2.2.6: ours recorded on receipt and on the way out, after the sender's."""
    sender = ip_bytes("192.0.2.1")
    got = echoed(bytes([7, 15, 8]) + sender + bytes(8) + b"\x00")
    assert got == bytes([7, 15, 16]) + sender + US + US + b"\x00"


def test_reply_options_record_route_one_slot_and_full() -> None:
    assert echoed(bytes([7, 7, 4]) + bytes(4) + b"\x00") == bytes([7, 7, 8]) + US + b"\x00"
    full = bytes([7, 7, 8]) + ip_bytes("192.0.2.77") + b"\x00"
    assert echoed(full) == full


def test_reply_options_timestamps() -> None:
    now = NOW.to_bytes(4, "big")
    assert echoed(bytes([68, 12, 5, 0]) + bytes(8)) == bytes([68, 12, 13, 0]) + now + now
    assert echoed(bytes([68, 20, 5, 1]) + bytes(16)) == \
        bytes([68, 20, 21, 1]) + US + now + US + now
    other = ip_bytes("192.0.2.1")
    # Prespecified: only our own slots are filled.
    assert echoed(bytes([68, 20, 5, 3]) + US + bytes(4) + other + bytes(4)) == \
        bytes([68, 20, 13, 3]) + US + now + other + bytes(4)
    assert echoed(bytes([68, 12, 5, 3]) + other + bytes(4)) == \
        bytes([68, 12, 5, 3]) + other + bytes(4)
    # Full: one more host counted in the overflow nibble.
    assert echoed(bytes([68, 12, 13, 0x20]) + bytes(8)) == bytes([68, 12, 13, 0x30]) + bytes(8)


def test_reply_options_only_recording_options_come_back() -> None:
    got = echoed(bytes([0x1E, 4, 0, 0, 1, 7, 7, 4]) + bytes(4))
    assert got == bytes([7, 7, 8]) + US + b"\x00"       # padded to 4 octets
    assert echoed(bytes([0x1E, 4, 0, 0])) == b""


@pytest.mark.parametrize("opts", [
    bytes([68, 10, 5, 0]) + bytes(6) + bytes(2),          # room on receipt, half a slot after
    bytes([7, 10, 4]) + bytes(7) + bytes(2),
])
def test_reply_options_none_when_the_reply_cannot_record(opts: bytes) -> None:
    """Linux's ip_options_echo fails: no answer is sent."""
    assert echoed(opts) is None


def test_fragment_options_keep_only_copied_ones() -> None:
    opts = bytes([7, 7, 4]) + bytes(4) + bytes([0x94, 4, 0, 0]) + b"\x01\x00"
    assert ipv4.fragment_options(opts) == b"\x01" * 7 + bytes([0x94, 4, 0, 0]) + b"\x01\x00"


@given(st.binary(max_size=40), addrs, st.integers(0, 86_399_999))
def test_reply_options_never_raise_or_grow(opts: bytes, ours: bytes, now: int) -> None:
    _, problem = ipv4.walk_options(opts)
    if problem is not None:
        return
    got = ipv4.reply_options(opts, ours, now, lambda a: a == ours)
    assert got is None or (len(got) <= len(opts) + 3 and len(got) % 4 == 0)


@pytest.mark.parametrize("kind", [0x83, 0x89])
def test_source_routed_datagrams_dropped(kind: int) -> None:
    opts = bytes([kind, 7, 4]) + bytes([198, 51, 100, 1]) + b"\x00"
    vihl = 0x40 | ((20 + len(opts)) // 4)
    assert reason(header(vihl=vihl, options=opts)) == "ipv4.source_route"


@given(st.binary(max_size=40))
def test_option_walk_never_loops_or_overreads(opts: bytes) -> None:
    try:
        out = ipv4.check_options(opts)
    except Malformed as e:
        assert e.reason in ("ipv4.bad_option_length", "ipv4.bad_option_pointer",
                            "ipv4.duplicate_option")
        return
    assert sum(2 + len(d) for _, d in out) <= len(opts)


@given(st.binary(max_size=80))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        hdr, body = ipv4.parse(data)
    except Malformed as e:
        assert e.reason.startswith("ipv4.")
        return
    assert 20 <= hdr.header_len <= hdr.total_len <= len(data)
    assert len(body) == hdr.total_len - hdr.header_len


# -- scapy as the oracle ------------------------------------------------------------

def test_scapy_builds_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2", ttl=7, tos=0x10, id=4242,
                         flags="DF", proto=17) / scapy.Raw(b"payload"))
    hdr, body = ipv4.parse(pkt)
    assert (hdr.src, hdr.dst, hdr.ttl, hdr.tos, hdr.ident, hdr.proto) == (
        SRC, DST, 7, 0x10, 4242, 17)
    assert hdr.dont_fragment and not hdr.more_fragments and bytes(body) == b"payload"


def test_scapy_fragment_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2", flags="MF", frag=3, proto=1)
                / scapy.Raw(b"x" * 16))
    hdr, body = ipv4.parse(pkt)
    assert hdr.more_fragments and hdr.frag_offset == 24 and len(body) == 16


def test_scapy_options_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2",
                         options=[scapy.IPOption_RR(routers=["0.0.0.0", "0.0.0.0"]),
                                  scapy.IPOption_Router_Alert()]) / scapy.Raw(b"abc"))
    hdr, body = ipv4.parse(pkt)
    assert hdr.header_len == 36 and bytes(body) == b"abc"
    kinds = [k for k, _ in ipv4.check_options(hdr.options)]
    assert kinds == [7, 0x94]


def test_scapy_padded_frame_femtotcp_cuts_padding(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2") / scapy.Raw(b"hi")) + b"\x00" * 24
    hdr, body = ipv4.parse(pkt)
    assert bytes(body) == b"hi"


def test_scapy_bad_checksum_rejected(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2", chksum=0xBEEF) / scapy.Raw(b"x"))
    assert reason(pkt) == "ipv4.bad_checksum"


@pytest.mark.parametrize("flags_frag", [0, ipv4.DF, ipv4.MF | 100])
def test_femtotcp_builds_scapy_parses(scapy: ModuleType, flags_frag: int) -> None:
    pkt = ipv4.build(SRC, DST, 17, b"datagram", ttl=33, tos=0x28, ident=0xBEEF,
                     flags_frag=flags_frag)
    sp = scapy.IP(pkt)
    assert (sp.version, sp.ihl, sp.len, sp.ttl, sp.tos, sp.id, sp.proto) == (
        4, 5, 28, 33, 0x28, 0xBEEF, 17)
    assert (sp.src, sp.dst) == ("192.0.2.1", "192.0.2.2")
    assert (int(sp.flags) << 13) | sp.frag == flags_frag
    # scapy recomputes the checksum from scratch: it must agree with ours.
    sp2 = scapy.IP(pkt)
    del sp2.chksum
    assert scapy.IP(bytes(sp2)).chksum == sp.chksum


def test_femtotcp_options_scapy_parses(scapy: ModuleType) -> None:
    pkt = ipv4.build(SRC, DST, 17, b"xyz", options=b"\x94\x04\x00\x00")
    sp = scapy.IP(pkt)
    assert sp.ihl == 6 and sp.len == 27
    assert sp.options[0].option == 20       # router alert (copy bit + class stripped)
    sp2 = scapy.IP(pkt)
    del sp2.chksum
    assert scapy.IP(bytes(sp2)).chksum == sp.chksum
