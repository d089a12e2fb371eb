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
import socket as _std
import stat
import sys
import threading
import weakref
from typing import Any, NoReturn

from femtotcp.api import loop, sockopts
from femtotcp.api.network import (
    Network,
    _etc_hosts,
    _etc_hosts_cache,
    _kind_enum,
    _service_port,
    current_network,
    network_for,
    pop_scoped,
    push_scoped,
    remove_default,
    set_default,
)
from femtotcp.api.sock_base import (
    _GLOBAL_DEFAULT_TIMEOUT,
    _IP_TOS,
    _IP_TTL,
    _KIND_DATA,
    _KIND_DATA_SCOPED,
    _KIND_ERROR,
    _NOT_HELD,
    _REC,
    _SCOPE,
    _TCP_KEEPCNT,
    _TCP_KEEPIDLE,
    _TCP_KEEPINTVL,
    _TCP_USER_TIMEOUT,
    AF_INET,
    AF_INET6,
    AF_UNIX,
    ANY4,
    BROADCAST4,
    CHUNK,
    DEFAULT_BACKLOG,
    DGRAM_MAX,
    DGRAM_PAIR_BUF,
    IPPROTO_ICMP,
    IPPROTO_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PAIR_BUF,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SOCK_CLOEXEC,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_RAW,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    SOL_SOCKET,
    _finalize,
    _Link,
    _noop,
    _oserror,
    _RealSocket,
    _SocketBase,
    _Watch,
    error,
    gaierror,
    herror,
    install_tls,
    timeout,
    tls_installed,
)
from femtotcp.api.sock_common import (
    NOT_LOCAL,
    dgram_into,
    inherit_on_p,
    link_kind,
    local_sockopt,
    parse_opt,
    send_error,
    set_on_p,
    set_timeo,
    shutdown_pair,
    sock_repr,
)
from femtotcp.api.sock_ping import _PingLink
from femtotcp.api.sock_tcp import TcpMode, _apply_tcp_opt, _TcpLink
from femtotcp.api.sock_udp import _DgramLink, _UdpLink

log = logging.getLogger("femtotcp.api.socket")


def __getattr__(name: str) -> Any:
    """Everything else (constants, ``inet_aton``, ...) is the stdlib's."""
    return getattr(_std, name)



# -- the program's socket object -------------------------------------------------------------

#: Accepted connections whose socket a listener makes ahead of ``accept``
#: (two fds each); beyond it, up to the backlog, ``accept`` makes them.
READY_SOCKETS = 64


class _LocalTcpLink(_TcpLink):
    """The link of an in-process TCP socket. Listening, it makes each ready
    connection's socket (pair, link, attached to the connection) here in the
    loop thread, before that connection's token goes to P: ``accept`` reads
    the token and takes the socket, without a trip to the loop thread."""

    def ready_item(self, conn: Any) -> Any:
        if len(self.ready) >= READY_SOCKETS:
            return conn          # (fds bounded: accept makes that one's socket)
        owner = self.owner_ref()
        if isinstance(owner, socket):
            family, kind, proto = owner._sfamily, owner._stype, owner._sproto
        else:
            family, kind, proto = (AF_INET6 if self.v6 else AF_INET), SOCK_STREAM, 0
        try:
            new = socket(family, kind, proto, network=self.net)
        except OSError as exc:       # EMFILE and friends: refuse that one
            log.warning("making an accepted connection's socket failed: %s", exc)
            conn.abort()
            return None
        new_link = new._link
        assert isinstance(new_link, _TcpLink)
        new_link.opts.update(self.opts)
        new_link.attach_accepted(conn)
        return new

    def drop_ready(self, item: Any) -> None:
        if not isinstance(item, socket):
            item.abort()
            return
        item._link.program_closed(abort=True)     # never accepted: RST, as Linux
        item.close()


