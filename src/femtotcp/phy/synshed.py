"""SYN shedding on a TAP: under a SYN flood the kernel drops a share of bare TCP
SYNs before they reach the TAP's queue, so everything else still gets in.

A TAP's queue towards us holds ``txqueuelen`` frames; when a flood fills it
faster than we read, the kernel drops whatever arrives next, with no regard to
what it is: pings, the ACK that completes a SYN-cookie handshake, data of
established connections are lost in the same proportion as the flood. A Python
stack reads some tens of thousands of frames a second; hping3 offers 160,000
SYNs. So while the device's reads keep finding the queue full (a read batch
ends at ``max_batch`` instead of EAGAIN), it attaches a classic BPF socket
filter to the TAP (``TUNATTACHFILTER``, which the tun driver runs in
``tun_net_xmit`` before queueing) that keeps only a share ``keep`` of the
frames that are bare TCP SYNs (IPv4 without fragments, or IPv6 with TCP as the
first next header; SYN set, ACK, RST and FIN clear), and ``rst_keep(keep)``
of bare RSTs (the kernel's answers to the cookie SYN-ACKs of a flood from its
own address), picked at random (``SKF_AD_RANDOM``). Every other frame passes
untouched.

Within that share, SYNs that carry TCP options come first. Every current
stack (Linux: MSS, SACK permitted, timestamps, window scale, a data offset of
10; Windows, macOS, the BSDs, femtotcp: at least MSS) sends options in its
SYN; hping3's default SYN and most flood tools' have none (data offset 5). The
filter reads the data offset (IPv4 with or without IP options, IPv6 with TCP
as the first next header) and draws against ``opt_keep`` for a SYN with
options, ``plain_keep`` for one without; ``split`` makes them from the share
``keep`` and the estimated share of SYNs with options among those offered:
SYNs with options keep 1 while ``keep`` covers them all, the others get what
is left (at least ``MIN_KEEP``). This is a load-shedding priority under
overload only: without overload there is no filter and no SYN is refused. It
is a heuristic, and what it costs is bounded: an attacker who adds options
(``hping3 --tcp-mss``, ``--tcp-timestamp``) makes every SYN alike again, and
they are shed at random as before (``split(keep, 1) == (MIN_KEEP, keep)``,
after one interval to learn the mix); a legitimate client that sends no
options is shed like the flood's SYNs. A SYN retransmission cannot be told
from a first SYN without state, so it gets no priority.

The share adapts every ``INTERVAL`` seconds on the driving loop's timers, from
the kernel's count of the frames offered to the queue (netlink), the frames
read and, of those, the ones the filter samples (so its own drops are known):
what is left was lost at the full queue (its share of what was offered
estimates the share of the frames the filter passed that the queue lost: the
queue loses them alike, and the filter's drops are estimated from the sampled
frames read). More than ``HIGH_LOSS`` lost there (what a ping or an ACK
sees): the share is multiplied by ``DECREASE``; less than ``LOW_LOSS``: by
``INCREASE``; kept otherwise; never below ``MIN_KEEP``. These are tight (1 %
and 0.3 %) while every SYN with options is kept: shedding more of a flood
without options costs the clients nothing. While SYNs with options are shed
too (flood and clients look alike), the rule is the one from before the
distinction, looser: ``ALIKE_HIGH_LOSS`` (30 %) and ``ALIKE_LOW_LOSS`` (10 %):
the queue is kept full, and a client's SYN has its chance among as many SYNs
answered as we can read. The loose rule also decides when to attach the
filter: a queue that loses a few percent of a burst is no reason to shed. The
queue is thus kept just short of overflowing: a flood that comes in bursts
(its sender shares the CPU) lets more SYNs in between them. Once it is back at 1 the filter is removed. A
legitimate SYN then has the same chance as before (we answer as many SYNs as
we can read), and every other frame gets in. The frames the filter drops are
counted by the kernel, in the interface's TX drops (``ip -s link``); the
device counts ``rx_shed_engaged`` (filter attached), ``rx_shed_changes`` and
the shares now (gauges): ``rx_shed_keep_permille`` (all bare SYNs),
``rx_shed_plain_permille`` (without options), ``rx_shed_opt_permille`` (with).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import socket
import struct
from collections.abc import Callable

from femtotcp.core.counters import Counters
from femtotcp.core.loop import Loop
from femtotcp.core.timers import Timer

log = logging.getLogger("femtotcp.phy.synshed")

# <linux/if_tun.h>: _IOW('T', 213/214, struct sock_fprog) on a 64-bit ABI.
TUNATTACHFILTER = 0x401054D5
TUNDETACHFILTER = 0x401054D6

INTERVAL = 0.1
DECREASE = 0.7
INCREASE = 1.15
MIN_KEEP = 1 / 1024
#: Shares of the frames the filter passed that were lost at the full queue,
#: above which the filter keeps fewer SYNs, and below which it keeps more,
#: while it keeps every SYN with options: the queue is kept nearly free for
#: them, pings and ACKs (a flood without options is shed a little more than
#: it would have to be: the estimate is noisy by a few percent).
HIGH_LOSS = 0.01
LOW_LOSS = 0.003
#: The same while SYNs with options are shed too (the flood carries options:
#: flood and clients look alike), the rule from before the distinction: the
#: queue is kept full, for as many SYNs read, hence answered, as we can.
ALIKE_HIGH_LOSS = 0.3
ALIKE_LOW_LOSS = 0.1

# Classic BPF (<linux/filter.h>).
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_B_IND = 0x50
_LDX_B_MSH = 0xB1
_ALU_AND_K = 0x54
_JA = 0x05
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_SKF_AD_RANDOM = -0x1000 + 56
SYN = 0x02
RST = 0x04
OPT_SYN = 0x102            # (sheddable's kind of a SYN with TCP options)
_INSN = struct.Struct("HBBI")
_FPROG = struct.Struct("HxxxxxxQ")


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return _INSN.pack(code, jt, jf, k & 0xFFFFFFFF)


def rst_keep(keep: float) -> float:
    """The share of bare RSTs kept beside ``keep`` SYNs: under a flood they are
    the kernel's answers to our cookie SYN-ACKs (worthless, and as many as the
    SYNs we answer); a lost one for a live connection comes again with the
    next segment we send."""
    return max(MIN_KEEP, keep / 8)


def _threshold(share: float) -> int:
    return max(1, min(65536, int(share * 65536)))


def program(keep: float, opt_keep: float | None = None, rst: float | None = None) -> bytes:
    """The filter: accept everything but a bare TCP SYN or bare RST (of SYN,
    ACK, RST and FIN only that one set), which passes when a random 16-bit
    number is below its share times 65536: ``opt_keep`` for a SYN that carries
    TCP options (data offset above 5), ``keep`` for one without (``opt_keep``
    None: ``keep`` for both), ``rst`` for a RST (None: ``rst_keep(keep)``).
    Offsets are from the Ethernet header (a TAP's frame as the kernel hands it
    over)."""
    if opt_keep is None:
        opt_keep = keep
    rst_threshold = _threshold(rst_keep(keep) if rst is None else rst)
    # A SYN with options passes without a draw while its share is 1.
    opt = "accept" if opt_keep >= 1.0 else "opt"
    # (label, code, true target, false target, k); a target is a label or None
    # (the next instruction). Classic BPF jumps forward only.
    asm: list[tuple[str, int, str | None, str | None, int]] = [
        ("", _LD_H_ABS, None, None, 12),                 # ethertype
        ("", _JEQ_K, None, "v6", 0x0800),
        ("", _LD_B_ABS, None, None, 23),                 # IPv4 protocol
        ("", _JEQ_K, None, "accept", 6),
        ("", _LD_H_ABS, None, None, 20),                 # MF and fragment offset
        ("", _JSET_K, "accept", None, 0x3FFF),
        ("", _LDX_B_MSH, None, None, 14),                # X = IPv4 header length
        ("", _LD_B_IND, None, None, 14 + 13),            # TCP flags
        ("", _ALU_AND_K, None, None, 0x17),              # SYN|ACK|RST|FIN
        ("", _JEQ_K, None, "rst?", 0x02),                # a bare SYN
        ("", _LD_B_IND, None, None, 14 + 12),            # TCP data offset
        ("", _JA, "doff", None, 0),
        ("v6", _JEQ_K, None, "accept", 0x86DD),
        ("", _LD_B_ABS, None, None, 20),                 # IPv6 next header
        ("", _JEQ_K, None, "accept", 6),
        ("", _LD_B_ABS, None, None, 14 + 40 + 13),       # TCP flags
        ("", _ALU_AND_K, None, None, 0x17),
        ("", _JEQ_K, None, "rst?", 0x02),
        ("", _LD_B_ABS, None, None, 14 + 40 + 12),       # TCP data offset
        ("doff", _JGE_K, opt, None, 0x60),               # above 5 words: options
        ("", _LD_W_ABS, None, None, _SKF_AD_RANDOM),
        ("", _ALU_AND_K, None, None, 0xFFFF),
        ("", _JGE_K, "drop", "accept", _threshold(keep)),
        ("rst?", _JEQ_K, None, "accept", 0x04),          # a bare RST
        ("", _LD_W_ABS, None, None, _SKF_AD_RANDOM),
        ("", _ALU_AND_K, None, None, 0xFFFF),
        ("", _JGE_K, "drop", "accept", rst_threshold),
        ("opt", _LD_W_ABS, None, None, _SKF_AD_RANDOM),
        ("", _ALU_AND_K, None, None, 0xFFFF),
        ("", _JGE_K, "drop", None, _threshold(opt_keep)),
        ("accept", _RET_K, None, None, 0x40000),
        ("drop", _RET_K, None, None, 0),
    ]
    if opt == "accept":
        del asm[-5:-2]                                   # no "opt" draw
    where = {label: i for i, (label, *_rest) in enumerate(asm) if label}
    out = []
    for i, (_label, code, jt, jf, k) in enumerate(asm):
        if code == _JA and jt:
            out.append(_insn(code, 0, 0, where[jt] - i - 1))
        elif code in (_JEQ_K, _JGE_K, _JSET_K):
            t = where[jt] - i - 1 if jt else 0
            f = where[jf] - i - 1 if jf else 0
            out.append(_insn(code, t, f, k))
        else:
            out.append(_insn(code, 0, 0, k))
    return b"".join(out)


def sheddable(frame: bytes) -> int:
    """What ``program`` samples (the same tests): SYN for a bare TCP SYN
    without options, OPT_SYN for one with, RST for a bare RST, 0 for anything
    else."""
    n = len(frame)
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00":
        if n < 24 or frame[23] != 6 or frame[20] & 0x3F or frame[21]:
            return 0
        at = 14 + 4 * (frame[14] & 0xF) + 13
    elif ethertype == b"\x86\xdd":
        if n < 21 or frame[20] != 6:
            return 0
        at = 14 + 40 + 13
    else:
        return 0
    if at >= n:
        return 0
    flags = frame[at] & 0x17
    if flags == SYN:
        return OPT_SYN if frame[at - 1] >= 0x60 else SYN
    return RST if flags == RST else 0


def split(keep: float, opt_share: float) -> tuple[float, float]:
    """The shares (without options, with options) that keep ``keep`` of all
    bare SYNs when ``opt_share`` of them carry options: SYNs with options
    first (their share is 1 as long as ``keep`` covers them), the rest for the
    ones without, never below ``MIN_KEEP`` either. With no SYN with options
    that is ``(keep, 1)``; with only those, ``(MIN_KEEP, keep)``: the random
    share of them all, as without the distinction."""
    if keep >= 1.0:
        return 1.0, 1.0
    if keep >= opt_share:
        return max(MIN_KEEP, (keep - opt_share) / (1.0 - opt_share)), 1.0
    return MIN_KEEP, max(MIN_KEEP, keep / opt_share)


class SynShed:
    """The controller of one TAP's filter (see the module doc).

    ``attach(prog)`` installs a filter (``None`` removes it) and raises OSError
    when the kernel refuses; ``offered()`` is the number of frames the kernel
    has offered to the TAP's queue so far (its TX packets plus TX drops: what
    got in, what the filter dropped and what found the queue full), or None
    when it cannot tell. The device adds the frames it read to ``reads`` and
    calls ``backlogged`` when a read batch ended full."""

    def __init__(self, loop: Loop, attach: Callable[[bytes | None], None],
                 offered: Callable[[], int | None], counters: Counters) -> None:
        self.loop = loop
        self._attach = attach
        self._offered = offered
        self.counters = counters
        #: The share of all bare SYNs kept (1: no filter); ``plain_keep`` and
        #: ``opt_keep`` split it between SYNs without and with TCP options.
        self.keep = 1.0
        self.plain_keep = 1.0
        self.opt_keep = 1.0
        #: The share of the SYNs offered that carry options (last estimate).
        self.opt_share = 0.0
        self.reads = 0
        self.syns = 0          # bare SYNs (without, with options) and RSTs read
        self.opt_syns = 0      # while the filter is on
        self.rsts = 0
        self.full = 0
        self._last: tuple[int, int, int, int, int] | None = None
        self._timer: Timer | None = None
        self.failed = False

    def backlogged(self) -> None:
        """A read batch ended full: the queue holds more than we read at once."""
        self.full += 1
        if self._timer is None and not self.failed:
            offered = self._offered()
            if offered is None:
                self.failed = True
                return
            self._last = (offered, self.reads, self.syns, self.opt_syns, self.rsts)
            self.full = 1
            self._timer = self.loop.call_at(self.loop.now() + INTERVAL, self._tick)

    def count(self, frames: list[tuple[bytes, int]]) -> None:
        """While the filter is on: count the read frames it samples (the ones
        that passed it), to tell its drops from the queue's."""
        for frame, _ in frames:
            kind = sheddable(frame)
            if kind == SYN:
                self.syns += 1
            elif kind == OPT_SYN:
                self.opt_syns += 1
            elif kind:
                self.rsts += 1

    def _tick(self) -> None:
        offered = self._offered()
        if offered is None or self._last is None:
            self._timer = None
            return
        arrived = offered - self._last[0]
        read = self.reads - self._last[1]
        syns = self.syns - self._last[2]
        opt_syns = self.opt_syns - self._last[3]
        rsts = self.rsts - self._last[4]
        full, self.full = self.full, 0
        self._last = (offered, self.reads, self.syns, self.opt_syns, self.rsts)
        # What the filter dropped, estimated from what it let through; the rest
        # of what was offered and not read was lost at the full queue. (RSTs
        # follow the share of all SYNs, as our SYN-ACKs that they answer do.)
        rkeep = rst_keep(self.keep)
        plain_in = syns / self.plain_keep
        opt_in = opt_syns / self.opt_keep
        filtered = (plain_in - syns) + (opt_in - opt_syns) + rsts * (1.0 - rkeep) / rkeep
        lost = arrived - read - filtered
        if plain_in + opt_in > 0:
            self.opt_share = opt_in / (plain_in + opt_in)
        # The queue loses the frames the filter passed alike, and both reads
        # and ``filtered`` count what got through it: lost / arrived estimates
        # the share of what the filter passed (a ping, an ACK, a client's SYN)
        # that was lost at the queue.
        # (The filter is attached under the loose rule: a queue that loses a
        # few percent of a burst is no reason to shed SYNs.)
        high, low = (HIGH_LOSS, LOW_LOSS) if self.keep < 1.0 <= self.opt_keep else \
            (ALIKE_HIGH_LOSS, ALIKE_LOW_LOSS)
        keep = self.keep
        if full and lost > arrived * high:
            keep = max(MIN_KEEP, keep * DECREASE)
        elif lost <= arrived * low:            # (idle: nothing offered, nothing lost)
            keep = min(1.0, keep * INCREASE)    # the queue took it all: room for more
        plain, opt = split(keep, self.opt_share)
        if (keep, plain, opt) != (self.keep, self.plain_keep, self.opt_keep):
            self._set(keep, plain, opt)
        if self.keep >= 1.0 or self.failed:
            self._timer = None
            return
        self._timer = self.loop.call_at(self.loop.now() + INTERVAL, self._tick)

    def _set(self, keep: float, plain: float, opt: float) -> None:
        was = self.keep
        try:
            self._attach(None if keep >= 1.0 else program(plain, opt, rst_keep(keep)))
        except OSError as exc:
            self.failed = True
            self.counters["rx_shed_failed"] += 1
            log.warning("cannot filter SYNs on the TAP (%s); frames are lost in its queue "
                        "under a SYN flood instead", exc.strerror)
            return
        self.keep, self.plain_keep, self.opt_keep = keep, plain, opt
        if was >= 1.0:
            self.counters["rx_shed_engaged"] += 1
        self.counters["rx_shed_changes"] += 1
        self.counters["rx_shed_keep_permille"] = int(keep * 1000)
        self.counters["rx_shed_plain_permille"] = int(plain * 1000)
        self.counters["rx_shed_opt_permille"] = int(opt * 1000)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_RTM_GETLINK = 18
