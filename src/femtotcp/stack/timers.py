"""A timer heap driven by the time the caller passes in (sans-I/O)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count


class Timer:
    """A scheduled callback; ``cancel()`` is O(1) (lazy deletion from the heap)."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """Callbacks due at absolute times. ``poll(now)`` runs those that are due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = count()
        self.now = 0.0

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.now + delay, callback)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def poll(self, now: float) -> None:
        """Run every timer due at or before ``now``, in time order."""
        if now > self.now:
            self.now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)
