"""The internet checksum (RFC 1071) against the plain word-by-word loop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from femtotcp.wire.checksum import (
    FOUR_PIECES,
    LONG_PIECE,
    PIECE,
    checksum,
    mod_ffff,
    ones_sum,
    pseudo_header_sum,
    reference_checksum,
    sum_value,
    verify,
)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=0x3FFFF))
@example(b"", 0)
@example(b"\x00\x00", 0)
@example(b"\xff\xff", 0)
@example(b"\xff\xff\xff\xff", 0)
@example(b"\xff", 0)
@example(b"\xff\xfe", 1)
@example(b"\x00" * 7, 0xFFFF)
@settings(max_examples=500)
def test_checksum_matches_reference_loop(data: bytes, initial: int) -> None:
    assert checksum(data, initial) == reference_checksum(data, initial)
    assert checksum(memoryview(data), initial) == reference_checksum(data, initial)
    assert checksum(bytearray(data), initial) == reference_checksum(data, initial)


@given(st.binary(max_size=1000).map(lambda b: b if len(b) % 2 == 0 else b + b"\x00"))
def test_inserted_checksum_verifies(data: bytes) -> None:
    """A buffer with its checksum appended sums to all ones (what receivers check)."""
    csum = checksum(data)
    assert verify(data + csum.to_bytes(2, "big"))
    assert ones_sum(data + csum.to_bytes(2, "big")) == 0xFFFF


@given(st.binary(min_size=2, max_size=200), st.integers(min_value=0))
def test_single_bit_flip_is_caught(data: bytes, bit: int) -> None:
    if len(data) % 2:
        data += b"\x00"
    framed = data + checksum(data).to_bytes(2, "big")
    bit %= len(framed) * 8
    flipped = bytearray(framed)
    flipped[bit >> 3] ^= 1 << (bit & 7)
    assert not verify(bytes(flipped))


@pytest.mark.parametrize(("data", "expected"), [
    # RFC 1071 section 3 worked example: 0001 f203 f4f5 f6f7 sums to ddf2.
    (bytes.fromhex("0001f203f4f5f6f7"), 0xDDF2),
    (b"", 0),
    (b"\xff\xff", 0xFFFF),           # a non-zero multiple of 0xFFFF is "-0", not 0
    (b"\xff\xff\xff\xff", 0xFFFF),
    (b"\x00\x00\x00", 0),
    (b"\x01", 0x0100),               # odd length: padded with a zero byte on the right
])
def test_ones_sum_known_values(data: bytes, expected: int) -> None:
    assert ones_sum(data) == expected


def test_known_ipv4_header() -> None:
    # A classic example header (checksum field zeroed): its checksum is 0xb861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(header) == 0xB861
    assert reference_checksum(header) == 0xB861
    fixed = header[:10] + b"\xb8\x61" + header[12:]
    assert verify(fixed)


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_pseudo_header_sum_equals_explicit_header(src: bytes, dst: bytes, proto: int,
                                                  length: int, data: bytes) -> None:
    explicit = src + dst + bytes([0, proto]) + length.to_bytes(2, "big")
    assert checksum(data, pseudo_header_sum(src, dst, proto, length)) == \
        reference_checksum(explicit + (data + b"\x00" if len(data) % 2 else data))


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.integers(0, 255), st.integers(0, 0xFFFFFFFF), st.binary(max_size=300))
def test_pseudo_header_sum_ipv6_32bit_length(src: bytes, dst: bytes, proto: int,
                                             length: int, data: bytes) -> None:
    """RFC 8200 8.1: the upper-layer length is 32 bits and the next header 8."""
    explicit = src + dst + length.to_bytes(4, "big") + bytes([0, 0, 0, proto])
    assert checksum(data, pseudo_header_sum(src, dst, proto, length)) == \
        reference_checksum(explicit + (data + b"\x00" if len(data) % 2 else data))


def _word_sum(data: bytes) -> int:
    """The plain sum of 16-bit words (odd data padded with a zero byte)."""
    if len(data) & 1:
        data += b"\x00"
    return sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))


# Around every length where sum_value / mod_ffff change their way: one piece
# up to PIECE, four up to FOUR_PIECES (MTU sizes among them), LONG_PIECE
# multiples (the last piece short, odd or whole), jumbo and GRO sizes.
_EDGES = sorted({n + d for n in (0, 180, PIECE, 2 * PIECE, 1480, 1560, FOUR_PIECES, LONG_PIECE,
                                 2 * LONG_PIECE, 9000, 9018, 65535, 65536)
                 for d in (-2, -1, 0, 1, 2) if n + d >= 0})


@given(st.sampled_from(_EDGES), st.sampled_from([0x00, 0xFF, None]), st.randoms())
@settings(max_examples=300)
def test_sum_value_is_the_word_sum_modulo_ffff(n: int, fill: int | None, rnd: Any) -> None:
    data = bytes([fill]) * n if fill is not None else rnd.randbytes(n)
    value = sum_value(data)
    assert value >= 0 and value.bit_length() <= 8 * PIECE + 64
    assert value % 0xFFFF == _word_sum(data) % 0xFFFF
    assert (value == 0) == (not any(data))                  # ones_sum's 0 / 0xFFFF rule
    assert sum_value(memoryview(data)) == value == sum_value(bytearray(data))
    assert mod_ffff(value) == value % 0xFFFF
    assert checksum(data) == reference_checksum(data)
    assert checksum(memoryview(data)[1:], 7) == reference_checksum(data[1:], 7)


@given(st.binary(min_size=PIECE - 4, max_size=2 * LONG_PIECE + 3))
@settings(max_examples=200)
def test_long_data_sums_as_the_reference(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)
    assert ones_sum(data) == (0 if not any(data) else (_word_sum(data) % 0xFFFF or 0xFFFF))


@given(st.integers(min_value=0, max_value=600_000), st.randoms())
@settings(max_examples=200)
def test_mod_ffff_is_the_remainder(bits: int, rnd: Any) -> None:
    value = rnd.getrandbits(bits) if bits else 0
    assert mod_ffff(value) == value % 0xFFFF
    for edge in ((1 << bits) - 1, 1 << bits, 0xFFFF << bits):   # all ones, one bit, a multiple
        assert mod_ffff(edge) == edge % 0xFFFF
