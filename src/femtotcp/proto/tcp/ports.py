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
        # The two keyed functions (F and G) as the two halves of one keyed
        # 64-bit hash, keyed once: each pick hashes a copy.
        self._keyed = rand.blake2s(key=key, digest_size=8, person=b"port")
        #: The last destination's (addresses + port, hash): a client connects
        #: to one place many times over, and the hash depends on nothing else.
        self._last: tuple[bytes, int] = (b"", 0)

    def pick(self, laddr: bytes, raddr: bytes, rport: int,
             in_use: Callable[[int], bool]) -> int | None:
        """A free port for (laddr, raddr, rport), or None when the range is exhausted."""
        num = self.high - self.low + 1
        dest = laddr + raddr + rport.to_bytes(2, "big")
        last = self._last
        if last[0] == dest:
            both = last[1]
        else:
            h = self._keyed.copy()
            h.update(dest)
            both = int.from_bytes(h.digest(), "big")
            self._last = (dest, both)
        offset = both >> 32
        index = both % TABLE_LENGTH
        table = self._table
        for _ in range(num):
            port = self.low + (offset + table[index]) % num
            table[index] += 1
            if not in_use(port):
                return port
        return None
