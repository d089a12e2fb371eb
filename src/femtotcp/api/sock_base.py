"""The shared base of every stack socket's loop-thread half (a "link").

A program's socket (``femtotcp.api.socket``) owns one end "P" of a Unix
socketpair; its link owns the other end "Q" and the stack object behind it,
and lives in the loop thread. This module has what all links share: the
constants, ``_Watch`` (Q in the runtime's selector), and ``_Link`` (lifetime,
SO_ERROR, crash containment). One module per kind builds on it:
``sock_tcp`` (the byte pump and listening), ``sock_udp`` and ``sock_ping``
(datagram records).
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
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from femtotcp.wire import ip_str
from femtotcp.wire import ipv4 as wire_ipv4
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire.ipv6 import is_link_local, is_link_scope

if TYPE_CHECKING:
    from femtotcp.api.network import Network
    from femtotcp.api.socket import socket
    from femtotcp.runtime import Runtime
    from femtotcp.stack.interface import Interface

log = logging.getLogger("femtotcp.api.socket")

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
ANY6 = bytes(16)
IPPROTO_IPV6 = _std.IPPROTO_IPV6
IPV6_V6ONLY = _std.IPV6_V6ONLY
_V4_MAPPED = bytes(10) + b"\xff\xff"
BROADCAST4 = b"\xff\xff\xff\xff"
#: What a failed connect returns (the attempt is over; connect may try again).
_CONNECT_FAILED = frozenset({errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                             errno.ENETUNREACH, errno.ECONNRESET})
#: The options P keeps itself (``sock_common.set_timeo``, ``set_on_p``).
_P_OPTS = (_std.SO_RCVTIMEO, _std.SO_SNDTIMEO, _std.SO_RCVLOWAT, _std.SO_OOBINLINE)
#: Reads that never take what a TCP connection received after SHUT_RD.
_NOT_HELD = _std.MSG_PEEK | _std.MSG_OOB
#: More than any datagram's payload: a read of this size takes a record whole.
DGRAM_MAX = 65536


def this_host(dst: bytes, bound: bytes | None) -> bytes:
    """Where a connect or send to ``dst`` goes when ``dst`` is the wildcard
    (0.0.0.0 or ::): this host, as Linux's route lookup takes it, the socket's
    own bound address, else the loopback; any other ``dst`` as it is."""
    if dst != ANY4 and dst != ANY6:
        return dst
    if bound is not None and bound != ANY4 and bound != ANY6 and len(bound) == len(dst):
        return bound
    return wire_ipv4.LOOPBACK if len(dst) == 4 else wire_ipv6.LOOPBACK


CHUNK = 65536            # bytes moved per pump step
PAIR_BUF = 65536         # SO_SNDBUF of each socketpair end (Linux doubles it)
DGRAM_PAIR_BUF = 262144  # room for a few maximum-size datagrams towards the program
DEFAULT_BACKLOG = 128

# Datagram records on the seqpacket pair: kind, address length, port (or errno), address.
_REC = struct.Struct("!BBH16s")
_KIND_DATA = 0
_KIND_ERROR = 1
_KIND_SEND = 2      # program -> stack: a datagram to send (attached programs, api/remote.py)
#: A datagram from a link-scope IPv6 source: the record, then its scope id
#: (``_SCOPE``, the arrival interface's index) before the payload.
_KIND_DATA_SCOPED = 3
_SCOPE = struct.Struct("!I")
#: Send records the loop thread takes from one socket before moving on.
SEND_BATCH = 32
_LINGER = struct.Struct("ii")
#: The events that say the program's end of a pair is gone (POLLHUP, POLLERR).
_GONE = select.POLLHUP | select.POLLERR

_SO_REUSEPORT: int = getattr(_std, "SO_REUSEPORT", -1)
_TCP_KEEPIDLE: int = getattr(_std, "TCP_KEEPIDLE", -1)
_TCP_KEEPINTVL: int = getattr(_std, "TCP_KEEPINTVL", -1)
_TCP_KEEPCNT: int = getattr(_std, "TCP_KEEPCNT", -1)
_TCP_USER_TIMEOUT: int = getattr(_std, "TCP_USER_TIMEOUT", -1)
_IP_TTL: int = getattr(_std, "IP_TTL", 2)
_IP_TOS: int = getattr(_std, "IP_TOS", 1)
_IP_MTU_DISCOVER: int = getattr(_std, "IP_MTU_DISCOVER", 10)
_IPPROTO_IPV6: int = getattr(_std, "IPPROTO_IPV6", 41)


def _oserror(err: int, what: str | None = None) -> OSError:
    """``OSError(err)``, which Python turns into the matching subclass
    (ConnectionRefusedError, BrokenPipeError, ...)."""
    msg = os.strerror(err)
    return OSError(err, f"{msg} ({what})" if what else msg)


# -- loop-thread side: fd watching ------------------------------------------------------------

class _Watch:
    """Q's registration in the runtime's selector (loop thread only). The
    runtime calls ``on_readable`` for any ready event of a registered fd."""

    def __init__(self, runtime: Runtime, fd: int, callback: Callable[[], None],
                 kind: str) -> None:
        self.runtime = runtime
        self.fd = fd
        self.callback = callback
        #: What the runtime calls when Q is ready: the callback itself (no
        #: frame of ours between the loop and the link).
        self.on_readable: Callable[[], None] = callback
        self.kind = kind
        self.events = 0

    @property
    def name(self) -> str:
        """What the runtime's log names it by (made only when it is shown)."""
        return f"api-{self.kind}-{self.fd}"

    def __repr__(self) -> str:
        return self.name

    def set(self, read: bool, write: bool) -> None:
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        if events == self.events:
            return
        try:
            self.runtime.watch_fd(self.fd, read, write, self)
        except (KeyError, ValueError, OSError):
            log.debug("selector update for fd %d failed", self.fd, exc_info=True)
        self.events = events

    def close(self) -> None:
        self.set(False, False)


