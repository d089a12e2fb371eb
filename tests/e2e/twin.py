"""One stdlib program, run twice: on the Linux kernel and under ``femtotcp run``.

Issue 16's socket-level rules are compared by running the same program in two
throw-away namespaces and driving both the same way:

- kernel: namespace K holds the program on a veth end (192.0.2.2/24); the peer
  is namespace P on the other end (192.0.2.1/24).
- femtotcp: namespace F holds ``femtotcp run --tap ftwin0 --ip 192.0.2.2/24
  PROGRAM``; the peer is F's kernel on the TAP's other side (192.0.2.1/24).

The test's driver talks to the program over its stdin/stdout (one line each
way) and plays the peer inside the peer namespace (``Twin.peer()``), so both
runs see the same frames in the same order. Transcripts are then compared.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from netns import Netns, entered, netns, stop_process

T = TypeVar("T")

PEER = "192.0.2.1"
HOST = "192.0.2.2"
TAP = "ftwin0"
_SRC = Path(__file__).resolve().parents[2] / "src"


class Twin:
    """A running program and the namespace its peer lives in."""

    def __init__(self, name: str, proc: subprocess.Popen[str], peer_ns: Netns) -> None:
        self.name = name
        self.proc = proc
        self.peer_ns = peer_ns

    def ask(self, line: str, timeout: float = 20.0) -> str:
        """Send one command line; return the program's one-line answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            pytest.fail(f"{self.name}: no answer to {line!r}: {self._drain()}")
        answer = self.proc.stdout.readline()
        if not answer:
            pytest.fail(f"{self.name}: the program ended on {line!r}: {self._drain()}")
        return answer.strip()

    def peer(self) -> contextlib.AbstractContextManager[None]:
        """Enter the peer's namespace (this thread only) to act as the peer."""
        return entered(self.peer_ns)

    def _drain(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        out, err = self.proc.communicate(timeout=10)
        return f"status {self.proc.returncode}; stdout {out!r}; stderr {err[-2000:]!r}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(_SRC)
    return env


def _start(ns: Netns, argv: list[str]) -> subprocess.Popen[str]:
    return ns.popen(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, env=_env())


@contextlib.contextmanager
def on_kernel(program: Path, *args: str, resolv_conf: str | None = None) -> Iterator[Twin]:
    """``resolv_conf``: the program's /etc/resolv.conf (``ip netns exec`` mounts
    /etc/netns/NAME/resolv.conf over it)."""
    with netns("twk") as k, netns("twp") as p, _etc_netns(k.name, resolv_conf):
        subprocess.run(["ip", "-n", k.name, "link", "add", "k0", "type", "veth", "peer",
                        "name", "p0", "netns", p.name], check=True, capture_output=True)
        k.ip("addr", "add", f"{HOST}/24", "dev", "k0")
        p.ip("addr", "add", f"{PEER}/24", "dev", "p0")
        k.ip("link", "set", "k0", "up")
        p.ip("link", "set", "p0", "up")
        proc = _start(k, [sys.executable, str(program), *args])
        try:
            yield Twin("linux", proc, p)
        finally:
            stop_process(proc)


@contextlib.contextmanager
def _etc_netns(name: str, resolv_conf: str | None) -> Iterator[None]:
    if resolv_conf is None:
        yield
        return
    folder = Path("/etc/netns") / name
    folder.mkdir(parents=True)
    try:
        (folder / "resolv.conf").write_text(resolv_conf)
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def on_femtotcp(program: Path, *args: str, stack_args: tuple[str, ...] = (),
                timeout: float = 30.0, attached: bool = False) -> Iterator[Twin]:
    """``stack_args``: more ``femtotcp run`` flags (``--dns 192.0.2.1``, ...).
    ``attached``: the stack is a ``femtotcp serve`` and the program runs
    attached to it (``femtotcp run --control``: its sockets live in serve)."""
    with netns("twf") as f, _served(f, stack_args, attached) as control:
        if control is None:
            argv = ["--tap", TAP, "--ip", f"{HOST}/24", *stack_args]
        else:
            argv = ["--control", control]
        proc = _start(f, [sys.executable, "-m", "femtotcp", "run", *argv, str(program), *args])
        try:
            deadline = time.monotonic() + timeout
            while f.ip("link", "show", TAP, check=False).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"femtotcp run did not create {TAP}: "
                                f"{proc.communicate(timeout=10)}")
                time.sleep(0.05)
            f.ip("addr", "add", f"{PEER}/24", "dev", TAP)
            yield Twin("femtotcp", proc, f)
        finally:
            stop_process(proc)


@contextlib.contextmanager
def _served(ns: Netns, stack_args: tuple[str, ...], attached: bool) -> Iterator[str | None]:
    """A ``femtotcp serve`` on the TAP in ``ns`` (its control socket's path), or
    None when the program runs the stack itself."""
    if not attached:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="twserve")
    control = os.path.join(folder, "ctl.sock")
    serve = _start(ns, [sys.executable, "-m", "femtotcp", "serve", "--tap", TAP, "--ip",
                        f"{HOST}/24", *stack_args, "--control", control])
    try:
        assert serve.stdout is not None
        ready = select.select([serve.stdout], [], [], 30.0)[0]
        line = serve.stdout.readline() if ready else ""
        if not line.startswith("femtotcp: serving on"):
            stop_process(serve)
            pytest.fail(f"serve did not start: {line!r}")
        yield control
    finally:
        stop_process(serve)
        shutil.rmtree(folder, ignore_errors=True)


def at_once(program: Path, drive: Callable[[Twin], T], *args: str) -> tuple[T, T]:
    """``drive`` the program on the kernel and under femtotcp at the same time
    (each run has namespaces of its own, and ``Twin.peer`` enters the peer's for
    the calling thread only), for a comparison that spends its time waiting:
    (Linux's result, femtotcp's)."""
    def kernel() -> T:
        with on_kernel(program, *args) as k:
            return drive(k)

    def femto() -> T:
        with on_femtotcp(program, *args) as f:
            return drive(f)

    with ThreadPoolExecutor(max_workers=2) as pool:
        linux, femtotcp = pool.submit(kernel), pool.submit(femto)
        return linux.result(), femtotcp.result()
