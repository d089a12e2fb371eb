"""A connection's whole life decides the same with the receive fast path as
without it.

``Connection.fast_input`` takes every segment of a connection not in
TIME_WAIT (header prediction, or ``input`` straight from the fast path), so
handshakes, data, closes, resets and SYN cookies are played on two stacks over
an in-memory wire twice, once with both stacks' fast path and once without
(``Stack.fast_receive = None``), with the same secrets: every TCP segment each
stack sends, what each program reads, and every counter must be the same.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from femtotcp.phy.memory import Wire
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.proto.tcp.isn import IsnGenerator, SynCookies
from femtotcp.proto.tcp.ports import EphemeralPorts
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, tcp

A = ip_bytes("192.0.2.1")
B = ip_bytes("192.0.2.2")


def _segments(frames: list[bytes]) -> list[tuple[Any, ...]]:
    out = []
    for frame in frames:
        eth, body = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_IPV4:
            continue
        ip, payload = ipv4.parse(body)
        if ip.proto == tcp.PROTO:
            h, data = tcp.parse(payload)
            out.append((ip.src, ip.dst, h.src_port, h.dst_port, h.seq, h.ack, h.flags,
                        h.window, bytes(h.options), bytes(data)))
    return out


def _play(fast: bool, cookies: bool) -> tuple[list[Any], list[Any], dict[str, int],
                                               dict[str, int]]:
    loop = SimLoop()
    wire = Wire(loop)
    stacks = []
    for name, dev, mac, addr, secret in (("a", wire.a, "02:00:00:00:00:01", "192.0.2.1/24",
                                          b"a"), ("b", wire.b, "02:00:00:00:00:02",
                                                  "192.0.2.2/24", b"b")):
        cfg = TcpConfig(max_syn_backlog=0) if cookies and name == "b" else TcpConfig()
        st = Stack(name, config=StackConfig(tcp=cfg))
        st.add_interface(dev, mac=mac_bytes(mac), ipv4=addr)
        loop.add_stack(st)
        st.start()
        assert st.tcp is not None
        st.tcp.isn = IsnGenerator(secret * 32)
        st.tcp.cookies = SynCookies(secret * 32)
        st.tcp.ports = EphemeralPorts(32768, 60999, secret * 32)
        if not fast:
            st.fast_receive = None
        stacks.append(st)
    a, b = stacks
    assert a.tcp is not None and b.tcp is not None
    sent: list[bytes] = []
    wire.a.add_capture(lambda f, out: sent.append(f) if out else None)
    wire.b.add_capture(lambda f, out: sent.append(f) if out else None)
    loop.run(duration=0)
    lst = b.tcp.listen(bytes(4), 7)
    log: list[Any] = []
    server_first = [False]

    def serve() -> None:
        while (conn := lst.accept()) is not None:
            def ev(conn: Any = conn) -> None:
                try:
                    data = conn.recv(65536)
                except OSError as exc:
                    log.append(("b error", exc.errno))
                    conn.on_event = None
                    return
                if data:
                    log.append(("b got", data))
                    conn.send(data.upper())
                    if server_first[0]:
                        conn.close()
                elif data is not None and not conn.orphaned:
                    log.append(("b eof", conn.state_name))
                    conn.close()
            conn.on_event = ev
            ev()
    lst.on_event = serve

    def client(payload: bytes, sport: int = 0) -> Any:
        conn = a.tcp.connect(B, 7, sport=sport)

        def ev() -> None:
            if conn.state_name == "ESTABLISHED" and not conn.segs_out > 2:
                conn.send(payload)
            try:
                data = conn.recv(65536)
            except OSError as exc:
                log.append(("a error", exc.errno))
                conn.on_event = None
                return
            if data:
                log.append(("a got", data))
                conn.close()
            elif data is not None and not conn.orphaned:
                log.append(("a eof", conn.state_name))
                conn.close()
        conn.on_event = ev
        return conn

    # Ordinary lives: the client closes first (and keeps TIME_WAIT).
    for i in range(3):
        c = client(b"hello %d" % i)
        loop.run(duration=1)
        log.append(("a state", c.state_name))
    # The server closes first: it keeps TIME_WAIT, and a new SYN on the same
    # 4-tuple with a higher sequence number reuses it (RFC 6191).
    server_first[0] = True
    c = client(b"again", sport=40000)
    loop.run(duration=1)
    log.append(("a state", c.state_name))
    c = client(b"reuse", sport=40000)
    loop.run(duration=1)
    log.append(("a state", c.state_name))
    server_first[0] = False
    # Refused: nobody listens on port 9.
    r = a.tcp.connect(B, 9)
    loop.run(duration=1)
    log.append(("refused", r.error == errno.ECONNREFUSED))
    # An abort in the middle of a connection: the peer sees the RST.
    c = a.tcp.connect(B, 7)
    loop.run(duration=1)
    c.abort()
    loop.run(duration=1)
    # Let every TIME_WAIT run out.
    loop.run(duration=2 * a.tcp.config.msl + 5)
    log.append(("left", len(a.tcp.connections()), len(b.tcp.connections())))
    return (_segments(sent), log, dict(a.counters.snapshot()), dict(b.counters.snapshot()))


@pytest.mark.parametrize("cookies", [False, True])
def test_connection_life_is_the_same_with_and_without_the_fast_path(cookies: bool) -> None:
    fast = _play(True, cookies)
    full = _play(False, cookies)
    assert fast[1] == full[1]
    assert fast[0] == full[0]
    assert fast[2] == full[2]
    assert fast[3] == full[3]
    # The scenario reached what it meant to.
    log = fast[1]
    assert ("a got", b"HELLO 2") in log and ("a got", b"REUSE") in log
    assert ("refused", True) in log
    assert log[-1] == ("left", 0, 0)
    counters = fast[3]
    assert counters["tcp.time_wait_reused"] == 1
    assert (counters.get("tcp.syncookies_accepted", 0) > 0) == cookies
