"""Attached programs: ``femtotcp run --control PATH`` against a ``femtotcp serve``
whose TAP's other side is the kernel, in a namespace of the test's own.

Each program is its own process; its sockets live in serve (api/remote.py,
control/sockets.py). Checked: two programs sharing serve's port space and
talking to each other (20 MB byte-exact), a Python child of a program going
over the stack (the kernel's http.server logs the stack's address), and a
program killed with SIGKILL mid-transfer (the kernel's peer sees the
connection reset; ``ctl sockets`` no longer lists it; the next program works).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from netns import Netns
from test_serve_ctl import KERNEL, STACK, TAP, start_serve

SIZE = 20_000_000


@dataclass
class Attached:
    ns: Netns
    control: str
    dir: str
    serve: subprocess.Popen[str]

    def program(self, source: str, *args: str) -> subprocess.Popen[str]:
        path = os.path.join(self.dir, f"prog{len(os.listdir(self.dir))}.py")
        with open(path, "w") as f:
            f.write(source)
        return self.ns.popen(sys.executable, "-m", "femtotcp", "run", "--control",
                             self.control, path, *args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def sockets(self) -> list[dict[str, Any]]:
        res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control",
                              self.control, "--json", "sockets"], capture_output=True,
                             text=True, timeout=30)
        doc = json.loads(res.stdout)
        assert doc["ok"], res.stdout
        return list(doc["result"]["sockets"])


def line(proc: subprocess.Popen[str], seconds: float = 30.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    if not ready:
        proc.kill()
        pytest.fail(f"no output within {seconds} s: {proc.communicate(timeout=10)}")
    return proc.stdout.readline().strip()


def finish(proc: subprocess.Popen[str], seconds: float = 60.0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"program did not end: {out} {err}")
    assert proc.returncode == 0, (out, err)
    return out, err


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def attached(ns: Netns) -> Iterator[Attached]:
    d = tempfile.mkdtemp(prefix="ftatt")
    control = os.path.join(d, "ctl.sock")
    progs = os.path.join(d, "progs")
    os.mkdir(progs)
    proc, _line = start_serve(ns, control)
    try:
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        yield Attached(ns, control, progs, proc)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


_SERVER = r"""
import hashlib, socket
s = socket.create_server(("0.0.0.0", 9000))
print("listening", type(s).__module__, flush=True)
c, addr = s.accept()
h = hashlib.sha256()
n = 0
while chunk := c.recv(1 << 16):
    h.update(chunk)
    n += len(chunk)
print(n, h.hexdigest(), addr[0], flush=True)
"""

_CLIENT = r"""
import errno, hashlib, socket, sys
probe = socket.socket()
try:
    probe.bind(("0.0.0.0", 9000))
    print("bound", flush=True)
except OSError as exc:
    print("errno", exc.errno, flush=True)
block = hashlib.sha256(b"attached").digest() * 2048
size = int(sys.argv[2])
c = socket.create_connection((sys.argv[1], 9000), timeout=30)
sent = 0
while sent < size:
    piece = block[: size - sent]
    c.sendall(piece)
    sent += len(piece)
c.close()
print("sent", sent, flush=True)
"""


def test_two_programs_one_serve(attached: Attached) -> None:
    server = attached.program(_SERVER)
    assert line(server) == "listening femtotcp.api.remote"
    client = attached.program(_CLIENT, STACK, str(SIZE))
    assert line(client) == f"errno {__import__('errno').EADDRINUSE}"
    out, _ = finish(client, 120)
    assert out.split() == ["sent", str(SIZE)]
    block = hashlib.sha256(b"attached").digest() * 2048
    expect = hashlib.sha256()
    left = SIZE
    while left:
        piece = block[:left]
        expect.update(piece)
        left -= len(piece)
    n, digest, peer = line(server, 60).split()
    assert (int(n), digest, peer) == (SIZE, expect.hexdigest(), STACK)
    finish(server)


_PARENT = r"""
import subprocess, sys
child = ("import urllib.request, socket; "
         "r = urllib.request.urlopen('http://%s:8080/hello.txt', timeout=20); "
         "print(r.read().decode().strip(), socket.socket.__module__)" % sys.argv[1])
