"""One TCP connection: the RFC 9293 state machine, sans-I/O.

Sequence numbers are kept *unwrapped*: ISS and IRS are the 32-bit values from
the wire and everything after them grows as a plain Python int, so all the
comparisons below are ordinary ``<``/``>``. A 32-bit number arriving from the
wire is unwrapped against the nearest reference (RCV.NXT for SEG.SEQ, SND.UNA
for SEG.ACK) and written back modulo 2**32.

The input path follows RFC 9293 3.10.7.4 in order (sequence number check with
PAWS first, then RST, SYN, ACK, text, FIN) with RFC 5961's rules for RST, SYN
and ACK values. The output path is one loop (``_output``) that applies the send
window, cwnd, Nagle and sender-side silly-window avoidance; during SACK
recovery it follows RFC 6675's NextSeg instead.

Timers are lazy: each keeps a deadline attribute and one heap entry, so
restarting the retransmission timer on every ACK costs an attribute write.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.proto.tcp.buffers import OutOfOrderQueue
from femtotcp.proto.tcp.congestion import NewReno, Scoreboard
from femtotcp.proto.tcp.rtt import RttEstimator
from femtotcp.wire.tcp import (
    ACK,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    URG,
    TcpHeader,
    TcpOptions,
    build_fast,
    build_options,
    parse_options,
    pseudo_sum,
)

if TYPE_CHECKING:
    from femtotcp.proto.tcp.layer import Tcp
    from femtotcp.proto.tcp.listener import TcpListener
    from femtotcp.stack.timers import Timers

log = logging.getLogger("femtotcp.tcp")

MASK = 0xFFFFFFFF
HALF = 0x80000000

# RFC 9293 3.3.2 state names.
CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN_SENT"
SYN_RECEIVED = "SYN_RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN_WAIT_1"
FIN_WAIT_2 = "FIN_WAIT_2"
CLOSE_WAIT = "CLOSE_WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST_ACK"
TIME_WAIT = "TIME_WAIT"

#: States in which data (and our FIN) may be sent or retransmitted.
_SENDING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
#: States in which the peer's data is accepted.
_RECEIVING = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States in which an abort sends a RST (Linux's tcp_need_reset).
_RESET_ON_ABORT = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2, SYN_RECEIVED})

_TS_PREFIX = b"\x01\x01\x08\x0a"
_TS_LEN = 12
_TS_PAIR = struct.Struct("!II")
_HDR_TS = struct.Struct("!HHIIHHHHIII")     # header + NOP NOP TS, 32 bytes
_HDR_PLAIN = struct.Struct("!HHIIHHHH")      # header without options, 20 bytes
#: The most payload one TSO super-segment carries: a 64 KB IP packet.
TSO_MAX_PAYLOAD = 65535 - 20 - 20

NO_RECOVERY = 0
NEWRENO_RECOVERY = 1
SACK_RECOVERY = 2


def _os_error(code: int) -> OSError:
    """The stdlib exception for an errno (OSError picks the subclass itself)."""
    return OSError(code, os.strerror(code))


class LazyTimer:
    """A restartable deadline backed by at most one pending heap entry."""

    __slots__ = ("timers", "callback", "deadline", "_entry")

    def __init__(self, timers: Timers, callback: Callable[[], None]) -> None:
        self.timers = timers
        self.callback = callback
        self.deadline: float | None = None
        self._entry: Any = None

    def set(self, when: float) -> None:
        self.deadline = when
        entry = self._entry
        if entry is None or entry.when > when:
            if entry is not None:
                entry.cancel()
            self._entry = self.timers.call_at(when, self._fire)

    def stop(self) -> None:
        self.deadline = None

    def cancel(self) -> None:
        """Stop and drop the heap entry now (connection teardown)."""
        self.deadline = None
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def _fire(self) -> None:
        self._entry = None
        deadline = self.deadline
        if deadline is None:
            return
        if deadline > self.timers.now:
            self._entry = self.timers.call_at(deadline, self._fire)
            return
        self.deadline = None
        self.callback()


class TcpConnection:
    """A connection. Programs use the public methods and attributes; the TCP
    layer calls ``input`` for every segment of this 4-tuple.

    Options (set before connect/listen where the handshake uses them):
    ``nodelay`` (TCP_NODELAY), ``keepalive`` + ``keepalive_idle``/``_interval``/
    ``_count`` (seconds, count), ``rcvbuf``/``sndbuf`` (bytes), ``linger``
    (None, or seconds: 0 makes close() send a RST), ``user_timeout`` (seconds,
    0 = off; RFC 5482 semantics as Linux's TCP_USER_TIMEOUT), ``maxseg``
    (TCP_MAXSEG, 0 = from the route MTU).
    """

    __slots__ = (
        "tcp", "stack", "counters", "timers", "config", "listener", "local", "remote",
        "key", "_laddr", "_lport", "_raddr", "_rport", "_psum", "state",
        # program-facing
        "on_event", "error", "_error_reported", "soft_error", "_nodelay", "_keepalive",
        "_keepalive_idle", "keepalive_interval", "keepalive_count", "linger", "user_timeout",
        "maxseg", "rcvbuf", "sndbuf", "rd_shut", "wr_shut", "orphaned", "_ev",
        "_listener_ev",
        # send side
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "snd_buf", "snd_buf_seq", "fin_queued", "fin_seq", "snd_wscale",
        "mss", "mss_base", "adv_mss", "peer_mss", "una_time", "last_tx",
        # receive side
        "irs", "rcv_nxt", "rcv_adv", "rcv_buf", "ooo", "fin_received", "ooo_fin",
        "rcv_wscale", "rcv_mss", "ack_pending", "ack_now", "_ack_deferred", "_flush_deferred",
        "quickack", "last_ack_sent",
        "last_oow_ack", "last_rx",
        # options
        "_offer_ts", "_offer_sack", "_offer_ws", "ts_ok", "sack_ok", "ts_recent",
        "ts_recent_stamp", "ts_offset",
        # congestion control and recovery
        "cc", "sb", "in_recovery", "recover", "high_rxt", "dupacks", "rtt", "rtt_seq",
        "rtt_time", "retries", "probes", "persist_backoff", "persist_start",
        "ka_probes", "syn_data",
        # timers
        "t_rto", "t_delack", "t_persist", "t_keepalive", "t_close",
        # statistics
        "segs_in", "segs_out", "retransmits", "bytes_acked", "bytes_received",
    )

    def __init__(self, tcp: Tcp, laddr: bytes, lport: int, raddr: bytes, rport: int,
                 listener: TcpListener | None = None) -> None:
        stack = tcp.stack
        cfg = tcp.config
        self.tcp = tcp
        self.stack = stack
        self.counters = stack.counters
        self.timers: Timers = stack.timers
        self.config = cfg
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
        self.on_event: Callable[[], None] | None = None
        self.error: int | None = None
        self._error_reported = True
        self.soft_error: int | None = None
        self._nodelay = False
        self._keepalive = False
        self._keepalive_idle = cfg.keepalive_idle
        self.keepalive_interval = cfg.keepalive_interval
        self.keepalive_count = cfg.keepalive_count
        self.linger: float | None = None
        self.user_timeout = 0.0
        self.maxseg = 0
        self.rcvbuf = cfg.rcvbuf
        self.sndbuf = cfg.sndbuf
        self.rd_shut = False
        self.wr_shut = False
        self.orphaned = False
        self._ev = False
        self._listener_ev = False
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_buf = bytearray()
        self.snd_buf_seq = 0
        self.fin_queued = False
        self.fin_seq = -1
        self.snd_wscale = 0
        self.adv_mss = 536
        self.peer_mss = 536
        self.mss_base = 536
        self.mss = 536
        self.una_time = 0.0
        self.last_tx = 0.0
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_buf = bytearray()
        self.ooo = OutOfOrderQueue(cfg.ooo_max_segments, cfg.ooo_max_bytes or cfg.rcvbuf)
        self.fin_received = False
        self.ooo_fin = -1
        self.rcv_wscale = 0
        self.rcv_mss = 536
        self.ack_pending = False
        self.ack_now = False
        self._ack_deferred = False
        self._flush_deferred = False
        self.quickack = cfg.quickack_segments
        self.last_ack_sent = 0
        self.last_oow_ack = -1e9
        self.last_rx = 0.0
        self._offer_ts = cfg.timestamps
        self._offer_sack = cfg.sack
        self._offer_ws = cfg.window_scaling
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        self.ts_recent_stamp = 0.0
        self.ts_offset = tcp.isn.ts_offset(laddr, lport, raddr, rport)
        self.cc = NewReno(536, cfg.initial_cwnd_segments)
        self.sb = Scoreboard()
        self.in_recovery = NO_RECOVERY
        self.recover = 0
        self.high_rxt = 0
        self.dupacks = 0
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max,
                                cfg.clock_granularity)
        self.rtt_seq = -1
        self.rtt_time = 0.0
        self.retries = 0
        self.probes = 0
        self.persist_backoff = 0
        self.persist_start = 0.0
        self.ka_probes = 0
        self.syn_data = b""
        timers = self.timers
        self.t_rto = LazyTimer(timers, self._on_rto)
        self.t_delack = LazyTimer(timers, self._on_delack)
        self.t_persist = LazyTimer(timers, self._on_persist)
        self.t_keepalive = LazyTimer(timers, self._on_keepalive)
        self.t_close = LazyTimer(timers, self._on_close_timer)
        self.segs_in = 0
        self.segs_out = 0
        self.retransmits = 0
        self.bytes_acked = 0
        self.bytes_received = 0

    def __repr__(self) -> str:
        from femtotcp.wire import ip_str
        return (f"<TcpConnection {ip_str(self._laddr)}:{self._lport} -> "
                f"{ip_str(self._raddr)}:{self._rport} {self.state}>")

    # ================================================================ program API
    @property
    def readable(self) -> bool:
        """recv() would not return None: data, EOF or an error to report."""
        return bool(self.rcv_buf) or self.fin_received or self.rd_shut or (
            self.error is not None) or self.state == CLOSED

    @property
    def writable(self) -> bool:
        """send() would take data or raise (Linux: free space >= half the queue)."""
        if self.error is not None or self.wr_shut:
            return True
        st = self.state
        if st == ESTABLISHED or st == CLOSE_WAIT:
            queued = len(self.snd_buf)
            free = self.sndbuf - queued
            return free > 0 and free >= queued >> 1
        return st == CLOSED

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how many bytes were taken (0 when the buffer is full).

        Raises the pending error once (e.g. ConnectionResetError), then EPIPE
        after the write side is shut or the connection is gone, ENOTCONN before
        it was ever opened."""
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            raise _os_error(self.error)
        st = self.state
        if self.wr_shut or self.error is not None:
            raise _os_error(errno.EPIPE)
        if st == CLOSED or st == LISTEN:
            raise _os_error(errno.ENOTCONN if self.snd_max == 0 else errno.EPIPE)
        if st not in (SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT):
            raise _os_error(errno.EPIPE)
        buf = self.snd_buf
        free = self.sndbuf - len(buf)
        n = len(data)
        if free <= 0 or n == 0:
            return 0
        if n > free:
            n = free
            buf += memoryview(data)[:n]
        else:
            buf += data
        if st == ESTABLISHED or st == CLOSE_WAIT:
            self._output()      # never calls back into the program (no re-entrancy)
        return n

    def recv(self, n: int = 65536) -> bytes | None:
        """Up to ``n`` bytes; b"" at EOF (after the peer's FIN, SHUT_RD, or once the
        error was reported); None when nothing is there yet. Buffered data is
        returned before a pending error is raised (once)."""
        buf = self.rcv_buf
        if buf:
            if n >= len(buf):
                data = bytes(buf)
                buf.clear()
            else:
                data = bytes(buf[:n])
                del buf[:n]
            self._after_read()
            return data
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            raise _os_error(self.error)
        if self.fin_received or self.rd_shut or self.error is not None:
            return b""
        if self.state == CLOSED:
            if self.snd_max == 0:
                raise _os_error(errno.ENOTCONN)
            return b""
        return None

    def shutdown(self, how: int) -> None:
        """socket.SHUT_RD, SHUT_WR or SHUT_RDWR (RFC 9293 3.10.4 for the write side)."""
        st = self.state
        if st == CLOSED or st == LISTEN:
            raise _os_error(errno.ENOTCONN)
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.rd_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self.wr_shut:
            self.wr_shut = True
            self._queue_fin()

    def close(self) -> None:
        """Graceful close (FIN), or a RST when unread data is left or linger is 0
        (RFC 9293 3.10.4, RFC 2525 2.17, as Linux)."""
        if self.orphaned:
            return
        self.orphaned = True
        self.on_event = None
        st = self.state
        if st == CLOSED or st == TIME_WAIT:
            return
        if st == SYN_SENT:
            self._destroy()
            return
        if self.rcv_buf or (self.linger is not None and self.linger == 0):
            self.counters["tcp.close_with_rst"] += 1
            self.abort()
            return
        self.rd_shut = True
        if not self.wr_shut:
            self.wr_shut = True
            self._queue_fin()
        if self.state == FIN_WAIT_2:
            self.t_close.set(self.timers.now + self.config.fin_timeout)

    def abort(self) -> None:
        """Send a RST where RFC 9293 3.10.5 says so and drop the connection. The RST
        carries the ACK flag and RCV.NXT, as Linux's tcp_send_active_reset (close
        with unread data, SO_LINGER 0, a listener closed with connections queued)."""
        st = self.state
        if st in _RESET_ON_ABORT:
            self._send_rst(self.snd_max, with_ack=True)
        self.orphaned = True
        self.on_event = None
        if st != CLOSED:
            self._destroy()

    @property
    def state_name(self) -> str:
        return self.state

    def info(self) -> dict[str, Any]:
        """Figures for ``femtotcp ctl sockets`` (like Linux's tcp_info)."""
        rtt = self.rtt
        return {
            "state": self.state,
            "rtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.rto,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh if self.cc.ssthresh < 1 << 60 else None,
            "mss": self.mss,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": max(0, self.rcv_adv - self.rcv_nxt),
            "snd_queue": len(self.snd_buf),
            "unacked": self.snd_max - self.snd_una,
            "rcv_queue": len(self.rcv_buf),
            "ooo_blocks": len(self.ooo),
            "ooo_bytes": self.ooo.nbytes,
            "snd_wscale": self.snd_wscale,
            "rcv_wscale": self.rcv_wscale,
            "timestamps": self.ts_ok,
            "sack": self.sack_ok,
            "recovery": ("none", "newreno", "sack")[self.in_recovery],
            "retransmits": self.retransmits,
            "segs_in": self.segs_in,
            "segs_out": self.segs_out,
            "bytes_acked": self.bytes_acked,
            "bytes_received": self.bytes_received,
            "error": errno.errorcode.get(self.error, str(self.error)) if self.error else None,
        }

    # ================================================================ opening
    def _setup_mss(self) -> None:
        """Our MSS from the route's MTU (RFC 9293 3.7.1, RFC 6691)."""
        overhead = 40 if len(self._raddr) == 4 else 60
        mtu = self.stack.route_mtu(self._raddr)
        mss = max(mtu - overhead, 88)
        if self.maxseg:
            mss = min(mss, max(self.maxseg, 88))
        self.adv_mss = min(mss, 65495)

    def _pick_wscale(self) -> int:
        """RFC 7323 2.3: the smallest shift that lets the largest buffer be offered."""
        if not self._offer_ws:
            return 0
        biggest = max(self.rcvbuf, self.config.rcvbuf_max)
        ws = 0
        while (biggest >> ws) > 0xFFFF and ws < 14:
            ws += 1
        return ws

    def _tsval(self) -> int:
        return (int(self.timers.now * 1000) + self.ts_offset) & MASK

    def _syn_options(self, synack: bool) -> bytes:
        ts = (self._tsval(), self.ts_recent if synack else 0) if self._offer_ts else None
        return build_options(mss=self.adv_mss,
                             wscale=self.rcv_wscale if self._offer_ws else None,
                             sack_perm=self._offer_sack, ts=ts)

    def _negotiate(self, opts: TcpOptions) -> None:
        """Settle the options from the peer's SYN (or SYN-ACK)."""
        cfg = self.config
        default = 536 if len(self._raddr) == 4 else 1220
        peer = opts.mss or default
        if peer < cfg.min_snd_mss:
            peer = cfg.min_snd_mss
        self.peer_mss = peer
        if opts.wscale is not None and self._offer_ws:
            self.snd_wscale = opts.wscale
        else:
            self._offer_ws = False
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = self._offer_sack and opts.sack_perm
        self._offer_sack = self.sack_ok
        if self._offer_ts and opts.ts_val is not None:
            self.ts_ok = True
            self.ts_recent = opts.ts_val
            self.ts_recent_stamp = self.timers.now
        else:
            self.ts_ok = False
            self._offer_ts = False
        self._set_mss_base(min(peer, self.adv_mss))

    def _set_mss_base(self, base: int) -> None:
        self.mss_base = base
        mss = base - _TS_LEN if self.ts_ok else base
        self.mss = mss if mss > 8 else 8
        self.cc.set_mss(self.mss)
        rcv_mss = self.adv_mss - _TS_LEN if self.ts_ok else self.adv_mss
        self.rcv_mss = min(rcv_mss, 536)

    def _start_connect(self) -> None:
        """Active open (RFC 9293 3.10.1): send a SYN, enter SYN_SENT."""
        tcp = self.tcp
        now = self.timers.now
        self._setup_mss()
        self.rcv_wscale = self._pick_wscale()
        self.iss = tcp.isn.isn(now, self._laddr, self._lport, self._raddr, self._rport)
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.iss + 1
        self.snd_buf_seq = self.iss + 1
        self.recover = self.iss
        self.una_time = now
        self.state = SYN_SENT
        self.counters["tcp.active_opens"] += 1
        self._send_syn(ack=False)
        self.rtt_seq = self.iss + 1
        self.rtt_time = now
        self.t_rto.set(now + self.rtt.rto)

    def _passive_open(self, hdr: TcpHeader, opts: TcpOptions, payload: memoryview) -> None:
        """A SYN reached our listener (RFC 9293 3.10.7.2): SYN_RECEIVED, send SYN-ACK."""
        tcp = self.tcp
        now = self.timers.now
        self._setup_mss()
        self.rcv_wscale = self._pick_wscale()
        self.irs = hdr.seq
        self.rcv_nxt = hdr.seq + 1
        self._negotiate(opts)
        self.iss = tcp.isn.isn(now, self._laddr, self._lport, self._raddr, self._rport)
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.iss + 1
        self.snd_buf_seq = self.iss + 1
        self.recover = self.iss
        self.snd_wnd = hdr.window          # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1 = hdr.seq
        self.max_snd_wnd = self.snd_wnd
        self.una_time = now
        self.last_rx = now
        self.state = SYN_RECEIVED
        self.counters["tcp.passive_opens"] += 1
        if payload:
            # RFC 9293 3.10.7.2: the SYN-ACK is <ACK=RCV.NXT> with RCV.NXT = SEG.SEQ+1,
            # so text on a SYN is not acknowledged by it. Without TCP Fast Open we
            # do as Linux: drop that text; the peer sends it again once established.
            self.counters["tcp.syn_data_dropped"] += len(payload)
        self._send_syn(ack=True)
        if self.rtt_seq < 0 and not self.ts_ok:
            self.rtt_seq = self.iss + 1
            self.rtt_time = now
        self.t_rto.set(now + self.rtt.rto)

    def _cookie_open(self, hdr: TcpHeader, opts: TcpOptions, mss: int,
                     wscale: int | None, sack: bool) -> None:
        """The ACK completing a SYN-cookie handshake creates the connection."""
        now = self.timers.now
        self._setup_mss()
        self.rcv_wscale = self._pick_wscale()
        self.iss = (hdr.ack - 1) & MASK
        self.irs = (hdr.seq - 1) & MASK
        self.rcv_nxt = self.irs + 1
        fake = TcpOptions()
        fake.mss = mss
        fake.wscale = wscale
        fake.sack_perm = sack
        fake.ts_val = opts.ts_val
        self._offer_ws = self._offer_ws and wscale is not None
        self._negotiate(fake)
        self.snd_una = self.snd_nxt = self.snd_max = self.iss + 1
        self.snd_buf_seq = self.iss + 1
        self.recover = self.snd_una
        self.snd_wnd = hdr.window << self.snd_wscale
        self.snd_wl1 = self.irs
        self.snd_wl2 = self.snd_una
        self.max_snd_wnd = self.snd_wnd
        self.rcv_adv = self.rcv_nxt + min(self.rcvbuf, 0xFFFF)
        self.last_ack_sent = self.rcv_nxt
        self.una_time = now
        self.last_rx = now
        self.state = SYN_RECEIVED
        self.counters["tcp.syncookies_accepted"] += 1
        self._established()

    def _send_syn(self, ack: bool) -> None:
        window = min(self.rcvbuf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + window
        flags = SYN | ACK if ack else SYN
        seg = build_fast(self._psum, self._lport, self._rport, self.iss & MASK,
                         self.rcv_nxt & MASK if ack else 0, flags, window,
                         self._syn_options(ack), b"")
        if ack:
            self.last_ack_sent = self.rcv_nxt
        self._ip_send(seg)

    def _established(self) -> None:
        """SYN_SENT/SYN_RECEIVED -> ESTABLISHED (or on to FIN_WAIT_1 if the
        program already shut the write side)."""
        self.state = ESTABLISHED
        self.counters["tcp.established"] += 1
        cfg = self.config
        self.ooo.max_bytes = cfg.ooo_max_bytes or self.rcvbuf
        self.quickack = self.config.quickack_segments
        self.retries = 0
        self.rtt.backoff = 0
        if self.listener is not None:
            self.listener._on_established(self)
            self._listener_ev = True
        if self.fin_queued:
            self.state = FIN_WAIT_1
        if self._keepalive:
            self.t_keepalive.set(self.timers.now + self.keepalive_idle)
        self._ev = True

    @property
    def keepalive(self) -> bool:
        """SO_KEEPALIVE: setting it (re)arms or stops the keep-alive timer."""
        return self._keepalive

    @keepalive.setter
    def keepalive(self, on: bool) -> None:
        self._keepalive = bool(on)
        if on and self.state in (ESTABLISHED, CLOSE_WAIT):
            self.t_keepalive.set(self.timers.now + self.keepalive_idle)
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
            self.t_keepalive.set(due if due > now else now)

    def set_keepalive(self, on: bool) -> None:
        self.keepalive = on

    @property
    def nodelay(self) -> bool:
        """TCP_NODELAY: switching it on sends what Nagle was holding back (as Linux)."""
        return self._nodelay

    @nodelay.setter
    def nodelay(self, on: bool) -> None:
        self._nodelay = bool(on)
        if on and self.state in _SENDING:
            self._output()

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
        self._flush()

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
        """Header prediction (after Van Jacobson): the two common cases of a bulk
        transfer, in-order data and an ACK of new data, on an ESTABLISHED
        connection, handled with the same rules as the full path but without
        its generality. Returns False to send the segment down the full path."""
        if self.state != ESTABLISHED or flags & ~PSH != ACK:
            return False
        rcv_nxt = self.rcv_nxt
        if seq32 != rcv_nxt & MASK:
            return False
        if hlen == 32:
            if not self.ts_ok or segment[20:24] != _TS_PREFIX:
                return False
            tsval, ecr = _TS_PAIR.unpack_from(segment, 24)
            if (tsval - self.ts_recent) & MASK >= HALF:
                return False                              # PAWS decides (full path)
        elif hlen == 20 and not self.ts_ok:
            tsval = -1
            ecr = 0
        else:
            return False
        una = self.snd_una
        plen = len(segment) - hlen
        now = self.timers.now
        if plen:
            if ack32 != una & MASK or self.ooo.blocks or self.rd_shut or self.orphaned or \
                    self.ooo_fin >= 0 or (window << self.snd_wscale) != self.snd_wnd or \
                    rcv_nxt + plen > self.rcv_adv:
                return False
            if tsval >= 0 and rcv_nxt <= self.last_ack_sent:
                self.ts_recent = tsval                    # RFC 7323 4.3
                self.ts_recent_stamp = now
            self.segs_in += 1
            self.last_rx = now
            self.probes = 0
            self.rcv_buf += segment[hlen:]
            rcv_nxt += plen
            self.rcv_nxt = rcv_nxt
            self.bytes_received += plen
            if plen > self.rcv_mss:
                limit = self.adv_mss - _TS_LEN if self.ts_ok else self.adv_mss
                self.rcv_mss = plen if plen < limit else limit
            self.ack_pending = True
            if self.quickack > 0:
                self.quickack -= 1
                self.ack_now = True
            self._ev = True
            self._defer_flush()
            if self.ack_pending:
                self._schedule_ack(now)
            return True
        ack = una + ((ack32 - una + HALF) & MASK) - HALF
        if not una < ack <= self.snd_max:
            return False
        if tsval >= 0 and rcv_nxt <= self.last_ack_sent:
            self.ts_recent = tsval
            self.ts_recent_stamp = now
        self.segs_in += 1
        self.last_rx = now
        self.probes = 0
        self._ack_new_data(ack, ecr, now)
        seq = rcv_nxt
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            wnd = window << self.snd_wscale
            if wnd != self.snd_wnd:
                if wnd > self.snd_wnd:
                    self.persist_backoff = 0
                self.snd_wnd = wnd
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        self._output()
        if self._ev:
            self._defer_flush()
        return True

    def _defer_flush(self) -> None:
        """Tell the program once per receive batch, not once per segment: its
        callback runs when the batch from the device is done (the loop calls
        Stack.end_batch), before the batch's ACK goes out, so an answer can carry it."""
        if not self._flush_deferred:
            self._flush_deferred = True
            self.tcp.defer(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_deferred = False
        self._flush()

    def _input_syn_sent(self, hdr: TcpHeader, payload: memoryview) -> None:
        """RFC 9293 3.10.7.3 (SYN-SENT), with RFC 5961 3.2 for RST."""
        flags = hdr.flags
        counters = self.counters
        if flags & ACK:
            if hdr.ack != (self.snd_max & MASK):
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
        self.irs = hdr.seq
        self.rcv_nxt = hdr.seq + 1
        self._negotiate(opts)
        if flags & ACK:
            ack = self.snd_max
            self.snd_una = ack
            self.snd_wnd = hdr.window        # SYN-ACK windows are not scaled
            self.snd_wl1 = hdr.seq
            self.snd_wl2 = ack
            self.max_snd_wnd = self.snd_wnd
            self._rtt_from_ack(opts.ts_ecr, now)
            self.t_rto.stop()
            self._established()
            plen = len(payload)
            if plen:
                self._receive_text(self.rcv_nxt, payload, flags)
            elif flags & FIN:
                self._receive_fin()
            self.ack_pending = True
            self._output()
            if self.ack_pending:
                self._send_ack()
        else:
            # Simultaneous open (RFC 9293 3.5, figure 8): SYN-ACK with our ISS.
            self.snd_wnd = hdr.window
            self.snd_wl1 = hdr.seq
            self.max_snd_wnd = self.snd_wnd
            self.state = SYN_RECEIVED
            self.counters["tcp.simultaneous_open"] += 1
            self._send_syn(ack=True)
            self.t_rto.set(now + self.rtt.rto)

    def _input_time_wait(self, hdr: TcpHeader, payload: memoryview) -> None:
        """RFC 9293 3.10.7.4 for TIME_WAIT: re-ACK a retransmitted FIN and restart
        the 2 MSL timer; RST (exact sequence, RFC 5961) ends the state unless
        RFC 1337 protection is on; everything else gets an ACK."""
        flags = hdr.flags
        seq = self._unwrap_seq(hdr.seq)
        if flags & RST:
            if seq == self.rcv_nxt and not self.config.rfc1337:
                self.counters["tcp.time_wait_reset"] += 1
                self._destroy()
            return
        if flags & SYN:
            self._challenge_ack()
            return
        if flags & FIN and seq + len(payload) + 1 == self.rcv_nxt:
            self.t_close.set(self.timers.now + 2 * self.config.msl)
            self._send_ack()
            return
        self._send_dupack(bool(payload))

    def timewait_accepts_syn(self, hdr: TcpHeader) -> bool:
        """A new SYN may reuse a TIME_WAIT 4-tuple (RFC 6191, Linux): its sequence
        number is above the old RCV.NXT, or its timestamp is newer."""
        if self.state != TIME_WAIT or hdr.flags & (ACK | RST):
            return False
        if (hdr.seq - self.rcv_nxt) & MASK < HALF and hdr.seq != self.rcv_nxt & MASK:
            return True
        if self.ts_ok and hdr.options:
            opts = parse_options(hdr.options)
            if opts.ts_val is not None and 0 < (opts.ts_val - self.ts_recent) & MASK < HALF:
                return True
        return False

    def _unwrap_seq(self, seq32: int) -> int:
        ref = self.rcv_nxt
        return ref + ((seq32 - ref + HALF) & MASK) - HALF

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
        rcv_nxt = self.rcv_nxt
        seq = rcv_nxt + ((hdr.seq - rcv_nxt + HALF) & MASK) - HALF
        plen = len(payload)

        # A retransmitted SYN in SYN_RECEIVED: our SYN-ACK was lost; send it again.
        if st == SYN_RECEIVED and flags & SYN and not flags & (ACK | RST) and seq == self.irs:
            counters["tcp.syn_retransmit_seen"] += 1
            self._send_syn(ack=True)
            return

        # Simultaneous open (RFC 9293 figure 8 line 6): the peer's SYN-ACK repeats
        # its SYN but acknowledges ours; treat it as the ACK it carries (as Linux).
        if st == SYN_RECEIVED and flags & (SYN | ACK) == SYN | ACK and not plen and \
                seq + 1 == rcv_nxt and self.listener is None and \
                hdr.ack == self.snd_max & MASK:
            flags &= ~SYN
            seq = rcv_nxt
            # its window is not scaled (RFC 7323 2.2): undo the shift applied below
            hdr = hdr._replace(flags=flags, seq=rcv_nxt & MASK,
                               window=hdr.window >> self.snd_wscale)

        # Neither ACK nor RST nor SYN (a bare FIN, data without ACK): RFC 9293
        # 3.10.7.4 fifth drops it if the ACK bit is off; Linux does so before any
        # sequence check, so such a segment never draws an ACK.
        if not flags & (ACK | RST | SYN):
            counters["tcp.no_ack_flag"] += 1
            return

        # PAWS (RFC 7323 5.3 R1): an older timestamp marks an old duplicate.
        ts_val = opts.ts_val
        if self.ts_ok and ts_val is not None and not flags & RST:
            if (ts_val - self.ts_recent) & MASK >= HALF and \
                    now - self.ts_recent_stamp < 24 * 86400:
                counters["tcp.paws_rejected"] += 1
                self._send_dupack(plen > 0)
                return

        # Sequence number check (RFC 9293 3.10.7.4 first), with the zero-window
        # allowance: a segment at RCV.NXT still has its ACK, RST and URG processed.
        # With a window open, SEQ must lie below RCV.NXT + RCV.WND, also for an
        # empty segment (the RFC's table; Linux accepts SEQ == the right edge).
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        end = seq + seg_len
        if seq > right or (seq == right and right > rcv_nxt):
            if flags & RST:
                counters["tcp.rst_out_of_window"] += 1
                return
            counters["tcp.out_of_window"] += 1
            if flags & SYN:
                self._challenge_ack()
            else:
                self._send_dupack(plen > 0)
            return
        old = end < rcv_nxt or (end == rcv_nxt and seg_len > 0) or (
            seg_len == 0 and seq < rcv_nxt)
        if old:
            # Entirely old (a retransmission, a keepalive or window probe): no RST
            # or SYN processing; the ACK field is still used (as BSD), then ACK.
            if flags & RST:
                counters["tcp.rst_out_of_window"] += 1
                return
            if flags & SYN:
                self._challenge_ack()
                return
            counters["tcp.old_segment"] += 1
            if flags & ACK and st != SYN_RECEIVED:
                if not self._process_ack(hdr, opts, seq, 0, flags, now):
                    return
                self._output()
            if plen or flags & FIN:
                self.ack_pending = True
                self._send_ack()
            else:
                self._send_dupack(False)
            return

        # RST (RFC 5961 3.2): only an exact match resets; in-window -> challenge ACK.
        if flags & RST:
            if seq == rcv_nxt or (seq == rcv_nxt - 1 and self.fin_received):
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
                rst = build_fast(self._psum, self._lport, self._rport, 0,
                                 (hdr.seq + seg_len) & MASK, RST | ACK, 0, b"", b"")
            self._ip_send(rst)
            self._destroy()
            return

        # SYN in a synchronized state (RFC 5961 4.2): challenge ACK, drop.
        if flags & SYN:
            counters["tcp.syn_challenged"] += 1
            self._challenge_ack()
            return

        if not flags & ACK:
            counters["tcp.no_ack_flag"] += 1
            return

        # TS.Recent (RFC 7323 4.3): the segment covers Last.ACK.sent.
        if ts_val is not None and self.ts_ok and seq <= self.last_ack_sent:
            self.ts_recent = ts_val
            self.ts_recent_stamp = now

        if st == SYN_RECEIVED:
            ack = self.snd_una + ((hdr.ack - self.snd_una + HALF) & MASK) - HALF
            if not self.snd_una < ack <= self.snd_max:
                counters["tcp.syn_received_bad_ack"] += 1
                self._send_rst(hdr.ack, with_ack=False)
                return
            lst = self.listener
            if lst is not None and lst.accept_full():
                # Linux (tcp_abort_on_overflow = 0): drop the ACK, the peer resends.
                counters["tcp.listen_overflow"] += 1
                return
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self.snd_wnd = hdr.window << self.snd_wscale
            if self.snd_wnd > self.max_snd_wnd:
                self.max_snd_wnd = self.snd_wnd
            self._established()
        if not self._process_ack(hdr, opts, seq, plen, flags, now):
            return

        if flags & URG:
            # RFC 6093: urgent data is delivered inline; the pointer is only counted
            # (never used to index anything).
            counters["tcp.urgent"] += 1

        st = self.state
        if plen or flags & FIN:
            if st in _RECEIVING:
                if seq < rcv_nxt:
                    payload = payload[rcv_nxt - seq:]
                    seq = rcv_nxt
                if plen and self.orphaned:
                    # Data for a closed socket: Linux resets (RFC 9293 3.10.7.4 text).
                    counters["tcp.data_after_close"] += 1
                    self._send_rst(self.snd_max, with_ack=False)
                    self._fail(errno.ECONNRESET, notify=False)
                    return
                self._receive_text(seq, payload, flags)
            elif plen:
                counters["tcp.data_ignored"] += 1

        self._output()
        if self.ack_pending:
            if self.ooo.blocks:
                self.ack_now = True
            self._schedule_ack(now)
        self.ack_now = False

    def _schedule_ack(self, now: float) -> None:
        """Delayed ACKs (RFC 9293 3.8.6.3, RFC 5681 4.2): at once in quick-ack mode
        and for holes and FINs; for every second full-sized segment; otherwise
        after the delayed-ACK timeout. With ``ack_coalescing`` the ACK for a run
        of full-sized segments that arrived in one batch from the device is sent
        when the batch is done (as Linux's GRO does), at most
        ``ack_coalesce_segments`` segments late."""
        unacked = self.rcv_nxt - self.last_ack_sent
        if self.ack_now:
            self._send_ack()
        elif unacked > self.rcv_mss:
            cfg = self.config
            if cfg.ack_coalescing and unacked < cfg.ack_coalesce_segments * self.rcv_mss:
                if not self._ack_deferred:
                    self._ack_deferred = True
                    self.tcp.defer(self._deferred_ack)
            else:
                self._send_ack()
        elif self.t_delack.deadline is None:
            self.t_delack.set(now + self.config.delack)

    def _deferred_ack(self) -> None:
        """The end of a receive batch: ACK what it brought."""
        self._ack_deferred = False
        if self.ack_pending and self.state != CLOSED:
            if self.rcv_nxt - self.last_ack_sent > self.rcv_mss:
                self._send_ack()
            elif self.t_delack.deadline is None:
                self.t_delack.set(self.timers.now + self.config.delack)

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

    # ---------------------------------------------------------------- ACK processing
    def _process_ack(self, hdr: TcpHeader, opts: TcpOptions, seq: int, plen: int,
                     flags: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 fifth (ACK) with RFC 5961 5.2. False: segment dropped."""
        una = self.snd_una
        ack = una + ((hdr.ack - una + HALF) & MASK) - HALF
        counters = self.counters
        if ack > self.snd_max:
            counters["tcp.ack_unsent_data"] += 1
            self._challenge_ack()
            return False
        if ack < una - self.max_snd_wnd:
            counters["tcp.ack_too_old"] += 1
            self._challenge_ack()
            return False
        self.probes = 0
        window = hdr.window << self.snd_wscale
        newly_sacked = 0
        if opts.sack_blocks and self.sack_ok:
            newly_sacked = self._update_scoreboard(opts.sack_blocks, ack)
        if ack > una:
            self._ack_new_data(ack, opts.ts_ecr, now)
        elif ack == una and self.snd_max > una and not plen and \
                not flags & (SYN | FIN):
            # Duplicate ACK (RFC 5681 2; RFC 6675 2 when SACK is on).
            if (newly_sacked > 0) if self.sack_ok else (window == self.snd_wnd):
                self.dupacks += 1
                counters["tcp.dupack"] += 1
                if self.in_recovery == NEWRENO_RECOVERY:
                    self.cc.cwnd += self.mss      # RFC 6582 3.2 step 4: inflate
                elif self.in_recovery == NO_RECOVERY:
                    self._maybe_enter_recovery()
        if newly_sacked and ack > una and self.in_recovery == NO_RECOVERY:
            self._maybe_enter_recovery()    # RFC 6675 5: IsLost(HighACK + 1)
        # Send window update (RFC 9293 3.10.7.4: SND.WL1/SND.WL2 rule).
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if window != self.snd_wnd:
                if window > self.snd_wnd:
                    self.persist_backoff = 0
                self.snd_wnd = window
                if window > self.max_snd_wnd:
                    self.max_snd_wnd = window
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        st = self.state
        if self.fin_queued and self.snd_una > self.fin_seq:
            if st == FIN_WAIT_1:
                self.state = FIN_WAIT_2
                self._ev = True
                if self.orphaned:
                    self.t_close.set(now + self.config.fin_timeout)
            elif st == CLOSING:
                self._enter_time_wait()
                return False
            elif st == LAST_ACK:
                self._destroy()
                return False
        return True

    def _update_scoreboard(self, blocks: tuple[tuple[int, int], ...], ack: int) -> int:
        """Merge the SACK blocks of an ACK (RFC 2018 4); blocks outside
        [SND.UNA, SND.MAX] (D-SACK, bogus) are ignored."""
        una = ack if ack > self.snd_una else self.snd_una
        snd_max = self.snd_max
        sb = self.sb
        newly = 0
        for left32, right32 in blocks:
            left = una + ((left32 - una + HALF) & MASK) - HALF
            right = una + ((right32 - una + HALF) & MASK) - HALF
            if right <= left or right > snd_max or right <= una:
                if right > snd_max or right < left:
                    self.counters["tcp.sack_invalid"] += 1
                continue
            if left < una:
                left = una
            newly += sb.add(left, right)
        return newly

    def _ack_new_data(self, ack: int, ecr: int | None, now: float) -> None:
        una = self.snd_una
        acked = ack - una
        flight_before = self.snd_max - una
        buf_seq = self.snd_buf_seq
        if ack > buf_seq:
            buf = self.snd_buf
            n = ack - buf_seq
            if n > len(buf):
                n = len(buf)
            if n:
                del buf[:n]
                self.snd_buf_seq = buf_seq + n
                self.bytes_acked += n
                self._ev = True
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        if self.sb:
            self.sb.advance(ack)
        self._rtt_from_ack(ecr, now)
        self.retries = 0
        self.dupacks = 0
        self.una_time = now
        cc = self.cc
        rec = self.in_recovery
        if rec:
            if ack >= self.recover:
                # Full ACK: leave recovery (RFC 6582 3.2 step 3; RFC 6675 5 step 1).
                self.in_recovery = NO_RECOVERY
                if rec == NEWRENO_RECOVERY:
                    flight = self.snd_max - ack
                    cc.cwnd = min(cc.ssthresh, max(flight, self.mss) + self.mss)
                else:
                    cc.cwnd = cc.ssthresh
                self.counters["tcp.recovery_done"] += 1
            elif rec == NEWRENO_RECOVERY:
                # Partial ACK (RFC 6582 3.2 step 5): resend the next hole, deflate.
                self._retransmit(ack, ack + self.mss)
                cwnd = cc.cwnd - acked
                if acked >= self.mss:
                    cwnd += self.mss
                cc.cwnd = cwnd if cwnd > self.mss else self.mss
        else:
            # Grow only when cwnd was the limit (RFC 7661's idea, as Linux).
            if flight_before + self.mss >= cc.cwnd or cc.cwnd < cc.ssthresh and \
                    2 * flight_before >= cc.cwnd:
                cc.on_ack(acked)
        if ack >= self.snd_max:
            self.t_rto.stop()
        else:
            self.t_rto.set(now + self.rtt.rto)

    def _rtt_from_ack(self, ecr: int | None, now: float) -> None:
        """RFC 7323 4.1 (timestamps) or RFC 6298 with Karn's rule (one timed segment)."""
        if self.ts_ok and ecr:
            ms = (self._tsval() - ecr) & MASK
            if ms < 0x7FFFFFFF:
                self.rtt.sample(ms / 1000.0)
            return
        if 0 <= self.rtt_seq <= self.snd_una:
            self.rtt.sample(now - self.rtt_time)
            self.rtt_seq = -1

    def _maybe_enter_recovery(self) -> None:
        """Fast retransmit (RFC 5681 3.2, RFC 6582 3.2 step 1-2, RFC 6675 5 step 4)."""
        una = self.snd_una
        if una < self.recover:
            return     # still inside the episode a timeout started (RFC 6582 4.1)
        cfg = self.config
        if self.dupacks < cfg.dupthresh and not (
                self.sack_ok and self.sb.first_lost(una, self.mss, cfg.dupthresh)):
            return
        cc = self.cc
        flight = self.snd_max - una
        ssthresh = cc.on_loss(flight)
        self.recover = self.snd_max
        self.rtt_seq = -1
        self.counters["tcp.fast_retransmit"] += 1
        if self.sack_ok:
            self.in_recovery = SACK_RECOVERY
            cc.cwnd = ssthresh
            self.high_rxt = una
            sb = self.sb
            first = sb.starts[0] if sb.starts else una + self.mss
            sent = self._retransmit(una, min(first, una + self.mss))
            self.high_rxt = una + sent
        else:
            self.in_recovery = NEWRENO_RECOVERY
            self._retransmit(una, una + self.mss)
            cc.cwnd = ssthresh + cfg.dupthresh * self.mss

    # ---------------------------------------------------------------- receiving text
    def _receive_text(self, seq: int, payload: memoryview | bytes, flags: int) -> None:
        """RFC 9293 3.10.7.4 seventh/eighth: queue in-order data, hold the rest."""
        n = len(payload)
        fin = flags & FIN
        right = self.rcv_adv
        if seq + n > right:
            keep = right - seq
            if keep < 0:
                keep = 0
            payload = payload[:keep]
            n = keep
            fin = 0
            self.counters["tcp.data_beyond_window"] += 1
            self.ack_pending = True
            self.ack_now = True
        if n and n > self.rcv_mss:
            limit = self.adv_mss - _TS_LEN if self.ts_ok else self.adv_mss
            self.rcv_mss = n if n < limit else limit
        rcv_nxt = self.rcv_nxt
        if seq == rcv_nxt:
            if n:
                if not self.rd_shut:
                    self.rcv_buf += payload
                else:
                    self.counters["tcp.data_discarded_shut_rd"] += n
                rcv_nxt += n
                self.bytes_received += n
                ooo = self.ooo
                if ooo.blocks:
                    chunks, new_nxt = ooo.pop_ready(rcv_nxt)
                    if not self.rd_shut:
                        for c in chunks:
                            self.rcv_buf += c
                    self.bytes_received += new_nxt - rcv_nxt
                    rcv_nxt = new_nxt
                    self.ack_now = True    # a hole was filled: ACK at once (RFC 5681 4.2)
                    self.tcp._ooo_changed()
                self.rcv_nxt = rcv_nxt
                self._ev = True
                self.ack_pending = True
                if self.quickack > 0:
                    self.quickack -= 1
                    self.ack_now = True
            if fin:
                self.ooo_fin = seq + n
            if self.ooo_fin == self.rcv_nxt:
                self._receive_fin()
        else:
            # Out of order: hold it and send a duplicate ACK at once (RFC 5681 4.2),
            # carrying SACK blocks.
            if n:
                if self.ooo.add(seq, payload):
                    self.tcp._ooo_changed()
                    if fin:
                        self.ooo_fin = seq + n
                else:
                    self.counters["tcp.ooo_dropped"] += 1
            elif fin:
                self.ooo_fin = seq
            self.counters["tcp.ooo_segments"] += 1
            self.ack_pending = True
            self.ack_now = True

    def _receive_fin(self) -> None:
        """RFC 9293 3.10.7.4 eighth: the FIN is next in sequence."""
        self.rcv_nxt += 1
        self.fin_received = True
        self.ooo_fin = -1
        self._ev = True
        self.ack_pending = True
        self.ack_now = True
        st = self.state
        if st == ESTABLISHED or st == SYN_RECEIVED:
            self.state = CLOSE_WAIT
        elif st == FIN_WAIT_1:
            if self.fin_queued and self.snd_una > self.fin_seq:
                self._enter_time_wait()
            else:
                self.state = CLOSING
        elif st == FIN_WAIT_2:
            self._enter_time_wait()

    def _after_read(self) -> None:
        """The program consumed data: offer more window when it grew a lot
        (Linux's tcp_cleanup_rbuf rule: at least double a window under half)."""
        st = self.state
        if st not in _RECEIVING or self.fin_received:
            return
        current = self.rcv_adv - self.rcv_nxt
        clamp = min(self.rcvbuf, 0xFFFF << self.rcv_wscale)
        if 2 * current <= clamp:
            new = min(self.rcvbuf - len(self.rcv_buf), clamp)
            threshold = min(self.rcvbuf // 2, self.adv_mss)
            if new >= 2 * current and new - current >= threshold:
                self.counters["tcp.window_update"] += 1
                self._send_ack()

    # ================================================================ output
    def _receive_window(self) -> int:
        """The window field to send (RFC 9293 3.8.6.2.2 receiver SWS avoidance;
        the right edge never moves left; RFC 7323 2.3 scaling, rounded up)."""
        rcv_nxt = self.rcv_nxt
        cur = self.rcv_adv
        new_right = rcv_nxt + self.rcvbuf - len(self.rcv_buf)
        if new_right > cur:
            mss = self.adv_mss
            half = self.rcvbuf >> 1
            if new_right - cur >= (half if half < mss else mss):
                cur = new_right
        wnd = cur - rcv_nxt
        if wnd <= 0:
            self.rcv_adv = rcv_nxt if cur < rcv_nxt else cur
            return 0
        ws = self.rcv_wscale
        field = (wnd + (1 << ws) - 1) >> ws
        if field > 0xFFFF:
            field = 0xFFFF
        self.rcv_adv = rcv_nxt + (field << ws)
        return field

    def _options(self) -> bytes:
        if self.ts_ok:
            opt = _TS_PREFIX + ((self._tsval() << 32) | self.ts_recent).to_bytes(8, "big")
            if self.sack_ok and self.ooo.blocks:
                return self._sack_option(opt)
            return opt
        if self.sack_ok and self.ooo.blocks:
            return self._sack_option(b"")
        return b""

    def _sack_option(self, prefix: bytes) -> bytes:
        limit = (40 - len(prefix) - 4) // 8
        blocks = self.ooo.sack_blocks(limit)
        out = bytearray(prefix)
        out += b"\x01\x01\x05" + bytes((2 + 8 * len(blocks),))
        for left, right in blocks:
            out += (((left & MASK) << 32) | (right & MASK)).to_bytes(8, "big")
        return bytes(out)

    def _ip_send(self, seg: bytes) -> None:
        self.segs_out += 1
        self.last_tx = self.timers.now
        err = self.stack.ip_output(self._raddr, 6, seg, src=self._laddr, df=True)
        if err:
            self.counters["tcp.tx_error"] += 1
            self.soft_error = err

    def _send_ack(self) -> None:
        """A pure ACK <SEQ=SND.MAX><ACK=RCV.NXT> (SND.MAX: always acceptable to the
        peer, also while resending after a timeout)."""
        window = self._receive_window()
        self.ack_pending = False
        self.ack_now = False
        self.t_delack.stop()
        self.last_ack_sent = self.rcv_nxt
        if self.ts_ok and not (self.sack_ok and self.ooo.blocks):
            self._ip_send(self._ts_segment(self.snd_max & MASK, ACK, window, b""))
            return
        self._ip_send(build_fast(self._psum, self._lport, self._rport, self.snd_max & MASK,
                                 self.rcv_nxt & MASK, ACK, window, self._options(), b""))

    def _send_dupack(self, has_data: bool) -> None:
        """ACK an unacceptable segment; without data, at most one per
        ``invalid_ratelimit`` (Linux's tcp_oow_rate_limited)."""
        now = self.timers.now
        if not has_data:
            if now - self.last_oow_ack < self.config.invalid_ratelimit:
                self.counters["tcp.oow_ack_ratelimited"] += 1
                return
            self.last_oow_ack = now
        self._send_ack()

    def _challenge_ack(self) -> None:
        """RFC 5961 3.2/4.2/5.2, limited stack-wide (RFC 5961 7)."""
        if self.tcp.challenge_bucket.take(self.timers.now):
            self.counters["tcp.challenge_ack"] += 1
            self._send_ack()
        else:
            self.counters["tcp.challenge_ack_limited"] += 1

    def _send_rst(self, seq: int, with_ack: bool) -> None:
        s = seq & MASK
        flags = RST | ACK if with_ack else RST
        self.counters["tcp.rst_sent"] += 1
        self._ip_send(build_fast(self._psum, self._lport, self._rport, s,
                                 self.rcv_nxt & MASK if with_ack else 0, flags, 0, b"", b""))

    def _send_probe(self) -> None:
        """Zero-window or keepalive probe: <SEQ=SND.UNA-1><CTL=ACK>, no data (as Linux)."""
        window = self._receive_window()
        self.last_ack_sent = self.rcv_nxt
        self._ip_send(build_fast(self._psum, self._lport, self._rport,
                                 (self.snd_una - 1) & MASK, self.rcv_nxt & MASK, ACK, window,
                                 self._options(), b""))

    def _send_data(self, seq: int, n: int, fin: bool) -> int:
        """Send [seq, seq+n) from the send buffer (plus FIN). Returns the bytes sent
        (fewer when SACK blocks took option space)."""
        ts_only = self.ts_ok and not (self.sack_ok and self.ooo.blocks)
        if not ts_only:
            options = self._options()
            optlen = len(options)
            if optlen > _TS_LEN or (optlen and not self.ts_ok):
                room = self.mss_base - optlen
                if n > room:
                    n = room if room > 0 else 1
                    fin = False
        off = seq - self.snd_buf_seq
        buf = self.snd_buf
        payload = buf[off:off + n]
        flags = ACK
        if off + n >= len(buf):
            flags |= PSH
        if fin:
            flags |= FIN
        window = self._receive_window()
        now = self.timers.now
        snd_max = self.snd_max
        end = seq + n + (1 if fin else 0)
        if seq < snd_max:
            self.retransmits += 1
            self.counters["tcp.retransmitted_segments"] += 1
            if self.rtt_seq >= 0 and seq < self.rtt_seq:
                self.rtt_seq = -1          # Karn: never time a retransmitted segment
        else:
            if snd_max == self.snd_una:
                self.una_time = now
            if self.rtt_seq < 0 and not self.ts_ok:
                self.rtt_seq = end
                self.rtt_time = now
        if end > snd_max:
            self.snd_max = end
        self.ack_pending = False
        self.t_delack.stop()
        rcv_nxt = self.rcv_nxt
        self.last_ack_sent = rcv_nxt
        if ts_only:
            self._ip_send(self._ts_segment(seq & MASK, flags, window, payload))
        else:
            self._ip_send(build_fast(self._psum, self._lport, self._rport, seq & MASK,
                                     rcv_nxt & MASK, flags, window, options, payload))
        if self.t_rto.deadline is None:
            self.t_rto.set(now + self.rtt.rto)
        return n

    def _ts_segment(self, seq32: int, flags: int, window: int,
                    payload: bytes | bytearray) -> bytes:
        """A segment whose only option is the timestamp (the bulk case): one fixed
        header layout and the checksum done inline (the header is 32 bytes, so
        the payload's words continue the header's, see wire.checksum)."""
        tsval = (int(self.timers.now * 1000) + self.ts_offset) & MASK
        ack32 = self.rcv_nxt & MASK
        lport = self._lport
        rport = self._rport
        ts_recent = self.ts_recent
        hdr = _HDR_TS.pack(lport, rport, seq32, ack32, 0x8000 | flags, window, 0, 0,
                           0x0101080A, tsval, ts_recent)
        plen = len(payload)
        value = int.from_bytes(hdr, "big") + self._psum + 32 + plen
        if plen:
            value += int.from_bytes(payload, "big") << 8 if plen & 1 else \
                int.from_bytes(payload, "big")
        r = value % 0xFFFF
        return _HDR_TS.pack(lport, rport, seq32, ack32, 0x8000 | flags, window,
                            (~r & 0xFFFF) if r else 0, 0, 0x0101080A, tsval,
                            ts_recent) + payload

    def _send_tso(self, seq: int, count: int, path: Any) -> int:
        """Send ``count`` full segments of new data from ``seq`` as one TSO
        super-segment (``stack.ipv4.output_offload``): the same headers the
        per-segment path writes (the kernel copies ours to every piece and keeps
        PSH for the last), the checksum left partial. Sequence space, the RTT
        sample (the first segment's, as that path times it), ``segs_out`` and the
        timers are accounted exactly as for ``count`` calls of ``_send_data``.
        Returns the bytes sent."""
        mss = self.mss
        n = count * mss
        off = seq - self.snd_buf_seq
        buf = self.snd_buf
        payload = buf[off:off + n]
        flags = ACK | PSH if off + n >= len(buf) else ACK
        window = self._receive_window()
        now = self.timers.now
        if self.snd_max == self.snd_una:
            self.una_time = now
        if self.rtt_seq < 0 and not self.ts_ok:
            self.rtt_seq = seq + mss
            self.rtt_time = now
        self.snd_max = seq + n
        self.ack_pending = False
        self.t_delack.stop()
        rcv_nxt = self.rcv_nxt
        self.last_ack_sent = rcv_nxt
        if self.ts_ok:
            hlen = 32
            partial = (self._psum + hlen + n) % 0xFFFF
            tsval = (int(now * 1000) + self.ts_offset) & MASK
            hdr = _HDR_TS.pack(self._lport, self._rport, seq & MASK, rcv_nxt & MASK,
                               0x8000 | flags, window, partial, 0, 0x0101080A, tsval,
                               self.ts_recent)
        else:
            hlen = 20
            partial = (self._psum + hlen + n) % 0xFFFF
            hdr = _HDR_PLAIN.pack(self._lport, self._rport, seq & MASK, rcv_nxt & MASK,
                                  0x5000 | flags, window, partial, 0)
        self.segs_out += count
        self.last_tx = now
        self.counters["tcp.tso_sent"] += 1
        self.tcp.ipv4.output_offload(path, self._laddr, self._raddr, hdr + payload, mss, hlen)
        if self.t_rto.deadline is None:
            self.t_rto.set(now + self.rtt.rto)
        return n

    def _send_fin_only(self, seq: int) -> None:
        window = self._receive_window()
        if seq < self.snd_max:
            self.retransmits += 1
            self.counters["tcp.retransmitted_segments"] += 1
        elif self.snd_max == self.snd_una:
            self.una_time = self.timers.now
        if seq + 1 > self.snd_max:
            self.snd_max = seq + 1
        self.ack_pending = False
        self.t_delack.stop()
        self.last_ack_sent = self.rcv_nxt
        self._ip_send(build_fast(self._psum, self._lport, self._rport, seq & MASK,
                                 self.rcv_nxt & MASK, FIN | ACK, window, self._options(), b""))
        if self.t_rto.deadline is None:
            self.t_rto.set(self.timers.now + self.rtt.rto)

    def _retransmit(self, seq: int, end: int) -> int:
        """Resend from ``seq`` (at most one segment, up to ``end``); returns the
        sequence space covered."""
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        limit = min(end, seq + self.mss, buf_end)
        n = limit - seq
        fin = self.fin_queued and seq + (n if n > 0 else 0) == self.fin_seq and \
            end > self.fin_seq and self.snd_max > self.fin_seq
        if n > 0:
            sent = self._send_data(seq, n, fin)
            return sent + (1 if fin and sent == n else 0)
        if fin:
            self._send_fin_only(seq)
            return 1
        return 0

    def _output(self) -> None:
        """Send what the windows, Nagle and SWS avoidance allow (RFC 9293 3.8.6,
        RFC 896, RFC 5681); RFC 6675 NextSeg during SACK recovery."""
        if self.state not in _SENDING:
            return
        if self.in_recovery == SACK_RECOVERY:
            self._sack_output()
            return
        una = self.snd_una
        cc = self.cc
        if una == self.snd_max and self.timers.now - self.last_tx > self.rtt.rto:
            cc.after_idle()
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        mss = self.mss
        wnd_end = una + self.snd_wnd
        cwnd_end = una + cc.cwnd
        limit = wnd_end if wnd_end < cwnd_end else cwnd_end
        fin_seq = self.fin_seq if self.fin_queued else -1
        sb = self.sb
        tso: Any = None             # the offload path, looked up when first useful
        tso_max = (TSO_MAX_PAYLOAD - (_TS_LEN if self.ts_ok else 0)) // mss
        while True:
            nxt = self.snd_nxt
            snd_max = self.snd_max
            if nxt < buf_end:
                stop = buf_end
                if nxt < snd_max and sb:
                    # Resending after a timeout: skip what the receiver holds.
                    nxt, block = sb.skip(nxt)
                    if block >= 0 and block < stop:
                        stop = block
                    if nxt != self.snd_nxt:
                        self.snd_nxt = nxt
                        continue
                n = stop - nxt
                if n > mss:
                    n = mss
                if nxt + n > limit:
                    n = limit - nxt
                if n <= 0:
                    break
                if n < mss and nxt >= snd_max:
                    if nxt + n < buf_end:
                        # Limited by a window, not by data: wait for a better one
                        # (sender SWS avoidance, RFC 9293 3.8.6.2.1), or for ACKs.
                        if limit == cwnd_end or n < (self.max_snd_wnd >> 1):
                            break
                    elif not self._nodelay and snd_max > una and fin_seq != buf_end:
                        break               # Nagle (RFC 896, RFC 9293 3.7.4)
                fin = fin_seq == nxt + n and (nxt + n < limit or nxt + n < snd_max)
                if n == mss and nxt >= snd_max and not fin and tso is not False:
                    # New data, at least two full segments: one TSO write when
                    # the route's device offloads (the accounting stays per MSS).
                    room = (stop if stop < limit else limit) - nxt
                    count = room // mss
                    if count > tso_max:
                        count = tso_max
                    if nxt + count * mss == fin_seq:
                        count -= 1          # the last one carries the FIN: send it alone
                    if count >= 2 and not (self.sack_ok and self.ooo.blocks):
                        if tso is None:
                            tso = self.stack.ipv4.offload_path(self._raddr, self._laddr) \
                                if self.stack.ipv4 is not None else None
                            tso = tso or False
                        if tso is not False:
                            self.snd_nxt = nxt + self._send_tso(nxt, count, tso)
                            continue
                sent = self._send_data(nxt, n, fin)
                self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
            elif fin_seq >= 0 and nxt == fin_seq and (nxt < snd_max or nxt < wnd_end):
                self._send_fin_only(nxt)
                self.snd_nxt = nxt + 1
            else:
                break
        self._check_persist(buf_end, fin_seq)

    def _check_persist(self, buf_end: int, fin_seq: int) -> None:
        """Nothing in flight but something to send: the persist timer keeps asking
        for window (RFC 9293 3.8.6.1) and overrides SWS avoidance."""
        nxt = self.snd_nxt
        if self.snd_max == self.snd_una and (nxt < buf_end or nxt == fin_seq):
            if self.t_persist.deadline is None:
                if self.persist_backoff == 0:
                    self.persist_start = self.timers.now
                self.t_persist.set(self.timers.now + self._persist_interval())

    def _persist_interval(self) -> float:
        base = max(self.rtt.base_rto, self.config.rto_min)
        backoff = self.persist_backoff
        interval = base * (1 << backoff) if backoff < 32 else self.config.rto_max
        return interval if interval < self.config.rto_max else self.config.rto_max

    def _sack_output(self) -> None:
        """RFC 6675 5 steps (C): while cwnd - pipe >= 1 SMSS, send NextSeg()."""
        cfg = self.config
        una = self.snd_una
        mss = self.mss
        sb = self.sb
        holes = sb.holes(una, mss, cfg.dupthresh)
        pipe = sb.pipe(holes, self.snd_max, self.high_rxt)
        cwnd = self.cc.cwnd
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        wnd_end = una + self.snd_wnd
        fin_seq = self.fin_seq if self.fin_queued else -1
        while cwnd - pipe >= mss:
            cand = sb.next_hole(holes, self.high_rxt, True)          # rule 1
            if cand is None:
                nxt = self.snd_nxt
                if nxt < buf_end and nxt < wnd_end:                  # rule 2
                    n = min(mss, buf_end - nxt, wnd_end - nxt)
                    fin = fin_seq == nxt + n and nxt + n < wnd_end
                    sent = self._send_data(nxt, n, fin)
                    self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
                    pipe += sent
                    continue
                if fin_seq >= 0 and nxt == fin_seq and nxt < wnd_end:
                    self._send_fin_only(nxt)
                    self.snd_nxt = nxt + 1
                    pipe += 1
                    continue
                cand = sb.next_hole(holes, self.high_rxt, False)     # rule 3
                if cand is None:
                    break
            start, end = cand
            sent = self._retransmit(start, end)
            if sent <= 0:
                break
            self.high_rxt = start + sent
            pipe += sent

    def _queue_fin(self) -> None:
        """CLOSE/SHUT_WR: the FIN follows the queued data (RFC 9293 3.10.4)."""
        if self.fin_queued:
            return
        self.fin_queued = True
        self.fin_seq = self.snd_buf_seq + len(self.snd_buf)
        st = self.state
        if st == ESTABLISHED:
            self.state = FIN_WAIT_1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        # SYN_SENT / SYN_RECEIVED: sent once established (see _established).
        self._output()

    # ================================================================ timers
    def _on_rto(self) -> None:
        """The retransmission timer expired (RFC 6298 5.4-5.6, RFC 5681 3.1)."""
        st = self.state
        now = self.timers.now
        cfg = self.config
        counters = self.counters
        if st == SYN_SENT or st == SYN_RECEIVED:
            limit = cfg.syn_retries if st == SYN_SENT or self.listener is None \
                else cfg.synack_retries
            if self.retries >= limit or (self.user_timeout and
                                         now - self.una_time >= self.user_timeout):
                counters["tcp.handshake_timeout"] += 1
                if self.listener is not None:
                    self._destroy()
                else:
                    self._fail(self.soft_error or errno.ETIMEDOUT)
                self._flush()
                return
            self.retries += 1
            self.rtt.backoff += 1
            self.rtt_seq = -1
            counters["tcp.syn_retransmits"] += 1
            self._send_syn(ack=st == SYN_RECEIVED)
            self.t_rto.set(now + self.rtt.rto)
            return
        if st not in _SENDING or self.snd_max == self.snd_una:
            return
        if (self.user_timeout and now - self.una_time >= self.user_timeout) or \
                self.retries >= cfg.retries2:
            counters["tcp.retransmit_timeout_abort"] += 1
            self._fail(errno.ETIMEDOUT if self.user_timeout or not self.soft_error
                       else self.soft_error)
            self._flush()
            return
        counters["tcp.rto_expired"] += 1
        self.retries += 1
        una = self.snd_una
        self.cc.on_timeout(self.snd_max - una, first=self.retries == 1)
        self.in_recovery = NO_RECOVERY
        self.recover = self.snd_max
        self.dupacks = 0
        self.sb.clear()      # RFC 2018 8: the receiver may have reneged
        self.high_rxt = una
        self.rtt.backoff += 1
        self.rtt_seq = -1
        # Go back to SND.UNA; the first segment goes out even into a closed window,
        # but no further than an open one reaches (as Linux).
        self.snd_nxt = una
        end = una + self.mss
        if 0 < self.snd_wnd < self.mss:
            end = una + self.snd_wnd
        sent = self._retransmit(una, end)
        self.snd_nxt = una + sent
        self._output()
        rto = self.rtt.rto
        if self.user_timeout:
            left = self.user_timeout - (now - self.una_time)
            if left < rto:
                rto = max(left, 0.001)
        self.t_rto.set(now + rto)
        self._flush()

    def _on_persist(self) -> None:
        """Zero-window probing with exponential backoff (RFC 9293 3.8.6.1, RFC 1122
        4.2.2.17); also the SWS override timer (3.8.6.2.1)."""
        st = self.state
        if st not in _SENDING or self.snd_max != self.snd_una:
            return
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        fin_seq = self.fin_seq if self.fin_queued else -1
        nxt = self.snd_nxt
        if not (nxt < buf_end or nxt == fin_seq):
            return
        now = self.timers.now
        if (self.user_timeout and now - self.persist_start >= self.user_timeout) or \
                self.probes >= self.config.retries2:
            self.counters["tcp.persist_timeout_abort"] += 1
            self._fail(errno.ETIMEDOUT)
            self._flush()
            return
        usable = self.snd_una + self.snd_wnd - nxt
        if usable > 0 and nxt < buf_end:
            n = min(usable, buf_end - nxt, self.mss)
            self.counters["tcp.sws_override"] += 1
            fin = fin_seq == nxt + n and n < usable
            sent = self._send_data(nxt, n, fin)
            self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
        elif usable > 0:
            self._send_fin_only(nxt)
            self.snd_nxt = nxt + 1
        else:
            self.counters["tcp.window_probes"] += 1
            self._send_probe()
            self.probes += 1
        self.persist_backoff += 1
        if self.snd_max == self.snd_una:
            self.t_persist.set(now + self._persist_interval())

    def _on_delack(self) -> None:
        if self.ack_pending and self.state != CLOSED:
            self.counters["tcp.delayed_acks"] += 1
            self._send_ack()

    def _on_keepalive(self) -> None:
        """RFC 9293 3.8.4 / RFC 1122 4.2.3.6 keep-alives, with Linux's knobs."""
        st = self.state
        if not self._keepalive or st not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2):
            return
        now = self.timers.now
        if self.snd_max != self.snd_una or self.snd_buf_seq + len(self.snd_buf) > self.snd_nxt:
            self.t_keepalive.set(now + self.keepalive_idle)
            return
        idle = now - self.last_rx
        if idle < self.keepalive_idle:
            self.ka_probes = 0
            self.t_keepalive.set(self.last_rx + self.keepalive_idle)
            return
        if self.ka_probes >= self.keepalive_count or (
                self.user_timeout and idle >= self.user_timeout and self.ka_probes > 0):
            self.counters["tcp.keepalive_timeout"] += 1
            self._send_rst(self.snd_max, with_ack=True)     # as Linux's keepalive timer
            self._fail(errno.ETIMEDOUT)
            self._flush()
            return
        self.counters["tcp.keepalive_probes"] += 1
        self._send_probe()
        self.ka_probes += 1
        self.t_keepalive.set(now + self.keepalive_interval)

    def _on_close_timer(self) -> None:
        """TIME_WAIT's 2 MSL ran out, or an orphan waited too long in FIN_WAIT_2."""
        st = self.state
        if st == TIME_WAIT or (st == FIN_WAIT_2 and self.orphaned):
            self.counters["tcp.time_wait_done" if st == TIME_WAIT else
                          "tcp.fin_wait_2_timeout"] += 1
            self._destroy()

    # ================================================================ teardown
    def _enter_time_wait(self) -> None:
        tcp = self.tcp
        if tcp.time_wait_count >= self.config.max_time_wait:
            # Linux's "time wait bucket table overflow": close at once instead.
            self.counters["tcp.time_wait_overflow"] += 1
            self._destroy()
            return
        tcp.time_wait_count += 1
        self.state = TIME_WAIT
        self._ev = True
        self.t_rto.cancel()
        self.t_persist.cancel()
        self.t_keepalive.cancel()
        self.t_delack.cancel()
        self.snd_buf = bytearray()
        if self.ooo.blocks:
            self.ooo.clear()
            self.tcp._ooo_changed()
        self.t_close.set(self.timers.now + 2 * self.config.msl)

    def _fail(self, err: int, notify: bool = True) -> None:
        """The connection is gone with an error for the program."""
        self.error = err
        self._error_reported = False
        self._destroy()
        if notify:
            self._ev = True

    def _destroy(self) -> None:
        """Enter CLOSED and release everything but what the program may still read."""
        was = self.state
        if was == TIME_WAIT:
            self.tcp.time_wait_count -= 1
        self.state = CLOSED
        self.t_rto.cancel()
        self.t_persist.cancel()
        self.t_keepalive.cancel()
        self.t_delack.cancel()
        self.t_close.cancel()
        self.snd_buf = bytearray()
        if self.ooo.blocks:
            self.ooo.clear()
            self.tcp._ooo_changed()
        self.tcp._remove(self)
        if was != CLOSED:
            self._ev = True

    # ================================================================ ICMP
    def icmp_error(self, seq32: int, err: int, icmp_type: int, icmp_code: int,
                   mtu: int) -> None:
        """RFC 5927 checks, then PMTU (RFC 1191), hard errors during the handshake
        (as Linux), soft errors otherwise (RFC 1122 4.2.3.9)."""
        una = self.snd_una
        seq = una + ((seq32 - una + HALF) & MASK) - HALF
        if not una <= seq <= self.snd_max:
            self.counters["tcp.icmp_out_of_window"] += 1
            return
        if mtu:
            overhead = 40 if len(self._raddr) == 4 else 60
            new_base = max(mtu, 576 if len(self._raddr) == 4 else 1280) - overhead
            if new_base < self.mss_base:
                self.counters["tcp.pmtu_reduced"] += 1
                self.adv_mss = min(self.adv_mss, new_base)
                self._set_mss_base(new_base)
                if self.state in _SENDING and self.snd_max > self.snd_una:
                    self.snd_nxt = self.snd_una
                    self._output()
            return
        st = self.state
        if st == SYN_SENT:
            self._fail(err)
            self._flush()
        elif st == SYN_RECEIVED and self.listener is not None:
            self._destroy()
        else:
            self.soft_error = err
