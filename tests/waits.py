"""Waiting on a deadline for a condition, instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine (the test fails for no
reason) or longer than needed everywhere; ``wait_until`` returns as soon as the
condition holds and fails with what was awaited when the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 10.0,
               what: str = "the condition", interval: float = 0.01) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
