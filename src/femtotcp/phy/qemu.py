"""QEMU's socket network backends as devices: ``-netdev stream`` and ``-netdev dgram``.

- Stream (``QemuStreamDevice``): we listen on a Unix socket and QEMU connects
  (``-netdev stream,server=off,addr.type=unix,addr.path=PATH``); every frame
  is preceded by its length, 4 bytes big-endian, no vnet header. A later
  connection replaces the current one (a restarted VM).
- Dgram (``QemuDgramDevice``): we bind a Unix datagram socket, QEMU binds its
  own and sends to ours (``-netdev dgram,local.type=unix,local.path=Q,
  remote.type=unix,remote.path=P``); one frame per datagram, no prefix. We
  answer to the address the last frame came from.

Both read everything ready (until EAGAIN) and never raise for link trouble.
What the peer cannot take at once waits in a bounded queue (stream) or is
dropped and counted (dgram, as a full link would). A stream frame with an
impossible length desynchronises the stream: the connection is dropped and
counted. They register their fds themselves through the loop's ``watch_fd``
(``start(watch)``), since the connected fd changes over the device's life.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from femtotcp.phy.base import Device

Watch = Callable[[int, bool, bool, Any], None]

#: The largest frame either backend carries (QEMU's NET_BUFSIZE is 68 KiB).
MAX_FRAME = 65535 + 18
#: Bytes a stream connection may hold for a slow peer before frames are dropped.
STREAM_QUEUE_MAX = 4 * 1024 * 1024


def recv_frames(sock: socket.socket, counters: Any, batch: int) -> list[tuple[bytes, Any]]:
    """Up to ``batch`` datagrams of QEMU's dgram framing (one frame each), with
    their senders' addresses; a datagram of no frame's size is counted
    (``rx_bad_length``) and dropped, a socket error ends the batch (``rx_error``)."""
    got: list[tuple[bytes, Any]] = []
    for _ in range(batch):
        try:
            frame, addr = sock.recvfrom(MAX_FRAME + 1)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            counters["rx_error"] += 1
            break
        if not 14 <= len(frame) <= MAX_FRAME:
            counters["rx_bad_length"] += 1
            continue
        got.append((frame, addr))
    return got


def unix_path(spec: str, flag: str) -> str:
    """``unix:PATH`` -> PATH, with a message naming ``flag`` otherwise."""
    kind, sep, path = spec.partition(":")
    if kind != "unix" or not sep or not path:
        raise ValueError(f"{flag} {spec}: want unix:PATH")
    if len(os.fsencode(path)) > 107:
        raise ValueError(f"{flag} {spec}: the path is too long for a Unix socket")
    return path


def _clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on (left by a killed process)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError:
        os.unlink(path)       # a datagram socket file, or gone meanwhile
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path}: another process listens there")


class _Acceptor:
    def __init__(self, dev: QemuStreamDevice) -> None:
        self.dev = dev

    def on_readable(self) -> None:
        self.dev._accept()


class QemuStreamDevice(Device):
    def __init__(self, path: str, mtu: int = 1500, name: str = "qemu-stream") -> None:
        super().__init__(name, mtu)
        self.path = path
        _clear_stale(path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                            | socket.SOCK_CLOEXEC)
        try:
            lst.bind(path)
            lst.listen(1)
        except OSError:
            lst.close()
            raise
        self.listener: socket.socket | None = lst
        self.conn: socket.socket | None = None
        self._watch: Watch | None = None
        self._acceptor = _Acceptor(self)
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._want_write = False

    @classmethod
    def from_socket(cls, sock: socket.socket, mtu: int = 1500,
                    name: str = "qemu-socket") -> QemuStreamDevice:
        """A connected stream socket handed over (QEMU ``-netdev socket,fd=N``):
        no listener, the same framing."""
        dev = cls.__new__(cls)
        Device.__init__(dev, name, mtu)
        dev.path = ""
        dev.listener = None
        dev._watch = None
        dev._acceptor = _Acceptor(dev)
        dev._rbuf = bytearray()
        dev._wbuf = bytearray()
        dev._want_write = False
        sock.setblocking(False)
        dev.conn = sock
        return dev

    def start(self, watch: Watch) -> None:
        self._watch = watch
        if self.listener is not None:
            watch(self.listener.fileno(), True, False, self._acceptor)
        if self.conn is not None:
            watch(self.conn.fileno(), True, False, self)

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def _accept(self) -> None:
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.counters["accept_error"] += 1
            return
        self._drop_conn()
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.conn = conn
        self.counters["connections"] += 1
        if self._watch is not None:
            self._watch(conn.fileno(), True, False, self)

    def _drop_conn(self) -> None:
        conn = self.conn
        if conn is None:
            return
        if self._watch is not None:
            self._watch(conn.fileno(), False, False, self)
        conn.close()
        self.conn = None
        self._rbuf.clear()
        self._wbuf.clear()
        self._want_write = False

    def on_readable(self) -> None:
        conn = self.conn
        if conn is None:
            return
        if self._wbuf:
            self._flush()
            if self.conn is None:
                return
        buf = self._rbuf
        frames: list[bytes] = []
        closed = False
        for _ in range(64):
            try:
                data = conn.recv(262144)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            buf += data
            # Split what is complete; keep the rest for the next read.
            pos = 0
            n = len(buf)
            while n - pos >= 4:
                length = int.from_bytes(buf[pos:pos + 4], "big")
                if not 14 <= length <= MAX_FRAME:
                    self.counters["rx_bad_length"] += 1
                    closed = True
                    break
                if n - pos - 4 < length:
                    break
                frames.append(bytes(buf[pos + 4:pos + 4 + length]))
                pos += 4 + length
            del buf[:pos]
            if closed:
                break
        for frame in frames:
            self.deliver(frame)
        if closed:
            self.counters["disconnects"] += 1
            self._drop_conn()

    def _transmit(self, frame: bytes) -> None:
        conn = self.conn
        if conn is None:
            self.counters["tx_not_connected"] += 1
            return
        record = len(frame).to_bytes(4, "big") + frame
        if self._wbuf:
            if len(self._wbuf) + len(record) > STREAM_QUEUE_MAX:
                self.counters["tx_dropped_full"] += 1
                return
            self._wbuf += record
            return
        try:
            n = conn.send(record)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.counters["tx_error"] += 1
            return
        if n < len(record):
            self._wbuf += record[n:]
            self._set_write(True)

    def _flush(self) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            n = conn.send(self._wbuf)
            del self._wbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.counters["tx_error"] += 1
            self._drop_conn()
            return
        if not self._wbuf:
            self._set_write(False)

    def _set_write(self, on: bool) -> None:
        if on != self._want_write and self.conn is not None and self._watch is not None:
            self._want_write = on
            self._watch(self.conn.fileno(), True, on, self)

    def close(self) -> None:
        self._drop_conn()
        if self.listener is not None:
            if self._watch is not None:
                self._watch(self.listener.fileno(), False, False, self._acceptor)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        super().close()


class QemuDgramDevice(Device):
    def __init__(self, path: str, mtu: int = 1500, name: str = "qemu-dgram") -> None:
        super().__init__(name, mtu)
        self.path = path
        _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC)
        try:
            sock.bind(path)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except OSError:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self.peer: Any = None              # the address frames go to (the last sender)
        self.connected = False             # a connected socket: send() to its peer
        self._watch: Watch | None = None

    @classmethod
    def from_socket(cls, sock: socket.socket, mtu: int = 1500,
                    name: str = "qemu-fd") -> QemuDgramDevice:
        """A datagram socket handed over (QEMU ``-netdev dgram``/``socket,fd=N``):
        frames go to its connected peer, or to whoever sent the last one."""
        dev = cls.__new__(cls)
        Device.__init__(dev, name, mtu)
        dev.path = ""
        sock.setblocking(False)
        dev.sock = sock
        dev._watch = None
        dev.peer = None
        try:
            sock.getpeername()
            dev.connected = True
        except OSError:
            dev.connected = False
        return dev

    def start(self, watch: Watch) -> None:
        self._watch = watch
        if self.sock is not None:
            watch(self.sock.fileno(), True, False, self)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        got = recv_frames(sock, self.counters, 128)
        for _frame, addr in got:
            if addr and addr != self.peer:
                self.peer = addr
        for frame, _addr in got:
            self.deliver(frame)

    def _transmit(self, frame: bytes) -> None:
        sock, peer = self.sock, self.peer
        if sock is None or (peer is None and not self.connected):
            self.counters["tx_no_peer"] += 1
            return
        try:
            if self.connected:
                sock.send(frame)
            else:
                sock.sendto(frame, peer)
        except (BlockingIOError, InterruptedError):
            self.counters["tx_dropped_full"] += 1
        except OSError:
            self.counters["tx_error"] += 1

    def close(self) -> None:
        if self.sock is not None:
            if self._watch is not None:
                self._watch(self.sock.fileno(), False, False, self)
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        super().close()
