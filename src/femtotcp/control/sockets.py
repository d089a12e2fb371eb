"""The socket service of ``femtotcp serve``: sockets for attached programs.

Beside the control socket (at ``femtotcp.api.remote.service_path``), a
SOCK_SEQPACKET socket with mode 0600 and the control socket's peer check.
Programs run by ``femtotcp run --control PATH`` (and their Python children)
ask it for sockets: each is made here, on this stack, as the in-process API
makes one (a Unix socket pair and its loop-thread half, ``api/sock_*``), and
the program's end of the pair is sent back with SCM_RIGHTS. The protocol is
``femtotcp.api.remote``'s (one request, one answer per message).

Lifetime follows the program's fd: links are *detached* (no program object
here), so the loop thread frees a socket when every copy of its end is closed
(POLLHUP on our end), whether the program closed it or died: FIN, or RST where
received data was never read, as Linux does. A freed TCP socket leaves the
table at once (``bury``), its last state kept for a while if the program
still holds it. Idle sockets (made,
maybe bound, never connected) have nothing in the selector; a sweep every
SWEEP_INTERVAL seconds frees those whose program end is gone.

Requests are read and answered in the stack's loop thread (a blocking
connect is answered when the connection's event comes, a DNS lookup from a
thread of its own); each program thread uses a connection of its own from the
program's pool, so one thread's wait does not hold up another's request.
"""

from __future__ import annotations

import _socket
import errno
import gc
import logging
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

from femtotcp.api import remote, sockopts
from femtotcp.api.network import Network, network_for
from femtotcp.api.sock_base import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    IPPROTO_ICMP,
    SHUT_RD,
    SHUT_RDWR,
    SOCK_DGRAM,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    _Link,
    _oserror,
    _RealSocket,
)
from femtotcp.api.sock_common import IPPROTO_ICMPV6, link_kind
from femtotcp.api.sock_ping import _PingLink
from femtotcp.api.sock_tcp import TcpMode, _TcpLink
from femtotcp.api.sock_udp import _DgramLink, _UdpLink
from femtotcp.control.protocol import ControlError
from femtotcp.stack.mcast import Memberships
from femtotcp.wire import ip_bytes, ip_str

log = logging.getLogger("femtotcp.control.sockets")

#: Seconds between sweeps for idle sockets whose program end is gone.
SWEEP_INTERVAL = 0.5
#: Connections served at once (a program keeps up to POOL_SIZE per process).
MAX_CONNECTIONS = 1024
#: Seconds a freed socket's final state (its error) stays answerable.
RELEASED_GRACE = 30.0
#: Freed sockets remembered at most (their final state only).
MAX_TOMBS = 4096
#: Bytes of a listening socket's send buffer one waiting ``ACCEPTED`` record
#: takes (its share of the buffer as Linux counts it: the buffer's truesize).
RECORD_SHARE = 768
#: serve's young-generation threshold (``tune_collector``).
GC_YOUNG = 10000


#: A socket object's family and type as plain ints (``socket.socket``'s
#: properties convert them to enum members on every read).
_raw_family = _socket.socket.family.__get__
_raw_type = _socket.socket.type.__get__


class _Remote:
    """The stand-in "program object" of a link made for another process."""


_OWNER = _Remote()


def _addr(addr: tuple[bytes, int] | None) -> list[Any] | None:
    return None if addr is None else [ip_str(addr[0]), addr[1]]


class _Tomb(NamedTuple):
    """What stays of a freed socket for a while: its last state and errors (the
    program may ask for the error that ended it after reading EOF), with the
    state as a tuple of plain values (``raw_state_of``), which the collector
    stops tracking: one tracked object per tomb, none of them cyclic."""

    state: tuple[Any, ...]
    program_error: int | None
    so_error: int
    since: float
    #: Its options (None: none), which a connect again after a failed one
    #: takes to the new link (``adopt``), as Linux's socket keeps them.
    opts: dict[tuple[int, int], Any] | None = None


def raw_state_of(link: _Link) -> tuple[Any, ...]:
    """(mode, local, remote, scope id): ``state_of`` before formatting."""
    if isinstance(link, _TcpLink):
        local = link.local if link.local is not None else link.bound
        return (link.mode.value, local, link.remote, link.scope)
    return (remote.DGRAM, link.local, link.remote, link.scope)


def shown_state(raw: tuple[Any, ...]) -> list[Any]:
    """A raw state as ``RemoteSocket`` keeps it: [mode, local, remote, scope id]."""
    mode, local, peer, scope = raw
    return [mode, _addr(local), _addr(peer), scope]


