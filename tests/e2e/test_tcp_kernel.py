"""TCP against the Linux kernel over TAP, each test in its own namespace.

The kernel side is 192.0.2.1/24 and the stack, on a real-time Runtime in its
own thread, 192.0.2.2/24. The kernel connects to the stack's echo service with
socat and with Python's socket module; the stack connects to kernel listeners;
50 MB go each way byte-exact, also through netem loss and reordering.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from netns import Netns, add_netem, entered, kernel_tap
from stackrig import chunks, kernel_echo_roundtrip, running_stack
from waits import wait_until

from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime
from femtotcp.services import tcp_echo
from femtotcp.stack import Stack
from femtotcp.wire import ip_bytes

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
STACK_MAC = "02:00:00:00:00:02"


@dataclass
class Rig:
    ns: Netns
    rt: Runtime
    stack: Stack
    tap: TapDevice

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.rt.call(fn, *args)

    def assert_healthy(self) -> None:
        counters = self.call(self.stack.counters.snapshot)
        assert counters.get("stack.internal_error", 0) == 0, counters


@pytest.fixture
def rig(ns: Netns) -> Iterator[Rig]:
    tap = kernel_tap(ns, "ftap0", f"{KERNEL}/24")
    with running_stack(tap, "e2e-tcp", f"{STACK}/24", STACK_MAC) as (rt, stack):
        yield Rig(ns, rt, stack, tap)


# -- the kernel connects ---------------------------------------------------------------

def test_socat_to_stack_echo(rig: Rig, require_program: Callable[[str], str]) -> None:
    require_program("socat")
    echo = rig.call(tcp_echo.start, rig.stack, 7)
    data = random.Random(1).randbytes(300_000)
    res = rig.ns.run("socat", "-t", "20", "-", f"TCP:{STACK}:7", input=data, text=False,
                     timeout=60)
    assert res.stdout == data
    assert rig.call(lambda: echo.echoed) == len(data)
    wait_until(lambda: rig.call(lambda: not echo.connections), 10,
               "the echo service to close its connection")
    rig.assert_healthy()


def test_python_socket_to_stack_echo(rig: Rig) -> None:
    rig.call(tcp_echo.start, rig.stack, 7)
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 5_000_000, 7)
    assert n == 5_000_000 and got == sent
    # The kernel and the stack agreed on every option.
    rig.assert_healthy()


def test_kernel_sees_connection_refused(rig: Rig) -> None:
    with entered(rig.ns), pytest.raises(ConnectionRefusedError):
        socket.create_connection((STACK, 4444), timeout=10)


def test_options_negotiated_with_the_kernel(rig: Rig,
                                           require_program: Callable[[str], str]) -> None:
    require_program("ss")
    rig.call(tcp_echo.start, rig.stack, 7)
    with entered(rig.ns):
        sock = socket.create_connection((STACK, 7), timeout=10)
    sock.sendall(b"hi")
    assert sock.recv(10) == b"hi"
    conns = rig.call(rig.stack.tcp.connections)
    (conn,) = conns
    info = rig.call(conn.info)
    assert info["timestamps"] and info["sack"]
    # The window scales the kernel itself reports for this connection (ss: "wscale:
    # SND,RCV"): the shift it announced is the stack's send scale, and the shift
    # the stack announced is the kernel's send scale.
    port = sock.getsockname()[1]
    ss = rig.ns.run("ss", "-tni", "state", "established", f"( sport = :{port} )").stdout
    found = re.findall(r"wscale:(\d+),(\d+)", ss)
    assert len(found) == 1, ss
    kernel_snd, kernel_rcv = map(int, found[0])
    assert info["snd_wscale"] == kernel_rcv and info["rcv_wscale"] == kernel_snd, (info, ss)
    assert kernel_rcv > 0                  # the kernel's buffers need a scaled window
    assert info["mss"] == 1448
    sock.close()


def test_kernel_reuses_a_tuple_the_stack_keeps_in_time_wait(rig: Rig) -> None:
    """The stack closes first and keeps TIME-WAIT, as a compact record; the
    kernel connects again from the same port at once, and its SYN (a later
    ISN and timestamp) reuses the 4-tuple (RFC 6191, Linux's rule): the
    second connection works and the record ends as ``tcp.time_wait_reused``."""
    def serve() -> None:
        lst = rig.stack.tcp.listen(bytes(4), 9)

        def ev() -> None:
            while (conn := lst.accept()) is not None:
                conn.send(b"bye")
                conn.close()
        lst.on_event = ev
    rig.call(serve)

    def states() -> list[tuple[str, str]]:
        return [(c.state_name, type(c).__name__) for c in rig.stack.tcp.connections()]
    for attempt in range(2):
        with entered(rig.ns):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((KERNEL, 45678))
            sock.settimeout(10)
            sock.connect((STACK, 9))
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        sock.close()
        assert got == b"bye"
        wait_until(lambda: rig.call(states) == [("TIME_WAIT", "TimeWait")], 10,
                   "the stack to keep TIME-WAIT for the connection")
        counters = rig.call(rig.stack.counters.snapshot)
        assert counters.get("tcp.time_wait_reused", 0) == attempt
    assert counters.get("tcp.time_wait_done", 0) == 0
    rig.assert_healthy()


# -- the stack connects ----------------------------------------------------------------

class StackClient:
    """A connection the stack opens, pumped from its on_event in the loop thread."""

    def __init__(self, rig: Rig, port: int, data_chunks: Iterator[bytes]) -> None:
        self.rig = rig
        self.chunks = data_chunks
        self.pending = b""
        self.received = hashlib.sha256()
        self.nreceived = 0
        self.head = bytearray()           # the first bytes received, kept as they came
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.sent = hashlib.sha256()

        def start() -> None:
            # In the loop thread: the handshake cannot finish before this returns.
            self.conn = rig.stack.tcp.connect(ip_bytes(KERNEL), port)
            self.conn.on_event = self.event

        rig.call(start)

    def event(self) -> None:
        conn = self.conn
        try:
            while True:
                if not self.pending:
                    chunk = next(self.chunks, None)
                    if chunk is None:
                        if not conn.wr_shut and conn.state in ("ESTABLISHED", "CLOSE_WAIT"):
                            conn.shutdown(socket.SHUT_WR)
                        break
                    self.sent.update(chunk)
                    self.pending = chunk
                if conn.state not in ("ESTABLISHED", "CLOSE_WAIT"):
                    break
                n = conn.send(self.pending)
                if n == 0:
                    break
                self.pending = self.pending[n:]
            while True:
                data = conn.recv(1 << 20)
                if data is None:
                    break
                if data == b"":
                    self.done.set()
                    break
                self.received.update(data)
                self.nreceived += len(data)
                if len(self.head) < 4096:
                    self.head += data[:4096 - len(self.head)]
        except OSError as exc:
            self.error = exc
            self.done.set()


def test_stack_connects_to_python_listener(rig: Rig) -> None:
    with entered(rig.ns):
        lst = socket.create_server((KERNEL, 5001))
    result: dict[str, Any] = {}

    def server() -> None:
        conn, _ = lst.accept()
        h = hashlib.sha256()
        n = 0
        while (d := conn.recv(1 << 20)):
            h.update(d)
            n += len(d)
        conn.sendall(f"{n} {h.hexdigest()}".encode())
        conn.close()
        result["n"] = n

    th = threading.Thread(target=server, daemon=True)
    th.start()
    client = StackClient(rig, 5001, chunks(3_000_000, 3))
    assert client.done.wait(60), rig.call(client.conn.info)
    th.join(10)
    lst.close()
    assert client.error is None
    assert result["n"] == 3_000_000
    # The reply names what the kernel received: it must match what we sent.
    reply = rig.call(lambda: bytes(client.head))
    assert reply.decode() == f"3000000 {client.sent.hexdigest()}"
    rig.assert_healthy()


def test_stack_connects_to_socat_echo(rig: Rig, require_program: Callable[[str], str]) -> None:
    require_program("socat")
    proc = rig.ns.popen("socat", f"TCP-LISTEN:5002,bind={KERNEL},reuseaddr", "EXEC:cat",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if f"{KERNEL}:5002" in rig.ns.run("ss", "-ltn").stdout:
            break
        time.sleep(0.05)
    client = StackClient(rig, 5002, chunks(1_000_000, 4))
    assert client.done.wait(60), rig.call(client.conn.info)
    assert client.error is None
    assert client.nreceived == 1_000_000
    assert client.received.hexdigest() == client.sent.hexdigest()
    proc.wait(10)
    rig.assert_healthy()


def test_stack_connect_refused_by_kernel(rig: Rig) -> None:
    done = threading.Event()

    def start() -> Any:
        conn = rig.stack.tcp.connect(ip_bytes(KERNEL), 4999)
        conn.on_event = done.set
        return conn

    conn = rig.call(start)
    assert done.wait(10)
    assert rig.call(lambda: conn.state) == "CLOSED"
    with pytest.raises(ConnectionRefusedError):
        rig.call(conn.recv, 10)


# -- bulk, clean and through netem -------------------------------------------------------

def test_50mb_each_way(rig: Rig) -> None:
    """50 MB from the kernel to the stack and the same 50 MB back (echo)."""
    rig.call(tcp_echo.start, rig.stack, 7)
    started = time.monotonic()
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 50_000_000, 7, timeout=120)
    wall = time.monotonic() - started
    assert n == 50_000_000 and got == sent
    print(f"50 MB each way (echo) over TAP: {wall:.1f} s")
    rig.assert_healthy()


def test_receive_buffer_grows_for_a_fast_reader(rig: Rig) -> None:
    """The kernel sends 40 MB to the stack's discard service, which reads at
    once: autotuning grows the connection's receive buffer past the default
    (and the window the kernel is offered), bounded by ``rcvbuf_max``."""
    from femtotcp.services import discard
    rig.call(discard.start, rig.stack, 9)
    cfg = rig.stack.tcp.config
    with entered(rig.ns):
        c = socket.create_connection((STACK, 9), timeout=30)
    local = c.getsockname()[1]

    def ours() -> Any:
        for conn in rig.stack.tcp.connections():
            if conn.remote[1] == local:
                return conn.rcvbuf
        return None

    try:
        for block in chunks(40_000_000, 5):
            c.sendall(block)
        # The stack took every byte (the kernel's send queue drains).
        wait_until(lambda: _unsent(rig, local) == 0, 30, "the kernel's send queue to drain")
        grown = rig.call(ours)
    finally:
        c.close()
    assert grown is not None and cfg.rcvbuf < grown <= cfg.rcvbuf_max
    assert rig.call(lambda: rig.stack.counters["tcp.rcvbuf_grown"]) >= 1
    rig.assert_healthy()


def _unsent(rig: Rig, port: int) -> int:
    """The kernel's send queue (bytes not yet ACKed) of its connection from ``port``."""
    out = rig.ns.run("ss", "-tnH", "state", "established", f"sport = :{port}").stdout
    fields = out.split()
    return int(fields[1]) if len(fields) > 1 else 0


def test_50mb_each_way_through_netem(rig: Rig) -> None:
    """The same through `tc qdisc ... netem loss 3% reorder 5% delay 1ms` on the
    kernel's side: the stack's receiver and its sender both see loss (data one
    way, ACKs the other) and reordering. A kernel without netem skips this (fails
    under CI=true); the FaultyDevice test below runs everywhere."""
    add_netem(rig.ns, rig.tap.name, "loss", "3%", "reorder", "5%", "delay", "1ms")
    _impaired_echo(rig, "tc netem")


def test_50mb_each_way_through_faulty_device(rig: Rig) -> None:
    """The same impairment (3% loss, 5% reordering, 1 ms delay) applied to the
    frames the kernel sends by a FaultyDevice between the TAP and the stack: the
    stack's receiver sees the loss and reordering, the kernel's sender recovers."""
    rig.call(_impair_inbound, rig)
    _impaired_echo(rig, "FaultyDevice")


def _impaired_echo(rig: Rig, how: str) -> None:
    rig.call(tcp_echo.start, rig.stack, 7)
    started = time.monotonic()
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 50_000_000, 7, timeout=240)
    wall = time.monotonic() - started
    assert n == 50_000_000 and got == sent
    counters = rig.call(rig.stack.counters.snapshot)
    assert counters.get("tcp.ooo_segments", 0) > 100          # loss and reordering seen
    print(f"50 MB each way (echo) through {how}: {wall:.1f} s; "
          f"ooo {counters.get('tcp.ooo_segments')}, "
          f"fast retransmits {counters.get('tcp.fast_retransmit', 0)}")
    rig.assert_healthy()


