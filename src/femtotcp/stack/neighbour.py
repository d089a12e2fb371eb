"""The neighbour cache both families share in shape: ARP's (``stack/arp.py``)
and neighbour discovery's (``stack/ndp.py``). One dict per interface of
``Neighbour`` entries; a bounded cache (the least recently used entry without
waiting packets makes room), a bounded queue of packets waiting on
resolution, and garbage collection of entries unused and unconfirmed for
``arp_stale_timeout``, and one way a failed resolution ends (``_failed``: the
waiting packets dropped, counted and reported to their senders). The states and
what moves an entry between them are each protocol's own."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from femtotcp.core.timers import Timer

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
DELAY = "DELAY"        # neighbour discovery only (RFC 4861 7.3.2)
PROBE = "PROBE"

#: How many of the oldest entries a full cache looks at to make room.
_EVICT_SCAN = 16


class Neighbour:
    __slots__ = ("ip", "mac", "state", "confirmed", "used", "requests", "pending",
                 "pending_bytes", "timer", "router")

    def __init__(self, ip: bytes, now: float) -> None:
        self.ip = ip
        self.mac: bytes | None = None
        self.state = INCOMPLETE
        self.confirmed = now
        self.used = now
        self.requests = 0
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.timer: Timer | None = None
        self.router = False     # RFC 4861 IsRouter (neighbour discovery)

    def stale(self, now: float, reachable: float) -> bool:
        """The one freshness rule: an entry whose reachability was last confirmed
        more than ``reachable`` seconds ago is STALE. Its MAC is still used, but
        the next use re-checks it with unicast probes (RFC 1122 2.3.2.1, Linux's
        REACHABLE -> STALE -> PROBE; RFC 4861 7.3.3 for neighbour discovery)."""
        return self.state == REACHABLE and now - self.confirmed > reachable

    def sendable(self, now: float, reachable: float) -> bool:
        """Whether a packet may go to the MAC with no state change: REACHABLE
        and confirmed within ``reachable`` seconds, or already being checked
        (ARP's PROBE; neighbour discovery's DELAY and PROBE). What the
        per-destination cache (``stack/destination.py``) requires."""
        state = self.state
        return self.mac is not None and state != STALE and state != INCOMPLETE and (
            state != REACHABLE or now - self.confirmed <= reachable)


class NeighbourTable:
    """The caches of one protocol; ``prefix`` names its counters."""

    prefix = "arp"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        #: Seconds an entry stays REACHABLE after a confirmation (``arp_reachable``;
        #: neighbour discovery's from ``ndp_reachable``, then Router Advertisements).
        self.reachable = stack.config.arp_reachable
        self.caches: dict[Interface, dict[bytes, Neighbour]] = {}
        self._gc_timer: Timer | None = None

    def _new_entry(self, cache: dict[bytes, Neighbour], ip: bytes) -> Neighbour | None:
        """A fresh INCOMPLETE entry, or None when the cache is full of entries
        with waiting packets (counted ``<prefix>.cache_full``)."""
        if len(cache) >= self.stack.config.arp_cache_max:
            # The least recently used of the oldest few entries without waiting
            # packets (bounded work per new neighbour: a storm of new senders
            # must not cost a scan of the whole cache each, as Linux's forced
            # GC walks from the oldest); any entry without packets if none.
            victim: Neighbour | None = None
            for seen, n in enumerate(cache.values()):
                if not n.pending and (victim is None or n.used < victim.used):
                    victim = n
                if seen >= _EVICT_SCAN and victim is not None:
                    break
            if victim is None:
                self.stack.counters[f"{self.prefix}.cache_full"] += 1
                return None
            if victim.timer is not None:
                victim.timer.cancel()
            del cache[victim.ip]
        n = cache[ip] = Neighbour(ip, self.stack.now)
        self._schedule_gc()
        return n

    def _enqueue(self, n: Neighbour, packet: bytes) -> None:
        """Queue a packet on resolution, bounded in packets and bytes (Linux
        unres_qlen, unres_qlen_bytes): the oldest go first, so the fragments of
        one large datagram fit together."""
        cfg = self.stack.config
        while n.pending and (len(n.pending) >= cfg.arp_pending_max
                             or n.pending_bytes + len(packet) > cfg.arp_pending_bytes):
            n.pending_bytes -= len(n.pending.popleft())
            self.stack.counters[f"{self.prefix}.pending_overflow"] += 1
        n.pending.append(packet)
        n.pending_bytes += len(packet)

    def _failed(self, cache: dict[bytes, Neighbour], n: Neighbour) -> None:
        """Resolution of ``n`` failed: the entry goes and its waiting packets
        are dropped (counted ``<prefix>.pending_dropped``), each reported to the
        transport that sent it through ``Stack.local_error`` (Linux's
        neigh_invalidate -> error_report: host unreachable)."""
        if cache.get(n.ip) is n:
            del cache[n.ip]
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        pending, n.pending = n.pending, deque()
        n.pending_bytes = 0
        if not pending:
            return
        stack = self.stack
        stack.counters[f"{self.prefix}.pending_dropped"] += len(pending)
        for packet in pending:
            stack.local_error(packet)

    def _schedule_gc(self) -> None:
        if self._gc_timer is None:
            self._gc_timer = self.stack.timers.call_later(
                self.stack.config.arp_stale_timeout / 2, self._gc)

    def _gc(self) -> None:
        self._gc_timer = None
        now = self.stack.now
        limit = self.stack.config.arp_stale_timeout
        remaining = 0
        for cache in self.caches.values():
            for ip, n in list(cache.items()):
                if n.mac is not None and now - n.used > limit and now - n.confirmed > limit:
                    del cache[ip]
            remaining += len(cache)
        if remaining:
            self._schedule_gc()
