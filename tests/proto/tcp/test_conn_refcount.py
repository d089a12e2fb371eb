"""A finished connection is freed by reference counting alone: once it is
CLOSED, or a TIME-WAIT record took its place, nothing of it is left in a
reference cycle (its sender and receiver point back at it weakly, its timers
let go of their bound methods), so a server's connections do not pile up as
cyclic garbage for the collector. Each test runs with the collector off."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from femtolan import Lan, make_lan
from tcp_harness import ACK, FIN, RST, connect_pair, lan_with_peer, open_passive

MSL = 30.0


@contextmanager
def no_collector() -> Iterator[None]:
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _gone(refs: list[weakref.ref[Any]]) -> bool:
    return all(r() is None for r in refs)


def _pair(lan: Lan) -> list[weakref.ref[Any]]:
    """An established pair on ``lan``, one byte each way, the client closing
    first and the server closing on the FIN; weak references to both."""
    client, server = connect_pair(lan)
    got: list[bytes] = []

    def on_server() -> None:
        data = server.recv()
        if data:
            server.send(data)
        elif data == b"" and not server.orphaned:
            server.close()

    def on_client() -> None:
        data = client.recv()
        if data:
            got.append(data)
            client.close()

    server.on_event = on_server
    client.on_event = on_client
    client.send(b"x")
    assert lan.run_until(lambda: bool(got) and server.state_name == "CLOSED", 5)
    assert client.state_name == "TIME_WAIT"
    server.on_event = client.on_event = None
    return [weakref.ref(client), weakref.ref(server)]


def test_closed_pair_freed_without_collector() -> None:
    lan = make_lan(2)
    with no_collector():
        refs = _pair(lan)
        # The server's connection is CLOSED, the client's replaced by a record.
        assert _gone(refs)
        lan.run(2 * MSL + 1)
        assert not lan.stacks[1].tcp.connections()
        assert not lan.stacks[0].tcp.connections()


def test_held_connection_freed_once_dropped() -> None:
    """A connection the program still holds stays readable after its
    TIME-WAIT record ends, and goes when the program drops it."""
    lan = make_lan(2)
    with no_collector():
        client, server = connect_pair(lan)
        client.close()
        assert lan.run_until(lambda: server.state_name == "CLOSE_WAIT", 5)
        server.close()
        assert lan.run_until(lambda: server.state_name == "CLOSED", 5)
        assert client.state_name == "TIME_WAIT"
        lan.run(2 * MSL + 1)
        assert client.state_name == "CLOSED"
        assert client.recv() == b""
        assert client.info()["state"] == "CLOSED"
        refs = [weakref.ref(client), weakref.ref(server)]
        client = server = None   # the closures above share these cells: drop what they hold
        assert _gone(refs)


def _freed_after(act: Callable[[Any, Any], None]) -> None:
    lan, peer = lan_with_peer()
    with no_collector():
        p = open_passive(lan, peer)
        act(lan, p)
        ref = weakref.ref(p.conn)
        del p
        assert ref() is None


def test_abort_freed() -> None:
    _freed_after(lambda lan, p: p.conn.abort())


def test_reset_by_peer_freed() -> None:
    def act(lan: Lan, p: Any) -> None:
        p.peer.send(RST, p.snd)
        assert p.conn.state_name == "CLOSED"
    _freed_after(act)


def test_kept_time_wait_freed_when_it_ends() -> None:
    """A connection that keeps TIME-WAIT itself (the program shut the write
    side only) is freed once 2 MSL ran out and the program lets go."""
    def act(lan: Lan, p: Any) -> None:
        p.conn.shutdown(socket.SHUT_WR)
        p.peer.expect(FIN | ACK)
        p.peer.send(FIN | ACK, p.snd, p.rcv + 1)
        p.peer.expect(ACK)
        assert p.conn.state_name == "TIME_WAIT"
        lan.run(2 * MSL + 1)
        assert p.conn.state_name == "CLOSED"
    _freed_after(act)


def test_orphan_fin_wait_2_freed() -> None:
    """Closed by the program, our FIN acknowledged: the record holds
    FIN_WAIT_2 and the connection is freed at once."""
    def act(lan: Lan, p: Any) -> None:
        p.conn.close()
        fin = p.peer.expect(FIN | ACK)
        p.peer.send(ACK, p.snd, fin.seq + 1)
        assert p.conn.state_name == "FIN_WAIT_2"
    _freed_after(act)


def test_delayed_ack_timer_still_fires() -> None:
    """The delayed-ACK timer is made when first needed: one byte out of
    quick-ack mode is ACKed after the delay, as before."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.rcv.quickack = 0
    peer.send(ACK, p.snd, p.rcv, b"a")
    peer.nothing()
    lan.run(1.0)
    ack = peer.expect(ACK)
    assert ack.ack == p.snd + 1
    assert conn.recv() == b"a"
