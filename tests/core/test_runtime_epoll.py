"""The real-time loop's own table of fds (``Runtime`` waits in epoll)."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from femtotcp.runtime import Runtime


class _Reader:
    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock = sock
        self.got: list[bytes] = []
        self.fail = fail

    def on_readable(self) -> None:
        data = self.sock.recv(4096)
        self.got.append(data)
        if self.fail:
            raise RuntimeError("handler bug")


def test_a_watched_fd_is_served_and_a_failing_handler_does_not_stop_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        bad = _Reader(a, fail=True)
        good = _Reader(c)
        rt.watch_fd(a.fileno(), True, False, bad)
        rt.watch_fd(c.fileno(), True, False, good)
        b.send(b"x")
        d.send(b"y")
        with caplog.at_level(logging.ERROR, logger="femtotcp.runtime"):
            for _ in range(3):
                rt.run_once(0.5)
                if bad.got and good.got:
                    break
        assert bad.got == [b"x"] and good.got == [b"y"]
        assert "handler bug" in caplog.text
        # no longer watched: data waits unread
        rt.watch_fd(c.fileno(), False, False, good)
        d.send(b"z")
        rt.run_once(0.05)
        assert good.got == [b"y"]
    finally:
        for s in (a, b, c, d):
            s.close()
        rt.close()


def test_an_fd_number_closed_and_reused_can_be_watched_again() -> None:
    """epoll forgets a closed fd by itself; the table must not make the next
    owner of the number fail to register."""
    rt = Runtime()
    a, b = socket.socketpair()
    try:
        first = _Reader(a)
        rt.watch_fd(a.fileno(), True, False, first)
        num = a.fileno()
        a.close()
        c, d = socket.socketpair()
        if c.fileno() != num:            # make the new socket take the old number
            os.dup2(c.fileno(), num)
            c.close()
            c = socket.socket(fileno=num)
        second = _Reader(c)
        rt.watch_fd(num, True, False, second)
        d.send(b"again")
        rt.run_once(0.5)
        assert second.got == [b"again"] and first.got == []
        c.close()
        d.close()
    finally:
        b.close()
        rt.close()


def test_work_handed_over_from_another_thread_runs_and_the_loop_sleeps_otherwise() -> None:
    rt = Runtime()
    ran: list[int] = []
    try:
        rt.thread = None
        rt.call_soon_threadsafe(lambda: ran.append(1))
        rt.run_once(0.5)
        assert ran == [1]
        rt.call_soon(lambda: ran.append(2))
        rt.run_once(0.5)
        assert ran == [1, 2]
    finally:
        rt.close()


def test_a_frame_arriving_while_a_timer_is_due_is_served_and_the_timer_fires() -> None:
    rt = Runtime()
    a, b = socket.socketpair()
    fired: list[str] = []
    try:
        reader = _Reader(a)
        rt.watch_fd(a.fileno(), True, False, reader)
        rt.call_later(-1.0, lambda: fired.append("due"))
        b.send(b"x")
        rt.run_once(0.5)
        assert reader.got == [b"x"] and fired == ["due"]
    finally:
        for s in (a, b):
            s.close()
        rt.close()


def test_a_timer_a_handler_arms_for_now_fires_in_the_same_round() -> None:
    rt = Runtime()
    a, b = socket.socketpair()
    fired: list[int] = []

    class Arming(_Reader):
        def on_readable(self) -> None:
            super().on_readable()
            rt.call_later(0.0, lambda: fired.append(1))

    try:
        rt.watch_fd(a.fileno(), True, False, Arming(a))
        b.send(b"x")
        rt.run_once(0.5)
        assert fired == [1]
    finally:
        for s in (a, b):
            s.close()
        rt.close()


def test_timers_fire_on_time_under_a_steady_stream() -> None:
    """A watched fd that is readable on every wake does not keep a due timer
    waiting: it fires while the stream goes on, and the frames are all served."""
    rt = Runtime()
    a, b = socket.socketpair()
    fired: list[int] = []
    try:
        reader = _Reader(a)
        rt.watch_fd(a.fileno(), True, False, reader)
        rt.call_later(0.05, lambda: fired.append(len(reader.got)))
        sent = 0
        end = time.monotonic() + 30.0
        while not fired and time.monotonic() < end:
            b.send(b"x")
            sent += 1
            rt.run_once(0.5)
        assert fired, "the timer never fired under the stream"
        for _ in range(5):
            b.send(b"x")
            sent += 1
            rt.run_once(0.5)
        assert len(reader.got) == sent
    finally:
        for s in (a, b):
            s.close()
        rt.close()


def test_work_after_an_idle_wait_sees_the_stack_clock_of_its_wake() -> None:
    """The stacks' clock (``timers.now``: TCP stamps segments and samples RTTs
    with it) is the time of the wake when a watched fd's handler runs, not
    the time of the wake before an idle spell."""
    from femtotcp.stack import Stack

    rt = Runtime()
    st = Stack("clock")
    rt.add_stack(st)
    a, b = socket.socketpair()
    seen: list[float] = []

    class Stamp(_Reader):
        def on_readable(self) -> None:
            super().on_readable()
            seen.append(st.timers.now)

    try:
        rt.watch_fd(a.fileno(), True, False, Stamp(a))
        rt.run_once(0.0)
        time.sleep(0.2)
        before = time.monotonic()
        b.send(b"x")
        rt.run_once(0.5)
        assert seen and seen[0] >= before
    finally:
        for s in (a, b):
            s.close()
        rt.close()


class _ScriptedEpoll:
    """Stands in for the loop's epoll: each wait returns after the scripted
    time (on a fake clock) with or without an event, and every call is kept."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.ready_at: float | None = None     # when the next event comes
        self.calls: list[float] = []

    def poll(self, timeout: float = -1.0) -> list[tuple[int, int]]:
        self.calls.append(timeout)
        now = self.clock[0]
        if self.ready_at is not None and self.ready_at <= now:
            self.ready_at = None
            return [(99, 1)]
        if timeout == 0:
            self.clock[0] = now + 1e-6          # a poll costs a microsecond
            return []
        if self.ready_at is not None and (timeout < 0 or self.ready_at <= now + timeout):
            self.clock[0] = self.ready_at
            self.ready_at = None
            return [(99, 1)]
        self.clock[0] = now + timeout
        return []


