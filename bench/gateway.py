"""``python -m bench.gateway``: TCP throughput through ``femtotcp gateway`` and slirp4netns.

The same set-up for each (root, throw-away namespaces, documentation addresses):
a "host" namespace H with an iperf3 server on 198.51.100.1 (an address on H's
loopback), where the gateway runs; a "guest" namespace G holding the kernel side
of the gateway's TAP. iperf3 in G measures guest -> host and host -> guest (-R)
at MTU 1500 and 65520, and the rate of short HTTP requests (one connection each:
connect, GET, a 200 answer of 100 bytes, close, one after another from G to a
small server in H). slirp4netns is set up as its manual says
(``--configure --mtu=N --cidr=PREFIX --disable-host-loopback``); pasta runs
iperf3 in the namespace it makes (``--runas 0 --config-net -m N``), with a veth
holding H's default route as it requires. Prints MB/s, requests/s and the ratios.

    python -m bench.gateway [--seconds N] [--mtu 1500,65520] [--no-slirp] [--no-pasta]
                            [--only femtotcp] [--direction guest->host|host->guest|requests]
                            [--profile FILE]

``--profile FILE`` runs the gateway under cProfile and writes its statistics
to FILE (one file per MTU: FILE.<mtu>) for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.profiled import femtotcp_argv

SERVER = "198.51.100.1"
NET = "192.0.2.0/24"
NET6 = "2001:db8:1::/64"
TAP = "gw0"
HTTP_PORT = 8000
ROOT = Path(__file__).resolve().parents[1]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@contextlib.contextmanager
def _namespaces() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    host, guest = f"bgwH-{tag}", f"bgwG-{tag}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (host, guest):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", host, "addr", "add", f"{SERVER}/32", "dev", "lo")
        procs.append(subprocess.Popen(["ip", "netns", "exec", host, "iperf3", "-s", "-B",
                                       SERVER], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-c",
                                       HTTP_SERVER, SERVER, str(HTTP_PORT)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_listening(host, 5201)
        _wait_listening(host, HTTP_PORT)
        yield host, guest
    finally:
        for p in procs:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        for ns in (host, guest):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), 9)
            _ip("netns", "del", ns, check=False)


def _wait_listening(ns: str, port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-lnt"], capture_output=True,
                             text=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in {ns}")


def _wait_link(ns: str, dev: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _ip("-n", ns, "link", "show", dev, check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no {dev} in {ns}")


def _iperf(guest: str | list[str], seconds: int, reverse: bool) -> float:
    """iperf3 -c SERVER in ``guest`` (a namespace, or a command prefix: pasta)."""
    prefix = ["ip", "netns", "exec", guest] if isinstance(guest, str) else guest
    cmd = [*prefix, "iperf3", "-c", SERVER, "-t", str(seconds), "-J"]
    if reverse:
        cmd.append("-R")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    data = json.loads(res.stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return float(data["end"]["sum_received"]["bytes"]) / \
        float(data["end"]["sum_received"]["seconds"]) / 1e6


#: H's HTTP server for the request rate: reads a request head, answers 200 with
#: 100 bytes and closes (one process, selectors; lighter than http.server, so
#: the path through the gateway is what is measured).
HTTP_SERVER = """
import selectors, socket, sys
ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\nConnection: close\\r\\n\\r\\n"
          + b"x" * 100)
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind((sys.argv[1], int(sys.argv[2])))
lst.listen(1024)
lst.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(lst, selectors.EVENT_READ)
heads = {}
while True:
    for key, _ in sel.select():
        sock = key.fileobj
        if sock is lst:
            try:
                c, _ = lst.accept()
            except OSError:
                continue
            c.setblocking(False)
            heads[c] = b""
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        heads[sock] += data
        if data and b"\\r\\n\\r\\n" not in heads[sock]:
            continue
        if data:
            try:
                sock.sendall(ANSWER)
            except OSError:
                pass
        sel.unregister(sock)
        del heads[sock]
        sock.close()
"""

#: The guest's client: sequential short requests for argv[3] seconds; prints
#: how many completed with a whole answer, and the seconds taken.
HTTP_CLIENT = """
import socket, sys, time
addr = (sys.argv[1], int(sys.argv[2]))
req = b"GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n"
done = bad = 0
start = time.monotonic()
end = start + float(sys.argv[3])
while time.monotonic() < end:
    c = socket.create_connection(addr, timeout=10)
    c.sendall(req)
    got = b""
    while data := c.recv(65536):
        got += data
    c.close()
    if got.startswith(b"HTTP/1.1 200") and got.endswith(b"x" * 100):
        done += 1
    else:
        bad += 1
print(done, bad, time.monotonic() - start)
"""


def _requests(guest: str | list[str], seconds: int) -> float:
    """Requests a second, one connection each, from the guest to H's HTTP server."""
    prefix = ["ip", "netns", "exec", guest] if isinstance(guest, str) else guest
    res = subprocess.run([*prefix, sys.executable, "-c", HTTP_CLIENT, SERVER, str(HTTP_PORT),
                          str(seconds)], capture_output=True, text=True, timeout=seconds + 60)
    try:
        done, bad, took = res.stdout.split()
    except ValueError:
        raise RuntimeError(f"the client: {res.stderr.strip()[-200:]}") from None
    if int(bad):
        raise RuntimeError(f"{bad} answers came short")
    return int(done) / float(took)


