"""The harness every kernel test uses: throw-away network namespaces.

- ``netns(prefix)``: a context manager that creates a uniquely named namespace
  (``ip netns add``), brings ``lo`` up and yields a ``Netns`` with ``.name``,
  ``.run(*cmd)`` and ``.popen(*cmd)`` (both through ``ip netns exec``). At exit,
  also on exceptions, it closes the devices registered with it, kills every
  process started with ``popen`` and every other process left inside the
  namespace, and deletes the namespace.
- ``entered(ns)``: moves the *current thread* into the namespace with
  ``setns(2)`` (via ctypes: ``os.setns`` is Python 3.12+) and moves it back
  afterwards. Namespaces are per thread, so other threads (for example a
  running ``femtotcp.runtime.Runtime``) are not affected, but threads started
  while inside inherit the namespace. A TAP device and any socket belong to the
  namespace of the thread that creates them, and stay there.
- ``kernel_tap(ns, ...)`` / ``kernel_tun(ns, ...)``: create the device inside the
  namespace, come back, then give the kernel side its addresses
  (``ip -n NS addr add ... dev NAME``) and return the device.
- ``add_netem(ns, dev, ...)``: a netem qdisc on ``dev``, or skip/fail when
  the kernel has none.
- ``require_kernel()`` / ``require_program(name)``: the skip policy of
  tests/skippolicy.py. A missing requirement skips the test with the reason,
  except under ``CI=true`` where it fails the test: CI must run every kernel test.

Tests may only use 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 inside the
namespaces they create.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The policy lives one directory up (tests/), importable in every import mode.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from skippolicy import in_ci, require_program, skip_or_fail  # noqa: E402

__all__ = ["CommandFailed", "Netns", "add_netem", "entered", "in_ci", "kernel_tap",
           "kernel_tun", "netns", "require_kernel", "require_program", "skip_or_fail"]

DEFAULT_TIMEOUT = 30.0

_counter = itertools.count()
_kernel_problem: list[str | None] = []  # cached result of the requirement probe


# -- skip / fail policy (tests/skippolicy.py; re-exported for the kernel tests) ----
def _probe_kernel() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root (to create network namespaces and TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "kernel tests need /dev/net/tun (modprobe tun)"
    if shutil.which("ip") is None:
        return "kernel tests need the `ip` program (Debian package iproute2)"
    name = f"ftprobe-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                             timeout=DEFAULT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {exc}"
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=DEFAULT_TIMEOUT)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /dev/net/tun: {exc.strerror}"
    os.close(fd)
    return None


def require_kernel() -> None:
    """Skip (or fail under CI) unless root, /dev/net/tun, `ip` and netns all work."""
    if not _kernel_problem:
        _kernel_problem.append(_probe_kernel())
    problem = _kernel_problem[0]
    if problem is not None:
        skip_or_fail(problem, "kernel")


# -- setns ---------------------------------------------------------------------
def _ns_name(ns: str | Netns) -> str:
    name = ns.name if isinstance(ns, Netns) else ns
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid namespace name {name!r}")
    return name


@contextlib.contextmanager
def entered(ns: str | Netns) -> Iterator[None]:
    """Run the body with the current thread inside network namespace ``ns``.

    setns(2) is per thread: only this thread moves (and threads it starts while
    inside inherit the namespace). The original namespace is taken from
    /proc/thread-self (not /proc/self, which is the main thread's) and restored
    on exit, also when the body raises. The work is done by
    ``femtotcp.phy.netns.entered``; this accepts a ``Netns`` too."""
    from femtotcp.phy.netns import entered as _entered

    with _entered(_ns_name(ns)):
        yield


# -- the namespace object --------------------------------------------------------
class CommandFailed(subprocess.CalledProcessError):
    """A command in the namespace failed; the message includes its output."""

    def __str__(self) -> str:
        out = self.stdout if isinstance(self.stdout, str) else (self.stdout or b"").decode(
            errors="replace")
        err = self.stderr if isinstance(self.stderr, str) else (self.stderr or b"").decode(
            errors="replace")
        return (f"{super().__str__()}\n--- stdout ---\n{out.strip()}\n"
                f"--- stderr ---\n{err.strip()}")


class Netns:
    """A live namespace; use ``netns()`` to get one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[Any]] = []
        self.devices: list[Any] = []  # anything with close(), closed at exit

    def exec_argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, cmd)]

    def run(self, *cmd: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT,
            text: bool = True, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``cmd`` inside the namespace and wait for it (output captured)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL if "input" not in kw else None)
        res = subprocess.run(self.exec_argv(*cmd), timeout=timeout, text=text, **kw)
        if check and res.returncode != 0:
            raise CommandFailed(res.returncode, res.args, res.stdout, res.stderr)
        return res

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace; it is killed when the namespace goes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(*cmd), **kw)
        self.procs.append(proc)
        return proc

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME ARGS`` (runs from outside; no exec needed)."""
        res = subprocess.run(["ip", "-n", self.name, *map(str, args)], capture_output=True,
                             text=True, timeout=DEFAULT_TIMEOUT)
        if check and res.returncode != 0:
            raise CommandFailed(res.returncode, res.args, res.stdout, res.stderr)
        return res

    def pids(self) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                             text=True, timeout=DEFAULT_TIMEOUT)
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def _cleanup(self) -> None:
        for dev in self.devices:
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3.0
        for proc in self.procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        me = os.getpid()
        for _ in range(3):  # daemons that forked away from us (dnsmasq, ...)
            left = [p for p in self.pids() if p != me]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True,
                       timeout=DEFAULT_TIMEOUT)

    def __repr__(self) -> str:
        return f"<Netns {self.name}>"


@contextlib.contextmanager
def netns(prefix: str = "ft") -> Iterator[Netns]:
    """A fresh namespace with lo up; always deleted (with its processes) at exit."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in prefix)[:20] or "ft"
    name = f"{safe}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(2)}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                         timeout=DEFAULT_TIMEOUT)
    if res.returncode != 0:
        raise CommandFailed(res.returncode, res.args, res.stdout, res.stderr)
    ns = Netns(name)
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        ns._cleanup()


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End a process started for a test: SIGTERM (so it cleans up, as serve
    and run do), then SIGKILL if it has not gone after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- kernel-side devices ----------------------------------------------------------
