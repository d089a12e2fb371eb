"""Attached programs (api/remote.py + control/sockets.py) on the in-memory LAN.

A ``SocketService`` serves stack A; each ``RemoteNetwork`` is one attached
"program" (they share this test's process, but every socket is made in the
service and reaches the program only as a file descriptor). Stack B is an
in-process peer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket as std
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import test_api_ipv6_scope
from apilan import Lan
from test_api_ipv6 import A4, A6, B4, B6, nets  # noqa: F401 - nets: the stacks' fixture
from test_api_ipv6_scope import A2, Links, links  # noqa: F401 - links: its fixture
from waits import wait_until

from femtotcp.api.network import Network
from femtotcp.api.remote import RemoteNetwork, RemoteSocket, encode
from femtotcp.control.sockets import SocketService


@pytest.fixture
def svc(lan: Lan) -> Iterator[SocketService]:
    d = tempfile.mkdtemp(prefix="ftrem")
    service = SocketService(lan.a, lan.runtime, os.path.join(d, "s.sockets")).start()
    try:
        yield service
    finally:
        service.close()
        os.rmdir(d)


def _payload(n: int) -> bytes:
    return (hashlib.sha256(b"femtotcp").digest() * (n // 32 + 1))[:n]


def test_two_programs_share_port_space_and_reach_each_other(lan: Lan,
                                                            svc: SocketService) -> None:
    p1, p2 = RemoteNetwork(svc.path), RemoteNetwork(svc.path)
    srv = p1.create_server(("0.0.0.0", 5000))
    assert isinstance(srv, RemoteSocket) and srv.getsockname() == ("0.0.0.0", 5000)
    other = p2.socket()
    with pytest.raises(OSError) as info:
        other.bind(("0.0.0.0", 5000))
    assert info.value.errno == errno.EADDRINUSE
    other.close()

    data = _payload(2_000_000)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            buf = bytearray()
            while chunk := conn.recv(65536):
                buf += chunk
            got.append(bytes(buf))
            conn.sendall(b"done")

    th = threading.Thread(target=serve)
    th.start()
    cli = p2.create_connection((lan.ip_a, 5000), timeout=10)
    assert cli.getpeername() == (lan.ip_a, 5000)
    cli.sendall(data)
    cli.shutdown(std.SHUT_WR)
    assert cli.recv(10) == b"done"
    assert cli.recv(10) == b""
    th.join(10)
    assert got == [data]
    cli.close()
    srv.close()


def test_connect_to_in_process_peer_and_refused(lan: Lan, svc: SocketService) -> None:
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6000))
    cli = prog.create_connection((lan.ip_b, 6000), timeout=5)
    peer, addr = server.accept()
    assert addr == cli.getsockname() and addr[0] == lan.ip_a
    peer.sendall(b"hello")
    peer.close()
    assert cli.recv(10) == b"hello"
    assert cli.recv(10) == b""
    cli.close()
    with pytest.raises(ConnectionRefusedError):
        prog.create_connection((lan.ip_b, 6001), timeout=5)
    server.close()


def test_nonblocking_connect_and_so_error(lan: Lan, svc: SocketService) -> None:
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6002))
    s = prog.socket()
    s.setblocking(False)
    assert s.connect_ex((lan.ip_b, 6002)) == errno.EINPROGRESS
    import select
    _, w, _ = select.select([], [s], [], 5)
    assert w == [s]
    assert s.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
    assert s.getpeername() == (lan.ip_b, 6002)
    s.setblocking(True)
    s.sendall(b"x")
    peer, _ = server.accept()
    assert peer.recv(1) == b"x"
    peer.close()
    s.close()
    server.close()


def test_udp_both_ways(lan: Lan, svc: SocketService) -> None:
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    u.bind(("0.0.0.0", 7000))
    u.settimeout(5)
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    peer.settimeout(5)
    peer.sendto(b"ping", (lan.ip_a, 7000))
    data, addr = u.recvfrom(100)
    assert data == b"ping" and addr == (lan.ip_b, peer.getsockname()[1])
    assert u.sendto(b"pong", addr) == 4
    assert peer.recvfrom(100) == (b"pong", (lan.ip_a, 7000))
    u.close()
    peer.close()


def test_socket_freed_when_every_fd_copy_is_closed(lan: Lan, svc: SocketService) -> None:
    """No close request: serve notices the program's end going (as on a crash),
    and only when the last copy (here an os.dup) is closed."""
    prog = RemoteNetwork(svc.path)
    srv = prog.create_server(("0.0.0.0", 5100))
    copy = os.dup(srv.fileno())
    srv.close()
    other = RemoteNetwork(svc.path).socket()
    with pytest.raises(OSError) as info:
        other.bind(("0.0.0.0", 5100))
    assert info.value.errno == errno.EADDRINUSE
    adopted = prog.adopt(copy)
    assert isinstance(adopted, RemoteSocket) and adopted.getsockname() == ("0.0.0.0", 5100)
    adopted.close()
    fresh = prog.socket()          # never used: detach hands serve the socket first
    again = prog.adopt(fresh.detach())
    assert isinstance(again, RemoteSocket) and again.type == std.SOCK_STREAM
    again.close()
    # The listener goes once its last copy is closed (the loop sees POLLHUP).
    lan.runtime.call(svc.sweep)
    other.bind(("0.0.0.0", 5100))
    other.close()


def test_unread_data_at_death_resets_the_peer(lan: Lan, svc: SocketService) -> None:
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6003))
    cli = prog.create_connection((lan.ip_b, 6003), timeout=5)
    peer, _ = server.accept()
    # "Die": close the fd without a word to serve.
    _closed_unread_resets(cli, peer, lambda: os.close(cli.detach()))
    server.close()


def _closed_unread_resets(cli: Any, peer: Any, close: Any) -> None:
    """The peer sends; once the bytes sit unread in the program's end,
    ``close()`` closes the program's socket: the peer sees a reset."""
    peer.sendall(b"never read")
    cli.settimeout(5)
    assert cli.recv(1, std.MSG_PEEK) == b"n"
    close()
    peer.settimeout(5)
    with pytest.raises(ConnectionResetError):
        while peer.recv(100):
            pass
    peer.close()


def test_serve_gone_is_a_reset_not_a_hang(lan: Lan, svc: SocketService) -> None:
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6004))
    cli = prog.create_connection((lan.ip_b, 6004), timeout=5)
    peer, _ = server.accept()
    svc.close()
    # Serve's end of the pair goes with serve (here: the stack closes it).
    link = [lk for lk in svc.links.values() if lk.q is not None and lk.mode.value == "connected"]
    for lk in link:
        lan.runtime.call(lk.release)
    cli.settimeout(5)
    with pytest.raises(ConnectionResetError):
        cli.recv(10)
    fresh = prog.socket()      # made here; serve is asked at the first operation
    with pytest.raises(OSError) as info:
        fresh.connect((lan.ip_b, 6004))
    assert info.value.errno == errno.ENETDOWN
    fresh.close()
    peer.close()
    server.close()


