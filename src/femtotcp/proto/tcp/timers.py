"""Lazy connection timers: each keeps a deadline attribute and at most one heap
entry, so restarting the retransmission timer on every ACK costs an attribute
write (the heap entry, when it fires early, re-arms itself for the deadline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from femtotcp.proto.tcp.env import TimerHandle, TimerSource


class LazyTimer:
    """A restartable deadline backed by at most one pending heap entry."""

    __slots__ = ("timers", "callback", "deadline", "_entry")

    def __init__(self, timers: TimerSource, callback: Callable[[], None]) -> None:
        self.timers = timers
        self.callback = callback
        self.deadline: float | None = None
        self._entry: TimerHandle | None = None

    def set(self, when: float) -> None:
        self.deadline = when
        entry = self._entry
        if entry is None or entry.when > when:
            if entry is not None:
                entry.cancel()
            self._entry = self.timers.call_at(when, self._fire)

    def stop(self) -> None:
        self.deadline = None

    def cancel(self) -> None:
        """Stop and drop the heap entry now (connection teardown)."""
        self.deadline = None
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def retire(self) -> None:
        """Cancel, and let go of the callback (a bound method of the owner,
        which holds this timer: a reference cycle). For an owner that is
        finished with; should the timer still be set, it fires into nothing,
        as the owner's handler would in that state."""
        self.cancel()
        self.callback = _nothing

    def _fire(self) -> None:
        self._entry = None
        deadline = self.deadline
        if deadline is None:
            return
        if deadline > self.timers.now:
            self._entry = self.timers.call_at(deadline, self._fire)
            return
        self.deadline = None
        self.callback()


def _nothing() -> None:
    """A retired timer's callback."""


class _Unarmed:
    """A connection timer never set yet (``_UNARMED``, shared): no deadline,
    nothing to stop. The owner makes its ``LazyTimer`` when it first sets it."""

    __slots__ = ()
    deadline = None

    def stop(self) -> None:
        pass

    def cancel(self) -> None:
        pass


_UNARMED = _Unarmed()