res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
print(res.returncode, res.stdout.strip(), res.stderr.strip()[-300:], flush=True)
"""


@contextlib.contextmanager
def _kernel_httpd(attached: Attached, text: str) -> Iterator[list[str]]:
    """The kernel's http.server on KERNEL:8080 serving ``text`` as
    /hello.txt; once the block ends, the list it gave holds the server's
    log lines, and ``_one_get_from_the_stack`` checks them."""
    www = tempfile.mkdtemp(prefix="www", dir=attached.dir)
    with open(os.path.join(www, "hello.txt"), "w") as f:
        f.write(text)
    httpd = attached.ns.popen(sys.executable, "-u", "-m", "http.server", "8080", "--bind",
                              KERNEL, "--directory", www, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        yield log
    finally:
        httpd.send_signal(signal.SIGINT)
        try:
            _, err = httpd.communicate(timeout=10)
        except subprocess.TimeoutExpired:    # (once seen on a loaded machine)
            httpd.kill()                     # its log so far is in the pipe (-u)
            _, err = httpd.communicate(timeout=10)
        log.extend(err.splitlines())


def _one_get_from_the_stack(log: list[str]) -> None:
    requests = [ln for ln in log if "GET /hello.txt" in ln]
    assert len(requests) == 1 and requests[0].startswith(f"{STACK} "), log


def test_python_child_goes_over_the_stack(attached: Attached) -> None:
    with _kernel_httpd(attached, "hello from the kernel\n") as log:
        parent = attached.program(_PARENT, KERNEL)
        out, _ = finish(parent, 60)
        assert out.split()[:5] == ["0", "hello", "from", "the", "kernel"], out
        assert out.split()[5] == "femtotcp.api.remote", out
    _one_get_from_the_stack(log)


_INET6_ON_AN_IPV4_SERVE = r"""
import errno, socket, sys
kernel = sys.argv[1]
out = []
c = socket.socket(socket.AF_INET6)
c.settimeout(20)
c.connect(("::ffff:" + kernel, 8080))
c.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
data = b""
while chunk := c.recv(4096):
    data += chunk
out += [data.split(b"\r\n\r\n", 1)[1].decode().strip().replace(" ", "_"), c.getsockname()[0]]
for kind, call in ((socket.SOCK_STREAM, lambda s: s.connect(("2001:db8::9", 80))),
                   (socket.SOCK_DGRAM, lambda s: s.sendto(b"x", ("2001:db8::9", 9))),
                   (socket.SOCK_STREAM, lambda s: s.bind(("::1", 0)))):
    try:
        call(socket.socket(socket.AF_INET6, kind))
        out.append("ok")
    except OSError as exc:
        out.append(errno.errorcode[exc.errno])
srv = socket.socket(socket.AF_INET6)
srv.bind(("::", 9602))
srv.listen()
print(*out, flush=True)
a, addr = srv.accept()
print(addr[0], a.recv(10).decode(), flush=True)
"""


def test_inet6_sockets_on_a_serve_without_ipv6(attached: Attached) -> None:
    """serve has no IPv6: a program's AF_INET6 sockets are still serve's (as a
    Linux host with no IPv6 address): v4-mapped addresses go over the stack's
    IPv4 (the kernel's http.server logs the stack's address), IPv6
    destinations are unreachable, and a listener on ``::`` takes IPv4."""
    with _kernel_httpd(attached, "hello over mapped\n") as log:
        prog = attached.program(_INET6_ON_AN_IPV4_SERVE, KERNEL)
        assert line(prog).split() == ["hello_over_mapped", f"::ffff:{STACK}", "ENETUNREACH",
                                      "ENETUNREACH", "EADDRNOTAVAIL"]
        attached.ns.run(sys.executable, "-c", "import socket; socket.create_connection("
                        f"('{STACK}', 9602), timeout=10).sendall(b'hi')")
        assert line(prog).split() == [f"::ffff:{KERNEL}", "hi"]
        finish(prog)
    _one_get_from_the_stack(log)


_ACCEPT_AT_THE_LIMIT = r"""
import errno, socket
srv = socket.create_server(("0.0.0.0", 9700))
srv.settimeout(20)
hold = []
try:
    while True:
        hold.append(open("/dev/null"))
