"""Initial sequence numbers (RFC 6528), timestamp offsets (RFC 7323 5.4) and
SYN cookies, all keyed by a secret drawn per stack from ``os.urandom``."""

from __future__ import annotations

import os
import struct
from bisect import bisect_right

from femtotcp.core import rand
from femtotcp.proto.tcp.seq import MASK, after32


def _tuple_bytes(laddr: bytes, lport: int, raddr: bytes, rport: int) -> bytes:
    return laddr + lport.to_bytes(2, "big") + raddr + rport.to_bytes(2, "big")


class IsnGenerator:
    """RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
    with M a 4 microsecond timer and F a keyed hash (BLAKE2s)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = key = secret if secret is not None else os.urandom(32)
        # Keyed once per use: each hash updates a copy (keying anew costs more,
        # and every connection makes two of them).
        # One 64-bit hash per 4-tuple gives both F (the high half) and the
        # timestamp offset (the low half); the last one is kept, since a new
        # connection asks for both in turn.
        self._pair = rand.blake2s(key=key, digest_size=8, person=b"isn+ts")
        self._last: tuple[tuple[bytes, int, bytes, int], int] = ((b"", 0, b"", 0), 0)
        self._flow = rand.blake2s(key=key, digest_size=4, person=b"flow")

    def _both(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        key = (laddr, lport, raddr, rport)
        last = self._last
        if last[0] == key:
            return last[1]
        h = self._pair.copy()
        h.update(_tuple_bytes(laddr, lport, raddr, rport))
        value = int.from_bytes(h.digest(), "big")
        self._last = (key, value)
        return value

    def isn(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        return (int(now * 250_000) + (self._both(laddr, lport, raddr, rport) >> 32)) & MASK

    def ts_offset(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """A per-connection timestamp offset, so TSvals do not reveal uptime and
        stay the same for a SYN cookie and the connection it becomes."""
        return self._both(laddr, lport, raddr, rport) & MASK

    def flow_label(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """RFC 6437 3: a flow label for a segment no connection owns (a RST, a
        SYN-cookie SYN-ACK), from a keyed hash of its 4-tuple as Linux's auto
        flow labels: 20 bits, never zero, the same for every such reply in one
        flow and unpredictable to others."""
        h = self._flow.copy()
        h.update(_tuple_bytes(laddr, lport, raddr, rport))
        return int.from_bytes(h.digest(), "big") & 0xFFFFF or 1


# MSS values a cookie can carry (3 bits), as Linux's msstab plus jumbo sizes.
COOKIE_MSS = (216, 536, 1200, 1300, 1400, 1440, 1460, 8960)
COOKIE_PERIOD = 64.0  # seconds per counter step
COOKIE_MAX_AGE = 2    # counter steps a cookie stays valid (as Linux: about two minutes)
# Low bits of a cookie SYN-ACK's TSval: peer window scale (4 bits, 15 = none) + SACK.
TS_OPT_BITS = 5
TS_OPT_MASK = (1 << TS_OPT_BITS) - 1
TS_NO_WSCALE = 0xF
TS_SACK = 0x10
#: What a cookie's hash covers after the 4-tuple: peer ISN, counter, MSS index.
_COOKIE_TAIL = struct.Struct("!IQB")


class SynCookies:
    """Stateless SYN-ACKs when the SYN queue is full.

    The ISN is ``count (5 bits) | mss index (3 bits) | hash (24 bits)`` where the
    hash covers the secret, the 4-tuple, the peer's ISN, the full counter and the
    MSS index: the final ACK (ack - 1) is checked by recomputing it. Window scale
    and SACK ride in the low bits of our TSval when the peer sent timestamps,
    as Linux does.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = secret if secret is not None else os.urandom(32)
        # Keyed once: each cookie hashes a copy (half the cost of keying anew,
        # and a SYN flood makes one per SYN).
        self._keyed = rand.blake2s(key=self._key, digest_size=3, person=b"cookie")

    def _hash(self, counter: int, mss_index: int, laddr: bytes, lport: int, raddr: bytes,
              rport: int, peer_isn: int) -> int:
        h = self._keyed.copy()
        h.update(_tuple_bytes(laddr, lport, raddr, rport) + _COOKIE_TAIL.pack(
            peer_isn & MASK, counter, mss_index))
        return int.from_bytes(h.digest(), "big")

    def make(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int,
             peer_isn: int, mss: int) -> tuple[int, int]:
        """Return (our ISN, the MSS it encodes: the largest table value <= mss)."""
        index = max(0, bisect_right(COOKIE_MSS, mss) - 1)
        counter = int(now // COOKIE_PERIOD)
        h = self._hash(counter, index, laddr, lport, raddr, rport, peer_isn)
        return ((counter & 0x1F) << 27) | (index << 24) | h, COOKIE_MSS[index]

    def check(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int,
              peer_isn: int, cookie: int) -> int | None:
        """The MSS encoded in a valid, fresh cookie; None otherwise."""
        cookie &= MASK
        index = (cookie >> 24) & 0x7
        stamp = cookie >> 27
        current = int(now // COOKIE_PERIOD)
        for age in range(COOKIE_MAX_AGE + 1):
            counter = current - age
            if counter < 0 or counter & 0x1F != stamp:
                continue
            if self._hash(counter, index, laddr, lport, raddr, rport,
                          peer_isn) == cookie & 0xFFFFFF:
                return COOKIE_MSS[index]
        return None


def encode_ts_options(tsval: int, wscale: int | None, sack: bool) -> int:
    """Put the peer's window scale and SACK permission in a cookie TSval's low
    bits, without letting the TSval run ahead of the clock (the peer's PAWS)."""
    bits = (TS_NO_WSCALE if wscale is None else wscale) | (TS_SACK if sack else 0)
    value = (tsval & ~TS_OPT_MASK) | bits
    if after32(value, tsval):
        value = ((tsval & ~TS_OPT_MASK) - (1 << TS_OPT_BITS)) | bits
    return value & MASK


def decode_ts_options(tsecr: int) -> tuple[int | None, bool]:
    bits = tsecr & TS_OPT_MASK
    ws = bits & 0xF
    return (None if ws == TS_NO_WSCALE else min(ws, 14)), bool(bits & TS_SACK)
