"""TIME-WAIT as a compact record, as Linux keeps a small tcp_timewait_sock in
place of the full socket.

A connection the program has closed (orphaned) that enters TIME-WAIT is
replaced in the layer's 4-tuple table by a ``TimeWait``: a ``TcpConnection``
with its sender and receiver swapped for two small records (``_TwSnd``,
``_TwRcv``) holding what TIME-WAIT still uses, the negotiated options, the
RTT estimator and congestion state it had (for ``info``), and no timers of
its own: the layer expires records in arrival order, 2 MSL after each
(``Tcp._time_wait_expire``). Everything TIME-WAIT does is the connection's
own code (``TcpConnection._input_time_wait``, ``timewait_accepts_syn``,
``icmp_error``, ``info``), so it behaves as before: a retransmitted FIN is
ACKed again and restarts 2 MSL, a RST with the exact sequence number ends it
(unless RFC 1337 protection is on), a SYN gets a challenge ACK unless the
layer lets it reuse the 4-tuple (RFC 6191), anything else an ACK, rate
limited. The connection object the program held stays readable: it shows
TIME_WAIT, and CLOSED once the record ends (a weak reference, so an object
nobody holds is freed at once).

An orphan in FIN_WAIT_2 (our FIN acknowledged, the peer's still to come) is
kept the same way, for ``fin_timeout`` (Linux's tcp_time_wait with the
FIN_WAIT2 substate), with the connection's rules for what can still arrive
there (``_input_fin_wait_2``): the peer's FIN is ACKed and the record goes on
in TIME-WAIT for 2 MSL; data for the closed socket is answered with a RST
and ends it; an exact RST ends it; the record ends silently when
``fin_timeout`` runs out (``tcp.fin_wait_2_timeout``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from femtotcp.proto.tcp.buffers import OutOfOrderQueue
from femtotcp.proto.tcp.connection import _DROPPED, TcpConnection
from femtotcp.proto.tcp.seq import MASK, unwrap
from femtotcp.proto.tcp.state import CLOSED, FIN_WAIT_2, TIME_WAIT
from femtotcp.proto.tcp.timers import _UNARMED
from femtotcp.wire.tcp import (
    ACK,
    FIN,
    NO_OPTIONS,
    RST,
    URG,
    TcpHeader,
    build_fast,
    parse_options,
)

if TYPE_CHECKING:
    from femtotcp.proto.tcp.congestion import CongestionControl
    from femtotcp.proto.tcp.recovery import Recovery
    from femtotcp.proto.tcp.rtt import RttEstimator

#: What a closed connection holds out of order, queued and unread: nothing.
_NO_OOO = OutOfOrderQueue(0, 0)


class _TwSnd:
    """The send side in TIME-WAIT: everything was sent and acknowledged."""

    __slots__ = ("iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "max_snd_wnd", "rtt",
                 "cc", "recovery", "retransmits", "bytes_acked")
    snd_buf = b""
    sndbuf = 0
    in_recovery = False
    fin_queued = True

    def __init__(self, iss: int, snd_max: int, snd_wnd: int, max_snd_wnd: int,
                 rtt: RttEstimator, cc: CongestionControl, recovery: Recovery,
                 retransmits: int, bytes_acked: int) -> None:
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = snd_max
        self.snd_wnd = snd_wnd
        self.max_snd_wnd = max_snd_wnd
        self.rtt = rtt
        self.cc = cc
        self.recovery = recovery
        self.retransmits = retransmits
        self.bytes_acked = bytes_acked


class _TwRcv:
    """The receive side in TIME-WAIT (the FIN was received) or FIN_WAIT_2 (it
    is still to come): nothing is held."""

    __slots__ = ("irs", "rcv_nxt", "rcv_adv", "last_oow_ack", "rcv_mss", "bytes_received",
                 "fin_received", "last_ack_sent")
    rcv_buf = b""
    ooo = _NO_OOO
    rd_shut = True
    rcvbuf = 0
    delack_due = False

    def __init__(self, irs: int, rcv_nxt: int, rcv_adv: int, last_oow_ack: float,
                 rcv_mss: int, bytes_received: int, fin_received: bool,
                 last_ack_sent: int) -> None:
        self.irs = irs
        self.rcv_nxt = rcv_nxt
        self.rcv_adv = rcv_adv
        self.last_oow_ack = last_oow_ack
        self.rcv_mss = rcv_mss
        self.bytes_received = bytes_received
        self.fin_received = fin_received
        self.last_ack_sent = last_ack_sent


class TimeWait(TcpConnection):
    """A closed connection in TIME-WAIT or FIN_WAIT_2 (see the module's
    docstring); the layer makes one with ``Tcp._adopt_time_wait`` and ends it
    (``_destroy``) when ``deadline`` has passed."""

    __slots__ = ("deadline", "window", "_orig")

    def __init__(self, conn: TcpConnection, deadline: float) -> None:  # noqa: D107
        # Not TcpConnection.__init__: the record is made from the connection.
        self.env = conn.env
        self.counters = conn.counters
        self.timers = conn.timers
        self.config = conn.config
        self.listener = None
        self.snd_up = None           # (its urgent data, if any, was acknowledged)
        self.local = conn.local
        self.remote = conn.remote
        self.key = conn.key
        self._laddr = conn._laddr
        self._lport = conn._lport
        self._raddr = conn._raddr
        self._rport = conn._rport
        self._psum = conn._psum
        self.state = conn.state          # TIME_WAIT or FIN_WAIT_2, as the connection
        self.reuse = conn.reuse          # (Linux's tw_reuse: the bind rules read it)
        snd = conn.snd
        rcv = conn.rcv
        #: The window field of our ACKs: what the connection offers now (its
        #: receive buffer is empty and RCV.NXT stays put, so it never changes).
        self.window = rcv.window()
        # Stand-ins for the Sender and Receiver: they hold what the
        # connection's TIME_WAIT code, icmp_error, info and the facade read.
        self.snd = _TwSnd(  # type: ignore[assignment]
            snd.iss, snd.snd_max, snd.snd_wnd, snd.max_snd_wnd, snd.rtt, snd.cc,
            snd.recovery, snd.retransmits, snd.bytes_acked)
        self.rcv = _TwRcv(  # type: ignore[assignment]
            rcv.irs, rcv.rcv_nxt, rcv.rcv_adv, rcv.last_oow_ack, rcv.rcv_mss,
            rcv.bytes_received, rcv.fin_received, rcv.last_ack_sent)
        self.opt = conn.opt
        self.on_event = None
        self.on_state = conn.on_state
        self.error = None
        self._error_reported = True
        self.soft_error = conn.soft_error
        self.wr_shut = True
        self.orphaned = True
        self._ev = False
        self._listener_ev = False
        self._flush_deferred = False
        self.last_rx = conn.last_rx
        self.last_tx = conn.last_tx
        self.segs_in = conn.segs_in
        self.segs_out = conn.segs_out
        self.t_keepalive = self.t_close = _UNARMED      # the layer ends the record
        self.deadline = deadline
        self._orig = weakref.ref(conn)
        self._tw = None

    def _send_ack(self) -> None:
        """The connection's pure ACK <SEQ=SND.MAX><ACK=RCV.NXT>, its window as it was."""
        if self.opt.ts_ok:
            self._send_ts(self.snd.snd_max & MASK, ACK, self.window, b"")
            return
        self._ip_send(build_fast(self._psum, self._lport, self._rport, self.snd.snd_max & MASK,
                                 self.rcv.rcv_nxt & MASK, ACK, self.window, b"", b""))

    def _restart_time_wait(self) -> None:
        self.deadline = self.timers.now + 2 * self.config.msl

    def input(self, hdr: TcpHeader, payload: memoryview) -> None:
        if self.state == FIN_WAIT_2:
            self.segs_in += 1
            self._input_fin_wait_2(hdr, payload)
        else:
            TcpConnection.input(self, hdr, payload)

    def _input_fin_wait_2(self, hdr: TcpHeader, payload: memoryview) -> None:
        """What ``_input_synchronized`` does in FIN_WAIT_2 for an orphan whose
        data and FIN were all acknowledged (RFC 9293 3.10.7.4, RFC 5961, RFC
        7323 PAWS): the same checks in the same order, the same counters."""
        flags = hdr.flags
        counters = self.counters
        if hdr.options:
            opts = parse_options(hdr.options)
            if opts.bad:
                counters[opts.bad] += 1
        else:
            opts = NO_OPTIONS
        now = self.timers.now
        self.last_rx = now
        rcv = self.rcv
        rcv_nxt = rcv.rcv_nxt
        seq = unwrap(hdr.seq, rcv_nxt)
        plen = len(payload)
        verdict = self._check_sequence(flags, opts, seq, plen, now)
        if verdict is not None:
            if verdict is _DROPPED or (flags & ACK and not self._ack_ok(hdr.ack)):
                return
            if plen or flags & FIN:
                self._send_ack()
            else:
                self._send_dupack(False)
            return
        if flags & RST:
            if seq == rcv_nxt:
                counters["tcp.reset_received"] += 1
                self._destroy()
            else:
                counters["tcp.rst_challenged"] += 1
                self._challenge_ack()
            return
        if not self._check_syn_ack_bit(flags, seq, opts, now) or not self._ack_ok(hdr.ack):
            return
        if flags & URG:
            counters["tcp.urgent"] += 1
        if plen:
            # Data for a closed socket: Linux resets (RFC 9293 3.10.7.4 text).
            counters["tcp.data_after_close"] += 1
            self._send_rst(self.snd.snd_max, with_ack=False)
            self._destroy()
            return
        if flags & FIN:
            if seq != rcv_nxt:
                self._send_dupack(False)        # a FIN out of order: ACK what we have
                return
            rcv.rcv_nxt = rcv_nxt + 1
            rcv.fin_received = True
            self._fin_to_time_wait()

    def _ack_ok(self, ack32: int) -> bool:
        """The ACK field's checks (RFC 5961 5.2): everything we sent is
        acknowledged, so only an ACK of unsent data or a too old one matters."""
        snd = self.snd
        ack = unwrap(ack32, snd.snd_una)
        if ack > snd.snd_max:
            self.counters["tcp.ack_unsent_data"] += 1
        elif ack < snd.snd_una - snd.max_snd_wnd:
            self.counters["tcp.ack_too_old"] += 1
        else:
            return True
        self._challenge_ack()
        return False

    def _fin_to_time_wait(self) -> None:
        """The peer's FIN in FIN_WAIT_2: ACK it and go on in TIME-WAIT for 2 MSL
        (or end at once when the TIME-WAIT table is full, as the connection)."""
        env = self.env
        self._send_ack()
        rcv = self.rcv
        rcv.last_ack_sent = rcv.rcv_nxt
        if env.time_wait_count >= self.config.max_time_wait:
            self.counters["tcp.time_wait_overflow"] += 1
            self._destroy()
            return
        env.time_wait_count += 1
        orig = self._orig()
        if orig is not None and orig.state == FIN_WAIT_2:
            orig._set_state(TIME_WAIT)   # the trace hooks see the program's object
            hook, self.on_state = self.on_state, None
            self._set_state(TIME_WAIT)
            self.on_state = hook
        else:
            self._set_state(TIME_WAIT)
        deadline = self.timers.now + 2 * self.config.msl
        old = self.deadline
        self.deadline = deadline
        if deadline < old:
            env.requeue_time_wait(self)  # sooner than fin_timeout: queue it again

    def _destroy(self) -> None:
        """TIME-WAIT (or FIN_WAIT_2) ends (2 MSL or fin_timeout, a RST, a SYN
        reusing the 4-tuple, data for the closed socket): the record leaves
        the table; the connection object the program held, if any still
        does, enters CLOSED too (its trace hook sees it)."""
        st = self.state
        if st != TIME_WAIT and st != FIN_WAIT_2:
            return
        if st == TIME_WAIT:
            self.env.time_wait_count -= 1
        orig = self._orig()
        if orig is not None and orig.state == st:
            self.on_state = None
            orig._set_state(CLOSED)
        self._set_state(CLOSED)
        self.env.forget(self)


__all__ = ["TimeWait"]
