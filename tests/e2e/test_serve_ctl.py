"""``femtotcp serve`` as a daemon, driven with ``femtotcp ctl`` against the kernel.

Each test starts ``python -m femtotcp serve --tap ftap0 --ip 192.0.2.2/24`` inside
its own namespace (the TAP is created there), gives the kernel side 192.0.2.1/24
once the TAP exists, and checks what ``femtotcp ctl --json`` reports against
what the kernel sees: its MAC in ``neigh``, its TCP connection in ``sockets``,
the bad frames it wrote in ``stats``, a capture tshark reads.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest
from netns import Netns, entered, skip_or_fail, stop_process

from femtotcp.stack import modules as modreg

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
STACK_MAC = "02:00:00:00:00:02"
TAP = "ftap0"


def tcp_ready() -> bool:
    """TCP and the tcp echo service are in this build."""
    import importlib.util
    return modreg.available("tcp") and importlib.util.find_spec(
        "femtotcp.services.tcp_echo") is not None


@dataclass
class Served:
    ns: Netns
    proc: subprocess.Popen[str]
    control: str
    dir: str
    banner: str
    stderr_lines: list[str] = field(default_factory=list)

    def ctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """``femtotcp ctl --control PATH --json ARGS`` -> the reply document."""
        res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control",
                              self.control, "--json", *args], capture_output=True,
                             text=True, timeout=timeout)
        doc = json.loads(res.stdout)
        assert isinstance(doc, dict) and doc["femtotcp_ctl"] == 1, res.stdout
        if check:
            assert res.returncode == 0 and doc["ok"], (res.stdout, res.stderr)
        return doc

    def result(self, *args: str) -> dict[str, Any]:
        return dict(self.ctl(*args)["result"])

    def kernel_mac(self) -> str:
        links = json.loads(self.ns.ip("-j", "link", "show", TAP).stdout)
        return str(links[0]["address"]).lower()

    def kernel_ping(self, count: int = 2) -> None:
        self.ns.run("ping", "-c", str(count), "-i", "0.2", "-W", "2", STACK)


def start_serve(ns: Netns, control: str, *extra: str,
                tap: str = TAP) -> tuple[subprocess.Popen[str], str]:
    """Start serve in ``ns`` and return it with its one start-up line."""
    proc: subprocess.Popen[str] = ns.popen(
        sys.executable, "-m", "femtotcp", "serve", "--tap", tap, "--ip", f"{STACK}/24",
        "--mac", STACK_MAC, "--gateway", KERNEL, "--control", control, *extra,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("femtotcp: serving on"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"serve did not start: {line!r} {err}")
    return proc, line


@pytest.fixture
def served(ns: Netns, require_program: Callable[[str], str]) -> Iterator[Served]:
    require_program("ping")
    d = tempfile.mkdtemp(prefix="ftserve")
    control = os.path.join(d, "run", "ctl.sock")
    extra = ["--udp-echo", "7"]
    if tcp_ready():
        extra += ["--tcp-echo", "7"]
    proc, line = start_serve(ns, control, *extra)
    try:
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        yield Served(ns, proc, control, d, line)
    finally:
        stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


def test_neigh_addr_route_and_ping(served: Served) -> None:
    assert f"control {served.control}" in served.banner
    assert STACK_MAC in served.banner and f"{STACK}/24" in served.banner
    served.kernel_ping(2)
    kmac = served.kernel_mac()
    neigh = served.result("neigh")["neighbours"]
    mine = [n for n in neigh if n["address"] == KERNEL]
    assert len(mine) == 1, neigh
    assert mine[0]["mac"] == kmac
    assert mine[0]["state"] == "REACHABLE"
    assert mine[0]["interface"] == TAP

    iface = served.result("addr")["interfaces"][0]
    assert (iface["name"], iface["mac"], iface["mtu"]) == (TAP, STACK_MAC, 1500)
    assert iface["addresses"] == [{"address": STACK, "prefixlen": 24, "origin": "static",
                                   "tentative": False, "broadcast": "192.0.2.255"}]
    assert iface["dhcp"] is None

    routes = served.result("route")["routes"]
    assert {"destination": "192.0.2.0/24", "gateway": None, "interface": TAP,
            "origin": "connected"} in routes
    assert {"destination": "0.0.0.0/0", "gateway": KERNEL, "interface": TAP,
            "origin": "static"} in routes

    ping = served.result("ping", KERNEL, "-c", "3", "-i", "0.2")
    assert (ping["transmitted"], ping["received"], ping["loss_percent"]) == (3, 3, 0.0)
    assert [r["seq"] for r in ping["replies"]] == [1, 2, 3]
    assert all(r["from"] == KERNEL and r["ttl"] == 64 for r in ping["replies"])

    stats = served.result("stats")
    assert stats["counters"]["icmp4.echo_replied"] == 2
    assert stats["counters"]["arp.rx"] >= 1
    assert stats["counters"].get("stack.internal_error", 0) == 0
    assert stats["reassembly"] == {"datagrams": 0, "bytes": 0}

    udp = [s for s in served.result("sockets")["sockets"] if s["proto"] == "udp"]
    assert {"proto": "udp", "state": "UNCONN", "local_address": "0.0.0.0", "local_port": 7,
            "peer_address": None, "peer_port": None, "recv_q": 0, "send_q": 0,
            "queued_datagrams": 0} in udp

    doc = served.ctl("resolve", "example.test", check=False)
    assert not doc["ok"] and doc["error"]["code"] == "unavailable"

    # The table for people, too.
    res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control",
                          served.control, "neigh"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and kmac in res.stdout and "REACHABLE" in res.stdout


_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=10)
s.sendall(b"hello femtotcp\n")
got = b""
while len(got) < 15:
    chunk = s.recv(100)
    if not chunk:
        break
    got += chunk
print(s.getsockname()[1], got == b"hello femtotcp\n", flush=True)
sys.stdin.read()
s.close()
"""