except OSError:
    pass
print("full", flush=True)
try:
    srv.accept()
    print("accepted", flush=True)
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc), flush=True)
for f in hold:
    f.close()
c, addr = srv.accept()
print("next", c.recv(10).decode(), flush=True)
"""


def test_accept_at_the_limit_of_open_files_is_emfile(attached: Attached) -> None:
    """A program at its limit of open files cannot take an accepted
    connection's socket: accept raises EMFILE (as Linux's), it does not wait
    for ever, and the next accept after files are closed works."""
    prog = attached.program(_ACCEPT_AT_THE_LIMIT)
    assert line(prog) == "full"
    connect = ("import socket; c = socket.create_connection(('%s', 9700), timeout=10); "
               "c.sendall(b'%s'); c.settimeout(10); c.recv(10)")
    first = attached.ns.popen(sys.executable, "-c", connect % (STACK, "one"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert line(prog) == "EMFILE"
    second = attached.ns.popen(sys.executable, "-c", connect % (STACK, "two"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert line(prog) == "next two"
    finish(prog)
    for client in (first, second):
        client.communicate(timeout=30)


_FILL_SERVE = r"""
import errno, socket, time
made = []
while True:
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 0))
        made.append(u)
    except OSError as exc:
        print(errno.errorcode.get(exc.errno, exc), len(made) > 10, flush=True)
        break
for u in made:
    u.close()
for _ in range(200):          # serve frees the closed ones as it sees them go
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 0))
        break
    except OSError as exc:
        if exc.errno != errno.ENFILE:
            raise
        time.sleep(0.05)
print("bound again", flush=True)
"""


def test_serve_at_its_limit_of_open_files_answers_enfile(ns: Netns, tmp_path: Any) -> None:
    """serve holds one end of every socket's pair: at its own limit of open
    files a new socket's first request is refused with ENFILE (the system's
    table is full, as the programs see it), and serve goes on serving."""
    control = str(tmp_path / "ctl.sock")
    proc = ns.popen("prlimit", "--nofile=64:64", sys.executable, "-m", "femtotcp", "serve",
                    "--tap", TAP, "--ip", f"{STACK}/24", "--control", control,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert line(proc).startswith("femtotcp: serving on")
        prog = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control, "-c",
                        _FILL_SERVE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, _ = finish(prog)
        assert out.split() == ["ENFILE", "True", "bound", "again"], out
    finally:
        stop(proc)


_KERNEL_SENDER = r"""
import socket, sys
s = socket.create_server((sys.argv[1], 8081))
print("ready", flush=True)
c, _ = s.accept()
block = b"z" * 65536
try:
    while True:
        c.sendall(block)
except OSError as exc:
    print("ended", type(exc).__name__, flush=True)
"""

_READER = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], 8081), timeout=30)
got = 0
while got < 1_000_000:
    got += len(c.recv(65536))
print("reading", c.getsockname()[1], flush=True)
time.sleep(600)
"""


