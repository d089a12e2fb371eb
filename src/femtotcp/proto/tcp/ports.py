"""Ephemeral port selection, RFC 6056 3.3.4 (Algorithm 4, "Double-Hash").

The starting point in the range is a keyed hash of the connection's addresses
and remote port, so ports are unpredictable to an off-path attacker; a small
table of counters, indexed by a second hash, spreads successive connections to
the same destination apart and keeps ports of different destinations independent.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from femtotcp.core import rand

TABLE_LENGTH = 256


class EphemeralPorts:
    def __init__(self, low: int = 32768, high: int = 60999, secret: bytes | None = None) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad ephemeral port range {low}-{high}")
        self.low = low
        self.high = high
        self._key = key = secret if secret is not None else os.urandom(32)
        self._table = [0] * TABLE_LENGTH
        # The two keyed functions (F and G), keyed once: each hash updates a copy.
        self._keyed = {person: rand.blake2s(key=key, digest_size=4, person=person)
                       for person in (b"offset", b"index")}

    def _f(self, person: bytes, laddr: bytes, raddr: bytes, rport: int) -> int:
        h = self._keyed[person].copy()
        h.update(laddr + raddr + rport.to_bytes(2, "big"))
        return int.from_bytes(h.digest(), "big")

    def pick(self, laddr: bytes, raddr: bytes, rport: int,
             in_use: Callable[[int], bool]) -> int | None:
        """A free port for (laddr, raddr, rport), or None when the range is exhausted."""
        num = self.high - self.low + 1
        offset = self._f(b"offset", laddr, raddr, rport)
        index = self._f(b"index", laddr, raddr, rport) % TABLE_LENGTH
        table = self._table
        for _ in range(num):
            port = self.low + (offset + table[index]) % num
            table[index] += 1
            if not in_use(port):
                return port
        return None
