"""TCP sockets between two stacks in memory: the stdlib's behaviour and errors."""

from __future__ import annotations

import errno
import gc
import os
import select
import selectors
import socket as std
import struct
import threading
import time

import pytest
from apilan import Lan
from waits import wait_until

from femtotcp.api import socket as fsock


def _server(net: fsock.Network, port: int = 0, backlog: int = 16) -> fsock.socket:
    s = net.socket()
    s.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.listen(backlog)
    return s


def _echo_once(listener: fsock.socket) -> threading.Thread:
    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_connect_send_recv_large_and_makefile(lan: Lan) -> None:
    with _server(lan.net_b, 8000) as srv:
        assert srv.getsockname() == ("0.0.0.0", 8000)
        t = _echo_once(srv)
        with lan.net_a.create_connection((lan.ip_b, 8000), timeout=10) as c:
            assert c.getpeername() == (lan.ip_b, 8000)
            assert c.getsockname()[0] == lan.ip_a
            payload = os.urandom(1 << 20)
            got = bytearray()

            def reader() -> None:
                while len(got) < len(payload):
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got.extend(chunk)

            r = threading.Thread(target=reader)
            r.start()
            c.sendall(payload)
            r.join(30)
            assert bytes(got) == payload
            f = c.makefile("rwb")
            f.write(b"line one\nline two\n")
            f.flush()
            assert f.readline() == b"line one\n"
            assert f.readline() == b"line two\n"
            f.close()
            c.shutdown(std.SHUT_WR)
            assert c.recv(10) == b""        # the echo server saw EOF and closed
        t.join(10)


def test_connection_refused(lan: Lan) -> None:
    with pytest.raises(ConnectionRefusedError):
        lan.net_a.create_connection((lan.ip_b, 9), timeout=5)
    s = lan.net_a.socket()
    assert s.connect_ex((lan.ip_b, 9)) == errno.ECONNREFUSED
    s.close()


def test_connect_timeout_to_silent_host(lan: Lan) -> None:
    s = lan.net_a.socket()
    s.settimeout(0.5)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        s.connect((lan.ip_silent, 80))
    assert time.monotonic() - start >= 0.5
    s.close()


def test_unreachable_host_raises_ehostunreach(lan: Lan) -> None:
    # Nobody has 192.0.2.99: ARP fails (three requests, a second apart) and the
    # SYN's error reaches connect() as EHOSTUNREACH, as on Linux (README), well
    # before the socket's own 30 s timeout would give ETIMEDOUT.
    s = lan.net_a.socket()
    s.settimeout(30)
    with pytest.raises(OSError) as info:
        s.connect(("192.0.2.99", 80))
    assert info.value.errno == errno.EHOSTUNREACH, info.value
    s.close()