def test_sockets_lists_a_kernel_tcp_connection(served: Served) -> None:
    if not tcp_ready():
        skip_or_fail("TCP (proto/tcp and services/tcp_echo) is not in this build", "tcp")
    client = served.ns.popen(sys.executable, "-c", _CLIENT, STACK,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdin is not None
    ready, _, _ = select.select([client.stdout], [], [], 20.0)
    assert ready, "the TCP client got no echo"
    port_text, echoed = client.stdout.readline().split()
    assert echoed == "True"
    port = int(port_text)
    try:
        rows = [s for s in served.result("sockets")["sockets"] if s["proto"] == "tcp"]
        listen = [r for r in rows if r["state"] == "LISTEN" and r["local_port"] == 7]
        assert len(listen) == 1, rows
        est = [r for r in rows if r["state"] == "ESTABLISHED"]
        assert len(est) == 1, rows
        conn = est[0]
        assert (conn["local_address"], conn["local_port"]) == (STACK, 7)
        assert (conn["peer_address"], conn["peer_port"]) == (KERNEL, port)
        assert conn["rto_ms"] is not None and conn["rto_ms"] > 0
        assert conn["cwnd"] is not None and conn["cwnd"] > 0
        tcp = served.result("stats")["tcp"]
        assert tcp["listeners"] >= 1 and tcp["connections"] >= 1
        assert tcp["states"].get("ESTABLISHED") == 1
    finally:
        client.stdin.close()
        client.wait(10)


_WAIT_FOR_CLOSE = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=10)
s.sendall(b"x")
assert s.recv(1) == b"x"
print("ready", flush=True)
s.settimeout(15)
try:
    print("FIN" if s.recv(100) == b"" else "DATA", flush=True)
except ConnectionResetError:
    print("RST", flush=True)
