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
