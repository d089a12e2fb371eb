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

    The job goes to the loop once (``call_soon_threadsafe``) and the caller
    waits on a lock the job releases when done (no future and condition on
    the way: this is the path of every datagram an in-process program
    sends), in steps of LIVENESS_STEP seconds that check the loop still
    runs. The job runs ``fn`` at most once; once the caller gave up
    (ENETDOWN) it does not run at all."""
    if not loop_running(runtime):
        return fn(*args)
    done = threading.Lock()
    done.acquire()
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
        finally:
            done.release()

    runtime.call_soon_threadsafe(job)
    stopping = False
    while not done.acquire(timeout=STOP_GRACE if stopping else LIVENESS_STEP):
        if stopping:
            claimed = True        # the loop never took it: it never will
            raise OSError(errno.ENETDOWN, f"{os.strerror(errno.ENETDOWN)} "
                          "(the stack's loop has stopped)")
        stopping = not runtime.running
    assert outcome is not None
    ok, value = outcome
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