def state_of(link: _Link) -> list[Any]:
    """[mode, local, remote, scope id] as ``RemoteSocket`` keeps it (the
    scope: the interface the socket is tied to, ``_Link.scope``)."""
    return shown_state(raw_state_of(link))


def tune_collector() -> None:
    """serve's cyclic garbage collector: a young collection every GC_YOUNG
    allocations instead of the default 700. Every connection allocates some
    tens of objects in cycles (its TCP state, its link); with the default,
    objects that live a few hundred connections reach the oldest generation,
    and its full collections, which walk every object serve holds, took a
    tenth of serve's time in a connect+close loop."""
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG:
        gc.set_threshold(GC_YOUNG, middle, old)


class _Watcher:
    """An fd in the runtime's selector: ``fn`` runs (loop thread) when it is ready."""

    def __init__(self, fn: Callable[[], None], name: str) -> None:
        self.fn = fn
        self.name = name

    def on_readable(self) -> None:
        self.fn()


class _ServedTcpLink(_TcpLink):
    """A TCP socket of an attached program. Listening, it hands each ready
    connection over whole instead of a token: the connection gets a pair made
    here, and its P goes to the program on Q with an ``ACCEPTED`` record
    (SCM_RIGHTS), so ``accept`` is a read on the listening socket's fd, with
    no request (any process holding that fd may read it). Q's send buffer,
    sized from the backlog, bounds the records waiting unread; when it is
    full the next connection waits (made, in ``handing``) until the program
    reads, and the rest wait in the stack's listener."""

    def __init__(self, service: SocketService, q: _socket.socket) -> None:
        super().__init__(service.net, q, _OWNER)  # type: ignore[arg-type]
        self.service = service
        self.detached = True
        #: The socket's id once published (``SocketService._publish``).
        self.sid: int | None = None
        #: Connections made here whose record is not on Q yet (Q full).
        self.handing: deque[tuple[bytes, int]] = deque()

    def listen(self, backlog: int) -> tuple[bytes, int]:
        if self.q is not None and self.mode is TcpMode.IDLE:
            records = max(1, min(int(backlog), 4096))
            self.q.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                              records * RECORD_SHARE // 2)      # Linux doubles it
        return super().listen(backlog)

    def listener_service(self, *_args: Any) -> None:
        q, lst = self.q, self.listener
        if q is None or lst is None:
            return
        handing = self.handing
        while True:
            if not handing:
                conn = lst.accept()
                if conn is None:
                    break
                try:
                    handing.append(self.service.hand_over(self, conn))
                except OSError as exc:       # EMFILE and friends: refuse that one
                    log.warning("handing over an accepted connection failed: %s", exc)
                    conn.abort()
                    continue
            rec, fd = handing[0]
            try:
                # (send_fds takes any socket with sendmsg, a bare Q too)
                socket.send_fds(q, [rec], [fd], socket.MSG_DONTWAIT)  # type: ignore[arg-type]
            except BlockingIOError:
                break
            except OSError:
                self.close_listener()
                return
            handing.popleft()
            os.close(fd)
        self.listener_watch(q, bool(handing))

    def connect_event(self) -> threading.Event:
        # Nobody waits on it here: ``op_connect`` gives it its callback.
        return _NotifyEvent(None)

    def release(self) -> None:
        if self.released:
            return
        super().release()
        # The watch's callback holds this link: dropped, the link goes by
        # reference counting (no cycle left) as the service forgets it now.
        self.watch = None
        self.service.bury(self)

    def close_listener(self) -> None:
        while self.handing:
            os.close(self.handing.popleft()[1])    # its link hears P go: FIN or RST
        super().close_listener()


class _NotifyEvent(threading.Event):
    """A link's ``connect_done`` that tells the service (in the loop thread)
    instead of waking a waiting thread: nobody waits on it, so it needs no
    condition variable (``set`` and ``is_set`` are all the loop thread uses)."""

    def __init__(self, callback: Callable[[], None] | None) -> None:  # no Event.__init__
        self.callback = callback
        self.done = False

    def is_set(self) -> bool:
        return self.done

    def set(self) -> None:
        self.done = True
        if self.callback is not None:
            self.callback()

    def clear(self) -> None:
        self.done = False

    def wait(self, timeout: float | None = None) -> bool:
        raise RuntimeError("a socket service connect is answered, not waited for")


#: What an operation returns when it answers later (through ``reply``).
DEFER = object()
#: Requests taken from one connection before the loop moves on to other work.
BATCH = 16


