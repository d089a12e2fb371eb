"""The loops that drive stacks and devices.

``SimLoop`` runs on a virtual clock: time jumps straight to the next event, so
tests and the demo are deterministic and never sleep. ``Runtime`` runs in real
time: it blocks in ``epoll`` on the device fds and a wake-up fd, with the
next timer as the timeout (no fixed tick), and is the only thread that touches
protocol state. Other threads hand it work with ``call``/``call_soon_threadsafe``.

The contract with each stack: the loop gives it its clock (``set_clock``),
hands it frames (``receive``, through the device's receiver), and after each
batch of frames calls ``end_batch`` (after an fd device's read batch; after
each round of ``call_soon`` work, which is how memory links and pcap replay
deliver; ``poll`` ends with one too), then ``poll`` for due timers, and
sleeps until ``next_deadline``.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from femtotcp.core.loop import Loop
from femtotcp.core.timers import Timer, Timers
from femtotcp.phy.base import Device

if TYPE_CHECKING:
    from femtotcp.stack.device import NetDevice
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.runtime")
#: Give the CPU to any task waiting for it (a no-op where there is none).
sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)
T = TypeVar("T")


__all__ = ["Loop", "Runtime", "SimLoop"]


class _LoopBase(ABC):
    def __init__(self) -> None:
        self.timers = Timers()
        self.stacks: list[Stack] = []
        self._soon: deque[Callable[[], None]] = deque()

    @abstractmethod
    def now(self) -> float:
        """Seconds on this loop's clock."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_at(when, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_at(self.now() + delay, callback)

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._soon.append(callback)

    def add_stack(self, stack: Stack) -> None:
        """Drive ``stack``: its clock becomes this loop's, its devices are polled."""
        stack.set_clock(self.now)
        self.stacks.append(stack)
        stack.watch_devices(lambda device: self.add_device(device, stack))

    def add_device(self, device: NetDevice, stack: Stack | None = None) -> None:
        """Called for every device of an attached stack (fd devices are selected on)."""

    def _end_batch(self) -> None:
        """Every stack finishes the frames it was handed (``Stack.end_batch``)."""
        if self.stacks:
            now = self.now()
            for st in self.stacks:
                st.end_batch(now)

    def _run_soon(self) -> None:
        """One round of ``call_soon`` work (memory links deliver frames so), then
        the end of that batch."""
        soon = self._soon
        for _ in range(len(soon)):
            soon.popleft()()
        self._end_batch()

    def _next_deadline(self) -> float | None:
        best = self.timers.next_deadline()
        for st in self.stacks:
            d = st.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def _poll_timers(self, now: float) -> None:
        self.timers.poll(now)
        for st in self.stacks:
            st.poll(now)


class SimLoop(_LoopBase):
    """Virtual time. ``run(until)`` processes events in time order."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = start
        self.timers.now = start

    def now(self) -> float:
        return self._now

    def step(self) -> bool:
        """Process the next batch of events; False when nothing is left to do."""
        self._end_batch()      # frames the caller handed to ``receive`` directly
        if self._soon:
            self._run_soon()
            return True
        deadline = self._next_deadline()
        if deadline is None:
            return False
        if deadline > self._now:
            self._now = deadline
        self._poll_timers(self._now)
        return True

    def run(self, duration: float | None = None, until: float | None = None) -> None:
        """Run for ``duration`` seconds of virtual time (or to ``until``), or
        until there is nothing left to do when neither is given."""
        end = until if until is not None else (
            self._now + duration if duration is not None else None)
        self._end_batch()      # frames the caller handed to ``receive`` directly
        while True:
            if self._soon:
                self._run_soon()
                continue
            deadline = self._next_deadline()
            if deadline is None or (end is not None and deadline > end):
                break
            if deadline > self._now:
                self._now = deadline
            self._poll_timers(self._now)
        if end is not None and end > self._now:
            self._now = end
            self._poll_timers(end)

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Run until ``predicate()`` is true or ``timeout`` virtual seconds pass."""
        end = self._now + timeout
        self._end_batch()      # frames the caller handed to ``receive`` directly
        while not predicate():
            if self._soon:
                self._run_soon()
                continue
            deadline = self._next_deadline()
            if deadline is None or deadline > end:
                self._now = max(self._now, end)
                self._poll_timers(self._now)
                return predicate()
            if deadline > self._now:
                self._now = deadline
            self._poll_timers(self._now)
        return True


