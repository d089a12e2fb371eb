"""The bind-conflict rule, one place for TCP, UDP and the socket API.

Linux's bind(2) (``inet_csk_bind_conflict``, ``udp_lib_lport_inuse``): a local
(address, port) is taken by another socket bound to the same port when the
addresses are equal or either is its family's wildcard (0.0.0.0, ::). What
counts as "another socket" (listeners, connections, reservations, and who may
share with SO_REUSEADDR) is the caller's choice; the overlap is decided here.
"""

from __future__ import annotations

from collections.abc import Collection

ANY4 = b"\x00" * 4
ANY6 = b"\x00" * 16


def port_taken(bound: Collection[tuple[bytes, int]], addr: bytes, port: int) -> bool:
    """True when (``addr``, ``port``) conflicts with one of ``bound`` (local
    (address, port) pairs; a dict keyed by them will do, and is fastest)."""
    if (addr, port) in bound:
        return True
    wildcard = ANY4 if len(addr) == 4 else ANY6
    if addr == wildcard:
        return any(p == port and len(a) == len(addr) for a, p in bound)
    return (wildcard, port) in bound
