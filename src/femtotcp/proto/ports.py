"""The bind-conflict rule, one place for TCP, UDP and the socket API.

Linux's bind(2) (``inet_csk_bind_conflict``, ``udp_lib_lport_inuse``): a local
(address, port) is taken by another socket bound to the same port when the
addresses are equal or either is its family's wildcard (0.0.0.0, ::). What
counts as "another socket" (listeners, connections, reservations, and who may
share with SO_REUSEADDR) is the caller's choice; the overlap is decided here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

T = TypeVar("T")

ANY4 = b"\x00" * 4
ANY6 = b"\x00" * 16


def sharers_taken(bindings: Iterable[tuple[tuple[bytes, int], Iterable[T]]],
                  addr: bytes, port: int, v6only: bool, dual: tuple[bytes, int] | None,
                  shares: Callable[[T], bool]) -> bool:
    """``port_taken`` for a binding that may share (SO_REUSEADDR, SO_REUSEPORT):
    only the bindings of ``port`` with a holder that does not share with it
    (``shares(holder)`` False) count. ``bindings``: each bound (address,
    port) with its holders; ``dual``: the ``::`` binding that takes IPv4, if
    any."""
    bound = {key for key, holders in bindings
             if key[1] == port and not all(shares(h) for h in holders)}
    return port_taken(bound, addr, port, v6only,
                      () if dual is None or dual not in bound else (dual,))


def port_taken(bound: Collection[tuple[bytes, int]], addr: bytes, port: int,
               v6only: bool = True, dual: Collection[tuple[bytes, int]] = ()) -> bool:
    """True when (``addr``, ``port``) conflicts with one of ``bound`` (local
    (address, port) pairs; a dict keyed by them will do, and is fastest).

    Across the families (Linux's ipv6_rcv_saddr_equal): a binding to ``::``
    that takes IPv4 too (IPV6_V6ONLY off) overlaps every IPv4 binding of its
    port. ``v6only`` is the new binding's flag (when ``addr`` is ``::``);
    ``dual`` holds the bound ``(::, port)`` pairs whose holder takes IPv4.
    A binding to a specific IPv6 address is IPv6-only, as on Linux."""
    if (addr, port) in bound:
        return True
    if len(addr) == 4:
        if (ANY6, port) in dual:
            return True
    elif addr == ANY6 and not v6only and any(p == port and len(a) == 4 for a, p in bound):
        return True
    wildcard = ANY4 if len(addr) == 4 else ANY6
    if addr == wildcard:
        return any(p == port and len(a) == len(addr) for a, p in bound)
    return (wildcard, port) in bound
