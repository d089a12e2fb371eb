"""SYN shedding (phy/synshed.py): the classic BPF program, run here by a small
interpreter of the instructions it uses (the kernel runs it on a TAP in
tests/e2e/test_synflood.py), and the controller on a virtual clock."""

from __future__ import annotations

import struct

from femtotcp.core.counters import Counters
from femtotcp.phy import synshed
from femtotcp.runtime import SimLoop
from femtotcp.wire import ethernet, ip_bytes, ipv4, tcp, udp

A, B = ip_bytes("192.0.2.1"), ip_bytes("192.0.2.2")
MAC1, MAC2 = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"


def run_bpf(prog: bytes, pkt: bytes, rnd: int) -> int:
    """The accepted length (0: dropped) of ``pkt`` under classic BPF ``prog``."""
    insns = [struct.unpack_from("HBBI", prog, i) for i in range(0, len(prog), 8)]
    acc = x = pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x28:
            acc = int.from_bytes(pkt[k:k + 2], "big")
        elif code == 0x30:
            acc = pkt[k]
        elif code == 0x20:
            assert k == (synshed._SKF_AD_RANDOM & 0xFFFFFFFF)
            acc = rnd
        elif code == 0xB1:
            x = 4 * (pkt[k] & 0xF)
        elif code == 0x50:
            acc = pkt[x + k]
        elif code == 0x54:
            acc &= k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x35, 0x45):
            hit = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += jt if hit else jf
        elif code == 0x06:
            return min(k, len(pkt))
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


#: A Linux client's SYN options (data offset 10): MSS, SACK permitted, timestamps, window scale.
LINUX = tcp.build_options(mss=1460, sack_perm=True, ts=(1, 0), wscale=7)


def v4(flags: int, frag: int = 0, options: bytes = b"", proto: int = 6,
       tcp_options: bytes = b"") -> bytes:
    payload = tcp.build(A, B, 1234, 7, 1, 0, flags, 512, options=tcp_options) if proto == 6 \
        else udp.build(A, B, 1, 2, b"x")
    return ethernet.build(MAC2, MAC1, ethernet.ETH_IPV4,
                          ipv4.build(A, B, proto, payload, flags_frag=frag, options=options))


def v6(flags: int, nh: int = 6, tcp_options: bytes = b"") -> bytes:
    seg = tcp.build(bytes(16), bytes(16), 1234, 7, 1, 0, flags, 512, options=tcp_options)
    hdr = struct.pack("!IHBB", 6 << 28, len(seg), nh, 64) + bytes(32)
    return ethernet.build(MAC2, MAC1, 0x86DD, hdr + seg)


def sampled(pkt: bytes, keep: float = 0.25, opt_keep: float | None = None) -> float | None:
    """The share of ``pkt``'s kind the program keeps (a draw below it passes,
    one at it or above is dropped), or None when it passes whatever the draw."""
    prog = synshed.program(keep, opt_keep)
    if run_bpf(prog, pkt, 0xFFFF):
        assert run_bpf(prog, pkt, 0) == len(pkt)
        return None
    assert run_bpf(prog, pkt, 0) == len(pkt)             # a low draw always passes
    for share in (keep, synshed.rst_keep(keep), opt_keep or keep):
        edge = int(share * 65536)
        if run_bpf(prog, pkt, edge) == 0 and run_bpf(prog, pkt, edge - 1) == len(pkt):
            return share
    raise AssertionError("sampled at neither share")


def sampled_too(pkt: bytes) -> float | None:
    """``sampled``, and ``sheddable`` (the device's count of it) agrees."""
    got = sampled(pkt)
    kind = synshed.sheddable(pkt)
    assert got == {0: None, synshed.SYN: 0.25, synshed.OPT_SYN: 0.25,
                   synshed.RST: synshed.rst_keep(0.25)}[kind]
    return got


def test_the_filter_samples_bare_syns_and_rsts_only() -> None:
    SYN, ACK, RST, FIN, PSH = tcp.SYN, tcp.ACK, tcp.RST, tcp.FIN, tcp.PSH
    syn, rst = 0.25, synshed.rst_keep(0.25)
    assert rst < syn
    assert sampled_too(v4(SYN)) == syn and sampled_too(v4(SYN | PSH)) == syn
    assert sampled_too(v4(RST)) == rst
    assert sampled_too(v4(SYN, options=b"\x01\x01\x01\x00")) == syn  # IP options
    assert sampled_too(v6(SYN)) == syn and sampled_too(v6(RST)) == rst
    for pkt in (v4(SYN | ACK), v4(ACK), v4(RST | ACK), v4(SYN | FIN), v4(ACK | PSH),
                v4(SYN, frag=ipv4.MF), v4(0, proto=17), v6(SYN | ACK), v6(SYN, nh=0),
                ethernet.build(MAC2, MAC1, ethernet.ETH_ARP, bytes(28))):
        assert sampled_too(pkt) is None, pkt.hex()
    # keep 1/1024: nearly every draw drops a SYN; keep ~1: nearly none.
    assert run_bpf(synshed.program(1 / 1024), v4(SYN), 64) == 0
    assert run_bpf(synshed.program(0.999), v4(SYN), 65000) > 0


