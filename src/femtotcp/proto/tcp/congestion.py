"""Congestion control and the SACK scoreboard.

``NewReno`` holds cwnd/ssthresh and their arithmetic: slow start with
byte counting (RFC 5681 3.1, RFC 3465; no per-ACK limit, as Linux),
congestion avoidance, the loss window after a timeout, the restart window
after idle (RFC 5681 4.1) and the initial window (RFC 6928); it is the one
``CongestionControl`` the sender uses. Loss recovery is a strategy of its own
(``recovery``): NewReno's (RFC 6582) without SACK, RFC 6675's pipe-based
recovery with it, using the ``Scoreboard`` below.

The scoreboard keeps the ranges the receiver has SACKed above SND.UNA (RFC
2018) and answers RFC 6675's questions at the granularity of holes: which
holes count as lost (IsLost: DupThresh SACKed blocks, or more than
(DupThresh - 1) * SMSS SACKed bytes, above them), how much data is in the
network (SetPipe), and what to retransmit next (NextSeg rules 1 and 3).
Sequence numbers are the connection's unwrapped ones.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Protocol

Hole = tuple[int, int, bool]   # (start, end, lost)


class CongestionControl(Protocol):
    """What the sender asks of a congestion controller (cwnd and ssthresh in
    bytes; the loss recovery strategy sets cwnd directly during recovery)."""

    mss: int
    cwnd: int
    ssthresh: int

    def set_mss(self, mss: int) -> None: ...

    def on_ack(self, acked: int) -> None: ...

    def on_loss(self, flight: int) -> int: ...

    def on_timeout(self, flight: int, first: bool) -> None: ...

    def after_idle(self) -> None: ...


class NewReno:
    __slots__ = ("mss", "cwnd", "ssthresh", "acked_bytes", "initial")

    def __init__(self, mss: int, initial_segments: int = 10) -> None:
        self.mss = mss
        self.initial = initial_segments
        self.cwnd = self.initial_window()
        self.ssthresh = 1 << 62            # RFC 5681 3.1: arbitrarily high at first
        self.acked_bytes = 0

    def initial_window(self) -> int:
        """RFC 6928 (and Linux): ten segments."""
        return self.initial * self.mss

    def set_mss(self, mss: int) -> None:
        if mss != self.mss:
            segments = max(1, self.cwnd // self.mss)
            self.mss = mss
            self.cwnd = segments * mss

    def on_ack(self, acked: int) -> None:
        """New data acknowledged while cwnd was the limit. Slow start counts every
        byte acknowledged, up to ssthresh (as Linux's tcp_slow_start), so that
        stretch ACKs (coalesced by the receiver) do not slow it down."""
        cwnd = self.cwnd
        if cwnd < self.ssthresh:
            cwnd += acked
            self.cwnd = cwnd if cwnd < self.ssthresh else max(self.ssthresh, self.cwnd)
        else:
            self.acked_bytes += acked
            if self.acked_bytes >= cwnd:
                self.acked_bytes -= cwnd
                self.cwnd = cwnd + self.mss

    def on_loss(self, flight: int) -> int:
        """Fast retransmit (RFC 5681 3.2 step 2): the new ssthresh."""
        ssthresh = max(flight // 2, 2 * self.mss)
        self.ssthresh = ssthresh
        self.acked_bytes = 0
        return ssthresh

    def on_timeout(self, flight: int, first: bool) -> None:
        """RFC 5681 3.1 (4): ssthresh from the flight on the first timeout of an
        episode only; cwnd to the loss window (one segment)."""
        if first:
            self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.acked_bytes = 0

    def after_idle(self) -> None:
        """RFC 5681 4.1: restart from the initial window after an idle RTO."""
        iw = self.initial_window()
        if self.cwnd > iw:
            self.cwnd = iw


class Scoreboard:
    __slots__ = ("starts", "ends", "sacked", "max_blocks")

    def __init__(self, max_blocks: int = 256) -> None:
        self.starts: list[int] = []   # sorted, disjoint, non-touching ranges
        self.ends: list[int] = []
        self.sacked = 0
        self.max_blocks = max_blocks

    def __bool__(self) -> bool:
        return bool(self.starts)

    @property
    def highest(self) -> int:
        """The end of the highest SACKed range (0 when empty)."""
        return self.ends[-1] if self.ends else 0

    def add(self, left: int, right: int) -> int:
        """Merge one SACK block; return how many bytes were newly SACKed."""
        if right <= left:
            return 0
        starts = self.starts
        ends = self.ends
        i = bisect_right(ends, left - 1)       # first range ending at or after left
        j = i
        n = len(starts)
        covered = 0
        new_left, new_right = left, right
        while j < n and starts[j] <= right:
            s = starts[j]
            e = ends[j]
            lo = s if s > left else left
            hi = e if e < right else right
            if hi > lo:
                covered += hi - lo
            if s < new_left:
                new_left = s
            if e > new_right:
                new_right = e
            j += 1
        if i == j:
            if n >= self.max_blocks:
                return 0   # bounded: forgetting SACK information is always safe
            starts.insert(i, left)
            ends.insert(i, right)
        else:
            starts[i:j] = [new_left]
            ends[i:j] = [new_right]
        newly = (right - left) - covered
        self.sacked += newly
        return newly

    def advance(self, una: int) -> None:
        """Forget everything below SND.UNA."""
        starts = self.starts
        if not starts or starts[0] >= una:
            return
        ends = self.ends
        k = 0
        n = len(starts)
        while k < n and ends[k] <= una:
            k += 1
        if k:
            del starts[:k]
            del ends[:k]
        if starts and starts[0] < una:
            starts[0] = una
        self.sacked = sum(e - s for s, e in zip(starts, ends, strict=True))

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()
        self.sacked = 0

    def skip(self, seq: int) -> tuple[int, int]:
        """For a resend from ``seq``: the first byte at or after it that is not
        SACKed, and where the next SACKed range begins (or -1)."""
        starts = self.starts
        i = bisect_right(starts, seq) - 1
        if i >= 0 and self.ends[i] > seq:
            seq = self.ends[i]
        j = bisect_right(starts, seq)
        return seq, (starts[j] if j < len(starts) else -1)

    def holes(self, una: int, mss: int, dupthresh: int) -> list[Hole]:
        """The unSACKed ranges below the highest SACKed byte, lowest first, each
        with RFC 6675's IsLost verdict."""
        starts = self.starts
        ends = self.ends
        out: list[Hole] = []
        above = 0
        limit = (dupthresh - 1) * mss
        for k in range(len(starts) - 1, -1, -1):
            above += ends[k] - starts[k]
            hole_start = ends[k - 1] if k else una
            hole_end = starts[k]
            if hole_start < hole_end:
                out.append((hole_start, hole_end, len(starts) - k >= dupthresh or above > limit))
        out.reverse()
        return out

    def first_lost(self, una: int, mss: int, dupthresh: int) -> bool:
        """IsLost(SND.UNA): enough has been SACKed above the first hole."""
        return bool(self.starts) and (len(self.starts) >= dupthresh
                                      or self.sacked > (dupthresh - 1) * mss)

    def pipe(self, holes: list[Hole], snd_max: int, high_rxt: int) -> int:
        """RFC 6675 SetPipe: unSACKed bytes not deemed lost, plus retransmitted ones."""
        top = self.ends[-1] if self.ends else (holes[0][0] if holes else snd_max)
        pipe = snd_max - top if snd_max > top else 0
        if high_rxt > top:
            pipe += (high_rxt if high_rxt < snd_max else snd_max) - top
        for start, end, lost in holes:
            if not lost:
                pipe += end - start
            if high_rxt > start:
                pipe += (high_rxt if high_rxt < end else end) - start
        return pipe

    @staticmethod
    def next_hole(holes: list[Hole], high_rxt: int, lost_only: bool) -> tuple[int, int] | None:
        """NextSeg rule 1 (``lost_only``) or rule 3: the first unSACKed range at or
        above HighRxt."""
        for start, end, lost in holes:
            if lost_only and not lost:
                continue
            s = start if start > high_rxt else high_rxt
            if s < end:
                return s, end
        return None
