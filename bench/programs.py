"""``python -m bench.programs``: stdlib programs on the stack, attached and in-process,
beside the same programs on the kernel over a veth pair, in one run (root).

Set-up: namespace K holds the kernel-side servers, bound to every address: an
``http.server`` with a file of --size MB, a connect-and-close acceptor, a
1-byte TCP echo and a UDP echo. Namespace C reaches K over a veth pair
(198.51.100.2 -> 198.51.100.1): the kernel's figures. The stack's TAP lives in
K (kernel side 192.0.2.1; the stack 192.0.2.2 attached, 192.0.2.3 in-process):

* attached: ``femtotcp serve`` on the TAP, and the client program under
  ``femtotcp run --control PATH`` (its own process; sockets by fd);
* in-process: the client under ``femtotcp run --tap ... --ip ...`` (stack and
  program in one interpreter).

Each client prints its figures as JSON. Printed: each figure per mode and the
ratio to the kernel's.

``--cpu`` adds under each figure the CPU time (user+system, all threads) spent
per operation (per MB for the GET, per connect+close, per round trip, per HTTP
request): in the kernel column by the kernel-side program (the client; the
HTTP server for the HTTP rows), attached by the program and by ``serve``,
in-process by the one process. A program reads its own (getrusage) around each
part, the HTTP server's is fetched from it (GET /cpu) by the load script, and
serve's is read from /proc at the marks the client or load script prints and
waits on. serve busy-polls before it sleeps (``--busy-poll``, 200 us by
default), which counts as its CPU: ``--serve-busy-poll USEC`` runs serve with
another value (0: off) to compare. ``--profile DIR`` runs the attached mode's
serve (its loop thread, ``bench/profiled.py``) and programs (their main
thread) under cProfile, writes the statistics to DIR and prints the top of
each: where the time goes in the stack's process and in the program's.

    python -m bench.programs [--short] [--size MB] [--connects N] [--pings N]
                             [--requests N] [--concurrency N] [--only PARTS]
                             [--cpu] [--serve-busy-poll USEC] [--profile DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.profiled import femtotcp_argv
from bench.tcp_bulk import namespace
from femtotcp.cli import BUSY_POLL_DEFAULT_US, busy_poll_usec

KERNEL_TAP = "192.0.2.1"
STACK = "192.0.2.2"
#: The in-process run's own address: a fresh stack reusing STACK right after
#: the attached run would meet the kernel's TIME-WAIT entries for the same
#: 4-tuples (and a random ISN below the old one costs a SYN retransmission).
STACK_INPROC = "192.0.2.3"
KERNEL_VETH = "198.51.100.1"
CLIENT_VETH = "198.51.100.2"
TAP = "ftbp0"

_SERVERS = r"""
import os, socket, socketserver, sys, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from functools import partial

class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

www = sys.argv[1]
httpd = ThreadingHTTPServer(("0.0.0.0", 8080), partial(Quiet, directory=www))
threading.Thread(target=httpd.serve_forever, daemon=True).start()

def closer():
    s = socket.create_server(("0.0.0.0", 9001), backlog=512)
    while True:
        c, _ = s.accept()
        c.close()

def echo_conn(c):
    while data := c.recv(65536):
        c.sendall(data)
    c.close()

def echo():
    s = socket.create_server(("0.0.0.0", 9002))
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=echo_conn, args=(c,), daemon=True).start()

def uecho():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 9003))
    while True:
        data, addr = u.recvfrom(2048)
        u.sendto(data, addr)