_NLM_F_REQUEST = 1
_IFLA_STATS64 = 23


def link_offered(sock: socket.socket, ifindex: int) -> int | None:
    """TX packets plus TX drops of interface ``ifindex`` (RTM_GETLINK's
    IFLA_STATS64 over a NETLINK_ROUTE socket of the interface's namespace):
    every frame the kernel offered to the TAP's queue. None on any trouble."""
    try:
        sock.send(_NLMSG.pack(_NLMSG.size + _IFINFO.size, _RTM_GETLINK, _NLM_F_REQUEST, 1, 0)
                  + _IFINFO.pack(0, 0, ifindex, 0, 0))
        data = sock.recv(65536)
    except OSError:
        return None
    if len(data) < _NLMSG.size + _IFINFO.size:
        return None
    length = min(len(data), _NLMSG.unpack_from(data)[0])
    off = _NLMSG.size + _IFINFO.size
    while off + _RTA.size <= length:
        alen, atype = _RTA.unpack_from(data, off)
        if alen < _RTA.size:
            return None
        if atype == _IFLA_STATS64 and off + 4 + 64 <= length:
            # struct rtnl_link_stats64: rx/tx packets, bytes, errors, dropped.
            stats = struct.unpack_from("=8Q", data, off + 4)
            return int(stats[1] + stats[7])
        off += (alen + 3) & ~3
    return None


def attach_filter(fd: int, prog: bytes | None) -> None:
    """TUNATTACHFILTER with ``prog`` (classic BPF instructions), or
    TUNDETACHFILTER when None."""
    if prog is None:
        fcntl.ioctl(fd, TUNDETACHFILTER, _FPROG.pack(0, 0))
        return
    buf = ctypes.create_string_buffer(prog, len(prog))
    fcntl.ioctl(fd, TUNATTACHFILTER, _FPROG.pack(len(prog) // _INSN.size, ctypes.addressof(buf)))


__all__ = ["SynShed", "attach_filter", "program", "split"]
