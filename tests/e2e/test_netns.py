"""The namespace harness itself: cleanup on failure, per-thread setns."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from netns import Netns, entered, kernel_tap, netns


def ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_cleanup_on_exception_kills_everything_and_deletes() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with netns("fttest") as n:
            name = n.name
            proc = n.popen("sleep", "60")
            daemon = int(n.run("sh", "-c",
                               "setsid sleep 60 >/dev/null 2>&1 & echo $!").stdout.strip())
            assert alive(daemon) and name in namespaces()
            raise RuntimeError("boom")
    assert proc.returncode is not None
    assert not alive(daemon)
    assert name not in namespaces()


def test_run_reports_output_on_failure(ns: Netns) -> None:
    with pytest.raises(subprocess.CalledProcessError) as exc:
        ns.run("sh", "-c", "echo out-text; echo err-text >&2; exit 3")
    assert exc.value.returncode == 3
    assert "out-text" in str(exc.value) and "err-text" in str(exc.value)
    assert ns.run("sh", "-c", "exit 4", check=False).returncode == 4
    assert "lo" in ns.run("ip", "-o", "link", "show", "up").stdout


def test_entered_moves_only_this_thread_and_returns(ns: Netns) -> None:
    home = ns_inode()
    seen: list[int] = []
    with entered(ns):
        inside = ns_inode()
        t = threading.Thread(target=lambda: seen.append(ns_inode()))
        t.start()
        t.join()
        assert seen == [inside]  # threads started inside inherit the namespace
    assert inside != home and ns_inode() == home

    with pytest.raises(ValueError):
        with entered(ns):
            raise ValueError("inside")
    assert ns_inode() == home


def test_entered_does_not_move_other_threads(ns: Netns) -> None:
    home = ns_inode()
    go, done = threading.Event(), threading.Event()
    result: list[int] = []

    def worker() -> None:
        go.wait(10)
        result.append(ns_inode())
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    with entered(ns):
        go.set()
        done.wait(10)
    t.join()
    assert result == [home]


def test_entered_unknown_namespace() -> None:
    with pytest.raises(OSError, match="no network namespace"):
        with entered("ft-does-not-exist-xyz"):
            pass
    with pytest.raises(ValueError):
        with entered("../etc"):
            pass


def test_kernel_tap_gives_the_kernel_side_its_addresses(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap3", ["192.0.2.1/24", "2001:db8::1/64"], mtu=1280)
    out = ns.ip("addr", "show", "dev", dev.name).stdout
    assert "inet 192.0.2.1/24" in out and "inet6 2001:db8::1/64" in out
    line = next(ln for ln in out.splitlines() if "2001:db8::1/64" in ln)
    assert "tentative" not in line  # nodad: usable at once
    assert "mtu 1280" in out
    # the device lives in the namespace, not in ours
    assert subprocess.run(["ip", "link", "show", dev.name], capture_output=True).returncode
    assert dev in ns.devices
