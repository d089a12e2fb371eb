"""The send side of a connection: the send buffer, the output loop (send and
congestion windows, Nagle, sender SWS avoidance, TSO), ACK processing, RTT
measurement, retransmission (RTO, persist) and loss recovery.

``output`` is one loop that applies the send window, cwnd, Nagle (RFC 896)
and sender-side silly-window avoidance (RFC 9293 3.8.6.2.1); during SACK
recovery the ``Recovery`` strategy sends instead (RFC 6675 NextSeg).
Congestion control is a ``CongestionControl`` (``NewReno``); the recovery
strategy is chosen once, when the handshake settles SACK.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from femtotcp.proto.tcp.congestion import CongestionControl, NewReno, Scoreboard
from femtotcp.proto.tcp.options import TS_LEN, tsval
from femtotcp.proto.tcp.recovery import NEWRENO, Recovery
from femtotcp.proto.tcp.rtt import RttEstimator
from femtotcp.proto.tcp.seq import MASK, unwrap
from femtotcp.proto.tcp.state import SENDING
from femtotcp.proto.tcp.timers import _UNARMED, LazyTimer, _Unarmed
from femtotcp.wire.tcp import ACK, FIN, PSH, SYN, TcpHeader, TcpOptions, build_fast

if TYPE_CHECKING:
    from femtotcp.proto.tcp.config import TcpConfig
    from femtotcp.proto.tcp.connection import TcpConnection
    from femtotcp.proto.tcp.env import TcpEnv
    from femtotcp.proto.tcp.options import Negotiated
    from femtotcp.proto.tcp.receiver import Receiver

_HDR_TS = struct.Struct("!HHIIHHHHIII")     # header + NOP NOP TS, 32 bytes
_HDR_PLAIN = struct.Struct("!HHIIHHHH")      # header without options, 20 bytes
#: The scoreboard of a sender no SACK block reached yet (shared, always empty:
#: ``_update_scoreboard`` makes the sender its own before adding to it).
_NO_SACKS = Scoreboard()
#: The most payload one TSO super-segment carries: a 64 KB IP packet.
TSO_MAX_PAYLOAD = 65535 - 20 - 20


class Sender:
    """SND.* of RFC 9293 3.3.1 (unwrapped, see ``seq``) and what hangs off them."""

    __slots__ = (
        "conn", "env", "opt", "rcv", "counters", "config", "timers",
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "snd_buf", "snd_buf_seq", "fin_queued", "fin_seq", "sndbuf",
        "nodelay", "una_time",
        "cc", "sb", "recovery", "in_recovery", "recover", "high_rxt", "dupacks",
        "rtt", "rtt_seq", "rtt_time", "retries", "probes", "persist_backoff",
        "persist_start", "t_rto", "t_persist", "retransmits", "bytes_acked",
    )

    def __init__(self, conn: TcpConnection, env: TcpEnv, opt: Negotiated, rcv: Receiver,
                 cfg: TcpConfig) -> None:
        self.conn = conn
        self.env = env
        self.opt = opt
        self.rcv = rcv
        self.counters = env.counters
        self.config = cfg
        self.timers = timers = env.timers
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
        self.sndbuf = cfg.sndbuf
        self.nodelay = False
        self.una_time = 0.0
        self.cc: CongestionControl = NewReno(536, cfg.initial_cwnd_segments)
        self.sb = _NO_SACKS
        self.recovery: Recovery = NEWRENO
        self.in_recovery = False
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
        self.t_rto = LazyTimer(timers, conn._on_rto)
        #: Made when first set (only a closed window or SWS avoidance needs it).
        self.t_persist: LazyTimer | _Unarmed = _UNARMED
        self.retransmits = 0
        self.bytes_acked = 0

    def start(self, iss: int, now: float) -> None:
        """Our ISS is chosen: the SYN takes sequence number ISS."""
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = self.snd_max = iss + 1
        self.snd_buf_seq = iss + 1
        self.recover = iss
        self.una_time = now

    def time_syn(self, now: float) -> None:
        """Time the SYN (RFC 6298 with Karn's rule: only while never resent)."""
        self.rtt_seq = self.iss + 1
        self.rtt_time = now

    def queue_fin(self) -> None:
        """The FIN follows the queued data (RFC 9293 3.10.4)."""
        self.fin_queued = True
        self.fin_seq = self.snd_buf_seq + len(self.snd_buf)

    def fin_acked(self) -> bool:
        return self.fin_queued and self.snd_una > self.fin_seq

    def release(self) -> None:
        """The connection is gone: drop the data and stop the timers."""
        self.t_rto.cancel()
        self.t_persist.cancel()
        self.t_persist = _UNARMED
        self.snd_buf = bytearray()

    def unlink(self, conn: TcpConnection) -> None:
        """The connection is finished with (``TcpConnection._unlink``): the
        timer lets go of its bound method and the connection is held through
        ``conn``, a weak proxy, so no cycle is left."""
        self.t_rto.retire()
        self.conn = conn

    # ---------------------------------------------------------------- ACK processing
    def on_ack(self, hdr: TcpHeader, opts: TcpOptions, seq: int, plen: int, flags: int,
               now: float) -> bool:
        """RFC 9293 3.10.7.4 fifth (ACK) with RFC 5961 5.2. False: segment dropped."""
        una = self.snd_una
        ack = unwrap(hdr.ack, una)
        counters = self.counters
        if ack > self.snd_max:
            counters["tcp.ack_unsent_data"] += 1
            self.conn._challenge_ack()
            return False
        if ack < una - self.max_snd_wnd:
            counters["tcp.ack_too_old"] += 1
            self.conn._challenge_ack()
            return False
        self.probes = 0
        window = hdr.window << self.opt.snd_wscale
        newly_sacked = 0
        if opts.sack_blocks and self.opt.sack_ok:
            newly_sacked = self._update_scoreboard(opts.sack_blocks, ack)
        if ack > una:
            self.ack_new_data(ack, opts.ts_ecr, now)
        elif ack == una and self.snd_max > una and not plen and \
                not flags & (SYN | FIN):
            # Duplicate ACK (RFC 5681 2; RFC 6675 2 when SACK is on).
            if self.recovery.is_dupack(newly_sacked, window, self.snd_wnd):
                self.dupacks += 1
                counters["tcp.dupack"] += 1
                if self.in_recovery:
                    self.recovery.on_dupack(self)
                else:
                    self._maybe_enter_recovery()
        if newly_sacked and ack > una and not self.in_recovery:
            self._maybe_enter_recovery()    # RFC 6675 5: IsLost(HighACK + 1)
        self.update_window(window, seq, ack)
        return True

    def update_window(self, window: int, seq: int, ack: int) -> None:
        """The send window update (RFC 9293 3.10.7.4: the SND.WL1/SND.WL2 rule);
        ``window`` already scaled."""
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if window != self.snd_wnd:
                if window > self.snd_wnd:
                    self.persist_backoff = 0
                self.snd_wnd = window
                if window > self.max_snd_wnd:
                    self.max_snd_wnd = window
            self.snd_wl1 = seq
            self.snd_wl2 = ack

    def _update_scoreboard(self, blocks: tuple[tuple[int, int], ...], ack: int) -> int:
        """Merge the SACK blocks of an ACK (RFC 2018 4); blocks outside
        [SND.UNA, SND.MAX] (D-SACK, bogus) are ignored."""
        una = ack if ack > self.snd_una else self.snd_una
        snd_max = self.snd_max
        sb = self.sb
        if sb is _NO_SACKS:
            sb = self.sb = Scoreboard()
        newly = 0
        for left32, right32 in blocks:
            left = unwrap(left32, una)
            right = unwrap(right32, una)
            if right <= left or right > snd_max or right <= una:
                if right > snd_max or right < left:
                    self.counters["tcp.sack_invalid"] += 1
                continue
            if left < una:
                left = una
            newly += sb.add(left, right)
        return newly

    def ack_new_data(self, ack: int, ecr: int | None, now: float) -> None:
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
                self.conn._ev = True
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        sb = self.sb
        if sb.starts:                   # (not ``if sb``: its __bool__ is a Python call)
            sb.advance(ack)
        self.rtt_from_ack(ecr, now)
        self.retries = 0
        self.dupacks = 0
        self.una_time = now
        if self.in_recovery:
            if ack >= self.recover:
                # Full ACK: leave recovery (RFC 6582 3.2 step 3; RFC 6675 5 step 1).
                self.in_recovery = False
                self.recovery.on_full_ack(self, ack)
                self.counters["tcp.recovery_done"] += 1
            else:
                self.recovery.on_partial_ack(self, ack, acked)
        else:
            # Grow only when cwnd was the limit (RFC 7661's idea, as Linux).
            cc = self.cc
            if flight_before + self.opt.mss >= cc.cwnd or cc.cwnd < cc.ssthresh and \
                    2 * flight_before >= cc.cwnd:
                cc.on_ack(acked)
        if ack >= self.snd_max:
            self.t_rto.stop()
        else:
            self.t_rto.set(now + self.rtt.rto)

    def rtt_from_ack(self, ecr: int | None, now: float) -> None:
        """RFC 7323 4.1 (timestamps) or RFC 6298 with Karn's rule (one timed segment)."""
        opt = self.opt
        if opt.ts_ok and ecr:
            ms = (tsval(now, opt.ts_offset) - ecr) & MASK
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
        dupthresh = self.config.dupthresh
        rec = self.recovery
        if self.dupacks < dupthresh and not rec.lost(self, una, self.opt.mss, dupthresh):
            return
        ssthresh = self.cc.on_loss(self.snd_max - una)
        self.recover = self.snd_max
        self.rtt_seq = -1
        self.counters["tcp.fast_retransmit"] += 1
        self.in_recovery = True
        rec.enter(self, una, ssthresh)

    # ---------------------------------------------------------------- sending
    def send_data(self, seq: int, n: int, fin: bool) -> int:
        """Send [seq, seq+n) from the send buffer (plus FIN). Returns the bytes sent
        (fewer when SACK blocks took option space)."""
        conn = self.conn
        opt = self.opt
        rcv = self.rcv
        ts_ok = opt.ts_ok
        ts_only = ts_ok and not (opt.sack_ok and rcv.ooo.blocks)
        if not ts_only:
            options = conn._options()
            optlen = len(options)
            if optlen > TS_LEN or (optlen and not ts_ok):
                room = opt.mss_base - optlen
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
        window = rcv.window(True)
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
            if self.rtt_seq < 0 and not ts_ok:
                self.rtt_seq = end
                self.rtt_time = now
        if end > snd_max:
            self.snd_max = end
        if ts_only:
            conn._send_ts(seq & MASK, flags, window, payload)
        else:
            conn._ip_send(build_fast(conn._psum, conn._lport, conn._rport, seq & MASK,
                                     rcv.rcv_nxt & MASK, flags, window, options, payload))
        if self.t_rto.deadline is None:
            self.t_rto.set(now + self.rtt.rto)
        return n

    def send_tso(self, seq: int, count: int, path: Any) -> int:
        """Send ``count`` full segments of new data from ``seq`` as one TSO
        super-segment (``TcpEnv.output_offload``): the same headers the
        per-segment path writes (the kernel copies ours to every piece and keeps
        PSH for the last), the checksum left partial. Sequence space, the RTT
        sample (the first segment's, as that path times it), ``segs_out`` and the
        timers are accounted exactly as for ``count`` calls of ``send_data``.
        Returns the bytes sent."""
        conn = self.conn
        opt = self.opt
        mss = opt.mss
        n = count * mss
        off = seq - self.snd_buf_seq
        buf = self.snd_buf
        payload = buf[off:off + n]
        flags = ACK | PSH if off + n >= len(buf) else ACK
        rcv = self.rcv
        window = rcv.window(True)
        now = self.timers.now
        if self.snd_max == self.snd_una:
            self.una_time = now
        ts_ok = opt.ts_ok
        if self.rtt_seq < 0 and not ts_ok:
            self.rtt_seq = seq + mss
            self.rtt_time = now
        self.snd_max = seq + n
        rcv_nxt = rcv.rcv_nxt
        psum = conn._psum
        if ts_ok:
            hlen = 32
            partial = (psum + hlen + n) % 0xFFFF
            hdr = _HDR_TS.pack(conn._lport, conn._rport, seq & MASK, rcv_nxt & MASK,
                               0x8000 | flags, window, partial, 0, 0x0101080A,
                               tsval(now, opt.ts_offset), opt.ts_recent)
        else:
            hlen = 20
            partial = (psum + hlen + n) % 0xFFFF
            hdr = _HDR_PLAIN.pack(conn._lport, conn._rport, seq & MASK, rcv_nxt & MASK,
                                  0x5000 | flags, window, partial, 0)
        conn.segs_out += count
        conn.last_tx = now
        self.counters["tcp.tso_sent"] += 1
        self.env.output_offload(path, conn._laddr, conn._raddr, hdr + payload, mss, hlen)
        if self.t_rto.deadline is None:
            self.t_rto.set(now + self.rtt.rto)
        return n

    def send_fin_only(self, seq: int) -> None:
        conn = self.conn
        rcv = self.rcv
        window = rcv.window(True)
        if seq < self.snd_max:
            self.retransmits += 1
            self.counters["tcp.retransmitted_segments"] += 1
        elif self.snd_max == self.snd_una:
            self.una_time = self.timers.now
        if seq + 1 > self.snd_max:
            self.snd_max = seq + 1
        opt = self.opt
        if opt.ts_ok and not (opt.sack_ok and rcv.ooo.blocks):
            conn._send_ts(seq & MASK, FIN | ACK, window, b"")    # the usual layout
        else:
            conn._ip_send(build_fast(conn._psum, conn._lport, conn._rport, seq & MASK,
                                     rcv.rcv_nxt & MASK, FIN | ACK, window, conn._options(),
                                     b""))
        if self.t_rto.deadline is None:
            self.t_rto.set(self.timers.now + self.rtt.rto)

    def retransmit(self, seq: int, end: int) -> int:
        """Resend from ``seq`` (at most one segment, up to ``end``); returns the
        sequence space covered."""
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        limit = min(end, seq + self.opt.mss, buf_end)
        n = limit - seq
        fin = self.fin_queued and seq + (n if n > 0 else 0) == self.fin_seq and \
            end > self.fin_seq and self.snd_max > self.fin_seq
        if n > 0:
            sent = self.send_data(seq, n, fin)
            return sent + (1 if fin and sent == n else 0)
        if fin:
            self.send_fin_only(seq)
            return 1
        return 0

    def output(self) -> None:
        """Send what the windows, Nagle and SWS avoidance allow (RFC 9293 3.8.6,
        RFC 896, RFC 5681); the recovery strategy's own output during recovery."""
        conn = self.conn
        if conn.state not in SENDING:
            return
        if self.in_recovery and self.recovery.output(self):
            return
        una = self.snd_una
        cc = self.cc
        if una == self.snd_max and self.timers.now - conn.last_tx > self.rtt.rto:
            cc.after_idle()
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        fin_seq = self.fin_seq if self.fin_queued else -1
        if self.snd_nxt >= buf_end and self.snd_nxt != fin_seq:
            return      # nothing to send (the handshake's and teardown's ACKs)
        opt = self.opt
        mss = opt.mss
        wnd_end = una + self.snd_wnd
        cwnd_end = una + cc.cwnd
        limit = wnd_end if wnd_end < cwnd_end else cwnd_end
        sb = self.sb
        # The offload path, looked up when first useful; none while urgent data
        # is out (each segment carries its own urgent pointer).
        tso: Any = None if conn.snd_up is None else False
        # Nagle holds nothing back in urgent mode (Linux's tcp_nagle_test).
        nagle = not self.nodelay and conn.snd_up is None
        tso_max = (TSO_MAX_PAYLOAD - (TS_LEN if opt.ts_ok else 0)) // mss
        while True:
            nxt = self.snd_nxt
            snd_max = self.snd_max
            if nxt < buf_end:
                stop = buf_end
                if nxt < snd_max and sb.starts:
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
                    elif nagle and snd_max > una and fin_seq != buf_end:
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
                    if count >= 2 and not (opt.sack_ok and self.rcv.ooo.blocks):
                        if tso is None:
                            tso = self.env.offload_path(conn._laddr, conn._raddr) or False
                        if tso is not False:
                            self.snd_nxt = nxt + self.send_tso(nxt, count, tso)
                            continue
                sent = self.send_data(nxt, n, fin)
                self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
            elif fin_seq >= 0 and nxt == fin_seq and (nxt < snd_max or nxt < wnd_end):
                self.send_fin_only(nxt)
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
                self._persist_timer().set(self.timers.now + self._persist_interval())

    def _persist_timer(self) -> LazyTimer:
        timer = self.t_persist
        if isinstance(timer, _Unarmed):
            timer = self.t_persist = LazyTimer(self.timers, self.conn._on_persist)
        return timer

    def _persist_interval(self) -> float:
        cfg = self.config
        base = max(self.rtt.base_rto, cfg.rto_min)
        backoff = self.persist_backoff
        interval = base * (1 << backoff) if backoff < 32 else cfg.rto_max
        return interval if interval < cfg.rto_max else cfg.rto_max

    def sack_output(self) -> None:
        """RFC 6675 5 steps (C): while cwnd - pipe >= 1 SMSS, send NextSeg()."""
        cfg = self.config
        una = self.snd_una
        mss = self.opt.mss
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
                    sent = self.send_data(nxt, n, fin)
                    self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
                    pipe += sent
                    continue
                if fin_seq >= 0 and nxt == fin_seq and nxt < wnd_end:
                    self.send_fin_only(nxt)
                    self.snd_nxt = nxt + 1
                    pipe += 1
                    continue
                cand = sb.next_hole(holes, self.high_rxt, False)     # rule 3
                if cand is None:
                    break
            start, end = cand
            sent = self.retransmit(start, end)
            if sent <= 0:
                break
            self.high_rxt = start + sent
            pipe += sent

    # ---------------------------------------------------------------- timers
    def on_timeout(self, now: float, user_timeout: float) -> None:
        """The retransmission timer expired with data in flight (RFC 6298 5.4-5.6,
        RFC 5681 3.1); the connection decided not to give up."""
        self.counters["tcp.rto_expired"] += 1
        self.retries += 1
        una = self.snd_una
        self.cc.on_timeout(self.snd_max - una, first=self.retries == 1)
        self.in_recovery = False
        self.recover = self.snd_max
        self.dupacks = 0
        if self.sb.starts:
            self.sb.clear()  # RFC 2018 8: the receiver may have reneged
        self.high_rxt = una
        self.rtt.backoff += 1
        self.rtt_seq = -1
        # Go back to SND.UNA; the first segment goes out even into a closed window,
        # but no further than an open one reaches (as Linux).
        self.snd_nxt = una
        mss = self.opt.mss
        end = una + mss
        if 0 < self.snd_wnd < mss:
            end = una + self.snd_wnd
        sent = self.retransmit(una, end)
        self.snd_nxt = una + sent
        self.output()
        rto = self.rtt.rto
        if user_timeout:
            left = user_timeout - (now - self.una_time)
            if left < rto:
                rto = max(left, 0.001)
        self.t_rto.set(now + rto)

    def persist_due(self) -> bool:
        """Nothing in flight and something (data or FIN) waiting for window."""
        if self.snd_max != self.snd_una:
            return False
        nxt = self.snd_nxt
        return nxt < self.snd_buf_seq + len(self.snd_buf) or (
            self.fin_queued and nxt == self.fin_seq)

    def on_persist(self, now: float) -> None:
        """Zero-window probing with exponential backoff (RFC 9293 3.8.6.1, RFC 1122
        4.2.2.17); also the SWS override timer (3.8.6.2.1)."""
        buf_end = self.snd_buf_seq + len(self.snd_buf)
        fin_seq = self.fin_seq if self.fin_queued else -1
        nxt = self.snd_nxt
        usable = self.snd_una + self.snd_wnd - nxt
        if usable > 0 and nxt < buf_end:
            n = min(usable, buf_end - nxt, self.opt.mss)
            self.counters["tcp.sws_override"] += 1
            fin = fin_seq == nxt + n and n < usable
            sent = self.send_data(nxt, n, fin)
            self.snd_nxt = nxt + sent + (1 if fin and sent == n else 0)
        elif usable > 0:
            self.send_fin_only(nxt)
            self.snd_nxt = nxt + 1
        else:
            self.counters["tcp.window_probes"] += 1
            self.conn._send_probe()
            self.probes += 1
        self.persist_backoff += 1
        if self.snd_max == self.snd_una:
            self._persist_timer().set(now + self._persist_interval())