"""


def test_sigterm_closes_tcp_connections_with_fin(served: Served) -> None:
    if not tcp_ready():
        skip_or_fail("TCP (proto/tcp and services/tcp_echo) is not in this build", "tcp")
    client = served.ns.popen(sys.executable, "-c", _WAIT_FOR_CLOSE, STACK,
                             stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    ready, _, _ = select.select([client.stdout], [], [], 20.0)
    assert ready and client.stdout.readline().strip() == "ready"
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0
    assert client.stdout.readline().strip() == "FIN"
    assert not os.path.exists(served.control)


def _bad_frames(scapy: ModuleType, kmac: str) -> dict[str, list[bytes]]:
    """Frames with one defect each, built by scapy (an independent encoder)."""
    ICMP, IP, UDP, ARP, Ether = scapy.ICMP, scapy.IP, scapy.UDP, scapy.ARP, scapy.Ether

    eth = Ether(dst=STACK_MAC, src=kmac)
    ip = IP(src=KERNEL, dst=STACK)
    return {
        "ipv4.bad_checksum": [bytes(eth / IP(src=KERNEL, dst=STACK, chksum=0xDEAD)
                                    / UDP(dport=7) / b"x")] * 3,
        "udp.bad_checksum": [bytes(eth / ip / UDP(dport=7, chksum=0xBEEF) / b"hello")] * 2,
        "udp.bad_length": [bytes(eth / ip / UDP(dport=7, len=200) / b"short")],
        "icmp4.bad_checksum": [bytes(eth / ip / ICMP(chksum=0x0001) / b"ping")],
        "arp.bad_opcode": [bytes(Ether(dst=STACK_MAC, src=kmac)
                                 / ARP(op=9, hwsrc=kmac, psrc=KERNEL, pdst=STACK))],
    }


def test_stats_counts_bad_frames_by_reason(served: Served, scapy: ModuleType) -> None:
    served.kernel_ping(1)
    kmac = served.kernel_mac()
    frames = _bad_frames(scapy, kmac)
    before = served.result("stats")["counters"]
    with entered(served.ns):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        raw.bind((TAP, 0))
        for batch in frames.values():
            for f in batch:
                raw.send(f)
    finally:
        raw.close()
    want = {reason: len(batch) for reason, batch in frames.items()}
    deadline = time.monotonic() + 10
    while True:
        stats = served.result("stats")
        got = {r: stats["counters"].get(r, 0) - before.get(r, 0) for r in want}
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == want, stats["counters"]
    for reason, n in want.items():
        assert stats["drops"][reason] == before.get(reason, 0) + n
    assert stats["counters"].get("stack.internal_error", 0) == 0
    served.kernel_ping(1)   # still answering


def _raw_request(path: str, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    doc = json.loads(buf.split(b"\n", 1)[0])
    assert isinstance(doc, dict)
    return doc


def test_garbage_on_the_control_socket(served: Served) -> None:
    assert oct(os.stat(served.control).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(served.control)).st_mode & 0o777) == "0o700"
    cases = [
        (os.urandom(300).replace(b"\n", b"") + b"\n", "bad_request"),
        (b'{"command": "shutdown"}\n', "unknown_command"),
        (b'{"command": "ping", "args": {"host": "192.0.2.1", "count": -1}}\n',
         "bad_request"),
        (b"[" * 100000, "too_large"),
        (b"{" + b" " * 200000 + b"}\n", "too_large"),
    ]
    for data, code in cases:
        doc = _raw_request(served.control, data)
        assert doc["ok"] is False and doc["error"]["code"] == code, (data[:40], doc)
    served.kernel_ping(2)
    stats = served.result("stats")
    assert stats["counters"]["icmp4.echo_replied"] == 2
    assert served.proc.poll() is None


def test_capture_through_ctl_is_read_by_tshark(served: Served,
                                               require_program: Callable[[str], str]) -> None:
    tshark = require_program("tshark")
    pcap = os.path.join(served.dir, "ctl.pcap")
    r = served.result("capture", "start", pcap)
    assert r == {"capturing": True, "path": pcap, "packets": 0}
    served.kernel_ping(2)
    r = served.result("capture", "stop")
    assert r["capturing"] is False and r["path"] == pcap and r["packets"] >= 4
    served.kernel_ping(1)     # after stop: not in the file
    out = subprocess.run([tshark, "-r", pcap, "-T", "fields", "-e", "icmp.type",
                          "-e", "ip.src", "-Y", "icmp"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln.split() for ln in out.stdout.splitlines() if ln.strip()]
    assert lines.count(["8", KERNEL]) == 2 and lines.count(["0", STACK]) == 2, lines


def test_one_serve_per_path_and_sigterm_cleans_up(served: Served) -> None:
    # A second serve on the same control path fails at once, saying why.
    other_dev = "ftap1"
    res = served.ns.run(sys.executable, "-m", "femtotcp", "serve", "--tap", other_dev,
                        "--ip", "192.0.2.3/24", "--control", served.control, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"femtotcp serve: error: another femtotcp serve is "
                                  f"already running with control socket {served.control}")
    # ... and one on the same interface as well.
    res = served.ns.run(sys.executable, "-m", "femtotcp", "serve", "--tap", TAP,
                        "--ip", "192.0.2.3/24", "--control",
                        os.path.join(served.dir, "second.sock"), check=False)
    assert res.returncode == 1 and TAP in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(served.dir, "second.sock"))
    served.kernel_ping(1)
    # SIGTERM: exit 0 and the control socket is gone.
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0
    assert not os.path.exists(served.control)
    res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control",
                          served.control, "stats"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1 and "no control socket" in res.stderr


def test_a_stale_socket_is_replaced(ns: Netns) -> None:
    d = tempfile.mkdtemp(prefix="ftserve")
    try:
        control = os.path.join(d, "ctl.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(control)     # what a killed serve leaves behind
        s.close()
        proc, line = start_serve(ns, control)
        try:
            assert f"control {control}" in line
            res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control",
                                  control, "--json", "route"], capture_output=True,
                                 text=True, timeout=30)
            assert res.returncode == 0 and json.loads(res.stdout)["ok"]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        assert not os.path.exists(control)
    finally:
        shutil.rmtree(d, ignore_errors=True)
