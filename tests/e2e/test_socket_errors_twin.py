"""Socket calls whose answers Linux defines closely, compared with the kernel's
(tests/e2e/twin.py) for both kinds of femtotcp socket, in-process and attached:

- a send on a TCP socket that is not connected: EPIPE (never ENOTCONN); a
  connect on a 4-tuple in use: EADDRNOTAVAIL; accept on a UDP socket:
  EOPNOTSUPP; shutdown(SHUT_RDWR), then recv gives EOF and send EPIPE;
- connect again after a connect that went through the socket layer's
  "connecting" state (non-blocking or with a timeout): 0 once, then EISCONN;
  after a failed connect, a blocking socket connects again at once (its
  options kept), one with a timeout after one ECONNABORTED;
- one pending error per socket (Linux's sk_err): recv, send and SO_ERROR each
  take it, whichever comes first; after the peer's FIN a reset shows in send
  and SO_ERROR only, recv keeps giving EOF;
- 0.0.0.0 as a destination: this host (its loopback), for TCP and UDP;
- a broadcast destination (limited or the subnet's) without SO_BROADCAST: EACCES;
- a datagram longer than the buffer: MSG_TRUNC in recvmsg's flags, its real
  length from recv(MSG_TRUNC), recvmsg_into's scatter;
- urgent data (MSG_OOB): a Linux peer reads the urgent byte out of band and
  the rest in order; a UDP send with MSG_OOB is EOPNOTSUPP.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import twin

PROGRAM = Path(__file__).resolve().parent / "programs_socket_errors.py"


@contextlib.contextmanager
def _peer_services(t: twin.Twin) -> Iterator[None]:
    """In the peer's namespace: TCP echo on 7, TCP 13 closing each connection at
    once (FIN), TCP 21 resetting each at once (SO_LINGER 0), UDP echo on 7."""
    with t.peer():
        listeners = {port: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                     for port in (7, 13, 21)}
        for port, lst in listeners.items():
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind((twin.PEER, port))
            lst.listen(16)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((twin.PEER, 7))
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        # A case may end its connection with a reset (a close with data
        # unread, as on Linux): the echo just stops.
        with conn, contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve(port: int, lst: socket.socket) -> None:
        lst.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if port == 7:
                threading.Thread(target=echo, args=(conn,), daemon=True).start()
                continue
            if port == 21:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def uecho() -> None:
        udp.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = udp.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            udp.sendto(data, addr)

    threads = [threading.Thread(target=serve, args=item, daemon=True)
               for item in listeners.items()]
    threads.append(threading.Thread(target=uecho, daemon=True))
    for th in threads:
        th.start()
    try:
        yield
    finally:
        stop.set()
        for th in threads:
            th.join(5)
        for lst in listeners.values():
            lst.close()
        udp.close()


def _answers(t: twin.Twin) -> dict[str, object]:
    with _peer_services(t):
        return dict(json.loads(t.ask(f"run {twin.PEER}", timeout=60)))


@pytest.fixture(scope="module")
def linux() -> dict[str, object]:
    with twin.on_kernel(PROGRAM) as k:
        answers = _answers(k)
    # The rules this test is about, as the kernel gave them (so that a change
    # of the program that loses a case shows here, not as a silent match).
    assert answers["send on a fresh socket"] == "EPIPE", answers
    assert answers["connect with a timeout, then connect twice"] == ["ok", "EISCONN"], answers
    assert answers["RST: recv, recv, send, SO_ERROR"] == [
        "ECONNRESET", "bytes:", "EPIPE", 0], answers
    assert answers["sendto a subnet broadcast"] == "EACCES", answers
    assert answers["a 100-byte datagram: recvmsg"][1] is True, answers
    assert answers["shutdown(SHUT_RD): recv, recv, then the peer's echo"] == [
        "bytes:" + b"before".hex(), "bytes:", 3, "aft", "bytes:" + b"er".hex(), "bytes:",
        "ok"], answers
    assert answers["SO_REUSEADDR bind over TIME_WAIT, the old socket's SO_REUSEADDR False"] \
        == "EADDRINUSE", answers
    return answers


@pytest.mark.parametrize("mode", ["in-process", "attached"])
def test_socket_errors_as_on_linux(linux: dict[str, object], mode: str) -> None:
    with twin.on_femtotcp(PROGRAM, attached=mode == "attached") as f:
        femto = _answers(f)
    diff = {case: (femto.get(case), linux[case]) for case in linux
            if femto.get(case) != linux[case]}
    assert not diff, f"femtotcp ({mode}) differs from Linux (femtotcp, linux): {diff}"


@pytest.mark.parametrize("mode", ["in-process", "attached"])
def test_urgent_data_reaches_a_linux_peer_out_of_band(mode: str) -> None:
    """send(b"!", MSG_OOB) between two ordinary sends: the segment carries URG
    and the urgent pointer, so the peer's Linux takes b"!" out of the stream
    (recv(MSG_OOB) returns it) and the other bytes arrive in order."""
    with twin.on_femtotcp(PROGRAM, attached=mode == "attached") as f:
        with f.peer():
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.bind((twin.PEER, 30))
            lst.listen(1)
        lst.settimeout(20)
        got: dict[str, object] = {}

        def peer() -> None:
            conn, _ = lst.accept()
            with conn:
                conn.settimeout(10)
                # Linux stops a read at the urgent mark and forgets the urgent
                # byte once a read passes it: read up to it, take it, go on.
                normal = b""
                while len(normal) < 4:
                    data = conn.recv(4 - len(normal))
                    if not data:
                        break
                    normal += data
                for _ in range(100):
                    try:
                        got["oob"] = conn.recv(1, socket.MSG_OOB)
                        break
                    except BlockingIOError:      # (the urgent byte is not here yet)
                        time.sleep(0.05)
                while data := conn.recv(100):
                    normal += data
                got["normal"] = normal

        reader = threading.Thread(target=peer)
        reader.start()
        try:
            assert f.ask(f"urgent {twin.PEER} 30") == "1"
        finally:
            reader.join(20)
            lst.close()
    assert got == {"normal": b"datamore", "oob": b"!"}


def _urgent_in(t: twin.Twin, inline: bool) -> dict[str, object]:
    """The program connects to the peer's port 31, whose Linux sends b"ab",
    b"!" with MSG_OOB and b"cd", then closes."""
    with t.peer():
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # (the last one's TIME_WAIT)
        lst.bind((twin.PEER, 31))
        lst.listen(1)
    lst.settimeout(20)

    def peer() -> None:
        conn, _ = lst.accept()
        with conn:
            conn.sendall(b"ab")
            conn.send(b"!", socket.MSG_OOB)
            conn.sendall(b"cd")
            time.sleep(0.5)

    sender = threading.Thread(target=peer)
    sender.start()
    try:
        return dict(json.loads(t.ask(f"urgent_in {twin.PEER} 31 {int(inline)}", timeout=30)))
    finally:
        sender.join(20)
        lst.close()


@pytest.fixture(scope="module")
def linux_urgent() -> dict[bool, dict[str, object]]:
    with twin.on_kernel(PROGRAM) as k:
        answers = {inline: _urgent_in(k, inline) for inline in (False, True)}
    # What this test is about, as the kernel gave it: the urgent byte out of
    # the stream, announced by POLLPRI, a read stopping at its mark.
    assert answers[False]["recv MSG_OOB"] == "bytes:21" and answers[False]["the rest"] == "cd"
    assert answers[True]["the rest"] == "!cd" and answers[True]["POLLPRI"] is True
    return answers


@pytest.mark.parametrize("mode", ["in-process", "attached"])
def test_urgent_data_from_a_linux_peer_comes_out_of_band(
        linux_urgent: dict[bool, dict[str, object]], mode: str) -> None:
    """The stack hands the peer's urgent byte (the byte before its urgent
    pointer, as Linux reads it) to the program's socket out of band: POLLPRI
    and select's exceptional set, SIOCATMARK at the mark, a read that stops
    there, recv(MSG_OOB), and the byte gone from the stream; with
    SO_OOBINLINE it stays in the stream. As Linux, answer for answer."""
    with twin.on_femtotcp(PROGRAM, attached=mode == "attached") as f:
        femto = {inline: _urgent_in(f, inline) for inline in (False, True)}
    assert femto == linux_urgent
