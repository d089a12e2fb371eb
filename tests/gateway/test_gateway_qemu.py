"""QEMU's socket framings as devices, over socketpairs and Unix sockets (no root):
length-prefixed stream frames split across reads, a bad length drops the
connection, a slow peer's queue is bounded; datagrams go to the last sender."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from femtotcp.phy.qemu import (
    MAX_FRAME,
    STREAM_QUEUE_MAX,
    QemuDgramDevice,
    QemuStreamDevice,
    unix_path,
)

FRAME_A = bytes(range(60))
FRAME_B = b"\x02" * 1514


class Watches:
    """Records what a device asks the loop to select on."""

    def __init__(self) -> None:
        self.fds: dict[int, tuple[bool, bool, Any]] = {}

    def __call__(self, fd: int, read: bool, write: bool, handler: Any) -> None:
        if read or write:
            self.fds[fd] = (read, write, handler)
        else:
            self.fds.pop(fd, None)


def _stream_pair() -> tuple[QemuStreamDevice, socket.socket, Watches, list[bytes]]:
    ours, qemu = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    dev = QemuStreamDevice.from_socket(ours)
    watches = Watches()
    dev.start(watches)
    got: list[bytes] = []
    dev.set_receiver(got.append)
    return dev, qemu, watches, got


def test_stream_frames_split_anywhere_are_put_back_together() -> None:
    dev, qemu, watches, got = _stream_pair()
    assert watches.fds[dev.conn.fileno()][:2] == (True, False)   # type: ignore[union-attr]
    wire = b"".join(len(f).to_bytes(4, "big") + f for f in (FRAME_A, FRAME_B))
    for cut in (1, 3, 5, 64, 70):
        qemu.sendall(wire[:cut])
        dev.on_readable()
        qemu.sendall(wire[cut:])
        dev.on_readable()
    assert got == [FRAME_A, FRAME_B] * 5
    dev.send(FRAME_B)
    assert qemu.recv(65536) == len(FRAME_B).to_bytes(4, "big") + FRAME_B
    dev.close()
    qemu.close()


def test_a_stream_length_out_of_range_drops_the_connection() -> None:
    dev, qemu, watches, got = _stream_pair()
    qemu.sendall((MAX_FRAME + 1).to_bytes(4, "big") + b"x" * 16)
    dev.on_readable()
    assert got == [] and dev.counters["rx_bad_length"] == 1 and not dev.connected
    assert watches.fds == {}
    dev.send(FRAME_A)                  # no peer: counted, not raised
    assert dev.counters["tx_not_connected"] == 1
    qemu.close()


def test_a_slow_stream_peer_gets_a_bounded_queue() -> None:
    dev, qemu, watches, got = _stream_pair()
    frame = b"\x02" * 60000
    for _ in range(2 * STREAM_QUEUE_MAX // len(frame)):
        dev.send(frame)
    assert dev.counters["tx_dropped_full"] > 0
    assert len(dev._wbuf) <= STREAM_QUEUE_MAX
    fd = dev.conn.fileno()             # type: ignore[union-attr]
    assert watches.fds[fd][:2] == (True, True)      # waits to write the rest
    # Drain what QEMU would read; the device flushes and stops asking to write.
    qemu.setblocking(False)
    for _ in range(10000):
        try:
            while qemu.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        dev.on_readable()
        if not dev._wbuf:
            break
    assert not dev._wbuf and watches.fds[fd][:2] == (True, False)
    dev.close()
    qemu.close()


def test_a_qemu_stream_listener_takes_a_connection_and_removes_its_file(
        tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    dev = QemuStreamDevice(path)
    watches = Watches()
    dev.start(watches)
    got: list[bytes] = []
    dev.set_receiver(got.append)
    qemu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    qemu.connect(path)
    acceptor = watches.fds[dev.listener.fileno()][2]   # type: ignore[union-attr]
    acceptor.on_readable()
    assert dev.connected
    qemu.sendall(len(FRAME_A).to_bytes(4, "big") + FRAME_A)
    dev.on_readable()
    assert got == [FRAME_A]
    dev.close()
    qemu.close()
    assert not os.path.exists(path)


def test_a_stale_socket_file_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()                      # the file stays, nobody listens
    dev = QemuStreamDevice(path)
    with pytest.raises(OSError, match="another process listens"):
        QemuStreamDevice(path)
    dev.close()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OSError, match="not a socket"):
        QemuStreamDevice(str(tmp_path / "plain"))


def test_datagrams_answer_the_last_sender(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.dgram")
    dev = QemuDgramDevice(path)
    watches = Watches()
    dev.start(watches)
    got: list[bytes] = []
    dev.set_receiver(got.append)
    dev.send(FRAME_A)                  # nobody has spoken yet
    assert dev.counters["tx_no_peer"] == 1
    qemu = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    qemu.bind(str(tmp_path / "qemu.dgram"))
    qemu.sendto(FRAME_B, path)
    qemu.sendto(b"short", path)        # not a frame: counted
    dev.on_readable()
    assert got == [FRAME_B] and dev.counters["rx_bad_length"] == 1
    dev.send(FRAME_A)
    assert qemu.recv(65536) == FRAME_A
    dev.close()
    qemu.close()
    assert not os.path.exists(path)


def test_a_connected_datagram_socketpair() -> None:
    ours, qemu = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev = QemuDgramDevice.from_socket(ours)
    dev.start(Watches())
    got: list[bytes] = []
    dev.set_receiver(got.append)
    dev.send(FRAME_A)
    assert qemu.recv(65536) == FRAME_A
    qemu.send(FRAME_B)
    dev.on_readable()
    assert got == [FRAME_B]
    dev.close()
    qemu.close()


@pytest.mark.parametrize("spec", ["tcp:1.2.3.4:5", "unix:", "/tmp/x"])
def test_unix_path_wants_unix_colon_path(spec: str) -> None:
    with pytest.raises(ValueError, match="want unix:PATH"):
        unix_path(spec, "--qemu-stream")
