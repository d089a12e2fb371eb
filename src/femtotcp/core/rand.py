"""Unpredictable numbers for what guards against spoofing: ephemeral ports
(RFC 6056), ICMP echo identifiers, DNS transaction ids, DHCP xids and backoff
jitter; and BLAKE2s for the keyed hashes of ISNs, SYN cookies and port offsets
(RFC 6528). Drawn from the kernel's CSPRNG (``os.urandom``), as ``secrets``
does, but without loading OpenSSL: ``secrets`` (through ``hmac``) and
``hashlib`` bring in libcrypto, about 3.7 MB of RSS an idle stack never needs.
"""

from __future__ import annotations

import os

try:
    from _blake2 import blake2s  # the C BLAKE2 that hashlib itself wraps
except ImportError:               # pragma: no cover - a Python built without it
    from hashlib import blake2s

__all__ = ["blake2s", "delay", "randbelow", "randbits"]


def randbits(k: int) -> int:
    """A uniformly random integer of ``k`` bits (``secrets.randbits``)."""
    if k <= 0:
        raise ValueError("number of bits must be greater than zero")
    return int.from_bytes(os.urandom((k + 7) // 8), "big") >> (-k % 8)


def randbelow(n: int) -> int:
    """A uniformly random integer in [0, n) (``secrets.randbelow``), by rejection."""
    if n <= 0:
        raise ValueError("upper bound must be positive")
    k = n.bit_length()
    while True:
        r = randbits(k)
        if r < n:
            return r


def delay(limit: float) -> float:
    """A random delay in (0, ``limit``] seconds at millisecond grain: a report's
    answer to a query or a join's repeat (IGMP RFC 3376 5.2, MLD RFC 2710 4)."""
    ms = max(1, int(limit * 1000))
    return (randbelow(ms) + 1) / 1000
