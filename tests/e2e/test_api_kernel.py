"""Unmodified stdlib programs on the stack (``femtotcp run``) against the Linux kernel.

Each stack program runs as ``ip netns exec NS python -m femtotcp run --tap ftap0
--ip 192.0.2.2/24 ...`` inside a namespace of its own; once the TAP exists the
kernel side gets 192.0.2.1/24, and kernel-side programs (curl, socat, python's
http.server and an asyncio client) talk to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from netns import Netns, netns, require_kernel, stop_process

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
TAP = "ftap0"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def femtotcp_run(ns: Netns, *program: str, ready: str | None = None,
                 setup: Callable[[], None] | None = None,
                 timeout: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """``femtotcp run`` in ``ns``; the kernel side is addressed once the TAP
    exists (then ``setup`` runs), and with ``ready`` we wait for the program
    to print that line."""
    proc: subprocess.Popen[str] = ns.popen(
        sys.executable, "-m", "femtotcp", "run", "--tap", TAP, "--ip", f"{STACK}/24",
        *program, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + timeout
        while ns.ip("link", "show", TAP, check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"femtotcp run did not create {TAP}: {_drain(proc)}")
            time.sleep(0.05)
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        if setup is not None:
            setup()
        if ready is not None:
            assert proc.stdout is not None
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    pytest.fail(f"no {ready!r} from the program: {_drain(proc)}")
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"the program ended early: {_drain(proc)}")
                if line.strip() == ready:
                    break
        yield proc
    finally:
        stop_process(proc)


def _drain(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=10)
    return f"status {proc.returncode}\nstdout: {out}\nstderr: {err}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_http_server_on_the_stack_fetched_by_curl(ns: Netns, tmp_path: Path,
                                                  require_program: Callable[[str], str]) -> None:
    require_program("curl")
    www = tmp_path / "www"
    www.mkdir()
    body = os.urandom(10 << 20)
    (www / "big.bin").write_bytes(body)
    got = tmp_path / "got.bin"
    url = f"http://{STACK}:8000/big.bin"
    with femtotcp_run(ns, "-m", "http.server", "8000", "--directory", str(www)) as proc:
        deadline = time.monotonic() + 60
        while True:
            res = ns.run("curl", "-sS", "--max-time", "120", "-o", str(got), "-w",
                         "%{http_code}", url, check=False, timeout=150)
            if res.stdout.strip() == "200":
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"curl never got the file: {res.stderr} {_drain(proc)}")
            time.sleep(0.2)
    data = got.read_bytes()
    assert len(data) == len(body)
    assert _sha(data) == _sha(body)


def test_urllib_on_the_stack_fetches_from_kernel_http_server(ns: Netns,
                                                             tmp_path: Path) -> None:
    www = tmp_path / "kwww"
    www.mkdir()
    body = os.urandom(3 << 20)
    (www / "file.bin").write_bytes(body)
    script = tmp_path / "fetch.py"
    script.write_text(textwrap.dedent(f"""
        import errno, hashlib, json, socket, sys, time, urllib.error, urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
        deadline = time.monotonic() + 40
        while True:
            try:
                with opener.open(sys.argv[1], timeout=60) as resp:
                    status, data = resp.status, resp.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        out = {{"status": status, "len": len(data),
               "sha256": hashlib.sha256(data).hexdigest(),
               "patched": type(socket.socket()).__module__}}
        try:
            socket.create_connection(("{KERNEL}", 9), timeout=5)
            out["refused"] = False
        except ConnectionRefusedError:
            out["refused"] = True
        s = socket.socket()
        s.bind(("", 7777))
        s.listen()
        t = socket.socket()
        try:
            t.bind(("", 7777))
            out["eaddrinuse"] = False
        except OSError as exc:
            out["eaddrinuse"] = exc.errno == errno.EADDRINUSE
        print(json.dumps(out))
    """))
    with femtotcp_run(ns, str(script), f"http://{KERNEL}:8001/file.bin") as proc:
        server = ns.popen(sys.executable, "-m", "http.server", "8001", "--bind", KERNEL,
                          "--directory", str(www), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            server.terminate()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"status": 200, "len": len(body), "sha256": _sha(body),
                      "patched": "femtotcp.api.socket", "refused": True,
                      "eaddrinuse": True}


SERVICES = """
import asyncio, socket, socketserver, threading

class Reverse(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.strip()[::-1] + b"\\n")

tcp = socketserver.ThreadingTCPServer(("", 7001), Reverse)
tcp.daemon_threads = True
threading.Thread(target=tcp.serve_forever, daemon=True).start()

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("", 9999))

def udp_loop():
    while True:
        data, addr = udp.recvfrom(2048)
        udp.sendto(data.upper(), addr)

threading.Thread(target=udp_loop, daemon=True).start()

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(echo, None, 7000, backlog=256)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

CLIENTS = """
import asyncio, sys

async def one(i):
    reader, writer = await asyncio.open_connection(sys.argv[1], 7000)
    msg = (f"client {i};" * 400).encode()
    writer.write(msg)
    await writer.drain()
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return data == msg

async def main():
    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 90)
    print(sum(results))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns]:
    """One stack program serving asyncio echo (7000), a ThreadingTCPServer (7001)
    and UDP (9999), for the tests below."""
    require_kernel()
    d = tmp_path_factory.mktemp("services")
    script = d / "services.py"
    script.write_text(SERVICES)
    (d / "clients.py").write_text(CLIENTS)
    with netns("ftapi") as ns:
        with femtotcp_run(ns, str(script), ready="READY"):
            ns.clients = str(d / "clients.py")  # type: ignore[attr-defined]
            yield ns


def test_asyncio_echo_server_on_the_stack_with_100_kernel_clients(services: Netns) -> None:
    res = services.run(sys.executable, services.clients,  # type: ignore[attr-defined]
                       STACK, timeout=120)
    assert res.stdout.strip() == "100", res.stderr


def test_threading_tcp_server_on_the_stack(services: Netns,
                                           require_program: Callable[[str], str]) -> None:
    require_program("socat")
    for _ in range(3):
        res = services.run("socat", "-t", "5", "-", f"TCP:{STACK}:7001",
                           input="hello\nfemtotcp\n", timeout=30)
        assert res.stdout == "olleh\npctotmef\n"


def test_udp_request_response_with_socat(services: Netns,
                                         require_program: Callable[[str], str]) -> None:
    require_program("socat")
    res = services.run("socat", "-t", "1", "-", f"UDP:{STACK}:9999", input="ping\n",
                       timeout=30)
    assert res.stdout == "PING\n"