for fn in (closer, echo, uecho):
    threading.Thread(target=fn, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

_CLIENT = r"""
import json, os, resource, socket, sys, time, urllib.request
host, size, connects, pings, flag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
sync = sys.argv[6:] == ["1"]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def mark(part):
    # --cpu, attached: the bench reads serve's CPU at each mark, then answers
    if sync:
        print("mark", part, flush=True)
        sys.stdin.readline()

while flag != "-" and not os.path.exists(flag):
    time.sleep(0.05)
out = {}
if size:
    mark("get")
    c0 = cpu()
    t = time.perf_counter()
    got = 0
    with urllib.request.urlopen(f"http://{host}:8080/blob", timeout=60) as r:
        while chunk := r.read(1 << 20):
            got += len(chunk)
    assert got == size, got
    out["get_MBps"] = size / (time.perf_counter() - t) / 1e6
    out["get_cpu_program"] = cpu() - c0
    mark("get")
if connects:
    mark("connect")
    c0 = cpu()
    t = time.perf_counter()
    for _ in range(connects):
        socket.create_connection((host, 9001), timeout=30).close()
    out["connects_per_s"] = connects / (time.perf_counter() - t)
    out["connect_cpu_program"] = cpu() - c0
    mark("connect")
if pings:
    c = socket.create_connection((host, 9002), timeout=30)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mark("tcp")
    c0 = cpu()
    t = time.perf_counter()
    for _ in range(pings):
        c.sendall(b"x")
        assert c.recv(1) == b"x"
    out["tcp_rtt_us"] = (time.perf_counter() - t) / pings * 1e6
    out["tcp_cpu_program"] = cpu() - c0
    mark("tcp")
    c.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(10)
    mark("udp")
    c0 = cpu()
    t = time.perf_counter()
    for _ in range(pings):
        u.sendto(b"x", (host, 9003))
        assert u.recvfrom(16)[0] == b"x"
    out["udp_rtt_us"] = (time.perf_counter() - t) / pings * 1e6
    out["udp_cpu_program"] = cpu() - c0
    mark("udp")
print(json.dumps(out), flush=True)
"""

_HTTPD = r"""
import resource
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"x" * 100

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16     # one write per response: no Nagle wait between header and body

    def do_GET(self):
        body = BODY
        if self.path == "/cpu":      # --cpu: this process's CPU seconds, all threads
            r = resource.getrusage(resource.RUSAGE_SELF)
            body = repr(r.ru_utime + r.ru_stime).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 128

srv = Server(("0.0.0.0", 8088), Handler)
print("ready", flush=True)
srv.serve_forever()
"""

# `ab -n N -c C [-k]` in the standard library: C threads, N requests in all, a
# new connection per request or (keep-alive) one per thread.
_LOAD = r"""
import http.client, json, sys, threading, time
host, n, c, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
sync = sys.argv[5:] == ["1"]

def server_cpu():
    # --cpu: the server program's CPU seconds, from GET /cpu
    conn = http.client.HTTPConnection(host, 8088, timeout=30)
    conn.request("GET", "/cpu", headers={"Connection": "close"})
    seconds = float(conn.getresponse().read())
    conn.close()
    return seconds

def mark(part):
    # --cpu, attached: the bench reads serve's CPU at each mark, then answers
    if sync:
        print("mark", part, flush=True)
        sys.stdin.readline()

out = {}
for keep in (False, True):
    left = [n]
    lock = threading.Lock()
    errors = []

    def worker():
        conn = None
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, 8088, timeout=30)
                conn.request("GET", "/", headers={} if keep else {"Connection": "close"})
                body = conn.getresponse().read()
                assert len(body) == 100
                if not keep:
                    conn.close()
                    conn = None
            except Exception as exc:
                errors.append(repr(exc))
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(c)]
    part = "keepalive" if keep else "close"
    c0 = server_cpu() if cpu else 0.0
    mark(part)
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out[f"http_{part}_rps"] = n / (time.perf_counter() - t)
    mark(part)
    if cpu:
        out[f"{part}_cpu_program"] = server_cpu() - c0
    if errors:
        out["http_errors"] = len(errors)
print(json.dumps(out), flush=True)
"""

FIGURES = (("get_MBps", "urllib GET", "MB/s", True),
           ("connects_per_s", "connect+close", "/s", True),
           ("tcp_rtt_us", "TCP 1-byte round trip", "us", False),
           ("udp_rtt_us", "UDP 1-byte round trip", "us", False),
           ("http_close_rps", "HTTP server, -c N", "/s", True),
           ("http_keepalive_rps", "HTTP server, -c N -k", "/s", True))

#: --cpu: each figure's part (the client's and the load's marks) and the unit of
#: its CPU per operation.
CPU_PARTS = {"get_MBps": ("get", "us/MB"), "connects_per_s": ("connect", "us/op"),
             "tcp_rtt_us": ("tcp", "us/op"), "udp_rtt_us": ("udp", "us/op"),
             "http_close_rps": ("close", "us/req"),
             "http_keepalive_rps": ("keepalive", "us/req")}

_TICK = 1.0 / os.sysconf("SC_CLK_TCK")

#: One reading of a process's CPU: (utime+stime of the whole process from
#: /proc/PID/stat, in clock ticks; the sum of its live threads' run time from
#: /proc/PID/task/*/schedstat, in ns; stime alone, in ticks). See ``_cpu_between``.
CpuSample = tuple[float, float, float]


def _cpu_sample(pid: int) -> CpuSample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = (int(fields[11]) + int(fields[12])) * _TICK
    threads = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass             # the thread ended between the listing and the read
    return ticks, threads / 1e9, int(fields[12]) * _TICK


def _cpu_between(a: CpuSample, b: CpuSample) -> float:
    """The CPU seconds (user+system, all threads) a process spent from a to b.

    /proc/PID/stat counts every thread, the ended ones too, but in clock ticks
    (10 ms); the threads' schedstat is exact to the ns but loses the threads
    that ended. The exact figure when both agree to three ticks (no thread of
    weight ended), the ticks otherwise."""
    ticks, exact = b[0] - a[0], b[1] - a[1]
    return exact if abs(ticks - exact) <= 3 * _TICK else ticks


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _wait_line(proc: subprocess.Popen[str], prefix: str, seconds: float = 30.0) -> str:
    assert proc.stdout is not None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        text = proc.stdout.readline()
        if not text:
            break
        if text.startswith(prefix):
            return text
    raise RuntimeError(f"no {prefix!r} line from {proc.args!r}")


def _wait_link(ns: str, name: str, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if subprocess.run(["ip", "-n", ns, "link", "show", name],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not appear in {ns}")


def _client(argv: list[str], timeout: float = 600.0,
            watch: dict[str, int] | None = None) -> dict[str, float]:
    """Run a client or load script (its last line is its JSON figures).

    With ``watch`` (a name per pid, e.g. ``{"serve": pid}``), the script is run
    with its marks on (a last argument "1"): at each ``mark PART`` line it
    waits until the CPU of every watched process is read, so the figures get
    ``PART_cpu_NAME``, the CPU seconds each spent in that part."""
    if watch is None:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{argv!r} failed: {res.stdout} {res.stderr}")
        return dict(json.loads(res.stdout.strip().splitlines()[-1]))
    for name, pid in watch.items():
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        if not comm.startswith("python"):      # `ip netns exec` did not exec it
            raise RuntimeError(f"--cpu: {name}'s pid {pid} is {comm!r}, not the python program")
    marks: dict[str, dict[str, CpuSample]] = {}
    out: dict[str, float] = {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*argv, "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        lines: list[str] = []
        try:
            end = time.monotonic() + timeout
            while True:
                ready, _, _ = select.select([proc.stdout], [], [],
                                            max(0.0, end - time.monotonic()))
                if not ready:
                    raise RuntimeError(f"{argv!r}: no answer in {timeout:g} s")
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("mark "):
                    part = line.split()[1]
                    now = {name: _cpu_sample(pid) for name, pid in watch.items()}
                    if part in marks:
                        for name, sample in now.items():
                            out[f"{part}_cpu_{name}"] = _cpu_between(marks[part][name], sample)
                            out[f"{part}_sys_{name}"] = sample[2] - marks[part][name][2]
                    else:
                        marks[part] = now
                    proc.stdin.write("\n")
                    proc.stdin.flush()
            proc.wait(max(1.0, end - time.monotonic()))
        finally:
            _stop(proc)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{argv!r} failed: {''.join(lines)} {err.read()}")
    return {**json.loads(lines[-1]), **out}


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _http(server: list[str], load: list[str], on_ready: Any = None, cpu: bool = False,
          serve: int | None = None) -> dict[str, float]:
    """Start the HTTP server program, load it (``_LOAD``), stop it; the figures.

    With ``cpu``, also the CPU the server program (GET /cpu) and ``serve`` (its
    pid, if given) spent in each part."""
    proc = subprocess.Popen(server, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_line(proc, "ready")
        if on_ready is not None:
            on_ready()
        return _client([*load, "1" if cpu else "0"],
                       watch={"serve": serve} if cpu and serve is not None else None)
    finally:
        _stop(proc)


def run(size_mb: int, connects: int, pings: int, requests: int = 5000,
        concurrency: int = 50, cpu: bool = False,
        serve_busy_poll: float | None = None,
        profile: str | None = None) -> dict[str, dict[str, float]]:
    """The figures per mode; with ``cpu`` also each part's CPU seconds
    (``PART_cpu_program``, attached also ``PART_cpu_serve``; printed by ``report``);
    with ``profile`` (a directory) cProfile statistics of the attached mode's
    processes there: serve's loop thread (``serve.prof``), the client program
    (``program.prof``) and the HTTP server program (``program-http.prof``)."""
    size = size_mb * 1_000_000
    work = tempfile.mkdtemp(prefix="ftbprog")
    results: dict[str, dict[str, float]] = {}
    try:
        www = os.path.join(work, "www")
        os.mkdir(www)
        with open(os.path.join(www, "blob"), "wb") as blob:
            blob.write(os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20)))
        client = os.path.join(work, "client.py")
        with open(client, "w") as f:
            f.write(_CLIENT)
        args = [str(size), str(connects), str(pings)]
        py = sys.executable
        httpd = os.path.join(work, "httpd.py")
        with open(httpd, "w") as f:
            f.write(_HTTPD)
        load = os.path.join(work, "load.py")
        with open(load, "w") as f:
            f.write(_LOAD)
        hargs = [str(requests), str(concurrency)]
        with namespace("ftbpk") as k, namespace("ftbpc") as c:
            _ip("link", "add", "ftbpv0", "netns", k, "type", "veth", "peer", "name", "ftbpv1",
                "netns", c)
            _ip("-n", k, "addr", "add", f"{KERNEL_VETH}/24", "dev", "ftbpv0")
            _ip("-n", c, "addr", "add", f"{CLIENT_VETH}/24", "dev", "ftbpv1")
            _ip("-n", k, "link", "set", "ftbpv0", "up")
            _ip("-n", c, "link", "set", "ftbpv1", "up")
            servers = subprocess.Popen(["ip", "netns", "exec", k, py, "-c", _SERVERS, www],
                                       stdout=subprocess.PIPE, text=True)
            try:
                _wait_line(servers, "ready")
                results["kernel (veth)"] = _client(
                    ["ip", "netns", "exec", c, py, client, KERNEL_VETH, *args, "-"])
                if requests:
                    results["kernel (veth)"].update(_http(
                        ["ip", "netns", "exec", k, py, httpd],
                        ["ip", "netns", "exec", c, py, load, KERNEL_VETH, *hargs], cpu=cpu))
                # attached: a serve, then the program in its own process
                control = os.path.join(work, "ctl.sock")
                poll = [] if serve_busy_poll is None else ["--busy-poll", f"{serve_busy_poll:g}"]
                # `ip netns exec` execs: serve.pid is serve's python (its CPU for --cpu)
                def prof(name: str) -> list[str]:
                    return ["-m", "cProfile", "-o", os.path.join(profile, name)] \
                        if profile else []

                serve = subprocess.Popen(
                    ["ip", "netns", "exec", k, py,
                     *femtotcp_argv(os.path.join(profile, "serve.prof") if profile else None),
                     "serve", "--tap", TAP,
                     "--ip", f"{STACK}/24", "--control", control, *poll],
                    stdout=subprocess.PIPE, text=True)
                try:
                    _wait_line(serve, "femtotcp: serving on")
                    _ip("-n", k, "addr", "add", f"{KERNEL_TAP}/24", "dev", TAP)
                    results["attached"] = _client(
                        ["ip", "netns", "exec", k, py, *prof("program.prof"), "-m", "femtotcp",
                         "run", "--control", control, client, KERNEL_TAP, *args, "-"],
                        watch={"serve": serve.pid} if cpu else None)
                    if requests:
                        results["attached"].update(_http(
                            ["ip", "netns", "exec", k, py, *prof("program-http.prof"), "-m",
                             "femtotcp", "run", "--control", control, httpd],
                            ["ip", "netns", "exec", k, py, load, STACK, *hargs], cpu=cpu,
                            serve=serve.pid))
                finally:
                    _stop(serve)
                # in-process: the TAP is made by the run; its kernel address after
                flag = os.path.join(work, "go")
                inproc = subprocess.Popen(
                    ["ip", "netns", "exec", k, py, "-m", "femtotcp", "run", "--in-process",
                     "--tap", TAP, "--ip", f"{STACK_INPROC}/24", client, KERNEL_TAP, *args,
                     flag],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    _wait_link(k, TAP)
                    _ip("-n", k, "addr", "add", f"{KERNEL_TAP}/24", "dev", TAP)
                    _ip("-n", k, "link", "set", TAP, "up")
                    open(flag, "w").close()
                    out, err = inproc.communicate(timeout=600)
                    if inproc.returncode != 0:
                        raise RuntimeError(f"in-process run failed: {out} {err}")
                    results["in-process"] = dict(json.loads(out.strip().splitlines()[-1]))
                finally:
                    _stop(inproc)

                def tap_address() -> None:
                    _ip("-n", k, "addr", "add", f"{KERNEL_TAP}/24", "dev", TAP)
                    _ip("-n", k, "link", "set", TAP, "up")

                if requests:
                    results["in-process"].update(_http(
                        ["ip", "netns", "exec", k, py, "-m", "femtotcp", "run", "--in-process",
                         "--tap", TAP, "--ip", f"{STACK_INPROC}/24", httpd],
                        ["ip", "netns", "exec", k, py, load, STACK_INPROC, *hargs], tap_address,
                        cpu=cpu))
            finally:
                _stop(servers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(results: dict[str, dict[str, float]],
           ops: dict[str, float] | None = None) -> None:
    """Print the figures; with ``ops`` (the operations per part: MB for "get",
    requests for "close" and "keepalive", ...), a line of CPU per operation
    under each figure whose parts were measured (``run(..., cpu=True)``)."""
    kernel = results.get("kernel (veth)", {})
    modes = [m for m in ("attached", "in-process") if m in results]
    print(f"  {'':24s} {'kernel (veth)':>14s}" + "".join(f" {m:>22s}" for m in modes))
    for key, name, unit, higher in FIGURES:
        k = kernel.get(key)
        row = f"  {name:24s} {k:10.1f} {unit:3s}" if k else f"  {name:24s} {'-':>14s}"
        for m in modes:
            v = results[m].get(key)
            if v is None:
                row += f" {'-':>22s}"
                continue
            share = (v / k if higher else k / v) * 100 if k else 0.0
            row += f" {v:9.1f} {unit:3s} ({share:5.1f}%)"
        print(row)
        if ops is not None:
            _report_cpu(key, results, ops)
    print("  (%: share of the kernel's figure; for round trips, the kernel's time over ours)")
    if ops is not None:
        print("  (cpu: user+system CPU time of all threads per operation; kernel column: the\n"
              "   kernel-side program (the client; the HTTP server for the HTTP rows); attached:\n"
              "   the program + serve, its busy polling included, and in brackets serve's\n"
              "   system time, 10 ms ticks: the kernel's work in its calls; in-process: its one\n"
              "   process)")


def _report_cpu(key: str, results: dict[str, dict[str, float]], ops: dict[str, float]) -> None:
    part, unit = CPU_PARTS[key]
    n = ops.get(part, 0)
    if not n or not any(f"{part}_cpu_program" in r for r in results.values()):
        return
    scale = 1e6 / n             # us per operation

    def cell(mode: str) -> str:
        got = results.get(mode, {})
        prog, serve = got.get(f"{part}_cpu_program"), got.get(f"{part}_cpu_serve")
        if prog is None:
            return f"{'-':>9s}"
        text = f"{prog * scale:9.1f}"
        if serve is None:
            return text
        text = f"{text} + {serve * scale:.1f}"
        sys_time = got.get(f"{part}_sys_serve")
        return text if sys_time is None else f"{text} (sys {sys_time * scale:.0f})"

    row = f"    {'cpu ' + unit:22s} {cell('kernel (veth)'):>10s}    "
    for m in ("attached", "in-process"):
        if m in results:
            row += f" {cell(m):22s}"
    print(row.rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.programs", description=__doc__)
    p.add_argument("--size", type=int, default=50, help="MB fetched by urllib (default 50)")
    p.add_argument("--connects", type=int, default=1000, help="connect+close count")
    p.add_argument("--pings", type=int, default=2000, help="round trips per protocol")
    p.add_argument("--requests", type=int, default=5000, help="HTTP requests (ab -n)")
    p.add_argument("--concurrency", type=int, default=50, help="HTTP clients (ab -c)")
    p.add_argument("--short", action="store_true",
                   help="a quick look: 20 MB, 500 connects, 1000 round trips, 2000 requests")
    p.add_argument("--cpu", action="store_true",
                   help="also print, under each figure, the CPU time (user+system, all "
                        "threads) spent per operation: by the kernel-side program, by the "
                        "attached program and by serve, by the in-process run's one process. "
                        f"serve busy-polls for up to {BUSY_POLL_DEFAULT_US:g} us before it sleeps "
                        "(--busy-poll): "
                        "that polling counts in its CPU (see --serve-busy-poll)")
    p.add_argument("--serve-busy-poll", type=busy_poll_usec, metavar="USEC",
                   help="run serve with --busy-poll USEC (default: serve's own, "
                        f"{BUSY_POLL_DEFAULT_US:g}; 0 turns it off)")
    p.add_argument("--profile", metavar="DIR",
                   help="run the attached mode's serve (its loop thread) and programs under "
                        "cProfile, write their statistics to DIR (serve.prof, program.prof, "
                        "program-http.prof) and print the top of each (a program's "
                        "main thread only: ThreadingHTTPServer's handler threads are not "
                        "in it); the figures of that mode are then slowed by the profiler")
    p.add_argument("--only", metavar="PARTS", default="",
                   help="run only these parts, comma-separated: get, connect, rtt, http "
                        "(the others print '-')")
    args = p.parse_args(argv)
    if args.short:
        args.size, args.connects, args.pings, args.requests = 20, 500, 1000, 2000
    if args.only:
        parts = {part.strip() for part in args.only.split(",") if part.strip()}
        unknown = parts - {"get", "connect", "rtt", "http"}
        if unknown:
            p.error(f"--only: unknown part(s) {', '.join(sorted(unknown))} "
                    "(known: get, connect, rtt, http)")
        args.size *= "get" in parts
        args.connects *= "connect" in parts
        args.pings *= "rtt" in parts
        args.requests *= "http" in parts
    if os.geteuid() != 0:
        print("bench.programs needs root (network namespaces, TAP)", file=sys.stderr)
        return 2
    print(f"stdlib programs: urllib {args.size} MB GET, {args.connects} connect+close, "
          f"{args.pings} 1-byte round trips (TCP, UDP); {args.requests} HTTP requests from "
          f"{args.concurrency} clients to a ThreadingHTTPServer program (N={args.concurrency})")
    if args.cpu or args.serve_busy_poll is not None:
        poll = BUSY_POLL_DEFAULT_US if args.serve_busy_poll is None else args.serve_busy_poll
        if not poll:
            print("serve does not busy-poll (--busy-poll 0)")
        else:
            print(f"serve busy-polls for up to {poll:g} us before it sleeps (--busy-poll"
                  f"{'' if args.serve_busy_poll is None else ' ' + format(poll, 'g')})"
                  f"{', counted in its CPU' if args.cpu else ''}")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        args.profile = os.path.abspath(args.profile)
    results = run(args.size, args.connects, args.pings, args.requests, args.concurrency,
                  cpu=args.cpu, serve_busy_poll=args.serve_busy_poll, profile=args.profile)
    ops = {"get": args.size, "connect": args.connects, "tcp": args.pings, "udp": args.pings,
           "close": args.requests, "keepalive": args.requests}
    report(results, ops if args.cpu else None)
    if args.profile:
        for name, what in (("serve.prof", "serve's loop thread (every attached part)"),
                           ("program.prof", "the attached client program"),
                           ("program-http.prof", "the attached HTTP server program")):
            _print_profile(os.path.join(args.profile, name), what)
    return 0


def _print_profile(path: str, what: str, top: int = 15) -> None:
    """The ``top`` functions of a cProfile file by their own time."""
    if not os.path.exists(path):
        print(f"\nno profile of {what} ({path} was not written)")
        return
    print(f"\nprofile of {what}: {path} (python -m pstats {path})")
    out = io.StringIO()
    pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print(text[text.find("   ncalls"):].rstrip() if "   ncalls" in text else text.rstrip())


if __name__ == "__main__":
    sys.exit(main())