def _scripted(monkeypatch: pytest.MonkeyPatch, busy_poll: float) -> tuple[
        Runtime, _ScriptedEpoll, list[float]]:
    from femtotcp import runtime as rtmod
    clock = [100.0]
    monkeypatch.setattr(rtmod, "monotonic", lambda: clock[0])
    rt = Runtime(busy_poll=busy_poll)
    rt._epoll.close()
    ep = _ScriptedEpoll(clock)
    rt._epoll = ep          # type: ignore[assignment]
    return rt, ep, clock


def test_busy_poll_window_grows_while_wakes_come_soon_and_closes_after_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """KVM's halt-polling rule: a wake within the limit but after the window
    doubles the window (from 10 us up to the limit); a wake inside the window
    leaves it; a wait longer than the limit closes it."""
    rt, ep, clock = _scripted(monkeypatch, 200e-6)
    assert rt.poll_window == 0.0
    ep.ready_at = clock[0] + 30e-6
    assert rt._poll_then_wait(-1.0) == [(99, 1)]
    assert ep.calls == [-1.0]                  # no window yet: straight to sleep
    assert rt.poll_window == pytest.approx(10e-6)
    windows = []
    for _ in range(6):
        ep.ready_at = clock[0] + 190e-6
        assert rt._poll_then_wait(-1.0) == [(99, 1)]
        windows.append(round(rt.poll_window * 1e6))
    assert windows == [20, 40, 80, 160, 200, 200]
    # A wake inside the window: found by polling, with no sleep at all.
    ep.calls.clear()
    ep.ready_at = clock[0] + 50e-6
    assert rt._poll_then_wait(-1.0) == [(99, 1)]
    assert ep.calls and all(t == 0 for t in ep.calls)
    assert rt.poll_window == pytest.approx(200e-6)
    # An idle spell: polls for the window, sleeps, and the window closes.
    ep.calls.clear()
    ep.ready_at = clock[0] + 0.5
    assert rt._poll_then_wait(-1.0) == [(99, 1)]
    assert ep.calls[-1] == -1.0 and rt.poll_window == 0.0
    # ...so the next wait sleeps at once.
    ep.calls.clear()
    ep.ready_at = clock[0] + 0.5
    rt._poll_then_wait(-1.0)
    assert ep.calls == [-1.0]