def test_unknown_request_and_bad_id_are_errors(svc: SocketService) -> None:
    from femtotcp.api.remote import decode
    ans, _ = decode(b"".join(svc.handle(b"".join(encode(["nonsense", 0])))[0]))
    assert ans[0] == errno.EOPNOTSUPP
    ans, _ = decode(b"".join(svc.handle(b"".join(encode(["state", 12345])))[0]))
    assert ans[0] == errno.EBADF
    ans, _ = decode(b"".join(svc.handle(b"\x00\x05junk")[0]))
    assert ans[0] == errno.EINVAL


def test_first_request_hands_serve_the_pair(lan: Lan, svc: SocketService) -> None:
    """socket() makes the pair in the program; serve gets its end with the first
    request, once (a second copy, as after fork, is dropped); an unused socket
    never reaches serve."""
    prog = RemoteNetwork(svc.path)
    unused = prog.socket()
    unused.close()
    s = prog.socket()
    assert s.getsockname() == ("0.0.0.0", 0)      # answered here
    assert not svc.links
    s.bind(("0.0.0.0", 5200))
    assert list(svc.links) == [os.fstat(s.fileno()).st_ino]
    a, b = std.socketpair(std.AF_UNIX, std.SOCK_STREAM)
    msg = b"".join(encode(["+state", os.fstat(s.fileno()).st_ino, std.AF_INET,
                           std.SOCK_STREAM, 0, []]))
    svc.handle(msg, b.detach())
    link = svc.links[os.fstat(s.fileno()).st_ino]
    assert link.local is not None and link.local[1] == 5200
    a.close()
    s.close()



def test_options_before_the_first_request_go_with_it(lan: Lan, svc: SocketService) -> None:
    """setsockopt on a socket serve does not have yet costs no request: the
    options reach serve with the socket's first request, before it runs."""
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6250))
    s = prog.socket()
    s.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
    s.setsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE, 1)
    with pytest.raises(OSError) as exc:
        s.setsockopt(std.SOL_SOCKET, std.SO_DEBUG, 1)      # checked here, as before
    assert exc.value.errno == errno.ENOPROTOOPT
    assert not svc.links
    s.settimeout(10)
    s.connect((lan.ip_b, 6250))
    link = svc.links[os.fstat(s.fileno()).st_ino]
    assert link.opts[(std.IPPROTO_TCP, std.TCP_NODELAY)] == 1
    assert link.conn is not None and link.conn.nodelay
    assert s.getsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE) == 1
    peer, _ = server.accept()
    peer.close()
    s.close()
    server.close()


def test_shutdown_for_writing_needs_no_request(lan: Lan, svc: SocketService) -> None:
    """SHUT_WR (socketserver's end of every request) is the pair's EOF, which
    serve's pump turns into the FIN: no request, data still comes in."""
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6260))
    cli = prog.create_connection((lan.ip_b, 6260), timeout=10)
    peer, _ = server.accept()
    peer.settimeout(10)
    prog.path = os.path.join(os.path.dirname(svc.path), "nothing-here")
    prog.forget_channels()
    cli.sendall(b"request")
    cli.shutdown(std.SHUT_WR)
    got = b""
    while chunk := peer.recv(100):
        got += chunk
    assert got == b"request"
    prog.path = svc.path          # (EOF asks serve whether it was a reset)
    peer.sendall(b"answer")
    peer.close()
    assert cli.recv(100) == b"answer"
    assert cli.recv(100) == b""
    cli.close()
    server.close()


def test_eof_after_a_fin_needs_no_request(lan: Lan, svc: SocketService) -> None:
    """The peer's FIN is EOF on the program's fd with serve's end still open:
    read without asking serve (a reset, by contrast, is asked: see
    test_reset_reported_after_serve_freed_the_socket)."""
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6270))
    cli = prog.create_connection((lan.ip_b, 6270), timeout=10)
    peer, _ = server.accept()
    prog.path = os.path.join(os.path.dirname(svc.path), "nothing-here")
    prog.forget_channels()
    peer.sendall(b"response")
    peer.close()
    got = b""
    while chunk := cli.recv(100):
        got += chunk
    assert got == b"response"
    buf = bytearray(10)
    assert cli.recv_into(buf) == 0
    cli.close()
    server.close()

def test_udp_sends_after_the_first_go_through_the_pair(lan: Lan, svc: SocketService) -> None:
    """Once serve has the socket bound, datagrams go to it as records on the
    program's fd (no request each); their order and bytes are kept."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    peer.bind(("0.0.0.0", 7100))
    peer.settimeout(5)
    u.sendto(b"first", (lan.ip_b, 7100))           # a request: binds the socket in serve
    assert u.getsockname()[1] != 0
    for i in range(8):
        assert u.sendto(b"n%d" % i, (lan.ip_b, 7100)) == 2
    u.connect((lan.ip_b, 7100))
    assert u.send(b"connected") == 9
    got = [peer.recvfrom(100)[0] for _ in range(10)]
    assert got == [b"first", *(b"n%d" % i for i in range(8)), b"connected"]
    with pytest.raises(OSError) as info:
        u.sendto(b"x" * 65508, (lan.ip_b, 7100))
    assert info.value.errno == errno.EMSGSIZE
    with pytest.raises(PermissionError):
        u.sendto(b"x", ("255.255.255.255", 7100))
    u.close()
    peer.close()


def test_udp_sends_after_an_icmp_error_are_not_lost(lan: Lan, svc: SocketService) -> None:
    """A connected socket's datagram earns a port unreachable: the error waits
    for the program's next read (its sends returned already), and the sends
    after it still go out. Before, the first of them took the error and was
    dropped, and the socket error that left made every later one fail too."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    u.settimeout(5)
    u.connect((lan.ip_b, 7101))
    u.send(b"nobody")                           # nothing listens yet: port unreachable
    deadline = time.monotonic() + 5
    while not lan.runtime.call(lambda: lan.b.counters["icmp4.tx_error_3_3"]):
        assert time.monotonic() < deadline, "no port unreachable"
        time.sleep(0.01)
    time.sleep(0.1)                             # serve has the error by now
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    peer.bind(("0.0.0.0", 7101))
    peer.settimeout(5)
    for data in (b"one", b"two", b"three"):
        u.send(data)
    assert [peer.recvfrom(100)[0] for _ in range(3)] == [b"one", b"two", b"three"]
    with pytest.raises(ConnectionRefusedError):
        u.recv(100)                             # the error, once, as Linux's recv
    peer.sendto(b"reply", u.getsockname())
    assert u.recv(100) == b"reply"
    u.close()
    peer.close()


