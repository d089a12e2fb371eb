"""One TCP connection: the RFC 9293 state machine, sans-I/O.

``TcpConnection`` is the facade programs and the TCP layer use, and the state
machine: input in the order of RFC 9293 3.10.7.4 (sequence number check with
PAWS first, then RST, SYN, ACK, text, FIN) with RFC 5961's rules for RST, SYN
and ACK values, opening and closing, the keep-alive and TIME-WAIT timers, and
the one place that changes ``state`` (``_set_state``). It owns three parts:

- ``snd`` (``sender.Sender``): send buffer, output loop, ACK processing,
  retransmission, congestion control and loss recovery;
- ``rcv`` (``receiver.Receiver``): receive buffer, out-of-order queue, the
  window we offer and the ACK policy;
- ``opt`` (``options.Negotiated``): MSS, window scale, timestamps, SACK.

It reaches its surroundings only through a ``TcpEnv`` (``env``): a stack's
``Tcp`` layer provides one, and so can a unit test.

Sequence numbers are kept unwrapped (see ``seq``). The parts' fields keep their
RFC names (``snd.snd_una``, ``rcv.rcv_nxt``); the facade exposes the ones
programs, tools and tests read (``conn.snd_una`` ...) as delegating properties,
which the per-segment path itself never uses.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import weakref
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from femtotcp.proto.tcp.buffers import Chunk, OutOfOrderQueue, ReceiveQueue
from femtotcp.proto.tcp.options import TS_LEN, Negotiated, pmtu_mss, tsval
from femtotcp.proto.tcp.receiver import Receiver
from femtotcp.proto.tcp.recovery import NEWRENO, SACK
from femtotcp.proto.tcp.rtt import RttEstimator
from femtotcp.proto.tcp.sender import TSO_MAX_PAYLOAD, Sender
from femtotcp.proto.tcp.seq import HALF, MASK, after32, before32, unwrap
from femtotcp.proto.tcp.state import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    QUEUEING,
    RECEIVING,
    RESET_ON_ABORT,
    SENDING,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TcpState,
)
from femtotcp.proto.tcp.timers import _UNARMED, LazyTimer, _Unarmed
from femtotcp.wire.checksum import mod_ffff
from femtotcp.wire.tcp import (
    ACK,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    TS_ALIGNED,
    URG,
    TcpHeader,
    TcpOptions,
    build_fast,
    build_options,
    parse_options,
    pseudo_sum,
)

if TYPE_CHECKING:
    from femtotcp.core.counters import Counters
    from femtotcp.proto.tcp.config import TcpConfig
    from femtotcp.proto.tcp.env import TcpEnv, TimerSource
    from femtotcp.proto.tcp.listener import TcpListener

__all__ = [
    "CLOSED", "CLOSE_WAIT", "CLOSING", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "HALF",
    "LAST_ACK", "LISTEN", "LazyTimer", "MASK", "SYN_RECEIVED", "SYN_SENT", "TIME_WAIT",
    "TSO_MAX_PAYLOAD", "TcpConnection", "TcpState",
]

log = logging.getLogger("femtotcp.tcp")

_TS_PAIR = struct.Struct("!II")
_TS_OPT = struct.Struct("!III")     # the aligned timestamp option: kind word, TSval, TSecr
#: ``_check_sequence``'s verdicts besides None (acceptable).
_DROPPED = object()
_OLD = object()
_HDR_TS = struct.Struct("!HHIIHHHHIII")     # header + NOP NOP TS, 32 bytes
_CSUM_URG = struct.Struct("!HH")            # checksum, urgent pointer (offset 16)

#: Each state's name as a plain string (cheaper than the enum's ``value``).
_STATE_NAMES: dict[TcpState, str] = {st: st.value for st in TcpState}

#: A state-change hook: (connection, old state, new state).
StateHook = Callable[["TcpConnection", TcpState, TcpState], None]


def _os_error(code: int) -> OSError:
    """The stdlib exception for an errno (OSError picks the subclass itself)."""
    return OSError(code, os.strerror(code))


def _via(path: str) -> Any:
    """A facade attribute that lives in one of the connection's parts
    (``"snd.snd_una"``), for programs, tools and tests; the connection's own
    code uses the part. Read through a C-level ``attrgetter``."""
    part, name = path.split(".")

    def fset(conn: TcpConnection, value: Any) -> None:
        setattr(getattr(conn, part), name, value)

    return property(attrgetter(path), fset, doc=f"``{path}``")


class TcpConnection:
    """A connection. Programs use the public methods and attributes; the TCP
    layer calls ``fast_input``/``input`` for every segment of this 4-tuple.

    Options (set before connect/listen where the handshake uses them):
    ``nodelay`` (TCP_NODELAY), ``keepalive`` + ``keepalive_idle``/``_interval``/
    ``_count`` (seconds, count), ``rcvbuf``/``sndbuf`` (bytes), ``linger``
    (None, or seconds: 0 makes close() send a RST), ``user_timeout`` (seconds,
    0 = off; RFC 5482 semantics as Linux's TCP_USER_TIMEOUT), ``maxseg``
    (TCP_MAXSEG, 0 = from the route MTU), ``hop_limit``/``tclass``
    (IPV6_UNICAST_HOPS/IPV6_TCLASS, IPv6 connections only).
    """

    __slots__ = (
        "env", "counters", "timers", "config", "listener", "local", "remote",
        "key", "_laddr", "_lport", "_raddr", "_rport", "_psum", "state",
        "snd", "rcv", "opt",
        # program-facing
        "on_event", "on_state", "error", "_error_reported", "soft_error", "_keepalive",
        "_keepalive_idle", "keepalive_interval", "keepalive_count", "linger", "user_timeout",
        "maxseg", "reuse", "wr_shut", "rd_closed", "orphaned", "_ev", "_listener_ev", "_flush_deferred",
        # liveness
        "last_rx", "last_tx", "ka_probes", "t_keepalive", "t_close",
        # statistics
        "segs_in", "segs_out",
        # TIME-WAIT: the record standing in for this connection (timewait.py)
        "_tw", "__weakref__",
        # the urgent pointer (SND.UP, unwrapped) while a MSG_OOB send is unacknowledged
        "snd_up",
    )

    def __init__(self, env: TcpEnv, laddr: bytes, lport: int, raddr: bytes, rport: int,
                 listener: TcpListener | None = None) -> None:
        cfg = env.config
        self.env = env
        self.counters: Counters = env.counters
        self.timers: TimerSource = env.timers
        self.config: TcpConfig = cfg
        self.listener = listener
        self.local = (laddr, lport)
        self.remote = (raddr, rport)
        self.key = (laddr, lport, raddr, rport)
        self._laddr = laddr
        self._lport = lport
        self._raddr = raddr
        self._rport = rport
        self._psum = pseudo_sum(laddr, raddr)
        self.state = CLOSED
        self.opt = opt = Negotiated(cfg.timestamps, cfg.sack, cfg.window_scaling,
                                    env.isn.ts_offset(laddr, lport, raddr, rport))
        self.rcv = rcv = Receiver(self, env, opt, cfg)
        self.snd = Sender(self, env, opt, rcv, cfg)
        self.on_event: Callable[[], None] | None = None
        self.on_state: StateHook | None = None
        self.error: int | None = None
        self._error_reported = True
        self.soft_error: int | None = None
        self._keepalive = False
        self._keepalive_idle = cfg.keepalive_idle
        self.keepalive_interval = cfg.keepalive_interval
        self.keepalive_count = cfg.keepalive_count
        self.linger: float | None = None
        self.user_timeout = 0.0
        self.maxseg = 0
        #: SO_REUSEADDR on the socket (Linux's sk_reuse): another socket with it
        #: may bind this connection's port while it lives, TIME_WAIT included.
        self.reuse = False
        self.wr_shut = False
        #: The program's socket shut its reading side (SHUT_RD) but keeps what
        #: arrives (``shut_reading``), unlike ``shutdown``'s discarding one.
        self.rd_closed = False
        self.orphaned = False
        self._ev = False
        self._listener_ev = False
        self._flush_deferred = False
        self.last_rx = 0.0
        self.last_tx = 0.0
        self.ka_probes = 0
        # Made when first set (most connections never keep alive, and only
        # an orphan in FIN_WAIT_2 or one keeping TIME_WAIT itself closes by timer).
        self.t_keepalive: LazyTimer | _Unarmed = _UNARMED
        self.t_close: LazyTimer | _Unarmed = _UNARMED
        self.segs_in = 0
        self.segs_out = 0
        self._tw: TcpConnection | None = None
        self.snd_up: int | None = None

    def _keepalive_timer(self) -> LazyTimer:
        timer = self.t_keepalive
        if isinstance(timer, _Unarmed):
            timer = self.t_keepalive = LazyTimer(self.timers, self._on_keepalive)
        return timer

    def _close_timer(self) -> LazyTimer:
        timer = self.t_close
        if isinstance(timer, _Unarmed):
            timer = self.t_close = LazyTimer(self.timers, self._on_close_timer)
        return timer

    def __repr__(self) -> str:
        from femtotcp.wire import ip_str
        return (f"<TcpConnection {ip_str(self._laddr)}:{self._lport} -> "
                f"{ip_str(self._raddr)}:{self._rport} {self.state}>")

    # IPV6_UNICAST_HOPS and IPV6_TCLASS: kept by the connection's IPv6 env, which
    # puts them on every segment; an IPv4 connection (one a dual-stack listener
    # took) has none, as Linux applies them to IPv6 packets only.
    @property
    def hop_limit(self) -> int | None:
        """The hop limit of this connection's segments (None: the stack's)."""
        value: int | None = getattr(self.env, "hop_limit", None)
        return value

    @hop_limit.setter
    def hop_limit(self, value: int | None) -> None:
        if hasattr(self.env, "hop_limit"):
            setattr(self.env, "hop_limit", value)   # noqa: B010 - not every env has it

    @property
    def tclass(self) -> int:
        """The traffic class of this connection's segments."""
        value: int = getattr(self.env, "tclass", 0)
        return value

    @tclass.setter
    def tclass(self, value: int) -> None:
        if hasattr(self.env, "tclass"):
            setattr(self.env, "tclass", value)   # noqa: B010 - not every env has it

    # IP_TTL and IP_TOS: an IPv4 connection's own env (``env.own_env4``, made
    # when first set) puts them on its segments, the SYN or SYN-ACK too when
    # they are set before it (``Tcp.connect`` options, a listener's); an IPv6
    # connection has none (Linux applies them to IPv4 packets only).
    @property
    def ttl(self) -> int | None:
        """The TTL of this IPv4 connection's segments (None: the stack's)."""
        value: int | None = getattr(self.env, "ttl", None)
        return value

    @ttl.setter
    def ttl(self, value: int | None) -> None:
        from femtotcp.proto.tcp.env import own_env4
        env = own_env4(self) if value is not None or hasattr(self.env, "ttl") else None
        if env is not None:
            env.ttl = value

    @property
    def tos(self) -> int:
        """The TOS byte of this IPv4 connection's segments."""
        value: int = getattr(self.env, "tos", 0)
        return value

    @tos.setter
    def tos(self, value: int) -> None:
        from femtotcp.proto.tcp.env import own_env4
        env = own_env4(self) if value or hasattr(self.env, "tos") else None
        if env is not None:
            env.tos = value

    # ================================================================ the parts' fields
    # Send side.
    iss: int = _via("snd.iss")
    snd_una: int = _via("snd.snd_una")
    snd_nxt: int = _via("snd.snd_nxt")
    snd_max: int = _via("snd.snd_max")
    snd_wnd: int = _via("snd.snd_wnd")
    max_snd_wnd: int = _via("snd.max_snd_wnd")
    snd_buf: bytearray = _via("snd.snd_buf")
    sndbuf: int = _via("snd.sndbuf")
    rtt: RttEstimator = _via("snd.rtt")
    retransmits: int = _via("snd.retransmits")
    bytes_acked: int = _via("snd.bytes_acked")
    # Receive side.
    irs: int = _via("rcv.irs")
    rcv_nxt: int = _via("rcv.rcv_nxt")
    rcv_adv: int = _via("rcv.rcv_adv")
    rcv_buf: ReceiveQueue = _via("rcv.rcv_buf")
    ooo: OutOfOrderQueue = _via("rcv.ooo")
    @property
    def rcvbuf(self) -> int:
        """SO_RCVBUF: the receive buffer's size, grown by autotuning unless set."""
        return self.rcv.rcvbuf

    @rcvbuf.setter
    def rcvbuf(self, value: int) -> None:
        rcv = self.rcv
        rcv.rcvbuf = value
        rcv.autotune = False          # a size the program chose (SOCK_RCVBUF_LOCK)
    rd_shut: bool = _via("rcv.rd_shut")
    fin_received: bool = _via("rcv.fin_received")
    bytes_received: int = _via("rcv.bytes_received")
    # Negotiated options.
    mss: int = _via("opt.mss")
    mss_base: int = _via("opt.mss_base")
    adv_mss: int = _via("opt.adv_mss")
    peer_mss: int = _via("opt.peer_mss")
    snd_wscale: int = _via("opt.snd_wscale")
    rcv_wscale: int = _via("opt.rcv_wscale")
    ts_ok: bool = _via("opt.ts_ok")
    sack_ok: bool = _via("opt.sack_ok")

    # ================================================================ program API
    @property
    def readable(self) -> bool:
        """recv() would not return None: data, EOF or an error to report."""
        rcv = self.rcv
        return rcv.rcv_buf.nbytes > 0 or rcv.fin_received or rcv.rd_shut or (
            self.error is not None) or self.state == CLOSED

    @property
    def writable(self) -> bool:
        """send() would take data or raise (Linux: free space >= half the queue)."""
        if self.error is not None or self.wr_shut:
            return True
        st = self.state
        if st == ESTABLISHED or st == CLOSE_WAIT:
            snd = self.snd
            queued = len(snd.snd_buf)
            free = snd.sndbuf - queued
            return free > 0 and free >= queued >> 1
        return st == CLOSED

    def send(self, data: bytes | bytearray | memoryview, push: bool = True) -> int:
        """Queue data; returns how many bytes were taken (0 when the buffer is full).
        With ``push`` False the data only joins the send queue, and waits for
        ``push`` (or a close/SHUT_WR, whose FIN then rides on its last segment,
        as Linux's tcp_send_fin does with unsent data).

        Raises the pending error once (e.g. ConnectionResetError), then EPIPE
        after the write side is shut or the connection is gone, ENOTCONN before
        it was ever opened."""
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            raise _os_error(self.error)
        st = self.state
        snd = self.snd
        if self.wr_shut or self.error is not None:
            raise _os_error(errno.EPIPE)
        if st == CLOSED or st == LISTEN:
            raise _os_error(errno.ENOTCONN if snd.snd_max == 0 else errno.EPIPE)
        if st not in QUEUEING:
            raise _os_error(errno.EPIPE)
        buf = snd.snd_buf
        free = snd.sndbuf - len(buf)
        n = len(data)
        if free <= 0 or n == 0:
            return 0
        if n > free:
            n = free
            buf += memoryview(data)[:n]
        else:
            buf += data
        if push and (st == ESTABLISHED or st == CLOSE_WAIT):
            snd.output()      # never calls back into the program (no re-entrancy)
        return n

    def push(self) -> None:
        """Send what ``send(..., push=False)`` queued, as far as the windows,
        Nagle and SWS avoidance allow."""
        st = self.state
        if st == ESTABLISHED or st == CLOSE_WAIT:
            self.snd.output()

    def recv(self, n: int = 65536) -> bytes | None:
        """Up to ``n`` bytes; b"" at EOF (after the peer's FIN, SHUT_RD, or once the
        error was reported); None when nothing is there yet. Buffered data is
        returned before a pending error is raised (once)."""
        rcv = self.rcv
        if rcv.rcv_buf.nbytes:
            return rcv.read(n)
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            raise _os_error(self.error)
        if rcv.fin_received or rcv.rd_shut or self.error is not None:
            return b""
        if self.state == CLOSED:
            if self.snd.snd_max == 0:
                raise _os_error(errno.ENOTCONN)
            return b""
        return None

    def send_received(self, sendmsg: Callable[[list[Chunk]], int]) -> int:
        """Offer the received, unread bytes to ``sendmsg`` (a socket's
        ``sendmsg``: scatter-gather, a splice) without copying them, several
        chunks a call, and consume what it took, as ``recv`` would (the window
        may open). Returns the byte count taken (0 with nothing buffered).
        Bytes left buffered after a return > 0 mean the last call took less than
        it was offered (the socket is full). What the first call raises
        propagates, nothing consumed (``ReceiveQueue.send_to``)."""
        rcv = self.rcv
        buf = rcv.rcv_buf
        if not buf.nbytes:
            return 0
        n = buf.send_to(sendmsg)
        if n > 0:
            rcv._after_read()
        return n

    def shutdown(self, how: int) -> None:
        """socket.SHUT_RD, SHUT_WR or SHUT_RDWR (RFC 9293 3.10.4 for the write side)."""
        st = self.state
        if st == CLOSED or st == LISTEN:
            raise _os_error(errno.ENOTCONN)
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.rcv.rd_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self.wr_shut:
            self.wr_shut = True
            self._queue_fin()

    def shut_reading(self) -> None:
        """The program's SHUT_RD, as Linux's RCV_SHUTDOWN: data is still
        received and kept for the program's reads, but new data once our FIN is
        out (FIN_WAIT_1/2) resets the connection."""
        self.rd_closed = True

    def close(self) -> None:
        """Graceful close (FIN), or a RST when unread data is left or linger is 0
        (RFC 9293 3.10.4, RFC 2525 2.17, as Linux)."""
        if self.orphaned:
            return
        self.orphaned = True
        self.on_event = None
        st = self.state
        if st == CLOSED:
            return
        if st == TIME_WAIT:
            if self._tw is None:
                # As on entering TIME-WAIT closed: a compact record takes over.
                deadline = self.t_close.deadline
                if deadline is not None:
                    self._tw = self.env.adopt_time_wait(self, deadline)
                    if self._tw is not None:
                        self._unlink()
            return
        if st == SYN_SENT:
            self._destroy()
            return
        if self.rcv.rcv_buf.nbytes or (self.linger is not None and self.linger == 0):
            self.counters["tcp.close_with_rst"] += 1
            self.abort()
            return
        self.rcv.rd_shut = True
        if not self.wr_shut:
            self.wr_shut = True
            self._queue_fin()
        if self.state == FIN_WAIT_2:
            self._orphan_fin_wait_2()

    def abort(self) -> None:
        """Send a RST where RFC 9293 3.10.5 says so and drop the connection. The RST
        carries the ACK flag and RCV.NXT, as Linux's tcp_send_active_reset (close
        with unread data, SO_LINGER 0, a listener closed with connections queued)."""
        st = self.state
        if st in RESET_ON_ABORT:
            self._send_rst(self.snd.snd_max, with_ack=True)
        self.orphaned = True
        self.on_event = None
        if st != CLOSED:
            self._destroy()

    @property
    def state_name(self) -> str:
        return _STATE_NAMES[self.state]

    def info(self) -> dict[str, Any]:
        """Figures for ``femtotcp ctl sockets`` (like Linux's tcp_info)."""
        snd = self.snd
        rcv = self.rcv
        opt = self.opt
        rtt = snd.rtt
        cc = snd.cc
        return {
            "state": self.state.value,
            "rtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.rto,
            "cwnd": cc.cwnd,
            "ssthresh": cc.ssthresh if cc.ssthresh < 1 << 60 else None,
            "mss": opt.mss,
            "snd_wnd": snd.snd_wnd,
            "rcv_wnd": max(0, rcv.rcv_adv - rcv.rcv_nxt),
            "snd_queue": len(snd.snd_buf),
            "unacked": snd.snd_max - snd.snd_una,
            "rcv_queue": len(rcv.rcv_buf),
            "ooo_blocks": len(rcv.ooo),
            "ooo_bytes": rcv.ooo.nbytes,
            "snd_wscale": opt.snd_wscale,
            "rcv_wscale": opt.rcv_wscale,
            "timestamps": opt.ts_ok,
            "sack": opt.sack_ok,
            "recovery": snd.recovery.name if snd.in_recovery else "none",
            "retransmits": snd.retransmits,
            "segs_in": self.segs_in,
            "segs_out": self.segs_out,
            "bytes_acked": snd.bytes_acked,
            "bytes_received": rcv.bytes_received,
            "error": errno.errorcode.get(self.error, str(self.error)) if self.error else None,
        }

    @property
    def keepalive(self) -> bool:
        """SO_KEEPALIVE: setting it (re)arms or stops the keep-alive timer."""
        return self._keepalive

    @keepalive.setter
    def keepalive(self, on: bool) -> None:
        self._keepalive = bool(on)
        if on and self.state in (ESTABLISHED, CLOSE_WAIT):
            self._keepalive_timer().set(self.timers.now + self.keepalive_idle)
        elif not on:
            self.t_keepalive.stop()

    @property
    def keepalive_idle(self) -> float:
        """TCP_KEEPIDLE: idle seconds before the first keep-alive probe."""
        return self._keepalive_idle

    @keepalive_idle.setter
    def keepalive_idle(self, idle: float) -> None:
        """A new idle time takes effect at once on a connection that keeps alive,
        counted from the last segment received (Linux tcp_sock_set_keepidle)."""
        self._keepalive_idle = idle
        if self._keepalive and self.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2) \
                and not self.ka_probes:
            now = self.timers.now
            due = self.last_rx + idle
            self._keepalive_timer().set(due if due > now else now)

    def set_keepalive(self, on: bool) -> None:
        self.keepalive = on

    @property
    def nodelay(self) -> bool:
        """TCP_NODELAY: switching it on sends what Nagle was holding back (as Linux)."""
        return self.snd.nodelay

    @nodelay.setter
    def nodelay(self, on: bool) -> None:
        self.snd.nodelay = bool(on)
        if on and self.state in SENDING:
            self.snd.output()

    # ================================================================ the state
    def _set_state(self, new: TcpState) -> None:
        """The one place the state changes: it also tells the program (its
        ``on_event`` runs once the segment or timer is done) and the trace hooks
        (``on_state`` and the ``femtotcp.tcp`` debug log)."""
        old = self.state
        self.state = new
        self._ev = True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r: %s -> %s", self, old.value, new.value)
        hook = self.on_state
        if hook is not None:
            hook(self, old, new)

    # ================================================================ opening
    def _offer(self) -> None:
        """Our MSS from the route's MTU and our window scale, before a SYN."""
        raddr = self._raddr
        self.opt.offer(self.env.route_mtu(raddr), len(raddr) == 4, self.maxseg,
                       self.rcv.rcvbuf, self.config.rcvbuf_max)

    def _negotiate(self, opts: TcpOptions) -> None:
        """Settle the options from the peer's SYN (or SYN-ACK); the loss recovery
        strategy follows from SACK."""
        opt = self.opt
        opt.negotiate(opts, len(self._raddr) == 4, self.config.min_snd_mss, self.timers.now)
        self.snd.recovery = SACK if opt.sack_ok else NEWRENO
        self._set_mss_base(min(opt.peer_mss, opt.adv_mss))

    def _set_mss_base(self, base: int) -> None:
        opt = self.opt
        opt.set_mss_base(base)
        self.snd.cc.set_mss(opt.mss)
        self.rcv.rcv_mss = min(opt.rcv_mss_limit(), 536)

    def open_active(self) -> None:
        """Active open (RFC 9293 3.10.1): send a SYN, enter SYN_SENT."""
        now = self.timers.now
        self._offer()
        snd = self.snd
        snd.start(self.env.isn.isn(now, self._laddr, self._lport, self._raddr, self._rport),
                  now)
        self._set_state(SYN_SENT)
        self.counters["tcp.active_opens"] += 1
        self._send_syn(ack=False)
        snd.time_syn(now)
        snd.t_rto.set(now + snd.rtt.rto)

    def open_passive(self, hdr: TcpHeader, opts: TcpOptions, payload: memoryview) -> None:
        """A SYN reached our listener (RFC 9293 3.10.7.2): SYN_RECEIVED, send SYN-ACK."""
        now = self.timers.now
        self._offer()
        self.rcv.start(hdr.seq)
        self._negotiate(opts)
        snd = self.snd
        snd.start(self.env.isn.isn(now, self._laddr, self._lport, self._raddr, self._rport),
                  now)
        snd.snd_wnd = hdr.window          # never scaled in a SYN (RFC 7323 2.2)
        snd.snd_wl1 = hdr.seq
        snd.max_snd_wnd = snd.snd_wnd
        self.last_rx = now
        self._set_state(SYN_RECEIVED)
        self.counters["tcp.passive_opens"] += 1
        if payload:
            # RFC 9293 3.10.7.2: the SYN-ACK is <ACK=RCV.NXT> with RCV.NXT = SEG.SEQ+1,
            # so text on a SYN is not acknowledged by it. Without TCP Fast Open we
            # do as Linux: drop that text; the peer sends it again once established.
            self.counters["tcp.syn_data_dropped"] += len(payload)
        self._send_syn(ack=True)
        if snd.rtt_seq < 0 and not self.opt.ts_ok:
            snd.time_syn(now)
        snd.t_rto.set(now + snd.rtt.rto)

    def open_from_cookie(self, hdr: TcpHeader, opts: TcpOptions, mss: int,
                         wscale: int | None, sack: bool) -> None:
        """The ACK completing a SYN-cookie handshake creates the connection."""
        now = self.timers.now
        self._offer()
        snd = self.snd
        rcv = self.rcv
        iss = (hdr.ack - 1) & MASK
        rcv.start((hdr.seq - 1) & MASK)
        fake = TcpOptions()
        fake.mss = mss
        fake.wscale = wscale
        fake.sack_perm = sack
        fake.ts_val = opts.ts_val
        self.opt.offer_ws = self.opt.offer_ws and wscale is not None
        self._negotiate(fake)
        snd.iss = iss
        snd.snd_una = snd.snd_nxt = snd.snd_max = iss + 1
        snd.snd_buf_seq = iss + 1
        snd.recover = snd.snd_una
        snd.snd_wnd = hdr.window << self.opt.snd_wscale
        snd.snd_wl1 = rcv.irs
        snd.snd_wl2 = snd.snd_una
        snd.max_snd_wnd = snd.snd_wnd
        snd.una_time = now
        rcv.syn_window()
        rcv.last_ack_sent = rcv.rcv_nxt
        self.last_rx = now
        self._set_state(SYN_RECEIVED)
        self.counters["tcp.syncookies_accepted"] += 1
        self._established()

    def _send_syn(self, ack: bool) -> None:
        rcv = self.rcv
        window = rcv.syn_window()
        flags = SYN | ACK if ack else SYN
        seg = build_fast(self._psum, self._lport, self._rport, self.snd.iss & MASK,
                         rcv.rcv_nxt & MASK if ack else 0, flags, window,
                         self.opt.syn_options(self.timers.now, ack), b"")
        if ack:
            rcv.last_ack_sent = rcv.rcv_nxt
        self._ip_send(seg)

    def _established(self) -> None:
        """SYN_SENT/SYN_RECEIVED -> ESTABLISHED (or on to FIN_WAIT_1 if the
        program already shut the write side)."""
        self.counters["tcp.established"] += 1
        self.rcv.established()
        snd = self.snd
        snd.retries = 0
        rtt = snd.rtt
        if rtt.backoff:
            rtt.backoff = 0
        if self.listener is not None:
            self.listener._on_established(self)
            self._listener_ev = True
        self._set_state(FIN_WAIT_1 if snd.fin_queued else ESTABLISHED)
        if self._keepalive:
            self._keepalive_timer().set(self.timers.now + self.keepalive_idle)

    # ================================================================ input
    def input(self, hdr: TcpHeader, payload: memoryview) -> None:
        """One segment for this connection (already checksummed and demultiplexed)."""
        self.segs_in += 1
        st = self.state
        if st == SYN_SENT:
            self._input_syn_sent(hdr, payload)
        elif st == TIME_WAIT:
            self._input_time_wait(hdr, payload)
        elif st != CLOSED:
            self._input_synchronized(hdr, payload)
            if self.state == FIN_WAIT_2 and self.orphaned and self._tw is None:
                self._orphan_fin_wait_2()
        self._flush()
        rcv = self.rcv
        if rcv.delack_due:
            # After the program heard of the segment: an answer it sent at
            # once (a FIN on the peer's FIN) carried the ACK, and no timer
            # was armed only to be stopped (``Receiver.arm_delack``).
            rcv.arm_delack(self.timers.now)

    def _flush(self) -> None:
        """Deliver deferred events, after the segment's processing is complete."""
        if self._listener_ev:
            self._listener_ev = False
            lst = self.listener
            if lst is not None:
                lst._notify()
        if self._ev:
            self._ev = False
            cb = self.on_event
            if cb is not None:
                cb()

    def fast_input(self, seq32: int, ack32: int, flags: int, window: int,
                   segment: memoryview, hlen: int) -> bool:
        """Header prediction (after Van Jacobson): the common cases of a bulk
        transfer, in-order data and an ACK of new data, and of an exchange,
        in-order data that also acknowledges new data, on an ESTABLISHED
        connection, handled with the same rules as the full path but without
        its generality. Any other segment goes to ``input`` from here
        (``_full_input``): handshake and teardown segments need no second
        parse of their IP header. Returns False only in TIME_WAIT, whose SYNs
        the layer may hand to a listener instead (``Tcp.input``)."""
        if self.state is not ESTABLISHED or flags & ~PSH != ACK:
            return self._full_input(seq32, ack32, flags, window, segment, hlen)
        rcv = self.rcv
        rcv_nxt = rcv.rcv_nxt
        if seq32 != rcv_nxt & MASK:
            return self._full_input(seq32, ack32, flags, window, segment, hlen)
        opt = self.opt
        if hlen == 32:
            kind, tsval, ecr = _TS_OPT.unpack_from(segment, 20)
            if kind != 0x0101080A or not opt.ts_ok:      # NOP NOP TS(10): TS_ALIGNED
                return self._full_input(seq32, ack32, flags, window, segment, hlen)
            if (tsval - opt.ts_recent) & MASK >= 0x80000000:
                # PAWS decides (the full path)
                return self._full_input(seq32, ack32, flags, window, segment, hlen)
        elif hlen == 20 and not opt.ts_ok:
            tsval = -1
            ecr = 0
        else:
            return self._full_input(seq32, ack32, flags, window, segment, hlen)
        snd = self.snd
        plen = len(segment) - hlen
        now = self.timers.now
        ack = 0
        if ack32 != snd.snd_una & MASK:
            una = snd.snd_una
            ack = unwrap(ack32, una)
            if not una < ack <= snd.snd_max:
                return self._full_input(seq32, ack32, flags, window, segment, hlen)
        elif not plen or (window << opt.snd_wscale) != snd.snd_wnd:
            # a duplicate ACK or a window update: the full path decides
            return self._full_input(seq32, ack32, flags, window, segment, hlen)
        if plen and (rcv.ooo.blocks or rcv.rd_shut or self.orphaned or rcv.ooo_fin >= 0
                     or rcv_nxt + plen > rcv.rcv_adv):
            return self._full_input(seq32, ack32, flags, window, segment, hlen)
        if tsval >= 0 and rcv_nxt <= rcv.last_ack_sent:
            opt.ts_recent = tsval                         # RFC 7323 4.3
            opt.ts_recent_stamp = now
        self.segs_in += 1
        self.last_rx = now
        snd.probes = 0
        if ack:
            # The ACK's part; with data (every segment of a request/response
            # exchange), then the data, then what may be sent: the full
            # path's order.
            snd.ack_new_data(ack, ecr, now)
            snd.update_window(window << opt.snd_wscale, rcv_nxt, ack)
            if not plen:
                snd.output()
                if self._ev:
                    self._defer_flush()
                return True
        self._ev = True
        rcv.fast_data(segment, hlen, plen)
        # The program hears of the batch at its end, before the batch's ACK
        # goes out (so an answer can carry it).
        self._defer_flush()
        if ack:
            snd.output()
        if rcv.ack_pending:                               # (output may have carried it)
            rcv._schedule_ack(now)
        rcv.ack_now = False
        return True

    def _full_input(self, seq32: int, ack32: int, flags: int, window: int,
                    segment: memoryview, hlen: int) -> bool:
        """A segment header prediction did not take: what ``Tcp.input`` does
        with one for this connection, a header object and ``input``; False in
        TIME_WAIT (the layer decides on a SYN there, see ``Tcp.input``)."""
        if self.state == TIME_WAIT:
            return False
        csum, urgent = _CSUM_URG.unpack_from(segment, 16)
        self.input(TcpHeader(self._rport, self._lport, seq32, ack32, hlen, flags, window,
                             csum, urgent, segment[20:hlen]), segment[hlen:])
        return True

    def _defer_flush(self) -> None:
        """Tell the program once per receive batch, not once per segment: its
        callback runs when the batch from the device is done (``TcpEnv.defer``),
        before the batch's ACK goes out, so an answer can carry it."""
        if self._flush_deferred:
            return
        if self.env.defer(self._deferred_flush):
            self._flush_deferred = True
        else:
            self._flush()

    def _deferred_flush(self) -> None:
        self._flush_deferred = False
        self._flush()

    def _input_syn_sent(self, hdr: TcpHeader, payload: memoryview) -> None:
        """RFC 9293 3.10.7.3 (SYN-SENT), with RFC 5961 3.2 for RST."""
        flags = hdr.flags
        counters = self.counters
        snd = self.snd
        rcv = self.rcv
        if flags & ACK:
            if hdr.ack != (snd.snd_max & MASK):
                if not flags & RST:
                    counters["tcp.syn_sent_bad_ack"] += 1
                    self._send_rst(hdr.ack, with_ack=False)
                return
        if flags & RST:
            if flags & ACK:
                counters["tcp.connection_refused"] += 1
                self._fail(errno.ECONNREFUSED)
            return
        if not flags & SYN:
            return
        opts = parse_options(hdr.options) if hdr.options else NO_OPTIONS
        if opts.bad:
            counters[opts.bad] += 1
        now = self.timers.now
        self.last_rx = now
        rcv.start(hdr.seq)
        self._negotiate(opts)
        if flags & ACK:
            ack = snd.snd_max
            snd.snd_una = ack
            snd.snd_wnd = hdr.window        # SYN-ACK windows are not scaled
            snd.snd_wl1 = hdr.seq
            snd.snd_wl2 = ack
            snd.max_snd_wnd = snd.snd_wnd
            snd.rtt_from_ack(opts.ts_ecr, now)
            snd.t_rto.stop()
            self._established()
            plen = len(payload)
            if plen:
                rcv.receive_text(rcv.rcv_nxt, payload, flags)
            elif flags & FIN:
                self._receive_fin()
            rcv.ack_pending = True
            snd.output()
            if rcv.ack_pending:
                self._send_ack()
        else:
            # Simultaneous open (RFC 9293 3.5, figure 8): SYN-ACK with our ISS.
            snd.snd_wnd = hdr.window
            snd.snd_wl1 = hdr.seq
            snd.max_snd_wnd = snd.snd_wnd
            self._set_state(SYN_RECEIVED)
            self.counters["tcp.simultaneous_open"] += 1
            self._send_syn(ack=True)
            snd.t_rto.set(now + snd.rtt.rto)

    def _input_time_wait(self, hdr: TcpHeader, payload: memoryview) -> None:
        """RFC 9293 3.10.7.4 for TIME_WAIT: re-ACK a retransmitted FIN and restart
        the 2 MSL timer; RST (exact sequence, RFC 5961) ends the state unless
        RFC 1337 protection is on; everything else gets an ACK."""
        flags = hdr.flags
        rcv_nxt = self.rcv.rcv_nxt
        seq = unwrap(hdr.seq, rcv_nxt)
        if flags & RST:
            if seq == rcv_nxt and not self.config.rfc1337:
                self.counters["tcp.time_wait_reset"] += 1
                self._destroy()
            return
        if flags & SYN:
            self._challenge_ack()
            return
        if flags & FIN and seq + len(payload) + 1 == rcv_nxt:
            self._restart_time_wait()
            self._send_ack()
            return
        self._send_dupack(bool(payload))

    def _restart_time_wait(self) -> None:
        self._close_timer().set(self.timers.now + 2 * self.config.msl)

    def timewait_accepts_syn(self, hdr: TcpHeader) -> bool:
        """A new SYN may reuse a TIME_WAIT 4-tuple (RFC 6191, Linux): its sequence
        number is above the old RCV.NXT, or its timestamp is newer."""
        if self.state != TIME_WAIT or hdr.flags & (ACK | RST):
            return False
        if after32(hdr.seq, self.rcv.rcv_nxt):
            return True
        opt = self.opt
        if opt.ts_ok and hdr.options:
            opts = parse_options(hdr.options)
            if opts.ts_val is not None and after32(opts.ts_val, opt.ts_recent):
                return True
        return False

    def _check_syn_ack_bit(self, flags: int, seq: int, opts: TcpOptions, now: float) -> bool:
        """The checks after RST in a synchronized state, shared with the
        FIN_WAIT_2 record: a SYN draws a challenge ACK (RFC 5961 4.2), a
        segment without ACK is dropped (RFC 9293 3.10.7.4 fifth); then
        TS.Recent is taken when the segment covers Last.ACK.sent (RFC 7323
        4.3). False when the segment was dropped."""
        if flags & SYN:
            self.counters["tcp.syn_challenged"] += 1
            self._challenge_ack()
            return False
        if not flags & ACK:
            self.counters["tcp.no_ack_flag"] += 1
            return False
        ts_val = opts.ts_val
        opt = self.opt
        if ts_val is not None and opt.ts_ok and seq <= self.rcv.last_ack_sent:
            opt.ts_recent = ts_val
            opt.ts_recent_stamp = now
        return True

    def _check_sequence(self, flags: int, opts: TcpOptions, seq: int, plen: int,
                        now: float) -> object | None:
        """The checks before a synchronized state looks at RST, SYN and ACK
        (RFC 9293 3.10.7.4 first, RFC 7323 PAWS, RFC 5961), with their answers
        and counters: None for an acceptable segment, ``_DROPPED`` when it was
        dealt with here, ``_OLD`` for an entirely old one (no RST or SYN
        processing; the caller still uses its ACK field, then ACKs)."""
        counters = self.counters
        # Neither ACK nor RST nor SYN (a bare FIN, data without ACK): RFC 9293
        # 3.10.7.4 fifth drops it if the ACK bit is off; Linux does so before any
        # sequence check, so such a segment never draws an ACK.
        if not flags & (ACK | RST | SYN):
            counters["tcp.no_ack_flag"] += 1
            return _DROPPED
        # PAWS (RFC 7323 5.3 R1): an older timestamp marks an old duplicate.
        opt = self.opt
        ts_val = opts.ts_val
        if opt.ts_ok and ts_val is not None and not flags & RST:
            if before32(ts_val, opt.ts_recent) and now - opt.ts_recent_stamp < 24 * 86400:
                counters["tcp.paws_rejected"] += 1
                self._send_dupack(plen > 0)
                return _DROPPED
        # Sequence number check (RFC 9293 3.10.7.4 first), with the zero-window
        # allowance: a segment at RCV.NXT still has its ACK, RST and URG processed.
        # With a window open, SEQ must lie below RCV.NXT + RCV.WND, also for an
        # empty segment (the RFC's table; Linux accepts SEQ == the right edge).
        rcv = self.rcv
        rcv_nxt = rcv.rcv_nxt
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        right = rcv.rcv_adv if rcv.rcv_adv > rcv_nxt else rcv_nxt
        end = seq + seg_len
        if seq > right or (seq == right and right > rcv_nxt):
            if flags & RST:
                counters["tcp.rst_out_of_window"] += 1
                return _DROPPED
            counters["tcp.out_of_window"] += 1
            if flags & SYN:
                self._challenge_ack()
            else:
                self._send_dupack(plen > 0)
            return _DROPPED
        if end < rcv_nxt or (end == rcv_nxt and seg_len > 0) or (seg_len == 0 and seq < rcv_nxt):
            if flags & RST:
                counters["tcp.rst_out_of_window"] += 1
                return _DROPPED
            if flags & SYN:
                self._challenge_ack()
                return _DROPPED
            counters["tcp.old_segment"] += 1
            return _OLD
        return None

    def _input_synchronized(self, hdr: TcpHeader, payload: memoryview) -> None:
        """RFC 9293 3.10.7.4 for SYN_RECEIVED and the synchronized states."""
        flags = hdr.flags
        counters = self.counters
        raw_opts = hdr.options
        if raw_opts:
            opts = parse_options(raw_opts)
            if opts.bad:
                counters[opts.bad] += 1
        else:
            opts = NO_OPTIONS
        now = self.timers.now
        self.last_rx = now
        st = self.state
        snd = self.snd
        rcv = self.rcv
        opt = self.opt
        rcv_nxt = rcv.rcv_nxt
        seq = unwrap(hdr.seq, rcv_nxt)
        plen = len(payload)

        # A retransmitted SYN in SYN_RECEIVED: our SYN-ACK was lost; send it again.
        if st == SYN_RECEIVED and flags & SYN and not flags & (ACK | RST) and seq == rcv.irs:
            counters["tcp.syn_retransmit_seen"] += 1
            self._send_syn(ack=True)
            return

        # Simultaneous open (RFC 9293 figure 8 line 6): the peer's SYN-ACK repeats
        # its SYN but acknowledges ours; treat it as the ACK it carries (as Linux).
        if st == SYN_RECEIVED and flags & (SYN | ACK) == SYN | ACK and not plen and \
                seq + 1 == rcv_nxt and self.listener is None and \
                hdr.ack == snd.snd_max & MASK:
            flags &= ~SYN
            seq = rcv_nxt
            # its window is not scaled (RFC 7323 2.2): undo the shift applied below
            hdr = hdr._replace(flags=flags, seq=rcv_nxt & MASK,
                               window=hdr.window >> opt.snd_wscale)

        verdict = self._check_sequence(flags, opts, seq, plen, now)
        if verdict is not None:
            if verdict is _DROPPED:
                return
            # Entirely old (a retransmission, a keepalive or window probe): the
            # ACK field is still used (as BSD), then ACK.
            if flags & ACK and st != SYN_RECEIVED:
                if not self._process_ack(hdr, opts, seq, 0, flags, now):
                    return
                snd.output()
            if plen or flags & FIN:
                rcv.ack_pending = True
                self._send_ack()
            else:
                self._send_dupack(False)
            return

        # RST (RFC 5961 3.2): only an exact match resets; in-window -> challenge ACK.
        if flags & RST:
            if seq == rcv_nxt or (seq == rcv_nxt - 1 and rcv.fin_received):
                self._on_reset()
            else:
                counters["tcp.rst_challenged"] += 1
                self._challenge_ack()
            return

        # A new SYN (not the retransmission handled above) in SYN_RECEIVED of a
        # passive open: RFC 9293 3.10.7.4 fourth returns the embryo to LISTEN; we
        # also answer the SYN with a RST, as Linux does.
        if flags & SYN and st == SYN_RECEIVED and self.listener is not None:
            counters["tcp.syn_received_reset"] += 1
            counters["tcp.rst_sent"] += 1
            if flags & ACK:
                rst = build_fast(self._psum, self._lport, self._rport, hdr.ack, 0, RST, 0,
                                 b"", b"")
            else:
                # (the SYN: its length is one, plus its data and any FIN)
                seg_len = plen + 1 + (1 if flags & FIN else 0)
                rst = build_fast(self._psum, self._lport, self._rport, 0,
                                 (hdr.seq + seg_len) & MASK, RST | ACK, 0, b"", b"")
            self._ip_send(rst)
            self._destroy()
            return

        if not self._check_syn_ack_bit(flags, seq, opts, now):
            return

        if st == SYN_RECEIVED:
            ack = unwrap(hdr.ack, snd.snd_una)
            if not snd.snd_una < ack <= snd.snd_max:
                counters["tcp.syn_received_bad_ack"] += 1
                self._send_rst(hdr.ack, with_ack=False)
                return
            lst = self.listener
            if lst is not None and lst.accept_full():
                # Linux (tcp_abort_on_overflow = 0): drop the ACK, the peer resends.
                counters["tcp.listen_overflow"] += 1
                return
            snd.snd_wl1 = seq
            snd.snd_wl2 = ack
            snd.snd_wnd = hdr.window << opt.snd_wscale
            if snd.snd_wnd > snd.max_snd_wnd:
                snd.max_snd_wnd = snd.snd_wnd
            self._established()
        if not self._process_ack(hdr, opts, seq, plen, flags, now):
            return

        if flags & URG:
            counters["tcp.urgent"] += 1
            if hdr.urgent and self.state in RECEIVING:
                self._urgent_mark(seq + hdr.urgent - 1)

        st = self.state
        if plen or flags & FIN:
            if st in RECEIVING:
                if seq < rcv_nxt:
                    payload = payload[rcv_nxt - seq:]
                    seq = rcv_nxt
                if plen and self.orphaned:
                    # Data for a closed socket: Linux resets (RFC 9293 3.10.7.4 text).
                    counters["tcp.data_after_close"] += 1
                    self._send_rst(snd.snd_max, with_ack=False)
                    self._fail(errno.ECONNRESET, notify=False)
                    return
                if plen and self.rd_closed and st != ESTABLISHED and seq + plen > rcv_nxt:
                    # New data after both SHUT_RD and our FIN: RFC 1122 4.2.2.13
                    # and Linux (TCPAbortOnData) reset; the socket's error is ECONNRESET.
                    counters["tcp.data_after_shutdown"] += 1
                    self._send_rst(snd.snd_max, with_ack=False)
                    self._fail(errno.ECONNRESET)
                    return
                rcv.receive_text(seq, payload, flags)
            elif plen:
                counters["tcp.data_ignored"] += 1

        snd.output()
        if rcv.ack_pending:
            if rcv.ooo.blocks:
                rcv.ack_now = True
            rcv._schedule_ack(now, later=True)      # a delayed ACK's timer: see input
        rcv.ack_now = False

    def _on_reset(self) -> None:
        """An acceptable RST (RFC 9293 3.10.7.4 second; Linux's errno choice)."""
        st = self.state
        self.counters["tcp.reset_received"] += 1
        if st == SYN_RECEIVED and self.listener is not None:
            self._destroy()          # back to LISTEN: the half-open simply goes away
            return
        if st == SYN_RECEIVED:
            self._fail(errno.ECONNREFUSED)
        elif st == CLOSE_WAIT:
            self._fail(errno.EPIPE)
        elif st in (CLOSING, LAST_ACK, TIME_WAIT):
            self._destroy()
        else:
            self._fail(errno.ECONNRESET)

    def _process_ack(self, hdr: TcpHeader, opts: TcpOptions, seq: int, plen: int,
                     flags: int, now: float) -> bool:
        """The ACK field (the sender's part), then what our FIN being
        acknowledged does to the state. False: the segment is dropped."""
        snd = self.snd
        if not snd.on_ack(hdr, opts, seq, plen, flags, now):
            return False
        if snd.fin_acked():
            st = self.state
            if st == FIN_WAIT_1:
                self._set_state(FIN_WAIT_2)      # an orphan: see _orphan_fin_wait_2
            elif st == CLOSING:
                self._enter_time_wait()
                return False
            elif st == LAST_ACK:
                self._destroy()
                return False
        return True

    def _receive_fin(self) -> None:
        """RFC 9293 3.10.7.4 eighth: the FIN is next in sequence. In
        ESTABLISHED (or SYN_RECEIVED) it begins a passive close, and its ACK
        is a delayed one, as Linux's tcp_fin (which enters pingpong mode
        there): a program that closes on the FIN sends FIN+ACK, three
        segments for the close instead of four. Other states ACK at once."""
        st = self.state
        passive = st == ESTABLISHED or st == SYN_RECEIVED
        self.rcv.fin(not passive)
        self._ev = True
        if passive:
            self._set_state(CLOSE_WAIT)
        elif st == FIN_WAIT_1:
            if self.snd.fin_acked():
                self._enter_time_wait()
            else:
                self._set_state(CLOSING)
        elif st == FIN_WAIT_2:
            self._enter_time_wait()

    def _queue_fin(self) -> None:
        """CLOSE/SHUT_WR: the FIN follows the queued data (RFC 9293 3.10.4)."""
        snd = self.snd
        if snd.fin_queued:
            return
        snd.queue_fin()
        st = self.state
        if st == ESTABLISHED:
            self._set_state(FIN_WAIT_1)
        elif st == CLOSE_WAIT:
            self._set_state(LAST_ACK)
        # SYN_SENT / SYN_RECEIVED: sent once established (see _established).
        snd.output()

    # ================================================================ segments out
    def _urgent_mark(self, useq: int) -> None:
        """The peer's urgent pointer names the urgent byte ``useq`` (the byte
        before the pointer, RFC 6093's reading, as Linux's tcp_check_urg). The
        bytes stay in the stream (RFC 6093 recommends inline delivery, and a
        relay such as the gateway gets them all); the mark only tells a socket
        which byte to hand over out of band (``urgent_offset``). A pointer at
        data already received is not replayed, and only a newer mark replaces
        the one pending (then the older byte is ordinary data, as on Linux)."""
        rcv = self.rcv
        if useq < rcv.rcv_nxt or useq <= rcv.urg_seq or rcv.rd_shut:
            return
        rcv.urg_seq = useq
        self.counters["tcp.urgent_marks"] += 1

    def urgent_offset(self) -> int:
        """How many buffered bytes come before the pending urgent byte, when
        that byte is buffered; else -1 (none, or not received yet)."""
        rcv = self.rcv
        useq = rcv.urg_seq
        if useq < 0:
            return -1
        nbytes = rcv.rcv_buf.nbytes
        first = rcv.rcv_nxt - nbytes - (1 if rcv.fin_received else 0)
        if useq < first:
            rcv.urg_seq = -1              # read past (as ordinary data)
            return -1
        return useq - first if useq - first < nbytes else -1

    def send_urgent_byte(self, before: int, sendmsg: Callable[[list[Chunk]], int],
                         send_oob: Callable[[bytes], int]) -> bool:
        """Hand the stream to a socket up to the urgent byte (``before`` bytes,
        ``urgent_offset``) through ``sendmsg``, then that byte through
        ``send_oob`` (a send with MSG_OOB). True once the byte went; False when
        the socket took less (it is full); what they raise propagates, with
        what they took consumed."""
        rcv = self.rcv
        buf = rcv.rcv_buf
        if before:
            n = buf.send_first(sendmsg, before)
            if n:
                rcv._after_read()
            if n < before:
                return False
        send_oob(buf.peek(1))
        buf.consume(1)
        rcv.urg_seq = -1
        rcv._after_read()
        return True

    def mark_urgent(self, pending: int) -> None:
        """A send with MSG_OOB: the urgent pointer goes after the byte
        ``pending`` bytes past the end of the send buffer (what the program
        wrote that is not queued here yet). Until SND.UNA passes it, segments
        carry URG and the pointer (``_with_urgent``), as Linux's: the byte
        after the urgent data, RFC 6093's reading. Received urgent data stays
        inline (RFC 6093), only counted."""
        snd = self.snd
        self.snd_up = snd.snd_buf_seq + len(snd.snd_buf) + pending
        self.counters["tcp.urgent_sent"] += 1
        self.push()

    def _with_urgent(self, seg: bytes) -> bytes:
        """``seg`` with URG and the urgent pointer when it starts before SND.UP
        (Linux's tcp_options_write rule: a pointer past 64 KiB is sent as 0xFFFF),
        its checksum updated for the two changed words (RFC 1624)."""
        snd_up = self.snd_up
        assert snd_up is not None
        if self.snd.snd_una >= snd_up:
            self.snd_up = None                  # the urgent data is acknowledged
            return seg
        if seg[13] & (RST | SYN):
            return seg
        offset = ((snd_up & MASK) - int.from_bytes(seg[4:8], "big")) & MASK
        if not 0 < offset < 0x80000000:
            return seg                          # (at or past the pointer)
        pointer = offset if offset < 0xFFFF else 0xFFFF
        out = bytearray(seg)
        old_flags = (out[12] << 8) | out[13]
        old_pointer = (out[18] << 8) | out[19]
        out[13] |= URG
        out[18:20] = pointer.to_bytes(2, "big")
        total = ((~((out[16] << 8) | out[17]) & 0xFFFF) + (~old_flags & 0xFFFF)
                 + ((out[12] << 8) | out[13]) + (~old_pointer & 0xFFFF) + pointer)
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
        out[16:18] = (~total & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def _ip_send(self, seg: bytes) -> None:
        if self.snd_up is not None:
            seg = self._with_urgent(seg)
        self.segs_out += 1
        self.last_tx = self.timers.now
        err = self.env.output(self._laddr, self._raddr, seg)
        if err:
            self.counters["tcp.tx_error"] += 1
            if err == errno.EMSGSIZE:
                # The path MTU fell under our segments without a word to us (IPv6:
                # a Packet Too Big about another packet to the peer, RFC 8201 4):
                # follow it, as Linux's tcp_current_mss; the RTO resends what
                # was refused, cut to the new MSS. No error for the program.
                self._lower_mss(self.env.route_mtu(self._raddr))
                return
            self.soft_error = err

    def _options(self) -> bytes:
        """The options of a segment after the SYN: the timestamp and SACK blocks."""
        opt = self.opt
        ooo = self.rcv.ooo
        if opt.ts_ok:
            ts = tsval(self.timers.now, opt.ts_offset)
            if opt.sack_ok and ooo.blocks:
                return build_options(ts=(ts, opt.ts_recent),
                                     sack_blocks=ooo.sack_blocks((40 - TS_LEN - 4) // 8))
            return TS_ALIGNED + ((ts << 32) | opt.ts_recent).to_bytes(8, "big")
        if opt.sack_ok and ooo.blocks:
            return build_options(sack_blocks=ooo.sack_blocks((40 - 4) // 8))
        return b""

    def _send_ts(self, seq32: int, flags: int, window: int,
                 payload: bytes | bytearray) -> None:
        """Send a segment whose only option is the timestamp (the bulk case): one
        fixed header layout and the checksum done inline (the header is 32 bytes,
        so the payload's words continue the header's, see wire.checksum)."""
        opt = self.opt
        ts = tsval(self.timers.now, opt.ts_offset)
        ack32 = self.rcv.rcv_nxt & MASK
        lport = self._lport
        rport = self._rport
        ts_recent = opt.ts_recent
        hdr = _HDR_TS.pack(lport, rport, seq32, ack32, 0x8000 | flags, window, 0, 0,
                           0x0101080A, ts, ts_recent)
        plen = len(payload)
        value = int.from_bytes(hdr, "big") + self._psum + 32 + plen
        if plen:
            value += mod_ffff(int.from_bytes(payload, "big") << 8 if plen & 1 else
                              int.from_bytes(payload, "big"))
        r = value % 0xFFFF
        self._ip_send(_HDR_TS.pack(lport, rport, seq32, ack32, 0x8000 | flags, window,
                                   (~r & 0xFFFF) if r else 0, 0, 0x0101080A, ts,
                                   ts_recent) + payload)

    def _send_ack(self) -> None:
        """A pure ACK <SEQ=SND.MAX><ACK=RCV.NXT> (SND.MAX: always acceptable to the
        peer, also while resending after a timeout)."""
        rcv = self.rcv
        window = rcv.window(True)
        rcv.ack_now = False
        opt = self.opt
        snd_max = self.snd.snd_max
        if opt.ts_ok and not (opt.sack_ok and rcv.ooo.blocks):
            self._send_ts(snd_max & MASK, ACK, window, b"")
            return
        self._ip_send(build_fast(self._psum, self._lport, self._rport, snd_max & MASK,
                                 rcv.rcv_nxt & MASK, ACK, window, self._options(), b""))

    def _send_dupack(self, has_data: bool) -> None:
        """ACK an unacceptable segment; without data, at most one per
        ``invalid_ratelimit`` (Linux's tcp_oow_rate_limited)."""
        now = self.timers.now
        if not has_data:
            rcv = self.rcv
            if now - rcv.last_oow_ack < self.config.invalid_ratelimit:
                self.counters["tcp.oow_ack_ratelimited"] += 1
                return
            rcv.last_oow_ack = now
        self._send_ack()

    def _challenge_ack(self) -> None:
        """RFC 5961 3.2/4.2/5.2, limited stack-wide (RFC 5961 7)."""
        if self.env.challenge_ack_allowed(self.timers.now):
            self.counters["tcp.challenge_ack"] += 1
            self._send_ack()
        else:
            self.counters["tcp.challenge_ack_limited"] += 1

    def _send_rst(self, seq: int, with_ack: bool) -> None:
        s = seq & MASK
        flags = RST | ACK if with_ack else RST
        self.counters["tcp.rst_sent"] += 1
        self._ip_send(build_fast(self._psum, self._lport, self._rport, s,
                                 self.rcv.rcv_nxt & MASK if with_ack else 0, flags, 0, b"",
                                 b""))

    def _send_probe(self) -> None:
        """Zero-window or keepalive probe: <SEQ=SND.UNA-1><CTL=ACK>, no data (as Linux)."""
        rcv = self.rcv
        window = rcv.window()
        rcv.last_ack_sent = rcv.rcv_nxt
        self._ip_send(build_fast(self._psum, self._lport, self._rport,
                                 (self.snd.snd_una - 1) & MASK, rcv.rcv_nxt & MASK, ACK,
                                 window, self._options(), b""))

    # ================================================================ timers
    def _on_rto(self) -> None:
        """The retransmission timer expired (RFC 6298 5.4-5.6, RFC 5681 3.1): resend
        the SYN, give up, or let the sender go back to SND.UNA."""
        st = self.state
        snd = self.snd
        now = self.timers.now
        cfg = self.config
        counters = self.counters
        if st == SYN_SENT or st == SYN_RECEIVED:
            limit = cfg.syn_retries if st == SYN_SENT or self.listener is None \
                else cfg.synack_retries
            if snd.retries >= limit or (self.user_timeout and
                                        now - snd.una_time >= self.user_timeout):
                counters["tcp.handshake_timeout"] += 1
                if self.listener is not None:
                    self._destroy()
                else:
                    self._fail(self.soft_error or errno.ETIMEDOUT)
                self._flush()
                return
            snd.retries += 1
            snd.rtt.backoff += 1
            snd.rtt_seq = -1
            counters["tcp.syn_retransmits"] += 1
            self._send_syn(ack=st == SYN_RECEIVED)
            snd.t_rto.set(now + snd.rtt.rto)
            return
        if st not in SENDING or snd.snd_max == snd.snd_una:
            return
        if (self.user_timeout and now - snd.una_time >= self.user_timeout) or \
                snd.retries >= cfg.retries2:
            counters["tcp.retransmit_timeout_abort"] += 1
            self._fail(errno.ETIMEDOUT if self.user_timeout or not self.soft_error
                       else self.soft_error)
            self._flush()
            return
        snd.on_timeout(now, self.user_timeout)
        self._flush()

    def _on_persist(self) -> None:
        """The persist timer: give up, or let the sender probe (RFC 9293 3.8.6.1)."""
        snd = self.snd
        if self.state not in SENDING or not snd.persist_due():
            return
        now = self.timers.now
        if (self.user_timeout and now - snd.persist_start >= self.user_timeout) or \
                snd.probes >= self.config.retries2:
            self.counters["tcp.persist_timeout_abort"] += 1
            self._fail(errno.ETIMEDOUT)
            self._flush()
            return
        snd.on_persist(now)

    def _on_keepalive(self) -> None:
        """RFC 9293 3.8.4 / RFC 1122 4.2.3.6 keep-alives, with Linux's knobs."""
        st = self.state
        if not self._keepalive or st not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2):
            return
        now = self.timers.now
        snd = self.snd
        if snd.snd_max != snd.snd_una or snd.snd_buf_seq + len(snd.snd_buf) > snd.snd_nxt:
            self._keepalive_timer().set(now + self.keepalive_idle)
            return
        idle = now - self.last_rx
        if idle < self.keepalive_idle:
            self.ka_probes = 0
            self._keepalive_timer().set(self.last_rx + self.keepalive_idle)
            return
        if self.ka_probes >= self.keepalive_count or (
                self.user_timeout and idle >= self.user_timeout and self.ka_probes > 0):
            self.counters["tcp.keepalive_timeout"] += 1
            self._send_rst(snd.snd_max, with_ack=True)     # as Linux's keepalive timer
            self._fail(errno.ETIMEDOUT)
            self._flush()
            return
        self.counters["tcp.keepalive_probes"] += 1
        self._send_probe()
        self.ka_probes += 1
        self._keepalive_timer().set(now + self.keepalive_interval)

    def _on_close_timer(self) -> None:
        """TIME_WAIT's 2 MSL ran out, or an orphan waited too long in FIN_WAIT_2."""
        st = self.state
        if st == TIME_WAIT or (st == FIN_WAIT_2 and self.orphaned):
            self.counters["tcp.time_wait_done" if st == TIME_WAIT else
                          "tcp.fin_wait_2_timeout"] += 1
            self._destroy()

    # ================================================================ teardown
    def _enter_time_wait(self) -> None:
        env = self.env
        if env.time_wait_count >= self.config.max_time_wait:
            # Linux's "time wait bucket table overflow": close at once instead.
            self.counters["tcp.time_wait_overflow"] += 1
            self._destroy()
            return
        env.time_wait_count += 1
        self._set_state(TIME_WAIT)
        self.snd.release()
        self.rcv.release()
        deadline = self.timers.now + 2 * self.config.msl
        if self.orphaned:
            # Closed by the program: a compact record takes over the 4-tuple
            # (timewait.py), when the environment keeps such records.
            self._tw = env.adopt_time_wait(self, deadline)
            if self._tw is not None:
                self._unlink()              # (stops FIN_WAIT_2's timer, if it ran)
                return
        self.t_keepalive.cancel()
        self._close_timer().set(deadline)

    def _orphan_fin_wait_2(self) -> None:
        """Closed by the program, our FIN acknowledged, the peer's still to
        come: a compact record takes over for ``fin_timeout`` (timewait.py,
        as Linux's tcp_time_wait with the FIN_WAIT2 substate), or, where the
        environment keeps none or something is still held out of order, the
        connection itself waits that long on its own timer."""
        deadline = self.timers.now + self.config.fin_timeout
        rcv = self.rcv
        if not rcv.ooo.blocks:
            tw = self.env.adopt_time_wait(self, deadline)
            if tw is not None:
                if rcv.ack_pending:
                    self._send_ack()        # the record keeps no delayed ACK
                self._tw = tw
                self.snd.release()
                rcv.release()
                self._unlink()
                return
        self._close_timer().set(deadline)

    def _fail(self, err: int, notify: bool = True) -> None:
        """The connection is gone with an error for the program."""
        self.error = err
        self._error_reported = False
        self._destroy()
        if notify:
            self._ev = True

    def _destroy(self) -> None:
        """Enter CLOSED and release everything but what the program may still read."""
        tw = self._tw
        if tw is not None:
            self._tw = None
            tw._destroy()            # the record ends; it closes this connection too
            return
        was = self.state
        if was == TIME_WAIT:
            self.env.time_wait_count -= 1
        if was != CLOSED:
            self._set_state(CLOSED)
        self.snd.release()
        self.rcv.release()
        self.env.forget(self)
        self._unlink()                # (stops the keep-alive and close timers)

    def _unlink(self) -> None:
        """The connection is finished with: CLOSED, or a TIME-WAIT record
        (timewait.py) took its place. Its timers stop (the keep-alive and
        close timers here, the sender's and receiver's at their release) and
        let go of their bound methods, and its sender and receiver hold it
        through a weak proxy, so no reference cycle is left: reference counting frees it
        once the program lets go, without the cyclic collector. What the
        program may still read or call is unchanged."""
        self.t_keepalive.cancel()
        self.t_keepalive = _UNARMED        # made again if ever set (keepalive)
        self.t_close.cancel()
        self.t_close = _UNARMED
        me = weakref.proxy(self)
        self.snd.unlink(me)
        self.rcv.unlink(me)

    # ================================================================ ICMP
    def _lower_mss(self, mtu: int) -> bool:
        """Segments fit a path MTU of ``mtu`` from now on (RFC 1191, RFC 8201);
        True when the MSS fell."""
        opt = self.opt
        new_base = pmtu_mss(mtu, len(self._raddr) == 4)
        if new_base >= opt.mss_base:
            return False
        self.counters["tcp.pmtu_reduced"] += 1
        opt.adv_mss = min(opt.adv_mss, new_base)
        self._set_mss_base(new_base)
        return True

    def in_flight(self, seq32: int) -> bool:
        """RFC 5927 4.1: whether an ICMP error quoting ``seq32`` can be about
        a segment of ours (SND.UNA <= SEG.SEQ <= SND.MAX)."""
        snd = self.snd
        una = snd.snd_una
        return una <= unwrap(seq32, una) <= snd.snd_max

    def icmp_error(self, seq32: int, err: int, icmp_type: int, icmp_code: int,
                   mtu: int) -> bool:
        """RFC 5927 checks, then PMTU (RFC 1191), hard errors during the handshake
        (as Linux), soft errors otherwise (RFC 1122 4.2.3.9). False when the
        quoted sequence number is outside what is in flight (nothing done)."""
        snd = self.snd
        if not self.in_flight(seq32):
            self.counters["tcp.icmp_out_of_window"] += 1
            return False
        if mtu:
            if self._lower_mss(mtu) and self.state in SENDING and snd.snd_max > snd.snd_una:
                snd.snd_nxt = snd.snd_una
                snd.output()
            return True
        st = self.state
        if st == SYN_SENT:
            self._fail(err)
            self._flush()
        elif st == SYN_RECEIVED and self.listener is not None:
            self._destroy()
        else:
            self.soft_error = err
        return True