def test_under_pressure_syns_with_options_are_kept_and_bare_ones_shed() -> None:
    SYN, RST = tcp.SYN, tcp.RST
    with_opts = [v4(SYN, tcp_options=LINUX), v4(SYN, tcp_options=tcp.build_options(mss=1460)),
                 v4(SYN, options=b"\x01\x01\x01\x00", tcp_options=LINUX),  # IP options too
                 v6(SYN, tcp_options=LINUX)]
    without = [v4(SYN), v4(SYN, options=b"\x01\x01\x01\x00"), v6(SYN)]
    for pkt in with_opts:
        assert synshed.sheddable(pkt) == synshed.OPT_SYN, pkt.hex()
    for pkt in without:
        assert synshed.sheddable(pkt) == synshed.SYN, pkt.hex()
    # Share 0 (the least the filter takes: 1/65536) for SYNs without options,
    # 1 for those with: a Linux-like SYN passes whatever the draw, a bare one
    # only at the lowest draw.
    prog = synshed.program(0.0, 1.0)
    for rnd in (0, 1, 0x7FFF, 0xFFFF, 0xFFFFFFFF):
        for pkt in with_opts:
            assert run_bpf(prog, pkt, rnd) == len(pkt)
        for pkt in without:
            assert run_bpf(prog, pkt, rnd) == (len(pkt) if rnd & 0xFFFF == 0 else 0)
    # Each class at its own share; RSTs follow the share of SYNs without options.
    for pkt in with_opts:
        assert sampled(pkt, 0.5, 0.25) == 0.25
    for pkt in without:
        assert sampled(pkt, 0.5, 0.25) == 0.5
    assert sampled(v4(RST), 0.5, 0.25) == synshed.rst_keep(0.5)
    assert sampled(v4(tcp.ACK, tcp_options=LINUX), 0.0, 1.0) is None
    # A truncated SYN with options still reads its data offset inside the frame.
    assert run_bpf(synshed.program(0.0, 1.0), v4(SYN, tcp_options=LINUX)[:14 + 20 + 14], 9) > 0


def test_the_split_puts_syns_with_options_first() -> None:
    MIN = synshed.MIN_KEEP
    assert synshed.split(1.0, 0.3) == (1.0, 1.0)
    assert synshed.split(0.2, 0.0) == (0.2, 1.0)               # a flood without options
    plain, opt = synshed.split(0.2, 0.01)                      # ... and a few clients
    assert opt == 1.0 and abs(plain * 0.99 + 0.01 - 0.2) < 1e-9
    # A flood that carries options too (hping3 --tcp-mss): the random share of
    # them all, as without the distinction.
    assert synshed.split(0.2, 1.0) == (MIN, 0.2)
    plain, opt = synshed.split(0.2, 0.5)
    assert plain == MIN and abs(opt - 0.4) < 1e-9
    assert synshed.split(MIN, 1.0) == (MIN, MIN)


class _Kernel:
    """What the controller sees of the TAP: offered frames and the filter."""

    def __init__(self) -> None:
        self.offered = 0
        self.filters: list[bytes | None] = []

    def attach(self, prog: bytes | None) -> None:
        self.filters.append(prog)

    def get_offered(self) -> int:
        return self.offered


def test_the_controller_sheds_under_overload_and_lets_go_after() -> None:
    loop = SimLoop()
    k = _Kernel()
    counters = Counters()
    shed = synshed.SynShed(loop, k.attach, lambda: k.offered, counters)
    syn = v4(tcp.SYN)
    # A flood of 10,000 SYNs per 100 ms; we read at most 2,000 in that time.
    for _ in range(30):
        shed.backlogged()
        k.offered += 10_000
        passed = min(2_000, int(10_000 * shed.keep))
        shed.reads += passed
        if shed.keep < 1.0:
            shed.count([(syn, 0)] * passed)
        loop.run(synshed.INTERVAL)
    assert k.filters and k.filters[-1] is not None
    assert 0.15 <= shed.keep <= 0.3          # about what we read of what comes
    assert counters["rx_shed_engaged"] == 1
    assert counters["rx_shed_keep_permille"] == int(shed.keep * 1000)
    # The flood stops: nothing comes any more; the share grows back, the filter goes.
    loop.run(40 * synshed.INTERVAL)
    assert shed.keep == 1.0 and k.filters[-1] is None
    assert counters["rx_shed_keep_permille"] == 1000
    n = len(k.filters)
    loop.run(5.0)                              # idle: nothing more to do
    assert len(k.filters) == n