def test_kill_9_mid_transfer_frees_the_socket(attached: Attached) -> None:
    sender = attached.ns.popen(sys.executable, "-c", _KERNEL_SENDER, KERNEL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert line(sender) == "ready"
    reader = attached.program(_READER, KERNEL)
    words = line(reader, 60).split()
    assert words[0] == "reading", words
    port = int(words[1])
    assert any(s["proto"] == "tcp" and s["local_port"] == port for s in attached.sockets())
    reader.send_signal(signal.SIGKILL)
    reader.wait(10)
    # Data was unread in the dead program's socket: a reset, as Linux sends.
    assert line(sender, 30) in ("ended ConnectionResetError", "ended BrokenPipeError")
    sender.wait(10)
    assert not [s for s in attached.sockets()
                if s["proto"] == "tcp" and s["local_port"] == port], attached.sockets()
    # The stack serves the next program.
    server = attached.program(_SERVER)
    assert line(server) == "listening femtotcp.api.remote"
    client = attached.program(_CLIENT, STACK, "100000")
    assert line(client) == f"errno {__import__('errno').EADDRINUSE}"
    finish(client)
    assert line(server, 30).split()[0] == "100000"
    finish(server)


_KERNEL_CLIENTS = r"""
import socket, sys
answers = []
for i in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], 9100), timeout=20)
    c.sendall(b"q%d\n" % i)
    c.shutdown(socket.SHUT_WR)
    buf = b""
    while chunk := c.recv(100):
        buf += chunk
    answers.append(buf.decode().strip())
    c.close()
print(" ".join(answers), flush=True)
"""

_MP_WORKERS = r"""
import multiprocessing as mp, os, socket

def work(listener, count):
    for _ in range(count):
        c, _ = listener.accept()
        c.recv(100)
        c.sendall(b"%d\n" % os.getpid())
        c.close()

if __name__ == "__main__":
    s = socket.create_server(("0.0.0.0", 9100))
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=work, args=(s, 3)) for _ in range(2)]
    for w in workers:
        w.start()
    print("ready", os.getpid(), " ".join(str(w.pid) for w in workers), flush=True)
    for w in workers:
        w.join()
    print("exit", [w.exitcode for w in workers], flush=True)
"""


def test_multiprocessing_workers_share_a_listening_socket(attached: Attached) -> None:
    prog = attached.program(_MP_WORKERS)
    words = line(prog, 60).split()
    assert words[0] == "ready", words
    parent, workers = words[1], set(words[2:])
    out = attached.ns.run(sys.executable, "-c", _KERNEL_CLIENTS, STACK, "6", timeout=60)
    pids = out.stdout.split()
    assert len(pids) == 6 and set(pids) <= workers and parent not in pids, (pids, words)
    out2, _ = finish(prog)
    assert out2.strip() == "exit [0, 0]"


_FORKING = r"""
import os, socketserver

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"%d\n" % os.getpid())

class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True

with Server(("0.0.0.0", 9100), Handler) as srv:
    print("ready", os.getpid(), flush=True)
    for _ in range(4):
        srv.handle_request()
    srv.collect_children(blocking=True)
print("done", flush=True)
"""


def test_forking_tcp_server(attached: Attached) -> None:
    prog = attached.program(_FORKING)
    words = line(prog, 60).split()
    assert words[0] == "ready", words
    out = attached.ns.run(sys.executable, "-c", _KERNEL_CLIENTS, STACK, "4", timeout=60)
    pids = out.stdout.split()
    assert len(pids) == 4 and words[1] not in pids and len(set(pids)) == 4, pids
    out2, _ = finish(prog)
    assert out2.strip() == "done"


_PASS_FDS = r"""
import os, socket, subprocess, sys
c = socket.create_connection((sys.argv[1], 9200), timeout=20)
twin = c.dup()
c.close()
child = ("import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); "
         "print(type(s).__module__, s.getpeername()[1], flush=True); "
         "s.sendall(b'from the child\\n'); s.close()")
res = subprocess.run([sys.executable, "-c", child, str(twin.fileno())],
                     pass_fds=[twin.fileno()], capture_output=True, text=True)
print(res.stdout.strip(), res.stderr.strip()[-300:], flush=True)
twin.sendall(b"from the parent\n")
twin.close()
"""

_KERNEL_COLLECT = r"""
import socket, sys
s = socket.create_server((sys.argv[1], 9200))
print("ready", flush=True)
c, _ = s.accept()
buf = b""
while chunk := c.recv(100):
    buf += chunk
print(repr(buf), flush=True)
"""


def test_dup_and_pass_fds_keep_the_connection(attached: Attached) -> None:
    collect = attached.ns.popen(sys.executable, "-c", _KERNEL_COLLECT, KERNEL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert line(collect) == "ready"
    prog = attached.program(_PASS_FDS, KERNEL)
    out, _ = finish(prog)
    assert out.strip() == "femtotcp.api.remote 9200", out
    # EOF reaches the kernel only once the last copy (the parent's twin) closed.
    assert line(collect) == repr(b"from the child\nfrom the parent\n")


_BLOCKED = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 8081), timeout=30)
got = 0
while got < 1_000_000:
    got += len(c.recv(65536))