def _configure(ns: Netns, dev_name: str, addresses: str | Sequence[str] | None) -> None:
    if addresses is None:
        return
    if isinstance(addresses, str):
        addresses = [addresses]
    for addr in addresses:
        if ":" in addr:
            # nodad: usable at once instead of after duplicate address detection.
            ns.ip("-6", "addr", "add", addr, "dev", dev_name, "nodad")
        else:
            ns.ip("addr", "add", addr, "dev", dev_name)


def kernel_tap(ns: Netns, name: str = "ftap0", address: str | Sequence[str] | None =
               "192.0.2.1/24", mtu: int = 1500, up: bool = True) -> Any:
    """A ``TapDevice`` living in ``ns``, whose kernel side has ``address``.

    The device is created from inside the namespace (so it lives there), then
    this thread returns and the kernel side gets its address. It is registered
    with ``ns`` and closed when the namespace goes (closing twice is fine)."""
    from femtotcp.phy.tap import TapDevice

    with entered(ns):
        dev = TapDevice(name, mtu=mtu, up=up)
    ns.devices.append(dev)
    _configure(ns, dev.name, address)
    return dev


def kernel_tun(ns: Netns, name: str = "ftun0", address: str | Sequence[str] | None =
               "192.0.2.1/24", mtu: int = 1500, up: bool = True) -> Any:
    """Like ``kernel_tap`` for a ``TunDevice`` (the stack sees bare IP packets)."""
    from femtotcp.phy.tun import TunDevice

    with entered(ns):
        dev = TunDevice(name, mtu=mtu, up=up)
    ns.devices.append(dev)
    _configure(ns, dev.name, address)
    return dev


def add_netem(ns: Netns, dev_name: str, *impairment: str) -> None:
    """``tc qdisc add dev DEV root netem IMPAIRMENT...`` inside ``ns``; a kernel
    without the netem qdisc (no sch_netem) skips the test (fails under CI=true
    unless FEMTOTCP_ALLOW_MISSING names "netem")."""
    if shutil.which("tc") is None:
        skip_or_fail("this test needs the program 'tc' (Debian package iproute2)", "tc")
    res = ns.run("tc", "qdisc", "add", "dev", dev_name, "root", "netem", *impairment,
                 check=False)
    if res.returncode != 0:
        skip_or_fail(f"this kernel has no netem qdisc (sch_netem): {res.stderr.strip()}",
                     "netem")