def test_udp_records_to_several_addresses_and_names(lan: Lan, svc: SocketService) -> None:
    """A datagram's record header is reused for the same numeric address only:
    datagrams alternating between two destinations each reach theirs, a name
    is looked up for every datagram (its address may change), and the
    address checks still run (a float port is a TypeError)."""
    prog = RemoteNetwork(svc.path, hosts={"peer": lan.ip_b})
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    with pytest.raises(TypeError):
        u.sendto(5, (lan.ip_b, 7300))               # (not 5 zero bytes), by request
    here = prog.socket(std.AF_INET, std.SOCK_DGRAM)       # on stack A's loopback
    here.bind(("127.0.0.1", 7301))
    here.settimeout(5)
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    peer.bind(("0.0.0.0", 7300))
    peer.settimeout(5)
    u.sendto(b"bind", (lan.ip_b, 7300))              # a request: serve binds the socket
    assert peer.recvfrom(100)[0] == b"bind"
    for i in range(4):
        assert u.sendto(b"b%d" % i, (lan.ip_b, 7300)) == 2
        assert u.sendto(bytearray(b"l%d" % i), ("127.0.0.1", 7301)) == 2
    assert [peer.recvfrom(100)[0] for _ in range(4)] == [b"b%d" % i for i in range(4)]
    assert [here.recvfrom(100)[0] for _ in range(4)] == [b"l%d" % i for i in range(4)]
    assert u.sendto(memoryview(b"by name"), ("peer", 7300)) == 7
    assert peer.recvfrom(100)[0] == b"by name"
    prog.hosts["peer"] = "127.0.0.1"
    assert u.sendto(b"moved", ("peer", 7301)) == 5
    assert here.recvfrom(100) == (b"moved", ("127.0.0.1", u.getsockname()[1]))
    with pytest.raises(TypeError):
        u.sendto(b"x", (lan.ip_b, 7300.0))
    with pytest.raises(TypeError):
        u.sendto("text", (lan.ip_b, 7300))
    with pytest.raises(TypeError):
        u.sendto(5, (lan.ip_b, 7300))               # and as a record
    with pytest.raises(OSError) as info:
        u.sendto(b"x" * 65508, (lan.ip_b, 7300))
    assert info.value.errno == errno.EMSGSIZE
    assert u.sendto(b"x" * 65507, (lan.ip_b, 7300)) == 65507
    assert peer.recvfrom(70000)[0] == b"x" * 65507
    for s in (u, here, peer):
        s.close()


def test_udp_recvfrom_names_each_source(lan: Lan, svc: SocketService) -> None:
    """Datagrams from two sources in turn: each recvfrom names its own (the
    address of the previous one is reused only when the record's is the same)."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    u.bind(("0.0.0.0", 7310))
    u.settimeout(5)
    one = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    two = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    local = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    local.bind(("127.0.0.1", 0))
    senders = [(one, (lan.ip_b,)), (two, (lan.ip_b,)), (one, (lan.ip_b,)),
               (local, ("127.0.0.1",)), (local, ("127.0.0.1",))]
    for i, (s, _) in enumerate(senders):
        dst = "127.0.0.1" if s is local else lan.ip_a
        s.sendto(b"d%d" % i, (dst, 7310))
        data, addr = u.recvfrom(100)
        assert data == b"d%d" % i
        assert addr == (senders[i][1][0], s.getsockname()[1])
    buf = bytearray(10)
    one.sendto(b"into", (lan.ip_a, 7310))
    assert u.recvfrom_into(buf) == (4, (lan.ip_b, one.getsockname()[1]))
    assert bytes(buf[:4]) == b"into"
    for s in (u, one, two, local):
        s.close()


def test_udp_records_when_serve_lags(lan: Lan, svc: SocketService) -> None:
    """While serve's loop is held up, P fills: a non-blocking sendto raises
    BlockingIOError, one with a timeout times out; once serve reads again
    every datagram written goes out, in order and whole."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    peer.bind(("0.0.0.0", 7320))
    peer.settimeout(5)
    u.sendto(b"first", (lan.ip_b, 7320))
    assert peer.recvfrom(100)[0] == b"first"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(10)

    lan.runtime.call_soon_threadsafe(hold)
    assert held.wait(5)
    sent: list[bytes] = []
    try:
        u.setblocking(False)
        with pytest.raises(BlockingIOError):
            for i in range(100000):
                data = b"%06d" % i + b"y" * 994
                u.sendto(data, (lan.ip_b, 7320))
                sent.append(data)
        u.settimeout(0.2)
        with pytest.raises(TimeoutError):
            u.sendto(b"late", (lan.ip_b, 7320))
    finally:
        release.set()
    assert len(sent) > 10
    got = [peer.recvfrom(2000)[0] for _ in range(len(sent))]
    assert got == sent
    u.close()
    peer.close()


def test_tcp_send_when_the_pair_is_full(lan: Lan, svc: SocketService) -> None:
    """send and sendall write P at once where it has room; once P and the
    connection are full a non-blocking send raises BlockingIOError and one
    with a timeout times out; every byte a send counted arrives, in order."""
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6100))
    cli = prog.create_connection((lan.ip_b, 6100), timeout=5)
    peer, _ = server.accept()
    sent = bytearray()
    cli.sendall(b"start")
    sent += b"start"
    cli.setblocking(False)
    with pytest.raises(BlockingIOError):
        for i in range(100000):
            chunk = b"%08d" % i * 512
            n = cli.send(chunk)
            sent += chunk[:n]
    cli.settimeout(0.3)
    with pytest.raises(TimeoutError):
        # More than the peer's receive buffer can grow to (autotuning counts
        # what its socket pair took as read).
        cli.sendall(b"z" * 8_000_000)
    cli.settimeout(5)
    got = bytearray()
    while len(got) < len(sent):
        chunk = peer.recv(1 << 20)
        assert chunk
        got += chunk
    assert bytes(got[:len(sent)]) == bytes(sent)
    for s in (cli, peer, server):
        s.close()


def test_asyncio_streams_and_datagrams_when_attached(lan: Lan, svc: SocketService) -> None:
    import asyncio

    from femtotcp.api.patch import scoped

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write((await r.read(100)).upper())
        await w.drain()
        w.close()

    async def main() -> list[object]:
        out: list[object] = []
        srv = await asyncio.start_server(handle, "0.0.0.0", 8800)
        r, w = await asyncio.open_connection(lan.ip_a, 8800)
        w.write(b"hello")
        await w.drain()
        out.append(await r.read(100))
        w.close()
        try:
            await asyncio.open_connection(lan.ip_b, 8801)
        except ConnectionRefusedError:
            out.append("refused")
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if not got.done():
                    got.set_result(data)

        t1, _ = await loop.create_datagram_endpoint(Proto, local_addr=("0.0.0.0", 8900))
        t2, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    remote_addr=(lan.ip_a, 8900))
        t2.sendto(b"dgram")
        out.append(await asyncio.wait_for(got, 5))
        t1.close()
        t2.close()
        srv.close()
        await srv.wait_closed()
        return out

    with scoped(RemoteNetwork(svc.path)):
        assert asyncio.run(main()) == [b"HELLO", "refused", b"dgram"]


