"""api/loop.py: the socket API's one way to run work in the loop thread."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator

import pytest

from femtotcp.api import loop
from femtotcp.runtime import Runtime


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime()
    try:
        yield runtime
    finally:
        runtime.stop()
        runtime.join(5)
        runtime.close()


def test_without_a_loop_thread_the_work_runs_here(rt: Runtime) -> None:
    assert loop.call(rt, lambda a, b: (a + b, threading.current_thread()), 2, 3) == \
        (5, threading.current_thread())


def test_work_runs_in_the_loop_thread_and_its_errors_come_back(rt: Runtime) -> None:
    rt.start()
    assert loop.call(rt, threading.current_thread) is rt.thread

    def fail() -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

    with pytest.raises(ConnectionRefusedError):
        loop.call(rt, fail)


def test_work_slower_than_a_liveness_step_runs_once(rt: Runtime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "LIVENESS_STEP", 0.01)
    rt.start()
    runs: list[int] = []
    release = threading.Event()

    def slow() -> str:
        runs.append(1)
        release.wait(5)
        return "done"

    # The caller's waits time out while ``slow`` runs; it must not run twice,
    # and its result must still come back.
    threading.Timer(0.2, release.set).start()
    assert loop.call(rt, slow) == "done"
    assert runs == [1]


def test_a_loop_that_stops_before_the_work_runs_gives_enetdown(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "LIVENESS_STEP", 0.05)
    monkeypatch.setattr(loop, "STOP_GRACE", 0.05)
    rt.start()
    release = threading.Event()

    def stop_and_hold() -> None:
        rt.stop()              # the loop ends after this batch: later work never runs
        release.wait(5)

    rt.call_soon_threadsafe(stop_and_hold)
    ran: list[int] = []
    try:
        with pytest.raises(OSError) as exc:
            loop.call(rt, lambda: ran.append(1))
    finally:
        release.set()
    assert exc.value.errno == errno.ENETDOWN
    rt.join(5)
    assert ran == []
    # With the loop gone, nothing else touches the stack: work runs right here.
    assert loop.call(rt, lambda: 7) == 7
