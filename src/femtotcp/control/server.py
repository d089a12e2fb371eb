"""The control socket server behind ``femtotcp ctl``: a running stack's window for operators.

``femtotcp serve`` runs a ``ControlServer``: a thread accepting on an AF_UNIX
stream socket whose file has mode 0600 (only root, or the user running serve,
may connect; the peer's credentials are checked as well). Each connection gets
a thread that reads one request (protocol.py), answers it with a command
(commands.py) and closes. ``check_free`` keeps to one serve per socket path.

Every answer is gathered in the stack's loop thread (the only thread allowed to
touch protocol state), so a request can at worst get an error reply; it never
disturbs the stack.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from femtotcp.control import protocol
from femtotcp.control.commands import Commands, Handler
from femtotcp.control.gather import HostLike
from femtotcp.control.protocol import (
    ControlError,
    ControlSocketError,
    Emit,
    encode,
    error_document,
    ok_document,
    parse_request,
)
from femtotcp.runtime import Runtime

log = logging.getLogger("femtotcp.control")

T = TypeVar("T")


class _ClientGone(Exception):
    """The client hung up while a long command (ping) was streaming progress."""


def _shutdown(conns: list[socket.socket], how: int) -> None:
    for c in conns:
        try:
            c.shutdown(how)
        except OSError:
            pass


# -- check_free: one serve per control path --------------------------------------------
def _answers(path: str) -> bool:
    """True when a server accepts connections on ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(1.0)
    try:
        s.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (BlockingIOError, TimeoutError):
        return True      # alive but its backlog is full
    finally:
        s.close()
    return True


def _check_path(path: str) -> str:
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > 107:
        raise ControlSocketError(
            errno.ENAMETOOLONG, f"control socket path is too long "
            f"({len(os.fsencode(path))} bytes, at most 107): {path}")
    return path


