"""Sockets with the stdlib's interface, over a femtotcp stack.

``socket(family, type, proto, network=net)`` behaves like ``socket.socket``:
AF_INET with SOCK_STREAM (TCP), SOCK_DGRAM (UDP) and SOCK_DGRAM with
IPPROTO_ICMP (Linux "ping sockets"). It *is* a ``socket.socket`` (a subclass),
so ``select``, ``selectors``, asyncio, ``makefile`` and ``settimeout`` work on it
unchanged.

How: every stack socket owns one end ("P") of a Unix socketpair; the program
holds P, and the stack's loop thread holds the other end ("Q").

* TCP: the loop thread pumps bytes between Q and the stack's connection, with
  flow control both ways (it reads Q only while the connection has send room,
  and takes data from the connection only while Q accepts it). Reading, writing,
  blocking, timeouts and readiness of P are therefore the kernel's own: P is
  readable when stack data (or EOF) is there and writable while there is send
  room, and a blocked ``sendall`` wakes when the pump moves on. Before a
  non-blocking connect completes, P's send buffer is filled so that P is not
  writable (asyncio waits for writability, then reads SO_ERROR).
* Listening: Q writes one byte per connection ready to accept; ``accept``
  reads one byte from P (with the socket's own timeout) and takes one
  connection from the loop thread.
* UDP / ICMP: a SOCK_SEQPACKET pair; each datagram goes to P as one record
  with a small header carrying its source address (or an error number).

Operations that need the stack (connect, bind, listen, accept, sendto,
options) run in the loop thread through the runtime; blocking waits happen in
the calling thread. Errors are the stdlib's (``ConnectionRefusedError``,
``TimeoutError``, ``OSError(EADDRINUSE)``, ``socket.gaierror``...).
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import select
import selectors
import socket as _std
import struct
import sys
import threading
import time as _time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from femtotcp.wire import ip_bytes, ip_str

if TYPE_CHECKING:
    from femtotcp.runtime import Runtime
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.api.socket")
T = TypeVar("T")

#: The real socket class, captured before any patching.
_RealSocket = _std.socket

AF_INET = _std.AF_INET
AF_INET6 = _std.AF_INET6
AF_UNIX = _std.AF_UNIX
SOCK_STREAM = _std.SOCK_STREAM
SOCK_DGRAM = _std.SOCK_DGRAM
SOCK_RAW = _std.SOCK_RAW
SOCK_SEQPACKET = _std.SOCK_SEQPACKET
SOCK_NONBLOCK: int = getattr(_std, "SOCK_NONBLOCK", 0)
SOCK_CLOEXEC: int = getattr(_std, "SOCK_CLOEXEC", 0)
IPPROTO_TCP = _std.IPPROTO_TCP
IPPROTO_UDP = _std.IPPROTO_UDP
IPPROTO_ICMP = _std.IPPROTO_ICMP
IPPROTO_IP = _std.IPPROTO_IP
SOL_SOCKET = _std.SOL_SOCKET
SHUT_RD = _std.SHUT_RD
SHUT_WR = _std.SHUT_WR
SHUT_RDWR = _std.SHUT_RDWR
timeout = TimeoutError
error = OSError
gaierror = _std.gaierror
herror = _std.herror
_GLOBAL_DEFAULT_TIMEOUT = _std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]

ANY4 = b"\x00\x00\x00\x00"
BROADCAST4 = b"\xff\xff\xff\xff"
CHUNK = 65536            # bytes moved per pump step
PAIR_BUF = 65536         # SO_SNDBUF of each socketpair end (Linux doubles it)
DGRAM_PAIR_BUF = 262144  # room for a few maximum-size datagrams towards the program
DEFAULT_BACKLOG = 128

# Datagram records on the seqpacket pair: kind, address length, port (or errno), address.
_REC = struct.Struct("!BBH16s")
_KIND_DATA = 0
_KIND_ERROR = 1
_LINGER = struct.Struct("ii")

_SO_REUSEPORT: int = getattr(_std, "SO_REUSEPORT", -1)
_TCP_KEEPIDLE: int = getattr(_std, "TCP_KEEPIDLE", -1)
_TCP_KEEPINTVL: int = getattr(_std, "TCP_KEEPINTVL", -1)
_TCP_KEEPCNT: int = getattr(_std, "TCP_KEEPCNT", -1)
_TCP_USER_TIMEOUT: int = getattr(_std, "TCP_USER_TIMEOUT", -1)
_IP_TTL: int = getattr(_std, "IP_TTL", 2)
_IP_TOS: int = getattr(_std, "IP_TOS", 1)
_IPPROTO_IPV6: int = getattr(_std, "IPPROTO_IPV6", 41)


def __getattr__(name: str) -> Any:
    """Everything else (constants, ``inet_aton``, ...) is the stdlib's."""
    return getattr(_std, name)


def _oserror(err: int, what: str | None = None) -> OSError:
    """``OSError(err)``, which Python turns into the matching subclass
    (ConnectionRefusedError, BrokenPipeError, ...)."""
    msg = os.strerror(err)
    return OSError(err, f"{msg} ({what})" if what else msg)


# -- the network a socket belongs to ---------------------------------------------------------