c.settimeout(60)
print("reading", flush=True)
try:
    while c.recv(65536):
        pass
    print("eof", flush=True)
except OSError as exc:
    print("recv", type(exc).__name__, flush=True)
try:
    for _ in range(100):
        c.sendall(b"x" * 65536)
    print("sent", flush=True)
except OSError as exc:
    print("send", type(exc).__name__, flush=True)
try:
    socket.create_connection((sys.argv[1], 8081), timeout=5)
except OSError as exc:
    print("new", exc.errno, flush=True)
"""


def test_serve_killed_under_a_program_is_a_reset_not_a_hang(attached: Attached) -> None:
    sender = attached.ns.popen(sys.executable, "-c", _KERNEL_SENDER, KERNEL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert line(sender) == "ready"
    prog = attached.program(_BLOCKED, KERNEL)
    assert line(prog, 60) == "reading"
    attached.serve.send_signal(signal.SIGKILL)
    attached.serve.wait(10)
    out, _ = finish(prog, 60)
    recv, send, new = out.split("\n")[:3]
    assert recv == "recv ConnectionResetError", out
    assert send in ("send ConnectionResetError", "send BrokenPipeError"), out
    assert new == f"new {__import__('errno').ENETDOWN}", out


_KERNEL_ECHO6 = r"""
import socket, sys
s = socket.create_server((sys.argv[1], 9600), family=socket.AF_INET6)
print("ready", flush=True)
c, peer = s.accept()
while data := c.recv(65536):
    c.sendall(data)
c.close()
print("peer", peer[0], flush=True)
"""

_PROGRAM6 = r"""
import hashlib, socket, sys
srv = socket.create_server(("::", 9601), family=socket.AF_INET6, dualstack_ipv6=True)
print("listening", type(srv).__module__, srv.getsockname()[0], flush=True)
c = socket.create_connection((sys.argv[1], 9600), timeout=30)
print("connected", c.family.name, c.getpeername()[0], flush=True)
data = hashlib.sha256(b"six").digest() * 32768
c.sendall(data)
c.shutdown(socket.SHUT_WR)
got = bytearray()
while chunk := c.recv(65536):
    got += chunk
print("echo", bytes(got) == data, flush=True)
srv.settimeout(30)
conn, peer = srv.accept()
buf = bytearray()
while chunk := conn.recv(65536):
    buf += chunk
conn.sendall(hashlib.sha256(buf).hexdigest().encode())
conn.close()
print("accepted", peer[0], len(buf), flush=True)
"""

_KERNEL_CLIENT6 = r"""
import hashlib, socket, sys
c = socket.create_connection((sys.argv[1], 9601), timeout=30)
data = hashlib.sha256(b"kernel six").digest() * 32768
c.sendall(data)
c.shutdown(socket.SHUT_WR)
answer = b""
while chunk := c.recv(100):
    answer += chunk
print(answer.decode() == hashlib.sha256(data).hexdigest(), c.getsockname()[0], flush=True)
"""


def _wait_preferred(control: str, address: str, seconds: float = 20.0) -> None:
    """Until serve's IPv6 address is through duplicate address detection."""
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                              "--json", "addr"], capture_output=True, text=True, timeout=30)
        doc = json.loads(res.stdout)
        if any(a["address"] == address and a["state"] == "preferred"
               for i in doc["result"]["interfaces"] for a in i.get("ipv6", [])):
            return
        time.sleep(0.2)
    pytest.fail(f"{address} never became preferred")


