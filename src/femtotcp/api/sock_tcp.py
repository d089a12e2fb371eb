"""TCP sockets' loop-thread half: connecting, the byte pump, listening.

The loop thread pumps bytes between Q and the stack's connection with flow
control both ways (it reads Q only while the connection has send room, and
takes data from the connection only while Q accepts it). A listening socket
writes one token byte to Q per connection ready to accept.
"""

from __future__ import annotations

import _socket
import enum
import errno
import logging
import selectors
import socket as _std
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from femtotcp.api.sock_base import (
    _SO_REUSEPORT,
    _TCP_KEEPCNT,
    _TCP_KEEPIDLE,
    _TCP_KEEPINTVL,
    _TCP_USER_TIMEOUT,
    ANY4,
    ANY6,
    CHUNK,
    DEFAULT_BACKLOG,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    SHUT_WR,
    SOL_SOCKET,
    _Link,
    _oserror,
    this_host,
)
from femtotcp.api.sockopts import tcp_config
from femtotcp.proto.ports import port_taken
from femtotcp.proto.tcpstate import state_name
from femtotcp.stack.stack import need

if TYPE_CHECKING:
    from femtotcp.api.network import Network
    from femtotcp.api.socket import socket

log = logging.getLogger("femtotcp.api.socket")


#: Connection states (RFC 9293 names, ``state_name``) that are still on the way
#: to ESTABLISHED: a connecting socket waits on through them.
_SYN_STATES = frozenset({"SYN-SENT", "SYN-RECEIVED", "SYN-RCVD", "LISTEN", "CLOSED-NEW"})
#: States in which a connecting socket has failed (refused, reset, timed out).
_DEAD_STATES = frozenset({"CLOSED", "TIME-WAIT"})


class TcpMode(enum.Enum):
    """What a TCP socket is, as the program sees it (not the connection's
    RFC 9293 state: that lives in the stack)."""

    IDLE = "idle"                  # new, maybe bound
    CONNECTING = "connecting"      # SYN sent, connect() not finished
    CONNECTED = "connected"        # bytes flow through the pump
    LISTENING = "listening"
    FAILED = "failed"              # the connect failed; the socket is unusable
    DONE = "done"                  # closed, reset or finished both ways

    # Members are singletons compared by identity: hashed so too (C), not by
    # ``Enum.__hash__`` (a Python call per lookup in ``_TRANSITIONS``).
    __hash__ = object.__hash__


#: ``_TcpLink._syn_opts`` of a socket without options (never changed).
_NO_OPTS: dict[str, Any] = {}

#: Every change of ``_TcpLink.mode`` goes through ``_TcpLink.set_mode`` and is one
#: of these (or to DONE, which every mode may reach: close, reset, crash).
_TRANSITIONS: dict[TcpMode, frozenset[TcpMode]] = {
    TcpMode.IDLE: frozenset({TcpMode.CONNECTING, TcpMode.CONNECTED, TcpMode.LISTENING}),
    TcpMode.CONNECTING: frozenset({TcpMode.CONNECTED, TcpMode.FAILED}),
    TcpMode.CONNECTED: frozenset(),
    TcpMode.LISTENING: frozenset(),
    TcpMode.FAILED: frozenset(),
    TcpMode.DONE: frozenset(),
}


