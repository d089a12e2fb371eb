"""The control socket behind ``femtotcp ctl``: a running stack's window for operators.

``femtotcp serve`` runs a ``ControlServer``: a thread accepting on an AF_UNIX
stream socket whose file has mode 0600 (only root, or the user running serve,
may connect; the peer's credentials are checked as well). A connection carries
one request, a JSON line of at most 64 KiB::

    {"version": 1, "command": "ping", "args": {"host": "192.0.2.1", "count": 3}}

and gets back zero or more progress lines (only ``ping`` sends them) and then
one reply line, the stable document that ``femtotcp ctl --json`` prints and
docs/ctl-json.md describes::

    {"femtotcp_ctl": 1, "ok": true, "command": "ping", "result": {...}}
    {"femtotcp_ctl": 1, "ok": false, "command": "ping",
     "error": {"code": "bad_request", "message": "..."}}

Every answer is gathered in the stack's loop thread (the only thread allowed to
touch protocol state), so a request can at worst get an error reply; it never
disturbs the stack. The client half (``ctl_main``) renders tables for people.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import errno
import json
import logging
import math
import os
import queue
import selectors
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TextIO, TypeVar

from femtotcp.runtime import Runtime
from femtotcp.wire import ip_bytes, ip_str, mac_str

log = logging.getLogger("femtotcp.control")

T = TypeVar("T")

#: The version of the request and reply documents (docs/ctl-json.md).
SCHEMA_VERSION = 1
#: Where ``serve`` puts its socket by default and where ``ctl`` looks for one.
CONTROL_DIR = "/run/femtotcp"
#: The largest request line the server reads.
MAX_REQUEST = 64 * 1024
#: The largest reply line the client accepts.
MAX_REPLY = 16 * 1024 * 1024
#: Connections served at once; more get a "busy" reply.
MAX_CLIENTS = 16
#: Seconds a client has to send its whole request.
REQUEST_TIMEOUT = 5.0
#: Seconds to wait for the loop thread to answer before giving up.
STACK_TIMEOUT = 10.0
#: Longest a ping may run (count x interval).
PING_MAX_DURATION = 3600.0

ANY4 = b"\x00\x00\x00\x00"


class HostLike(Protocol):
    """What the control server needs from ``femtotcp.host.Host``."""

    stack: Any
    runtime: Any
    services: list[Any]
    pcap: Any

    def start_capture(self, path: str) -> None: ...

    def stop_capture(self) -> None: ...


class ControlError(Exception):
    """A request that cannot be answered; ``code`` names the kind (docs/ctl-json.md),
    ``extra`` holds fields some codes add to the error object."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class ControlSocketError(OSError):
    """An OSError whose text is just its message (``femtotcp serve`` prints it)."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


class _ClientGone(Exception):
    """The client hung up while a long command (ping) was streaming progress."""


Emit = Callable[[dict[str, Any]], None]


# -- documents -------------------------------------------------------------------
def ok_document(command: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"femtotcp_ctl": SCHEMA_VERSION, "ok": True, "command": command, "result": result}


def error_document(command: str | None, code: str, message: str,
                   **extra: Any) -> dict[str, Any]:
    return {"femtotcp_ctl": SCHEMA_VERSION, "ok": False, "command": command,
            "error": {"code": code, "message": message, **extra}}


def _json_default(obj: object) -> object:
    return _plain(obj)


def encode(doc: Mapping[str, Any]) -> bytes:
    """One JSON line."""
    return json.dumps(doc, default=_json_default, separators=(",", ":"),
                      allow_nan=False).encode() + b"\n"


def _plain(obj: object) -> Any:
    """Turn a protocol object into JSON values: packed addresses become text."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        if len(raw) in (4, 16):
            return ip_str(raw)
        if len(raw) == 6:
            return mac_str(raw)
        return raw.hex()
    if isinstance(obj, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return _plain(obj._asdict())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    return str(obj)


# -- argument checks (requests are hostile too) ---------------------------------------
def _check_args(args: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ControlError("bad_request", f"unknown argument(s): {', '.join(unknown)[:200]}")


def _arg_int(args: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ControlError("bad_request", f"{name} must be an integer in {low}..{high}")
    return value


def _arg_float(args: Mapping[str, Any], name: str, default: float, low: float,
               high: float) -> float:
    value = args.get(name, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise ControlError("bad_request", f"{name} must be a number in {low:g}..{high:g}")
    return float(value)


def _arg_str(args: Mapping[str, Any], name: str, max_len: int = 1024) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > max_len or "\0" in value:
        raise ControlError("bad_request",
                           f"{name} must be a non-empty string of at most {max_len} characters")
    return value


# -- what the commands gather (these run in the loop thread) ----------------------------
def _endpoint(value: Any) -> tuple[str | None, int | None]:
    """(address text, port) from an (addr bytes, port) pair; (None, None) for none."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None, None
    addr, port = value
    return (ip_str(bytes(addr)) if addr is not None else None,
            int(port) if isinstance(port, int) else None)


def _ms(seconds: Any) -> float | None:
    """Seconds (or None) as milliseconds, three decimals."""
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return round(float(seconds) * 1000.0, 3)
    return None


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return None


def _state_name(v: Any) -> str:
    """RFC 9293 state names: 'ESTABLISHED', 'SYN-RECEIVED', 'TIME-WAIT'."""
    return str(v).upper().replace("_", "-") if v is not None else "UNKNOWN"


def _tcp_rows(stack: Any) -> list[dict[str, Any]]:
    """TCP listeners and connections as ``sockets`` rows (empty without TCP):
    ``tcp.listeners()`` and ``tcp.connections()``, with ``conn.info()``."""
    tcp = getattr(stack, "tcp", None)
    if tcp is None:
        return []
    rows: list[dict[str, Any]] = []
    for lst in tcp.listeners():
        addr, port = _endpoint(lst.local)
        accept = len(lst.accept_queue)
        backlog = int(lst.backlog)
        rows.append({
            "proto": "tcp", "state": "LISTEN",
            "local_address": addr, "local_port": port,
            "peer_address": None, "peer_port": None,
            "recv_q": accept, "send_q": backlog,
            "syn_queue": len(lst.syn_queue), "accept_queue": accept, "backlog": backlog,
        })
    for conn in tcp.connections():
        info: Mapping[str, Any] = conn.info()
        laddr, lport = _endpoint(conn.local)
        raddr, rport = _endpoint(conn.remote)
        error = info.get("error")
        rows.append({
            "proto": "tcp", "state": _state_name(info.get("state")),
            "local_address": laddr, "local_port": lport,
            "peer_address": raddr, "peer_port": rport,
            "recv_q": _int_or_none(info.get("rcv_queue")) or 0,
            "send_q": _int_or_none(info.get("snd_queue")) or 0,
            "rtt_ms": _ms(info.get("rtt")),
            "rttvar_ms": _ms(info.get("rttvar")),
            "rto_ms": _ms(info.get("rto")),
            "cwnd": _int_or_none(info.get("cwnd")),
            "ssthresh": _int_or_none(info.get("ssthresh")),
            "mss": _int_or_none(info.get("mss")),
            "snd_wnd": _int_or_none(info.get("snd_wnd")),
            "rcv_wnd": _int_or_none(info.get("rcv_wnd")),
            "out_of_order_segments": _int_or_none(info.get("ooo_blocks")) or 0,
            "out_of_order_bytes": _int_or_none(info.get("ooo_bytes")) or 0,
            "retransmits": _int_or_none(info.get("retransmits")),
            "error": str(error) if error is not None else None,
        })
    return rows


def _udp_rows(stack: Any) -> list[dict[str, Any]]:
    udp = getattr(stack, "udp", None)
    if udp is None:
        return []
    rows: list[dict[str, Any]] = []
    for (addr, port), ep in sorted(udp.endpoints.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        remote = getattr(ep, "remote", None)
        raddr, rport = _endpoint(remote)
        rows.append({
            "proto": "udp", "state": "ESTABLISHED" if remote is not None else "UNCONN",
            "local_address": ip_str(addr), "local_port": port,
            "peer_address": raddr, "peer_port": rport,
            "recv_q": int(getattr(ep, "queued_bytes", 0)), "send_q": 0,
            "queued_datagrams": len(getattr(ep, "queue", ())),
        })
    return rows


def gather_sockets(host: HostLike) -> dict[str, Any]:
    """``sockets``: UDP endpoints and TCP listeners/connections, like ``ss -tuan``."""
    return {"sockets": _udp_rows(host.stack) + _tcp_rows(host.stack)}


def gather_stats(host: HostLike) -> dict[str, Any]:
    """``stats``: every counter, drops by reason, and what the bounded queues hold."""
    stack = host.stack
    counters = stack.counters
    snapshot = {str(k): int(v) for k, v in sorted(counters.items())}
    drops_fn = getattr(counters, "drops", None)
    drops = ({str(k): int(v) for k, v in drops_fn().items()} if callable(drops_fn) else {})
    reassembly = None
    ipv4 = getattr(stack, "ipv4", None)
    reasm = getattr(ipv4, "reassembly", None) if ipv4 is not None else None
    if reasm is not None:
        r = reasm.stats()
        reassembly = {"datagrams": int(r.get("datagrams", 0)), "bytes": int(r.get("bytes", 0))}
    udp = None
    if getattr(stack, "udp", None) is not None:
        eps = list(stack.udp.endpoints.values())
        udp = {"endpoints": len(eps),
               "queued_datagrams": sum(len(getattr(e, "queue", ())) for e in eps),
               "queued_bytes": sum(int(getattr(e, "queued_bytes", 0)) for e in eps)}
    tcp = None
    if getattr(stack, "tcp", None) is not None:
        rows = _tcp_rows(stack)
        listeners = [r for r in rows if r["state"] == "LISTEN"]
        conns = [r for r in rows if r["state"] != "LISTEN"]
        tcp = {"listeners": len(listeners), "connections": len(conns),
               "syn_queue": sum(r["syn_queue"] for r in listeners),
               "accept_queue": sum(r["accept_queue"] for r in listeners),
               "out_of_order_segments": sum(r["out_of_order_segments"] for r in conns),
               "out_of_order_bytes": sum(r["out_of_order_bytes"] for r in conns),
               "states": _count_states(conns)}
    devices = {}
    for iface in stack.interfaces:
        devices[iface.name] = {str(k): int(v)
                               for k, v in sorted(iface.device.counters.items())}
    return {"counters": snapshot, "drops": drops, "reassembly": reassembly, "udp": udp,
            "tcp": tcp, "devices": devices, "modules": sorted(stack.modules)}


def _count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return dict(sorted(out.items()))


#: Lease fields that hold absolute times on the stack's clock, and their names
#: in the reply as seconds from now.
_LEASE_TIMES = {"obtained": "obtained_ago", "t1": "renew_in", "t2": "rebind_in",
                "expiry": "expires_in", "expires": "expires_in"}


def _dhcp(svc: Any, now: float) -> dict[str, Any]:
    """A DHCP client's state and lease (services/dhcp.py ``DhcpClient.describe``)."""
    describe = getattr(svc, "describe", None)
    if callable(describe):
        raw: Any = describe()
    else:
        lease = getattr(svc, "lease", None)
        raw = {"state": getattr(svc, "state", None)}
        if lease is not None:
            lease_describe = getattr(lease, "describe", None)
            raw.update(_plain(lease_describe(now) if callable(lease_describe) else lease))
    doc = _plain(raw)
    if not isinstance(doc, dict):
        return {"state": None, "lease": doc}
    doc.setdefault("state", None)
    for field, name in _LEASE_TIMES.items():
        v = doc.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and doc.get(name) is None:
            doc[name] = round(now - v if name == "obtained_ago" else v - now, 1)
    return doc


def gather_addr(host: HostLike) -> dict[str, Any]:
    """``addr``: each interface's addresses with their origin, and any DHCP lease."""
    stack = host.stack
    now = stack.now
    clients = [s for s in host.services if hasattr(s, "lease")]
    out = []
    for iface in stack.interfaces:
        addrs = [{"address": ip_str(a.addr), "prefixlen": a.prefixlen, "origin": a.origin,
                  "tentative": bool(a.tentative),
                  "broadcast": ip_str(a.broadcast) if a.prefixlen < 31 else None}
                 for a in iface.ipv4]
        mine = [c for c in clients if getattr(c, "iface", None) is iface]
        if not mine and iface is stack.interfaces[0]:
            mine = [c for c in clients if getattr(c, "iface", None) is None]
        dhcp = _dhcp(mine[0], now) if mine else None
        out.append({"name": iface.name, "index": iface.index, "mac": mac_str(iface.mac),
                    "mtu": iface.mtu, "link": "raw_ip" if iface.raw_ip else "ethernet",
                    "addresses": addrs, "dhcp": dhcp})
    return {"interfaces": out}


def gather_routes(host: HostLike) -> dict[str, Any]:
    return {"routes": [_plain(r.describe()) for r in host.stack.routes.routes]}


def gather_neigh(host: HostLike) -> dict[str, Any]:
    arp = host.stack.arp
    return {"neighbours": [_plain(e) for e in arp.entries()] if arp is not None else []}


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
        self.handlers: dict[str, Callable[[dict[str, Any], Emit], dict[str, Any]]] = {
            "stats": self._cmd_stats, "addr": self._cmd_addr, "route": self._cmd_route,
            "neigh": self._cmd_neigh, "sockets": self._cmd_sockets,
            "resolve": self._cmd_resolve, "ping": self._cmd_ping,
            "capture": self._cmd_capture,
        }

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
        log.info("control socket %s", self.path)
        return self

    def close(self) -> None:
        """Stop accepting, end open connections, remove the socket file. Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
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
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        end = time.monotonic() + 3.0
        for w in workers:
            w.join(max(0.0, end - time.monotonic()))
        with self._lock:
            stragglers = list(self._conns)
        for c in stragglers:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
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
                busy = len(self._conns) >= MAX_CLIENTS
                if not busy:
                    self._conns.add(conn)
            if busy:
                self._reply_and_close(conn, error_document(
                    None, "busy", f"too many control connections (at most {MAX_CLIENTS})"))
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
                    self._send(conn, {"femtotcp_ctl": SCHEMA_VERSION, "progress": progress})
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
        conn.settimeout(REQUEST_TIMEOUT)
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
        deadline = time.monotonic() + REQUEST_TIMEOUT
        buf = bytearray()
        searched = 0
        while True:
            nl = buf.find(b"\n", searched)
            if nl >= 0:
                line = bytes(buf[:nl])
                break
            searched = len(buf)
            if len(buf) > MAX_REQUEST:
                raise ControlError("too_large",
                                   f"request longer than {MAX_REQUEST} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError("timeout", f"no complete request within "
                                   f"{REQUEST_TIMEOUT:g} s")
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                raise ControlError("timeout", f"no complete request within "
                                   f"{REQUEST_TIMEOUT:g} s") from None
            if not chunk:
                if not buf.strip():
                    return None
                line = bytes(buf)
                break
            buf += chunk
        if len(line) > MAX_REQUEST:
            raise ControlError("too_large", f"request longer than {MAX_REQUEST} bytes")
        return line

    # -- dispatch -------------------------------------------------------------------
    def handle_request(self, request: object, emit: Emit | None = None) -> dict[str, Any]:
        """Answer one parsed request with a reply document (never raises, except
        when ``emit`` finds the client gone)."""
        command: str | None = None
        try:
            if not isinstance(request, dict):
                raise ControlError("bad_request", "a request is a JSON object")
            version = request.get("version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise ControlError("bad_request", f"unsupported request version {version!r}"
                                   f" (this server speaks {SCHEMA_VERSION})"[:200])
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
        """Run ``fn(*args)`` in the stack's loop thread (like ``runtime.call``, but a
        stuck or stopped loop makes an error reply instead of a hung client)."""
        runtime: Runtime = self.host.runtime
        try:
            return runtime.call(fn, *args, timeout=timeout or STACK_TIMEOUT)
        except TimeoutError:
            raise ControlError("stack_unresponsive",
                               f"the stack did not answer within "
                               f"{timeout or STACK_TIMEOUT:g} s") from None

    # -- commands -------------------------------------------------------------------
    def _cmd_stats(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_stats, self.host)

    def _cmd_addr(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_addr, self.host)

    def _cmd_route(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_routes, self.host)

    def _cmd_neigh(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_neigh, self.host)

    def _cmd_sockets(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_sockets, self.host)

    def _cmd_capture(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("action", "path"))
        action = args.get("action")
        host = self.host
        if action == "start":
            path = _arg_str(args, "path", 4096)
            if not os.path.isabs(path):
                raise ControlError("bad_request", "capture path must be absolute")
            try:
                self.call(host.start_capture, path)
            except OSError as exc:
                raise ControlError("failed", f"cannot capture to {path}: "
                                   f"{exc.strerror or exc}") from None
            except ValueError as exc:
                raise ControlError("failed", f"cannot capture to {path}: {exc}") from None
            return {"capturing": True, "path": path, "packets": 0}
        if action == "stop":
            _check_args(args, ("action",))

            def stop() -> tuple[str | None, int]:
                pcap = host.pcap
                path = getattr(pcap, "path", None) if pcap is not None else None
                packets = int(getattr(pcap, "packets", 0)) if pcap is not None else 0
                host.stop_capture()
                return path, packets

            path_, packets = self.call(stop)
            return {"capturing": False, "path": path_, "packets": packets}
        raise ControlError("bad_request", "capture action must be 'start' or 'stop'")

    def _cmd_resolve(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("name", "timeout"))
        name = _arg_str(args, "name", 1024)
        timeout = _arg_float(args, "timeout", 10.0, 0.1, 60.0)
        return self._resolve(name, timeout)

    def _resolve(self, name: str, timeout: float) -> dict[str, Any]:
        """An A lookup through the stack's resolver (services/dns.py)."""
        stack = self.host.stack
        done: queue.Queue[Any] = queue.Queue()

        def start() -> None:
            resolver = getattr(stack, "resolver", None)
            if resolver is None:
                raise ControlError("unavailable", "no resolver: start serve with --dns IP "
                                   "to load the dns module")
            from femtotcp.wire import dns as wire_dns
            resolver.resolve(name, wire_dns.A, done.put)

        self.call(start)
        try:
            result = done.get(timeout=timeout)
        except queue.Empty:
            raise ControlError("resolve_failed", f"{name}: no answer within {timeout:g} s",
                               dns_error="TIMEOUT") from None
        error = getattr(result, "error", None)
        addresses = [ip_str(a) for a in getattr(result, "addresses", [])]
        if error is None and not addresses:
            error = "NODATA"
        if error is not None:
            text = _DNS_ERRORS.get(str(error), str(error))
            raise ControlError("resolve_failed", f"{name}: {text}", dns_error=str(error))
        server = getattr(result, "server", None)
        return {"name": name, "addresses": addresses,
                "cname_chain": list(getattr(result, "cname_chain", [])),
                "ttl": int(getattr(result, "ttl", 0)),
                "server": ip_str(server) if server else None,
                "source": str(getattr(result, "source", "dns"))}

    def _cmd_ping(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("host", "count", "interval", "wait", "size"))
        target = _arg_str(args, "host", 1024)
        count = _arg_int(args, "count", 4, 1, 100000)
        interval = _arg_float(args, "interval", 1.0, 0.01, 60.0)
        wait = _arg_float(args, "wait", 2.0, 0.01, 60.0)
        size = _arg_int(args, "size", 56, 0, 65507 - 8)
        if (count - 1) * interval > PING_MAX_DURATION:
            raise ControlError("bad_request", f"a ping may last at most "
                               f"{PING_MAX_DURATION:g} s (count x interval)")
        stack = self.host.stack
        if getattr(stack, "icmp", None) is None:
            raise ControlError("unavailable", "the icmp4 module is not loaded")
        try:
            dst = ip_bytes(target)
        except ValueError:
            dst = ip_bytes(self._resolve(target, 10.0)["addresses"][0])
        if len(dst) != 4:
            raise ControlError("unavailable", "IPv6 ping is not in this build")
        return self._ping(target, dst, count, interval, wait, size, emit)

    def _ping(self, target: str, dst: bytes, count: int, interval: float, wait: float,
              size: int, emit: Emit) -> dict[str, Any]:
        """RFC 792 echo from the stack, like ping(8): one request per interval, then
        wait up to ``wait`` seconds after the last for stragglers."""
        stack = self.host.stack
        replies: queue.Queue[tuple[float, tuple[bytes, int, bytes, int]]] = queue.Queue()
        payload = bytes((0x10 + i) & 0xFF for i in range(size))

        def open_endpoint() -> Any:
            ep = stack.icmp.open_echo()
            clock = stack.clock

            def readable() -> None:
                while (r := ep.recv()) is not None:
                    replies.put((clock(), r))

            ep.on_readable = readable
            return ep

        def send(seq: int) -> tuple[float, int]:
            t = stack.clock()
            return t, int(ep.send(dst, seq, payload))

        ep = self.call(open_endpoint)
        sent: dict[int, float] = {}
        got: set[int] = set()
        rtts: list[float] = []
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        dups = 0
        seq = 0
        next_send = time.monotonic()
        deadline = math.inf
        try:
            while True:
                if self._closing.is_set():
                    raise ControlError("shutting_down", "femtotcp serve is shutting down")
                now = time.monotonic()
                if seq < count and now >= next_send:
                    seq += 1
                    t, err = self.call(send, seq)
                    sent[seq] = t
                    if err:
                        e = {"seq": seq, "error": os.strerror(err), "errno": err}
                        errors.append(e)
                        emit(e)
                    next_send += interval
                    if seq == count:
                        deadline = time.monotonic() + wait
                    continue
                outstanding = len(sent) - len(got) - len(errors)
                if seq == count and (outstanding <= 0 or now >= deadline):
                    break
                until = next_send if seq < count else deadline
                try:
                    t_reply, (src, rseq, data, ttl) = replies.get(
                        timeout=min(max(0.0, until - now), 0.5))
                except queue.Empty:
                    continue
                if rseq not in sent:
                    continue      # not one of ours (our identifier, a stale sequence)
                dup = rseq in got
                rtt = round((t_reply - sent[rseq]) * 1000.0, 3)
                row = {"seq": rseq, "from": ip_str(src), "ttl": ttl, "bytes": 8 + len(data),
                       "rtt_ms": rtt, "duplicate": dup, "payload_ok": data == payload}
                if dup:
                    dups += 1
                else:
                    got.add(rseq)
                    rtts.append(rtt)
                rows.append(row)
                emit(row)
        finally:
            try:
                self.call(ep.close)
            except ControlError:
                pass
        transmitted = len(sent)
        received = len(got)
        summary = None
        if rtts:
            avg = sum(rtts) / len(rtts)
            mdev = math.sqrt(sum((r - avg) ** 2 for r in rtts) / len(rtts))
            summary = {"min": min(rtts), "avg": round(avg, 3), "max": max(rtts),
                       "mdev": round(mdev, 3)}
        return {"host": target, "address": ip_str(dst), "transmitted": transmitted,
                "received": received, "duplicates": dups, "errors": len(errors),
                "loss_percent": round(100.0 * (transmitted - received) / transmitted, 1)
                if transmitted else 0.0,
                "replies": rows, "send_errors": errors, "rtt_ms": summary}


#: What the resolver's error names mean, for people.
_DNS_ERRORS = {
    "NXDOMAIN": "no such name (NXDOMAIN)",
    "NODATA": "the name has no IPv4 address (NODATA)",
    "TIMEOUT": "no answer from the DNS servers (TIMEOUT)",
    "NOSERVERS": "no DNS servers configured (NOSERVERS)",
    "SERVFAIL": "the DNS server failed (SERVFAIL)",
    "REFUSED": "the DNS server refused (REFUSED)",
    "BADNAME": "not a valid domain name (BADNAME)",
    "FORMERR": "the DNS server could not parse the query (FORMERR)",
    "NOTIMP": "the DNS server does not implement the query (NOTIMP)",
    "CNAME_LOOP": "the CNAME chain loops or is too long (CNAME_LOOP)",
    "TRUNCATED": "the answer was truncated and TCP failed (TRUNCATED)",
}


def parse_request(line: bytes) -> object:
    """Decode one request line; ControlError("bad_request") on anything malformed."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ControlError("bad_request", "the request is not UTF-8") from None
    if not text.strip():
        raise ControlError("bad_request", "empty request")
    try:
        return json.loads(text)
    except RecursionError:
        raise ControlError("bad_request", "the request nests too deeply") from None
    except ValueError as exc:
        raise ControlError("bad_request", f"the request is not JSON: {exc}"[:200]) from None


# -- the client -------------------------------------------------------------------------
def request(path: str, command: str, args: Mapping[str, Any] | None = None,
            timeout: float = 15.0,
            on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Send one request to a control server and return its reply document.

    ``timeout`` bounds each wait for a line, so a long ping that keeps sending
    progress does not time out."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(encode({"version": SCHEMA_VERSION, "command": command,
                          "args": dict(args or {})}))
        buf = bytearray()
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError("the control server sent something that is not a "
                                     "JSON object")
                if "progress" in doc and "ok" not in doc:
                    if on_progress is not None:
                        on_progress(doc["progress"])
                    continue
                return doc
            if len(buf) > MAX_REPLY:
                raise ValueError(f"reply longer than {MAX_REPLY} bytes")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the control server closed the connection "
                                      "without a reply")
            buf += chunk


def default_control_path(directory: str | None = None) -> str:
    """The one control socket in CONTROL_DIR, or ControlError asking for --control."""
    d = directory or CONTROL_DIR
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        names = []
    except PermissionError:
        raise ControlError("no_server", f"cannot read {d} (are you root?); "
                           "give the socket with --control PATH") from None
    socks = []
    for n in names:
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode):
                socks.append(n)
        except OSError:
            continue
    if len(socks) == 1:
        return os.path.join(d, socks[0])
    if not socks:
        raise ControlError("no_server", f"no control socket in {d}: is `femtotcp serve` "
                           "running? Give the socket with --control PATH")
    raise ControlError("no_server", f"several control sockets in {d} ({', '.join(socks)}): "
                       "choose one with --control PATH")


def _add_common(p: argparse.ArgumentParser, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument("--control", metavar="PATH", default=default,
                   help=f"the serve's control socket (default: the one socket in "
                        f"{CONTROL_DIR}/)")
    p.add_argument("--json", action="store_true",
                   default=False if top else argparse.SUPPRESS,
                   help="print the reply as a JSON document (see docs/ctl-json.md)")


def _positive_int(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not a positive count")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return v


def add_ctl_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``femtotcp ctl`` flags and commands (cli.py calls this)."""
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="ctl_command", metavar="COMMAND")
    sub.required = True
    simple = {"stats": "every counter, drops by reason, queue occupancy",
              "addr": "addresses, their origin, the DHCP lease",
              "route": "the routing table",
              "neigh": "the neighbour (ARP) cache",
              "sockets": "UDP and TCP sockets, like ss -tuan"}
    for name, text in simple.items():
        _add_common(sub.add_parser(name, help=text), top=False)
    r = sub.add_parser("resolve", help="look a name up through the stack's resolver")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--timeout", type=_seconds, default=10.0, metavar="S")
    _add_common(r, top=False)
    p = sub.add_parser("ping", help="ICMP echo from the stack")
    p.add_argument("host", metavar="HOST")
    p.add_argument("-c", "--count", type=_positive_int, default=4, metavar="N",
                   help="requests to send (default 4)")
    p.add_argument("-i", "--interval", type=_seconds, default=1.0, metavar="S",
                   help="seconds between requests (default 1)")
    p.add_argument("-W", "--wait", type=_seconds, default=2.0, metavar="S",
                   help="seconds to wait for replies after the last request (default 2)")
    p.add_argument("-s", "--size", type=int, default=56, metavar="N",
                   help="payload bytes (default 56)")
    _add_common(p, top=False)
    c = sub.add_parser("capture", help="start or stop a pcap capture")
    csub = c.add_subparsers(dest="capture_action", metavar="start FILE | stop")
    csub.required = True
    cs = csub.add_parser("start", help="capture every frame to FILE")
    cs.add_argument("file", metavar="FILE")
    _add_common(cs, top=False)
    _add_common(csub.add_parser("stop", help="stop the capture"), top=False)
    _add_common(c, top=False)


def build_request(args: argparse.Namespace) -> tuple[str, dict[str, Any], float]:
    """(command, args, client timeout) from parsed ``ctl`` arguments."""
    cmd = args.ctl_command
    if cmd == "resolve":
        return cmd, {"name": args.name, "timeout": args.timeout}, args.timeout + 10.0
    if cmd == "ping":
        req = {"host": args.host, "count": args.count, "interval": args.interval,
               "wait": args.wait, "size": args.size}
        return cmd, req, args.interval + args.wait + STACK_TIMEOUT + 5.0
    if cmd == "capture":
        if args.capture_action == "start":
            return cmd, {"action": "start", "path": os.path.abspath(args.file)}, 15.0
        return cmd, {"action": "stop"}, 15.0
    return cmd, {}, 15.0


def ctl_main(args: argparse.Namespace, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """``femtotcp ctl``: 0 on success, 1 on an error reply or no server."""
    out = out or sys.stdout
    err = err or sys.stderr
    command, req, timeout = build_request(args)
    as_json = bool(getattr(args, "json", False))
    try:
        path = args.control or default_control_path()
        progress = None if as_json else (lambda p: _print_progress(command, p, out))
        doc = request(path, command, req, timeout=timeout, on_progress=progress)
    except ControlError as exc:
        doc = error_document(command, exc.code, exc.message)
    except OSError as exc:
        doc = error_document(command, "no_server", _connect_error(
            args.control or CONTROL_DIR, exc, timeout))
    except ValueError as exc:
        doc = error_document(command, "bad_reply", f"bad reply from the control server: {exc}")
    if as_json:
        out.write(json.dumps(doc, indent=2) + "\n")
    elif doc.get("ok"):
        out.write(render(command, doc.get("result") or {}))
    else:
        e = doc.get("error") or {}
        err.write(f"femtotcp ctl: error: {e.get('message', 'unknown error')}\n")
    out.flush()
    if not doc.get("ok"):
        return 1
    if command == "ping" and not (doc.get("result") or {}).get("received"):
        return 1
    return 0


def _connect_error(path: str, exc: OSError, timeout: float) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no control socket at {path} (is `femtotcp serve` running?)"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing answers on {path} (a stale socket: femtotcp serve is not running)"
    if isinstance(exc, PermissionError):
        return f"permission denied on {path} (the control socket is root's)"
    if isinstance(exc, TimeoutError):
        return f"no answer from femtotcp serve on {path} within {timeout:g} s"
    return f"{path}: {exc.strerror or exc}"


# -- tables for people ------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [headers] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    return "\n".join(lines) + "\n"


def _hostport(addr: str | None, port: int | None) -> str:
    a = "*" if addr in (None, "0.0.0.0", "::") else str(addr)
    if a != "*" and ":" in a:
        a = f"[{a}]"
    return f"{a}:{'*' if port is None else port}"


def _print_progress(command: str, p: dict[str, Any], out: TextIO) -> None:
    if command != "ping":
        return
    if "error" in p:
        out.write(f"icmp_seq={p.get('seq')}: {p['error']}\n")
    else:
        out.write(f"{p.get('bytes')} bytes from {p.get('from')}: icmp_seq={p.get('seq')} "
                  f"ttl={p.get('ttl')} time={p.get('rtt_ms')} ms"
                  f"{' (DUP!)' if p.get('duplicate') else ''}\n")
    out.flush()


def render(command: str, r: dict[str, Any]) -> str:
    """The reply ``r`` of ``command`` as text for people."""
    fn = _RENDERERS.get(command)
    return fn(r) if fn is not None else json.dumps(r, indent=2) + "\n"


def _render_stats(r: dict[str, Any]) -> str:
    parts = []
    reasm = r.get("reassembly")
    if reasm is not None:
        parts.append(f"reassembly: {reasm['datagrams']} datagrams, {reasm['bytes']} bytes held")
    udp = r.get("udp")
    if udp is not None:
        parts.append(f"udp: {udp['endpoints']} endpoints, {udp['queued_datagrams']} datagrams "
                     f"({udp['queued_bytes']} bytes) queued")
    tcp = r.get("tcp")
    if tcp is not None:
        parts.append(f"tcp: {tcp['listeners']} listening, {tcp['connections']} connections, "
                     f"syn queue {tcp['syn_queue']}, accept queue {tcp['accept_queue']}, "
                     f"out-of-order segments {tcp['out_of_order_segments']}")
    else:
        parts.append("tcp: not loaded")
    text = "\n".join(parts) + "\n\n"
    drops = r.get("drops") or {}
    if drops:
        text += "drops by reason:\n" + table(
            ["REASON", "COUNT"], [[k, v] for k, v in drops.items()]) + "\n"
    text += table(["COUNTER", "VALUE"], [[k, v] for k, v in (r.get("counters") or {}).items()])
    for dev, counters in (r.get("devices") or {}).items():
        if counters:
            text += f"\ndevice {dev}:\n" + table(["COUNTER", "VALUE"],
                                                [[k, v] for k, v in counters.items()])
    return text


def _render_addr(r: dict[str, Any]) -> str:
    lines = []
    for i in r.get("interfaces", []):
        lines.append(f"{i['index']}: {i['name']}  {i['link']} {i['mac']}  mtu {i['mtu']}")
        for a in i.get("addresses", []):
            extra = " tentative" if a.get("tentative") else ""
            brd = f" brd {a['broadcast']}" if a.get("broadcast") else ""
            lines.append(f"    inet {a['address']}/{a['prefixlen']}{brd} {a['origin']}{extra}")
        dhcp = i.get("dhcp")
        if dhcp is not None and dhcp.get("address"):
            lines.append(f"    dhcp {dhcp.get('state')}: {dhcp['address']} from "
                         f"{dhcp.get('server')}, router {dhcp.get('router') or '-'}, "
                         f"dns {' '.join(dhcp.get('dns') or []) or '-'}")
            lines.append(f"        lease {dhcp.get('lease_time')} s, renew in "
                         f"{dhcp.get('renew_in')} s, rebind in {dhcp.get('rebind_in')} s, "
                         f"expires in {dhcp.get('expires_in')} s")
        elif dhcp is not None:
            lines.append(f"    dhcp {dhcp.get('state')}: no lease yet")
    return "\n".join(lines) + "\n"


def _render_route(r: dict[str, Any]) -> str:
    return table(["DESTINATION", "GATEWAY", "INTERFACE", "ORIGIN"],
                 [[x.get("destination"), x.get("gateway"), x.get("interface"), x.get("origin")]
                  for x in r.get("routes", [])])


def _render_neigh(r: dict[str, Any]) -> str:
    return table(["ADDRESS", "MAC", "STATE", "AGE", "INTERFACE", "PENDING"],
                 [[n.get("address"), n.get("mac"), n.get("state"), n.get("age"),
                   n.get("interface"), n.get("pending")] for n in r.get("neighbours", [])])


def _render_sockets(r: dict[str, Any]) -> str:
    rows = []
    for s in r.get("sockets", []):
        rows.append([s["proto"], s["state"], s.get("recv_q"), s.get("send_q"),
                     _hostport(s.get("local_address"), s.get("local_port")),
                     _hostport(s.get("peer_address"), s.get("peer_port")),
                     s.get("rtt_ms"), s.get("rto_ms"), s.get("cwnd")])
    return table(["PROTO", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "RTT(ms)",
                  "RTO(ms)", "CWND"], rows)


def _render_resolve(r: dict[str, Any]) -> str:
    text = "".join(f"{r['name']}  {a}\n" for a in r.get("addresses", []))
    if r.get("cname_chain"):
        text += f"aliases: {' -> '.join(r['cname_chain'])}\n"
    return text


def _render_ping(r: dict[str, Any]) -> str:
    text = (f"--- {r['host']} ping statistics ---\n"
            f"{r['transmitted']} packets transmitted, {r['received']} received, "
            + (f"+{r['duplicates']} duplicates, " if r.get("duplicates") else "")
            + (f"+{r['errors']} errors, " if r.get("errors") else "")
            + f"{r['loss_percent']:g}% packet loss\n")
    rtt = r.get("rtt_ms")
    if rtt:
        text += (f"rtt min/avg/max/mdev = {rtt['min']:.3f}/{rtt['avg']:.3f}/"
                 f"{rtt['max']:.3f}/{rtt['mdev']:.3f} ms\n")
    return text


def _render_capture(r: dict[str, Any]) -> str:
    if r.get("capturing"):
        return f"capturing to {r['path']}\n"
    if r.get("path") is None:
        return "no capture was running\n"
    return f"capture stopped: {r['path']} ({r.get('packets', 0)} packets)\n"


_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "stats": _render_stats, "addr": _render_addr, "route": _render_route,
    "neigh": _render_neigh, "sockets": _render_sockets, "resolve": _render_resolve,
    "ping": _render_ping, "capture": _render_capture,
}
