"""The internet checksum (RFC 1071).

The ones' complement sum of 16-bit words equals the value of the whole buffer,
read as one big-endian integer, modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF).
``int.from_bytes`` and ``%`` run at C speed, so this beats any Python loop by
orders of magnitude. The one subtlety: a sum that is a non-zero multiple of
0xFFFF is 0xFFFF in ones' complement, not 0.

``%`` on a number of thousands of bits divides digit by digit (one hardware
division per 30 bits); folding first is cheaper: ``(v >> s) + (v & (2**s - 1))``
keeps the value modulo 0xFFFF whenever ``s`` is a multiple of 16, and with
``s`` a multiple of 30 too (Python's digit) the shift and the mask only move
digits. ``mod_ffff`` folds a 1480-byte value in three such steps, then
divides what is left (about 1,800 bits).

Cutting the data before it is read as an integer is cheaper still: the sum
of the integers of pieces that each start on a word (an even offset) is the
same modulo 0xFFFF. ``sum_value`` reads an MTU-sized segment as four pieces
of about a quarter each and folds their sum once: on the receive path
(``python -m bench.tcp_path``, a TCP segment verified per frame) that is
0.4-0.5 us less per segment than ``mod_ffff`` of the whole value, 0.2 us with
real TAP reads (``python -m bench.nooffload --cpu``), although the two cost
about the same in a tight loop over one buffer; two, three, six and eight
pieces measured slower than four. The gain stays with ``PYTHONMALLOC=malloc``
(so it is not the small-object allocator); what differs is how much fresh
memory a segment touches: a 1,480-byte copy, a 1,600-byte integer and its
800-byte folds, against four pieces of about 400 bytes. Longer data (jumbo
frames, GRO super-frames) is read in ``LONG_PIECE`` pieces and the sum
folded: a 44-segment GRO frame's check costs less than half of halving its
500,000-bit value. Such figures move with details (a variant that read the
last piece first measured 0.4 us slower): measure on the receive path
before changing this. TCP's fast path sums its segment, a memoryview slice
of the frame: summing the whole frame's bytes less the Ethernet header's
words instead (what software GRO does, which has the frame) measured 0.1-0.2
us slower per MTU segment on ``bench.tcp_path``'s "checksum verified" row
(alternated in one process), as did summing a bytes copy of the segment or
``mod_ffff`` of the frame read as one integer (1 us slower): reading the
bytes into integers (``int.from_bytes``, about 0.6 ns a byte) is most of the
cost whatever the source.
"""

from __future__ import annotations

_M0 = (1 << 11520) - 1
_M1 = (1 << 5760) - 1     # 5760 = 240 * 24: a multiple of 16 (the word) and 30 (the digit)
_M2 = (1 << 2880) - 1
_M3 = (1 << 1440) - 1


def mod_ffff(value: int, _m1: int = _M1, _m2: int = _M2, _m3: int = _M3) -> int:
    """``value % 0xFFFF`` for a non-negative ``value`` (see the module doc)."""
    if value >> 12480:      # over 1560 bytes (jumbo, GRO): halve on 240-bit boundaries
        n = value.bit_length()
        while n > 12480:
            s = n // 480 * 240
            value = (value >> s) + (value & ((1 << s) - 1))
            n = value.bit_length()
    value = (value >> 5760) + (value & _m1)
    value = (value >> 2880) + (value & _m2)
    value = (value >> 1440) + (value & _m3)
    return value % 0xFFFF


#: ``sum_value`` reads data of up to this many bytes as one integer.
PIECE = 448
#: Up to this many bytes (an MTU-sized segment), ``sum_value`` reads four
#: pieces of about a quarter each (an even number of bytes: each starts on a word).
FOUR_PIECES = 4 * PIECE
#: Longer data (jumbo frames, GRO super-frames) is read in pieces of this many
#: bytes (fewer turns of the loop) and their sum folded as ``mod_ffff`` does.
LONG_PIECE = 2880


def sum_value(data: bytes | bytearray | memoryview, _m3: int = _M3) -> int:
    """A non-negative integer congruent modulo 0xFFFF to the sum of the 16-bit
    words of ``data`` (padded to even length), zero only when every byte is,
    and of at most ``8 * PIECE + 64`` bits whatever the length: the data read
    in pieces, each as a big-endian integer, added and folded (see the module
    doc): one piece up to ``PIECE`` bytes, four of about a quarter each up to
    ``FOUR_PIECES`` (an MTU-sized segment), ``LONG_PIECE`` bytes each beyond."""
    n = len(data)
    from_bytes = int.from_bytes
    if n <= FOUR_PIECES:
        if n <= PIECE:
            return from_bytes(data, "big") << 8 if n & 1 else from_bytes(data, "big")
        q = n >> 2 & -2             # even: every piece starts on a word
        value = (from_bytes(data[:q], "big") + from_bytes(data[q:q + q], "big")
                 + from_bytes(data[q + q:3 * q], "big"))
        last = from_bytes(data[3 * q:], "big")
        value += last << 8 if n & 1 else last
        return (value >> 1440) + (value & _m3)
    end = n - n % LONG_PIECE          # where the last (short, maybe empty) piece starts
    value = 0
    for i in range(0, end, LONG_PIECE):
        value += from_bytes(data[i:i + LONG_PIECE], "big")
    last = from_bytes(data[end:], "big")
    value += last << 8 if n & 1 else last
    value = (value >> 11520) + (value & _M0)
    value = (value >> 5760) + (value & _M1)
    value = (value >> 2880) + (value & _M2)
    return (value >> 1440) + (value & _m3)


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones' complement sum of ``data`` (padded to even length) plus ``initial``.

    Returns a value in 0..0xFFFF where 0xFFFF stands for "non-zero multiple"."""
    value = sum_value(data) + initial
    if value == 0:
        return 0
    r = value % 0xFFFF
    return r if r else 0xFFFF


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit internet checksum to put in a header."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the IPv4 (RFC 9293 3.1) or IPv6 (RFC 8200 8.1) pseudo-header.

    Adding ``proto`` and ``length`` as plain integers is exact: the final
    reduction is modulo 0xFFFF, where a 32-bit length folds the same way."""
    return ones_sum(src + dst) + proto + length


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when a buffer that includes its checksum field sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF


def reference_checksum(data: bytes, initial: int = 0) -> int:
    """Plain word-by-word loop, kept only to test ``checksum`` against."""
    if len(data) & 1:
        data = data + b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
