"""The internet checksum (RFC 1071).

The ones' complement sum of 16-bit words equals the value of the whole buffer,
read as one big-endian integer, modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF).
``int.from_bytes`` and ``%`` run at C speed, so this beats any Python loop by
orders of magnitude. The one subtlety: a sum that is a non-zero multiple of
0xFFFF is 0xFFFF in ones' complement, not 0.
"""

from __future__ import annotations


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones' complement sum of ``data`` (padded to even length) plus ``initial``.

    Returns a value in 0..0xFFFF where 0xFFFF stands for "non-zero multiple"."""
    if len(data) & 1:
        value = int.from_bytes(data, "big") << 8
    else:
        value = int.from_bytes(data, "big")
    value += initial
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
