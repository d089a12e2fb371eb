"""The pumps do little per wake-up (api/sock_tcp.py, api/sock_udp.py): a
datagram record or a short read of Q per report from epoll, Q not read when
the stack's side woke the link. What the program and the peer see stays
whole: every byte and datagram, in order, however they were bunched."""

from __future__ import annotations

import socket as std
import threading

import pytest
from apilan import Lan
from test_remote import svc  # noqa: F401 - the socket service fixture

from femtotcp.api.remote import RemoteNetwork
from femtotcp.control.sockets import SocketService


def _hold_loop(lan: Lan) -> threading.Event:
    """Keep the loop thread busy until the returned event is set, so what the
    program writes meanwhile waits in its pair, bunched."""
    go = threading.Event()
    held = threading.Event()

    def hold() -> None:
        held.set()
        go.wait(10)

    lan.runtime.call_soon_threadsafe(hold)
    assert held.wait(10)
    return go


def test_datagrams_bunched_in_the_pair_all_go_out_in_order(lan: Lan,
                                                           svc: SocketService  # noqa: F811
                                                           ) -> None:
    """An attached program's send records: more than one wake-up's worth
    written while the loop is busy all reach the peer, in order."""
    prog = RemoteNetwork(svc.path)
    u = prog.socket(std.AF_INET, std.SOCK_DGRAM)
    peer = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    try:
        peer.bind(("0.0.0.0", 7200))
        peer.settimeout(5)
        u.sendto(b"first", (lan.ip_b, 7200))        # a request: binds it in serve
        assert peer.recvfrom(100)[0] == b"first"
        go = _hold_loop(lan)
        for i in range(70):
            u.sendto(b"d%d" % i, (lan.ip_b, 7200))
        go.set()
        got = [peer.recvfrom(100)[0] for _ in range(70)]
        assert got == [b"d%d" % i for i in range(70)]
    finally:
        u.close()
        peer.close()


@pytest.mark.parametrize("attached", [False, True])
def test_small_messages_ping_pong_and_bunched(lan: Lan, svc: SocketService,  # noqa: F811
                                              attached: bool) -> None:
    """1-byte ping-pong both ways (the stack's side wakes the link, then the
    program's), then small writes bunched while the loop is busy: the peer
    gets every byte in order, and the program every answer."""
    srv = lan.net_b.create_server((lan.ip_b, 0))
    port = srv.getsockname()[1]
    net = RemoteNetwork(svc.path) if attached else lan.net_a
    c = net.create_connection((lan.ip_b, port), timeout=10)
    s, _ = srv.accept()
    try:
        c.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)
        s.settimeout(10)
        for i in range(200):
            c.sendall(bytes([i & 0xFF]))
            assert s.recv(1) == bytes([i & 0xFF])
            s.sendall(bytes([(i + 1) & 0xFF]))
            assert c.recv(1) == bytes([(i + 1) & 0xFF])
        go = _hold_loop(lan)
        parts = [b"m%03d;" % i for i in range(30)]    # (each a buffer slot in P)
        for p in parts:
            c.sendall(p)
        go.set()
        want = b"".join(parts)
        got = b""
        while len(got) < len(want):
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        assert got == want
        c.shutdown(std.SHUT_WR)
        assert s.recv(10) == b""            # the EOF after the bunch still comes
    finally:
        for sock in (c, s, srv):
            sock.close()