class _TcpLink(_Link):
    """One TCP socket: idle (maybe bound), connecting, connected or listening."""

    kind = "tcp"

    def __init__(self, net: Network, q: _socket.socket, owner: socket) -> None:
        super().__init__(net, q, owner)
        self.mode = TcpMode.IDLE
        self.conn: Any = None
        self.listener: Any = None
        self.bound: tuple[bytes, int] | None = None
        # connecting
        self.connect_done: threading.Event | None = None
        self.connect_error = 0
        self.filler = 0
        # pumping
        self.q_full = False        # stack -> program: Q took less than the connection had
        self.outbound: memoryview | None = None    # program -> stack, read from Q
        self.fin_in = False        # the peer's FIN is passed on (Q shut for writing)
        self.eof_out = False       # the program shut its side for writing (EOF on Q)
        self.unread_dropped = False  # the program closed with received data unread
        self.in_closed = False     # the program will never read again (EPIPE on Q)
        # SHUT_RD: what arrives stays in the connection for the program's reads
        # (``take_held``), as Linux's TCP goes on receiving after it.
        self.rd_held = False
        self.closing = False       # program closed: close the connection once flushed
        self.pumping = False       # the connection calls on_event from inside send()
        self.pump_again = False
        self.q_ready = False       # this pump runs because epoll reported Q ready
        # The connect is done this moment: what the program writes (or its
        # close) from now on is for epoll to report, Q is not read first.
        self.just_connected = False
        # listening
        self.backlog = DEFAULT_BACKLOG
        self.ready: deque[Any] = deque()
        self.tokens_owed = 0

    def set_mode(self, mode: TcpMode) -> None:
        """The one place the socket's mode changes (``_TRANSITIONS``)."""
        old = self.mode
        if mode is not old and mode is not TcpMode.DONE and mode not in _TRANSITIONS[old]:
            raise RuntimeError(f"TCP socket mode {old.value} -> {mode.value}")
        self.mode = mode

    def crash(self) -> None:
        connecting = self.mode is TcpMode.CONNECTING
        super().crash()
        self.conn = self.listener = None
        self.set_mode(TcpMode.FAILED if connecting else TcpMode.DONE)
        if connecting and self.connect_done is not None:
            self.connect_error = errno.EIO
            self.connect_done.set()

    # -- options ---------------------------------------------------------------------------
    def apply_opts(self, conn: Any) -> None:
        for (level, opt), value in self.opts.items():
            _apply_tcp_opt(conn, level, opt, value)

    def _syn_opts(self) -> dict[str, Any]:
        """IPV6_UNICAST_HOPS, IPV6_TCLASS (-1: the default), IP_TTL, IP_TOS and
        TCP_MAXSEG as ``Tcp.connect`` options: the SYN carries them already.
        None set: none (a connection's own defaults are the same)."""
        opts = self.opts
        if not opts:
            return _NO_OPTS
        hops = opts.get((IPPROTO_IPV6, _std.IPV6_UNICAST_HOPS), -1)
        tclass = opts.get((IPPROTO_IPV6, _std.IPV6_TCLASS), -1)
        # TCP_MAXSEG set before connect caps the MSS the SYN offers (Linux's user_mss).
        syn = {"hop_limit": None if hops < 0 else hops, "tclass": max(0, tclass),
               "maxseg": opts.get((IPPROTO_TCP, _std.TCP_MAXSEG), 0)}
        # IP_TTL and IP_TOS mark an IPv4 connection's SYN already, as Linux's.
        ttl = opts.get((_std.IPPROTO_IP, _std.IP_TTL), -1)
        if ttl != -1:
            syn["ttl"] = ttl
        if opts.get((_std.IPPROTO_IP, _std.IP_TOS)):
            syn["tos"] = opts[(_std.IPPROTO_IP, _std.IP_TOS)]
        return syn

    def set_opt(self, level: int, opt: int, value: Any) -> None:
        self.opts[(level, opt)] = value
        if self.conn is not None:
            _apply_tcp_opt(self.conn, level, opt, value)
        if self.listener is not None:
            _apply_tcp_opt(self.listener, level, opt, value)

    # -- bind --------------------------------------------------------------------------------
    def bind(self, addr: bytes, port: int, scope: int = 0) -> tuple[bytes, int]:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        if self.bound is not None or self.mode is not TcpMode.IDLE:
            raise _oserror(errno.EINVAL, "already bound")
        self.refuse_mapped(addr, errno.EINVAL)
        self.bind_scope(addr, scope)
        if addr not in (ANY4, ANY6) and not net.stack.is_local(addr):
            raise _oserror(errno.EADDRNOTAVAIL, "cannot assign requested address")
        reuse = bool(self.opts.get((SOL_SOCKET, _std.SO_REUSEADDR)))
        reuse_port = bool(self.opts.get((SOL_SOCKET, _SO_REUSEPORT)))
        if port == 0:
            port = self._pick_port(addr)
        elif self._port_busy(addr, port, reuse, reuse_port):
            net.reap()
            if self._port_busy(addr, port, reuse, reuse_port):
                raise _oserror(errno.EADDRINUSE)
        self.bound = (addr, port)
        self.local = self.bound
        net.reserved[(addr, port)] = self
        return self.bound

    def _pick_port(self, addr: bytes) -> int:
        from femtotcp.core import rand
        cfg = self.net.stack.config
        low, high = cfg.ephemeral_low, cfg.ephemeral_high
        span = high - low + 1
        start = rand.randbelow(span)
        for i in range(span):
            port = low + (start + i) % span
            if not self._port_busy(addr, port, False):
                return port
        raise _oserror(errno.EADDRINUSE, "no free port")

    def _port_busy(self, addr: bytes, port: int, reuse: bool, reuse_port: bool = False) -> bool:
        """Linux's bind rules (the overlap is ``port_taken``'s): a port is taken
        by another bound socket of this API unless both set SO_REUSEADDR, by a
        listener always, and by any connection using it (TIME_WAIT included)
        unless both set SO_REUSEADDR (a connection has it when its socket or
        the listener that accepted it had, Linux's sk_reuse); none of them
        takes it when both set SO_REUSEPORT (one user here), the connections a
        SO_REUSEPORT listener accepted included."""
        def shares(opts: dict[tuple[int, int], Any]) -> bool:
            return bool((reuse and opts.get((SOL_SOCKET, _std.SO_REUSEADDR)))
                        or (reuse_port and opts.get((SOL_SOCKET, _SO_REUSEPORT))))

        links = [(key, link) for key, link in self.net.reserved.items()
                 if key[1] == port and link is not self and link.owner_alive()
                 and not shares(link.opts)]
        holders = [key for key, _ in links]
        # Bindings to :: that take IPv4 too (IPV6_V6ONLY off) hold its IPv4 port.
        dual = [key for key, link in links if key[0] == ANY6 and not link.v6only]
        tcp = need(self.net.stack.tcp, "tcp")
        for lst in tcp.listeners():
            if lst.local[1] == port and not (reuse_port and lst.reuse_port):
                holders.append(lst.local)
                if lst.local[0] == ANY6 and not lst.v6only:
                    dual.append(lst.local)
        holders += [conn.local for conn in tcp.connections() if conn.local[1] == port
                    and not (reuse and conn.reuse)
                    and not (reuse_port and conn.listener is not None
                             and conn.listener.reuse_port)]
        return port_taken(holders, addr, port, self.v6only, dual)

    # -- connect (loop thread) ---------------------------------------------------------------
    def start_connect(self, dst: bytes, port: int, filler: int,
                      scope: int = 0) -> threading.Event:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        if self.mode is TcpMode.CONNECTING:
            raise _oserror(errno.EALREADY)
        if self.mode in (TcpMode.CONNECTED, TcpMode.DONE):
            raise _oserror(errno.EISCONN)
        if self.mode is not TcpMode.IDLE:
            raise _oserror(errno.EINVAL)
        self.refuse_mapped(dst, errno.ENETUNREACH)
        src, sport = self.bound if self.bound is not None else (None, 0)
        dst = this_host(dst, src)
        if src in (ANY4, ANY6):
            src = None
        iface = self.dst_iface(dst, scope, connect=True) if len(dst) == 16 else None
        if iface is not None:
            # The link-local source of the scope's interface: the stack sends
            # from it out of that interface (RFC 4007).
            ipv6 = need(net.stack.ipv6, "ipv6")
            src = src or ipv6.source_for(iface, dst)
            if src is None:
                raise _oserror(errno.EADDRNOTAVAIL, f"no IPv6 address on {iface.name}")
            self.scope = iface.index
        try:
            conn = tcp.connect(dst, port, src=src, sport=sport, **self._syn_opts())
        except BaseException:
            self.filler = filler
            self._drop_filler()
            raise
        if self.bound is not None:
            net.reserved.pop(self.bound, None)
        self.local = (conn.local[0], conn.local[1])
        self.conn = conn
        self.filler = filler
        self.set_mode(TcpMode.CONNECTING)
        self.connect_done = self.connect_event()
        if self.opts:
            self.apply_opts(conn)
        conn.on_event = self.guard(self.on_conn_event)
        self.register()
        self.on_conn_event()
        return self.connect_done

    def connect_event(self) -> threading.Event:
        """What ``start_connect`` returns and sets once the connect is done."""
        return threading.Event()

    def abort_connect(self) -> None:
        """A blocking connect timed out: give up (the socket is unusable after)."""
        if self.mode is TcpMode.CONNECTING:
            self.conn.on_event = None
            self.conn.abort()
            self.conn = None
            self.set_mode(TcpMode.FAILED)
            self.connect_error = errno.ETIMEDOUT
            self.release()

    def _connect_failed(self, err: int) -> None:
        self.set_mode(TcpMode.FAILED)
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
        if self.mode is TcpMode.CONNECTING:
            err = conn.error
            state = state_name(conn.state)
            if err or state in _DEAD_STATES:
                self._connect_failed(err or errno.ECONNREFUSED)
                return
            if state in _SYN_STATES:
                return
            self.set_mode(TcpMode.CONNECTED)
            self.local = (conn.local[0], conn.local[1])
            self.remote = (conn.remote[0], conn.remote[1])
            if self.filler:
                self._drop_filler()
            self.just_connected = True
            if self.connect_done is not None:
                self.connect_done.set()
        if self.mode is TcpMode.CONNECTED:
            self.pump()

    def attach_accepted(self, conn: Any) -> None:
        self.apply_opts(conn)
        self.conn = conn
        self.scope = self.local_scope(conn.local[0])
        self.set_mode(TcpMode.CONNECTED)
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

    def _send_oob(self, byte: bytes) -> int:
        q = self.q
        assert q is not None
        return q.send(byte, _std.MSG_OOB)

    def _pump_once(self) -> None:
        conn, q = self.conn, self.q
        if conn is None or q is None:
            return
        # stack -> program: straight from the connection's receive buffer, as
        # much as Q takes, its chunks in one sendmsg (no copy; TcpConnection.send_received, as
        # the gateway's splice). What Q does not take stays in the connection,
        # so its window closes until the program reads.
        self.q_full = False
        if self.fin_in and conn.error:
            # Reset after the peer's FIN: nothing more to read, so only this
            # notices it (the next send fails, as on Linux).
            self.fail(conn.error)
            return
        while not self.fin_in:
            if not self.in_closed:
                try:
                    if conn.rcv.urg_seq >= 0 and (before := conn.urgent_offset()) >= 0:
                        # The peer's urgent byte goes to P out of band (MSG_OOB on
                        # a Unix stream socket: POLLPRI, select's exceptional set,
                        # recv(MSG_OOB), SIOCATMARK, SO_OOBINLINE as TCP's).
                        if not conn.send_urgent_byte(before, q.sendmsg, self._send_oob):
                            self.q_full = True
                            break
                        continue
                    n = conn.send_received(q.sendmsg)
                except BlockingIOError:
                    self.q_full = True
                    break
                except OSError:
                    self.in_closed = True   # the program will not read (SHUT_RD / closed)
                    n = 0
                if n:
                    if conn.rcv_buf:
                        self.q_full = True  # a partial send: Q is full
                        break
                    continue
            if self.rd_held and conn.rcv_buf:
                break                   # kept for ``take_held``
            try:
                # Nothing buffered (EOF, an error or None), or data to discard.
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
        # program -> stack. Q is read when epoll reported it ready, or when
        # epoll is not watching it for reading (data held back for send room,
        # not yet registered); otherwise epoll reports whatever comes. Q is
        # read until it is empty (EAGAIN) or ends, and what it gave is queued
        # before anything is sent: a program that wrote and then closed (or
        # shut its writing side) has its FIN ride on the last data segment, as
        # Linux's tcp_send_fin does with data still unsent.
        # Right after the connect, Q is registered with epoll (level-triggered:
        # whatever the program wrote or its close is reported) instead of a read
        # that finds it empty.
        watch = self.watch
        read_q = (self.q_ready or self.outbound is not None or watch is None
                  or not (watch.events & selectors.EVENT_READ or self.just_connected))
        self.just_connected = False
        queued = False
        while not self.eof_out:
            data = self.outbound
            if data is not None:
                try:
                    n = conn.send(data, False)
                except OSError as exc:
                    self.fail(exc.errno or errno.EPIPE)
                    return
                if n:
                    queued = True
                if n < len(data):
                    self.outbound = data[n:] if n else data
                    break
                self.outbound = None
            if not read_q:
                break
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
                self._program_eof()      # the FIN goes out with what is queued
                if self.released:
                    return
                break
            self.outbound = memoryview(chunk)
        if queued and self.conn is not None:
            self.conn.push()
        if self.fin_in and self.eof_out:
            self._maybe_done()
        if self.watch is not None and not self.released:
            self.watch.set(read=not self.eof_out and self.outbound is None,
                           write=self.q_full and not self.in_closed)

    def send_urgent(self, data: bytes) -> None:
        """A send with MSG_OOB (loop thread): ``data`` goes after everything the
        program wrote to P before it, and its last byte is marked urgent before
        any of it is sent (Linux's tcp_sendmsg marks SND.UP as it queues). What
        Q still holds is taken first: into the connection, or held here with
        ``data`` behind it (bounded by Q's buffer) when the send buffer is full."""
        conn, q = self.conn, self.q
        if self.mode is not TcpMode.CONNECTED or conn is None or q is None or self.eof_out:
            raise _oserror(errno.EPIPE)
        self.q_ready = True            # read Q now, whatever its watch says
        try:
            self._pump_once()
            held = bytearray(self.outbound) if self.outbound is not None else bytearray()
            while held:                # the send buffer is full: Q goes behind it
                try:
                    chunk = q.recv(CHUNK, _std.MSG_DONTWAIT)
                except OSError:
                    break
                if not chunk:
                    break
                held += chunk
        finally:
            self.q_ready = False
        if self.conn is None:
            raise _oserror(errno.EPIPE)
        if not held:
            taken = conn.send(data, False)
            held = bytearray(data[taken:])
        else:
            held += data
        self.outbound = memoryview(bytes(held)) if held else None
        conn.mark_urgent(len(held))
        self.pump()

    def _program_eof(self) -> None:
        """EOF on Q: the program shut its sending side, or closed the socket.
        A P shut both ways looks closed from here; after the program's own
        shutdown(SHUT_RDWR) it is not, while its socket object is open (an
        in-process one: ``owner_alive``; an attached program's socket is out
        of sight, ``detached``): the connection lives on, so data the peer
        sends then resets it and the program's reads say so, as on Linux."""
        conn = self.conn
        if self.closing or (self.p_gone() and not (
                self.rd_held and not self.detached and self.owner_alive())):
            self.closing = True
            self.in_closed = True
            # Received data the program never read makes the close a reset
            # (RFC 9293 3.10.4, RFC 2525 2.17, as Linux): data left unread in
            # the program's end of the pair here; data still in the connection
            # (on its way to the program) makes conn.close() reset by itself.
            try:
                if self.unread_dropped:
                    conn.counters["tcp.close_with_rst"] += 1
                    conn.abort()
                else:
                    conn.close()
            except OSError:
                pass
            conn.on_event = None
            self.conn = None
            self.set_mode(TcpMode.DONE)
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
        if self.outbound is not None:
            return
        if self.conn is not None:
            self.conn.on_event = None
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None
        self.set_mode(TcpMode.DONE)
        self.release()

    def fail(self, err: int) -> None:
        """The connection failed (reset, timeout): the program sees ``err``.
        After the peer's FIN (a reset in CLOSE_WAIT), recv keeps giving EOF,
        as Linux's (SOCK_DONE before sk_err): only send and SO_ERROR see it."""
        self.program_error = None if self.fin_in else err
        self.so_error = err
        self.set_mode(TcpMode.DONE)
        conn = self.conn
        if conn is not None:
            conn.on_event = None
            self.conn = None
            if state_name(conn.state) != "CLOSED":
                conn.abort()          # whatever is left of it goes (RST where due)
        self.outbound = None
        self.q_full = False
        self.release()

    def on_q_ready(self) -> None:
        self.q_ready = True
        try:
            self.on_q()
        finally:
            self.q_ready = False

    def on_q(self) -> None:
        if self.released:
            return
        if self.mode is TcpMode.CONNECTED:
            self.pump()
        elif self.mode is TcpMode.LISTENING:
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
        if self.mode is TcpMode.LISTENING:
            self.close_listener()
            return
        if self.mode is TcpMode.CONNECTING or (self.mode is TcpMode.CONNECTED and abort):
            conn = self.conn
            conn.on_event = None
            conn.abort()
            self.conn = None
            self.set_mode(TcpMode.DONE)
            self.release()
            return
        if self.mode is TcpMode.CONNECTED:
            if self.eof_out:
                self._program_eof()
            else:
                self.pump()
            return
        self.release()

    def shutdown_read(self) -> None:
        """The program shut its reading side (P is shut for reading: its
        queued bytes, then EOF). As on Linux, the connection goes on
        receiving: what arrives waits in it for ``take_held``, and a close
        with some of it unread resets."""
        self.in_closed = True
        self.rd_held = True
        if self.conn is not None:
            self.conn.shut_reading()
            self.pump()

    def take_held(self, n: int) -> bytes:
        """Up to ``n`` bytes received since SHUT_RD, b"" when none is there (a
        read after SHUT_RD never waits); the connection's error once its data
        is taken, as Linux's recv."""
        conn = self.conn
        if conn is None:
            return b""
        return conn.recv(n) or b""

    # -- listening -------------------------------------------------------------------------------
    def listen(self, backlog: int) -> tuple[bytes, int]:
        net = self.net
        tcp = net.stack.tcp
        if tcp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no TCP module")
        backlog = max(1, min(backlog, 4096))
        if self.mode is TcpMode.LISTENING:
            self.backlog = backlog
            return self.local or (self.any_addr, 0)
        if self.mode is not TcpMode.IDLE:
            raise _oserror(errno.EINVAL)
        if self.bound is None:
            self.bind(self.any_addr, 0)
        addr, port = self.bound  # type: ignore[misc]
        net.reserved.pop((addr, port), None)
        v6only = self.v6only
        reuse_port = bool(self.opts.get((SOL_SOCKET, _SO_REUSEPORT)))
        try:
            lst = tcp.listen(addr, port, backlog, v6only, reuse_port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                net.reap()
                lst = tcp.listen(addr, port, backlog, v6only, reuse_port)
            else:
                raise
        self.listener = lst
        self.backlog = backlog
        self.set_mode(TcpMode.LISTENING)
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
            item = self.ready_item(conn)
            if item is not None:
                self.ready.append(item)
                self.tokens_owed += 1
        self.listener_watch(q, bool(self.tokens_owed))

    def ready_item(self, conn: Any) -> Any:
        """What the ready queue keeps for a connection the listener accepted
        (None: it was dropped); ``drop_ready`` undoes it."""
        return conn

    def drop_ready(self, item: Any) -> None:
        """An item of the ready queue the program will never take: reset it."""
        item.abort()

    def listener_watch(self, q: _socket.socket, owed: bool) -> None:
        """End of a listener round: Q readable means the program closed the
        listening socket; else watch Q (for writing too while ``owed``)."""
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
            self.watch.set(True, owed)

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
            item = self.ready.popleft()
            try:
                self.drop_ready(item)
            except OSError:
                pass
        self.set_mode(TcpMode.DONE)
        self.release()


_TCP_SYNCNT = getattr(_std, "TCP_SYNCNT", 7)
_TCP_LINGER2 = getattr(_std, "TCP_LINGER2", 8)
_TCP_WINDOW_CLAMP = getattr(_std, "TCP_WINDOW_CLAMP", 10)
_TCP_QUICKACK = getattr(_std, "TCP_QUICKACK", 12)


def _tcp_knob(conn: Any, opt: int, value: int) -> None:
    """TCP_SYNCNT (the SYN's retransmissions) and TCP_LINGER2 (an orphan's
    time in FIN_WAIT_2; 0: the stack's, -1: none) in the connection's own
    copy of the TCP config."""
    if opt == _TCP_SYNCNT:
        tcp_config(conn, syn_retries=value)
        return
    fin = conn.env.config.fin_timeout if value == 0 else float(max(value, 0))
    tcp_config(conn, fin_timeout=fin)


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
        elif opt == _std.SO_REUSEADDR:
            name, value = "reuse", bool(value)
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
        elif opt == _std.TCP_MAXSEG:
            name = "maxseg"
        elif opt == _TCP_QUICKACK:
            # 1: ACK the next segments at once (quick-ack mode again, as Linux);
            # 0: delay them (Linux's pingpong mode).
            if hasattr(obj, "rcv"):
                obj.rcv.quickack = obj.config.quickack_segments if value else 0
            return
        elif opt == _TCP_WINDOW_CLAMP:
            if hasattr(obj, "rcv"):
                obj.rcv.window_clamp = value
            return
        elif opt in (_TCP_SYNCNT, _TCP_LINGER2):
            if hasattr(obj, "snd"):         # a connection (a listener has no such knob)
                _tcp_knob(obj, opt, value)
            return
    elif level == _std.IPPROTO_IP and opt in (_std.IP_TTL, _std.IP_TOS):
        # A connection's own IPv4 env, or a listener's value for its SYN-ACKs
        # and the connections it accepts (``TcpConnection.ttl``/``tos``).
        if opt == _std.IP_TTL:
            obj.ttl = None if value == -1 else value
        else:
            obj.tos = value
        return
    elif level == IPPROTO_IPV6:      # -1: back to the default
        if opt == _std.IPV6_UNICAST_HOPS:
            name, value = "hop_limit", (None if value < 0 else value)
        elif opt == _std.IPV6_TCLASS:
            name, value = "tclass", max(0, value)
    if name is None or not hasattr(obj, name):
        return
    try:
        if name == "keepalive" and hasattr(obj, "set_keepalive"):
            obj.set_keepalive(value)     # also arms the timer on a live connection
        else:
            setattr(obj, name, value)
    except (AttributeError, ValueError, TypeError):
        log.debug("option %s=%r not taken by %r", name, value, obj)