class socket(_SocketBase):  # noqa: N801 - the stdlib's name
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
        what = link_kind(family, kind, proto)
        link_cls: Any = {"tcp": _LocalTcpLink, "udp": _UdpLink, "ping": _PingLink}[what]
        pair_kind = SOCK_STREAM if what == "tcp" else SOCK_SEQPACKET
        if what == "tcp" and not tls_installed:
            install_tls()
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
    def network(self) -> Network:
        return self._net

    # -- TLS (api/tls.py) ------------------------------------------------------------------
    def _take_over(self, src: socket, fileno: int) -> None:
        """Become ``src`` (whose fd is ``fileno``): what ``wrap_socket`` wraps."""
        _RealSocket.__init__(self, AF_UNIX, SOCK_STREAM if src._stype == SOCK_STREAM
                             else SOCK_SEQPACKET, 0, fileno)
        self._net = src._net
        self._sfamily, self._stype, self._sproto = src._sfamily, src._stype, src._sproto
        self._link = src._link
        self._finalizer = weakref.finalize(self, _finalize, self._link)
        self._finalizer.atexit = False

    def _tls_handover(self) -> Any:
        return self._link.handles

    def _tls_taken(self, handles: Any) -> None:
        """The wrapped socket's handle is now this object's (``wrap_socket``
        detached it): closing this one closes the stack socket, as closing
        the original would have."""
        link = self._link
        link.detached = False
        link.handles = handles
        link.owner_ref = weakref.ref(self)

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
        """Hand P's fd over; the stack socket lives on as long as that fd does
        (and ``socket.socket(fileno=fd)`` finds it again: ``adopt``)."""
        link = self._link
        link.detached = True
        link.detached_as = (self._sfamily, self._stype, self._sproto,
                            os.fstat(_RealSocket.fileno(self)).st_ino)
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
        runtime = self._net.runtime
        if loop.loop_running(runtime):
            # No round trip: the loop thread runs it before any later request
            # (its queue is first in, first out), so a bind to the port this
            # socket held, or the host's shutdown, still comes after it.
            runtime.call_soon_threadsafe(link.guard(link.program_closed))
            return
        try:
            self._net.call(link.program_closed)
        except Exception:  # closing must not fail because the stack did
            log.exception("closing a stack socket failed")

    # -- addresses ---------------------------------------------------------------------------
    def getsockname(self) -> Any:
        self._check_open()
        link = self._link
        local = link.local
        if isinstance(link, _TcpLink) and local is None:
            local = link.bound
        if local is None:
            return self._fmt(None, 0)
        return self._fmt(local[0], local[1], link.scope)

    def getpeername(self) -> Any:
        self._check_open()
        remote = self._link.remote
        if remote is None or (isinstance(self._link, _TcpLink)
                              and self._link.mode not in (TcpMode.CONNECTED, TcpMode.DONE)):
            raise _oserror(errno.ENOTCONN)
        return self._fmt(remote[0], remote[1], self._link.scope)

    # -- bind / listen / accept / connect ------------------------------------------------------
    def bind(self, address: Any) -> None:
        self._check_open()
        addr, port, scope = self._addr_scoped(address, "bind", resolve=True)
        link = self._link
        if isinstance(link, _TcpLink | _UdpLink | _PingLink):
            self._net.call(link.bind, addr, port, scope)
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

    def accept(self) -> tuple[socket, Any]:
        link = self._link
        if not isinstance(link, _TcpLink) or link.mode is not TcpMode.LISTENING:
            self._check_open()
            raise _oserror(errno.EINVAL if isinstance(link, _TcpLink) else errno.EOPNOTSUPP)
        # The loop thread made each ready connection's socket before its
        # token came (_LocalTcpLink.ready_item): taking it is no trip there.
        while True:
            token = _RealSocket.recv(self, 1)
            if not token:
                raise _oserror(errno.EINVAL, "the listening socket was closed")
            full = len(link.ready) >= link.backlog
            try:
                item = link.ready.popleft()
            except IndexError:        # (the listener was closed meanwhile)
                continue
            if full:
                # The loop stopped taking connections from the stack's
                # listener at the backlog: there is room again.
                runtime = self._net.runtime
                if loop.loop_running(runtime):
                    runtime.call_soon_threadsafe(link.guard(link.listener_service))
                else:
                    link.listener_service()
            if isinstance(item, socket):
                new = item
                break
            new = socket(self._sfamily, self._stype, self._sproto, network=self._net)
            new_link = new._link
            assert isinstance(new_link, _TcpLink)
            new_link.opts.update(link.opts)
            try:
                self._net.call(new_link.attach_accepted, item)
            except BaseException:
                new.close()
                raise
            break
        new_link = new._link
        inherit_on_p(self, new)
        if _std.getdefaulttimeout() is None and self.gettimeout():
            new.setblocking(True)
        remote = new_link.remote or (ANY4, 0)
        return new, self._fmt(remote[0], remote[1], new_link.scope)

    def _connect_failed(self) -> bool:
        link = self._link
        return isinstance(link, _TcpLink) and link.mode is TcpMode.FAILED

    def _renew(self) -> _TcpLink:
        """A connect again after one that failed: a new pair and link in place
        of the released ones (``_fresh_pair``), with the socket's options and
        its explicit bind, as Linux keeps them."""
        old = self._link
        assert isinstance(old, _TcpLink)

        def tune(p: Any, q: Any) -> None:
            p.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, PAIR_BUF)
            q.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, PAIR_BUF)

        q = _RealSocket(AF_UNIX, SOCK_STREAM, 0, self._fresh_pair(tune).detach())
        q.setblocking(False)
        link = _LocalTcpLink(self._net, q, self)
        link.opts.update(old.opts)
        self._link = link
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _finalize, link)
        self._finalizer.atexit = False
        if old.bound is not None:
            self._net.call(link.bind, old.bound[0], old.bound[1], old.scope)
        return link

    def _connect(self, address: Any, raise_errors: bool) -> int:
        self._check_open()
        dst, port, scope = self._addr_scoped(address, "connect")
        link = self._link
        net = self._net
        if isinstance(link, _TcpLink) and link.mode is TcpMode.FAILED:
            link = self._renew()
        if isinstance(link, _UdpLink | _PingLink):
            net.call(link.connect, dst, port, scope)
            return 0
        assert isinstance(link, _TcpLink)
        if port == 0:
            return errno.ECONNREFUSED if not raise_errors else _raise(errno.ECONNREFUSED)
        tmo = self.gettimeout()
        if tmo == 0:
            if link.mode is TcpMode.CONNECTING:
                return errno.EALREADY
            filler = self._fill() if link.mode is TcpMode.IDLE else 0

            def start() -> TcpMode:
                link.start_connect(dst, port, filler, scope)
                return link.mode        # as it is before the loop runs on

            mode = net.call(start)
            if mode is TcpMode.CONNECTED:
                return 0
            if mode is TcpMode.FAILED:
                err = link.connect_error
                link.so_error = 0
                return err
            return errno.EINPROGRESS
        runtime = net.runtime
        if loop.loop_running(runtime):
            done = self._start_connect_posted(link, dst, port, scope)
        else:
            done = net.call(link.start_connect, dst, port, 0, scope)
        try:
            finished = net.wait(done, tmo)
        except BaseException:
            net.call(link.abort_connect)
            raise
        failed = getattr(done, "failed", None)
        if failed is not None:
            raise failed
        if not finished:
            if not loop.loop_running(runtime):
                raise _oserror(errno.ENETDOWN, "the stack's loop has stopped")
            net.call(link.abort_connect)
            failed = getattr(done, "failed", None)    # (it failed to start meanwhile)
            if failed is not None:
                raise failed
            if link.mode is TcpMode.CONNECTED:
                return 0
            raise TimeoutError("timed out")
        if link.mode is TcpMode.FAILED:
            link.so_error = 0
            return link.connect_error
        return 0

    @staticmethod
    def _start_connect_posted(link: _TcpLink, dst: bytes, port: int,
                              scope: int) -> threading.Event:
        """Start a blocking connect in the loop thread without waiting for it
        to start: the Event returned is set once the connection is made or
        has failed, or at once when ``start_connect`` raises (the error is
        then its ``failed``), so the program's thread wakes up once."""
        done = threading.Event()

        def start() -> None:
            try:
                started = link.start_connect(dst, port, 0, scope)
            except BaseException as exc:
                done.failed = exc          # type: ignore[attr-defined]
                done.set()
                return
            if started.is_set():
                done.set()
            else:
                link.connect_done = done   # what the link sets when it is done

        link.net.runtime.call_soon_threadsafe(start)
        return done

    # -- data ----------------------------------------------------------------------------------
    def _data_error(self, exc: OSError | None = None) -> OSError | None:
        """The error to report instead of EOF/EPIPE on P: the connection's
        error, taken; a send on a socket that is not connected gives Linux's
        (``send_error``)."""
        link = self._link
        err = link.take_program_error()
        if err:
            return _oserror(err)
        if isinstance(link, _TcpLink) and link.mode in (TcpMode.IDLE, TcpMode.LISTENING,
                                                        TcpMode.FAILED, TcpMode.CONNECTING):
            return _oserror(send_error(link.mode.value))
        return exc

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        link = self._link
        if isinstance(link, _DgramLink):
            return self._recv_dgram(bufsize, flags)[0]
        if link.mode in (TcpMode.IDLE, TcpMode.LISTENING, TcpMode.CONNECTING):  # type: ignore[attr-defined]
            self._check_open()
            raise _oserror(errno.ENOTCONN)
        data = _RealSocket.recv(self, bufsize, flags)
        if not data and bufsize and link.program_error:
            exc = self._data_error()
            if exc is not None:
                raise exc
        if not data and bufsize and isinstance(link, _TcpLink) and link.rd_held \
                and not flags & _NOT_HELD:
            data = self._net.call(link.take_held, bufsize)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        link = self._link
        if isinstance(link, _DgramLink):
            return dgram_into(buffer, nbytes, lambda n: self._recv_dgram(n, flags))[0]
        if link.mode in (TcpMode.IDLE, TcpMode.LISTENING, TcpMode.CONNECTING):  # type: ignore[attr-defined]
            self._check_open()
            raise _oserror(errno.ENOTCONN)
        n = _RealSocket.recv_into(self, buffer, nbytes, flags)
        if n == 0 and link.program_error and (nbytes or len(memoryview(buffer))):
            exc = self._data_error()
            if exc is not None:
                raise exc
        if n == 0 and isinstance(link, _TcpLink) and link.rd_held and not flags & _NOT_HELD:
            size = nbytes or len(memoryview(buffer))
            data = self._net.call(link.take_held, size) if size else b""
            n = len(data)
            memoryview(buffer).cast("B")[:n] = data
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if isinstance(self._link, _DgramLink):
            return self._recv_dgram(bufsize, flags)
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        if isinstance(self._link, _DgramLink):
            return dgram_into(buffer, nbytes, lambda n: self._recv_dgram(n, flags))
        return self.recv_into(buffer, nbytes, flags), None

    def _recv_dgram(self, bufsize: int, flags: int) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if flags & _std.MSG_TRUNC:
            # The datagram's real length, as Linux returns it: the whole of it.
            flags &= ~_std.MSG_TRUNC
            bufsize = DGRAM_MAX
        while True:
            rec = _RealSocket.recv(self, bufsize + _REC.size + _SCOPE.size, flags)
            if len(rec) < _REC.size:
                return b"", None
            kind, alen, port, addr = _REC.unpack_from(rec)
            if kind == _KIND_DATA_SCOPED and len(rec) >= _REC.size + _SCOPE.size:
                start = _REC.size + _SCOPE.size
                scope = _SCOPE.unpack_from(rec, _REC.size)[0]
                return rec[start:start + bufsize], self._fmt(addr[:alen], port, scope)
            if kind != _KIND_ERROR:
                break
            # The socket error, unless SO_ERROR or a send took it first (sk_err).
            link = self._link
            if flags & _std.MSG_PEEK:
                if not (isinstance(link, _DgramLink) and link.cancelled):
                    raise _oserror(port)
                _RealSocket.recv(self, _REC.size, flags & ~_std.MSG_PEEK)
            if not (isinstance(link, _DgramLink) and link.error_record_read()):
                raise _oserror(port)
        return rec[_REC.size:_REC.size + bufsize], self._fmt(addr[:alen], port)

    def send(self, data: Any, flags: int = 0) -> int:
        link = self._link
        if flags & _std.MSG_OOB:
            return self._send_urgent(data)
        if isinstance(link, _DgramLink):
            return self._net.call(link.send, bytes(data))
        if link.mode is not TcpMode.CONNECTED:  # type: ignore[attr-defined]
            self._not_connected()
        try:
            return _RealSocket.send(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._data_error(exc) or exc from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        link = self._link
        if flags & _std.MSG_OOB:
            self._send_urgent(data)
            return
        if isinstance(link, _DgramLink):
            self._net.call(link.send, bytes(data))
            return
        if link.mode is not TcpMode.CONNECTED:  # type: ignore[attr-defined]
            self._not_connected()
        try:
            _RealSocket.sendall(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._data_error(exc) or exc from None

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        address = flags_or_addr if addr is None else addr
        if addr is not None and flags_or_addr & _std.MSG_OOB:
            return self._send_urgent(data)     # (TCP: the address is not used)
        link = self._link
        if isinstance(link, _DgramLink):
            self._check_open()
            dst, port, scope = self._addr_scoped(address, "sendto")
            return self._net.call(link.sendto, bytes(data), dst, port, scope)
        return self.send(data)      # (TCP: the address is not used, as on Linux)

    def _urgent(self, payload: bytes) -> None:
        link = self._link
        assert isinstance(link, _TcpLink)
        if link.mode is not TcpMode.CONNECTED:
            self._not_connected()
        self._net.call(link.send_urgent, payload)

    def _not_connected(self) -> NoReturn:
        """A TCP send on a socket that is not connected: the connection's error,
        else Linux's for its mode (``send_error``), else the socket error or EPIPE."""
        self._check_open()
        exc = self._data_error()
        raise exc if exc is not None else _oserror(self._link.take_so_error() or errno.EPIPE)

    def shutdown(self, how: int) -> None:
        self._check_open()
        link = self._link

        def tell(h: int) -> None:
            assert isinstance(link, _TcpLink)
            if h in (SHUT_RD, SHUT_RDWR):
                self._net.call(link.shutdown_read)
                return
            # SHUT_WR: the pump reads the EOF on Q and sends the FIN; it is
            # told without waiting for it (socketserver shuts every connection).
            runtime = self._net.runtime
            if loop.loop_running(runtime):
                runtime.call_soon_threadsafe(link.guard(link.pump))
            else:
                link.pump()

        mode = link.mode.value if isinstance(link, _TcpLink) else None
        shutdown_pair(self, how, mode, link.remote is not None, tell)

    # -- options ---------------------------------------------------------------------------------
    def setsockopt(self, level: int, optname: int, value: Any,
                   optlen: int | None = None) -> None:
        self._check_open()
        if set_timeo(self, level, optname, value):
            return
        val = parse_opt(self, level, optname, value)
        self._net.call(sockopts.store, self._link, level, optname, val)
        set_on_p(self, level, optname, val)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        self._check_open()
        link = self._link
        local = local_sockopt(self, level, optname, buflen,
                              lambda: getattr(link, "mode", None) is TcpMode.LISTENING)
        if local is not NOT_LOCAL:
            return local
        return sockopts.answer(self._net.call(sockopts.fetch, link, self._sfamily, level,
                                              optname), buflen)

    def __repr__(self) -> str:
        return sock_repr(self, self.getsockname, self.getpeername)


socket._tls_base = socket     # (api/tls.py: wrap_socket takes these over)


def adopt(net: Network, fd: int, family: int) -> socket | None:
    """A socket object for ``fd`` when it is the program's end of one of
    ``net``'s stack sockets (``socket.fromfd``, ``socket.socket(fileno=
    s.detach())``), as for a kernel socket: the same stack socket, ``fd``
    one more handle on it (a detached one's own again); else None."""
    if family not in (-1, AF_INET, AF_INET6):
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None

    def find() -> tuple[_Link, tuple[int, int, int], bool] | None:
        for link in net.links:
            owner = link.owner_ref()
            open_fd = -1 if owner is None else _RealSocket.fileno(owner)
            if owner is not None and open_fd != -1:
                if os.fstat(open_fd).st_ino == st.st_ino:
                    return link, (owner._sfamily, owner._stype, owner._sproto), False
            elif link.detached and link.detached_as and link.detached_as[3] == st.st_ino:
                return link, link.detached_as[:3], True
        return None

    found = net.call(find)
    if found is None:
        return None
    link, (sfamily, stype, sproto), detached = found
    new = socket.__new__(socket)
    _RealSocket.__init__(new, AF_UNIX, SOCK_STREAM if stype == SOCK_STREAM
                         else SOCK_SEQPACKET, 0, fd)
    new._net = net
    new._sfamily, new._stype, new._sproto = sfamily, stype, sproto
    new._link = link
    if detached:
        link.detached = False       # this object holds the handle detach gave away
        link.owner_ref = weakref.ref(new)
        new._finalizer = weakref.finalize(new, _finalize, link)
    else:
        link.handles += 1
        new._finalizer = weakref.finalize(new, _noop)
    new._finalizer.atexit = False
    return new

StackSocket = socket


def _after_fork_in_child() -> None:
    """A forked child (``os.fork``, multiprocessing's fork) of a program whose
    stack runs in-process: the stack stays with the parent, whose loop thread
    did not come along. The child's new sockets are the kernel's (as an
    exec'd child's are), and the stack sockets it inherited are ended here (a
    pair end whose peer is gone: EOF, EPIPE, a listener's EINVAL) instead of
    hanging, or taking the parent's connections and data. The child's copies
    of the loop's pair ends are closed, so the parent's sockets see their
    peers close as before the fork. (Attached programs keep their sockets
    across fork: femtotcp serve + ``run --control``.)"""
    from femtotcp.api import network as netmod
    ended = 0
    dead: dict[int, int] = {}
    try:
        for net in list(netmod._networks.values()):
            if net.runtime.thread is None:       # never run by a loop thread
                continue
            for link in list(net.links):
                owner = link.owner_ref()
                p_fd = -1 if owner is None else _RealSocket.fileno(owner)
                if owner is not None and p_fd != -1:
                    kind = _RealSocket.getsockopt(owner, SOL_SOCKET, _std.SO_TYPE)
                    if kind not in dead:
                        a, b = _socket.socketpair(AF_UNIX, kind)
                        b.close()
                        dead[kind] = a.detach()
                    os.dup2(dead[kind], p_fd, inheritable=False)
                    ended += 1
                if link.q is not None:
                    link.q.close()
            netmod.remove_default(net)
            netmod.pop_scoped(net)
    finally:
        for fd in dead.values():
            os.close(fd)
    from femtotcp.api import patch as patchmod
    patchmod.unpatch_forked_child()
    if ended:
        log.warning("forked child: its %d stack sockets are closed (the stack runs in the "
                    "parent process) and its new sockets are the kernel's", ended)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _raise(err: int) -> int:
    raise _oserror(err)


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


def has_dualstack_ipv6() -> bool:
    return _net().has_dualstack_ipv6()


def if_nameindex() -> list[tuple[int, str]]:
    return _net().if_nameindex()


def if_nametoindex(name: str) -> int:
    return _net().if_nametoindex(name)


def if_indextoname(index: int) -> str:
    return _net().if_indextoname(index)


__all__ = [
    "Network", "socket", "network_for", "current_network", "create_connection",
    "create_server", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
    "getfqdn", "has_dualstack_ipv6", "if_nameindex", "if_nametoindex", "if_indextoname",
    "timeout", "error", "gaierror", "herror",
    # The socket module's constants this module defines, and the network registry
    # (api/patch.py); the rest of the stdlib's names come through __getattr__.
    "AF_INET", "AF_INET6", "AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW",
    "SOCK_SEQPACKET", "SOCK_NONBLOCK", "SOCK_CLOEXEC", "IPPROTO_TCP", "IPPROTO_UDP",
    "IPPROTO_ICMP", "IPPROTO_IP", "SOL_SOCKET", "SHUT_RD", "SHUT_WR", "SHUT_RDWR",
    "StackSocket", "TcpMode", "ANY4", "BROADCAST4", "CHUNK", "PAIR_BUF", "DGRAM_PAIR_BUF",
    "DEFAULT_BACKLOG", "push_scoped", "pop_scoped", "set_default", "remove_default",
]

#: Internal names that lived in this module before it was split by link kind
#: (sock_base, sock_tcp, sock_udp, sock_ping, network); still found here.
_MOVED = (_RealSocket, _Watch, _Link, _DgramLink, _UdpLink, _PingLink, _TcpLink,
          _apply_tcp_opt, _etc_hosts, _etc_hosts_cache, _kind_enum, _service_port,
          _KIND_DATA, _KIND_ERROR, _REC, _IP_TOS, _IP_TTL, _TCP_KEEPCNT, _TCP_KEEPIDLE,
          _TCP_KEEPINTVL, _TCP_USER_TIMEOUT, _finalize, _noop)