def test_run_control_errors_name_the_problem(tmp_path: os.PathLike[str]) -> None:
    import subprocess
    import sys
    script = os.path.join(str(tmp_path), "p.py")
    with open(script, "w") as f:
        f.write("print('ran')\n")
    missing = os.path.join(str(tmp_path), "none.sock")
    res = subprocess.run([sys.executable, "-m", "femtotcp", "run", "--control", missing,
                          script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "ran" not in res.stdout
    assert f"no femtotcp serve with control socket {missing}" in res.stderr
    res = subprocess.run([sys.executable, "-m", "femtotcp", "run", "--control", missing,
                          "--in-process", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--in-process needs stack flags" in res.stderr
    res = subprocess.run([sys.executable, "-m", "femtotcp", "run", "--control", missing,
                          "--tap", "ft0", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "drop --tap" in res.stderr


def test_run_control_attaches_the_program_and_its_python_children(
        lan: Lan, svc: SocketService, tmp_path: os.PathLike[str]) -> None:
    """``femtotcp run --control`` (the path without its ``.sockets``): the program
    and a Python child it starts make their sockets in the service."""
    import subprocess
    import sys
    server = lan.net_b.create_server(("0.0.0.0", 6100))
    script = os.path.join(str(tmp_path), "p.py")
    with open(script, "w") as f:
        f.write(
            "import socket, subprocess, sys\n"
            "c = socket.create_connection((sys.argv[1], 6100), timeout=10)\n"
            "c.sendall(b'parent'); c.close()\n"
            "code = ('import socket, sys; c = socket.create_connection((sys.argv[1], 6100),'\n"
            "        ' timeout=10); c.sendall(b\"child\"); c.close()')\n"
            "subprocess.run([sys.executable, '-c', code, sys.argv[1]], check=True)\n")
    control = svc.path[:-len(".sockets")]
    proc = subprocess.Popen([sys.executable, "-m", "femtotcp", "run", "--control", control,
                             script, lan.ip_b], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got = []
    server.settimeout(30)
    for _ in range(2):
        conn, addr = server.accept()
        assert addr[0] == lan.ip_a          # over stack A: the service's stack
        conn.settimeout(10)
        buf = b""
        while chunk := conn.recv(100):
            buf += chunk
        got.append(buf)
        conn.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert got == [b"parent", b"child"]
    server.close()


def test_boot_hook_attaches_and_still_runs_another_sitecustomize(
        svc: SocketService, tmp_path: os.PathLike[str]) -> None:
    import subprocess
    import sys

    from femtotcp.api.remote import attach_environment
    other = os.path.join(str(tmp_path), "site")
    os.mkdir(other)
    with open(os.path.join(other, "sitecustomize.py"), "w") as f:
        f.write("import os\nos.environ['OTHER_SITECUSTOMIZE'] = 'ran'\n")
    env = dict(os.environ, PYTHONPATH=other)
    attach_environment(svc.path, env)
    code = ("import os, socket; s = socket.socket(); "
            "print(type(s).__module__, os.environ.get('OTHER_SITECUSTOMIZE'))")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.stdout.split() == ["femtotcp.api.remote", "ran"], res.stderr
    # Without the variable the hook does nothing: the kernel's sockets.
    env.pop("FEMTOTCP_ATTACH")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.stdout.split() == ["socket", "ran"], res.stderr



def test_boot_hook_attaches_on_the_first_socket_import_only(
        svc: SocketService, tmp_path: os.PathLike[str]) -> None:
    """A Python child loads no femtotcp until it imports socket (or ssl); then
    it is attached, with ssl's classes built on the real socket class whichever
    of the two it imported first."""
    import subprocess
    import sys

    from femtotcp.api.remote import attach_environment
    env = attach_environment(svc.path, dict(os.environ))
    quiet = ("import sys, json; print(any(m.startswith('femtotcp') for m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", quiet], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.stdout.split() == ["False"], res.stderr
    for first in ("socket", "ssl"):
        code = (f"import {first}; import socket, ssl; s = socket.socket(); "
                "print(type(s).__module__, ssl.SSLSocket.__bases__[0].__module__, "
                "isinstance(s, ssl.SSLSocket))")
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.stdout.split() == ["femtotcp.api.remote", "socket", "False"], \
            (first, res.stdout, res.stderr)

def test_malformed_requests_get_errors_and_the_service_goes_on(lan: Lan,
                                                               svc: SocketService) -> None:
    import random

    from femtotcp.api.remote import decode, recv_message
    rng = random.Random(17)
    conn = std.socket(std.AF_UNIX, std.SOCK_SEQPACKET)
    conn.settimeout(5)
    conn.connect(svc.path)
    samples = [b"", b"\x00", b"\xff\xff", b"\x00\x02[]", b"\x00\x04null", b"\x00\x07[1,2,3]",
               b"\x00\x0b[\"bind\",1]", b"\x00\x10[\"+bind\",1,2,1]",
               b"\x00\x11[\"state\",\"x\"]xyz"]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
                for _ in range(200)]
    for msg in samples:
        if not msg:
            continue
        conn.send(msg)
        answer, fd = recv_message(conn)
        assert fd is None
        doc, _ = decode(answer)
        assert doc[0] != 0, (msg, doc)
    conn.close()
    _still_serving(svc, 7300)


def _still_serving(svc: SocketService, port: int) -> None:
    """A real program is still served: a UDP socket binds ``port``."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    assert u.getsockname() == ("0.0.0.0", port)
    u.close()


def test_first_request_with_a_wrong_fd_is_refused(lan: Lan, svc: SocketService) -> None:
    """The fd a socket's first request carries must be one end of a Unix pair
    of the socket's kind: a pipe (ENOTSOCK), a kernel UDP socket or a pair of
    the other kind (EINVAL) is refused and closed, and serve goes on."""
    from femtotcp.api.remote import decode, recv_message
    conn = std.socket(std.AF_UNIX, std.SOCK_SEQPACKET)
    conn.settimeout(5)
    conn.connect(svc.path)
    r, w = os.pipe()
    udp = std.socket(std.AF_INET, std.SOCK_DGRAM)
    dgram_pair = std.socketpair(std.AF_UNIX, std.SOCK_SEQPACKET)
    cases = [(r, std.SOCK_STREAM, errno.ENOTSOCK), (udp.fileno(), std.SOCK_DGRAM, errno.EINVAL),
             (dgram_pair[0].fileno(), std.SOCK_STREAM, errno.EINVAL)]
    for sid, (fd, kind, err) in enumerate(cases, start=900001):
        std.send_fds(conn, encode(["+state", sid, std.AF_INET, kind, 0, []]), [fd])
        answer, got = recv_message(conn)
        assert got is None
        doc, _ = decode(answer)
        assert doc[0] == err, doc
        assert lan.runtime.call(lambda sid=sid: sid not in svc.links)
    conn.close()
    for f in (r, w):
        os.close(f)
    udp.close()
    for end in dgram_pair:
        end.close()
    _still_serving(svc, 7301)


def test_program_killed_during_a_blocking_connect(lan: Lan, svc: SocketService,
                                                  tmp_path: os.PathLike[str]) -> None:
    """Serve holds the answer to a connect when its program dies: the answer
    goes nowhere, the half-open socket is freed, and serve goes on serving."""
    import signal
    import subprocess
    import sys

    from femtotcp.api.sock_tcp import TcpMode
    script = os.path.join(str(tmp_path), "p.py")
    with open(script, "w") as f:
        f.write("import socket, sys\n"
                "socket.create_connection((sys.argv[1], 80), timeout=60)\n")
    control = svc.path[:-len(".sockets")]
    proc = subprocess.Popen([sys.executable, "-m", "femtotcp", "run", "--control", control,
                             script, lan.ip_silent])

    def connecting() -> list[object]:
        return [lk for lk in svc.links.values()
                if getattr(lk, "mode", None) is TcpMode.CONNECTING]

    try:
        wait_until(lambda: lan.runtime.call(connecting), 30, "the program's SYN")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    wait_until(lambda: not lan.runtime.call(connecting), 30, "the socket to be freed")
    wait_until(lambda: not svc.conns, 30, "the program's connections to be dropped")
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6200))
    c = prog.create_connection((lan.ip_b, 6200), timeout=10)
    c.close()
    server.close()


def test_blocking_connect_times_out_and_serve_goes_on(lan: Lan, svc: SocketService) -> None:
    """A connect with a timeout to an address that never answers: TimeoutError
    after the timeout, as the stdlib's; the half-open socket is freed in serve
    and the program's next connect on the same channel is answered."""
    from femtotcp.api.sock_tcp import TcpMode
    prog = RemoteNetwork(svc.path)
    s = prog.socket()
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):
        s.connect((lan.ip_silent, 80))
    assert s.connect_ex((lan.ip_b, 80)) != 0          # unusable after, as on Linux

    def connecting() -> list[object]:
        return [lk for lk in svc.links.values()
                if getattr(lk, "mode", None) is TcpMode.CONNECTING]

    assert lan.runtime.call(connecting) == []
    s.close()
    server = lan.net_b.create_server(("0.0.0.0", 6210))
    with prog.create_connection((lan.ip_b, 6210), timeout=10) as c:
        assert c.getpeername() == (lan.ip_b, 6210)
    server.close()


def test_reset_reported_after_serve_freed_the_socket(lan: Lan, svc: SocketService) -> None:
    """The peer resets; serve frees the socket at once (keeping only its last
    state); the program's recv still reports ECONNRESET, then EOF."""
    import struct
    prog = RemoteNetwork(svc.path)
    server = lan.net_b.create_server(("0.0.0.0", 6300))
    cli = prog.create_connection((lan.ip_b, 6300), timeout=5)
    sid = os.fstat(cli.fileno()).st_ino
    peer, _ = server.accept()
    peer.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()                                   # an RST to the program's side
    wait_until(lambda: sid in svc.tombs, 10, "the reset to free the socket")
    assert sid not in svc.links
    cli.settimeout(5)
    with pytest.raises(ConnectionResetError):
        cli.recv(10)
    assert cli.recv(10) == b""
    cli.close()
    server.close()


def test_many_threads_of_one_program_at_once(lan: Lan, svc: SocketService) -> None:
    """Threads share the program's pool of connections to serve: each request
    gets its own answer, whatever the others do meanwhile."""
    from concurrent.futures import ThreadPoolExecutor
    prog = RemoteNetwork(svc.path)

    def echo(conn: Any) -> None:
        with conn:
            conn.settimeout(10)
            conn.sendall(conn.recv(100))

    def client(i: int) -> bytes:
        with prog.create_connection((lan.ip_b, 6400), timeout=20) as c:
            c.sendall(b"t%03d" % i)
            return c.recv(100)

    with _accepting(lan.net_b.create_server(("0.0.0.0", 6400), backlog=256), echo):
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(client, range(64)))
    assert got == [b"t%03d" % i for i in range(64)]


@contextlib.contextmanager
def _accepting(server: Any, handle: Any) -> Iterator[None]:
    """``handle(conn)`` for each connection ``server`` accepts, in a thread,
    until the block ends (then the server is closed)."""
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            handle(conn)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(10)
        server.close()


def test_socket_passed_to_a_child_before_its_first_use(
        lan: Lan, svc: SocketService, tmp_path: os.PathLike[str]) -> None:
    """A socket made but never used goes to a Python child with ``pass_fds``
    (subprocess runs no fork hooks): the child finds the same stack socket and
    connects it; the parent then sees it connected, as with kernel sockets."""
    import subprocess
    import sys
    server = lan.net_b.create_server(("0.0.0.0", 6150))
    script = os.path.join(str(tmp_path), "p.py")
    with open(script, "w") as f:
        f.write(
            "import socket, subprocess, sys\n"
            "s = socket.socket()\n"
            "code = ('import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); '\n"
            "        'print(type(s).__module__, flush=True); '\n"
            "        's.connect((sys.argv[2], 6150)); s.sendall(b\"child\"); s.close()')\n"
            "subprocess.run([sys.executable, '-c', code, str(s.fileno()), sys.argv[1]],\n"
            "               pass_fds=[s.fileno()], check=True)\n"
            "print(s.getpeername()[1], flush=True)\n"
            "s.sendall(b' parent')\n"
            "s.close()\n")
    control = svc.path[:-len(".sockets")]
    proc = subprocess.Popen([sys.executable, "-m", "femtotcp", "run", "--control", control,
                             script, lan.ip_b], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    server.settimeout(30)
    conn, addr = server.accept()
    assert addr[0] == lan.ip_a
    conn.settimeout(30)
    buf = b""
    while chunk := conn.recv(100):
        buf += chunk
    conn.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["femtotcp.api.remote", "6150"], (out, err)
    assert buf == b"child parent"
    server.close()



def test_accept_takes_handed_over_connections_without_a_request(
        lan: Lan, svc: SocketService) -> None:
    """serve hands each ready connection over on the listening socket's fd: the
    program accepts (more than the backlog, as the program reads) with its
    socket service out of reach."""
    prog = RemoteNetwork(svc.path)
    srv = prog.socket()
    srv.bind(("0.0.0.0", 6300))
    srv.listen(2)
    srv.settimeout(10)
    clients = []
    for _ in range(8):
        c = lan.net_b.socket()
        c.setblocking(False)
        assert c.connect_ex((lan.ip_a, 6300)) == errno.EINPROGRESS
        clients.append(c)
    prog.path = os.path.join(os.path.dirname(svc.path), "nothing-here")
    prog.forget_channels()
    by_port = {c.getsockname()[1]: c for c in clients}
    for _ in range(8):
        conn, addr = srv.accept()
        with conn:
            assert addr[0] == lan.ip_b and conn.getpeername() == addr
            assert conn.getsockname() == (lan.ip_a, 6300)
            peer = by_port.pop(addr[1])
            peer.setblocking(True)
            peer.settimeout(10)
            peer.sendall(b"n%d" % addr[1])
            conn.settimeout(10)
            assert conn.recv(100) == b"n%d" % addr[1]
            conn.sendall(b"ok")
            assert peer.recv(10) == b"ok"
    assert not by_port
    srv.settimeout(0.2)
    with pytest.raises(TimeoutError):
        srv.accept()
    for c in clients:
        c.close()
    srv.close()

# -- IPv6 for attached programs ---------------------------------------------------------------



@pytest.fixture
def six(nets: tuple[Network, Network],  # noqa: F811 - the fixture imported above
        ) -> Iterator[tuple[RemoteNetwork, Network, SocketService]]:
    """test_api_ipv6's stacks a and b (IPv4 and IPv6): a's socket service, an
    attached program on a, and b in-process."""
    na, nb = nets
    d = tempfile.mkdtemp(prefix="ftrem6")
    service = SocketService(na.stack, na.runtime, os.path.join(d, "s.sockets")).start()
    try:
        yield RemoteNetwork(service.path), nb, service
    finally:
        service.close()
        os.rmdir(d)


def test_ipv6_tcp_both_ways_with_four_tuples(
        six: tuple[RemoteNetwork, Network, SocketService]) -> None:
    prog, nb, _ = six
    assert prog.has_ipv6()
    # the program connects to an IPv6 server
    with nb.create_server(("::", 0), family=std.AF_INET6) as srv:
        srv.settimeout(10)
        port = srv.getsockname()[1]
        cli = prog.socket(std.AF_INET6, std.SOCK_STREAM)
        cli.settimeout(10)
        cli.connect((B6, port, 0, 0))
        assert cli.family == std.AF_INET6
        assert cli.getpeername() == (B6, port, 0, 0)
        local = cli.getsockname()
        assert local[0] == A6 and len(local) == 4
        conn, peer = srv.accept()
        with conn:
            assert peer[:2] == local[:2]
            data = _payload(300_000)
            cli.sendall(data)
            cli.shutdown(std.SHUT_WR)
            got = bytearray()
            conn.settimeout(10)
            while chunk := conn.recv(65536):
                got += chunk
            assert bytes(got) == data
            conn.sendall(b"back")
        assert cli.recv(10) == b"back"
        cli.close()
    # the program listens on :: (dual stack): IPv6 and IPv4 clients
    lst = prog.socket(std.AF_INET6, std.SOCK_STREAM)
    lst.bind(("::", 0))
    lst.listen()
    lst.settimeout(10)
    port = lst.getsockname()[1]
    assert lst.getsockname() == ("::", port, 0, 0)
    for family, dst, shown in ((std.AF_INET6, B6, None), (std.AF_INET, B4, "::ffff:")):
        c = nb.socket(family, std.SOCK_STREAM)
        c.settimeout(10)
        c.connect((A6 if family == std.AF_INET6 else A4, port))
        conn, peer = lst.accept()
        with conn, c:
            if shown is None:
                assert peer == (B6, c.getsockname()[1], 0, 0)
            else:
                assert peer == (shown + B4, c.getsockname()[1], 0, 0)
                assert conn.getsockname() == (shown + A4, port, 0, 0)
            c.sendall(b"hi " + dst.encode())
            assert conn.recv(100) == b"hi " + dst.encode()
    lst.close()


def test_ipv6_v6only_and_port_space_with_ipv4(
        six: tuple[RemoteNetwork, Network, SocketService]) -> None:
    prog, nb, _ = six
    only = prog.socket(std.AF_INET6, std.SOCK_STREAM)
    only.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 1)
    assert only.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 1
    only.bind(("::", 0))
    only.listen()
    port = only.getsockname()[1]
    with pytest.raises(OSError) as exc:
        only.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 0)     # bound: too late
    assert exc.value.errno == errno.EINVAL
    c = nb.socket(std.AF_INET, std.SOCK_STREAM)
    c.settimeout(10)
    assert c.connect_ex((A4, port)) == errno.ECONNREFUSED
    c.close()
    v4 = prog.socket()
    v4.bind(("0.0.0.0", port))       # :: with V6ONLY leaves the IPv4 port free
    v4.close()
    only.close()
    dual = prog.socket(std.AF_INET6, std.SOCK_STREAM)
    dual.bind(("::", 0))
    other = prog.socket()
    with pytest.raises(OSError) as exc:
        other.bind(("0.0.0.0", dual.getsockname()[1]))
    assert exc.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as exc:
        other.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY)
    assert exc.value.errno == errno.EOPNOTSUPP      # an AF_INET socket: Linux's answer
    other.close()
    dual.close()


def test_ipv6_udp_and_options(six: tuple[RemoteNetwork, Network, SocketService]) -> None:
    prog, nb, svc = six
    u = prog.socket(std.AF_INET6, std.SOCK_DGRAM)
    u.settimeout(10)
    assert u.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 64
    u.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, 9)
    assert u.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 9
    with pytest.raises(OSError) as exc:
        u.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 300)
    assert exc.value.errno == errno.EINVAL
    u.bind(("::", 0))
    port = u.getsockname()[1]
    peer = nb.socket(std.AF_INET6, std.SOCK_DGRAM)
    peer.settimeout(10)
    peer.bind(("::", 0))
    pport = peer.getsockname()[1]
    # after the bind, datagrams go as records on the program's fd: order kept
    for i in range(5):
        assert u.sendto(b"six %d" % i, (B6, pport, 0, 0)) == 5
    for i in range(5):
        data, addr = peer.recvfrom(100)
        assert data == b"six %d" % i and addr == (A6, port, 0, 0)
    peer.sendto(b"back", (A6, port, 0, 0))
    assert u.recvfrom(100) == (b"back", (B6, pport, 0, 0))
    # IPv4 through the same socket, shown v4-mapped
    p4 = nb.socket(std.AF_INET, std.SOCK_DGRAM)
    p4.settimeout(10)
    p4.sendto(b"four", (A4, port))
    data, addr = u.recvfrom(100)
    assert data == b"four" and addr == ("::ffff:" + B4, p4.getsockname()[1], 0, 0)
    u.sendto(b"mapped", addr)
    assert p4.recvfrom(100)[0] == b"mapped"
    link = svc.links[os.fstat(u.fileno()).st_ino]
    assert link.v6 and link.opts[(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS)] == 9
    for s in (u, peer, p4):
        s.close()