def check_free(path: str) -> Any:
    """Make ``path`` ready for a new control socket, or raise OSError saying why not;
    returns True (typed Any: cli.py keeps it in the variable that later holds the
    ControlServer).

    A socket file nobody answers on is left over from a serve that died: removed.
    The parent directory is created with mode 0700."""
    path = _check_path(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlSocketError(errno.EEXIST, f"{path} exists and is not a socket; "
                                 "remove it or choose another --control path")
    if _answers(path):
        raise ControlSocketError(errno.EADDRINUSE, "another femtotcp serve is already "
                                 f"running with control socket {path}")
    os.unlink(path)
    log.info("removed stale control socket %s", path)
    return True


# -- the server ----------------------------------------------------------------------
class ControlServer:
    """Serves ``femtotcp ctl`` requests for ``host`` on the Unix socket ``path``."""

    def __init__(self, host: HostLike, path: str) -> None:
        self.host = host
        self.path = _check_path(path)
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.sockets: Any = None
        self.commands = Commands(host, self.call, self._closing)
        self.handlers: dict[str, Handler] = self.commands.table()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> ControlServer:
        """Bind (mode 0600) and start accepting in a thread."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_mask = os.umask(0o177)   # the file is born 0600: no window for others
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketError(exc.errno, f"control socket {self.path} already "
                                         "exists (another femtotcp serve?)") from None
            raise ControlSocketError(exc.errno, f"cannot create control socket {self.path}: "
                                     f"{exc.strerror}") from None
        finally:
            os.umask(old_mask)
        try:
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="femtotcp-control",
                                        daemon=True)
        self._thread.start()
        # Sockets for attached programs (`femtotcp run --control PATH`), beside us.
        from femtotcp.api.remote import service_path
        from femtotcp.control.sockets import SocketService
        self.sockets = SocketService(self.host.stack, self.host.runtime,
                                     service_path(self.path), self._check_peer).start()
        log.info("control socket %s", self.path)
        return self

    def close(self) -> None:
        """Stop accepting, end open connections, remove the socket file. Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self.sockets is not None:
            self.sockets.close()
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            conns = list(self._conns)
            workers = list(self._workers)
        # Wake the readers; a command still running (a ping) sees _closing and
        # ends with a "shutting_down" reply, which it can still write.
        _shutdown(conns, socket.SHUT_RD)
        end = time.monotonic() + 3.0
        for w in workers:
            w.join(max(0.0, end - time.monotonic()))
        with self._lock:
            stragglers = list(self._conns)
        _shutdown(stragglers, socket.SHUT_RDWR)
        if self._sock is not None:
            self._sock.close()
        self._unlink()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _unlink(self) -> None:
        """Remove the socket file, unless another serve has replaced it meanwhile."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if self._inode is not None and (st.st_dev, st.st_ino) != self._inode:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # -- accepting ------------------------------------------------------------------
    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closing.is_set():
                for key, _ in sel.select():
                    if key.fileobj is sock:
                        self._accept_ready(sock)
        except Exception:
            log.exception("control server accept loop failed")
        finally:
            sel.close()

    def _accept_ready(self, sock: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # EMFILE and friends: keep serving the others
                log.warning("control socket accept failed: %s", exc)
                return
            conn.setblocking(True)
            with self._lock:
                busy = len(self._conns) >= protocol.MAX_CLIENTS
                if not busy:
                    self._conns.add(conn)
            if busy:
                self._reply_and_close(conn, error_document(
                    None, "busy",
                    f"too many control connections (at most {protocol.MAX_CLIENTS})"))
                continue
            worker = threading.Thread(target=self._serve_connection, args=(conn,),
                                      name="femtotcp-control-conn", daemon=True)
            with self._lock:
                self._workers.add(worker)
            worker.start()

    @staticmethod
    def _reply_and_close(conn: socket.socket, doc: dict[str, Any]) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(encode(doc))
        except OSError:
            pass
        finally:
            conn.close()

    # -- one connection ---------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            try:
                self._check_peer(conn)
                line = self._read_line(conn)
                if line is None:
                    return           # connected and hung up: a liveness probe
                request = parse_request(line)
            except ControlError as exc:
                self._send(conn, error_document(None, exc.code, exc.message))
                if exc.code == "too_large":
                    self._drain(conn)
                return

            def emit(progress: dict[str, Any]) -> None:
                try:
                    self._send(conn, {"femtotcp_ctl": protocol.SCHEMA_VERSION,
                                      "progress": progress})
                except OSError as exc:
                    raise _ClientGone() from exc

            try:
                doc = self.handle_request(request, emit)
            except _ClientGone:
                return
            self._send(conn, doc)
        except OSError:
            pass     # the client went away; nothing to tell anyone
        except Exception:
            log.exception("control connection failed")
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())
            conn.close()

    @staticmethod
    def _send(conn: socket.socket, doc: Mapping[str, Any]) -> None:
        conn.settimeout(protocol.REQUEST_TIMEOUT)
        conn.sendall(encode(doc))

    @staticmethod
    def _drain(conn: socket.socket, limit: int = 1 << 20, seconds: float = 1.0) -> None:
        """After refusing an oversized request, swallow (a bounded amount of) the
        rest so the client's send completes and it reads the error reply."""
        try:
            conn.shutdown(socket.SHUT_WR)
            end = time.monotonic() + seconds
            left = limit
            while left > 0:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                conn.settimeout(remaining)
                chunk = conn.recv(65536)
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:
            pass

    @staticmethod
    def _check_peer(conn: socket.socket) -> None:
        """Defence in depth beside the file mode: only root or our own user."""
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
        except OSError:
            return
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (0, os.geteuid()):
            raise ControlError("permission_denied", "only root may use the control socket")

    @staticmethod
    def _read_line(conn: socket.socket) -> bytes | None:
        """The request: bytes up to the first newline (or EOF), at most MAX_REQUEST."""
        deadline = time.monotonic() + protocol.REQUEST_TIMEOUT
        buf = bytearray()
        searched = 0
        while True:
            nl = buf.find(b"\n", searched)
            if nl >= 0:
                line = bytes(buf[:nl])
                break
            searched = len(buf)
            if len(buf) > protocol.MAX_REQUEST:
                raise ControlError("too_large",
                                   f"request longer than {protocol.MAX_REQUEST} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError("timeout", f"no complete request within "
                                   f"{protocol.REQUEST_TIMEOUT:g} s")
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                raise ControlError("timeout", f"no complete request within "
                                   f"{protocol.REQUEST_TIMEOUT:g} s") from None
            if not chunk:
                if not buf.strip():
                    return None
                line = bytes(buf)
                break
            buf += chunk
        if len(line) > protocol.MAX_REQUEST:
            raise ControlError("too_large",
                               f"request longer than {protocol.MAX_REQUEST} bytes")
        return line

    # -- dispatch -------------------------------------------------------------------
    def handle_request(self, request: object, emit: Emit | None = None) -> dict[str, Any]:
        """Answer one parsed request with a reply document (never raises, except
        when ``emit`` finds the client gone)."""
        command: str | None = None
        try:
            if not isinstance(request, dict):
                raise ControlError("bad_request", "a request is a JSON object")
            version = request.get("version", protocol.SCHEMA_VERSION)
            if version != protocol.SCHEMA_VERSION:
                raise ControlError("bad_request", f"unsupported request version {version!r}"
                                   f" (this server speaks {protocol.SCHEMA_VERSION})"[:200])
            cmd = request.get("command")
            if not isinstance(cmd, str) or not cmd:
                raise ControlError("bad_request", "the request names no command")
            command = cmd[:64]
            handler = self.handlers.get(cmd)
            if handler is None:
                raise ControlError("unknown_command", f"unknown command {command!r}; known: "
                                   f"{', '.join(self.handlers)}")
            args = request.get("args", {})
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise ControlError("bad_request", "args must be a JSON object")
            if self._closing.is_set():
                raise ControlError("shutting_down", "femtotcp serve is shutting down")
            result = handler(args, emit or (lambda progress: None))
            return ok_document(command, result)
        except ControlError as exc:
            return error_document(command, exc.code, exc.message, **exc.extra)
        except _ClientGone:
            raise
        except Exception as exc:
            log.exception("control command %r failed", command)
            return error_document(command, "internal", f"internal error: {exc!r}"[:300])

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` in the stack's loop thread (``Runtime.call``; a stuck or
        stopped loop makes an error reply instead of a hung client)."""
        runtime: Runtime = self.host.runtime
        limit = timeout or protocol.STACK_TIMEOUT
        try:
            return runtime.call(fn, *args, timeout=limit)
        except TimeoutError:
            raise protocol.stack_unresponsive(limit) from None
