"""Sequence-number arithmetic (RFC 9293 3.4), in one place.

The connection keeps sequence numbers *unwrapped*: ISS and IRS are the 32-bit
values from the wire and everything after them grows as a plain Python int, so
comparisons between them are ordinary ``<``/``>``. A 32-bit number arriving
from the wire is unwrapped against the nearest reference (RCV.NXT for SEG.SEQ,
SND.UNA for SEG.ACK) and written back modulo 2**32. Values that stay 32-bit
(timestamps, a SEG.SEQ compared with no state) use the modular comparisons.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


def unwrap(seq32: int, ref: int) -> int:
    """The unwrapped number nearest to ``ref`` whose low 32 bits are ``seq32``."""
    return ref + ((seq32 - ref + HALF) & MASK) - HALF


def before32(a: int, b: int) -> bool:
    """32-bit ``a`` precedes ``b`` (RFC 1982 serial arithmetic; ``a - b`` is at
    least half the space)."""
    return (a - b) & MASK >= HALF


def after32(a: int, b: int) -> bool:
    """32-bit ``a`` follows ``b``: neither equal nor ``before32(a, b)``."""
    return 0 < (a - b) & MASK < HALF
