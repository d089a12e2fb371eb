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
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from femtotcp.proto.tcp.buffers import OutOfOrderQueue
from femtotcp.proto.tcp.connection import TcpConnection
from femtotcp.proto.tcp.seq import MASK
from femtotcp.proto.tcp.state import CLOSED, TIME_WAIT
from femtotcp.proto.tcp.timers import _UNARMED
from femtotcp.wire.tcp import ACK, build_fast

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
    """The receive side in TIME-WAIT: the FIN was received, nothing is held."""

    __slots__ = ("irs", "rcv_nxt", "rcv_adv", "last_oow_ack", "rcv_mss", "bytes_received")
    rcv_buf = b""
    ooo = _NO_OOO
    fin_received = True
    rd_shut = True
    rcvbuf = 0

    def __init__(self, irs: int, rcv_nxt: int, rcv_adv: int, last_oow_ack: float,
                 rcv_mss: int, bytes_received: int) -> None:
        self.irs = irs
        self.rcv_nxt = rcv_nxt
        self.rcv_adv = rcv_adv
        self.last_oow_ack = last_oow_ack
        self.rcv_mss = rcv_mss
        self.bytes_received = bytes_received


class TimeWait(TcpConnection):
    """A closed connection in TIME-WAIT (see the module's docstring); the layer
    makes one with ``Tcp._adopt_time_wait`` and ends it (``_destroy``) when
    ``deadline`` has passed."""

    __slots__ = ("deadline", "window", "_orig")

    def __init__(self, conn: TcpConnection, deadline: float) -> None:  # noqa: D107
        # Not TcpConnection.__init__: the record is made from the connection.
        self.env = conn.env
        self.counters = conn.counters
        self.timers = conn.timers
        self.config = conn.config
        self.listener = None
        self.local = conn.local
        self.remote = conn.remote
        self.key = conn.key
        self._laddr = conn._laddr
        self._lport = conn._lport
        self._raddr = conn._raddr
        self._rport = conn._rport
        self._psum = conn._psum
        self.state = TIME_WAIT           # born in it (the connection entered it)
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
            rcv.bytes_received)
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

    def _destroy(self) -> None:
        """TIME-WAIT ends (2 MSL, a RST, a SYN reusing the 4-tuple): the
        record leaves the table; the connection object the program held, if
        any still does, enters CLOSED too (its trace hook sees it)."""
        if self.state != TIME_WAIT:
            return
        self.env.time_wait_count -= 1
        orig = self._orig()
        if orig is not None and orig.state == TIME_WAIT:
            self.on_state = None
            orig._set_state(CLOSED)
        self._set_state(CLOSED)
        self.env.forget(self)


__all__ = ["TimeWait"]
