"""A timer heap driven by the time the caller passes in (sans-I/O)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count

#: Rebuild the heap once this many cancelled entries make up half of it.
_COMPACT_MIN = 256


def _nothing() -> None:
    """What a cancelled timer holds instead of its callback."""


class Timer:
    """A scheduled callback; ``cancel()`` is O(1) (lazy deletion from the heap)."""

    __slots__ = ("when", "callback", "cancelled", "_owner")

    def __init__(self, when: float, callback: Callable[[], None],
                 owner: Timers | None = None) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._owner = owner

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            # Never called now: let go of what it would have called, so the
            # entry left in the heap keeps nothing alive (a closed connection).
            self.callback = _nothing
            if self._owner is not None:
                self._owner._cancelled += 1


class Timers:
    """Callbacks due at absolute times. ``poll(now)`` runs those that are due.

    Cancelled timers stay in the heap until they reach its top; when they make up
    most of it the heap is rebuilt, so timers that are set and cancelled at a high
    rate (reassembly, retransmission) cannot pile up behind one long-lived timer."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = count()
        self._cancelled = 0     # cancelled entries still in the heap
        self.now = 0.0

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._compact()
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.now + delay, callback)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if not e[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def poll(self, now: float) -> None:
        """Run every timer due at or before ``now``, in time order."""
        if now > self.now:
            self.now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                self._cancelled -= 1
            else:
                timer.cancelled = True
                timer.callback()
            heap = self._heap        # a callback may have compacted the heap

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def heap_size(self) -> int:
        """Entries held, cancelled ones included (a bound the tests check)."""
        return len(self._heap)
