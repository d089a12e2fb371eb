"""Programs over IPv6 against the Linux kernel: unmodified stdlib programs
under ``femtotcp run`` (and ``femtotcp serve`` with ``ctl``) on a TAP whose
kernel side lives in the test's own namespace, talking to curl, socat,
dnsmasq and python's http.server on the kernel side.

The stack is 2001:db8:1::2/64 (and 192.0.2.2/24), the kernel 2001:db8:1::1/64
(and 192.0.2.1/24); dnsmasq on the kernel side is authoritative for ``test``.
The last test runs the stack in-process and has ip6tables count the hop
limit and traffic class of every TCP packet it sends.
Addresses from 2001:db8::/32 and 192.0.2.0/24 only, inside the namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from netns import Netns, kernel_tap, stop_process
from test_api_kernel import _drain, femtotcp_run
from test_ipv6_kernel import enable_ipv6

KERNEL4 = "192.0.2.1"
KERNEL6 = "2001:db8:1::1"
STACK6 = "2001:db8:1::2"
TAP = "ftap0"
#: A prefix the kernel has no route to (nor the stack, without --gateway6).
FAR6 = "2001:db8:9::1"


@contextmanager
def femtotcp_run6(ns: Netns, *args: str, ready: str | None = None,
                  setup: Callable[[], None] | None = None,
                  timeout: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """``femtotcp run --tap ftap0 --ip 192.0.2.2/24 --ipv6 2001:db8:1::2/64 ARGS``
    in ``ns`` (test_api_kernel's ``femtotcp_run``); once the TAP exists the
    kernel side gets both its addresses and ``setup`` runs (dnsmasq, routes)."""
    enable_ipv6(ns)

    def address6() -> None:
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        if setup is not None:
            setup()

    with femtotcp_run(ns, "--ipv6", f"{STACK6}/64", *args, ready=ready, setup=address6,
                      timeout=timeout) as proc:
        yield proc


def finish(proc: subprocess.Popen[str], timeout: float = 180.0) -> dict[str, object]:
    """Wait for a program that prints one JSON line last; that line."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the program did not finish: {_drain(proc)}")
    assert proc.returncode == 0, f"status {proc.returncode}\n{out}\n{err}"
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def wait_port(ns: Netns, port: int, proto: str = "udp", timeout: float = 10.0) -> None:
    """Until something in the namespace listens on ``port`` (``ss``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in ns.run("ss", f"-ln{proto[0]}", check=False).stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {proto} {port} in the namespace")


def start_dnsmasq(ns: Netns, tmp: Path, *records: str) -> Path:
    """dnsmasq on the TAP (both families), authoritative for ``test`` with
    ``records`` (``--host-record`` values); its log file."""
    log = tmp / "dnsmasq.log"
    ns.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=",
             f"--interface={TAP}", "--bind-interfaces", "--no-resolv", "--no-hosts",
             "--local=/test/", "--domain=test", "--local-ttl=30",
             *(f"--host-record={r}" for r in records),
             "--log-queries", "--log-facility=-",
             stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_port(ns, 53)
    return log


def kernel_http_server(ns: Netns, www: Path, port: int) -> subprocess.Popen[bytes]:
    """python's http.server on the kernel side, ``--bind ::`` (dual-stack)."""
    proc: subprocess.Popen[bytes] = ns.popen(
        sys.executable, "-m", "http.server", str(port), "--bind", "::", "--directory",
        str(www), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(ns, port, "tcp")
    return proc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Programs below start with the stack: they first wait until its global IPv6
#: address has passed DAD (until then, the route's source is the link-local
#: address, or none), as a program started with a host's network would.
WAIT_GLOBAL6 = """
import socket as _s, time as _t

def wait_global6(peer, timeout=20.0):
    deadline = _t.monotonic() + timeout
    while True:
        probe = _s.socket(_s.AF_INET6, _s.SOCK_DGRAM)
        try:
            probe.connect((peer, 9))
            if not probe.getsockname()[0].startswith(("fe80:", "::")):
                return
        except OSError:
            pass
        finally:
            probe.close()
        if _t.monotonic() > deadline:
            raise SystemExit("no global IPv6 source address")
        _t.sleep(0.1)
"""


# -- 1. curl -6 against http.server --bind :: under femtotcp run ---------------------------

def test_curl6_fetches_10mb_from_http_server_on_the_stack(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    require_program("curl")
    www = tmp_path / "www"
    www.mkdir()
    body = os.urandom(10 << 20)
    (www / "big.bin").write_bytes(body)
    got = tmp_path / "got.bin"
    url = f"http://[{STACK6}]:8000/big.bin"
    with femtotcp_run6(ns, "-m", "http.server", "8000", "--bind", "::", "--directory",
                       str(www)) as proc:
        deadline = time.monotonic() + 60
        while True:
            res = ns.run("curl", "-6", "-g", "-sS", "--max-time", "150", "-o", str(got),
                         "-w", "%{http_code} %{remote_ip}", url, check=False, timeout=170)
            if res.stdout.startswith("200"):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"curl never got the file: {res.stderr} {_drain(proc)}")
            time.sleep(0.2)
    assert res.stdout.split() == ["200", STACK6]
    data = got.read_bytes()
    assert len(data) == len(body) and _sha(data) == _sha(body)


# -- 2. urllib under femtotcp run, by name through dnsmasq's AAAA --------------------------

FETCH = WAIT_GLOBAL6 + """
import hashlib, json, socket, sys, time, urllib.request
wait_global6(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 40
while True:
    try:
        with opener.open(sys.argv[1], timeout=60) as resp:
            peer = resp.fp.raw._sock.getpeername()
            status, data = resp.status, resp.read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
infos = socket.getaddrinfo(sys.argv[2], 80, type=socket.SOCK_STREAM)
print(json.dumps({"status": status, "len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "peer": list(peer), "families": [int(i[0]) for i in infos],
                  "addresses": [i[4][0] for i in infos],
                  "patched": type(socket.socket()).__module__}))
"""


def test_urllib_on_the_stack_fetches_by_name_through_dnsmasq_aaaa(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    """dnsmasq serves only an AAAA for web6.test on its IPv6 address; the
    program's ``--dns`` is that address: the query, the answer and the HTTP
    fetch all go over IPv6."""
    require_program("dnsmasq")
    require_program("ss")
    www = tmp_path / "kwww"
    www.mkdir()
    body = os.urandom(3 << 20)
    (www / "file.bin").write_bytes(body)
    script = tmp_path / "fetch.py"
    script.write_text(FETCH)
    logs: list[Path] = []

    def setup() -> None:
        logs.append(start_dnsmasq(ns, tmp_path, f"web6.test,{KERNEL6}"))
        kernel_http_server(ns, www, 8001)

    with femtotcp_run6(ns, "--dns", KERNEL6, str(script), "http://web6.test:8001/file.bin",
                       "web6.test", KERNEL6, setup=setup) as proc:
        result = finish(proc)
    assert result == {"status": 200, "len": len(body), "sha256": _sha(body),
                      "peer": [KERNEL6, 8001, 0, 0], "families": [int(socket.AF_INET6)],
                      "addresses": [KERNEL6], "patched": "femtotcp.api.socket"}
    log = logs[0].read_text()
    # The AAAA question came from the stack's IPv6 address (over IPv6).
    assert f"query[AAAA] web6.test from {STACK6}" in log, log


# -- 3. UDP6 echo with socat, both directions ----------------------------------------------

UDP_CLIENT = WAIT_GLOBAL6 + """
import json, random, socket, sys, time
wait_global6(sys.argv[1])
rnd = random.Random(61)
sizes = [1, 100, 1232, 1452, 3000, 8000]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((sys.argv[1], int(sys.argv[2])))
echoed = []
for i, size in enumerate(sizes):
    msg = i.to_bytes(2, "big") + rnd.randbytes(size - 2 if size > 2 else 0)
    msg = msg[:size]
    for attempt in range(20):       # UDP: resend until the echo comes back
        s.send(msg)
        try:
            while True:
                got = s.recv(65536)
                if got[:2] == msg[:2] or size == 1:
                    break
        except TimeoutError:
            continue
        break
    else:
        raise SystemExit(f"no echo for datagram {i} ({size} bytes)")
    echoed.append(got == msg)
# A closed port: the kernel's ICMPv6 port unreachable ends the next recv as on Linux.
r = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r.settimeout(5)
r.connect((sys.argv[1], 9))
r.send(b"anyone?")
try:
    r.recv(100)
    refused = False
except ConnectionRefusedError:
    refused = True
print(json.dumps({"echoed": echoed, "peer": list(s.getpeername()),
                  "local": s.getsockname()[0], "refused": refused}))
"""

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 9001))
print("READY", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
"""


def test_udp6_datagrams_to_a_socat_echo_on_the_kernel(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    """A program on the stack sends datagrams of 1 to 8000 bytes (fragmented
    both ways above the MTU) to ``socat UDP6-RECVFROM ... PIPE`` and gets each
    back byte-exact; its connected socket to a closed kernel port gets
    ECONNREFUSED from the kernel's ICMPv6 port unreachable."""
    require_program("socat")
    require_program("ss")
    script = tmp_path / "udp_client.py"
    script.write_text(UDP_CLIENT)

    def setup() -> None:
        ns.popen("socat", "UDP6-RECVFROM:9001,fork", "PIPE",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ns, 9001)

    with femtotcp_run6(ns, str(script), KERNEL6, "9001", setup=setup) as proc:
        result = finish(proc, 120)
    assert result == {"echoed": [True] * 6, "peer": [KERNEL6, 9001, 0, 0], "local": STACK6,
                      "refused": True}


def test_socat_udp6_client_through_an_echo_on_the_stack(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    """The reverse: an AF_INET6 datagram echo under ``femtotcp run``, the
    kernel's ``socat - UDP6:[...]`` sends and reads back 1, 1000 and 4000 bytes."""
    require_program("socat")
    script = tmp_path / "udp_echo.py"
    script.write_text(UDP_ECHO)
    with femtotcp_run6(ns, str(script), ready="READY"):
        for size in (1, 1000, 4000):
            payload = os.urandom(size)
            for _attempt in range(10):       # the stack's DAD or NDP may still be running
                res = ns.run("socat", "-t", "1", "-T", "3", "-", f"UDP6:[{STACK6}]:9001",
                             input=payload, text=False, check=False, timeout=30)
                if res.stdout:
                    break
            assert res.stdout == payload, (size, len(res.stdout), res.stderr)


# -- 4. 50 MB each way over IPv6 -----------------------------------------------------------

KERNEL_ECHO = """
import hashlib, socket, sys
lst = socket.create_server(("::", 7007), family=socket.AF_INET6)
conn, _ = lst.accept()
h = hashlib.sha256()
n = 0
while data := conn.recv(1 << 20):
    h.update(data)
    n += len(data)
    conn.sendall(data)
conn.shutdown(socket.SHUT_WR)
print(n, h.hexdigest(), flush=True)
"""

BULK_CLIENT = """
import hashlib, json, random, socket, sys, threading, time
nbytes = int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        s = socket.create_connection((sys.argv[1], 7007), timeout=300)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
sent = hashlib.sha256()

def send():
    rnd = random.Random(50)
    left = nbytes
    while left:
        chunk = rnd.randbytes(min(left, 1 << 20))
        sent.update(chunk)
        s.sendall(chunk)
        left -= len(chunk)
    s.shutdown(socket.SHUT_WR)

th = threading.Thread(target=send)
th.start()
got = hashlib.sha256()
n = 0
buf = bytearray(1 << 20)
while (k := s.recv_into(buf)):
    got.update(memoryview(buf)[:k])
    n += k
th.join()
print(json.dumps({"sent": sent.hexdigest(), "got": got.hexdigest(), "n": n,
                  "family": int(s.family), "peer": s.getpeername()[0]}))
"""


def _bulk_each_way(ns: Netns, tmp_path: Path, nbytes: int) -> None:
    """``nbytes`` from a program on the stack to a kernel echo on [::] and
    back; both ends hash what they got."""
    script = tmp_path / "bulk.py"
    script.write_text(BULK_CLIENT)
    echo = tmp_path / "kecho.py"
    echo.write_text(KERNEL_ECHO)
    servers: list[subprocess.Popen[str]] = []

    def setup() -> None:
        servers.append(ns.popen(sys.executable, str(echo), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
        wait_port(ns, 7007, "tcp")

    started = time.monotonic()
    with femtotcp_run6(ns, str(script), KERNEL6, str(nbytes), setup=setup) as proc:
        result = finish(proc, 600)
    print(f"{nbytes / 1e6:g} MB each way over IPv6 (program on the stack, kernel echo): "
          f"{time.monotonic() - started:.1f} s")
    kernel_out, kernel_err = servers[0].communicate(timeout=30)
    assert result["n"] == nbytes and result["got"] == result["sent"], result
    assert result["family"] == int(socket.AF_INET6) and result["peer"] == KERNEL6
    assert kernel_out.split() == [str(nbytes), result["sent"]], kernel_err


def test_50mb_each_way_over_ipv6_with_a_kernel_echo(ns: Netns, tmp_path: Path,
                                                    require_program: Callable[[str], str]
                                                    ) -> None:
    require_program("ss")
    _bulk_each_way(ns, tmp_path, 50_000_000)


# -- 5. create_connection to a dual-stack name whose IPv6 path is missing ------------------

CREATE_CONNECTION = WAIT_GLOBAL6 + """
import json, socket, sys, time
name, port = sys.argv[1], int(sys.argv[2])
wait_global6(sys.argv[3])
deadline = time.monotonic() + 30
while True:
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        s = socket.create_connection((name, port), timeout=20)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
with s:
    s.sendall(b"GET /hello.txt HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    print(json.dumps({"order": [i[4][0] for i in infos], "family": int(s.family),
                      "peer": s.getpeername()[0],
                      "body": reply.split(b"\\r\\n\\r\\n", 1)[1].decode()}))
"""


HAPPY_EYEBALLS = WAIT_GLOBAL6 + """
import asyncio, json, socket, sys, time
name, port = sys.argv[1], int(sys.argv[2])
wait_global6(sys.argv[3])

async def main():
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(name, port, happy_eyeballs_delay=0.3), 20)
    sock = writer.get_extra_info("socket")
    writer.write(b"GET /hello.txt HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
    reply = await reader.read()
    writer.close()
    print(json.dumps({"order": [i[4][0] for i in infos], "family": int(sock.family),
                      "peer": sock.getpeername()[0],
                      "body": reply.split(b"\\r\\n\\r\\n", 1)[1].decode()}))

asyncio.run(main())
"""


@pytest.mark.parametrize(("client", "missing"), [
    ("create_connection", "no-route"), ("create_connection", "kernel-unreachable"),
    ("happy_eyeballs", "kernel-unreachable"), ("happy_eyeballs", "kernel-blackhole")])
def test_dual_stack_clients_fall_back_to_ipv4_when_ipv6_is_unreachable(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str],
        client: str, missing: str) -> None:
    """dnsmasq answers both A (the kernel's 192.0.2.1) and AAAA (FAR6) for
    both.test. ``no-route``: the stack has an IPv6 address but no route to
    FAR6, so getaddrinfo puts the A first (RFC 6724 rule 1) and the connection
    is IPv4. With ``--gateway6`` the stack routes FAR6 via the kernel and the
    AAAA comes first: ``kernel-unreachable``, the kernel answers the SYN with
    ICMPv6 "no route", the connect fails at once and ``create_connection``
    (or asyncio) goes on to the A; ``kernel-blackhole``, the kernel drops the
    SYN silently and asyncio's ``happy_eyeballs_delay`` (RFC 8305) starts the
    IPv4 attempt, which wins."""
    require_program("dnsmasq")
    require_program("ss")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello over IPv4\n")
    script = tmp_path / "client.py"
    script.write_text(CREATE_CONNECTION if client == "create_connection" else HAPPY_EYEBALLS)
    extra: Sequence[str] = () if missing == "no-route" else ("--gateway6", KERNEL6)

    def setup() -> None:
        if missing != "no-route":
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            ns.ip("-6", "route", "add", missing.split("-")[1], "2001:db8:9::/64")
        start_dnsmasq(ns, tmp_path, f"both.test,{KERNEL4},{FAR6}")
        kernel_http_server(ns, www, 8002)

    with femtotcp_run6(ns, "--dns", KERNEL4, *extra, str(script), "both.test", "8002",
                       KERNEL6, setup=setup) as proc:
        result = finish(proc, 120)
    order = [KERNEL4, FAR6] if missing == "no-route" else [FAR6, KERNEL4]
    assert result == {"order": order, "family": int(socket.AF_INET), "peer": KERNEL4,
                      "body": "hello over IPv4\n"}


# -- 6. ctl resolve of an AAAA-only name ---------------------------------------------------

def test_ctl_resolve_prints_the_aaaa_dnsmasq_serves(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    require_program("dnsmasq")
    require_program("ss")
    from test_serve_ctl import Served, start_serve

    enable_ipv6(ns)
    control = str(tmp_path / "ctl.sock")
    proc, line = start_serve(ns, control, "--ipv6", f"{STACK6}/64", "--dns", KERNEL6)
    try:
        ns.ip("addr", "add", f"{KERNEL4}/24", "dev", TAP)
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        start_dnsmasq(ns, tmp_path, "six.test,2001:db8:1::66")
        served = Served(ns, proc, control, str(tmp_path), line)
        deadline = time.monotonic() + 20
        while True:      # until the stack's address has passed DAD
            doc = served.ctl("resolve", "six.test", check=False)
            if doc["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert doc["ok"], doc
        assert doc["result"]["addresses"] == ["2001:db8:1::66"], doc
        text = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                               "resolve", "six.test"], capture_output=True, text=True,
                              timeout=30)
        assert text.returncode == 0, text.stderr
        assert text.stdout == "six.test  2001:db8:1::66\n"
    finally:
        stop_process(proc)



# -- IPV6_UNICAST_HOPS and IPV6_TCLASS on TCP segments, TSO ones too -----------------------

def test_tcp_hops_and_class_reach_the_kernel_on_every_segment(
        ns: Netns, require_program: Callable[[str], str]) -> None:
    """A stack socket with IPV6_UNICAST_HOPS 33 and IPV6_TCLASS 0x28 (DSCP 10)
    sends 3 MB to a kernel listener over the offloading TAP: ip6tables in the
    namespace counts every TCP packet from the stack, and all had hop limit 33
    and DSCP 10; the stack sent TSO super-segments."""
    require_program("ip6tables")
    import threading

    from netns import entered
    from test_ipv6_kernel import ready, stack6

    from femtotcp.api.socket import network_for
    from femtotcp.wire import ip_bytes

    enable_ipv6(ns)
    rule = ["-p", "tcp", "-s", STACK6]
    ns.run("ip6tables", "-A", "INPUT", *rule, "-m", "hl", "--hl-eq", "33", "-m", "dscp",
           "--dscp", "0x0a", "-j", "ACCEPT")
    ns.run("ip6tables", "-A", "INPUT", *rule)      # counts whatever the first did not
    dev = kernel_tap(ns, TAP, f"{KERNEL6}/64")
    with entered(ns):
        lst = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lst.bind(("::", 0))
    lst.listen()
    lst.settimeout(30)
    got: list[int] = []

    def serve() -> None:
        conn, _ = lst.accept()
        with conn:
            n = 0
            while data := conn.recv(1 << 16):
                n += len(data)
            got.append(n)
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    with lst, stack6(dev, ip_bytes(STACK6)) as (rt, stack):
        assert rt.wait_until(ready(stack, ip_bytes(STACK6)), 10)
        sock = network_for(stack, rt).socket(socket.AF_INET6, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(30)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 33)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x28)
            sock.connect((KERNEL6, lst.getsockname()[1]))
            sock.sendall(os.urandom(3_000_000))
            sock.shutdown(socket.SHUT_WR)
            th.join(30)
        counters = rt.call(stack.counters.snapshot)
    assert got == [3_000_000]
    assert counters.get("ipv6.tx_tso", 0) > 0
    table = ns.run("ip6tables", "-L", "INPUT", "-v", "-n", "-x").stdout.splitlines()
    counts = [int(line.split()[0]) for line in table if STACK6 in line]
    assert counts[0] > 0 and counts[1] == 0, table
