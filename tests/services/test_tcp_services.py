"""TCP echo (RFC 862), discard (RFC 863) and chargen (RFC 864) between two stacks."""

from __future__ import annotations

import random

from femtolan import addr, make_lan

from femtotcp.services import chargen, discard, tcp_echo


def _pump(lan, conn, data: bytes, timeout: float = 60) -> bytes:  # type: ignore[no-untyped-def]
    sent = 0
    got = bytearray()
    done = [False]

    def event() -> None:
        nonlocal sent
        while sent < len(data):
            n = conn.send(data[sent:sent + 65536])
            if n == 0:
                break
            sent += n
        if sent == len(data) and not conn.wr_shut:
            conn.shutdown(1)
        while (d := conn.recv(1 << 20)) is not None:
            if d == b"":
                done[0] = True
                break
            got.extend(d)

    conn.on_event = event
    event()
    assert lan.run_until(lambda: done[0], timeout)
    return bytes(got)


def test_tcp_echo_returns_every_byte() -> None:
    lan = make_lan(2, faults=dict(loss=0.02, reorder=0.02))
    server = tcp_echo.start(lan.stacks[0], 7)
    data = random.Random(1).randbytes(1_000_000)
    conn = lan.stacks[1].tcp.connect(addr(0), 7)
    assert _pump(lan, conn, data, 300) == data
    assert server.echoed == len(data)
    lan.run(1)
    assert not server.connections
    server.close()


def test_discard_counts_and_answers_nothing() -> None:
    lan = make_lan(2)
    server = discard.start(lan.stacks[0], 9)
    conn = lan.stacks[1].tcp.connect(addr(0), 9)
    assert _pump(lan, conn, b"x" * 300_000) == b""
    assert server.bytes_received == 300_000
    server.close()


def test_chargen_streams_the_rfc864_pattern() -> None:
    lan = make_lan(2)
    server = chargen.start(lan.stacks[0], 19)
    conn = lan.stacks[1].tcp.connect(addr(0), 19)
    got = bytearray()

    def event() -> None:
        while (d := conn.recv(1 << 20)):
            got.extend(d)

    conn.on_event = event
    assert lan.run_until(lambda: len(got) >= 500_000, 60)
    lines = bytes(got).split(b"\r\n")
    first = lines[0]
    assert first == bytes(range(0x20, 0x20 + 72))
    assert lines[1] == bytes(range(0x21, 0x21 + 72))
    assert all(len(line) == 72 for line in lines[:-1])
    assert lines[94][:2] == b"~ " and lines[95] == first          # the cycle of 95
    conn.close()
    lan.run(1)
    assert not server.connections
    assert server.bytes_sent >= 500_000
    server.close()


def test_services_close_their_connections() -> None:
    lan = make_lan(2)
    server = tcp_echo.start(lan.stacks[0], 7)
    conn = lan.stacks[1].tcp.connect(addr(0), 7)
    lan.run(0.1)
    assert len(server.connections) == 1
    server.close()
    lan.run(1)
    assert conn.recv(10) == b""           # the service's FIN
    assert lan.stacks[0].tcp.listeners() == []
