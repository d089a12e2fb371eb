"""``SSLContext.wrap_socket`` on stack sockets, in-process and attached (the
default of ``femtotcp run``): the http.server HTTPS recipe wraps the
listening socket before anyone connects, a client may wrap before connect,
and after wrapping the TLS socket's ``getpeername``, ``getsockname``,
``family`` and TCP options are the stack socket's (tornado sets TCP_NODELAY
on its TLS stream), as with kernel sockets. Attached, they were the pair's:
the listener's wrap tried a handshake at once (WRONG_VERSION_NUMBER), a TLS
socket's getpeername was '' and TCP_NODELAY EOPNOTSUPP."""

from __future__ import annotations

import errno
import socket as std
import ssl
import threading
from pathlib import Path

import pytest
from apilan import Lan
from test_api_stdlib import _tls_server_context

from femtotcp.api.network import Network
from femtotcp.api.patch import scoped


def _contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a self-signed peer.example (openssl)."""
    cert, server = _tls_server_context(tmp_path)
    return server, ssl.create_default_context(cafile=str(cert))


def _socket_side(tls: ssl.SSLSocket) -> tuple[object, ...]:
    tls.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
    return (tls.family, tls.getsockopt(std.IPPROTO_TCP, std.TCP_NODELAY), tls.getpeername(),
            tls.getsockname())


def test_program_serves_tls_on_a_wrapped_listener(lan: Lan, program_net: Network,
                                                  tmp_path: Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    seen: list[object] = []
    with scoped(program_net):
        raw = std.socket()
        raw.settimeout(10)
        raw.bind(("0.0.0.0", 8443))
        raw.listen()
        listener = server_ctx.wrap_socket(raw, server_side=True)
        assert listener.getsockname() == ("0.0.0.0", 8443)

        def serve() -> None:
            conn, addr = listener.accept()
            with conn:
                seen.append((addr, _socket_side(conn), conn.version()))
                conn.sendall(conn.recv(100).upper())

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        peer = client_ctx.wrap_socket(lan.net_b.create_connection((lan.ip_a, 8443), timeout=10),
                                      server_hostname="peer.example")
        peer.sendall(b"secret")
        assert peer.recv(100) == b"SECRET"
        local = peer.getsockname()
        peer.close()
        t.join(10)
        listener.close()
    assert seen, "the program accepted nothing"
    addr, side, version = seen[0]  # type: ignore[misc]
    assert addr == local and side == (std.AF_INET, 1, local, (lan.ip_a, 8443))
    assert version in ("TLSv1.2", "TLSv1.3")


def test_program_wraps_a_client_before_and_after_connect(lan: Lan, program_net: Network,
                                                        tmp_path: Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    raw_srv = lan.net_b.create_server(("0.0.0.0", 8444))

    def echo(c: std.socket) -> None:
        with server_ctx.wrap_socket(c, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    def serve() -> None:
        for _ in range(2):
            c, _addr = raw_srv.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with scoped(program_net):
        unconnected = std.socket()
        unconnected.settimeout(10)
        early = client_ctx.wrap_socket(unconnected, server_hostname="peer.example")
        with pytest.raises(OSError) as exc:
            early.getpeername()
        assert exc.value.errno == errno.ENOTCONN
        early.connect((lan.ip_b, 8444))
        late = client_ctx.wrap_socket(std.create_connection((lan.ip_b, 8444), timeout=10),
                                      server_hostname="peer.example")
        for tls in (early, late):
            assert isinstance(tls, ssl.SSLSocket) and type(tls).__name__ == "SSLSocket"
            with tls:
                family, nodelay, peer, local = _socket_side(tls)
                assert (family, nodelay, peer) == (std.AF_INET, 1, (lan.ip_b, 8444))
                assert local[0] == lan.ip_a
                tls.sendall(b"hello")
                assert tls.recv(100) == b"HELLO"
    t.join(10)
    raw_srv.close()
