"""The receive side of a connection: the receive buffer, the out-of-order
queue, the window we offer and when we ACK.

Window: receiver SWS avoidance (RFC 9293 3.8.6.2.2), a right edge that never
moves left, RFC 7323 2.3 scaling rounded up, and Linux's rule for window
updates after a read. ACKs: delayed (RFC 9293 3.8.6.3, RFC 5681 4.2) except in
quick-ack mode, for holes, filled holes and FINs, and for every second
full-sized segment; with ``ack_coalescing`` the ACK for a batch of full-sized
segments goes out once, at the end of the device batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from femtotcp.proto.tcp.buffers import OutOfOrderQueue, ReceiveQueue
from femtotcp.proto.tcp.state import CLOSED, RECEIVING
from femtotcp.proto.tcp.timers import _UNARMED, LazyTimer, _Unarmed
from femtotcp.wire.tcp import FIN

if TYPE_CHECKING:
    from femtotcp.proto.tcp.config import TcpConfig
    from femtotcp.proto.tcp.connection import TcpConnection
    from femtotcp.proto.tcp.env import TcpEnv
    from femtotcp.proto.tcp.options import Negotiated


class Receiver:
    """RCV.* of RFC 9293 3.3.1 (unwrapped, see ``seq``) and what hangs off them."""

    __slots__ = (
        "conn", "env", "opt", "counters", "config",
        "irs", "rcv_nxt", "rcv_adv", "rcv_buf", "ooo", "fin_received", "ooo_fin",
        "rcv_mss", "ack_pending", "ack_now", "_ack_deferred", "delack_due", "quickack",
        "last_ack_sent",
        "last_oow_ack", "rcvbuf", "rd_shut", "bytes_received", "t_delack",
        "autotune", "grown", "space", "space_seq", "space_time", "window_clamp",
        "urg_seq",
    )

    def __init__(self, conn: TcpConnection, env: TcpEnv, opt: Negotiated,
                 cfg: TcpConfig) -> None:
        self.conn = conn
        self.env = env
        self.opt = opt
        self.counters = env.counters
        self.config = cfg
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_buf = ReceiveQueue()
        self.ooo = OutOfOrderQueue(cfg.ooo_max_segments, cfg.ooo_max_bytes or cfg.rcvbuf)
        self.fin_received = False
        self.ooo_fin = -1
        self.rcv_mss = 536
        self.ack_pending = False
        self.ack_now = False
        self._ack_deferred = False
        #: A delayed ACK whose timer the caller arms (``arm_delack``).
        self.delack_due = False
        self.quickack = cfg.quickack_segments
        self.last_ack_sent = 0
        self.last_oow_ack = -1e9
        self.rcvbuf = cfg.rcvbuf
        #: TCP_WINDOW_CLAMP: the largest window to offer (0: the buffer's).
        self.window_clamp = 0
        #: Receive-buffer autotuning (``_grow``); off once the program sets SO_RCVBUF.
        self.autotune = cfg.rcvbuf_max > cfg.rcvbuf
        #: What autotuning added (counted in the stack-wide gauge until release).
        self.grown = 0
        #: The bytes the program took in the last measured round trip, the
        #: sequence number the current measure starts at, and when it started.
        self.space = 0
        self.space_seq = 0
        self.space_time = 0.0
        self.rd_shut = False
        self.bytes_received = 0
        #: The pending urgent byte's sequence number (-1: none), ``TcpConnection._urgent_mark``.
        self.urg_seq = -1
        #: Made when first set (a connection whose ACKs all go at once never
        #: delays one), dropped at release (it holds a bound method: a cycle).
        self.t_delack: LazyTimer | _Unarmed = _UNARMED

    def start(self, irs: int) -> None:
        """The peer's SYN took sequence number IRS."""
        self.irs = irs
        self.rcv_nxt = irs + 1

    def established(self) -> None:
        cfg = self.config
        self.ooo.max_bytes = cfg.ooo_max_bytes or self.rcvbuf
        self.quickack = cfg.quickack_segments
        # The first measure: half the buffer, which already holds twice that
        # (the rule ``_grow`` keeps), so taking less never grows it.
        self.space = self.rcvbuf // 2
        self.space_seq = self.rcv_nxt
        self.space_time = self.env.timers.now

    def release(self) -> None:
        """The connection is gone (or in TIME_WAIT): drop what is held out of order."""
        self.t_delack.cancel()
        self.t_delack = _UNARMED
        self.delack_due = False
        self.autotune = False
        if self.grown:
            self.counters["tcp.rcvbuf_autotuned"] -= self.grown
            self.grown = 0
        if self.ooo.blocks:
            self.ooo.clear()
            self.env.ooo_changed()

    def unlink(self, conn: TcpConnection) -> None:
        """The connection is finished with (``TcpConnection._unlink``): hold
        it through ``conn``, a weak proxy, so no cycle is left. Not while an
        end-of-batch ACK is still due (``_deferred_ack`` reads the state)."""
        if not self._ack_deferred:
            self.conn = conn

    # ---------------------------------------------------------------- text
    def fast_data(self, segment: memoryview, hlen: int, plen: int) -> None:
        """Header prediction's in-order data (the connection checked the rest)."""
        rcv_nxt = self.rcv_nxt
        self.rcv_buf.append(segment[hlen:])
        self.rcv_nxt = rcv_nxt + plen
        self.bytes_received += plen
        if plen > self.rcv_mss:
            limit = self.opt.rcv_mss_limit()
            self.rcv_mss = plen if plen < limit else limit
        self.ack_pending = True
        if self.quickack > 0:
            self.quickack -= 1
            self.ack_now = True

    def receive_text(self, seq: int, payload: memoryview | bytes, flags: int) -> None:
        """RFC 9293 3.10.7.4 seventh/eighth: queue in-order data, hold the rest."""
        n = len(payload)
        fin = flags & FIN
        right = self.rcv_adv
        counters = self.counters
        if seq + n > right:
            keep = right - seq
            if keep < 0:
                keep = 0
            payload = payload[:keep]
            n = keep
            fin = 0
            counters["tcp.data_beyond_window"] += 1
            self.ack_pending = True
            self.ack_now = True
        if n and n > self.rcv_mss:
            limit = self.opt.rcv_mss_limit()
            self.rcv_mss = n if n < limit else limit
        rcv_nxt = self.rcv_nxt
        if seq == rcv_nxt:
            if n:
                if not self.rd_shut:
                    self.rcv_buf.append(payload)
                else:
                    counters["tcp.data_discarded_shut_rd"] += n
                rcv_nxt += n
                self.bytes_received += n
                ooo = self.ooo
                if ooo.blocks:
                    chunks, new_nxt = ooo.pop_ready(rcv_nxt)
                    if not self.rd_shut:
                        for c in chunks:
                            self.rcv_buf.append_owned(c)
                    self.bytes_received += new_nxt - rcv_nxt
                    rcv_nxt = new_nxt
                    self.ack_now = True    # a hole was filled: ACK at once (RFC 5681 4.2)
                    self.env.ooo_changed()
                self.rcv_nxt = rcv_nxt
                self.conn._ev = True
                self.ack_pending = True
                if self.quickack > 0:
                    self.quickack -= 1
                    self.ack_now = True
            if fin:
                self.ooo_fin = seq + n
            if self.ooo_fin == self.rcv_nxt:
                self.conn._receive_fin()
        else:
            # Out of order: hold it and send a duplicate ACK at once (RFC 5681 4.2),
            # carrying SACK blocks.
            if n:
                ooo = self.ooo
                pruned = ooo.pruned
                if ooo.add(seq, payload):
                    self.env.ooo_changed()
                    if fin:
                        self.ooo_fin = seq + n
                else:
                    counters["tcp.ooo_dropped"] += 1
                if ooo.pruned != pruned:
                    # Blocks beyond this segment gave way (tcp_prune_ofo_queue; a
                    # FIN seen out of order keeps its place: RCV.NXT reaches it
                    # once the sender has resent what was dropped).
                    counters["tcp.ooo_pruned"] += ooo.pruned - pruned
                    self.env.ooo_changed()
            elif fin:
                self.ooo_fin = seq
            counters["tcp.ooo_segments"] += 1
            self.ack_pending = True
            self.ack_now = True

    def fin(self, ack_now: bool = True) -> None:
        """The peer's FIN is next in sequence: it takes one number. ACK it at
        once, or (``ack_now`` False: a passive close, see
        ``TcpConnection._receive_fin``) as a delayed ACK, which the program's
        own FIN, usually close behind, then carries."""
        self.rcv_nxt += 1
        self.fin_received = True
        self.ooo_fin = -1
        self.ack_pending = True
        if ack_now:
            self.ack_now = True

    def read(self, n: int) -> bytes:
        """Take up to ``n`` buffered bytes (the buffer is not empty)."""
        data = self.rcv_buf.take(n)
        self._after_read()
        return data

    def _after_read(self) -> None:
        """The program consumed data: offer more window when it grew a lot
        (Linux's tcp_cleanup_rbuf rule: at least double a window under half),
        after growing the buffer when the program reads fast (``_grow``)."""
        if self.conn.state not in RECEIVING or self.fin_received:
            return
        if self.autotune and self.env.timers.now - self.space_time >= self._period():
            self._grow()
        current = self.rcv_adv - self.rcv_nxt
        clamp = min(self.rcvbuf, 0xFFFF << self.opt.rcv_wscale)
        if 2 * current <= clamp:
            new = min(self.rcvbuf - self.rcv_buf.nbytes, clamp)
            threshold = min(self.rcvbuf // 2, self.opt.adv_mss)
            if new >= 2 * current and new - current >= threshold:
                self.counters["tcp.window_update"] += 1
                self.conn._send_ack()

    def _period(self) -> float:
        """A measure of ``_grow`` lasts a round trip (the connection's smoothed
        RTT), and at least the timestamp clock's tick, which RTTs on a local link
        fall under."""
        srtt = self.conn.snd.rtt.srtt
        tick = self.config.clock_granularity
        return tick if srtt is None or srtt < tick else srtt

    def _grow(self) -> None:
        """Receive-buffer autotuning, Linux's dynamic right-sizing
        (tcp_rcv_space_adjust): once a round trip, compare what the program
        took in it with what it took in the last one that grew (at first half
        the buffer). More means the sender may have been held back by our
        window: the buffer grows to twice what was taken plus 16 segments, at
        most doubling at a time, never past ``rcvbuf_max`` or what the window
        scale can offer, and all connections' growth together never past
        ``rcvbuf_autotune_total`` (the gauge ``tcp.rcvbuf_autotuned``, given
        back at ``release``). The buffer never shrinks, and SO_RCVBUF (a size
        the program chose) turns this off, as Linux's SOCK_RCVBUF_LOCK."""
        seq = self.rcv_nxt - self.rcv_buf.nbytes       # what the program took up to
        copied = seq - self.space_seq
        space = self.space
        if copied > space:
            win = 2 * copied + 16 * self.opt.adv_mss
            if win > 2 * self.rcvbuf:
                # At most a doubling a measure, as a sender in slow start
                # doubles its rate: a burst taken once (a socket pair the
                # program has not read yet filling up) grows it by no more.
                win = 2 * self.rcvbuf
            cfg = self.config
            cap = min(cfg.rcvbuf_max, 0xFFFF << self.opt.rcv_wscale)
            add = (win if win < cap else cap) - self.rcvbuf
            if add > 0:
                counters = self.counters
                room = cfg.rcvbuf_autotune_total - counters["tcp.rcvbuf_autotuned"]
                if add > room:
                    add = room
                    counters["tcp.rcvbuf_grow_limited"] += 1
                if add > 0:
                    self.rcvbuf += add
                    self.grown += add
                    counters["tcp.rcvbuf_autotuned"] += add
                    counters["tcp.rcvbuf_grown"] += 1
                    if not cfg.ooo_max_bytes:
                        self.ooo.max_bytes = self.rcvbuf
            self.space = copied
        self.space_seq = seq
        self.space_time = self.env.timers.now

    # ---------------------------------------------------------------- window
    def window(self, ack: bool = False) -> int:
        """The window field to send (RFC 9293 3.8.6.2.2 receiver SWS avoidance;
        the right edge never moves left; RFC 7323 2.3 scaling, rounded up).
        With ``ack`` the segment carries our ACK: everything received is
        acknowledged by it, so no ACK is pending any more."""
        rcv_nxt = self.rcv_nxt
        if ack:
            self.ack_pending = False
            self.t_delack.stop()
            self.last_ack_sent = rcv_nxt
        cur = self.rcv_adv
        space = self.rcvbuf - self.rcv_buf.nbytes
        clamp = self.window_clamp
        if clamp and space > clamp:
            space = clamp
        new_right = rcv_nxt + space
        if new_right > cur:
            mss = self.opt.adv_mss
            half = self.rcvbuf >> 1
            if new_right - cur >= (half if half < mss else mss):
                cur = new_right
        wnd = cur - rcv_nxt
        if wnd <= 0:
            self.rcv_adv = rcv_nxt if cur < rcv_nxt else cur
            return 0
        ws = self.opt.rcv_wscale
        field = (wnd + (1 << ws) - 1) >> ws
        if field > 0xFFFF:
            field = 0xFFFF
        self.rcv_adv = rcv_nxt + (field << ws)
        return field

    def syn_window(self) -> int:
        """A SYN's window: never scaled (RFC 7323 2.2)."""
        window = min(self.rcvbuf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + window
        return window

    # ---------------------------------------------------------------- ACK policy
    def _schedule_ack(self, now: float, later: bool = False) -> None:
        """Delayed ACKs (RFC 9293 3.8.6.3, RFC 5681 4.2): at once in quick-ack mode
        and for holes and FINs; for every second full-sized segment; otherwise
        after the delayed-ACK timeout. With ``ack_coalescing`` the ACK for a run
        of full-sized segments that arrived in one batch from the device is sent
        when the batch is done (as Linux's GRO does), at most
        ``ack_coalesce_segments`` segments late. With ``later`` the caller arms
        the delayed ACK's timer itself (``delack_due``, ``arm_delack``)."""
        unacked = self.rcv_nxt - self.last_ack_sent
        if self.ack_now:
            self.conn._send_ack()
        elif unacked > self.rcv_mss:
            cfg = self.config
            if cfg.ack_coalescing and unacked < cfg.ack_coalesce_segments * self.rcv_mss:
                if self._ack_deferred:
                    return
                if self.env.defer(self._deferred_ack):
                    self._ack_deferred = True
                    return
            self.conn._send_ack()
        elif self.t_delack.deadline is None:
            if later:
                self.delack_due = True
            else:
                self._delack_timer().set(now + self.config.delack)

    def arm_delack(self, now: float) -> None:
        """Arm the delayed ACK's timer that ``_schedule_ack(now, later=True)``
        left to the caller (the same ``now``), unless the ACK went out since:
        a connection whose program answers a segment at once never makes
        the timer, as one whose ACK is due at once never does."""
        self.delack_due = False
        if self.ack_pending and self.t_delack.deadline is None:
            self._delack_timer().set(now + self.config.delack)

    def _deferred_ack(self) -> None:
        """The end of a receive batch: ACK what it brought."""
        self._ack_deferred = False
        if self.ack_pending and self.conn.state != CLOSED:
            if self.rcv_nxt - self.last_ack_sent > self.rcv_mss:
                self.conn._send_ack()
            elif self.t_delack.deadline is None:
                self._delack_timer().set(self.env.timers.now + self.config.delack)

    def _delack_timer(self) -> LazyTimer:
        timer = self.t_delack
        if isinstance(timer, _Unarmed):
            timer = self.t_delack = LazyTimer(self.env.timers, self._on_delack)
        return timer

    def _on_delack(self) -> None:
        if self.ack_pending and self.conn.state != CLOSED:
            self.counters["tcp.delayed_acks"] += 1
            self.conn._send_ack()