class Runtime(_LoopBase):
    """Real time, event-driven: epoll on device fds + a wake-up fd.

    The loop waits in ``select.epoll`` directly, with a table from fd to what
    to run (no ``selectors`` key objects on the way to a frame)."""

    #: Where the adaptive poll window starts when it grows from nothing.
    POLL_GROW_START = 10e-6

    def __init__(self, busy_poll: float = 0.0) -> None:
        """``busy_poll``: the longest adaptive busy poll, in seconds (0: the
        loop always sleeps in ``epoll_wait``; see ``_poll_then_wait``)."""
        super().__init__()
        if not busy_poll >= 0:
            raise ValueError(f"busy_poll {busy_poll!r}: must be 0 or more seconds")
        self.busy_poll = busy_poll
        #: The current poll window (grows and shrinks with the traffic).
        self.poll_window = 0.0
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: fd -> (what to call when it is ready, the stack whose batch it ends,
        #: what its failures are logged under: a name, or the handler itself,
        #: formatted only when one is logged).
        self._handlers: dict[int, tuple[Callable[[], None], Stack | None, object]] = {}
        #: The epoll events of the fd whose handler runs now (EPOLLIN, EPOLLHUP...):
        #: a handler may read what woke it without asking the kernel again.
        self.ready_events = 0
        self._register(self._wake_r, select.EPOLLIN, self._drain_wake, None, "wake-up")
        self._lock = threading.Lock()
        self._foreign: deque[Callable[[], None]] = deque()
        self._stopping = False
        self.thread: threading.Thread | None = None
        self._devices: list[Device] = []
        #: The stack each selected device's frames go to (its batch is ended there).
        self._device_stack: dict[Device, Stack] = {}
        self.timers.now = self.now()

    #: The loop's clock, and every stack's it drives (``add_stack``): the C
    #: function itself, so reading it costs no Python frame on the packet path.
    now = staticmethod(monotonic)

    def _register(self, fd: int, events: int, call: Callable[[], None],
                  stack: Stack | None, name: object) -> None:
        if fd in self._handlers:
            try:
                self._epoll.modify(fd, events)
            except FileNotFoundError:     # the fd was closed (and reused) meanwhile
                self._epoll.register(fd, events)
        else:
            try:
                self._epoll.register(fd, events)
            except FileExistsError:
                self._epoll.modify(fd, events)
        self._handlers[fd] = (call, stack, name)

    def _drain_wake(self) -> None:
        """Empty the wake-up pipe: one read (epoll said it is readable), more
        only while reads come back full, so a wake-up costs no read that
        finds the pipe empty."""
        try:
            while len(os.read(self._wake_r, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass

    def add_device(self, device: NetDevice, stack: Stack | None = None) -> None:
        if not isinstance(device, Device) or device in self._devices:
            return
        self._devices.append(device)
        if stack is not None:
            self._device_stack[device] = stack
        fd = device.fileno()
        if fd >= 0:
            self._register(fd, select.EPOLLIN, device.on_readable, stack, device.name)
        set_loop = getattr(device, "set_loop", None)
        if set_loop is not None:
            set_loop(self)        # timers for the device's own work (a TAP's SYN shedding)

    def watch_fd(self, fd: int, read: bool, write: bool, handler: Any) -> None:
        """(Loop thread.) Wait on ``fd`` for reading and/or writing and call
        ``handler.on_readable()`` whenever it is ready; neither removes it."""
        events = (select.EPOLLIN if read else 0) | (select.EPOLLOUT if write else 0)
        if events == 0:
            if self._handlers.pop(fd, None) is not None:
                try:
                    self._epoll.unregister(fd)
                except (FileNotFoundError, OSError):
                    pass          # closed already: epoll forgot it
            return
        self._register(fd, events, handler.on_readable, None, handler)

    def forget_fd(self, fd: int) -> None:
        """(Loop thread.) Stop calling ``fd``'s handler, leaving epoll alone: for
        an fd its caller closes next and holds the only reference to (the
        kernel drops a file's epoll registration when its last reference goes,
        so no ``EPOLL_CTL_DEL`` is needed). An fd shared with another process
        or another fd (SCM_RIGHTS, fork, dup) needs ``watch_fd(fd, False,
        False, None)`` instead: its registration outlives this close."""
        self._handlers.pop(fd, None)

    @property
    def running(self) -> bool:
        """True while the loop thread runs and no stop was asked for."""
        return (self.thread is not None and self.thread.is_alive()
                and not self._stopping)

    # -- cross-thread ---------------------------------------------------------
    def in_loop_thread(self) -> bool:
        return self.thread is None or threading.current_thread() is self.thread

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending
        except OSError:
            pass  # closed during shutdown

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._foreign.append(callback)
        self.wake()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` in the loop thread and return its result (or raise).
        With ``timeout``, TimeoutError when the loop does not answer in time."""
        if self.in_loop_thread():
            return fn(*args)
        fut: Future[T] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed back to the calling thread
                fut.set_exception(exc)

        self.call_soon_threadsafe(run)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise TimeoutError(f"the stack's loop did not answer within {timeout:g} s") from None

    # -- running --------------------------------------------------------------
    def run_once(self, max_wait: float | None = None) -> None:
        """One wait and what it woke for. Every stack's clock (``timers.now``,
        which TCP stamps segments and samples RTTs with) is set to the wake
        time before any handler runs, so work a program hands over after an
        idle spell is not stamped with the time of the last wake. Timers are
        polled only when one is due (the deadline the wait was computed from,
        or, when a handler or queued work ran, the deadline after it)."""
        self._run_once(max_wait, False, None)

    def _run_once(self, max_wait: float | None, known: bool,
                  deadline: float | None) -> tuple[bool, float | None]:
        """``run_once``; ``known``: ``deadline`` is the next deadline as the
        previous round left it (``run_forever``, where no code runs between
        rounds). Returns (known, deadline) for the next round: known when
        the round ended with the deadline computed and no timer run after."""
        now = monotonic()
        if self._soon or self._foreign:
            timeout = 0.0
            deadline = now
        else:
            if not known:
                deadline = self._next_deadline()
            if deadline is None:
                timeout = -1.0 if max_wait is None else max_wait
            else:
                timeout = max(0.0, deadline - now)
                if max_wait is not None:
                    timeout = min(timeout, max_wait)
        if timeout and self.busy_poll:
            events = self._poll_then_wait(timeout)
        else:
            events = self._epoll.poll(timeout)
        now = monotonic()
        for stack in self.stacks:
            timers = stack.timers
            if now > timers.now:
                timers.now = now
        if events:
            handlers = self._handlers
            for fd, mask in events:
                entry = handlers.get(fd)
                if entry is None:
                    continue
                call, st, name = entry
                self.ready_events = mask
                try:
                    call()
                except Exception:  # a device bug must not kill the loop
                    log.exception("device %s failed while reading", name)
                if st is not None:
                    st.end_batch(monotonic())     # the device's read batch is done
            self.ready_events = 0
        if self._foreign:
            with self._lock:
                foreign, self._foreign = self._foreign, deque()
            for cb in foreign:
                cb()
            self._run_soon()
        elif self._soon:
            self._run_soon()
        elif not events:
            # Nothing ran since the deadline was computed: it still holds.
            if deadline is not None and deadline <= now:
                self._poll_timers(now)
                return False, None
            return True, deadline
        # Handlers may have armed timers or queued loopback datagrams.
        deadline = self._next_deadline()
        if deadline is not None and deadline <= monotonic():
            self._poll_timers(monotonic())
            return False, None
        return True, deadline

    def _poll_then_wait(self, timeout: float) -> list[tuple[int, int]]:
        """Adaptive busy polling, as KVM polls before it halts a vCPU (its
        ``halt_poll_ns``) and as Linux's ``busy_poll`` polls a device queue:
        before sleeping, poll the fds without sleeping for up to the current
        window. Falling asleep and being woken costs a request/response
        exchange tens of microseconds per turn on a virtual machine, more than
        the stack's own work on a segment. The window adapts to the traffic as
        KVM's does: a wake-up that came within ``busy_poll`` of the start of
        the wait, but after the window, doubles the window (from 10 us, up to
        ``busy_poll``); a wait longer than ``busy_poll`` closes it again, so an
        idle stack, or one whose traffic comes in gaps longer than that, never
        polls: the CPU it spends is bounded by the gaps it saves.

        The window opens with a ``sched_yield``: KVM polls only while its CPU
        has no other task to run, and Linux's busy poll ends when one needs
        the CPU (``need_resched``). The work just done woke the readers it
        wrote to (a program on its socket pair, a kernel-side socket through
        the TAP), and Linux queues such a wakee on the waker's CPU, which it
        expects to sleep (a synchronous wake-up); polling instead left it
        waiting, at times for the whole window. Where no task waits, the
        yield returns at once."""
        poll = self._epoll.poll
        start = monotonic()
        window = self.poll_window
        if window:
            end = start + (window if timeout < 0 else min(window, timeout))
            sched_yield()
            while True:
                events = poll(0)
                if events:
                    return events            # the window was long enough
                if monotonic() >= end:
                    break
            if 0 <= timeout <= window:
                return events                # a timer is due: no need to sleep
            timeout = -1.0 if timeout < 0 else max(0.0, timeout - (monotonic() - start))
        events = poll(timeout)
        limit = self.busy_poll
        waited = monotonic() - start
        if waited > limit:
            self.poll_window = 0.0
        elif events and window < limit:
            self.poll_window = min(limit, max(window * 2, self.POLL_GROW_START))
        return events

    def run_forever(self) -> None:
        self._stopping = False
        if self.thread is None:
            self.thread = threading.current_thread()
        known, deadline = False, None
        while not self._stopping:
            known, deadline = self._run_once(None, known, deadline)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread (for programs using the socket API)."""
        self.thread = threading.Thread(target=self.run_forever, name="femtotcp", daemon=True)
        self.thread.start()
        return self.thread

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float,
                   interval: float = 0.01) -> bool:
        """From another thread: wait until ``predicate()`` (run in the loop
        thread) holds, or ``timeout`` seconds pass. Returns the last value."""
        end = time.monotonic() + timeout
        while True:
            if self.call(predicate):
                return True
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(interval, remaining))

    def close(self) -> None:
        for dev in self._devices:
            try:
                dev.close()
            except OSError:
                pass
        self._epoll.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
