"""api/sock_tcp.py: a TCP socket's mode is an enum changed in one place."""

from __future__ import annotations

import pytest
from apilan import Lan

from femtotcp.api.sock_tcp import _TRANSITIONS, TcpMode


def test_every_mode_has_its_transitions() -> None:
    assert set(_TRANSITIONS) == set(TcpMode)
    assert all(TcpMode.DONE not in targets for targets in _TRANSITIONS.values())


def test_modes_follow_the_socket_and_a_wrong_change_is_refused(lan: Lan) -> None:
    srv = lan.net_b.create_server((lan.ip_b, 0))
    fresh = lan.net_a.socket()
    client = lan.net_a.create_connection((lan.ip_b, srv.getsockname()[1]), timeout=10)
    server_side, _ = srv.accept()
    try:
        assert fresh._link.mode is TcpMode.IDLE                  # type: ignore[attr-defined]
        assert srv._link.mode is TcpMode.LISTENING               # type: ignore[attr-defined]
        assert client._link.mode is TcpMode.CONNECTED            # type: ignore[attr-defined]
        assert server_side._link.mode is TcpMode.CONNECTED       # type: ignore[attr-defined]
        link = client._link
        with pytest.raises(RuntimeError, match="connected -> listening"):
            lan.runtime.call(link.set_mode, TcpMode.LISTENING)  # type: ignore[attr-defined]
        assert link.mode is TcpMode.CONNECTED                    # type: ignore[attr-defined]
        client.sendall(b"still works")
        got = b""
        while len(got) < 11 and (chunk := server_side.recv(100)):
            got += chunk
        assert got == b"still works"
    finally:
        for s in (client, server_side, srv, fresh):
            s.close()
