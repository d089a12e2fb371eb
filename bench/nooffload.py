"""``python -m bench.nooffload``: kernel -> stack and stack -> kernel over a plain
TAP (no vnet header: MTU-sized frames, every checksum verified and computed by
the stack, one read or write per frame), IPv4 at MTU 1500 only: the part of
``bench.run`` that measures the per-segment path with real I/O, quick enough to
alternate with another checkout (``PYTHONPATH=OTHER/src``) in one session.

``--cpu`` measures the receiving side without the wall clock (which the
neighbours of a shared machine move): the CPU time (user + system, this
process) per frame of the plain TAP's read loop with the stack behind it. The
frames, in-order 1448-byte segments of an established connection (sent as
Linux sends them: DF set, the IP ID counting up, the TSval a millisecond
clock, so that a read batch's segments may be merged, stack/gro.py), are queued
on the kernel side of the TAP beforehand (an AF_PACKET socket sends them out
of its kernel interface, so no kernel TCP runs while timing); then
``on_readable`` and the end of each batch run until every frame is read: the
read system calls, ``Device.deliver``, ``Stack.receive`` with the checksums
verified, and the ACKs written back; the program takes the data as the
socket pump does, without a copy. Best of ``--rounds``.

    python -m bench.nooffload [--size MB] [--repeat N]
    python -m bench.nooffload --cpu [--frames N] [--rounds N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import time

from bench import tcp_bulk
from femtotcp.phy import netns as nsmod
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes, tcp

# bench.tcp_path's addresses and segment size (not imported from there: that
# needs IPv6, which the checkouts this is compared with may predate).
OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
MSS = 1448
PORT = 9
#: Segments per tick of the peer's TSval, a millisecond clock as Linux's:
#: at the plain TAP's 60-90 MB/s, 40-60 MTU segments carry the same value
#: (bench.tcp_path.TS_TICK).
TS_TICK = 48


def tap_cpu(frames: int = 4000, rounds: int = 5) -> float:
    """CPU microseconds per frame of a plain TAP's read loop and the stack
    (see the module doc): the best of ``rounds`` rounds of ``frames`` frames."""
    with tcp_bulk.namespace("ftcpu") as ns:
        for key in ("all", "default"):       # no router solicitations on the TAP
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
        with nsmod.entered(ns):
            dev = TapDevice("ftcpu0", offload=False)
            kernel = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)     # sends only
        try:
            kernel.bind((dev.name, 0))
            subprocess.run(["ip", "-n", ns, "link", "set", dev.name, "txqueuelen",
                            str(frames + 64)], check=True)
            return _rounds(dev, kernel, frames, rounds)
        finally:
            kernel.close()
            dev.close()


def _rounds(dev: TapDevice, kernel: socket.socket, frames: int, rounds: int) -> float:
    loop = SimLoop()
    stack = Stack("cpu")
    stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    assert stack.tcp is not None
    sent: list[bytes] = []

    def capture(frame: bytes, outbound: bool) -> None:
        if outbound:
            sent.append(frame)

    def read_all() -> int:
        """Read until the TAP is empty; the frames read."""
        before = dev.counters["rx_frames"]
        while True:
            n = dev.counters["rx_frames"]
            dev.on_readable()
            loop.run(0)
            if dev.counters["rx_frames"] == n:
                return n - before

    ident = 0

    def frame(segment: bytes) -> bytes:
        # IPv4 as a Linux sender's: DF set, the ID counting up.
        nonlocal ident
        ident = (ident + 1) & 0xFFFF
        return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                              ipv4.build(PEER_IP, OUR_IP, tcp.PROTO, segment, ident=ident,
                                         flags_frag=0x4000))

    # The handshake, as bench.tcp_path's PathRig plays it, through the TAP.
    kernel.send(ethernet.build(ethernet.BROADCAST, PEER_MAC, ethernet.ETH_ARP,
                               arp.build(arp.REQUEST, PEER_MAC, PEER_IP, bytes(6), OUR_IP)))
    lst = stack.tcp.listen(bytes(4), PORT)
    dev.add_capture(capture)
    read_all()
    peer_seq = 1000
    kernel.send(frame(tcp.build(PEER_IP, OUR_IP, 40000, PORT, peer_seq, 0, tcp.SYN, 65535, b"",
                                tcp.build_options(mss=1460, wscale=7, sack_perm=True,
                                                  ts=(1, 0)))))
    read_all()
    dev.remove_capture(capture)
    synack = None
    for f in sent:
        eth, body = ethernet.parse(f)
        if eth.ethertype == ethernet.ETH_IPV4:
            hdr, payload = ipv4.parse(body)
            if hdr.proto == tcp.PROTO:
                seg, _ = tcp.parse(payload)
                if seg.flags & tcp.SYN:
                    synack = seg
    assert synack is not None, "no SYN-ACK"
    ack = synack.seq + 1
    their_ts = tcp.parse_options(synack.options).ts_val or 0
    peer_seq += 1
    tsval = 1
    nsent = 0

    def segment(payload: bytes) -> bytes:
        # The TSval of a Linux sender is a millisecond clock: it ticks every
        # TS_TICK segments here.
        nonlocal tsval, nsent
        nsent += 1
        if nsent % TS_TICK == 0:
            tsval += 1
        return tcp.build(PEER_IP, OUR_IP, 40000, PORT, peer_seq & 0xFFFFFFFF, ack, tcp.ACK,
                         0xFFFF, payload, tcp.build_options(ts=(tsval, their_ts)))

    kernel.send(frame(segment(b"")))
    read_all()
    conn = lst.accept()
    assert conn is not None, "no connection"
    got = 0

    def take(chunks: list[bytes]) -> int:
        return sum(map(len, chunks))

    def drain() -> None:
        # The data leaves as the socket pump takes it: the receive buffer's
        # chunks offered to a sendmsg (here one that takes everything), no
        # copy; a checkout without send_received reads 64 KB at a time. (A
        # recv of everything would join a read batch's 185 KB per batch,
        # which glibc serves with fresh pages now and then: half a page
        # fault per frame, 1 us, in some processes and not in others.)
        nonlocal got
        if hasattr(conn, "send_received"):
            while (n := conn.send_received(take)):
                got += n
        else:
            while (data := conn.recv(65536)):
                got += len(data)
    conn.on_event = drain
    payload = bytes(MSS)
    best = float("inf")
    for _ in range(rounds):
        batch = []
        for _ in range(frames):
            batch.append(frame(segment(payload)))
            peer_seq += MSS
        for f in batch:
            kernel.send(f)
        start = time.process_time()
        n = read_all()
        elapsed = time.process_time() - start
        if n != frames:
            raise RuntimeError(f"read {n} frames of {frames} queued")
        best = min(best, elapsed / n * 1e6)
    if got != rounds * frames * MSS:
        raise RuntimeError(f"the connection received {got} bytes of {rounds * frames * MSS}")
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.nooffload")
    ap.add_argument("--size", type=int, default=100, help="megabytes per transfer (100)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per direction (3)")
    ap.add_argument("--cpu", action="store_true",
                    help="CPU time per frame of the plain TAP's read loop and the stack")
    ap.add_argument("--frames", type=int, default=4000, help="frames per --cpu round (4000)")
    ap.add_argument("--rounds", type=int, default=5, help="--cpu rounds; best kept (5)")
    args = ap.parse_args(argv)
    if args.cpu:
        us = tap_cpu(args.frames, args.rounds)
        print(f"kernel -> stack, plain TAP, MTU 1500: {us:.2f} us CPU per {MSS}-byte segment "
              f"(read loop and stack, best of {args.rounds} x {args.frames})")
        return
    nbytes = args.size * tcp_bulk.MB
    with tcp_bulk.rig(1500, False, False) as r:
        rx = [tcp_bulk.kernel_to_stack(r, nbytes) for _ in range(args.repeat)]
        tx = [tcp_bulk.stack_to_kernel(r, nbytes) for _ in range(args.repeat)]
    for name, values in (("kernel -> stack", rx), ("stack -> kernel", tx)):
        print(f"{name}, plain TAP, MTU 1500: {max(values):7.1f} MB/s best "
              f"{statistics.median(values):7.1f} MB/s median")


if __name__ == "__main__":
    main()