def test_ipv6_ping_socket_attached(six: tuple[RemoteNetwork, Network, SocketService]) -> None:
    prog, _, svc = six
    with prog.socket(std.AF_INET6, std.SOCK_DGRAM, std.IPPROTO_ICMPV6) as ping:
        assert (ping.family, ping.proto) == (std.AF_INET6, std.IPPROTO_ICMPV6)
        ping.settimeout(10)
        ping.sendto(bytes((128, 0, 0, 0, 0, 0, 0, 7)) + b"attached six", (B6, 0))
        reply, peer = ping.recvfrom(200)
        assert peer[0] == B6 and len(peer) == 4
        assert reply[0] == 129 and reply[8:] == b"attached six"
        assert int.from_bytes(reply[4:6], "big") == ping.getsockname()[1]
        # another process naming it by fd finds an ICMPv6 socket
        dup = prog.adopt(os.dup(ping.fileno()))
        assert dup is not None and (dup.family, dup.proto) == (std.AF_INET6,
                                                                 std.IPPROTO_ICMPV6)
        dup.close()
    with pytest.raises(OSError) as exc:
        prog.socket(std.AF_INET, std.SOCK_DGRAM, std.IPPROTO_ICMPV6)
    assert exc.value.errno == errno.EPROTONOSUPPORT