def _host_port(host: Any, port: Any, what: str) -> tuple[str, int]:
    """The host and port of an address argument, with the stdlib's errors."""
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 65535:
        raise OverflowError(f"{what}(): port must be 0-65535.")
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    return host, port


def scope_index(net: Any, packed: bytes, suffix: str) -> int:
    """The scope id of an address's ``%suffix`` as glibc's getaddrinfo reads
    it: a number as it is; an interface name (``net.if_nametoindex``) only
    on a link-scope address; anything else is EAI_NONAME."""
    if suffix.isdigit() and suffix.isascii():
        value = int(suffix)
        if value <= 0xFFFFFFFF:
            return value
    elif suffix and is_link_scope(packed):
        try:
            return int(net.if_nametoindex(suffix))
        except (OSError, AttributeError):
            pass
    raise gaierror(_std.EAI_NONAME, "Name or service not known")


class _Link:
    """The loop-thread half of one socket: Q and the stack object behind it."""

    kind = "?"
    #: (family, type, proto, P's inode) once ``detach`` gave P's fd away.
    detached_as: tuple[int, int, int, int] | None = None
    #: The loop runs Q's handler now (``on_q_ready``): the runtime's
    #: ``ready_events`` are Q's.
    q_ready = False
    #: Q's pair was made by the loop thread and never left it: Q's fd is the
    #: only reference to its file, so closing it drops its epoll registration.
    q_sole = False

    def __init__(self, net: Network, q: _socket.socket, owner: socket) -> None:
        self.net = net
        self.q: _socket.socket | None = q
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
        #: An AF_INET6 socket: its wildcard is ``::``; IPv4 peers have 4-byte
        #: addresses in the stack and are shown as ::ffff:a.b.c.d.
        self.v6 = getattr(owner, "_sfamily", AF_INET) == AF_INET6
        #: The interface index this socket is tied to by a link-local bind or
        #: a connect to a link-scope address (Linux's sk_bound_dev_if); 0: none.
        self.scope = 0

    # -- scope ids (RFC 4007), loop thread ------------------------------------------------
    def scope_iface(self, scope: int) -> Interface | None:
        """The stack's interface with index ``scope`` (None: no such interface)."""
        return next((i for i in self.net.stack.interfaces if i.index == scope), None)

    def bind_scope(self, addr: bytes, scope: int) -> None:
        """Bind to a link-local address as Linux's inet6_bind: it needs a
        scope id (EINVAL), one an interface has (ENODEV), and the address on
        that interface (EADDRNOTAVAIL); the socket is then tied to it."""
        if len(addr) != 16 or not is_link_local(addr):
            return
        if not scope:
            raise _oserror(errno.EINVAL, "a link-local address needs a scope id")
        iface = self.scope_iface(scope)
        if iface is None:
            raise _oserror(errno.ENODEV, f"no interface with index {scope}")
        if not any(a.addr == addr and a.usable for a in iface.ipv6):
            raise _oserror(errno.EADDRNOTAVAIL, "cannot assign requested address")
        self.scope = scope

    def dst_iface(self, dst: bytes, scope: int, connect: bool,
                  required: bool = False) -> Interface | None:
        """The interface a link-scope IPv6 destination is on: its scope id,
        else the socket's own. As Linux: a connect (and any ping) without one
        is EINVAL, a connect naming another interface than the socket's is
        EINVAL, an index no interface has is ENETUNREACH. None for other
        destinations, and for a datagram sent without a scope (the stack
        picks the interface)."""
        if len(dst) != 16 or not is_link_scope(dst):
            return None
        if connect and scope and self.scope and scope != self.scope:
            raise _oserror(errno.EINVAL, "the socket is tied to another interface")
        scope = scope or self.scope
        if not scope:
            if connect or required:
                raise _oserror(errno.EINVAL, "a link-local destination needs a scope id")
            return None
        iface = self.scope_iface(scope)
        if iface is None:
            raise _oserror(errno.ENETUNREACH, f"no interface with index {scope}")
        return iface

    def local_scope(self, addr: bytes) -> int:
        """The index of the interface holding our link-scope address ``addr``
        (0 for other addresses, or when no interface has it)."""
        if len(addr) != 16 or not is_link_scope(addr):
            return 0
        iface = self.net.stack.local_iface(addr)
        return iface.index if iface is not None else 0

    @property
    def any_addr(self) -> bytes:
        return ANY6 if self.v6 else ANY4

    @property
    def v6only(self) -> bool:
        """IPV6_V6ONLY (off by default, as Linux's net.ipv6.bindv6only)."""
        return self.v6 and bool(self.opts.get((IPPROTO_IPV6, IPV6_V6ONLY)))

    def refuse_mapped(self, addr: bytes, err: int) -> None:
        """``err`` for an IPv4 address (a v4-mapped one, as the stack holds it)
        on an IPV6_V6ONLY socket, as Linux: EINVAL to bind, ENETUNREACH to
        connect or send to."""
        if len(addr) == 4 and self.v6only:
            raise _oserror(err)

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
        self.watch = _Watch(self.net.runtime, self.q.fileno(), self.guard(self.on_q_ready),
                            self.kind)

    def on_q(self) -> None:
        """Q is ready (readable or writable, or the program's side is gone)."""

    def on_q_ready(self) -> None:
        """The loop's epoll reported Q ready (its watch); ``on_q`` unless a
        kind does less per wake-up, relying on epoll (level-triggered) to
        report what is left. Others (``Network.reap``) call ``on_q``."""
        self.on_q()

    def program_closed(self, abort: bool = False) -> None:
        """The program closed its last handle (P is closed already)."""

    def release(self) -> None:
        """Forget everything (loop thread): Q closed, stack object closed by the caller."""
        if self.released:
            return
        self.released = True
        watch = self.watch
        if watch is not None and watch.events:
            if self.q_sole and self.q is not None:
                # The close below drops the registration with the file.
                watch.runtime.forget_fd(watch.fd)
                watch.events = 0
            else:
                watch.set(False, False)
        if self.q is not None:
            try:
                self.q.close()
            except OSError:
                pass
            self.q = None
        net = self.net
        mcast = getattr(self, "mcast", None)
        if mcast is not None and mcast.groups:      # (a socket's groups end with it)
            from femtotcp.stack.mcast import drop_all
            drop_all(net.stack, mcast)
        net.links.discard(self)
        if net.reserved:
            for key, link in list(net.reserved.items()):
                if link is self:
                    del net.reserved[key]

    def p_gone(self) -> bool:
        """True when the program's end of the pair is fully closed (POLLHUP on Q).
        Asked while the loop runs Q's handler (``q_ready``), the events epoll
        woke it for answer when they say so: POLLHUP stays once set."""
        if self.q is None:
            return True
        if self.q_ready and self.net.runtime.ready_events & _GONE:
            return True
        poller = select.poll()
        poller.register(self.q.fileno(), select.POLLIN)
        for _fd, ev in poller.poll(0):
            if ev & (select.POLLHUP | select.POLLERR):
                return True
        return False

    def take_so_error(self) -> int:
        """SO_ERROR: the socket's pending error, taken. Linux keeps one (sk_err):
        once read here, recv and send no longer report it."""
        err, self.so_error = self.so_error, 0
        if err:
            self.program_error = None
        return err

    def take_program_error(self) -> int:
        """The error a recv or send reports (0: none), taken: SO_ERROR then
        reads 0, as Linux's one sk_err."""
        err = self.program_error or 0
        self.program_error = None
        if err:
            self.so_error = 0
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


