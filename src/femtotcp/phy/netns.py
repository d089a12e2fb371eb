"""Network namespaces, for putting a TAP device next to a kernel peer.

A TAP device lives in the namespace of the thread that creates it. ``entered``
moves the *current thread* into a namespace with setns(2) (through ctypes:
``os.setns`` is Python 3.12+) and moves it back afterwards; other threads are
not affected.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def check_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or len(name) > 200:
        raise ValueError(f"invalid namespace name {name!r}")
    return name


@contextlib.contextmanager
def entered_fd(target: int) -> Iterator[None]:
    """Run the body with the current thread inside the network namespace open
    at ``target`` (closed afterwards), and return to the thread's own after."""
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        setns(target)
        try:
            yield
        finally:
            setns(original)
    finally:
        os.close(target)
        os.close(original)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the current thread inside network namespace ``name``."""
    check_name(name)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"no network namespace {name!r}") from None
    with entered_fd(target):
        yield


def create(name: str) -> None:
    """``ip netns add NAME`` and bring its loopback up."""
    check_name(name)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True,
                   capture_output=True)


def delete(name: str) -> None:
    """Kill what runs inside, then ``ip netns del NAME`` (errors ignored)."""
    check_name(name)
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in pids.stdout.split():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), 9)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