def test_ipv6_getaddrinfo_aaaa_through_serve(
        six: tuple[RemoteNetwork, Network, SocketService]) -> None:
    from femtotcp.services.dns_server import DnsResponder
    prog, nb, svc = six

    def responder() -> DnsResponder:
        r = DnsResponder(nb.stack, zone="demo", addr=bytes(16))
        r.add_address("both.demo", B4)
        r.add_address("both.demo", B6)
        r.add_address("six.demo", B6)
        r.add_address("four.demo", B4)
        return r
    nb.call(responder)
    svc.net.call(lambda: svc.net.stack.resolver.set_servers([B6]))

    def addrs(name: str, family: int = 0, flags: int = 0) -> list[Any]:
        return [ai[4] for ai in prog.getaddrinfo(name, 80, family, std.SOCK_STREAM, 0, flags)]
    assert addrs("both.demo") == [(B6, 80, 0, 0), (B4, 80)]
    assert addrs("six.demo", std.AF_INET6) == [(B6, 80, 0, 0)]
    assert addrs("four.demo", std.AF_INET6, std.AI_V4MAPPED) == [("::ffff:" + B4, 80, 0, 0)]
    with pytest.raises(std.gaierror):
        addrs("six.demo", std.AF_INET)
    # serve's search list applies (A through ``dns``, A and AAAA through
    # ``names``); the canonical name is the name found; a trailing dot: no search.
    svc.net.call(lambda: setattr(svc.net.stack.resolver, "search", ["demo"]))
    for family in (std.AF_INET, 0):
        found = prog.getaddrinfo("both", 80, family, std.SOCK_STREAM, 0, std.AI_CANONNAME)
        assert found[0][3] == "both.demo" and found[-1][4] == (B4, 80)
        with pytest.raises(std.gaierror):
            prog.getaddrinfo("both.", 80, family, std.SOCK_STREAM)
    assert prog.gethostbyname_ex("four") == ("four.demo", [], [B4])
    with nb.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True) as srv:
        srv.settimeout(10)
        with prog.create_connection(("both.demo", srv.getsockname()[1]), timeout=10) as cli:
            assert cli.family == std.AF_INET6
            conn, peer = srv.accept()
            assert peer[0] == A6
            conn.close()