class Network:
    """A stack and the runtime that drives it, as programs see them.

    Offers the module-level helpers of the ``socket`` module for this stack:
    ``socket``, ``create_connection``, ``create_server``, ``getaddrinfo``,
    ``gethostbyname``... ``hosts`` maps names to IPv4 addresses (text) and is
    consulted before the stack's DNS resolver (when it has one)."""

    def __init__(self, stack: Stack, runtime: Runtime,
                 hosts: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.runtime = runtime
        self.hosts: dict[str, str] = {"localhost": "127.0.0.1"}
        if hosts:
            self.hosts.update(hosts)
        self.read_etc_hosts = True
        #: Links the loop thread serves (loop thread only).
        self.links: set[_Link] = set()
        #: TCP ports bound but not yet listening or connected (loop thread only).
        self.reserved: dict[tuple[bytes, int], _TcpLink] = {}
        #: Seconds a name lookup may take (None: the resolver's own budget).
        self.resolve_timeout: float | None = None

    # -- running things in the loop thread ------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the loop thread and return its result (or raise).
        Runs it directly when the loop is not running; OSError(ENETDOWN) when
        the loop thread dies before answering."""
        rt = self.runtime
        th = rt.thread
        if th is None or th is threading.current_thread() or not th.is_alive():
            return fn(*args)
        box: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # handed back to the calling thread
                box.append((False, exc))
            done.set()

        rt.call_soon_threadsafe(run)
        while not done.wait(1.0):
            if not rt.running:
                if done.wait(0.5):
                    break
                raise _oserror(errno.ENETDOWN, "the stack's loop has stopped")
        ok, value = box[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """``event.wait(timeout)`` that gives up (False) when the loop thread dies."""
        th = self.runtime.thread
        if timeout is not None:
            end = _time.monotonic() + timeout
        while True:
            step = 1.0 if timeout is None else min(1.0, max(0.0, end - _time.monotonic()))
            if event.wait(step):
                return True
            if timeout is not None and _time.monotonic() >= end:
                return False
            if th is not None and not th.is_alive():
                return event.is_set()

    def stack_closed(self) -> None:
        """The stack is shutting down (loop thread): every socket's pair end is
        closed, so program threads blocked on one wake up (EOF, EPIPE)."""
        for link in list(self.links):
            link.release()

    def call_soon(self, fn: Callable[[], None]) -> None:
        rt = self.runtime
        th = rt.thread
        if th is None or th is threading.current_thread():
            fn()
        elif th.is_alive():
            rt.call_soon_threadsafe(fn)

    # -- the socket module's helpers ------------------------------------------------------
    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM,
               proto: int = 0) -> StackSocket:
        return StackSocket(family, type, proto, network=self)

    def create_connection(self, address: tuple[str, int],
                          timeout: float | None | object = _GLOBAL_DEFAULT_TIMEOUT,
                          source_address: tuple[str, int] | None = None, *,
                          all_errors: bool = False) -> StackSocket:
        """``socket.create_connection`` over this stack."""
        host, port = address
        errors: list[OSError] = []
        for _af, _kind, proto, _canon, sa in self.getaddrinfo(host, port, AF_INET, SOCK_STREAM):
            sock = None
            try:
                sock = self.socket(AF_INET, SOCK_STREAM, proto)
                if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)  # type: ignore[arg-type]
                if source_address:
                    sock.bind(source_address)
                sock.connect(sa)
                return sock
            except OSError as exc:
                errors.append(exc)
                if sock is not None:
                    sock.close()
        if not errors:
            raise OSError("getaddrinfo returns an empty list")
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise errors[0]

    def create_server(self, address: tuple[str, int], *, family: int = AF_INET,
                      backlog: int | None = None, reuse_port: bool = False,
                      dualstack_ipv6: bool = False) -> StackSocket:
        """``socket.create_server`` over this stack (SO_REUSEADDR set, as the stdlib does)."""
        if dualstack_ipv6 or family != AF_INET:
            raise ValueError("only AF_INET servers on this stack")
        sock = self.socket(family, SOCK_STREAM)
        try:
            sock.setsockopt(SOL_SOCKET, _std.SO_REUSEADDR, 1)
            if reuse_port and _SO_REUSEPORT >= 0:
                sock.setsockopt(SOL_SOCKET, _SO_REUSEPORT, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno,
                              f"{exc.strerror} (while attempting to bind on address "
                              f"{address!r})") from None
            if backlog is None:
                sock.listen()
            else:
                sock.listen(backlog)
            return sock
        except BaseException:
            sock.close()
            raise

    def getaddrinfo(self, host: str | bytes | None, port: str | bytes | int | None,
                    family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, Any, int, str, tuple[str, int]]]:
        """``socket.getaddrinfo`` answered from numeric addresses, the hosts table,
        /etc/hosts and the stack's DNS resolver; IPv4 only."""
        if family not in (0, AF_INET):
            if family == AF_INET6:
                raise gaierror(_std.EAI_ADDRFAMILY if hasattr(_std, "EAI_ADDRFAMILY")
                               else _std.EAI_FAMILY, "Address family for hostname not supported")
            raise gaierror(_std.EAI_FAMILY, "ai_family not supported")
        portnum = _service_port(port, type, proto)
        if isinstance(host, bytes):
            host = host.decode("idna")
        if host is None:
            if port is None:
                raise gaierror(_std.EAI_NONAME, "Name or service not known")
            addrs = ["0.0.0.0" if flags & _std.AI_PASSIVE else "127.0.0.1"]
        else:
            addrs = self._resolve(host, numeric_only=bool(flags & _std.AI_NUMERICHOST))
        kinds: list[tuple[int, int]]
        if type == 0:
            kinds = [(SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP), (SOCK_RAW, 0)]
            if proto:
                kinds = [k for k in kinds if k[1] == proto]
        else:
            base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
            defaults: dict[int, int] = {SOCK_STREAM: IPPROTO_TCP, SOCK_DGRAM: IPPROTO_UDP}
            default = defaults.get(base, 0)
            kinds = [(base, proto or default)]
        out: list[tuple[Any, Any, int, str, tuple[str, int]]] = []
        canon = host if (flags & _std.AI_CANONNAME) and isinstance(host, str) else ""
        for addr in addrs:
            for kind, pr in kinds:
                out.append((_std.AddressFamily(AF_INET), _kind_enum(kind), pr, canon,
                            (addr, portnum)))
                canon = ""
        return out

    def gethostbyname(self, name: str) -> str:
        return self._resolve(name)[0]

    def gethostbyname_ex(self, name: str) -> tuple[str, list[str], list[str]]:
        return name, [], self._resolve(name)

    def gethostbyaddr(self, addr: str) -> tuple[str, list[str], list[str]]:
        """Reverse lookup from the hosts tables (no reverse DNS)."""
        ip = self._resolve(addr)[0]
        for name, value in self.hosts.items():
            if value == ip:
                return name, [], [ip]
        for name, value in _etc_hosts().items():
            if value == ip and self.read_etc_hosts:
                return name, [], [ip]
        raise herror(1, "Unknown host")

    def getfqdn(self, name: str = "") -> str:
        """The name itself (or the host name): no reverse lookups over the stack."""
        name = name.strip()
        if not name or name in ("0.0.0.0", "::"):
            return _std.gethostname()
        return name

    def _resolve(self, host: str, numeric_only: bool = False) -> list[str]:
        """IPv4 addresses (text) for ``host``; ``socket.gaierror`` when there are none."""
        text = host.strip()
        if text in ("", "<any>"):
            return ["0.0.0.0"]
        if text == "<broadcast>":
            return ["255.255.255.255"]
        packed = _parse_ipv4(text)
        if packed is not None:
            return [_std.inet_ntoa(packed)]
        if ":" in text:
            try:
                _std.inet_pton(AF_INET6, text)
            except OSError:
                pass
            else:
                raise gaierror(_std.EAI_ADDRFAMILY if hasattr(_std, "EAI_ADDRFAMILY")
                               else _std.EAI_FAMILY, "Address family for hostname not supported")
        if numeric_only:
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        lower = text.lower().rstrip(".")
        for table in (self.hosts, _etc_hosts() if self.read_etc_hosts else {}):
            for name, value in table.items():
                if name.lower() == lower:
                    return [value]
        return self._dns(lower)

    def _dns(self, name: str) -> list[str]:
        stack = self.stack
        if getattr(stack, "resolver", None) is None:
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        try:
            from femtotcp.services import dns as dns_service
            from femtotcp.wire import dns as dns_wire
        except ImportError:
            raise gaierror(_std.EAI_NONAME, "Name or service not known") from None
        if self.runtime.in_loop_thread():
            raise gaierror(_std.EAI_AGAIN, "name lookups cannot block the stack's own thread")
        result = dns_service.resolve_blocking(self.runtime, stack, name, dns_wire.A,
                                              self.resolve_timeout)
        exc = dns_service.gaierror_for(result)
        if exc is not None:
            raise exc
        addrs = [ip_str(a) for a in result.addresses if len(a) == 4]
        if not addrs:
            raise gaierror(getattr(_std, "EAI_NODATA", _std.EAI_NONAME),
                           "No address associated with hostname")
        return addrs

    # -- loop thread -------------------------------------------------------------------------
    def reap(self) -> None:
        """Release links whose program side is gone (closed or garbage-collected
        but not yet noticed): called before reporting EADDRINUSE."""
        for key, link in list(self.reserved.items()):
            if not link.owner_alive():
                del self.reserved[key]
        links = [lk for lk in self.links if lk.q is not None]
        if not links:
            return
        poller = select.poll()
        by_fd: dict[int, _Link] = {}
        for lk in links:
            fd = lk.q.fileno() if lk.q is not None else -1
            if fd >= 0:
                by_fd[fd] = lk
                poller.register(fd, select.POLLIN)
        for fd, ev in poller.poll(0):
            if ev & (select.POLLHUP | select.POLLERR):
                by_fd[fd].on_q()


def _parse_ipv4(text: str) -> bytes | None:
    """Packed IPv4 for a numeric address (the inet_aton forms getaddrinfo takes)."""
    if not text or not text[0].isdigit():
        return None
    if not all(c.isdigit() or c in ".xXabcdefABCDEF" for c in text):
        return None
    try:
        return _std.inet_aton(text)
    except OSError:
        return None


def _kind_enum(kind: int) -> Any:
    try:
        return _std.SocketKind(kind)
    except ValueError:
        return kind


def _service_port(port: str | bytes | int | None, type_: int, proto: int) -> int:
    if port is None:
        return 0
    if isinstance(port, int):
        if not 0 <= port <= 65535:
            raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype")
        return port
    text = port.decode() if isinstance(port, bytes) else str(port)
    if text.isdigit():
        value = int(text)
        if value > 65535:
            raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype")
        return value
    proto_name = "udp" if (type_ & 0xF) == SOCK_DGRAM or proto == IPPROTO_UDP else "tcp"
    try:
        return _std.getservbyname(text, proto_name)
    except OSError:
        raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype") from None


_etc_hosts_cache: list[dict[str, str]] = []


def _etc_hosts() -> dict[str, str]:
    """IPv4 entries of /etc/hosts (read once)."""
    if not _etc_hosts_cache:
        table: dict[str, str] = {}
        try:
            with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split("#", 1)[0].split()
                    if len(fields) < 2:
                        continue
                    try:
                        if len(ip_bytes(fields[0])) != 4:
                            continue
                    except ValueError:
                        continue
                    for name in fields[1:]:
                        table.setdefault(name, fields[0])
        except OSError:
            pass
        _etc_hosts_cache.append(table)
    return _etc_hosts_cache[0]


_networks: weakref.WeakKeyDictionary[Any, Network] = weakref.WeakKeyDictionary()
_default: list[Network] = []
_scoped = threading.local()


def network_for(stack: Stack, runtime: Runtime) -> Network:
    """The one Network for ``stack`` (created on first use)."""
    net = _networks.get(stack)
    if net is None or net.runtime is not runtime:
        net = Network(stack, runtime)
        _networks[stack] = net
        stack.on_close(net.stack_closed)
    return net


def current_network() -> Network | None:
    """The network sockets are made on in this thread: the innermost ``scoped``
    one, else the process-wide one set by ``femtotcp.api.patch.patch``."""
    stack_: list[Network] | None = getattr(_scoped, "stack", None)
    if stack_:
        return stack_[-1]
    return _default[-1] if _default else None


def push_scoped(net: Network) -> None:
    st: list[Network] | None = getattr(_scoped, "stack", None)
    if st is None:
        st = []
        _scoped.stack = st
    st.append(net)


def pop_scoped(net: Network) -> None:
    st: list[Network] | None = getattr(_scoped, "stack", None)
    if st and net in st:
        idx = len(st) - 1 - st[::-1].index(net)
        del st[idx]


def set_default(net: Network | None) -> None:
    """Make ``net`` the process-wide network (None pops the last one)."""
    if net is None:
        if _default:
            _default.pop()
    else:
        _default.append(net)


def remove_default(net: Network) -> None:
    if net in _default:
        idx = len(_default) - 1 - _default[::-1].index(net)
        del _default[idx]


# -- loop-thread side: fd watching ------------------------------------------------------------

class _Watch:
    """Q's registration in the runtime's selector (loop thread only). The
    runtime calls ``on_readable`` for any ready event of a registered fd."""

    def __init__(self, runtime: Runtime, fd: int, callback: Callable[[], None],
                 name: str) -> None:
        self.runtime = runtime
        self.fd = fd
        self.callback = callback
        self.name = name
        self.events = 0

    def set(self, read: bool, write: bool) -> None:
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        if events == self.events:
            return
        try:
            self.runtime.watch_fd(self.fd, read, write, self)
        except (KeyError, ValueError, OSError):
            log.debug("selector update for fd %d failed", self.fd, exc_info=True)
        self.events = events

    def on_readable(self) -> None:
        self.callback()

    def close(self) -> None:
        self.set(False, False)


class _Link:
    """The loop-thread half of one socket: Q and the stack object behind it."""

    kind = "?"

    def __init__(self, net: Network, q: _std.socket, owner: socket) -> None:
        self.net = net
        self.q: _std.socket | None = q
        self.owner_ref = weakref.ref(owner)
        self.watch: _Watch | None = None
        self.registered = False
        self.released = False
        #: Handles (the socket and its dups) still open in the program.
        self.handles = 1
        self.detached = False
        #: Error for SO_ERROR (taken when read).
        self.so_error = 0
        #: Error the program's recv/send report once their fd says EOF/EPIPE.
        self.program_error: int | None = None
        self.opts: dict[tuple[int, int], Any] = {}
        self.local: tuple[bytes, int] | None = None
        self.remote: tuple[bytes, int] | None = None

    def guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` for the stack or the selector to call: a bug in it breaks this
        socket (EIO for the program), never the stack or the loop."""
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("stack socket failed; closing it")
                self.crash()
        return guarded

    def crash(self) -> None:
        self.program_error = errno.EIO
        self.so_error = errno.EIO
        for name in ("conn", "listener", "ep"):
            obj = getattr(self, name, None)
            if obj is None:
                continue
            try:
                if hasattr(obj, "on_event"):
                    obj.on_event = None
                if hasattr(obj, "on_readable"):
                    obj.on_readable = None
                (obj.abort if hasattr(obj, "abort") else obj.close)()
            except Exception:
                log.exception("closing a broken stack socket failed")
        self.release()

    def owner_alive(self) -> bool:
        if self.released:
            return False
        if self.detached:
            return True
        sock = self.owner_ref()
        return sock is not None and sock.fileno() != -1

    def register(self) -> None:
        """Start serving Q from the loop thread."""
        if self.registered or self.q is None:
            return
        self.registered = True
        self.net.links.add(self)
        self.watch = _Watch(self.net.runtime, self.q.fileno(), self.guard(self.on_q),
                            f"api-{self.kind}-{self.q.fileno()}")

    def on_q(self) -> None:
        """Q is ready (readable or writable, or the program's side is gone)."""

    def program_closed(self, abort: bool = False) -> None:
        """The program closed its last handle (P is closed already)."""

    def release(self) -> None:
        """Forget everything (loop thread): Q closed, stack object closed by the caller."""
        if self.released:
            return
        self.released = True
        if self.watch is not None:
            self.watch.close()
        if self.q is not None:
            try:
                self.q.close()
            except OSError:
                pass
            self.q = None
        self.net.links.discard(self)
        for key, link in list(self.net.reserved.items()):
            if link is self:
                del self.net.reserved[key]

    def p_gone(self) -> bool:
        """True when the program's end of the pair is fully closed (POLLHUP on Q)."""
        if self.q is None:
            return True
        poller = select.poll()
        poller.register(self.q.fileno(), select.POLLIN)
        for _fd, ev in poller.poll(0):
            if ev & (select.POLLHUP | select.POLLERR):
                return True
        return False

    def take_so_error(self) -> int:
        err, self.so_error = self.so_error, 0
        return err


def _noop() -> None:
    """A finalizer with nothing to do (dups: the original owns Q)."""


def _finalize(link: _Link) -> None:
    """The program's socket was garbage-collected: a link the loop thread never
    served just closes Q (served links notice P closing through Q)."""
    if not link.registered and link.q is not None:
        try:
            link.q.close()
        except OSError:
            pass
        link.q = None


# -- UDP and ICMP echo -------------------------------------------------------------------------

class _DgramLink(_Link):
    """Datagrams from the stack go to P as records; sends go straight to the stack."""

    kind = "dgram"

    def __init__(self, net: Network, q: _std.socket, owner: socket) -> None:
        super().__init__(net, q, owner)
        self.ep: Any = None
        self.held: bytes | None = None
        # The socket error is one value that SO_ERROR, recv and send each take
        # once, whichever comes first (Linux's sk_err). An error already sent to
        # P as a record (so that a blocked recv wakes) is listed in pipe_errors;
        # the first ``cancelled`` of them were taken by SO_ERROR or send, and the
        # program's recv skips their records. Both threads use err_lock.
        self.err_lock = threading.Lock()
        self.pipe_errors: deque[int] = deque()
        self.cancelled = 0

    def take_pending_error(self) -> int:
        """Loop thread: take the socket error, wherever it waits (0 if none)."""
        ep = self.ep
        if ep is not None and getattr(ep, "error", None) is not None:
            return int(ep.take_error() or 0)
        with self.err_lock:
            if len(self.pipe_errors) > self.cancelled:
                self.cancelled += 1
                return self.pipe_errors[self.cancelled - 1]
        err, self.so_error = self.so_error, 0
        return err

    def take_so_error(self) -> int:
        return self.take_pending_error()

    def error_record_read(self) -> bool:
        """Program thread: an error record came out of P; True when SO_ERROR or
        send already took that error (the record is to be skipped)."""
        with self.err_lock:
            if self.pipe_errors:
                self.pipe_errors.popleft()
            if self.cancelled:
                self.cancelled -= 1
                return True
            return False

    def _next_record(self) -> bytes | None:
        """The next record for P, or None when the endpoint has nothing (subclasses)."""
        return None

    def bind(self, addr: bytes, port: int) -> tuple[bytes, int]:
        raise _oserror(errno.EOPNOTSUPP)

    def sendto(self, data: bytes, dst: bytes, port: int) -> int:
        raise _oserror(errno.EOPNOTSUPP)

    def send(self, data: bytes) -> int:
        raise _oserror(errno.EOPNOTSUPP)

    def connect(self, dst: bytes, port: int) -> None:
        raise _oserror(errno.EOPNOTSUPP)

    def pump(self) -> None:
        q = self.q
        if q is None or self.ep is None:
            return
        while True:
            rec = self.held
            if rec is None:
                rec = self._next_record()
                if rec is None:
                    break
            try:
                q.send(rec)
            except BlockingIOError:
                self.held = rec
                if self.watch is not None:
                    self.watch.set(True, True)
                return
            except OSError:
                self.close_all()
                return
            self.held = None
        if self.watch is not None:
            self.watch.set(True, False)

    def on_q(self) -> None:
        q = self.q
        if q is None:
            return
        try:
            data = q.recv(1, _std.MSG_DONTWAIT)
        except BlockingIOError:
            self.pump()
            return
        except OSError:
            data = b""
        if not data:
            self.close_all()

    def program_closed(self, abort: bool = False) -> None:
        self.close_all()

    def close_all(self) -> None:
        if self.ep is not None:
            self.ep.close()
        self.release()


class _UdpLink(_DgramLink):
    kind = "udp"

    def bind(self, addr: bytes, port: int) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        if self.net.stack.udp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no UDP module")
        try:
            ep = self.net.stack.udp.open(addr, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            self.net.reap()     # a socket closed by the garbage collector, not yet noticed
            ep = self.net.stack.udp.open(addr, port)
        ep.on_readable = self.guard(self.pump)
        self.ep = ep
        self.apply_opts()
        self.local = ep.local
        self.register()
        if self.watch is not None:
            self.watch.set(True, False)
        local: tuple[bytes, int] = (ep.local[0], ep.local[1])
        return local

    def ensure_bound(self) -> None:
        if self.ep is None:
            self.bind(ANY4, 0)

    def apply_opts(self) -> None:
        ep = self.ep
        if ep is None:
            return
        for (level, opt), value in self.opts.items():
            if level == IPPROTO_IP and opt == _IP_TTL:
                ep.ttl = value
            elif level == IPPROTO_IP and opt == _IP_TOS:
                ep.tos = value
            elif level == SOL_SOCKET and opt == _std.SO_RCVBUF:
                ep.rcvbuf = value

    def sendto(self, data: bytes, dst: bytes, port: int) -> int:
        self.ensure_bound()
        ep = self.ep
        if dst == BROADCAST4 and not self.opts.get((SOL_SOCKET, _std.SO_BROADCAST)):
            raise _oserror(errno.EACCES)
        if ep.remote is not None:
            err = self.take_pending_error()
            if err:
                raise _oserror(err)
        err = ep.sendto(data, dst, port)
        if err:
            raise _oserror(err)
        return len(data)

    def send(self, data: bytes) -> int:
        if self.ep is None or self.ep.remote is None:
            raise _oserror(errno.EDESTADDRREQ)
        return self.sendto(data, *self.ep.remote)

    def connect(self, dst: bytes, port: int) -> None:
        self.ensure_bound()
        self.ep.connect(dst, port)
        self.remote = (dst, port)
        self.local = self.ep.sockname

    def _next_record(self) -> bytes | None:
        ep = self.ep
        item = ep.recv()
        if item is None:
            if ep.error is None:
                return None
            err = ep.take_error()
            if not err:
                return None
            with self.err_lock:
                self.pipe_errors.append(err)
            return _REC.pack(_KIND_ERROR, 0, err, b"")
        data, (src, sport) = item
        rec: bytes = _REC.pack(_KIND_DATA, len(src), sport, src) + data
        return rec


class _PingLink(_DgramLink):
    """SOCK_DGRAM + IPPROTO_ICMP: the program sends and receives ICMP echo
    messages; the identifier is the socket's (like Linux ping sockets)."""

    kind = "ping"

    def bind(self, addr: bytes, ident: int) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        if self.net.stack.icmp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no ICMP module")
        if addr != ANY4 and not self.net.stack.is_local(addr):
            raise _oserror(errno.EADDRNOTAVAIL)
        ep = self.net.stack.icmp.open_echo(ident or None)
        ep.on_readable = self.guard(self.pump)
        self.ep = ep
        self.local = (addr, ep.ident)
        self.register()
        if self.watch is not None:
            self.watch.set(True, False)
        return self.local

    def ensure_bound(self) -> None:
        if self.ep is None:
            self.bind(ANY4, 0)

    def sendto(self, data: bytes, dst: bytes, port: int) -> int:
        from femtotcp.wire import icmp4
        self.ensure_bound()
        if len(data) < icmp4.HEADER_LEN or data[0] != icmp4.ECHO_REQUEST or data[1] != 0:
            raise _oserror(errno.EINVAL, "only ICMP echo requests can be sent")
        seq = int.from_bytes(data[6:8], "big")
        ttl = self.opts.get((IPPROTO_IP, _IP_TTL))
        err = self.ep.send(dst, seq, bytes(data[8:]), ttl=ttl)
        if err:
            raise _oserror(err)
        return len(data)

    def send(self, data: bytes) -> int:
        if self.remote is None:
            raise _oserror(errno.EDESTADDRREQ)
        return self.sendto(data, *self.remote)

    def connect(self, dst: bytes, port: int) -> None:
        self.ensure_bound()
        self.remote = (dst, 0)

    def _next_record(self) -> bytes | None:
        from femtotcp.wire import icmp4
        while True:
            item = self.ep.recv()
            if item is None:
                return None
            src, seq, payload, _ttl = item
            if self.remote is None or src == self.remote[0]:
                break
        msg = icmp4.build_echo(icmp4.ECHO_REPLY, self.ep.ident, seq, payload)
        return _REC.pack(_KIND_DATA, len(src), 0, src) + msg


# -- TCP ------------------------------------------------------------------------------------------

def _state_name(conn: Any) -> str:
    state = getattr(conn, "state", "")
    name = getattr(state, "name", None)
    return str(name if name is not None else state).upper().replace("-", "_")


_SYN_STATES = ("SYN_SENT", "SYN_RECEIVED", "SYN_RCVD", "LISTEN", "CLOSED_NEW")


class _TcpLink(_Link):
    """One TCP socket: idle (maybe bound), connecting, connected or listening."""

    kind = "tcp"

    def __init__(self, net: Network, q: _std.socket, owner: socket) -> None:
        super().__init__(net, q, owner)
        self.mode = "idle"
        self.conn: Any = None
        self.listener: Any = None
        self.bound: tuple[bytes, int] | None = None
        # connecting
        self.connect_done: threading.Event | None = None
        self.connect_error = 0
        self.filler = 0
        # pumping
        self.inbound: memoryview | None = None     # stack -> program, not yet in Q
        self.outbound: memoryview | None = None    # program -> stack, read from Q
        self.fin_in = False        # the peer's FIN is passed on (Q shut for writing)
        self.eof_out = False       # the program shut its side for writing (EOF on Q)
        self.unread_dropped = False  # the program closed with received data unread
        self.in_closed = False     # the program will never read again (EPIPE on Q)
        self.closing = False       # program closed: close the connection once flushed
        self.pumping = False       # the connection calls on_event from inside send()
        self.pump_again = False
        # listening
        self.backlog = DEFAULT_BACKLOG
        self.ready: deque[Any] = deque()
        self.tokens_owed = 0

    def crash(self) -> None:
        connecting = self.mode == "connecting"
        super().crash()
        self.conn = self.listener = None
        self.mode = "failed" if connecting else "done"
        if connecting and self.connect_done is not None:
            self.connect_error = errno.EIO
            self.connect_done.set()

    # -- options ---------------------------------------------------------------------------
    def apply_opts(self, conn: Any) -> None:
        for (level, opt), value in self.opts.items():
            _apply_tcp_opt(conn, level, opt, value)

    def set_opt(self, level: int, opt: int, value: Any) -> None:
        self.opts[(level, opt)] = value
        if self.conn is not None:
            _apply_tcp_opt(self.conn, level, opt, value)
        if self.listener is not None:
            _apply_tcp_opt(self.listener, level, opt, value)

    # -- bind --------------------------------------------------------------------------------
    def bind(self, addr: bytes, port: int) -> tuple[bytes, int]:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        if self.bound is not None or self.mode != "idle":
            raise _oserror(errno.EINVAL, "already bound")
        if addr != ANY4 and not net.stack.is_local(addr):
            raise _oserror(errno.EADDRNOTAVAIL, "cannot assign requested address")
        reuse = bool(self.opts.get((SOL_SOCKET, _std.SO_REUSEADDR)))
        if port == 0:
            port = self._pick_port(addr)
        elif self._port_busy(addr, port, reuse):
            net.reap()
            if self._port_busy(addr, port, reuse):
                raise _oserror(errno.EADDRINUSE)
        self.bound = (addr, port)
        self.local = self.bound
        net.reserved[(addr, port)] = self
        return self.bound

    def _pick_port(self, addr: bytes) -> int:
        import secrets
        cfg = self.net.stack.config
        low, high = cfg.ephemeral_low, cfg.ephemeral_high
        span = high - low + 1
        start = secrets.randbelow(span)
        for i in range(span):
            port = low + (start + i) % span
            if not self._port_busy(addr, port, False):
                return port
        raise _oserror(errno.EADDRINUSE, "no free port")

    def _port_busy(self, addr: bytes, port: int, reuse: bool) -> bool:
        """Linux's bind rules: a port is taken by another bound or listening
        socket; without SO_REUSEADDR also by any connection using it
        (TIME_WAIT included)."""
        for (a, p), link in self.net.reserved.items():
            if p == port and link is not self and (a == addr or a == ANY4 or addr == ANY4):
                if link.owner_alive():
                    other_reuse = bool(link.opts.get((SOL_SOCKET, _std.SO_REUSEADDR)))
                    if not (reuse and other_reuse):
                        return True
        return _tcp_port_in_use(self.net.stack.tcp, addr, port, reuse)

    # -- connect (loop thread) ---------------------------------------------------------------
    def start_connect(self, dst: bytes, port: int, filler: int) -> threading.Event:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        if self.mode == "connecting":
            raise _oserror(errno.EALREADY)
        if self.mode in ("connected", "done"):
            raise _oserror(errno.EISCONN)
        if self.mode != "idle":
            raise _oserror(errno.EINVAL)
        src, sport = self.bound if self.bound is not None else (None, 0)
        if src == ANY4:
            src = None
        try:
            conn = tcp.connect(dst, port, src=src, sport=sport)
        except BaseException:
            self.filler = filler
            self._drop_filler()
            raise
        if self.bound is not None:
            net.reserved.pop(self.bound, None)
        self.local = (conn.local[0], conn.local[1])
        self.conn = conn
        self.filler = filler
        self.mode = "connecting"
        self.connect_done = threading.Event()
        self.apply_opts(conn)
        conn.on_event = self.guard(self.on_conn_event)
        self.register()
        self.on_conn_event()
        return self.connect_done

    def abort_connect(self) -> None:
        """A blocking connect timed out: give up (the socket is unusable after)."""
        if self.mode == "connecting":
            self.conn.on_event = None
            self.conn.abort()
            self.conn = None
            self.mode = "failed"
            self.connect_error = errno.ETIMEDOUT
            self.release()

    def _connect_failed(self, err: int) -> None:
        self.mode = "failed"
        self.connect_error = err
        self.so_error = err
        self.conn.on_event = None
        self.conn = None
        self._drop_filler()
        done = self.connect_done
        self.release()
        if done is not None:
            done.set()

    def _drop_filler(self) -> None:
        q = self.q
        while self.filler > 0 and q is not None:
            try:
                got = q.recv(min(self.filler, CHUNK), _std.MSG_DONTWAIT)
            except OSError:
                break
            if not got:
                break
            self.filler -= len(got)

    def on_conn_event(self, *_args: Any) -> None:
        if self.released or self.conn is None:
            return
        conn = self.conn
        if self.mode == "connecting":
            err = getattr(conn, "error", None)
            state = _state_name(conn)
            if err or state in ("CLOSED", "TIME_WAIT"):
                self._connect_failed(err or errno.ECONNREFUSED)
                return
            if state in _SYN_STATES:
                return
            self.mode = "connected"
            self.local = (conn.local[0], conn.local[1])
            self.remote = (conn.remote[0], conn.remote[1])
            self._drop_filler()
            if self.connect_done is not None:
                self.connect_done.set()
        if self.mode == "connected":
            self.pump()

    def attach_accepted(self, conn: Any) -> None:
        self.apply_opts(conn)
        self.conn = conn
        self.mode = "connected"
        self.local = (conn.local[0], conn.local[1])
        self.remote = (conn.remote[0], conn.remote[1])
        conn.on_event = self.guard(self.on_conn_event)
        self.register()
        self.pump()

    # -- the pump --------------------------------------------------------------------------------
    def pump(self) -> None:
        """Move bytes both ways as far as buffers allow; then pick Q's interest.
        Not re-entrant: an event raised inside ``conn.send`` runs one more round."""
        if self.pumping:
            self.pump_again = True
            return
        self.pumping = True
        try:
            while True:
                self.pump_again = False
                self._pump_once()
                if not self.pump_again or self.released:
                    break
        finally:
            self.pumping = False

    def _pump_once(self) -> None:
        conn, q = self.conn, self.q
        if conn is None or q is None:
            return
        # stack -> program
        while not self.fin_in:
            data = self.inbound
            if data is not None:
                if self.in_closed:
                    self.inbound = None
                else:
                    try:
                        n = q.send(data)
                    except BlockingIOError:
                        n = 0
                    except OSError:
                        self.in_closed = True   # the program will not read (SHUT_RD / closed)
                        self.inbound = None
                        n = 0
                    if self.inbound is not None:
                        if n < len(data):
                            self.inbound = data[n:]
                            break
                        self.inbound = None
            try:
                chunk = conn.recv(CHUNK)
            except OSError as exc:
                self.fail(exc.errno or errno.ECONNRESET)
                return
            if chunk is None:
                break
            if not chunk:
                self.fin_in = True
                try:
                    q.shutdown(SHUT_WR)
                except OSError:
                    pass
                break
            self.inbound = memoryview(chunk)
        # program -> stack
        while not self.eof_out:
            data = self.outbound
            if data is not None:
                try:
                    n = conn.send(data)
                except OSError as exc:
                    self.fail(exc.errno or errno.EPIPE)
                    return
                if n < len(data):
                    self.outbound = data[n:] if n else data
                    break
                self.outbound = None
            try:
                chunk = q.recv(CHUNK, _std.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except ConnectionResetError:
                # The program closed its end with data still unread in it (a
                # Unix stream socket reports that as ECONNRESET to this end).
                self.unread_dropped = True
                chunk = b""
            except OSError:
                chunk = b""
            if not chunk:
                self.eof_out = True
                self._program_eof()
                if self.released:
                    return
                break
            self.outbound = memoryview(chunk)
        self._maybe_done()
        if self.watch is not None and not self.released:
            self.watch.set(read=not self.eof_out and self.outbound is None,
                           write=self.inbound is not None and not self.in_closed)

    def _program_eof(self) -> None:
        """EOF on Q: the program shut its sending side, or closed the socket."""
        conn = self.conn
        if self.closing or self.p_gone():
            self.closing = True
            self.in_closed = True
            # Received data the program never read makes the close a reset
            # (RFC 9293 3.10.4, RFC 2525 2.17, as Linux): data still on its way
            # to the program, or left unread in the program's end of the pair.
            unread = self.unread_dropped or self.inbound is not None
            self.inbound = None
            try:
                if unread:
                    conn.counters["tcp.close_with_rst"] += 1
                    conn.abort()
                else:
                    conn.close()
            except OSError:
                pass
            conn.on_event = None
            self.conn = None
            self.mode = "done"
            self.release()
            return
        try:
            conn.shutdown(SHUT_WR)
        except OSError:
            pass

    def _maybe_done(self) -> None:
        """Both directions finished: Q is no longer needed."""
        if self.released or not (self.fin_in and self.eof_out):
            return
        if self.inbound is not None or self.outbound is not None:
            return
        if self.conn is not None:
            self.conn.on_event = None
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None
        self.mode = "done"
        self.release()

    def fail(self, err: int) -> None:
        """The connection failed (reset, timeout): the program sees ``err``."""
        self.program_error = err
        self.so_error = err
        self.mode = "done"
        conn = self.conn
        if conn is not None:
            conn.on_event = None
            self.conn = None
            if conn.state != "CLOSED":
                conn.abort()          # whatever is left of it goes (RST where due)
        self.inbound = self.outbound = None
        self.release()

    def on_q(self) -> None:
        if self.released:
            return
        if self.mode == "connected":
            self.pump()
        elif self.mode == "listening":
            self.listener_service()
        else:
            # Idle or connecting: only the program going away matters.
            if self.p_gone():
                self.program_closed()

    def program_closed(self, abort: bool = False) -> None:
        linger = self.opts.get((SOL_SOCKET, _std.SO_LINGER))
        if linger is not None and linger[0] and linger[1] == 0:
            abort = True
        self.closing = True
        if self.mode == "listening":
            self.close_listener()
            return
        if self.mode == "connecting":
            conn = self.conn
            conn.on_event = None
            conn.abort()
            self.conn = None
            self.mode = "done"
            self.release()
            return
        if self.mode == "connected":
            if abort:
                conn = self.conn
                conn.on_event = None
                conn.abort()
                self.conn = None
                self.mode = "done"
                self.release()
            elif self.eof_out:
                self._program_eof()
            else:
                self.pump()
            return
        self.release()

    def shutdown_read(self) -> None:
        self.in_closed = True
        self.inbound = None
        if self.conn is not None:
            try:
                self.conn.shutdown(SHUT_RD)
            except (OSError, AttributeError):
                pass
            self.pump()

    # -- listening -------------------------------------------------------------------------------
    def listen(self, backlog: int) -> tuple[bytes, int]:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        backlog = max(1, min(backlog, 4096))
        if self.mode == "listening":
            self.backlog = backlog
            return self.local or (ANY4, 0)
        if self.mode != "idle":
            raise _oserror(errno.EINVAL)
        if self.bound is None:
            self.bind(ANY4, 0)
        addr, port = self.bound  # type: ignore[misc]
        net.reserved.pop((addr, port), None)
        try:
            lst = tcp.listen(addr, port, backlog)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                net.reap()
                lst = tcp.listen(addr, port, backlog)
            else:
                raise
        self.listener = lst
        self.backlog = backlog
        self.mode = "listening"
        self.local = (addr, port)
        self.apply_opts(lst)
        lst.on_event = self.guard(self.listener_service)
        self.register()
        self.listener_service()
        return self.local

    def listener_service(self, *_args: Any) -> None:
        """Move ready connections from the stack's listener into our queue,
        one token byte to P for each."""
        q, lst = self.q, self.listener
        if q is None or lst is None:
            return
        while True:
            if self.tokens_owed:
                try:
                    q.send(b"\x01" * self.tokens_owed)
                    self.tokens_owed = 0
                except BlockingIOError:
                    break
                except OSError:
                    self.close_listener()
                    return
            if len(self.ready) >= self.backlog:
                break
            conn = lst.accept()
            if conn is None:
                break
            self.ready.append(conn)
            self.tokens_owed += 1
        # Q readable here means the program closed the listening socket.
        try:
            data = q.recv(1, _std.MSG_DONTWAIT)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":
            self.close_listener()
            return
        if self.watch is not None:
            self.watch.set(True, bool(self.tokens_owed))

    def take_ready(self) -> Any:
        if not self.ready:
            return None
        conn = self.ready.popleft()
        self.listener_service()
        return conn

    def close_listener(self) -> None:
        lst = self.listener
        if lst is not None:
            lst.on_event = None
            try:
                lst.close()
            except OSError:
                pass
            self.listener = None
        while self.ready:
            conn = self.ready.popleft()
            try:
                conn.abort()
            except OSError:
                pass
        self.mode = "done"
        self.release()


def _tcp_port_in_use(tcp: Any, addr: bytes, port: int, reuse: bool) -> bool:
    """Whether bind(2) would find (addr, port) taken in the TCP module: by a
    listener always; by any connection (TIME_WAIT too) unless SO_REUSEADDR."""
    for lst in tcp.listeners():
        a, p = lst.local
        if p == port and (a == addr or a == ANY4 or addr == ANY4):
            return True
    if reuse:
        return False
    for conn in tcp.connections():
        a, p = conn.local
        if p == port and (a == addr or a == ANY4 or addr == ANY4):
            return True
    return False


def _apply_tcp_opt(obj: Any, level: int, opt: int, value: Any) -> None:
    """Set a socket option on a TCP connection or listener (attributes the TCP
    module offers; options it does not know are kept on the socket only)."""
    name: str | None = None
    if level == SOL_SOCKET:
        if opt == _std.SO_KEEPALIVE:
            name, value = "keepalive", bool(value)
        elif opt == _std.SO_RCVBUF:
            name = "rcvbuf"
        elif opt == _std.SO_SNDBUF:
            name = "sndbuf"
        elif opt == _std.SO_LINGER:
            name, value = "linger", (value[1] if value[0] else None)
    elif level == IPPROTO_TCP:
        if opt == _std.TCP_NODELAY:
            name, value = "nodelay", bool(value)
        elif opt == _TCP_USER_TIMEOUT:
            name, value = "user_timeout", value / 1000.0
        elif opt == _TCP_KEEPIDLE:
            name = "keepalive_idle"
        elif opt == _TCP_KEEPINTVL:
            name = "keepalive_interval"
        elif opt == _TCP_KEEPCNT:
            name = "keepalive_count"
    if name is None or not hasattr(obj, name):
        return
    try:
        if name == "keepalive" and hasattr(obj, "set_keepalive"):
            obj.set_keepalive(value)     # also arms the timer on a live connection
        else:
            setattr(obj, name, value)
    except (AttributeError, ValueError, TypeError):
        log.debug("option %s=%r not taken by %r", name, value, obj)


# -- the program's socket object -------------------------------------------------------------

_SOCKOPTS_INT = {
    (SOL_SOCKET, _std.SO_REUSEADDR), (SOL_SOCKET, _std.SO_KEEPALIVE),
    (SOL_SOCKET, _std.SO_RCVBUF), (SOL_SOCKET, _std.SO_SNDBUF),
    (SOL_SOCKET, _std.SO_BROADCAST), (SOL_SOCKET, _SO_REUSEPORT),
    (SOL_SOCKET, _std.SO_OOBINLINE), (SOL_SOCKET, getattr(_std, "SO_PRIORITY", -2)),
    (IPPROTO_TCP, _std.TCP_NODELAY), (IPPROTO_TCP, _TCP_KEEPIDLE),
    (IPPROTO_TCP, _TCP_KEEPINTVL), (IPPROTO_TCP, _TCP_KEEPCNT),
    (IPPROTO_TCP, _TCP_USER_TIMEOUT), (IPPROTO_TCP, getattr(_std, "TCP_QUICKACK", -2)),
    (IPPROTO_TCP, getattr(_std, "TCP_CORK", -2)), (IPPROTO_TCP, getattr(_std, "TCP_MAXSEG", -2)),
    (IPPROTO_IP, _IP_TTL), (IPPROTO_IP, _IP_TOS),
}

_DEFAULT_OPTS: dict[tuple[int, int], int] = {
    (IPPROTO_IP, _IP_TTL): 64,
}


class socket(_RealSocket):  # noqa: N801 - the stdlib's name
    """``socket.socket`` over a femtotcp stack (see the module docstring)."""

    __slots__ = ("_net", "_link", "_sfamily", "_stype", "_sproto", "_finalizer")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, *, network: Network | None = None) -> None:
        if fileno is not None:
            raise ValueError("a femtotcp socket cannot wrap an existing file descriptor")
        net = network if network is not None else current_network()
        if net is None:
            raise _oserror(errno.ENETDOWN, "no femtotcp network: pass network= or use patch()")
        family = AF_INET if family in (-1, None) else int(family)
        type_ = SOCK_STREAM if type in (-1, None) else int(type)
        proto = 0 if proto in (-1, None) else int(proto)
        kind = type_ & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if family != AF_INET:
            raise _oserror(errno.EAFNOSUPPORT, "only AF_INET on this stack")
        link_cls: Any
        if kind == SOCK_STREAM:
            if proto not in (0, IPPROTO_TCP):
                raise _oserror(errno.EPROTONOSUPPORT)
            pair_kind = SOCK_STREAM
            link_cls = _TcpLink
        elif kind == SOCK_DGRAM:
            if proto in (0, IPPROTO_UDP):
                link_cls = _UdpLink
            elif proto == IPPROTO_ICMP:
                link_cls = _PingLink
            else:
                raise _oserror(errno.EPROTONOSUPPORT)
            pair_kind = SOCK_SEQPACKET
        else:
            raise _oserror(errno.ESOCKTNOSUPPORT, "only SOCK_STREAM and SOCK_DGRAM")
        a, b = _socket.socketpair(AF_UNIX, pair_kind)
        try:
            _RealSocket.__init__(self, AF_UNIX, pair_kind, 0, a.detach())
        except BaseException:
            b.close()
            raise
        try:
            q = _RealSocket(AF_UNIX, pair_kind, 0, b.detach())
            q.setblocking(False)
            if pair_kind == SOCK_STREAM:
                _RealSocket.setsockopt(self, SOL_SOCKET, _std.SO_SNDBUF, PAIR_BUF)
                q.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, PAIR_BUF)
            else:
                q.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, DGRAM_PAIR_BUF)
        except BaseException:
            _RealSocket.close(self)
            raise
        self._net = net
        self._sfamily = family
        self._stype = kind
        self._sproto = proto
        self._link: _Link = link_cls(net, q, self)
        self._finalizer: Any = weakref.finalize(self, _finalize, self._link)
        self._finalizer.atexit = False
        if type_ & SOCK_NONBLOCK:
            self.setblocking(False)

    # -- identity ----------------------------------------------------------------------------
    @property
    def family(self) -> _std.AddressFamily:
        return _std.AddressFamily(self._sfamily)

    @property
    def type(self) -> _std.SocketKind:
        return _std.SocketKind(self._stype)

    @property
    def proto(self) -> int:
        return self._sproto

    @property
    def network(self) -> Network:
        return self._net

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def dup(self) -> socket:
        """A second handle on the same stack socket (like dup(2))."""
        fd = os.dup(self.fileno())
        new = socket.__new__(socket)
        pair_kind = SOCK_STREAM if self._stype == SOCK_STREAM else SOCK_SEQPACKET
        try:
            _RealSocket.__init__(new, AF_UNIX, pair_kind, 0, fd)
        except BaseException:
            os.close(fd)
            raise
        new._net = self._net
        new._sfamily, new._stype, new._sproto = self._sfamily, self._stype, self._sproto
        new._link = self._link
        new._finalizer = weakref.finalize(new, _noop)
        new._finalizer.atexit = False
        self._link.handles += 1
        new.settimeout(self.gettimeout())
        return new

    def detach(self) -> int:
        """Hand P's fd over; the stack socket lives on as long as that fd does."""
        link = self._link
        link.detached = True
        self._finalizer.detach()
        if not link.registered:
            self._net.call(link.register)
        return _RealSocket.detach(self)

    def _real_close(self, _ss: Any = _socket.socket) -> None:
        link = self._link
        was_open = _RealSocket.fileno(self) != -1
        _ss.close(self)
        if not was_open:
            return
        link.handles -= 1
        if link.handles > 0 or link.detached or sys.is_finalizing():
            return
        self._finalizer.detach()
        try:
            self._net.call(link.program_closed)
        except Exception:  # closing must not fail because the stack did
            log.exception("closing a stack socket failed")

    # -- addresses ---------------------------------------------------------------------------
    def _addr(self, address: Any, what: str, resolve: bool = True) -> tuple[bytes, int]:
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"AF_INET address must be tuple, not {type(address).__name__}")
        host, port = address
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
        if not 0 <= port <= 65535:
            raise OverflowError(f"{what}(): port must be 0-65535.")
        if isinstance(host, bytes):
            host = host.decode("idna")
        if not isinstance(host, str):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if host in ("", "0.0.0.0"):
            return ANY4, port
        packed = _parse_ipv4(host)
        if packed is not None:
            return packed, port
        if host == "<broadcast>":
            return BROADCAST4, port
        if not resolve:
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        addrs = self._net._resolve(host)
        return _std.inet_aton(addrs[0]), port

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        link = self._link
        local = link.local
        if isinstance(link, _TcpLink) and local is None:
            local = link.bound
        if local is None:
            return ("0.0.0.0", 0)
        return (ip_str(local[0]), local[1])

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        remote = self._link.remote
        if remote is None or (isinstance(self._link, _TcpLink)
                              and self._link.mode not in ("connected", "done")):
            raise _oserror(errno.ENOTCONN)
        return (ip_str(remote[0]), remote[1])

    def _check_open(self) -> None:
        if _RealSocket.fileno(self) == -1:
            raise _oserror(errno.EBADF)

    # -- bind / listen / accept / connect ------------------------------------------------------
    def bind(self, address: Any) -> None:
        self._check_open()
        addr, port = self._addr(address, "bind", resolve=True)
        link = self._link
        if isinstance(link, _TcpLink | _UdpLink | _PingLink):
            self._net.call(link.bind, addr, port)
        else:  # pragma: no cover
            raise _oserror(errno.EOPNOTSUPP)

    def listen(self, backlog: int = DEFAULT_BACKLOG) -> None:
        self._check_open()
        link = self._link
        if not isinstance(link, _TcpLink):
            raise _oserror(errno.EOPNOTSUPP)
        self._net.call(link.listen, int(backlog))

    def _accept(self) -> tuple[int, Any]:
        raise _oserror(errno.EOPNOTSUPP)

    def accept(self) -> tuple[socket, tuple[str, int]]:
        link = self._link
        if not isinstance(link, _TcpLink) or link.mode != "listening":
            self._check_open()
            raise _oserror(errno.EINVAL)
        while True:
            token = _RealSocket.recv(self, 1)
            if not token:
                raise _oserror(errno.EINVAL, "the listening socket was closed")
            conn = self._net.call(link.take_ready)
            if conn is not None:
                break
        new = socket(self._sfamily, self._stype, self._sproto, network=self._net)
        new_link = new._link
        assert isinstance(new_link, _TcpLink)
        new_link.opts.update({k: v for k, v in link.opts.items()})
        self._net.call(new_link.attach_accepted, conn)
        if _std.getdefaulttimeout() is None and self.gettimeout():
            new.setblocking(True)
        remote = new_link.remote or (ANY4, 0)
        return new, (ip_str(remote[0]), remote[1])

    def connect(self, address: Any) -> None:
        err = self._connect(address, raise_errors=True)
        if err:
            raise _oserror(err)

    def connect_ex(self, address: Any) -> int:
        try:
            return self._connect(address, raise_errors=False)
        except TimeoutError:
            return errno.EWOULDBLOCK
        except gaierror:
            raise
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno

    def _connect(self, address: Any, raise_errors: bool) -> int:
        self._check_open()
        dst, port = self._addr(address, "connect")
        link = self._link
        net = self._net
        if isinstance(link, _UdpLink | _PingLink):
            net.call(link.connect, dst, port)
            return 0
        assert isinstance(link, _TcpLink)
        if port == 0:
            return errno.ECONNREFUSED if not raise_errors else _raise(errno.ECONNREFUSED)
        tmo = self.gettimeout()
        if tmo == 0:
            if link.mode == "connecting":
                return errno.EALREADY
            filler = self._fill() if link.mode == "idle" else 0

            def start() -> str:
                link.start_connect(dst, port, filler)
                return link.mode        # as it is before the loop runs on

            mode = net.call(start)
            if mode == "connected":
                return 0
            if mode == "failed":
                err = link.connect_error
                link.so_error = 0
                return err
            return errno.EINPROGRESS
        done = net.call(link.start_connect, dst, port, 0)
        try:
            finished = net.wait(done, tmo)
        except BaseException:
            net.call(link.abort_connect)
            raise
        if not finished:
            net.call(link.abort_connect)
            if link.mode == "connected":
                return 0
            raise TimeoutError("timed out")
        if link.mode == "failed":
            link.so_error = 0
            return link.connect_error
        return 0

    def _fill(self) -> int:
        """Fill P's send buffer so that P is not writable until the connection is
        up (the loop thread discards these bytes then). Non-blocking only."""
        total = 0
        block = b"\0" * 4096
        while True:
            try:
                total += _RealSocket.send(self, block, _std.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return total
            except OSError:
                return total

    # -- data ----------------------------------------------------------------------------------
    def _data_error(self, exc: OSError | None = None) -> OSError | None:
        """The error to report instead of EOF/EPIPE on P, if the stack connection failed."""
        link = self._link
        err = link.program_error
        if err:
            link.program_error = None
            return _oserror(err)
        if isinstance(link, _TcpLink) and link.mode in ("idle", "listening", "failed",
                                                        "connecting"):
            return _oserror(errno.ENOTCONN if link.mode != "failed" else errno.EPIPE)
        return exc

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        link = self._link
        if isinstance(link, _DgramLink):
            return self._recv_dgram(bufsize, flags)[0]
        if link.mode in ("idle", "listening", "connecting"):  # type: ignore[attr-defined]
            self._check_open()
            raise _oserror(errno.ENOTCONN)
        data = _RealSocket.recv(self, bufsize, flags)
        if not data and bufsize and link.program_error:
            exc = self._data_error()
            if exc is not None:
                raise exc
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        link = self._link
        if isinstance(link, _DgramLink):
            mv = memoryview(buffer).cast("B")
            size = nbytes or len(mv)
            data = self._recv_dgram(size, flags)[0]
            mv[:len(data)] = data
            return len(data)
        if link.mode in ("idle", "listening", "connecting"):  # type: ignore[attr-defined]
            self._check_open()
            raise _oserror(errno.ENOTCONN)
        n = _RealSocket.recv_into(self, buffer, nbytes, flags)
        if n == 0 and link.program_error and (nbytes or len(memoryview(buffer))):
            exc = self._data_error()
            if exc is not None:
                raise exc
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if isinstance(self._link, _DgramLink):
            return self._recv_dgram(bufsize, flags)
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        if isinstance(self._link, _DgramLink):
            mv = memoryview(buffer).cast("B")
            size = nbytes or len(mv)
            data, addr = self._recv_dgram(size, flags)
            mv[:len(data)] = data
            return len(data), addr
        return self.recv_into(buffer, nbytes, flags), None

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[Any], int, Any]:
        data, addr = self.recvfrom(bufsize, flags)
        return data, [], 0, addr

    def _recv_dgram(self, bufsize: int, flags: int) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        while True:
            rec = _RealSocket.recv(self, bufsize + _REC.size, flags)
            if len(rec) < _REC.size:
                return b"", None
            kind, alen, port, addr = _REC.unpack_from(rec)
            if kind != _KIND_ERROR:
                break
            link = self._link
            if flags & _std.MSG_PEEK:
                if not (isinstance(link, _DgramLink) and link.cancelled):
                    raise _oserror(port)
                _RealSocket.recv(self, _REC.size, flags & ~_std.MSG_PEEK)
            if not (isinstance(link, _DgramLink) and link.error_record_read()):
                raise _oserror(port)
        return rec[_REC.size:], (ip_str(addr[:alen]), port)

    def send(self, data: Any, flags: int = 0) -> int:
        link = self._link
        if isinstance(link, _DgramLink):
            return self._net.call(link.send, bytes(data))
        if link.mode != "connected":  # type: ignore[attr-defined]
            self._check_open()
            exc = self._data_error()
            raise exc if exc is not None else _oserror(errno.EPIPE)
        try:
            return _RealSocket.send(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._data_error(exc) or exc from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        link = self._link
        if isinstance(link, _DgramLink):
            self._net.call(link.send, bytes(data))
            return
        if link.mode != "connected":  # type: ignore[attr-defined]
            self._check_open()
            exc = self._data_error()
            raise exc if exc is not None else _oserror(errno.EPIPE)
        try:
            _RealSocket.sendall(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._data_error(exc) or exc from None

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        address = flags_or_addr if addr is None else addr
        link = self._link
        if isinstance(link, _DgramLink):
            self._check_open()
            dst, port = self._addr(address, "sendto")
            return self._net.call(link.sendto, bytes(data), dst, port)
        if link.mode != "connected":  # type: ignore[attr-defined]
            raise _oserror(errno.EPIPE if link.mode == "done" else errno.ENOTCONN)  # type: ignore[attr-defined]
        return self.send(data)

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[Any] = (), flags: int = 0,
                address: Any = None) -> int:
        data = b"".join(bytes(b) for b in buffers)
        if address is not None:
            return self.sendto(data, address)
        return self.send(data, flags)

    def shutdown(self, how: int) -> None:
        self._check_open()
        link = self._link
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _oserror(errno.EINVAL)
        if isinstance(link, _TcpLink):
            if link.mode == "listening":
                if how in (SHUT_RD, SHUT_RDWR):
                    _RealSocket.shutdown(self, SHUT_RD)
                return
            if link.mode not in ("connected", "done"):
                raise _oserror(errno.ENOTCONN)
            try:
                _RealSocket.shutdown(self, how)
            except OSError:
                pass
            if how in (SHUT_RD, SHUT_RDWR) and link.mode == "connected":
                self._net.call(link.shutdown_read)
            elif link.mode == "connected":
                self._net.call(link.pump)
            return
        if link.remote is None:
            raise _oserror(errno.ENOTCONN)
        if how in (SHUT_RD, SHUT_RDWR):
            _RealSocket.shutdown(self, SHUT_RD)

    # -- options ---------------------------------------------------------------------------------
    def setsockopt(self, level: int, optname: int, value: Any,
                   optlen: int | None = None) -> None:
        self._check_open()
        link = self._link
        if level == _IPPROTO_IPV6:
            raise _oserror(errno.ENOPROTOOPT)
        if level == SOL_SOCKET and optname == _std.SO_LINGER:
            if isinstance(value, int):
                raise _oserror(errno.EINVAL)
            onoff, secs = _LINGER.unpack(bytes(value)[:_LINGER.size])
            val: Any = (onoff, secs)
        elif (level, optname) in _SOCKOPTS_INT:
            if isinstance(value, int | bool):
                val = int(value)
            elif value is None:
                raise TypeError("setsockopt() value must be an int or a buffer")
            else:
                raw = bytes(value)
                val = int.from_bytes(raw[:4], sys.byteorder) if raw else 0
        elif level == SOL_SOCKET and optname in (getattr(_std, "SO_RCVTIMEO", -2),
                                                 getattr(_std, "SO_SNDTIMEO", -2)):
            _RealSocket.setsockopt(self, level, optname, value)
            return
        else:
            raise _oserror(errno.ENOPROTOOPT)
        if isinstance(link, _TcpLink):
            self._net.call(link.set_opt, level, optname, val)
        else:
            def set_dgram() -> None:
                link.opts[(level, optname)] = val
                if isinstance(link, _UdpLink):
                    link.apply_opts()
            self._net.call(set_dgram)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        self._check_open()
        link = self._link
        if level == SOL_SOCKET:
            if optname == _std.SO_ERROR:
                val: Any = self._net.call(link.take_so_error)
                return self._opt_out(val, buflen)
            if optname == _std.SO_TYPE:
                return self._opt_out(self._stype, buflen)
            if optname == getattr(_std, "SO_DOMAIN", -2):
                return self._opt_out(self._sfamily, buflen)
            if optname == getattr(_std, "SO_PROTOCOL", -2):
                proto = self._sproto or (IPPROTO_TCP if self._stype == SOCK_STREAM
                                         else IPPROTO_UDP)
                return self._opt_out(proto, buflen)
            if optname == getattr(_std, "SO_ACCEPTCONN", -2):
                return self._opt_out(int(getattr(link, "mode", "") == "listening"), buflen)
            if optname == _std.SO_LINGER:
                onoff, secs = link.opts.get((level, optname), (0, 0))
                packed = _LINGER.pack(onoff, secs)
                return packed[:buflen] if buflen else _LINGER.unpack(packed)[0]
            if optname in (_std.SO_RCVBUF, _std.SO_SNDBUF):
                val = link.opts.get((level, optname))
                if val is None:
                    val = self._net.call(_current_buf, link, optname)
                return self._opt_out(val, buflen)
        if level == _IPPROTO_IPV6:
            raise _oserror(errno.ENOPROTOOPT)
        if (level, optname) in _SOCKOPTS_INT:
            return self._opt_out(link.opts.get((level, optname),
                                               _DEFAULT_OPTS.get((level, optname), 0)), buflen)
        if level == SOL_SOCKET and optname in (getattr(_std, "SO_RCVTIMEO", -2),
                                               getattr(_std, "SO_SNDTIMEO", -2)):
            if buflen is None:
                return _RealSocket.getsockopt(self, level, optname)
            return _RealSocket.getsockopt(self, level, optname, buflen)
        raise _oserror(errno.ENOPROTOOPT)

    @staticmethod
    def _opt_out(value: int, buflen: int | None) -> Any:
        if buflen is None:
            return int(value)
        return int(value).to_bytes(4, sys.byteorder, signed=True)[:buflen]

    def __repr__(self) -> str:
        closed = _RealSocket.fileno(self) == -1
        s = (f"<{self.__class__.__module__}.{self.__class__.__qualname__}"
             f"{' [closed]' if closed else ''} fd={_RealSocket.fileno(self)}, "
             f"family={self.family!s}, type={self.type!s}, proto={self.proto}")
        if not closed:
            try:
                s += f", laddr={self.getsockname()}"
                s += f", raddr={self.getpeername()}"
            except OSError:
                pass
        return s + ">"


StackSocket = socket


def _raise(err: int) -> int:
    raise _oserror(err)


def _current_buf(link: _Link, optname: int) -> int:
    obj: Any = getattr(link, "conn", None) or getattr(link, "ep", None)
    if obj is None and isinstance(link, _TcpLink) and link.net.stack.tcp is not None:
        cfg = getattr(link.net.stack.tcp, "config", None)
        return int(getattr(cfg, "rcvbuf" if optname == _std.SO_RCVBUF else "sndbuf", 0) or 0)
    name = "rcvbuf" if optname == _std.SO_RCVBUF else "sndbuf"
    return int(getattr(obj, name, 0) or 0)


# -- module-level helpers on the current network -------------------------------------------------

def _net() -> Network:
    net = current_network()
    if net is None:
        raise _oserror(errno.ENETDOWN, "no femtotcp network: use patch() or Network methods")
    return net


def create_connection(address: tuple[str, int],
                      timeout: float | None | object = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[str, int] | None = None, *,
                      all_errors: bool = False) -> socket:
    return _net().create_connection(address, timeout, source_address, all_errors=all_errors)


def create_server(address: tuple[str, int], *, family: int = AF_INET,
                  backlog: int | None = None, reuse_port: bool = False,
                  dualstack_ipv6: bool = False) -> socket:
    return _net().create_server(address, family=family, backlog=backlog,
                                reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6)


def getaddrinfo(host: str | bytes | None, port: str | bytes | int | None, family: int = 0,
                type: int = 0, proto: int = 0, flags: int = 0) -> list[Any]:
    return _net().getaddrinfo(host, port, family, type, proto, flags)


def gethostbyname(name: str) -> str:
    return _net().gethostbyname(name)


def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
    return _net().gethostbyname_ex(name)


def gethostbyaddr(addr: str) -> tuple[str, list[str], list[str]]:
    return _net().gethostbyaddr(addr)


def getfqdn(name: str = "") -> str:
    return _net().getfqdn(name)


__all__ = [
    "Network", "socket", "network_for", "current_network", "create_connection",
    "create_server", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
    "getfqdn", "timeout", "error", "gaierror", "herror",
]