def _impair_inbound(rig: Rig) -> None:
    """Loop thread: put a FaultyDevice (3% loss, 5% reordering, 1 ms delay on what
    the kernel sends) between the TAP and the stack's interface."""
    from femtotcp.phy.faulty import FaultyDevice

    iface = rig.stack.interfaces[0]
    faulty = FaultyDevice(rig.tap, rig.rt, loss=0.03, reorder=0.05, delay=0.001, seed=50,
                          outbound=False)
    faulty.set_receiver(lambda frame, _i=iface: rig.stack.receive(_i, frame))
    iface.device = faulty


# -- teardown segments -----------------------------------------------------------------

def _stack_segments(sniffer: socket.socket) -> list[tuple[int, bytes]]:
    """(flags, payload) of the TCP segments the stack sent that ``sniffer``
    (AF_PACKET on the kernel's TAP) holds."""
    out: list[tuple[int, bytes]] = []
    sniffer.setblocking(False)
    stack_ip = ip_bytes(STACK)
    while True:
        try:
            frame = sniffer.recv(70000)
        except BlockingIOError:
            return out
        if frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[26:30] != stack_ip:
            continue
        ihl = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        seg = frame[14 + ihl:14 + total]
        doff = (seg[12] >> 4) * 4
        out.append((seg[13], bytes(seg[doff:])))


