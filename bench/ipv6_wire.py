"""``python -m bench.ipv6_wire``: the per-packet cost of parsing an IPv6+TCP
frame next to an IPv4+TCP one, with the wire modules alone (no stack, no I/O).

Each input does what the stack's receive path does with the wire layer: the
Ethernet header, the IP header (IPv4: header checksum; IPv6: the addresses no
link may carry and the check for an extension chain), the TCP header with its
checksum over the pseudo-header, and the TCP options (timestamps, as Linux
sends on every segment). Two sizes: a pure ACK, where the headers dominate,
and a full 1448-byte segment, where the checksum over the data does. Issue 12
asks that IPv6 input cost no more than 10% over IPv4's per packet. A third
line gives IPv6 with a Destination Options header (the chain walk's cost).

Time is the process's CPU time (``time.process_time``), best of many short
runs with the families taking turns: on a shared machine wall-clock figures
swing by a factor of two, CPU time by a few percent.

    python -m bench.ipv6_wire [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from femtotcp.wire import Malformed, ethernet, ip_bytes, ipv4, ipv6, ipv6ext, mac_bytes, tcp

MAC_A = mac_bytes("02:00:00:00:00:01")
MAC_B = mac_bytes("02:00:00:00:00:02")
V4_A, V4_B = ip_bytes("192.0.2.1"), ip_bytes("192.0.2.2")
V6_A, V6_B = ip_bytes("2001:db8::1"), ip_bytes("2001:db8::2")
_EXT = ipv6ext.EXT_HEADERS


def _segment(src: bytes, dst: bytes, payload: bytes) -> bytes:
    return tcp.build(src, dst, 40000, 80, 1000, 2000, tcp.ACK, 0xFFFF, payload,
                     options=tcp.build_options(ts=(123456, 654321)))


def frame4(payload: bytes) -> bytes:
    return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4,
                          ipv4.build(V4_A, V4_B, 6, _segment(V4_A, V4_B, payload)))


def frame6(payload: bytes) -> bytes:
    return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV6,
                          ipv6.build(V6_A, V6_B, 6, _segment(V6_A, V6_B, payload)))


def frame6_dstopts(payload: bytes) -> bytes:
    ext = ipv6ext.build_dest_options(6, [(0x1E, b"\x00" * 4)])
    return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV6,
                          ipv6.build(V6_A, V6_B, ipv6.PROTO_DSTOPTS,
                                     ext + _segment(V6_A, V6_B, payload)))


def input4(frame: bytes) -> int:
    _eth, body = ethernet.parse(frame)
    hdr, payload = ipv4.parse(body)
    seg, data = tcp.parse(payload, hdr.src, hdr.dst)
    tcp.parse_options(seg.options)
    return len(data)


def input6(frame: bytes) -> int:
    _eth, body = ethernet.parse(frame)
    hdr, payload = ipv6.parse(body)
    ipv6.check_addresses(hdr.src, hdr.dst)
    nh = hdr.next_header
    if nh in _EXT:
        chain = ipv6ext.walk(nh, payload)
        if chain.problem is not None:
            raise Malformed(chain.problem.reason)
        nh, payload = chain.upper, payload[chain.offset:]
    seg, data = tcp.parse(payload, hdr.src, hdr.dst)
    tcp.parse_options(seg.options)
    return len(data)


def _run(fn: Callable[[bytes], int], frame: bytes, packets: int) -> float:
    start = time.process_time()
    for _ in range(packets):
        fn(frame)
    return time.process_time() - start


def per_packet_us(runs: list[tuple[Callable[[bytes], int], bytes]], packets: int,
                  repeat: int) -> list[float]:
    """Best of ``repeat`` runs of ``packets`` calls each, in microseconds per
    call. The inputs take turns, so a busy machine slows them alike."""
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, (fn, frame) in enumerate(runs):
            best[i] = min(best[i], _run(fn, frame, packets))
    return [b / packets * 1e6 for b in best]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=60)
    args = ap.parse_args(argv)
    print(f"IPv6 vs IPv4 input, wire parsing only (Ethernet + IP + TCP with checksum and "
          f"timestamps), best of {args.repeat} x {args.packets} packets")
    for name, size in (("pure ACK", 0), ("1448-byte segment", 1448)):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        f4, f6, fx = frame4(payload), frame6(payload), frame6_dstopts(payload)
        assert input4(f4) == input6(f6) == input6(fx) == size
        us4, us6, usx = per_packet_us([(input4, f4), (input6, f6), (input6, fx)],
                                      args.packets, args.repeat)
        print(f"  {name:18s} IPv4 {us4:6.3f} us  IPv6 {us6:6.3f} us  "
              f"IPv6/IPv4 {us6 / us4 * 100:6.1f} %  (target <= 110 %)")
        print(f"  {'':18s} IPv6 + Destination Options {usx:6.3f} us  "
              f"({usx / us4 * 100:.1f} % of IPv4)")


if __name__ == "__main__":
    main()