class _Conn:
    """One program connection, served in the loop thread: a request is read,
    answered at once or later (a blocking connect, a DNS lookup). While an
    answer is due the connection stays in the selector: the program hanging up
    (or sending out of turn) closes it."""

    def __init__(self, service: SocketService, sock: socket.socket) -> None:
        self.service = service
        self.sock = sock
        self.fd = sock.fileno()
        self.waiting = False
        self.dead = False

    def __repr__(self) -> str:
        return f"sockets-{self.fd}"

    def watch(self, on: bool) -> None:
        # The runtime calls our on_readable (no watcher object in between).
        try:
            self.service.runtime.watch_fd(self.fd, on, False, self)
        except (KeyError, ValueError, OSError):
            pass

    def on_readable(self) -> None:
        if self.waiting:
            # An answer is still due: the program may only have hung up (it
            # died); anything else breaks the protocol. Either ends it.
            self.close()
            return
        for _ in range(BATCH):
            if self.waiting or self.dead:
                return
            try:
                msg, fd = remote.recv_message(self.sock, flags=socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                msg, fd = b"", None
            if not msg:
                if fd is not None and fd >= 0:
                    os.close(fd)
                self.close()
                return
            self.waiting = True
            answer = self.service.handle(msg, fd, self.reply)
            if answer is None:
                return                  # answered later (reply)
            self.reply(*answer)

    def reply(self, answer: list[bytes], fd: int | None) -> None:
        """Send an answer (any thread); the program's next request may follow."""
        self.waiting = False       # before the answer leaves: the next request may be quick
        try:
            if fd is None:
                self.sock.sendmsg(answer, [], socket.MSG_DONTWAIT)
            else:
                socket.send_fds(self.sock, answer, [fd], socket.MSG_DONTWAIT)
        except OSError:
            # Gone, or not reading its answers: dropped (in the loop thread).
            self.dead = True
            runtime = self.service.runtime
            if runtime.in_loop_thread():
                self.close()
            else:
                runtime.call_soon_threadsafe(self.close)
        finally:
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.dead = True
        self.watch(False)
        self.service.conns.pop(self.fd, None)
        self.fd = -1
        self.sock.close()


class _ConnectAnswer:
    """A blocking connect's answer, due when the link's connect is done
    (``finish``, the link's ``_NotifyEvent`` callback) or its timeout runs
    out (``timed_out``): one object per connect instead of a set of closures.
    Once answered it lets go of the link, which the link's ``connect_done``
    no longer names, so a released link goes by reference counting."""

    __slots__ = ("service", "link", "reply", "timer")

    def __init__(self, service: SocketService, link: _TcpLink,
                 reply: Callable[[list[bytes], int | None], None] | None) -> None:
        if reply is None:
            raise _oserror(errno.EWOULDBLOCK, "this request cannot wait here")
        self.service: SocketService | None = service
        self.link = link
        self.reply = reply
        self.timer: Any = None

    def finish(self) -> None:
        """The connect is done (connected or failed): its answer, which
        ``connect_result`` makes without raising, goes now."""
        if self._take() is not None:
            self.reply([connect_result(self.link)], None)

    def timed_out(self) -> None:
        service = self._take()
        if service is None:
            return
        link = self.link

        def result() -> bytes:
            link.abort_connect()
            if link.mode is not TcpMode.CONNECTED:
                raise TimeoutError("timed out")
            return connect_result(link)

        out = service._run(result)
        assert out is not None
        self.reply(*out)

    def _take(self) -> SocketService | None:
        """The service, the first time only (None: answered already); the
        timer and the link's hold on this object end here."""
        service = self.service
        if service is None:
            return None
        self.service = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.link.connect_done = None
        return service


def connect_result(link: _TcpLink, err: int = 0) -> bytes:
    """A finished connect's answer, [errno or 0, state] as a compact message
    (the error is taken); ``err``: a non-blocking connect's (EINPROGRESS...)."""
    if link.mode is TcpMode.FAILED:
        link.so_error = 0
        err = link.connect_error
        if isinstance(link, _ServedTcpLink) and link.sid is not None:
            link.service.error_taken(link.sid)      # (its remains were made already)
    local = link.local if link.local is not None else link.bound
    return remote.connected_answer(err, _MODE_TEXT[link.mode], local, link.remote, link.scope)


#: Each mode's text (``TcpMode.value`` is a Python-level property per read).
_MODE_TEXT = {mode: mode.value for mode in TcpMode}


class SocketService:
    """Serves attached programs' socket requests for one stack at ``path``, in
    the stack's loop thread (no thread hop between a request and the stack)."""

    def __init__(self, stack: Any, runtime: Any, path: str,
                 check_peer: Callable[[socket.socket], None] | None = None) -> None:
        self.net: Network = network_for(stack, runtime)
        self.runtime = runtime
        self.path = os.path.abspath(path)
        self.check_peer = check_peer
        self.links: dict[int, _Link] = {}
        #: Freed sockets' last words, oldest first (loop thread).
        self.tombs: OrderedDict[int, _Tomb] = OrderedDict()
        self._lock = threading.Lock()
        self._closing = False
        self._sock: socket.socket | None = None
        self.conns: dict[int, _Conn] = {}
        self._sweep_timer: Any = None
        self._reply: Callable[[list[bytes], int | None], None] | None = None
        self._ops: dict[str, Callable[..., Any]] = {
            "state": self.op_state, "bind": self.op_bind,
            "listen": self.op_listen, "connect": self.op_connect,
            "uconnect": self.op_uconnect, "err": self.op_err, "soerr": self.op_soerr,
            "setopt": self.op_setopt, "getopt": self.op_getopt, "shut": self.op_shut,
            "held": self.op_held,
            "send": self.op_send, "sendto": self.op_sendto, "errrec": self.op_errrec,
            "lookup": self.op_lookup, "dns": self.op_dns, "names": self.op_names,
            "info": self.op_info, "urg": self.op_urg,
        }

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SocketService:
        sock = _RealSocket(AF_UNIX, SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        old_mask = os.umask(0o177)
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_mask)
        try:
            os.chmod(self.path, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            self._sock = sock
            self.net.call(self._start_in_loop)
            tune_collector()
        except BaseException:
            sock.close()
            raise
        log.info("socket service %s", self.path)
        return self

    def _start_in_loop(self) -> None:
        assert self._sock is not None
        self.runtime.watch_fd(self._sock.fileno(), True, False,
                              _Watcher(self._accept_ready, "sockets-accept"))
        self._sweep_timer = self.runtime.call_later(SWEEP_INTERVAL, self._sweep_tick)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            self.net.call(self._close_in_loop)
        except OSError:
            self._close_in_loop()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _close_in_loop(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                self.runtime.watch_fd(sock.fileno(), False, False, None)
            except (KeyError, ValueError, OSError):
                pass
            sock.close()
        for conn in list(self.conns.values()):
            conn.close()

    def _accept_ready(self) -> None:
        sock = self._sock
        while sock is not None and not self._closing:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:   # EMFILE and friends: keep serving the others
                log.warning("socket service accept failed: %s", exc)
                return
            try:
                if self.check_peer is not None:
                    self.check_peer(conn)
            except ControlError:
                conn.close()
                continue
            if len(self.conns) >= MAX_CONNECTIONS:
                conn.close()
                continue
            conn.setblocking(False)
            served = _Conn(self, conn)
            self.conns[served.fd] = served
            served.watch(True)

    def _sweep_tick(self) -> None:
        self._sweep_timer = None
        if self._closing:
            return
        try:
            self.sweep()
        except Exception:
            log.exception("socket service sweep failed")
        self._sweep_timer = self.runtime.call_later(SWEEP_INTERVAL, self._sweep_tick)

    def sweep(self) -> None:
        """Loop thread: free sockets whose program end is gone; keep only the
        last state of freed ones, for RELEASED_GRACE seconds (MAX_TOMBS at most)."""
        with self._lock:
            items = list(self.links.items())
        now = time.monotonic()
        gone = []
        for sid, link in items:
            # Links in the selector hear of their program's end going by themselves.
            watched = link.watch is not None and link.watch.events != 0
            if not link.released and not watched and link.p_gone():
                link.program_closed()
            if link.released:
                gone.append((sid, link))
        with self._lock:
            for sid, link in gone:
                self._bury(sid, link, now)
            self._trim_tombs(now)

    def bury(self, link: _ServedTcpLink) -> None:
        """A TCP link was released (loop thread): its remains replace it at once,
        while the program still holds the socket (it may ask for its error)."""
        sid = link.sid
        if sid is None:
            return                       # (not published yet: the sweep sees it)
        if link.closing:
            # Freed because every copy of P is closed: no process can ask about
            # it again (a request by its id is EBADF, as for a closed fd), so
            # nothing of it is kept.
            with self._lock:
                if self.links.get(sid) is link:
                    del self.links[sid]
            return
        now = time.monotonic()
        with self._lock:
            self._bury(sid, link, now)
            self._trim_tombs(now)

    def _bury(self, sid: int, link: _Link, now: float) -> None:
        """(Lock held.) Socket ``sid``'s link ``link`` is freed: keep its last state."""
        if self.links.get(sid) is link:
            del self.links[sid]
            self.tombs.pop(sid, None)
            self.tombs[sid] = _Tomb(raw_state_of(link), link.program_error,
                                    link.so_error, now, dict(link.opts) or None)

    def _trim_tombs(self, now: float) -> None:
        """(Lock held.) MAX_TOMBS at most, none older than RELEASED_GRACE."""
        tombs = self.tombs
        while tombs and (len(tombs) > MAX_TOMBS
                         or now - next(iter(tombs.values())).since >= RELEASED_GRACE):
            tombs.popitem(last=False)

    # -- requests -----------------------------------------------------------------------
    def handle(self, msg: bytes, given: int | None = None,
               reply: Callable[[list[bytes], int | None], None] | None = None,
               ) -> tuple[list[bytes], int | None] | None:
        """One request (``given``: the fd it carried, ours to close) -> (answer
        buffers, fd to pass or None), or None when ``reply`` will be called with
        them later. Never raises."""
        self._reply = reply
        held = [given]

        def take_fd() -> int:
            fd, held[0] = held[0], None
            if fd is None:
                raise _oserror(errno.EINVAL, "no socket came with the request")
            if fd == remote.LOST_FD:
                raise _oserror(errno.ENFILE, "femtotcp serve is at its limit of open files")
            return fd

        def work() -> Any:
            if msg[:2] == remote.COMPACT_MARK:
                # A compact request, which only a connect is: no array to build.
                first, sid, family, kind, proto, dst, port, filler, tmo, scope = \
                    remote.decode_connect(msg)
                if first:
                    link = self.adopt(take_fd(), sid, family, kind, proto)
                    if isinstance(link, _TcpLink):     # (else EOPNOTSUPP, by its id)
                        return self.connect_link(link, dst, port, filler, tmo, scope)
                return self.connect(sid, dst, port, filler, tmo, scope)
            doc, tail = remote.decode(msg)
            name = str(doc[0])
            if name.startswith("+"):
                # The socket's first request: its kind, and our end of its pair.
                self.adopt(take_fd(), doc[1], *doc[2:5])
                for level, opt, value in doc[5]:    # options set before this request
                    self.op_setopt(doc[1], level, opt, value, tail=b"")
                name, doc = name[1:], [name[1:], doc[1], *doc[6:]]
            op = self._ops.get(name)
            if op is None:
                raise _oserror(errno.EOPNOTSUPP, f"unknown request {name[:32]!r}")
            return op(*doc[1:], tail=tail)

        try:
            return self._run(work)
        finally:
            if held[0] is not None and held[0] >= 0:
                os.close(held[0])

    def later(self, work: Callable[[], list[Any]]) -> Callable[[], None]:
        """A function that answers the current request with ``work()``'s result
        (or its error), for an operation that returned DEFER."""
        reply = self._reply
        if reply is None:
            raise _oserror(errno.EWOULDBLOCK, "this request cannot wait here")

        def answer() -> None:
            out = self._run(work)
            assert out is not None and reply is not None
            reply(*out)

        return answer

    @staticmethod
    def _run(work: Callable[[], Any]) -> tuple[list[bytes], int | None] | None:
        """``work()``'s result as an answer: a list of values, or (values, fd to
        pass); DEFER gives None; an error becomes its answer."""
        try:
            result = work()
            if result is DEFER:
                return None
            if result.__class__ is bytes:
                return [result], None            # encoded already (compact)
            fd: int | None = None
            if isinstance(result, tuple):
                result, fd = result
            return remote.encode([0, *result]), fd
        except socket.gaierror as exc:
            return remote.encode(["gai", exc.errno or 0, str(exc.strerror or exc)]), None
        except TimeoutError:
            return remote.encode(["timeout"]), None
        except OSError as exc:
            return remote.encode([exc.errno or errno.EIO,
                                  str(exc.strerror or exc)[:200]]), None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return remote.encode([errno.EINVAL, f"bad request: {exc}"[:200]]), None

    def adopt(self, fd: int, sid: Any, family: Any, kind: Any, proto: Any) -> _Link:
        """Take ``fd`` (a program-made pair's other end) as socket ``sid``'s Q;
        the socket's link (the one serve has already, for a second copy)."""
        pair_kind = SOCK_STREAM if int(kind) == SOCK_STREAM else SOCK_SEQPACKET
        try:
            # Family and type unknown (-1): the socket object reads them from the
            # fd itself (getsockname, SO_TYPE), an fd that is no socket is ENOTSOCK.
            # (``_socket``'s bare socket: Q needs none of ``socket.socket``'s
            # Python-level wrapping, whose close is two calls more.)
            q = _socket.socket(-1, -1, 0, fd)
        except OSError:
            os.close(fd)
            raise
        try:
            what = link_kind(int(family), int(kind), int(proto))
            if _raw_family(q) != AF_UNIX or _raw_type(q) != pair_kind:
                raise _oserror(errno.EINVAL, "not a socket pair of that kind")
            q.setblocking(False)
        except BaseException:
            q.close()
            raise
        with self._lock:
            old = self.links.get(int(sid))
            tomb = self.tombs.get(int(sid))
        if old is not None and not old.released:
            q.close()       # a second copy (the socket went through fork first)
            return old
        link: _Link
        if what == "tcp":
            link = _ServedTcpLink(self, q)
            if tomb is not None and tomb.opts:
                link.opts.update(tomb.opts)     # connecting again after a failed connect
        else:
            link = (_UdpLink if what == "udp" else _PingLink)(self.net, q, _OWNER)  # type: ignore[arg-type]
            link.detached = True
        link.v6 = int(family) == AF_INET6
        if isinstance(link, _DgramLink):
            # Made with the link before its family was known here: its
            # defaults (IP_MULTICAST_ALL) follow the family.
            link.mcast = Memberships(link.v6)
        self._publish(link, int(sid))
        return link

    # -- helpers ------------------------------------------------------------------------------
    def _link(self, sid: Any) -> _Link:
        with self._lock:
            link = self.links.get(int(sid))
        if link is None:
            if int(sid) in self.tombs:
                raise _oserror(errno.ENOTCONN, "the socket is closed in femtotcp serve")
            raise _oserror(errno.EBADF, "no such socket in femtotcp serve")
        return link

    def _tomb(self, sid: Any) -> _Tomb | None:
        """The remains of a freed socket (None: it is alive, or unknown: EBADF)."""
        with self._lock:
            if int(sid) in self.links:
                return None
            tomb = self.tombs.get(int(sid))
        if tomb is None:
            raise _oserror(errno.EBADF, "no such socket in femtotcp serve")
        return tomb

    def error_taken(self, sid: int) -> None:
        """A failed connect's answer took the socket's error: its remains no
        longer hold it (SO_ERROR reads 0, a connect again is ECONNABORTED)."""
        with self._lock:
            tomb = self.tombs.get(sid)
            if tomb is not None and self.links.get(sid) is None:
                self.tombs[sid] = tomb._replace(so_error=0, program_error=None)

    def _retomb(self, sid: Any, tomb: _Tomb) -> None:
        """Replace a freed socket's remains (an error was taken), in place."""
        with self._lock:
            if int(sid) in self.tombs:
                self.tombs[int(sid)] = tomb

    def _tcp(self, sid: Any) -> _TcpLink:
        link = self._link(sid)
        if not isinstance(link, _TcpLink):
            raise _oserror(errno.EOPNOTSUPP)
        return link

    def _dgram(self, sid: Any) -> _DgramLink:
        link = self._link(sid)
        if not isinstance(link, _DgramLink):
            raise _oserror(errno.EOPNOTSUPP)
        return link

    def hand_over(self, listener: _ServedTcpLink, conn: Any) -> tuple[bytes, int]:
        """Loop thread: a connection ``listener`` accepted, as a socket of the
        program's: its pair and link made and published here; (the ``ACCEPTED``
        record, the program's fd)."""
        p, q = socket.socketpair(AF_UNIX, SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            q.setblocking(False)
            remote.tune_pair(p, q, SOCK_STREAM)
            sid = os.fstat(p.fileno()).st_ino
        except BaseException:
            p.close()
            q.close()
            raise
        link = _ServedTcpLink(self, q)
        link.q_sole = True           # its pair was made here; only P leaves
        link.v6 = listener.v6
        link.opts.update(listener.opts)
        link.attach_accepted(conn)
        self._publish(link, sid)
        local = link.local or (listener.any_addr, 0)
        peer = link.remote or (listener.any_addr, 0)
        rec = remote.ACCEPTED.pack(sid, len(local[0]), local[0], local[1],
                                   len(peer[0]), peer[0], peer[1], link.scope)
        return rec, p.detach()

    def _publish(self, link: _Link, sid: int) -> None:
        if isinstance(link, _ServedTcpLink):
            link.sid = sid
        with self._lock:
            self.links[sid] = link
            self.tombs.pop(sid, None)

    # -- the requests -------------------------------------------------------------------------
    def op_state(self, sid: Any, *, tail: bytes) -> list[Any]:
        tomb = self._tomb(sid)
        return [shown_state(tomb.state) if tomb is not None else state_of(self._link(sid))]

    def op_lookup(self, ino: Any, *, tail: bytes) -> list[Any]:
        with self._lock:
            link = self.links.get(int(ino))
        if link is None or link.released:
            return [None]
        if isinstance(link, _TcpLink):
            kind, proto = SOCK_STREAM, 0
        elif isinstance(link, _PingLink):
            kind, proto = SOCK_DGRAM, IPPROTO_ICMPV6 if link.v6 else IPPROTO_ICMP
        else:
            kind, proto = SOCK_DGRAM, 0
        return [AF_INET6 if link.v6 else AF_INET, kind, proto, state_of(link)]

    def op_info(self, _sid: Any, *, tail: bytes) -> list[Any]:
        """What an attached program asks once: whether the stack has IPv6, and
        its interfaces by index (``if_nameindex``: scope ids, RFC 4007)."""
        return [self.net.stack.ipv6 is not None,
                [[index, name] for index, name in self.net.call(self.net.if_nameindex)]]

    def op_bind(self, sid: Any, ip: str, port: int, scope: int = 0, *,
                tail: bytes) -> list[Any]:
        link = self._link(sid)
        self.net.call(link.bind, ip_bytes(ip), int(port), int(scope))  # type: ignore[attr-defined]
        return [state_of(link)]

    def op_listen(self, sid: Any, backlog: int, *, tail: bytes) -> list[Any]:
        link = self._tcp(sid)
        self.net.call(link.listen, int(backlog))
        return [state_of(link)]

    def op_connect(self, sid: Any, ip: str, port: int, filler: int, tmo: float,
                   scope: int = 0, *, tail: bytes) -> Any:
        return self.connect(sid, ip_bytes(ip), int(port), int(filler), float(tmo), int(scope))

    def connect(self, sid: Any, dst: bytes, port: int, filler: int, tmo: float,
                scope: int) -> Any:
        """A TCP connect to (``dst``, ``port``): answered at once when ``tmo``
        is 0 (non-blocking: EINPROGRESS...), else when it is done or ``tmo``
        seconds have passed (-1: no limit)."""
        return self.connect_link(self._tcp(sid), dst, port, filler, tmo, scope)

    def connect_link(self, link: _TcpLink, dst: bytes, port: int, filler: int, tmo: float,
                     scope: int) -> Any:
        """``connect`` on the socket's link."""
        if tmo == 0:
            def start() -> bytes:
                if link.mode is TcpMode.CONNECTING:
                    return connect_result(link, errno.EALREADY)
                done = link.start_connect(dst, port, int(filler), scope)
                # Connected, failed (its error), or under way.
                return connect_result(link, 0 if done.is_set() else errno.EINPROGRESS)
            return self.net.call(start)

        def result() -> bytes:
            return connect_result(link)

        if not self.runtime.in_loop_thread():      # (a caller outside the loop)
            def start_waitable() -> threading.Event:
                started = link.start_connect(dst, port, 0, scope)
                waitable = threading.Event()
                if started.is_set():
                    waitable.set()
                else:
                    link.connect_done = waitable
                return waitable

            done = self.net.call(start_waitable)
            if not self.net.wait(done, None if tmo < 0 else tmo):
                self.net.call(link.abort_connect)
                if link.mode is not TcpMode.CONNECTED:
                    raise TimeoutError("timed out")
            return result()
        done = link.start_connect(dst, port, 0, scope)
        if done.is_set():
            return result()
        pending = _ConnectAnswer(self, link, self._reply)
        if isinstance(done, _NotifyEvent):
            done.callback = pending.finish
        else:
            link.connect_done = _NotifyEvent(pending.finish)
        if tmo > 0:
            pending.timer = self.runtime.call_later(tmo, pending.timed_out)
        return DEFER

    def op_uconnect(self, sid: Any, ip: str, port: int, scope: int = 0, *,
                    tail: bytes) -> list[Any]:
        link = self._dgram(sid)
        self.net.call(link.connect, ip_bytes(ip), int(port), int(scope))
        return [state_of(link)]

    def op_err(self, sid: Any, *, tail: bytes) -> list[Any]:
        tomb = self._tomb(sid)
        if tomb is not None:
            # One error, as Linux's sk_err: taken here, SO_ERROR reads 0.
            err = tomb.program_error or 0
            self._retomb(sid, tomb._replace(program_error=None,
                                            so_error=0 if err else tomb.so_error))
            return [err, shown_state(tomb.state)]
        link = self._link(sid)
        return [self.net.call(link.take_program_error), state_of(link)]

    def op_soerr(self, sid: Any, *, tail: bytes) -> list[Any]:
        tomb = self._tomb(sid)
        if tomb is not None:
            self._retomb(sid, tomb._replace(
                so_error=0, program_error=None if tomb.so_error else tomb.program_error))
            return [tomb.so_error]
        link = self._link(sid)
        return [self.net.call(link.take_so_error)]

    def op_setopt(self, sid: Any, level: int, opt: int, value: Any, *,
                  tail: bytes) -> list[Any]:
        """The program's value (an int, or a buffer as hex), checked here again
        (``sockopts.parse``: the program is not trusted to have done it)."""
        link = self._link(sid)
        if isinstance(value, str):
            try:
                raw: int | bytes = bytes.fromhex(value)
            except ValueError:
                raise _oserror(errno.EINVAL) from None
        elif isinstance(value, int):
            raw = value
        else:
            raise _oserror(errno.EINVAL)
        family = socket.AF_INET6 if link.v6 else socket.AF_INET
        try:
            val = sockopts.parse(family, link.kind, int(level), int(opt), raw)
        except OverflowError:
            raise _oserror(errno.EINVAL) from None
        self.net.call(sockopts.store, link, int(level), int(opt), val)
        return []

    def op_getopt(self, sid: Any, level: int, opt: int, *, tail: bytes) -> list[Any]:
        link = self._link(sid)
        family = socket.AF_INET6 if link.v6 else socket.AF_INET
        value = self.net.call(sockopts.fetch, link, family, int(level), int(opt))
        return [value.hex() if isinstance(value, bytes) else int(value)]

    def op_shut(self, sid: Any, how: int, *, tail: bytes) -> list[Any]:
        link = self._tcp(sid)
        if link.mode is TcpMode.CONNECTED:
            if int(how) in (SHUT_RD, SHUT_RDWR):
                self.net.call(link.shutdown_read)
            else:
                self.net.call(link.pump)
        return []

    def op_held(self, sid: Any, n: int, *, tail: bytes) -> list[Any]:
        """A read after SHUT_RD found P empty: what the connection received
        since (``_TcpLink.take_held``), in hex."""
        size = int(n)
        if not 0 < size <= remote.HELD_MAX:
            raise _oserror(errno.EINVAL)
        return [self.net.call(self._tcp(sid).take_held, size).hex()]

    def op_urg(self, sid: Any, *, tail: bytes) -> list[Any]:
        """A send with MSG_OOB: ``tail`` goes after what P holds, its last byte urgent."""
        self.net.call(self._tcp(sid).send_urgent, bytes(tail))
        return []

    def op_send(self, sid: Any, *, tail: bytes) -> list[Any]:
        link = self._dgram(sid)
        return [self.net.call(link.send, bytes(tail))]

    def op_sendto(self, sid: Any, ip: str, port: int, scope: int = 0, *,
                  tail: bytes) -> list[Any]:
        link = self._dgram(sid)
        sent = self.net.call(link.sendto, bytes(tail), ip_bytes(ip), int(port), int(scope))
        return [sent, state_of(link)]

    def op_errrec(self, sid: Any, *, tail: bytes) -> list[Any]:
        link = self._dgram(sid)
        return [link.error_record_read()]

    def op_dns(self, _sid: Any, name: str, *, tail: bytes) -> Any:
        def lookup() -> list[Any]:
            chain, addrs = self.net._dns(str(name))
            return [chain, addrs]

        return self._blocking(lookup)

    def op_names(self, _sid: Any, host: str, family: int, flags: int, *, tail: bytes) -> Any:
        """``getaddrinfo``'s name lookup (A and AAAA, ordered) on this stack."""
        def lookup() -> list[Any]:
            canonical, addrs = self.net._names(str(host), int(family), int(flags))
            return [canonical, addrs]

        return self._blocking(lookup)

    def _blocking(self, work: Callable[[], list[Any]]) -> Any:
        """A request that waits for the network (DNS): answered from a thread of
        its own, not the loop."""
        if not self.runtime.in_loop_thread():
            return work()
        threading.Thread(target=self.later(work), name="femtotcp-sockets-dns",
                         daemon=True).start()
        return DEFER

