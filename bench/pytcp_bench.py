"""PyTCP over TAP, measured with the same set-up as femtotcp (``bench.tcp_bulk``).

PyTCP (PyPI ``pmd-pytcp``, pinned below) is installed on demand into its own
virtualenv, ``bench/.venv-pytcp``, never into the project's. This file has two
halves:

- ``serve`` (run as ``VENV/bin/python bench/pytcp_bench.py serve ...`` inside a
  network namespace; stdlib and PyTCP only, no femtotcp): PyTCP on a TAP device
  with a static IPv4 address, a discard service on port 9 (reads until the
  peer's FIN, then closes) and a source on port 19 (reads a decimal byte count
  and a newline, sends that many bytes, closes). It prints ``READY`` once both
  listen and exits on SIGTERM.
- ``measure`` (in the bench's process): makes a namespace (kernel 192.0.2.1/24,
  PyTCP 192.0.2.2/24, MTU 1500), starts ``serve`` there, and measures
  kernel -> PyTCP and PyTCP -> kernel bulk MB/s, ping RTT and PyTCP's RSS
  after the transfers. Every step has a time limit; any failure comes back as
  a one-line reason (``PytcpResult.error``), never as an exception.

PyTCP 0.3.x runs on asyncio in one thread: its socket calls are coroutines
(``await sock.recv()``) and ``stack.start()`` / ``stack.stop()`` are awaited,
the shape its own daemon (``pmd_pytcp.daemon``) uses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "pmd-pytcp"
VERSION = "0.3.8"
VENV = Path(__file__).resolve().parent / ".venv-pytcp"
STAMP = VENV / f".installed-{PACKAGE}-{VERSION}"
KERNEL = "192.0.2.1"
PYTCP = "192.0.2.2"
PYTCP_MAC = "02:00:00:00:00:03"
TAP = "tappy0"
DISCARD_PORT = 9
SOURCE_PORT = 19
MB = 1_000_000
CHUNK = 1 << 20
MAX_SOURCE_BYTES = 10_000 * MB        # cap on what a client may ask the source for
TX_HIGH_WATER = 512 * 1024            # the source keeps PyTCP's send buffer under this


# --------------------------------------------------------------------------------------
# The PyTCP side (runs in the PyTCP virtualenv, inside the namespace)
# --------------------------------------------------------------------------------------

def _unsent(sock: object) -> int:
    """Bytes queued in a PyTCP socket's send buffer (unsent plus unacknowledged).

    PyTCP's ``send`` appends to an unbounded buffer and returns at once, so a
    bulk sender must pace itself on the buffer's length (an internal attribute;
    0 when it is not there, which makes the source send without pacing).
    """
    session = getattr(sock, "_tcp_session", None)
    tx = getattr(session, "_tx", None)
    buf = getattr(tx, "buffer", None)
    return len(buf) if buf is not None else 0


async def _discard(sock: object) -> None:
    try:
        while await sock.recv():                     # type: ignore[attr-defined]
            pass
    except OSError:
        pass
    finally:
        sock.close()                                 # type: ignore[attr-defined]


async def _source(sock: object, high_water: int = TX_HIGH_WATER) -> None:
    import asyncio

    try:
        request = b""
        while b"\n" not in request and len(request) < 32:
            data = await sock.recv()                 # type: ignore[attr-defined]
            if not data:
                return
            request += data
        nbytes = min(int(request.split(b"\n", 1)[0] or b"0"), MAX_SOURCE_BYTES)
        block = bytes(range(256)) * 256              # 64 KiB
        sent = 0
        while sent < nbytes:
            while _unsent(sock) > high_water:
                await asyncio.sleep(0.0005)
            n = min(len(block), nbytes - sent)
            await sock.send(block[:n])               # type: ignore[attr-defined]
            sent += n
            await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        while _unsent(sock) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
    except (OSError, ValueError):
        pass
    finally:
        sock.close()                                 # type: ignore[attr-defined]


async def _serve(tap: str, ip4: str, mac: str) -> None:
    import asyncio

    from pmd_net_addr import Ip4IfAddr, MacAddress
    from pmd_pytcp import socket as psocket
    from pmd_pytcp import stack

    stack.init()
    iface = stack.initialize_interface__tap(tap, mac_address=MacAddress(mac))
    stack.add_interface(**iface, ip4_host=Ip4IfAddr(ip4), ip4_dhcp=False,
                        ip6_support=False, ip6_gua_autoconfig=False,
                        ip6_lla_autoconfig=False)
    await stack.start()

    tasks: set[asyncio.Task[None]] = set()

    async def accept_loop(port: int, handler: object) -> None:
        lst = psocket.socket(psocket.AddressFamily.INET4, psocket.SocketType.STREAM)
        lst.bind(("0.0.0.0", port))
        lst.listen()
        while True:
            conn, _ = await lst.accept()
            task = asyncio.create_task(handler(conn))  # type: ignore[operator]
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listeners = [asyncio.create_task(accept_loop(DISCARD_PORT, _discard)),
                 asyncio.create_task(accept_loop(SOURCE_PORT, _source))]
    await asyncio.sleep(0)
    print("READY", flush=True)
    await stop.wait()
    for task in listeners + list(tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stack.stop(), 5)


def serve_main(argv: list[str]) -> int:
    import asyncio

    ap = argparse.ArgumentParser(prog="pytcp_bench.py serve")
    ap.add_argument("--tap", default=TAP)
    ap.add_argument("--ip4", default=f"{PYTCP}/24")
    ap.add_argument("--mac", default=PYTCP_MAC)
    args = ap.parse_args(argv)
    asyncio.run(_serve(args.tap, args.ip4, args.mac))
    return 0


# --------------------------------------------------------------------------------------
# The bench side (runs in the project's environment)
# --------------------------------------------------------------------------------------

@dataclass
class PytcpResult:
    """What one PyTCP session measured; ``error`` says why something is missing."""

    version: str = VERSION
    k2p: list[float] = field(default_factory=list)       # kernel -> PyTCP, MB/s per run
    p2k: list[float] = field(default_factory=list)       # PyTCP -> kernel, MB/s per run
    rtt_ms: float | None = None
    rss_mb: float | None = None
    error: str | None = None                             # the first thing that went wrong


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(timeout: float = 300.0) -> str | None:
    """Create ``bench/.venv-pytcp`` with PyTCP in it if needed; None or why not."""
    if STAMP.exists() and _python().exists():
        return None
    base = shutil.which("python3") or sys.executable
    if VENV.exists():
        shutil.rmtree(VENV, ignore_errors=True)
    deadline = time.monotonic() + timeout
    try:
        res = subprocess.run([base, "-m", "venv", str(VENV)], capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode != 0:
            return f"python3 -m venv failed: {_last_line(res.stderr)}"
        res = subprocess.run([str(_python()), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", f"{PACKAGE}=={VERSION}"],
                             capture_output=True, text=True,
                             timeout=max(1.0, deadline - time.monotonic()))
        if res.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            return f"pip install {PACKAGE}=={VERSION} failed: {_last_line(res.stderr)}"
        res = subprocess.run([str(_python()), "-c", "import pmd_pytcp.stack"],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            return f"{PACKAGE} {VERSION} does not import: {_last_line(res.stderr)}"
    except subprocess.TimeoutExpired:
        shutil.rmtree(VENV, ignore_errors=True)
        return f"installing {PACKAGE}=={VERSION} took over {timeout:.0f} s"
    except OSError as e:
        shutil.rmtree(VENV, ignore_errors=True)
        return f"installing {PACKAGE}=={VERSION}: {e}"
    STAMP.write_text(f"{PACKAGE}=={VERSION}\n")
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Wait for ``READY`` on the server's stdout; None or why not."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        data = os.read(proc.stdout.fileno(), 4096)
        if not data:
            return f"PyTCP exited before it was ready (status {proc.wait(5)})"
        buf += data
        if b"READY" in buf:
            return None
    return f"PyTCP was not ready within {timeout:.0f} s"


def _wait_reachable(ns: str, host: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", host],
                             capture_output=True, timeout=10)
        if res.returncode == 0:
            return True
        time.sleep(0.2)
    return False


def _connect(ns: str, port: int, timeout: float) -> socket.socket:
    from femtotcp.phy import netns as nsmod

    with nsmod.entered(ns):
        sock = socket.create_connection((PYTCP, port), timeout=timeout)
    return sock


def kernel_to_pytcp(ns: str, nbytes: int, timeout: float = 120.0) -> float:
    """MB/s from a kernel socket into PyTCP's discard, until PyTCP's FIN."""
    deadline = time.monotonic() + timeout
    sock = _connect(ns, DISCARD_PORT, 10)
    try:
        block = memoryview(os.urandom(CHUNK))
        start = time.perf_counter()
        left = nbytes
        while left > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel -> PyTCP: {nbytes - left} of {nbytes} bytes "
                                   f"sent in {timeout:.0f} s")
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            left -= sock.send(block[:min(left, CHUNK)])
        sock.shutdown(socket.SHUT_WR)
        while True:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            if not sock.recv(65536):
                break
        elapsed = time.perf_counter() - start
    finally:
        sock.close()
    return nbytes / elapsed / MB


def pytcp_to_kernel(ns: str, nbytes: int, timeout: float = 120.0) -> float:
    """MB/s from PyTCP's source into a kernel socket (exactly ``nbytes``, then FIN)."""
    deadline = time.monotonic() + timeout
    sock = _connect(ns, SOURCE_PORT, 10)
    try:
        buf = bytearray(CHUNK)
        start = time.perf_counter()
        sock.sendall(b"%d\n" % nbytes)
        got = 0
        while got < nbytes:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            n = sock.recv_into(buf)
            if n == 0:
                break
            got += n
        elapsed = time.perf_counter() - start
    finally:
        sock.close()
    if got < nbytes:
        raise RuntimeError(f"PyTCP's source stopped after {got} of {nbytes} bytes")
    return nbytes / elapsed / MB


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def measure(nbytes: int, repeat: int, budget: float = 420.0) -> PytcpResult:
    """Install PyTCP if needed, run it over TAP in a fresh namespace and measure it.

    Never raises for PyTCP's sake: whatever fails is ``result.error`` and the
    figures gathered before it stay. ``budget`` bounds the transfers (seconds).
    """
    result = PytcpResult()
    if os.geteuid() != 0:
        result.error = "needs root (network namespaces, TAP)"
        return result
    why = ensure_venv()
    if why is not None:
        result.error = why
        return result
    try:
        _measure_in_namespace(result, nbytes, repeat, budget)
    except Exception as e:  # the bench goes on whatever PyTCP does
        result.error = result.error or f"{type(e).__name__}: {e}"
    return result


