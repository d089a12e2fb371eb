"""The real-time loop's own table of fds (``Runtime`` waits in epoll)."""

from __future__ import annotations

import logging
import os
import socket

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
