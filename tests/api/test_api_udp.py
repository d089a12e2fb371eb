"""UDP and ICMP echo sockets between two stacks in memory (real time, threads)."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import select
import selectors
import socket as std
import socketserver
import threading

import pytest
from apilan import Lan

from femtotcp.api import patch as fpatch
from femtotcp.api import socket as fsock


def test_sendto_recvfrom_both_ways(lan: Lan) -> None:
    a = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    b = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    with a, b:
        b.bind(("", 5000))
        assert b.getsockname() == ("0.0.0.0", 5000)
        a.settimeout(5)
        b.settimeout(5)
        assert a.sendto(b"hello", (lan.ip_b, 5000)) == 5
        data, src = b.recvfrom(2048)
        assert data == b"hello"
        assert src[0] == lan.ip_a and src[1] == a.getsockname()[1]
        b.sendto(b"world", src)
        assert a.recvfrom(2048) == (b"world", (lan.ip_b, 5000))
        # recv_into / recvfrom_into and truncation to the buffer size, as UDP does
        a.sendto(b"0123456789", (lan.ip_b, 5000))
        buf = bytearray(4)
        n, addr = b.recvfrom_into(buf)
        assert (n, bytes(buf), addr[0]) == (4, b"0123", lan.ip_a)
        a.sendto(b"abc", (lan.ip_b, 5000))
        buf = bytearray(16)
        assert b.recv_into(buf) == 3 and buf[:3] == b"abc"


def test_recv_timeout_and_nonblocking(lan: Lan) -> None:
    with lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM) as s:
        s.bind(("", 0))
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recvfrom(100)
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(100)


def test_connected_udp_gets_connection_refused(lan: Lan) -> None:
    with lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect((lan.ip_b, 9))        # nobody listens on b:9 -> ICMP port unreachable
        assert s.getpeername() == (lan.ip_b, 9)
        s.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            s.recv(100)


@pytest.mark.parametrize("first", ["so_error", "send"])
def test_connected_udp_error_is_taken_once(lan: Lan, first: str) -> None:
    """Linux's sk_err: SO_ERROR (or the next send) returns ECONNREFUSED once and
    clears it, so the recv that follows does not raise it again."""
    with lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM) as s, \
            lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM) as b:
        b.bind(("", 9100))
        s.settimeout(5)
        s.connect((lan.ip_b, 9))        # nobody listens on b:9 -> ICMP port unreachable
        s.send(b"anyone?")
        assert select.select([s], [], [], 5)[0]      # the error makes it readable
        if first == "so_error":
            assert s.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == errno.ECONNREFUSED
        else:
            with pytest.raises(ConnectionRefusedError):
                s.send(b"again")
        assert s.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
        s.connect((lan.ip_b, 9100))
        b.settimeout(5)
        b.sendto(b"later", (lan.ip_a, s.getsockname()[1]))
        assert s.getsockname()[0] == lan.ip_a       # the source a connect chose, as Linux
        assert s.recv(100) == b"later"


def test_bind_in_use_and_free_after_close_and_gc(lan: Lan) -> None:
    s1 = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    s1.bind(("", 6000))
    s2 = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    with pytest.raises(OSError) as info:
        s2.bind(("", 6000))
    assert info.value.errno == errno.EADDRINUSE
    s1.close()
    s2.bind(("", 6000))                 # free as soon as closed
    del s2, info                        # (the traceback in info holds s2 too)
    gc.collect()
    s3 = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    s3.bind(("", 6000))                 # free once garbage-collected
    s3.close()


def test_select_and_selectors_mix_stack_sockets_and_pipes(lan: Lan) -> None:
    r, w = os.pipe()
    a = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    b = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    try:
        b.bind(("", 7000))
        assert select.select([b, r], [], [], 0) == ([], [], [])
        a.sendto(b"x", (lan.ip_b, 7000))
        ready, _, _ = select.select([b, r], [], [], 5)
        assert ready == [b]
        os.write(w, b"!")
        ready, writable, _ = select.select([b, r], [b], [], 5)
        assert set(ready) == {b, r} and writable == [b]
        b.recv(10)
        os.read(r, 1)
        sel = selectors.DefaultSelector()
        sel.register(b, selectors.EVENT_READ, "stack")
        sel.register(r, selectors.EVENT_READ, "pipe")
        assert sel.select(0) == []
        a.sendto(b"y", (lan.ip_b, 7000))
        events = sel.select(5)
        assert [k.data for k, _ in events] == ["stack"]
        os.write(w, b"!")
        b.recv(10)
        events = sel.select(5)
        assert [k.data for k, _ in events] == ["pipe"]
        sel.close()
    finally:
        a.close()
        b.close()
        os.close(r)
        os.close(w)


def test_ping_socket(lan: Lan) -> None:
    from femtotcp.wire import icmp4
    with lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM, std.IPPROTO_ICMP) as s:
        s.settimeout(5)
        request = icmp4.build_echo(icmp4.ECHO_REQUEST, 0, 7, b"payload")
        s.sendto(request, (lan.ip_b, 0))
        reply, (src, _port) = s.recvfrom(1500)
        assert src == lan.ip_b
        assert reply[0] == icmp4.ECHO_REPLY
        assert int.from_bytes(reply[6:8], "big") == 7 and reply[8:] == b"payload"


def test_udp_server_under_scoped_patch(lan: Lan) -> None:
    """An unmodified socketserver.ThreadingUDPServer on stack b, a client on a."""
    class Upper(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(data.upper(), self.client_address)

    with fpatch.scoped(lan.net_b):
        server = socketserver.ThreadingUDPServer(("", 5353), Upper)
    assert isinstance(server.socket, fsock.socket)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        with fpatch.scoped(lan.net_a):
            with std.socket(std.AF_INET, std.SOCK_DGRAM) as c:
                assert isinstance(c, fsock.socket)
                c.settimeout(5)
                c.sendto(b"shout", (lan.ip_b, 5353))
                assert c.recvfrom(100) == (b"SHOUT", (lan.ip_b, 5353))
        # Outside the scope sockets are the kernel's again.
        with std.socket(std.AF_INET, std.SOCK_DGRAM) as real:
            assert not isinstance(real, fsock.socket)
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_asyncio_datagram_endpoint(lan: Lan) -> None:
    from femtotcp.api import aio

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data[::-1], addr)  # type: ignore[attr-defined]

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.got.set_result(data)

    async def main() -> bytes:
        server, _ = await aio.create_datagram_endpoint(Echo, local_addr=("", 4000),
                                                       network=lan.net_b)
        client_t, client = await aio.create_datagram_endpoint(
            Client, remote_addr=(lan.ip_b, 4000), network=lan.net_a)
        client_t.sendto(b"stressed")
        try:
            return await asyncio.wait_for(client.got, 5)
        finally:
            client_t.close()
            server.close()

    assert asyncio.run(main()) == b"desserts"


def test_getaddrinfo_and_hosts(lan: Lan) -> None:
    net = lan.net_a
    infos = net.getaddrinfo(lan.ip_b, 80, type=std.SOCK_STREAM)
    assert infos == [(std.AF_INET, std.SOCK_STREAM, std.IPPROTO_TCP, "", (lan.ip_b, 80))]
    assert len(net.getaddrinfo("192.0.2.9", "80")) == 3
    assert net.getaddrinfo(None, 8000, flags=std.AI_PASSIVE, type=std.SOCK_STREAM)[0][4] \
        == ("0.0.0.0", 8000)
    net.hosts["peer.example"] = lan.ip_b
    assert net.gethostbyname("peer.example") == lan.ip_b
    assert net.gethostbyname_ex("peer.example") == ("peer.example", [], [lan.ip_b])
    with pytest.raises(std.gaierror):
        net.getaddrinfo("no-such-name.invalid", 80)
    with pytest.raises(std.gaierror):
        net.getaddrinfo("peer.example", 80, flags=std.AI_NUMERICHOST)
    with pytest.raises(std.gaierror):
        net.getaddrinfo("::1", 80, std.AF_INET)     # IPv6 literals: AF_INET6 results only
    assert {ai[0] for ai in net.getaddrinfo("::1", 80)} == {std.AF_INET6}