def _measure_in_namespace(result: PytcpResult, nbytes: int, repeat: int,
                          budget: float) -> None:
    from bench import tcp_bulk

    deadline = time.monotonic() + budget
    with tcp_bulk.namespace("ftpytcp") as ns:
        log = open(os.devnull, "wb")                 # PyTCP's own output is not wanted
        proc = subprocess.Popen(["ip", "netns", "exec", ns, str(_python()),
                                 str(Path(__file__).resolve()), "serve", "--tap", TAP],
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        try:
            why = _wait_ready(proc, 30)
            if why is not None:
                result.error = why
                return
            for cmd in (["ip", "-n", ns, "addr", "add", f"{KERNEL}/24", "dev", TAP],
                        ["ip", "-n", ns, "link", "set", TAP, "mtu", "1500", "up"]):
                subprocess.run(cmd, check=True, capture_output=True, timeout=10)
            if not _wait_reachable(ns, PYTCP, 15):
                result.error = f"PyTCP at {PYTCP} did not answer ping within 15 s"
                return
            for direction, fn, out in (("kernel -> PyTCP", kernel_to_pytcp, result.k2p),
                                       ("PyTCP -> kernel", pytcp_to_kernel, result.p2k)):
                for _ in range(repeat):
                    left = deadline - time.monotonic()
                    if left <= 5:
                        result.error = result.error or (
                            f"{direction}: time budget of {budget:.0f} s used up")
                        break
                    try:
                        out.append(fn(ns, nbytes, min(120.0, left)))
                    except (OSError, RuntimeError) as e:
                        result.error = result.error or f"{direction}: {e}"
                        break
            result.rtt_ms = tcp_bulk.ping_rtt(ns, PYTCP)
            result.rss_mb = _rss_mb(proc.pid)
        finally:
            _stop(proc)
            log.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2:]))
    print("usage: pytcp_bench.py serve [--tap NAME] [--ip4 ADDR/LEN] [--mac MAC]",
          file=sys.stderr)
    sys.exit(2)