def test_answer_then_close_sends_data_and_fin_in_one_segment(rig: Rig) -> None:
    """An HTTP-like exchange with a stack program (the api's socket, the
    pump): the kernel sends a request, the program writes its answer and
    closes before the stack got to send it; the answer arrives byte-exact, and
    its last segment carries the FIN (no FIN of its own), as Linux's
    tcp_send_fin does with unsent data."""
    from femtotcp.api.network import network_for

    net = network_for(rig.stack, rig.rt)
    server = net.create_server((STACK, 8080))
    server.settimeout(10)
    request = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 500\r\n\r\n" + bytes(range(250)) * 2
    with entered(rig.ns):
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sniffer.bind(("ftap0", 0))
        client = socket.create_connection((STACK, 8080), timeout=10)
    try:
        client.sendall(request)
        conn, _ = server.accept()
        conn.settimeout(10)
        got = b""
        while not got.endswith(b"\r\n\r\n"):
            chunk = conn.recv(1000)
            assert chunk
            got += chunk
        assert got == request
        # Hold the stack's loop while the program writes and closes, so both
        # are in the socket pair when the stack looks (as a program that
        # outruns the stack thread finds them).
        inside, release = threading.Event(), threading.Event()

        def hold() -> None:
            inside.set()
            release.wait(10)
        holder = threading.Thread(target=rig.call, args=(hold,))
        holder.start()
        assert inside.wait(10)
        try:
            conn.sendall(answer)
            conn.close()
        finally:
            release.set()
            holder.join(10)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        assert received == answer
    finally:
        client.close()
        server.close()
    time.sleep(0.2)
    segs = [s for s in _stack_segments(sniffer) if s[1] or s[0] & 0x01]
    sniffer.close()
    data = b"".join(p for _, p in segs)
    assert data == answer
    assert segs[-1][0] & 0x01 and segs[-1][1], f"the FIN rode alone: {segs[-3:]}"
    assert sum(1 for f, _ in segs if f & 0x01) == 1
    rig.assert_healthy()
