"""While patched, a stack socket is a ``socket.socket`` by type, not only by
``isinstance``: trio wraps only objects whose ``type(sock) is socket.socket``
and calls the class's methods unbound (``socket.socket.recv(sock, n)``,
captured when trio is imported, under ``femtotcp run`` after the patch).
Accepted and duplicated sockets are of that type too, a class derived from
``socket.socket`` while patched makes stack sockets with its own methods, and
kernel sockets (AF_UNIX) stay the kernel's. In-process and attached alike.
"""

from __future__ import annotations

import _socket
import logging
import pickle
import socket as std

import pytest
from apilan import Lan

from femtotcp.api import patch as fpatch
from femtotcp.api.network import Network
from femtotcp.api.patch import scoped


def test_stack_sockets_are_socket_socket_by_type(lan: Lan, program_net: Network) -> None:
    peer = lan.net_b.create_server(("0.0.0.0", 7100))
    with scoped(program_net):
        cls = std.socket
        s = std.socket(std.AF_INET, std.SOCK_STREAM)
        assert type(s) is cls
        assert f".socket fd={s.fileno()}, family=2, type=1, proto=0" in repr(s)
        with pytest.raises(TypeError, match="cannot pickle 'socket' object"):
            pickle.dumps(s)
        # trio's way: the class's methods, unbound, on a non-blocking socket
        cls.settimeout(s, 5)
        cls.connect(s, (lan.ip_b, 7100))
        conn, _ = peer.accept()
        cls.sendall(s, b"ping")
        assert conn.recv(10) == b"ping"
        conn.sendall(b"pong")
        assert cls.recv(s, 10) == b"pong"
        twin = s.dup()
        assert type(twin) is cls and twin.getpeername() == (lan.ip_b, 7100)
        twin.close()
        s.close()
        conn.close()

        listener = std.socket(std.AF_INET, std.SOCK_STREAM)
        listener.bind(("0.0.0.0", 7101))
        listener.listen()
        client = lan.net_b.create_connection((lan.ip_a, 7101), timeout=5)
        accepted, addr = listener.accept()
        assert type(accepted) is cls and addr == client.getsockname()
        accepted.sendall(b"hi")
        assert client.recv(10) == b"hi"
        for x in (accepted, client, listener):
            x.close()

        # The socket's error (ICMP port unreachable) through the unbound recv.
        u = std.socket(std.AF_INET, std.SOCK_DGRAM)
        assert type(u) is cls
        u.settimeout(5)
        u.connect((lan.ip_b, 7199))
        cls.send(u, b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            cls.recv(u, 100)
        u.close()

        # Kernel sockets stay the kernel's, and still pass isinstance.
        a, b = std.socketpair()
        unix = std.socket(std.AF_UNIX, std.SOCK_STREAM)
        assert isinstance(a, std.socket) and isinstance(unix, std.socket)
        assert unix.family == std.AF_UNIX
        a.sendall(b"k")
        assert b.recv(1) == b"k"
        for x in (a, b, unix):
            x.close()
    peer.close()


def test_class_derived_while_patched_goes_over_the_stack(lan: Lan,
                                                         program_net: Network) -> None:
    peer = lan.net_b.create_server(("0.0.0.0", 7102))
    with scoped(program_net):

        class Tagged(std.socket):   # as PySocks' socksocket derives from socket.socket
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                self.tag = "mine"

            def connect(self, address: object) -> None:
                super().connect(address)
                self.sendall(self.tag.encode())

        s = Tagged(std.AF_INET, std.SOCK_STREAM)
        assert type(s) is Tagged and s.tag == "mine"
        s.settimeout(5)
        s.connect((lan.ip_b, 7102))
        conn, addr = peer.accept()
        assert addr == s.getsockname() and addr[0] == lan.ip_a
        assert conn.recv(10) == b"mine"
        a, b = std.socketpair()
        assert not isinstance(a, Tagged) and isinstance(s, std.socket)
        for x in (s, conn, a, b):
            x.close()
    peer.close()


def test_replacing_socket_socket_is_said_once(lan: Lan, caplog: pytest.LogCaptureFixture) -> None:
    """gevent's and eventlet's monkey patching put their own class (on the C
    ``_socket.socket``: the kernel's sockets) in ``socket.socket``; the program
    is told so, once, when it happens. Our own patching says nothing."""
    import types

    caplog.set_level(logging.WARNING, logger="femtotcp.api.patch")
    with scoped(lan.net_a):
        with scoped(lan.net_b):
            pass
        assert not caplog.records

        class Green(_socket.socket):     # as gevent's socket wraps _socket.socket
            pass

        mine = std.socket
        std.socket = Green  # type: ignore[misc]
        std.socket = mine   # type: ignore[misc]
        std.socket = Green  # type: ignore[misc]
        std.socket = mine   # type: ignore[misc]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "Green" in warned[0] and "kernel's" in warned[0], warned
    assert type(std) is types.ModuleType and std.socket is fpatch._originals["socket"]


def test_a_stack_sockets_fd_wrapped_again_is_that_socket(lan: Lan,
                                                        program_net: Network) -> None:
    """``socket.fromfd`` and ``socket.socket(fileno=s.detach())`` on a stack
    socket's fd give that stack socket again, as they do a kernel socket."""
    peer = lan.net_b.create_server(("0.0.0.0", 7103))
    with scoped(program_net):
        s = std.create_connection((lan.ip_b, 7103), timeout=5)
        conn, _ = peer.accept()
        conn.settimeout(5)
        f = std.fromfd(s.fileno(), s.family, std.SOCK_STREAM)
        assert type(f) is std.socket and f.getpeername() == (lan.ip_b, 7103)
        f.close()                      # one handle of two: the connection stays
        g = std.socket(std.AF_INET, std.SOCK_STREAM, 0, s.detach())
        assert type(g) is std.socket and g.getpeername() == (lan.ip_b, 7103)
        g.sendall(b"again")
        assert conn.recv(10) == b"again"
        g.close()                      # the last handle: FIN
        assert conn.recv(10) == b""
        conn.close()
    peer.close()