def test_ipv6_tcp_both_ways_with_the_kernel(ns: Netns, tmp_path: Any) -> None:
    """An attached program on a ``serve --ipv6``: AF_INET6 sockets are serve's;
    1 MiB each way over IPv6 TCP with the kernel, as client and as server."""
    from test_ipv6_kernel import KERNEL6, enable_ipv6
    stack6 = "2001:db8:1::2"
    enable_ipv6(ns)
    control = os.path.join(str(tmp_path), "ctl.sock")
    serve, _ = start_serve(ns, control, "--ipv6", f"{stack6}/64")
    try:
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        _wait_preferred(control, stack6)
        echo = ns.popen(sys.executable, "-c", _KERNEL_ECHO6, KERNEL6, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
        assert line(echo) == "ready"
        script = os.path.join(str(tmp_path), "prog6.py")
        with open(script, "w") as f:
            f.write(_PROGRAM6)
        prog = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control, script,
                        KERNEL6, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert line(prog) == "listening femtotcp.api.remote ::"
        got = line(prog)
        assert got == f"connected AF_INET6 {KERNEL6}", (got, prog.communicate(timeout=30))
        assert line(prog, 60) == "echo True"
        assert line(echo) == f"peer {stack6}"      # the stack's address, not the kernel's
        client = ns.popen(sys.executable, "-c", _KERNEL_CLIENT6, stack6,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, _ = finish(client)
        assert out.split() == ["True", KERNEL6], out
        out, _ = finish(prog)
        assert out.strip() == f"accepted {KERNEL6} {32 * 32768}", out
    finally:
        stop(serve)


_PROGRAM_SCOPED = r"""
import socket, sys
ll, port = sys.argv[1], int(sys.argv[2])
print("ifaces", " ".join(f"{i}:{n}" for i, n in socket.if_nameindex()),
      socket.if_nametoindex("ftap0"), flush=True)
c = socket.create_connection((f"{ll}%ftap0", port), timeout=30)
peer, local = c.getpeername(), c.getsockname()
print("names", type(c).__module__, peer[0], peer[3], local[0], local[3], flush=True)
with c.makefile("rb") as f:
    print(f.readline().decode().strip(), flush=True)
    payload = bytes(range(256)) * 1000
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
    print("echo", f.read() == payload, flush=True)
try:
    socket.create_connection((ll, port), timeout=30)
except OSError as exc:
    print("unscoped", exc.errno, flush=True)
"""


def test_attached_link_local_with_scope_to_the_kernel(ns: Netns, tmp_path: Any) -> None:
    """An attached program reaches the kernel's fe80:: address on the TAP by
    TCP as ``fe80::...%ftap0``: the scope goes to serve, the names come back
    with it, the kernel sees serve's link-local address on its TAP; without
    a scope the connect is EINVAL, as on Linux."""
    import errno

    from test_ipv6_kernel import enable_ipv6, kernel_link_local
    from test_ipv6_scope_kernel import KERNEL_SERVERS, PORT
    enable_ipv6(ns)
    control = os.path.join(str(tmp_path), "ctl.sock")
    serve, _ = start_serve(ns, control, "--ipv6", "auto")
    try:
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        kernel_ll = kernel_link_local(ns, TAP)
        kernel_index = int(ns.ip("-o", "link", "show", TAP).stdout.split(":")[0])
        res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                              "--json", "addr"], capture_output=True, text=True, timeout=30)
        ours = next(a["address"] for i in json.loads(res.stdout)["result"]["interfaces"]
                    for a in i.get("ipv6", []) if a["address"].startswith("fe80:"))
        _wait_preferred(control, ours)
        server = ns.popen(sys.executable, "-c", KERNEL_SERVERS, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            assert line(server) == "ready"
            script = os.path.join(str(tmp_path), "prog_scoped.py")
            with open(script, "w") as f:
                f.write(_PROGRAM_SCOPED)
            prog = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control,
                            script, kernel_ll, str(PORT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
            out, _ = finish(prog)
            lines = out.splitlines()
            assert lines[0] == f"ifaces 1:lo 2:{TAP} 2", out
            assert lines[1] == f"names femtotcp.api.remote {kernel_ll} 2 {ours} 2", out
            assert lines[2] == f"peer {ours} {kernel_index}", out
            assert lines[3:] == ["echo True", f"unscoped {errno.EINVAL}"], out
        finally:
            stop(server)
    finally:
        stop(serve)