def test_reset_gives_connection_reset_and_broken_pipe(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        port = srv.getsockname()[1]
        c = lan.net_a.create_connection((lan.ip_b, port), timeout=5)
        peer, _ = srv.accept()
        peer.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()                       # linger 0: RST
        with pytest.raises(ConnectionResetError):
            c.recv(10)
        # The reset has reached the socket (recv said so): the next send fails, as
        # on Linux (EPIPE once the ECONNRESET has been reported).
        with pytest.raises(BrokenPipeError):
            c.sendall(b"x" * 1000)
        c.close()


def test_send_after_peer_reset_raises(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        port = srv.getsockname()[1]
        c = lan.net_a.create_connection((lan.ip_b, port), timeout=5)
        peer, _ = srv.accept()
        peer.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        # Wait (on a deadline) until the reset has reached the socket: it turns
        # readable, as a Linux socket does when an RST arrives. The first send
        # after that must fail.
        ready, _, _ = select.select([c], [], [], 10)
        assert ready, "the reset never reached the socket"
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            c.send(b"hello")
        c.close()


def test_bind_in_use_reuseaddr_and_free_after_close_and_gc(lan: Lan) -> None:
    s1 = lan.net_b.socket()
    s1.bind(("", 8100))
    s1.listen()
    s2 = lan.net_b.socket()
    with pytest.raises(OSError) as info:
        s2.bind(("", 8100))
    assert info.value.errno == errno.EADDRINUSE
    s2.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as info:
        s2.bind(("", 8100))                 # SO_REUSEADDR never shares with a listener
    assert info.value.errno == errno.EADDRINUSE
    del info
    s1.close()
    s2.bind(("", 8100))                     # free as soon as closed
    s2.listen()
    # A connection, closed from the server side first: TIME_WAIT stays on b:8100.
    c = lan.net_a.create_connection((lan.ip_b, 8100), timeout=5)
    p, _ = s2.accept()
    p.close()
    assert c.recv(10) == b""
    c.close()
    s2.close()
    deadline = time.monotonic() + 5
    while lan.runtime.call(lambda: b_states(lan)) != ["TIME_WAIT"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s3 = lan.net_b.socket()
    with pytest.raises(OSError) as info:
        s3.bind(("", 8100))                 # TIME_WAIT blocks a plain bind ...
    assert info.value.errno == errno.EADDRINUSE
    del info
    s3.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    s3.bind(("", 8100))                     # ... but not with SO_REUSEADDR
    s3.listen()
    del s3
    gc.collect()
    s4 = lan.net_b.socket()
    s4.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    s4.bind(("", 8100))                     # free once garbage-collected
    s4.listen()
    s4.close()


def b_states(lan: Lan) -> list[str]:
    return [c.state for c in lan.b.tcp.connections() if c.local[1] == 8100]


def test_sendall_blocked_on_full_window_fails_promptly_on_reset(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        port = srv.getsockname()[1]
        c = lan.net_a.create_connection((lan.ip_b, port), timeout=None)
        peer, _ = srv.accept()             # never reads: the window fills up
        outcome: list[BaseException | None] = []

        def writer() -> None:
            try:
                c.sendall(b"z" * (64 << 20))
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome.append(exc)

        t = threading.Thread(target=writer, daemon=True)
        t.start()

        def window_full() -> bool:
            (conn,) = [x for x in lan.a.tcp.connections() if x.remote[1] == port]
            info = conn.info()
            return info["snd_wnd"] == 0 and info["snd_queue"] > 0

        wait_until(lambda: lan.runtime.call(window_full), 10, "the peer's window to close")
        assert t.is_alive() and not outcome  # blocked on the full window
        peer.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        t.join(5)
        assert not t.is_alive()
        assert isinstance(outcome[0], BrokenPipeError | ConnectionResetError)
        c.close()


def test_send_is_bounded_by_sndbuf(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        port = srv.getsockname()[1]
        c = lan.net_a.socket()
        c.setsockopt(std.SOL_SOCKET, std.SO_SNDBUF, 32768)
        c.connect((lan.ip_b, port))
        assert c.getsockopt(std.SOL_SOCKET, std.SO_SNDBUF) == 65536     # doubled, as Linux
        peer, _ = srv.accept()             # does not read
        c.setblocking(False)
        total = 0
        full = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and total < 64 << 20:
            try:
                total += c.send(b"q" * 16384)
            except BlockingIOError:
                # Full for now; once the peer's window is full too, it stays full.
                full += 1
                if not select.select([], [c], [], 1.0)[1]:
                    break
        assert full
        # Bounded: the peer's receive buffer (and what its socket holds), our
        # send buffer, and the socketpairs on both sides.
        rcvbuf = lan.runtime.call(lambda: lan.b.tcp.config.rcvbuf)
        assert total < rcvbuf + 65536 + 8 * fsock.PAIR_BUF + 2 * fsock.CHUNK
        drained = 0
        peer.settimeout(5)
        while drained < total:
            drained += len(peer.recv(65536))
        assert select.select([], [c], [], 5)[1] == [c]   # writable again
        c.close()
        peer.close()


def test_two_threads_each_listening_and_connecting(lan: Lan) -> None:
    results: dict[str, bytes] = {}

    def side(name: str, mine: fsock.Network, other_ip: str, lport: int, rport: int,
             ready: threading.Event, go: threading.Event) -> None:
        srv = _server(mine, lport)
        ready.set()
        go.wait(5)
        t = _echo_once(srv)
        with mine.create_connection((other_ip, rport), timeout=10) as c:
            c.sendall(name.encode() * 1000)
            c.shutdown(std.SHUT_WR)
            buf = b""
            while chunk := c.recv(65536):
                buf += chunk
            results[name] = buf
        t.join(10)
        srv.close()

    r1, r2, go = threading.Event(), threading.Event(), threading.Event()
    t1 = threading.Thread(target=side, args=("a", lan.net_a, lan.ip_b, 8201, 8202, r1, go))
    t2 = threading.Thread(target=side, args=("b", lan.net_b, lan.ip_a, 8202, 8201, r2, go))
    t1.start()
    t2.start()
    assert r1.wait(5) and r2.wait(5)
    go.set()
    t1.join(20)
    t2.join(20)
    assert results == {"a": b"a" * 1000, "b": b"b" * 1000}


def test_select_selectors_and_nonblocking_connect(lan: Lan) -> None:
    r, w = os.pipe()
    srv = _server(lan.net_b)
    port = srv.getsockname()[1]
    try:
        assert select.select([srv, r], [], [], 0)[0] == []
        c = lan.net_a.socket()
        c.setblocking(False)
        assert c.connect_ex((lan.ip_b, port)) == errno.EINPROGRESS
        _, writable, _ = select.select([], [c], [], 5)
        assert writable == [c]
        assert c.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
        ready, _, _ = select.select([srv, r], [], [], 5)
        assert ready == [srv]
        peer, addr = srv.accept()
        assert addr == c.getsockname()
        sel = selectors.DefaultSelector()
        sel.register(peer, selectors.EVENT_READ, "peer")
        sel.register(r, selectors.EVENT_READ, "pipe")
        assert sel.select(0) == []
        c.send(b"ping")
        assert [k.data for k, _ in sel.select(5)] == ["peer"]
        assert peer.recv(10) == b"ping"
        os.write(w, b"!")
        assert [k.data for k, _ in sel.select(5)] == ["pipe"]
        sel.close()
        # A non-blocking connect that fails reports the error through SO_ERROR.
        bad = lan.net_a.socket()
        bad.setblocking(False)
        assert bad.connect_ex((lan.ip_b, 9)) == errno.EINPROGRESS
        assert select.select([], [bad], [], 5)[1] == [bad]
        assert bad.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == errno.ECONNREFUSED
        bad.close()
        c.close()
        peer.close()
    finally:
        srv.close()
        os.close(r)
        os.close(w)


def test_accept_timeout_and_nonblocking(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        srv.settimeout(0.2)
        with pytest.raises(TimeoutError):
            srv.accept()
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()


def test_socket_options(lan: Lan) -> None:
    with _server(lan.net_b) as srv:
        port = srv.getsockname()[1]
        c = lan.net_a.socket()
        c.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
        c.setsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE, 1)
        c.setsockopt(std.SOL_SOCKET, std.SO_RCVBUF, 100000)
        c.connect((lan.ip_b, port))
        assert c.getsockopt(std.IPPROTO_TCP, std.TCP_NODELAY) == 1
        assert c.getsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE) == 1
        assert c.getsockopt(std.SOL_SOCKET, std.SO_TYPE) == std.SOCK_STREAM
        assert c.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
        conn = lan.runtime.call(lambda: c._link.conn)
        assert conn.nodelay and conn.keepalive and conn.rcvbuf == 200000    # doubled
        with pytest.raises(OSError) as info:
            c.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 0)
        assert info.value.errno == errno.ENOPROTOOPT
        c.close()


def test_loopback_on_the_stack(lan: Lan) -> None:
    """127.0.0.1 / localhost are the stack's own loopback (not the kernel's)."""
    with _server(lan.net_a, 9000) as srv:
        with lan.net_a.create_connection(("localhost", 9000), timeout=5) as c:
            peer, addr = srv.accept()
            assert addr == c.getsockname() and addr[0] == "127.0.0.1"
            c.sendall(b"lo")
            assert peer.recv(10) == b"lo"
            peer.close()


def test_close_and_shutdown_without_waiting_keep_their_order(lan: Lan) -> None:
    """close() and shutdown(SHUT_WR) do not wait for the loop thread, yet what
    a program does next still comes after them: the peer reads EOF, a bind to
    the port just freed succeeds at once, and nothing is left behind."""
    for i in range(20):
        srv = lan.net_b.socket()
        srv.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)   # (b's TIME_WAITs)
        srv.bind(("", 8300))                # the last round's listener is gone
        srv.listen()
        c = lan.net_a.create_connection((lan.ip_b, 8300), timeout=5)
        p, _ = srv.accept()
        p.sendall(b"%d" % i)
        p.shutdown(std.SHUT_WR)
        c.settimeout(5)
        got = b""
        while chunk := c.recv(16):
            got += chunk
        assert got == b"%d" % i
        c.close()
        p.close()
        srv.close()
    wait_until(lambda: not lan.runtime.call(lambda: lan.net_a.links | lan.net_b.links),
               10, "every link to be released")


def test_accept_takes_a_ready_connection_without_the_loop_thread(lan: Lan) -> None:
    """The loop thread makes a ready connection's socket before its token
    reaches the listening socket: accept() returns it while the loop thread
    is held up elsewhere."""
    srv = lan.net_b.create_server(("", 8400))
    c = lan.net_a.create_connection((lan.ip_b, 8400), timeout=5)
    assert select.select([srv], [], [], 5)[0] == [srv]      # its token is there
    gate = threading.Event()
    held = threading.Event()

    def hold() -> None:
        held.set()
        gate.wait(10)

    lan.runtime.call_soon_threadsafe(hold)
    release = threading.Timer(10, gate.set)      # (never a hung test run)
    release.start()
    try:
        assert held.wait(5)
        p, addr = srv.accept()
        assert not gate.is_set()                 # taken while the loop was held
        assert addr == c.getsockname()
    finally:
        gate.set()
        release.cancel()
    c.sendall(b"ping")
    p.settimeout(5)
    assert p.recv(4) == b"ping"
    for s in (p, c, srv):
        s.close()


def test_connections_beyond_the_premade_sockets_and_a_closed_listener(
        lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past READY_SOCKETS, waiting connections get their socket at accept();
    every one carries its own bytes; those never accepted are reset when the
    listener closes."""
    monkeypatch.setattr(fsock, "READY_SOCKETS", 3)
    srv = lan.net_b.create_server(("", 8500), backlog=16)
    clients = [lan.net_a.create_connection((lan.ip_b, 8500), timeout=5) for _ in range(10)]
    for i, c in enumerate(clients):
        c.sendall(b"%02d" % i)
    wait_until(lambda: len(srv._link.ready) == 10, 10, "all ten to be ready")
    kinds = [isinstance(item, fsock.socket) for item in list(srv._link.ready)]
    assert kinds == [True] * 3 + [False] * 7
    srv.settimeout(5)
    got = []
    for _ in range(6):
        p, _addr = srv.accept()
        p.settimeout(5)
        got.append(p.recv(2))
        p.close()
    assert got == [b"%02d" % i for i in range(6)]
    srv.close()                                   # four never accepted: reset
    for c in clients[6:]:
        c.settimeout(5)
        with pytest.raises(ConnectionResetError):
            while c.recv(10):
                pass
    for c in clients:
        c.close()


def test_data_after_shutdown_rdwr_resets_and_the_read_says_so(lan: Lan) -> None:
    """After shutdown(SHUT_RDWR) the connection lives on (FIN sent, reading
    side shut): data the peer sends then resets it (RFC 1122 4.2.2.13, as
    Linux), and the program's read gives ECONNRESET once, then EOF, as
    Linux's; the peer gets the RST."""
    lst = lan.net_b.socket(std.AF_INET, std.SOCK_STREAM)
    lst.bind(("", 8620))
    lst.listen()
    cli = lan.net_a.create_connection((lan.ip_b, 8620), timeout=5)
    conn, _ = lst.accept()
    conn.settimeout(5)
    try:
        conn.shutdown(std.SHUT_RDWR)
        assert cli.recv(10) == b""                  # our FIN
        assert conn.recv(10) == b""                 # EOF at once: nothing came
        cli.sendall(b"late")
        results: list[object] = []

        def reset_seen() -> bool:
            try:
                results.append(conn.recv(10))
            except ConnectionResetError:
                return True
            return False

        wait_until(reset_seen, 5, "the reset")
        assert set(results) <= {b""}
        assert conn.recv(10) == b""
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            cli.sendall(b"more")
            cli.recv(10)
    finally:
        for s in (conn, cli, lst):
            s.close()
