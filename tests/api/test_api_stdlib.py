"""Unmodified stdlib clients and servers over two in-memory stacks: asyncio,
socketserver, http.server + urllib, smtplib, and the process-wide patch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import smtplib
import socket as std
import socketserver
import ssl
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from apilan import Lan
from skippolicy import require_program

from femtotcp.api import aio
from femtotcp.api import patch as fpatch
from femtotcp.api import socket as fsock
from femtotcp.api.demo_http import serve_and_fetch
from femtotcp.api.run import run_in_process


def test_asyncio_echo_server_with_100_concurrent_clients(lan: Lan) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(i: int) -> bytes:
        reader, writer = await aio.open_connection(lan.ip_b, 7007, network=lan.net_a)
        msg = f"client {i} ".encode() * 50
        writer.write(msg)
        await writer.drain()
        writer.write_eof()
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data == msg

    async def main() -> list[bool]:
        server = await aio.start_server(handle, lan.ip_b, 7007, network=lan.net_b)
        async with server:
            return await asyncio.wait_for(
                asyncio.gather(*(client(i) for i in range(100))), 60)

    assert asyncio.run(main()) == [True] * 100


def test_asyncio_loop_apis_under_process_wide_patch(lan: Lan) -> None:
    """asyncio's own create_server/create_connection/open_connection on patched
    sockets (network a), talking to a server on b; asyncio's self-pipe stays real."""

    class Upper(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())  # type: ignore[attr-defined]

    async def on_b(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from b: " + await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        server_b = await aio.start_server(on_b, lan.ip_b, 7100, network=lan.net_b)
        reader, writer = await asyncio.open_connection(lan.ip_b, 7100)   # patched: stack a
        writer.write(b"a\n")
        first = await reader.read()
        writer.close()
        server_a = await loop.create_server(Upper, None, 7200)           # patched: stack a
        r2, w2 = await aio.open_connection(lan.ip_a, 7200, network=lan.net_b)
        w2.write(b"shout")
        second = await r2.readexactly(5)
        w2.close()
        server_a.close()
        server_b.close()
        await server_a.wait_closed()
        await server_b.wait_closed()
        return first, second

    with fpatch.patch(lan.net_a):
        left, right = std.socketpair()          # AF_UNIX: the kernel's, as before
        assert isinstance(left, std.socket) and not isinstance(left, fsock.socket)
        left.sendall(b"x")
        assert right.recv(1) == b"x"
        left.close()
        right.close()
        assert isinstance(std.socket(), fsock.socket)
        first, second = asyncio.run(main())
    assert first == b"hello from b: a\n"
    assert second == b"SHOUT"
    assert std.socket is fpatch._originals["socket"]


def test_threading_tcp_server(lan: Lan) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(line[::-1].strip() + b"\n")

    with fpatch.scoped(lan.net_b):
        server = socketserver.ThreadingTCPServer(("", 7300), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        def one(i: int, out: list[bytes]) -> None:
            with fpatch.scoped(lan.net_a):
                with std.create_connection((lan.ip_b, 7300), timeout=10) as c:
                    f = c.makefile("rwb")
                    f.write(f"abc{i}\n".encode())
                    f.flush()
                    out.append(f.readline())
                    f.close()

        out: list[bytes] = []
        clients = [threading.Thread(target=one, args=(i, out)) for i in range(5)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(20)
        assert sorted(out) == sorted(f"{i}cba\n".encode() for i in range(5))
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_http_server_and_urllib(lan: Lan) -> None:
    result = serve_and_fetch(lan.runtime, lan.b, lan.a, 2_000_000, port=8080)
    assert result["status"] == 200
    assert result["ok"] and result["bytes"] == 2_000_000


def test_smtplib_client(lan: Lan) -> None:
    got: list[bytes] = []

    class Smtp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            w = self.wfile.write
            w(b"220 femtotcp ESMTP\r\n")
            data = False
            for line in self.rfile:
                if data:
                    if line == b".\r\n":
                        data = False
                        w(b"250 queued\r\n")
                    else:
                        got.append(line)
                    continue
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    w(b"250 femtotcp\r\n")
                elif verb == b"DATA":
                    data = True
                    w(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    w(b"221 bye\r\n")
                    return
                else:
                    w(b"250 ok\r\n")

    with fpatch.scoped(lan.net_b):
        server = socketserver.ThreadingTCPServer(("", 2525), Smtp)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        with fpatch.scoped(lan.net_a):
            with smtplib.SMTP(lan.ip_b, 2525, timeout=10) as s:
                s.sendmail("a@example.org", ["b@example.org"], "Subject: hi\r\n\r\nover the stack\r\n")
        assert b"over the stack\r\n" in got
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_run_in_process_runs_a_script_over_the_stack(lan: Lan, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(" ".join(sys.argv[1:]).encode(), ("{lan.ip_b}", 5999))
        data, addr = s.recvfrom(100)
        sys.exit(0 if data == b"ARGS GO HERE" and addr == ("{lan.ip_b}", 5999) else 3)
    """))
    server = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    server.bind(("", 5999))

    def serve() -> None:
        data, addr = server.recvfrom(100)
        server.sendto(data.upper(), addr)

    t = threading.Thread(target=serve)
    t.start()
    argv_before = sys.argv[:]
    with fpatch.patch(lan.net_a):
        status = run_in_process(None, [str(script), "args", "go", "here"])
    t.join(5)
    server.close()
    assert status == 0
    assert sys.argv == argv_before
    bad = tmp_path / "fails.py"
    bad.write_text("raise SystemExit('boom')\n")
    assert run_in_process(None, [str(bad)]) == 1
    assert run_in_process(None, [str(tmp_path / "missing.py")]) == 2
    assert run_in_process("json.tool", ["--help"]) == 0


def test_run_in_process_runs_a_command_as_python_c(lan: Lan) -> None:
    """``femtotcp run -c COMMAND ARGS``: as ``python -c``, argv[0] is "-c", the
    code runs as __main__ in a module of its own, and its sockets are the stack's."""
    server = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    server.bind(("", 5998))
    main_before = sys.modules["__main__"]
    code = textwrap.dedent(f"""
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(repr((sys.argv, __name__, sys.path[0])).encode(), ("{lan.ip_b}", 5998))
        sys.exit(7)
    """)
    with fpatch.patch(lan.net_a):
        status = run_in_process(None, ["x", "y"], command=code)
    server.settimeout(5)
    data, _ = server.recvfrom(200)
    server.close()
    assert status == 7
    assert data.decode() == repr((["-c", "x", "y"], "__main__", ""))
    assert sys.modules["__main__"] is main_before
    assert run_in_process(None, [], command="raise ValueError('x')") == 1


def _tls_server_context(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for peer.example (openssl) and a server context."""
    openssl = require_program("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=peer.example",
                    "-addext", "subjectAltName=DNS:peer.example"], check=True,
                   capture_output=True, timeout=60)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    return cert, server_ctx


def test_tls_over_stack_sockets(lan: Lan, tmp_path: Path) -> None:
    """ssl wraps a stack socket unchanged: TLS runs over the socket's fd."""
    cert, server_ctx = _tls_server_context(tmp_path)
    srv = lan.net_b.socket()
    srv.bind(("", 443))
    srv.listen()

    def serve() -> None:
        c, _ = srv.accept()
        with server_ctx.wrap_socket(c, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    lan.net_a.hosts["peer.example"] = lan.ip_b
    with fpatch.scoped(lan.net_a):
        with std.create_connection(("peer.example", 443), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="peer.example") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                tls.sendall(b"secret")
                assert tls.recv(100) == b"SECRET"
    t.join(5)
    srv.close()


def test_tls_wrapped_before_listen_and_before_connect(lan: Lan, tmp_path: Path) -> None:
    """The http.server HTTPS recipe wraps the *listening* socket, and clients may
    wrap before connect(): ssl must see that neither is connected yet (no early
    handshake), accept and connect must be the stack's, and getpeername of the
    TLS socket must be the peer's address, as with kernel sockets."""
    cert, server_ctx = _tls_server_context(tmp_path)
    raw_srv = lan.net_b.socket()
    raw_srv.bind(("", 8443))
    raw_srv.listen()
    srv = server_ctx.wrap_socket(raw_srv, server_side=True)
    assert srv.getsockname() == ("0.0.0.0", 8443)
    seen: list[object] = []

    def serve() -> None:
        conn, addr = srv.accept()
        with conn:
            seen.append((addr, conn.getpeername(), conn.version()))
            conn.sendall(conn.recv(100).upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    raw = lan.net_a.socket()
    raw.settimeout(10)
    tls = client_ctx.wrap_socket(raw, server_hostname="peer.example")
    with pytest.raises(OSError) as exc:
        tls.getpeername()
    assert exc.value.errno == errno.ENOTCONN
    with tls:
        tls.connect((lan.ip_b, 8443))
        assert tls.getpeername() == (lan.ip_b, 8443)
        tls.sendall(b"secret")
        assert tls.recv(100) == b"SECRET"
        local = tls.getsockname()
    t.join(10)
    srv.close()
    assert seen and seen[0][0] == local and seen[0][1] == local
    assert seen[0][2] in ("TLSv1.2", "TLSv1.3")


def test_names_resolve_through_the_stacks_dns_client(lan: Lan) -> None:
    """getaddrinfo/create_connection by name use the stack's resolver when it has one."""
    from femtotcp.services.dns_server import DnsResponder

    def setup() -> DnsResponder:
        responder = DnsResponder(lan.b, zone="demo")
        responder.add_address("web.demo", lan.ip_b)
        lan.a.load_module("dns")
        lan.a.resolver.set_servers([lan.ip_b])
        return responder

    responder = lan.runtime.call(setup)
    try:
        net = lan.net_a
        assert net.gethostbyname("web.demo") == lan.ip_b
        with pytest.raises(std.gaierror) as info:
            net.getaddrinfo("missing.demo", 80)
        assert info.value.errno == std.EAI_NONAME
        with _listener(lan.net_b, 8300) as srv:
            with fpatch.scoped(net):
                with std.create_connection(("web.demo", 8300), timeout=10) as c:
                    peer, _ = srv.accept()
                    c.sendall(b"by name")
                    assert peer.recv(10) == b"by name"
                    peer.close()
    finally:
        lan.runtime.call(responder.close)


def _listener(net: fsock.Network, port: int) -> fsock.socket:
    s = net.socket()
    s.bind(("", port))
    s.listen()
    return s


def test_inet6_sockets_are_the_stacks_without_ipv6(lan: Lan) -> None:
    """A stack without IPv6 is a Linux host with no IPv6 address: its AF_INET6
    sockets are still the stack's (none falls to the kernel's network), reach
    IPv4 through v4-mapped addresses and take IPv4 on a listener bound to ``::``;
    an IPv6 destination is ENETUNREACH and ``::1`` (urllib3's probe) is not an
    address here."""
    with fpatch.scoped(lan.net_a), contextlib.ExitStack() as close:
        probe = close.enter_context(std.socket(std.AF_INET6, std.SOCK_STREAM))
        assert isinstance(probe, fsock.socket)
        with pytest.raises(OSError) as bind_lo:
            probe.bind(("::1", 0))
        assert bind_lo.value.errno == errno.EADDRNOTAVAIL
        far = close.enter_context(std.socket(std.AF_INET6, std.SOCK_STREAM))
        with pytest.raises(OSError) as unreachable:
            far.connect(("2001:db8::9", 80))
        assert unreachable.value.errno == errno.ENETUNREACH
        udp = close.enter_context(std.socket(std.AF_INET6, std.SOCK_DGRAM))
        with pytest.raises(OSError) as unreachable:
            udp.sendto(b"x", ("2001:db8::9", 9))
        assert unreachable.value.errno == errno.ENETUNREACH
        srv = close.enter_context(_listener(lan.net_b, 8310))
        c = close.enter_context(std.socket(std.AF_INET6, std.SOCK_STREAM))
        c.settimeout(10)
        c.connect((f"::ffff:{lan.ip_b}", 8310))
        assert c.getsockname()[0] == f"::ffff:{lan.ip_a}"
        peer, addr = srv.accept()
        close.enter_context(peer)
        assert addr[0] == lan.ip_a
        c.sendall(b"mapped")
        assert peer.recv(10) == b"mapped"
        dual = close.enter_context(std.socket(std.AF_INET6, std.SOCK_STREAM))
        dual.bind(("::", 8311))
        dual.listen()
        v4 = close.enter_context(lan.net_b.socket())
        v4.settimeout(10)
        v4.connect((lan.ip_a, 8311))
        dual.settimeout(10)
        got, frm = dual.accept()
        close.enter_context(got)
        assert frm[0] == f"::ffff:{lan.ip_b}"
