"""IPv4 path MTU discovery against a Linux router (RFC 1191).

The stack (192.0.2.2) reaches a server namespace S (198.51.100.2) through a
router namespace R: R's side of the R-S link has MTU 1200, so R answers a
datagram bigger than that with DF set by Fragmentation Needed (MTU 1200), as
any Linux router does. S's own side stays at 1500: its MSS offer does not hide
the smaller hop, so TCP must discover it as UDP must."""

from __future__ import annotations

import errno
import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from netns import Netns, kernel_tap, netns
from stackrig import chunks, running_stack

from femtotcp.runtime import Runtime
from femtotcp.stack import Stack
from femtotcp.wire import ip_bytes

STACK = "192.0.2.2"
SERVER = "198.51.100.2"
SINK_PORT = 9000
UDP_PORT = 9001

#: S: a TCP sink that answers with the SHA-256 of all it read, and a UDP
#: service that answers each datagram with its length (small: S's replies
#: must cross the 1200-byte hop too).
_SERVER = rf"""
import hashlib, socket, threading
def tcp():
    s = socket.create_server(("0.0.0.0", {SINK_PORT}))
    while True:
        c, _ = s.accept()
        h = hashlib.sha256()
        while (b := c.recv(65536)):
            h.update(b)
        c.sendall(h.hexdigest().encode())
        c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", {UDP_PORT}))
    while True:
        data, peer = u.recvfrom(65536)
        u.sendto(str(len(data)).encode(), peer)
threading.Thread(target=tcp, daemon=True).start()
udp()
"""


@pytest.fixture
def routed(ns: Netns) -> Iterator[tuple[Runtime, Stack, Netns]]:
    """The stack on a TAP into R (``ns``), S behind R's 1200-byte hop."""
    with netns("ftpmtus") as s:
        ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        tap = kernel_tap(ns, "ftpmtu0", "192.0.2.1/24")
        ns.ip("link", "add", "r0", "type", "veth", "peer", "name", "s0", "netns", s.name)
        ns.ip("addr", "add", "198.51.100.1/24", "dev", "r0")
        ns.ip("link", "set", "r0", "mtu", "1200", "up")
        s.ip("addr", "add", f"{SERVER}/24", "dev", "s0")
        s.ip("link", "set", "s0", "up")
        s.ip("route", "add", "default", "via", "198.51.100.1")
        server = s.popen("python3", "-c", _SERVER)
        with running_stack(tap, "pmtu", f"{STACK}/24") as (rt, stack):
            rt.call(lambda: stack.add_route("0.0.0.0/0", gateway="192.0.2.1"))
            wait_port(s, SINK_PORT)
            yield rt, stack, s
        server.kill()


def wait_port(s: Netns, port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while f":{port} " not in s.run("ss", "-lnt", check=False).stdout:
        assert time.monotonic() < end, f"port {port} never listened"
        time.sleep(0.05)


def test_udp_learns_the_path_mtu_from_a_linux_router(
        routed: tuple[Runtime, Stack, Netns]) -> None:
    """A 1400-byte datagram goes with DF (IP_PMTUDISC_WANT); the router's
    Fragmentation Needed makes the connected socket's next operation EMSGSIZE
    and sets the path MTU to 1200; the same datagram then goes in fragments
    and arrives whole."""
    rt, stack, _ = routed
    assert stack.udp is not None
    got: list[bytes] = []
    ep = rt.call(lambda: stack.udp.open(port=40000))
    ep.on_readable = lambda: got.extend(d[0] for d in iter(ep.recv, None))
    rt.call(lambda: ep.connect(ip_bytes(SERVER), UDP_PORT))
    assert rt.call(lambda: ep.send(bytes(1400))) == 0
    end = time.monotonic() + 10
    while rt.call(lambda: stack.route_mtu(ip_bytes(SERVER))) != 1200:
        assert time.monotonic() < end, "no Fragmentation Needed came back"
        time.sleep(0.05)
    assert rt.call(ep.take_error) == errno.EMSGSIZE
    assert not got                                  # the first one was not delivered
    assert rt.call(lambda: ep.send(bytes(1400))) == 0
    end = time.monotonic() + 10
    while not got:
        assert time.monotonic() < end, "the fragmented datagram got no answer"
        time.sleep(0.05)
    assert got == [b"1400"]
    assert rt.call(lambda: stack.counters["ipv4.tx_fragments"]) >= 2


def test_tcp_learns_the_path_mtu_from_a_linux_router(
        routed: tuple[Runtime, Stack, Netns]) -> None:
    """S offers MSS 1460 but a hop carries 1200: the stack's full-size
    segments (DF) earn Fragmentation Needed, its MSS falls to 1160, and 2 MB
    arrive byte-exact; the route keeps the path MTU for the next connection."""
    rt, stack, _ = routed
    from femtotcp.api import Network
    from femtotcp.api.socket import socket as stack_socket
    net = Network(stack, rt)
    sock = stack_socket(socket.AF_INET, socket.SOCK_STREAM, network=net)
    sock.settimeout(60)
    sock.connect((SERVER, SINK_PORT))
    sent = hashlib.sha256()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for chunk in chunks(2_000_000, 7, 1 << 16):
                sent.update(chunk)
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    th = threading.Thread(target=send, daemon=True)
    th.start()
    answer = b""
    while (b := sock.recv(128)):
        answer += b
    th.join(30)
    sock.close()
    assert not errors, errors
    assert answer.decode() == sent.hexdigest()
    assert rt.call(lambda: stack.route_mtu(ip_bytes(SERVER))) == 1200
    assert rt.call(lambda: stack.counters["tcp.pmtu_reduced"]) >= 1