# -- program side: what every stack socket class shares --------------------------------------

#: Holds True once ``install_tls`` ran in this process.
tls_installed: list[bool] = []


def install_tls() -> None:
    """Once a process, when its first stack stream socket is made: ``ssl``
    wraps stack sockets knowing their state (api/tls.py); a build without
    ssl simply has no TLS."""
    tls_installed.append(True)
    try:
        from femtotcp.api import tls
    except ImportError:
        return
    tls.install()


class _SocketBase(_RealSocket):
    """The program's half of a stack socket, whatever runs the stack (this
    process: ``femtotcp.api.socket``; an attached serve: ``api/remote.py``): a
    real socket object for P, showing the stack socket's family, type and proto."""

    __slots__ = ("_connect_unreported",)
    #: The stack socket class whose SSL class ``wrap_socket`` builds (api/tls.py).
    _tls_base: ClassVar[type | None] = None
    _sfamily: int
    _stype: int
    _sproto: int

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
    def network(self) -> Any:
        """The network this socket is on (name lookups go there)."""
        raise NotImplementedError

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def _check_open(self) -> None:
        if _RealSocket.fileno(self) == -1:
            raise _oserror(errno.EBADF)

    def _fmt(self, addr: bytes | None, port: int, scope: int = 0) -> Any:
        """An address as the socket's family shows it: (host, port) for AF_INET,
        (host, port, flowinfo, scope_id) for AF_INET6, where an IPv4 peer
        reads ::ffff:a.b.c.d and ``scope`` shows for a link-scope address only
        (as Linux's getname and recvmsg)."""
        if self._sfamily != AF_INET6:
            return (ip_str(addr) if addr else "0.0.0.0", port)
        if not addr or addr == ANY4:
            return ("::", port, 0, 0)
        if len(addr) == 4:
            return ("::ffff:" + ip_str(addr), port, 0, 0)
        return (ip_str(addr), port, 0, scope if is_link_scope(addr) else 0)

    def _addr6(self, address: Any, what: str, resolve: bool) -> tuple[bytes, int, int]:
        """(packed address, port, scope id) for an AF_INET6 address argument: a
        16-byte address, or 4 bytes for a v4-mapped one (IPv4 on the wire).
        The scope is the tuple's scope_id, else a ``%ifname``/``%index``
        suffix of the host (named as getaddrinfo does, ``scope_index``); it
        is kept for link-scope addresses only, which are the ones it means
        something for (RFC 4007)."""
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, "
                            "scopeid]])")
        host, port = _host_port(address[0], address[1], what)
        if len(address) > 2 and not 0 <= int(address[2]) <= 0xFFFFF:
            raise OverflowError(f"{what}(): flowinfo must be 0-1048575.")
        scope = int(address[3]) if len(address) > 3 else 0
        if not 0 <= scope <= 0xFFFFFFFF:
            raise OverflowError(f"{what}(): scope_id must be 0-4294967295.")
        if host in ("", "::"):
            return ANY6, port, 0
        text, sep, suffix = host.partition("%")
        try:
            packed = _std.inet_pton(AF_INET6, text)
        except OSError:
            if not resolve:
                raise gaierror(_std.EAI_NONAME, "Name or service not known") from None
            addrs = self.network._resolve(host)
            return _std.inet_aton(addrs[0]), port, 0
        if packed[:12] == _V4_MAPPED:
            return packed[12:], port, 0
        if sep and not scope:
            scope = scope_index(self.network, packed, suffix)
        return packed, port, (scope if is_link_scope(packed) else 0)

    def _addr_scoped(self, address: Any, what: str,
                     resolve: bool = True) -> tuple[bytes, int, int]:
        """(packed address, port, scope id) for an address argument of the
        socket's family (scope 0 for IPv4)."""
        if self._sfamily == AF_INET6:
            return self._addr6(address, what, resolve)
        packed, port = self._addr(address, what, resolve)
        return packed, port, 0

    def _addr(self, address: Any, what: str, resolve: bool = True) -> tuple[bytes, int]:
        """(packed IPv4 address, port) for an AF_INET address argument, with the
        stdlib's errors; names are resolved on the socket's network."""
        if self._sfamily == AF_INET6:
            return self._addr6(address, what, resolve)[:2]
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"AF_INET address must be tuple, not {type(address).__name__}")
        host, port = _host_port(address[0], address[1], what)
        if host in ("", "0.0.0.0"):
            return ANY4, port
        from femtotcp.api.network import _parse_ipv4
        packed = _parse_ipv4(host)
        if packed is not None:
            return packed, port
        if host == "<broadcast>":
            return BROADCAST4, port
        if not resolve:
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        addrs = self.network._resolve(host)
        return _std.inet_aton(addrs[0]), port

    def _connect(self, address: Any, raise_errors: bool) -> int:
        raise NotImplementedError

    #: Linux's socket-layer state of a TCP connect (``struct socket``'s, not
    #: TCP's): after a connect that returned EINPROGRESS or EALREADY, or one
    #: made with a timeout (Python makes the fd non-blocking and polls), the
    #: socket is still "connecting" to that layer (``_connect_unreported``,
    #: unset: False); the next connect that finds the connection made returns
    #: 0, once, and only later ones EISCONN.
    #: A connect that failed this way leaves such a socket "connecting" too:
    #: the next connect reports the failure (its error if still pending, else
    #: ECONNABORTED) and only the one after tries again (``_renew``).
    def _connect_reported(self, address: Any, raise_errors: bool) -> int:
        if self._stype != _std.SOCK_STREAM:
            return self._connect(address, raise_errors)
        unreported = getattr(self, "_connect_unreported", False)
        if unreported and self._connect_failed():
            self._connect_unreported = False
            err = self.getsockopt(SOL_SOCKET, _std.SO_ERROR) or errno.ECONNABORTED
            if raise_errors:
                raise _oserror(err)
            return err
        try:
            err = self._connect(address, raise_errors)
        except OSError as exc:
            if exc.errno == errno.EISCONN and unreported:
                err = errno.EISCONN
            else:
                if exc.errno in _CONNECT_FAILED:
                    self._connect_unreported = self.gettimeout() is not None
                raise
        if err == errno.EISCONN and unreported:
            self._connect_unreported = False
            return 0
        if err in (errno.EINPROGRESS, errno.EALREADY):
            self._connect_unreported = True
        elif err == 0 or err in _CONNECT_FAILED:
            self._connect_unreported = self.gettimeout() is not None
        return err

    def _connect_failed(self) -> bool:
        """Whether this TCP socket's connect failed (the stack gave up on it)."""
        raise NotImplementedError

    def _fresh_pair(self, tune: Callable[[_socket.socket, _socket.socket], None]
                    ) -> _socket.socket:
        """For a TCP socket whose connect failed and that connects again, as
        Linux lets it (tcp_disconnect): a new pair in place of the spent one.
        P keeps its fd number (``dup2``), its own options (timeouts,
        SO_RCVLOWAT, SO_OOBINLINE) and its blocking mode; the new Q is returned for the
        stack's new link."""
        fd = _RealSocket.fileno(self)
        kept = [(opt, _RealSocket.getsockopt(self, SOL_SOCKET, opt, 16)) for opt in _P_OPTS]
        p, q = _socket.socketpair(AF_UNIX, _std.SOCK_STREAM | SOCK_CLOEXEC)
        try:
            tune(p, q)
            os.dup2(p.fileno(), fd, inheritable=False)
        except BaseException:
            q.close()
            raise
        finally:
            p.close()
        for opt, raw in kept:
            _RealSocket.setsockopt(self, SOL_SOCKET, opt,
                                   raw if len(raw) > 4 else int.from_bytes(raw[:4], sys.byteorder))
        self.settimeout(self.gettimeout())      # O_NONBLOCK on the new file as before
        return q

    def connect(self, address: Any) -> None:
        err = self._connect_reported(address, raise_errors=True)
        if err:
            raise _oserror(err)

    def connect_ex(self, address: Any) -> int:
        try:
            return self._connect_reported(address, raise_errors=False)
        except TimeoutError:
            return errno.EWOULDBLOCK
        except gaierror:
            raise
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno

    def _fill(self) -> int:
        """Fill P's send buffer so that P is not writable until the connection is
        up (the loop thread discards these bytes then). Non-blocking only."""
        total = 0
        block = b"\0" * 4096
        while True:
            try:
                total += _RealSocket.send(self, block, _std.MSG_DONTWAIT)
            except OSError:        # BlockingIOError: full; anything else: done too
                return total

    def _send_urgent(self, data: Any) -> int:
        """A send with MSG_OOB: the data goes to the stack with the request,
        which queues it after what P holds and marks its last byte urgent
        (``_urgent``); a datagram socket has no urgent data (EOPNOTSUPP, as
        Linux's UDP)."""
        if self._stype != _std.SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        payload = bytes(data)
        if payload:
            self._urgent(payload)
        return len(payload)

    def _urgent(self, payload: bytes) -> None:
        raise NotImplementedError

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[Any], int, Any]:
        if self._stype != _std.SOCK_DGRAM:
            data, addr = self.recvfrom(bufsize, flags)
            return data, [], 0, addr
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        # The whole datagram (MSG_TRUNC asks recvfrom for its real length), so
        # that MSG_TRUNC in the flags returned says whether it was cut.
        whole, addr = self.recvfrom(bufsize, flags | _std.MSG_TRUNC)
        out = _std.MSG_TRUNC if len(whole) > bufsize else 0
        return (whole if flags & _std.MSG_TRUNC else whole[:bufsize]), [], out, addr

    def recvmsg_into(self, buffers: Iterable[Any], ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list[Any], int, Any]:
        """``recvmsg`` scattered into ``buffers`` (P's own would hand a datagram
        socket's records to the program whole, header and all)."""
        views = [memoryview(b).cast("B") for b in buffers]
        data, anc, out, addr = self.recvmsg(sum(len(v) for v in views), ancbufsize,
                                            flags & ~_std.MSG_TRUNC)
        at = 0
        for view in views:
            part = data[at:at + len(view)]
            view[:len(part)] = part
            at += len(part)
        return at, anc, out, addr

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[Any] = (), flags: int = 0,
                address: Any = None) -> int:
        data = b"".join(bytes(b) for b in buffers)
        if address is not None:
            return self.sendto(data, address)
        return self.send(data, flags)

    @staticmethod
    def _opt_out(value: int, buflen: int | None) -> Any:
        if buflen is None:
            return int(value)
        return int(value).to_bytes(4, sys.byteorder, signed=True)[:buflen]