def _flood(shed: synshed.SynShed, k: _Kernel, loop: SimLoop, plain: int, opt: int,
           rounds: int = 30) -> list[float]:
    """``rounds`` intervals of ``plain`` SYNs without options and ``opt`` with
    them offered, of which we read at most 2,000 (in proportion of what the
    filter passed); returns the share of SYNs with options that got in, each
    interval."""
    syn, syn_opt = v4(tcp.SYN), v4(tcp.SYN, tcp_options=LINUX)
    got = []
    for _ in range(rounds):
        shed.backlogged()
        k.offered += plain + opt
        p_in, o_in = plain * shed.plain_keep, opt * shed.opt_keep
        scale = min(1.0, 2_000 / (p_in + o_in))
        p_read, o_read = int(p_in * scale), int(o_in * scale)
        shed.reads += p_read + o_read
        if shed.keep < 1.0:
            shed.count([(syn, 0)] * p_read + [(syn_opt, 0)] * o_read)
        got.append(o_read / opt)
        loop.run(synshed.INTERVAL)
    return got


def test_the_controller_keeps_syns_with_options_through_a_flood_without() -> None:
    loop = SimLoop()
    k = _Kernel()
    counters = Counters()
    shed = synshed.SynShed(loop, k.attach, lambda: k.offered, counters)
    got = _flood(shed, k, loop, 10_000, 20)
    assert shed.opt_keep == 1.0 and shed.plain_keep < 0.3
    assert min(got[-10:]) >= 0.75                       # not lost at the queue either
    assert counters["rx_shed_opt_permille"] == 1000
    assert counters["rx_shed_plain_permille"] == int(shed.plain_keep * 1000)


def test_a_flood_with_options_is_shed_at_random_as_before() -> None:
    """An attacker who adds options (hping3 --tcp-mss) gets the random share of
    them all: SYNs with options are shed like the rest, the queue still holds."""
    loop = SimLoop()
    k = _Kernel()
    shed = synshed.SynShed(loop, k.attach, lambda: k.offered, Counters())
    _flood(shed, k, loop, 0, 10_000)
    assert shed.plain_keep == synshed.MIN_KEEP
    assert 0.15 <= shed.opt_keep <= 0.3 and shed.opt_keep == shed.keep
    # RSTs (the answers to our SYN-ACKs) follow the share of all SYNs, as the
    # controller's estimate of the filter's drops assumes.
    prog, rst = k.filters[-1], v4(tcp.RST)
    assert prog is not None
    edge = int(synshed.rst_keep(shed.keep) * 65536)
    assert run_bpf(prog, rst, edge - 1) == len(rst) and run_bpf(prog, rst, edge) == 0


def test_a_bursty_flood_keeps_more_syns() -> None:
    """Bursts the queue absorbs: little is lost there, so the share stays high."""
    loop = SimLoop()
    k = _Kernel()
    shed = synshed.SynShed(loop, k.attach, lambda: k.offered, Counters())
    for _ in range(30):
        shed.backlogged()
        k.offered += 2_100                     # 5 % more than we read
        shed.reads += 2_000
        loop.run(synshed.INTERVAL)
    assert shed.keep == 1.0 and not k.filters


def test_a_refused_filter_turns_shedding_off() -> None:
    loop = SimLoop()
    counters = Counters()

    def refuse(prog: bytes | None) -> None:
        raise OSError(22, "Invalid argument")

    offered = [0]
    shed = synshed.SynShed(loop, refuse, lambda: offered[0], counters)
    shed.backlogged()
    offered[0] += 10_000
    shed.reads += 100
    loop.run(1.0)
    assert shed.failed and shed.keep == 1.0 and counters["rx_shed_failed"] == 1
    shed.backlogged()
    loop.run(1.0)
    assert counters["rx_shed_failed"] == 1


def test_queue_loss_is_judged_tighter_while_syns_with_options_are_all_kept() -> None:
    """20 % of what the filter passed lost at the queue: too much while the
    filter tells the flood apart (pings and clients' SYNs see that loss), the
    old rule's hold band (30 %/10 % of all offered) while it cannot."""
    syn, syn_opt = v4(tcp.SYN), v4(tcp.SYN, tcp_options=LINUX)
    for opt_share, lowered in ((0.0, True), (1.0, False)):
        loop = SimLoop()
        kern = _Kernel()
        shed = synshed.SynShed(loop, kern.attach, kern.get_offered, Counters())
        shed.opt_share = opt_share
        shed._set(0.2, *synshed.split(0.2, opt_share))
        shed.backlogged()
        # 10,000 SYNs offered, 2,000 passed, 1,600 read: 400 (20 %) lost.
        kern.offered += 10_000
        shed.reads += 1_600
        shed.count([(syn_opt if opt_share else syn, 0)] * 1_600)
        loop.run(synshed.INTERVAL)
        assert (shed.keep < 0.2) is lowered, (opt_share, shed.keep)
