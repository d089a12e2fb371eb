"""Running stack work from a program's thread: the API's one way in to the loop.

Only the runtime's loop thread touches protocol state (DESIGN: the core is
single-threaded). ``call`` hands a function to it through ``Runtime.call`` and
waits for the result, adding what a program's socket needs on top:

* no loop thread running (not started yet, or stopped): nothing else can touch
  the stack, so the function runs right here;
* the loop stops while the call waits: ``OSError(ENETDOWN)`` instead of a
  thread blocked for ever (``Runtime.call`` without a timeout would wait on).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from femtotcp.runtime import Runtime

T = TypeVar("T")

#: Seconds between checks that the loop still runs while a call waits.
LIVENESS_STEP = 1.0
#: Seconds a call still waits once the loop was asked to stop.
STOP_GRACE = 0.5


def loop_running(runtime: Runtime) -> bool:
    """True while a loop thread other than this one is alive to run work."""
    th = runtime.thread
    return th is not None and th is not threading.current_thread() and th.is_alive()


def call(runtime: Runtime, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the loop thread and return its result (or raise it).

    Waits through ``Runtime.call`` in steps of LIVENESS_STEP seconds. A step
    that times out hands the same job in again; the job runs ``fn`` at most
    once (the loop thread runs jobs one after another, so a second copy only
    finds the first one done), which makes the retry safe."""
    if not loop_running(runtime):
        return fn(*args)
    claimed = False
    outcome: tuple[bool, Any] | None = None

    def job() -> None:
        nonlocal claimed, outcome
        if claimed:
            return
        claimed = True
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:  # handed back to the calling thread
            outcome = (False, exc)

    stopping = False
    while outcome is None:
        try:
            runtime.call(job, timeout=STOP_GRACE if stopping else LIVENESS_STEP)
        except TimeoutError:
            if outcome is not None:
                break
            if stopping:
                raise OSError(errno.ENETDOWN, f"{os.strerror(errno.ENETDOWN)} "
                              "(the stack's loop has stopped)") from None
            stopping = not runtime.running
    ok, value = outcome
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