def test_busy_poll_gives_the_cpu_away_once_before_it_polls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A window opens with one sched_yield (the readers the last round woke
    may be queued on this CPU), then polls without yielding again; a wait
    with the window closed sleeps at once, without one."""
    from femtotcp import runtime as rtmod
    rt, ep, clock = _scripted(monkeypatch, 200e-6)
    monkeypatch.setattr(rtmod, "sched_yield", lambda: ep.calls.append(-99.0))
    ep.ready_at = clock[0] + 30e-6
    rt._poll_then_wait(-1.0)
    assert ep.calls == [-1.0]                  # no window: asleep, no yield
    ep.calls.clear()
    ep.ready_at = clock[0] + 8e-6
    assert rt._poll_then_wait(-1.0) == [(99, 1)]
    assert ep.calls[0] == -99.0 and len(ep.calls) > 3
    assert all(t == 0 for t in ep.calls[1:])  # polled after it, never yielded again
    ep.calls.clear()
    ep.ready_at = clock[0] + 0.5               # the window runs out: sleep
    rt._poll_then_wait(-1.0)
    assert ep.calls.count(-99.0) == 1 and ep.calls[0] == -99.0 and ep.calls[-1] == -1.0


def test_busy_poll_stops_at_a_due_timer_and_sleeps_only_for_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rt, ep, clock = _scripted(monkeypatch, 200e-6)
    rt.poll_window = 100e-6
    start = clock[0]
    assert rt._poll_then_wait(40e-6) == []     # the timer is due first: no sleep
    assert all(t == 0 for t in ep.calls)
    assert clock[0] - start == pytest.approx(40e-6, abs=2e-6)
    assert rt.poll_window == 100e-6            # a timer says nothing of the traffic
    ep.calls.clear()
    start = clock[0]
    assert rt._poll_then_wait(1e-3) == []
    assert ep.calls[-1] == pytest.approx(1e-3 - (clock[0] - start - ep.calls[-1]), abs=1e-9)
    assert clock[0] - start == pytest.approx(1e-3)   # polled, then slept the rest
    assert rt.poll_window == 0.0               # 1 ms without traffic: closed


def test_without_busy_poll_the_loop_only_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    rt, ep, clock = _scripted(monkeypatch, 0.0)
    for _ in range(5):
        ep.ready_at = clock[0] + 5e-6
        rt.run_once(0.01)
    assert ep.calls and all(t > 0 for t in ep.calls)
    assert rt.poll_window == 0.0
    with pytest.raises(ValueError, match="busy_poll -1"):
        Runtime(busy_poll=-1)


def test_a_busy_polling_loop_serves_a_ping_pong_and_stops_polling_when_idle() -> None:
    """On a real epoll: quick exchanges open the window, answers stay right,
    and an idle spell longer than the limit closes it."""
    rt = Runtime(busy_poll=0.05)      # a limit no thread wake-up here exceeds
    a, b = socket.socketpair()
    try:
        class Echo:
            def on_readable(self) -> None:
                a.send(a.recv(64).upper())

        rt.watch_fd(a.fileno(), True, False, Echo())
        rt.start()
        for i in range(50):
            b.send(b"ping%d" % i)
            assert b.recv(64) == b"PING%d" % i
        assert rt.poll_window > 0
        rt.call(lambda: rt.call_later(0.2, lambda: None))   # an idle wait of 200 ms
        time.sleep(0.4)
        assert rt.call(lambda: rt.poll_window) == 0.0
        b.send(b"again")
        assert b.recv(64) == b"AGAIN"
    finally:
        rt.stop()
        rt.wake()
        rt.join(5)
        rt.close()
        a.close()
        b.close()