# -- scoped link-local addresses (RFC 4007) for attached programs ----------------------------
# test_api_ipv6_scope's stacks: A with a1 (index 2) and a2 (index 3); B behind a1 and C
# behind a2 hold the same fe80::bc, so only the scope says which one a program means.

@pytest.fixture
def scoped_prog(links: Links,  # noqa: F811 - the fixture imported above
                ) -> Iterator[tuple[RemoteNetwork, Links]]:
    d = tempfile.mkdtemp(prefix="ftremsc")
    service = SocketService(links.a.stack, links.a.runtime,
                            os.path.join(d, "s.sockets")).start()
    try:
        yield RemoteNetwork(service.path), links
    finally:
        service.close()
        os.rmdir(d)


def _r6(prog: RemoteNetwork, kind: int = std.SOCK_STREAM, proto: int = 0) -> RemoteSocket:
    sock = prog.socket(std.AF_INET6, kind, proto)
    sock.settimeout(10)
    return sock


def test_attached_interfaces_come_from_serve_in_one_request(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    prog, _ = scoped_prog
    asked: list[Any] = []
    ask = prog.ask

    def counting(*doc: Any, **kw: Any) -> Any:
        asked.append(doc[0])
        return ask(*doc, **kw)
    prog.ask = counting  # type: ignore[method-assign]
    assert prog.if_nameindex() == [(1, "lo"), (2, "a1"), (3, "a2")]
    assert prog.if_nametoindex("a2") == 3 and prog.if_indextoname(2) == "a1"
    assert prog.has_ipv6()
    with pytest.raises(OSError):
        prog.if_nametoindex("eth9")
    sa = prog.getaddrinfo("fe80::bc%a2", 80, 0, std.SOCK_STREAM)[0][4]
    assert tuple(sa) == ("fe80::bc", 80, 0, 3)
    assert asked == ["info"]


def test_attached_scoped_names_survive_adoption_and_nonblocking_connect(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    """A handle adopted by fd shows the scope too, and a non-blocking connect
    carries it."""
    prog, lk = scoped_prog
    srv = lk.c.create_server(("::", 0), family=std.AF_INET6)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    with srv, _r6(prog) as cli:
        cli.setblocking(False)
        assert cli.connect_ex(("fe80::bc", port, 0, 3)) in (0, errno.EINPROGRESS)
        conn, peer = srv.accept()
        conn.close()
        cli.setblocking(True)
        assert cli.getpeername() == ("fe80::bc", port, 0, 3)
        assert cli.getsockname() == (A2, peer[1], 0, 3)
        other = prog.adopt(os.dup(cli.fileno()))
        assert other is not None and other.getsockname() == cli.getsockname()
        assert other.getpeername() == cli.getpeername()
        other.close()


def _as_attached(scoped_prog: tuple[RemoteNetwork, Links]) -> Links:
    prog, lk = scoped_prog
    return Links(prog, lk.b, lk.c)  # type: ignore[arg-type]


def test_attached_tcp_connect_goes_out_the_scoped_interface(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    test_api_ipv6_scope.test_tcp_connect_goes_out_the_scoped_interface(
        _as_attached(scoped_prog))


def test_attached_accept_on_the_second_interface(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    test_api_ipv6_scope.test_accepting_on_the_second_interface(_as_attached(scoped_prog))


def test_attached_scope_errors_are_the_kernels(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    test_api_ipv6_scope.test_scope_errors_are_the_kernels(_as_attached(scoped_prog))
    prog, _ = scoped_prog
    with _r6(prog) as cli:                     # non-blocking: the same answer
        cli.setblocking(False)
        assert cli.connect_ex(("fe80::bc", 9, 0, 0)) == errno.EINVAL


def test_attached_udp_sendto_and_recvfrom_carry_the_scope(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    """(The datagrams after the first go by request too: a record has no scope.)"""
    test_api_ipv6_scope.test_udp_sendto_and_recvfrom_carry_the_scope(
        _as_attached(scoped_prog))


def test_attached_ping_socket_needs_and_uses_a_scope(
        scoped_prog: tuple[RemoteNetwork, Links]) -> None:
    test_api_ipv6_scope.test_ping_socket_needs_and_uses_a_scope(_as_attached(scoped_prog))


def test_many_connections_leave_no_fds_links_or_tombs_behind(
        lan: Lan, svc: SocketService, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect+close loop: each freed socket leaves serve's table at once
    (no sweep needed), its remains stay bounded (MAX_TOMBS), and neither
    serve nor the program keeps a file descriptor of it."""
    import femtotcp.control.sockets as sockets_mod
    monkeypatch.setattr(sockets_mod, "MAX_TOMBS", 40)
    server = lan.net_b.create_server(("0.0.0.0", 6400), backlog=64)
    prog = RemoteNetwork(svc.path)
    with _accepting(server, lambda conn: conn.close()):
        _connect_close_loop(lan, svc, prog)


def _connect_close_loop(lan: Lan, svc: SocketService, prog: RemoteNetwork) -> None:
    prog.create_connection((lan.ip_b, 6400), timeout=5).close()   # channels made
    wait_until(lambda: not svc.links, 10, "the first socket to be freed")

    def no_sweeps() -> None:
        svc._sweep_timer.cancel()
        svc._sweep_timer = None

    lan.runtime.call(no_sweeps)      # from here, only a socket's release frees it
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(150):
        prog.create_connection((lan.ip_b, 6400), timeout=5).close()
    wait_until(lambda: not svc.links, 10, "every socket to be freed without a sweep")
    assert len(svc.tombs) <= 40
    wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds_before + 2, 10,
               "the pairs' fds to be closed")


def _epoll_targets(runtime: Any) -> set[int]:
    """The fds the runtime's epoll holds registrations for, as the kernel lists
    them (``tfd:`` lines of the epoll fd's fdinfo)."""
    with open(f"/proc/self/fdinfo/{runtime._epoll.fileno()}") as f:
        return {int(line.split()[1]) for line in f if line.startswith("tfd:")}


def _registrations_match_handlers(lan: Lan) -> None:
    """In the loop thread: every epoll registration is one the runtime serves
    (none outlived its socket to be reported again under a reused fd)."""
    def check() -> tuple[set[int], set[int]]:
        return _epoll_targets(lan.runtime), set(lan.runtime._handlers)

    targets, handled = lan.runtime.call(check)
    assert targets == handled


def test_freed_sockets_leave_no_epoll_registration(lan: Lan, svc: SocketService) -> None:
    """Connections the program made (its pair's Q came over SCM_RIGHTS, so serve
    removes Q from epoll before closing it) and connections serve handed over
    (Q made here and never passed: its close alone drops the registration)
    leave the loop's epoll as they found it; the fds reused after them work."""
    server = lan.net_b.create_server(("0.0.0.0", 6500), backlog=64)
    prog = RemoteNetwork(svc.path)
    with _accepting(server, lambda conn: conn.close()):
        for _ in range(20):
            prog.create_connection((lan.ip_b, 6500), timeout=5).close()
        wait_until(lambda: not svc.links, 10, "the connections to be freed")
        _registrations_match_handlers(lan)
    srv = prog.create_server(("0.0.0.0", 6501))
    srv.settimeout(10)
    for i in range(20):
        c = lan.net_b.create_connection((lan.ip_a, 6501), timeout=5)
        conn, _ = srv.accept()
        c.sendall(b"x%d" % i)
        conn.settimeout(10)
        assert conn.recv(10) == b"x%d" % i      # its Q pumped: registered
        conn.close()
        c.settimeout(10)
        assert c.recv(10) == b""
        c.close()
    srv.close()
    wait_until(lambda: not svc.links, 10, "the handed-over connections to be freed")
    _registrations_match_handlers(lan)


def test_a_program_close_costs_serve_no_poll(lan: Lan, svc: SocketService,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop learns that the program's end of a pair is gone from the events
    epoll woke it for (POLLHUP), not from a poll of its own; the peer still
    sees the close as a FIN, or a reset where data was left unread."""
    import select as std_select

    import femtotcp.api.sock_base as sock_base

    polls: list[int] = []

    class CountingSelect:
        POLLIN, POLLHUP, POLLERR = std_select.POLLIN, std_select.POLLHUP, std_select.POLLERR

        @staticmethod
        def poll() -> Any:
            polls.append(1)
            return std_select.poll()

    server = lan.net_b.create_server(("0.0.0.0", 6510))
    prog = RemoteNetwork(svc.path)
    prog.create_connection((lan.ip_b, 6510), timeout=5).close()   # channels made
    server.accept()[0].close()
    monkeypatch.setattr(sock_base, "select", CountingSelect)
    cli = prog.create_connection((lan.ip_b, 6510), timeout=5)
    peer, _ = server.accept()
    cli.sendall(b"bye")
    cli.close()
    peer.settimeout(5)
    assert peer.recv(10) == b"bye"
    assert peer.recv(10) == b""                  # FIN
    peer.close()
    cli = prog.create_connection((lan.ip_b, 6510), timeout=5)
    peer, _ = server.accept()
    _closed_unread_resets(cli, peer, cli.close)
    server.close()
    wait_until(lambda: not svc.links, 10, "the connections to be freed")
    assert polls == []


def test_a_pair_end_held_elsewhere_leaves_no_registration(lan: Lan,
                                                          svc: SocketService) -> None:
    """Serve's end of a program-made pair may have another copy (a child forked
    while the socket's first request was on its way keeps one): epoll keeps a
    file's registration while any copy is open, so serve removes Q from epoll
    before closing it, and no event of that file reaches the loop again."""
    server = lan.net_b.create_server(("0.0.0.0", 6520))
    prog = RemoteNetwork(svc.path)
    prog.create_connection((lan.ip_b, 6520), timeout=5).close()   # channels made
    server.accept()[0].close()
    cli = prog.socket()
    held = os.dup(cli._q.fileno())        # the copy a forked child would hold
    try:
        cli.settimeout(5)
        cli.connect((lan.ip_b, 6520))
        peer, _ = server.accept()
        cli.close()
        peer.settimeout(5)
        assert peer.recv(10) == b""
        peer.close()
        wait_until(lambda: not svc.links, 10, "the connection to be freed")
        _registrations_match_handlers(lan)
    finally:
        os.close(held)
    server.close()


def test_a_socket_the_program_closed_leaves_no_remains(lan: Lan, svc: SocketService) -> None:
    """Freed because every copy of the program's fd is closed, a socket leaves
    nothing in serve (no process can name it again: a request with its id is
    EBADF, as a closed fd); freed by a reset while the program holds it, its
    last state stays for the program to read (test_reset_reported_...)."""
    server = lan.net_b.create_server(("0.0.0.0", 6530))
    prog = RemoteNetwork(svc.path)
    cli = prog.create_connection((lan.ip_b, 6530), timeout=5)
    sid = os.fstat(cli.fileno()).st_ino
    peer, _ = server.accept()
    cli.close()
    peer.settimeout(5)
    assert peer.recv(10) == b""
    peer.close()
    wait_until(lambda: sid not in svc.links, 10, "the socket to be freed")
    assert sid not in svc.tombs
    with pytest.raises(OSError) as info:
        prog.ask("state", sid)
    assert info.value.errno == errno.EBADF
    server.close()