#: ``--profile``: where cProfile writes the gateway's statistics (None: no profile).
PROFILE: str | None = None


@contextlib.contextmanager
def femtotcp_gateway(host: str, guest: str, mtu: int) -> Iterator[None]:
    """The gateway in H making its TAP in G; G configured statically (.15, via .2)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    run = femtotcp_argv(f"{PROFILE}.{mtu}" if PROFILE else None)
    proc = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, *run,
                             "gateway", "--tap", TAP, "--netns", f"/run/netns/{guest}",
                             "--net", NET, "--net6", NET6, "--mtu", str(mtu),
                             "--dns-upstream", SERVER,
                             "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL)
    try:
        _wait_link(guest, TAP)
        _ip("-n", guest, "addr", "add", "192.0.2.15/24", "dev", TAP)
        _ip("-n", guest, "route", "add", "default", "via", "192.0.2.2")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def slirp4netns(host: str, guest: str, mtu: int) -> Iterator[None]:
    proc = subprocess.Popen(["ip", "netns", "exec", host, "slirp4netns", "--configure",
                             f"--mtu={mtu}", f"--cidr={NET}", "--disable-host-loopback",
                             "--netns-type=path", f"/run/netns/{guest}", TAP],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_link(guest, TAP)
        end = time.monotonic() + 10
        while "default" not in _ip("-n", guest, "route").stdout:
            if time.monotonic() > end:
                raise RuntimeError("slirp4netns configured no route")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def pasta(host: str, guest: str, mtu: int) -> Iterator[list[str]]:
    """pasta makes its own namespace for the command it runs; it wants a host
    namespace with a non-loopback interface holding a default route: a veth
    to a third namespace (192.0.2.9/24 -> .10) does, the server stays on lo."""
    third = guest + "x"
    _ip("netns", "add", third)
    try:
        _ip("link", "add", "bgwv0", "netns", host, "type", "veth", "peer", "name", "bgwv1",
            "netns", third)
        _ip("-n", host, "addr", "add", "192.0.2.9/24", "dev", "bgwv0")
        _ip("-n", third, "addr", "add", "192.0.2.10/24", "dev", "bgwv1")
        _ip("-n", host, "link", "set", "bgwv0", "up")
        _ip("-n", third, "link", "set", "bgwv1", "up")
        _ip("-n", host, "route", "add", "default", "via", "192.0.2.10")
        yield ["ip", "netns", "exec", host, "pasta", "--runas", "0", "--config-net", "-m",
               str(mtu), "--"]
    finally:
        _ip("netns", "del", third, check=False)


#: What each set-up measures: iperf3 both ways (MB/s), then the request rate.
DIRECTIONS = ("guest->host", "host->guest", "requests")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--mtu", default="1500,65520")
    p.add_argument("--no-slirp", action="store_true")
    p.add_argument("--no-pasta", action="store_true")
    p.add_argument("--only", choices=["femtotcp", "slirp4netns", "pasta"],
                   help="measure only this one")
    p.add_argument("--direction", choices=["guest->host", "host->guest", "requests"],
                   help="measure only this direction (or only the request rate)")
    p.add_argument("--profile", metavar="FILE",
                   help="run the gateway under cProfile, statistics to FILE.<mtu>")
    args = p.parse_args(argv)
    global PROFILE
    PROFILE = args.profile
    if os.geteuid() != 0 or not shutil.which("iperf3"):
        print("bench.gateway needs root and iperf3", file=sys.stderr)
        return 1
    peers: list[tuple[str, Any]] = [("femtotcp", femtotcp_gateway)]
    if not args.no_slirp and shutil.which("slirp4netns"):
        peers.append(("slirp4netns", slirp4netns))
    if not args.no_pasta and shutil.which("pasta"):
        peers.append(("pasta", pasta))
    if args.only:
        peers = [(n, f) for n, f in peers if n == args.only]
    results: dict[tuple[str, int, str], float] = {}
    mtus = [int(m) for m in args.mtu.split(",")]
    print(f"TCP through the gateway, iperf3 {args.seconds} s, guest netns <-> a server on "
          "the host netns's loopback (MB/s); short HTTP requests, one connection each, "
          f"one after another for {args.seconds} s (requests/s)")
    for mtu in mtus:
        for name, setup in peers:
            with _namespaces() as (host, guest), setup(host, guest, mtu) as where:
                for direction in DIRECTIONS:
                    if args.direction and direction != args.direction:
                        continue
                    try:
                        if direction == "requests":
                            v = _requests(where or guest, args.seconds)
                        else:
                            v = _iperf(where or guest, args.seconds,
                                       direction == "host->guest")
                    except (RuntimeError, ValueError, KeyError, OSError,
                            subprocess.TimeoutExpired) as exc:
                        print(f"  {name} MTU {mtu} {direction}: failed ({exc})")
                        continue
                    results[(name, mtu, direction)] = v
                    print(f"  {name:12s} MTU {mtu:5d} {direction:12s} {v:9.1f}", flush=True)
    for other, _ in (peers[1:] if peers and peers[0][0] == "femtotcp" else []):
        print(f"ratios femtotcp / {other}")
        for mtu in mtus:
            for direction in DIRECTIONS:
                a = results.get(("femtotcp", mtu, direction))
                b = results.get((other, mtu, direction))
                if a and b:
                    print(f"  MTU {mtu:5d} {direction:12s} {a / b:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
