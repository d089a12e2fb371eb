"""``python -m bench.ipv6_stack``: the per-packet cost of the stack's IPv6 input
next to IPv4's, through ``Stack.receive`` (no I/O): an ICMP echo request in,
its reply out to a resolved neighbour; with ``--rtt`` (root: a namespace and a
TAP) also the kernel's ping RTT to the stack over IPv4 and over IPv6. Both families do the same work (parse,
the address checks, dispatch, the ICMP checksum twice, the reply's output),
so the difference is the IP layer's. Issue 12 asks that IPv6 cost no more than
10% over IPv4 per packet. Both families answer on their fast path
(``Ipv4.fast_input``, ``Ipv6.fast_input``); the second row is the full path
(both fast paths off), the one every packet the fast path leaves takes.

Time is CPU time (``time.process_time``), best of several runs taking turns.

    python -m bench.ipv6_stack [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time

from femtotcp.phy.base import Device
from femtotcp.stack import Stack
from femtotcp.stack.config import StackConfig
from femtotcp.wire import ethernet, icmp4, icmp6, ip_bytes, ipv4, ipv6, mac_bytes

US_MAC = mac_bytes("02:00:00:00:00:01")
PEER_MAC = mac_bytes("02:00:00:00:00:02")
US4, PEER4 = ip_bytes("192.0.2.1"), ip_bytes("192.0.2.2")
US6, PEER6 = ip_bytes("2001:db8::1"), ip_bytes("2001:db8::2")


class NullDevice(Device):
    """Frames out go nowhere; counted only."""

    def _transmit(self, frame: bytes) -> None:
        pass


def make_stack() -> tuple[Stack, object]:
    cfg = StackConfig(icmp_rate=1e9, icmp_burst=10**9, ipv6_dad=False)
    stack = Stack("bench", modules=["arp", "ipv4", "icmp4", "ipv6", "icmp6"], config=cfg)
    iface = stack.add_interface(NullDevice("null"), mac=US_MAC, ipv4="192.0.2.1/24")
    assert stack.ipv6 is not None and stack.arp is not None
    stack.ipv6.add_address(iface, US6, 64)
    stack.start()
    # Both neighbours resolved and fresh (the reply takes the neighbour cache's path).
    stack.arp._learn(iface, stack.arp.caches.setdefault(iface, {}), PEER4, PEER_MAC)
    stack.ipv6.ndp._learn(iface, PEER6, PEER_MAC, "REACHABLE")
    return stack, iface


def frames() -> tuple[bytes, bytes]:
    data = bytes(56)
    f4 = ethernet.build(US_MAC, PEER_MAC, ethernet.ETH_IPV4, ipv4.build(
        PEER4, US4, ipv4.PROTO_ICMP, icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, data)))
    f6 = ethernet.build(US_MAC, PEER_MAC, ethernet.ETH_IPV6, ipv6.build(
        PEER6, US6, ipv6.PROTO_ICMP6, icmp6.build_echo(PEER6, US6, icmp6.ECHO_REQUEST, 1, 1,
                                                        data)))
    return f4, f6


def run(packets: int, repeat: int, fast: bool = True) -> tuple[float, float]:
    stack, iface = make_stack()
    if not fast:
        stack.fast_receive = stack.fast_receive6 = None
    f4, f6 = frames()
    receive = stack.receive
    best = {4: float("inf"), 6: float("inf")}
    for _ in range(repeat):
        for fam, frame in ((4, f4), (6, f6)):
            stack.timers.now = 0.0
            t0 = time.process_time()
            for _ in range(packets):
                receive(iface, frame, 0.0)  # type: ignore[arg-type]
            best[fam] = min(best[fam], (time.process_time() - t0) / packets)
    assert stack.counters["icmp4.echo_replied"] == stack.counters["icmp6.echo_replied"] > 0
    return best[4] * 1e6, best[6] * 1e6


def ping_rtts(count: int = 20) -> tuple[float | None, float | None]:
    """The kernel's average ping RTT (ms) to one stack over IPv4 and over IPv6,
    through a TAP in a throw-away namespace (2001:db8::/32 and 192.0.2.0/24)."""
    import subprocess

    from bench import tcp_bulk
    from femtotcp.phy import netns as nsmod
    from femtotcp.phy.tap import TapDevice
    from femtotcp.runtime import Runtime

    with tcp_bulk.namespace("ftbench6") as ns:
        for key in ("all", "default"):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            f"net.ipv6.conf.{key}.disable_ipv6=0"], check=True)
        with nsmod.entered(ns):
            tap = TapDevice("ftbench6", mtu=1500)
        stack = Stack("bench6", modules=["arp", "ipv4", "icmp4", "ipv6", "icmp6"],
                      config=StackConfig(ipv6_dad=False))
        iface = stack.add_interface(tap, mac="02:00:00:00:00:02", ipv4="192.0.2.2/24")
        assert stack.ipv6 is not None
        stack.ipv6.add_address(iface, US6, 64)
        for addr in ("192.0.2.1/24", "2001:db8::2/64"):
            extra = ["nodad"] if ":" in addr else []
            subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", tap.name, *extra],
                           check=True)
        rt = Runtime()
        rt.add_stack(stack)
        rt.start()
        try:
            rt.call(stack.start)
            return (tcp_bulk.ping_rtt(ns, "192.0.2.2", count),
                    tcp_bulk.ping_rtt(ns, "2001:db8::1", count))
        finally:
            rt.stop()
            rt.join(5)
            rt.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ipv6_stack")
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rtt", action="store_true", help="also ping RTT over TAP (root)")
    args = ap.parse_args(argv)
    for label, fast in (("", True), (" (full path)", False)):
        us4, us6 = run(args.packets, args.repeat, fast)
        print(f"stack echo in+out{label}  IPv4 {us4:6.2f} us/packet   IPv6 {us6:6.2f} us/packet"
              f"   IPv6/IPv4 {us6 / us4:5.2f}")
    if args.rtt:
        rtt4, rtt6 = ping_rtts()
        show = [f"{v:.3f} ms" if v is not None else "n/a" for v in (rtt4, rtt6)]
        print(f"ping RTT kernel -> femtotcp  IPv4 {show[0]}   IPv6 {show[1]}")


if __name__ == "__main__":
    main()
