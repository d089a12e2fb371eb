"""A plug into a VDE2 switch (``vde_switch`` from Debian's vde2 package).

The VDE2 wire protocol, as libvdeplug speaks it (version 3):

1. connect a stream socket to ``<switch dir>/ctl``;
2. bind a datagram socket to a path of our own (next to the switch's control
   socket, as libvdeplug does, else in a private temporary directory);
3. send the request: magic 0xFEEDFACE, version 3, request type (0, plus the
   wanted port number << 8), our datagram socket's ``sockaddr_un`` and a
   free-text description;
4. the switch answers with the ``sockaddr_un`` of its data socket for our port
   (or closes the connection to refuse); connect the datagram socket to it.

From then on every datagram is one Ethernet frame, both ways. The control
connection must stay open: closing it unplugs the port. Like the TAP device,
``_transmit`` never raises: a switch that went away (ECONNREFUSED/ENOENT) is
counted as ``tx_link_down``, full buffers as ``tx_nobufs``/``tx_again``.

Offload: a VDE switch carries ordinary Ethernet frames, so the device states
none (``gro``, ``offload`` and ``checksum_rx`` False): frames larger than the
MTU are dropped by the stack, and every checksum is verified.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import struct
import tempfile

from femtotcp.phy.base import Device

log = logging.getLogger("femtotcp.phy.vde")

SWITCH_MAGIC = 0xFEEDFACE
VERSION = 3
REQ_NEW_CONTROL = 0
MAX_DESCRIPTION = 128
_SUN_PATH = 108
_SOCKADDR_UN = struct.Struct("=H108s")
_REQUEST_HEAD = struct.Struct("=III")
_MAX_FRAME = 65536 + 18

_TX_ERRORS = {
    errno.ECONNREFUSED: "tx_link_down",
    errno.ENOENT: "tx_link_down",
    errno.ENOTCONN: "tx_link_down",
    errno.ENOBUFS: "tx_nobufs",
    errno.EAGAIN: "tx_again",
    errno.EMSGSIZE: "tx_too_big",
}


def _sockaddr_un(path: bytes) -> bytes:
    return _SOCKADDR_UN.pack(socket.AF_UNIX, path)


class VdeDevice(Device):
    """Plug into the VDE2 switch whose control directory is ``switch``.

    ``port`` 0 lets the switch choose a free port; another number asks for it."""

    def __init__(self, switch: str | os.PathLike[str], port: int = 0, name: str = "vde0",
                 mtu: int = 1500, description: str = "femtotcp", timeout: float = 5.0,
                 max_batch: int = 128) -> None:
        if not isinstance(port, int) or not 0 <= port <= 0xFFFFFF:
            raise ValueError(f"port must be an int in 0..{0xFFFFFF}, got {port!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        super().__init__(name, mtu)
        self.switch = os.fspath(switch)
        self.max_batch = max_batch
        self._ctl: socket.socket | None = None
        self._data: socket.socket | None = None
        self._own_path: str | None = None
        self._tmpdir: str | None = None
        self._buf = bytearray(_MAX_FRAME)
        self._view = memoryview(self._buf)
        self.peer_path = ""
        try:
            self._connect(port, description, timeout)
        except BaseException:
            self.close()
            raise

    # -- plugging in -------------------------------------------------------------
    def _ctl_path(self) -> str:
        return os.path.join(self.switch, "ctl") if os.path.isdir(self.switch) else self.switch

    def _connect(self, port: int, description: str, timeout: float) -> None:
        ctl_path = self._ctl_path()
        self._ctl = ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        ctl.settimeout(timeout)
        try:
            ctl.connect(ctl_path)
        except (FileNotFoundError, NotADirectoryError):
            raise OSError(errno.ENOENT, f"no VDE switch at {self.switch!r} ({ctl_path} does "
                          f"not exist; start one with `vde_switch -s {self.switch}`)") from None
        except ConnectionRefusedError:
            raise OSError(errno.ECONNREFUSED, f"VDE switch at {self.switch!r} is not running "
                          f"(nobody listens on {ctl_path})") from None
        except PermissionError as exc:
            raise OSError(exc.errno, f"cannot connect to VDE switch {ctl_path}: permission "
                          "denied") from None
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"VDE switch at {self.switch!r} did not accept "
                          f"within {timeout}s") from None
        self._data = data = socket.socket(socket.AF_UNIX,
                                          socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        own = self._bind_data(data, os.path.dirname(ctl_path))
        descr = f"{description} pid={os.getpid()}".encode(errors="replace")[:MAX_DESCRIPTION - 1]
        request = (_REQUEST_HEAD.pack(SWITCH_MAGIC, VERSION, REQ_NEW_CONTROL + (port << 8))
                   + _sockaddr_un(own) + descr)
        try:
            ctl.sendall(request)
            reply = ctl.recv(_SOCKADDR_UN.size)
        except TimeoutError:
            hint = f" (is port {port} beyond the switch's --numports?)" if port else ""
            raise OSError(errno.ETIMEDOUT, f"VDE switch at {self.switch!r} did not answer "
                          f"within {timeout}s{hint}") from None
        except OSError as exc:
            raise OSError(exc.errno, f"VDE switch at {self.switch!r} dropped the connection: "
                          f"{exc.strerror}") from None
        if len(reply) < 3:
            what = f"port {port}" if port else "a port"
            raise OSError(errno.ECONNREFUSED, f"VDE switch at {self.switch!r} refused "
                          f"{what} (in use, out of range, or no free port)")
        _family, raw = _SOCKADDR_UN.unpack(reply.ljust(_SOCKADDR_UN.size, b"\0"))
        peer = raw.split(b"\0", 1)[0]
        try:
            data.connect(peer)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot reach the VDE switch's data socket "
                          f"{peer!r}: {exc.strerror}") from None
        self.peer_path = peer.decode(errors="replace")
        data.setblocking(False)
        ctl.setblocking(False)

    def _bind_data(self, data: socket.socket, directory: str) -> bytes:
        """Bind our datagram socket next to the switch's ``ctl`` (as libvdeplug
        does), else in a private temporary directory."""
        pid = os.getpid()
        for n in range(1000):
            path = os.path.join(directory, f".ftcp{pid:05d}-{n:05d}").encode()
            if len(path) >= _SUN_PATH:
                break
            try:
                data.bind(path)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                break
            self._own_path = os.fsdecode(path)
            return path
        self._tmpdir = tempfile.mkdtemp(prefix="ftvde")
        path = os.path.join(self._tmpdir, "data").encode()
        if len(path) >= _SUN_PATH:
            raise OSError(errno.ENAMETOOLONG, f"socket path {path!r} is too long")
        data.bind(path)
        self._own_path = os.fsdecode(path)
        return path

    # -- data path -----------------------------------------------------------------
    def fileno(self) -> int:
        return self._data.fileno() if self._data is not None else -1

    def on_readable(self) -> None:
        data = self._data
        if data is None:
            return
        view = self._view
        batch: list[bytes] = []
        for _ in range(self.max_batch):
            try:
                n = data.recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters["rx_error"] += 1
                break
            if n <= 0:
                break
            batch.append(bytes(view[:n]))
        for frame in batch:
            self.deliver(frame)

    def _transmit(self, frame: bytes) -> None:
        data = self._data
        if data is None:
            self.counters["tx_closed"] += 1
            return
        try:
            data.send(frame)
        except OSError as exc:
            self.counters[_TX_ERRORS.get(exc.errno or 0, "tx_error")] += 1

    def close(self) -> None:
        """Unplug (closing the control connection frees the port). Idempotent."""
        super().close()
        for attr in ("_data", "_ctl"):
            sock = getattr(self, attr)
            if sock is not None:
                sock.close()
                setattr(self, attr, None)
        if self._own_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own_path)
            self._own_path = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __repr__(self) -> str:
        return f"<VdeDevice {self.name} switch={self.switch} peer={self.peer_path or '-'}>"
