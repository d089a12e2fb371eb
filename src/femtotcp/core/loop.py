"""What devices and services may ask of whichever loop drives them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from femtotcp.core.timers import Timer


class Loop(Protocol):
    """A clock, timers and a run-soon queue (``runtime.SimLoop`` and ``runtime.Runtime``)."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...

    def call_soon(self, callback: Callable[[], None]) -> None: ...
