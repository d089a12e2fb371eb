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


def v4(flags: int, frag: int = 0, options: bytes = b"", proto: int = 6) -> bytes:
    payload = tcp.build(A, B, 1234, 7, 1, 0, flags, 512) if proto == 6 else \
        udp.build(A, B, 1, 2, b"x")
    return ethernet.build(MAC2, MAC1, ethernet.ETH_IPV4,
                          ipv4.build(A, B, proto, payload, flags_frag=frag, options=options))


def v6(flags: int, nh: int = 6) -> bytes:
    seg = tcp.build(bytes(16), bytes(16), 1234, 7, 1, 0, flags, 512)
    hdr = struct.pack("!IHBB", 6 << 28, len(seg), nh, 64) + bytes(32)
    return ethernet.build(MAC2, MAC1, 0x86DD, hdr + seg)


def sampled(pkt: bytes, keep: float = 0.25) -> float | None:
    """The share of ``pkt``'s kind the program keeps (a draw below it passes,
    one at it or above is dropped), or None when it passes whatever the draw."""
    prog = synshed.program(keep)
    if run_bpf(prog, pkt, 0xFFFF):
        assert run_bpf(prog, pkt, 0) == len(pkt)
        return None
    assert run_bpf(prog, pkt, 0) == len(pkt)             # a low draw always passes
    for share in (keep, synshed.rst_keep(keep)):
        edge = int(share * 65536)
        if run_bpf(prog, pkt, edge) == 0 and run_bpf(prog, pkt, edge - 1) == len(pkt):
            return share
    raise AssertionError("sampled at neither share")


def sampled_too(pkt: bytes) -> float | None:
    """``sampled``, and ``sheddable`` (the device's count of it) agrees."""
    got = sampled(pkt)
    kind = synshed.sheddable(pkt)
    assert got == {0: None, synshed.SYN: 0.25, synshed.RST: synshed.rst_keep(0.25)}[kind]
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


class _Kernel:
    """What the controller sees of the TAP: offered frames and the filter."""

    def __init__(self) -> None:
        self.offered = 0
        self.filters: list[bytes | None] = []

    def attach(self, prog: bytes | None) -> None:
        self.filters.append(prog)


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
