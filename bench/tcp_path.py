"""The per-segment path without any I/O: how many microseconds the stack spends
on one TCP segment, receiving (data in, ACKs out) and sending (ACKs in, data
out). Frames are built beforehand and handed to ``Stack.receive``; the device
only counts what the stack transmits. Runs anywhere (no root), and under
cProfile with ``python -m bench.run --path --profile``.

Times are CPU time of this process (``time.process_time``), the best of
``--repeat`` runs: the machine is shared, and wall-clock time would measure the
neighbours too. The IPv6 rows run the same connection over IPv6 (issue 13:
TCP over IPv6 within 10% of IPv4). ``python -m bench.tcp_path [--repeat N]
[--segments N] [--profile verified|batched|vouched|gro|send]`` (the last prints a
cProfile of one such run instead of the figures).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import socket
import time
from collections.abc import Callable
from typing import Any

from femtotcp.phy.base import Device
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.stack.config import StackConfig
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, ipv6, mac_bytes, ndp, tcp

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
OUR_IP6 = ip_bytes("2001:db8::2")
PEER_IP6 = ip_bytes("2001:db8::1")
MSS = 1448
PORT = 9
BATCH = 16      # frames per device read batch


class CountingDevice(Device):
    """Keeps the last frames sent (for the handshake) and counts the rest. With
    ``offload`` it takes TSO writes like a vnet-header TAP and counts each as
    the MSS-sized segments it stands for."""

    def __init__(self, offload: bool = False, gro: bool = False) -> None:
        super().__init__("null", 1500)
        self.gro = gro
        self.sent: list[bytes] = []
        self.keep = True
        self.count = 0
        self.writes = 0
        self.offload = offload

    def _transmit(self, frame: bytes) -> None:
        self.count += 1
        self.writes += 1
        if self.keep:
            self.sent.append(frame)

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None:
        self.writes += 1
        self.count += -(-(len(frame) - hdr_len) // gso_size) if gso_size else 1


def _frame(segment: bytes, family: int = 4) -> bytes:
    if family == 6:
        return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV6,
                              ipv6.build(PEER_IP6, OUR_IP6, 6, segment))
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                          ipv4.build(PEER_IP, OUR_IP, 6, segment))


def _segments(dev: CountingDevice) -> list[tuple[tcp.TcpHeader, bytes]]:
    out = []
    for frame in dev.sent:
        eth, body = ethernet.parse(frame)
        if eth.ethertype == ethernet.ETH_IPV4:
            hdr, payload = ipv4.parse(body)
            proto = hdr.proto
        elif eth.ethertype == ethernet.ETH_IPV6:
            hdr6, payload = ipv6.parse(body)
            proto = hdr6.next_header
        else:
            continue
        if proto == 6:
            t, data = tcp.parse(payload)
            out.append((t, bytes(data)))
    dev.sent.clear()
    return out


class PathRig:
    """A stack with one established connection to a scripted peer."""

    def __init__(self, on_accept: Callable[[Any], None], offload: bool = False,
                 gro: bool = False, family: int = 4) -> None:
        self.loop = SimLoop()
        self.dev = CountingDevice(offload, gro)
        self.family = family
        #: The data per full-sized segment with timestamps (IPv6's header is 20 bytes more).
        self.mss = MSS if family == 4 else MSS - 20
        if family == 6:
            self.peer, self.us = PEER_IP6, OUR_IP6
            self.stack = Stack("path", modules=["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6",
                                                "icmp6"],
                               config=StackConfig(ipv6_dad=False, ipv6_link_local=False))
        else:
            self.peer, self.us = PEER_IP, OUR_IP
            self.stack = Stack("path")
        self.iface = self.stack.add_interface(self.dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
        self.loop.add_stack(self.stack)
        if family == 6:
            assert self.stack.ipv6 is not None
            self.stack.ipv6.add_address(self.iface, OUR_IP6, 64)
            # The peer's solicitation, then its solicited advertisement: REACHABLE.
            group = ipv6.solicited_node(OUR_IP6)
            for dst, dst_mac, msg in (
                    (group, ipv6.multicast_mac(group),
                     ndp.build_ns(PEER_IP6, group, OUR_IP6, PEER_MAC)),
                    (OUR_IP6, OUR_MAC, ndp.build_na(PEER_IP6, OUR_IP6, PEER_IP6, solicited=True,
                                                    target_lladdr=PEER_MAC))):
                self.stack.receive(self.iface, ethernet.build(
                    dst_mac, PEER_MAC, ethernet.ETH_IPV6,
                    ipv6.build(PEER_IP6, dst, ipv6.PROTO_ICMP6, msg, 255)))
        else:
            self.stack.receive(self.iface, ethernet.build(
                ethernet.BROADCAST, PEER_MAC, ethernet.ETH_ARP,
                arp.build(arp.REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, OUR_IP)))
        lst = self.stack.tcp.listen(bytes(len(self.us)), PORT)
        self.peer_seq = 1000
        self.ts = 1
        #: The peer's TSval ticks every ``ts_every`` segments (1: every one).
        self.ts_every = 1
        self.sent = 0
        #: IPv4 headers as a Linux sender's (``frame``).
        self.linux_ip = False
        self.ident = 0
        opts = tcp.build_options(mss=1460, wscale=7, sack_perm=True, ts=(self.ts, 0))
        self.stack.receive(self.iface, self.frame(tcp.build(self.peer, self.us, 40000, PORT,
                                                            self.peer_seq, 0, tcp.SYN, 65535,
                                                            b"", opts)))
        self.loop.run(0)
        (synack, _), = [s for s in _segments(self.dev) if s[0].flags & tcp.SYN]
        self.our_seq = synack.seq + 1
        self.peer_seq += 1
        self.their_ts = tcp.parse_options(synack.options).ts_val or 0
        self.stack.receive(self.iface, self.frame(self.segment(b"", self.our_seq)))
        self.loop.run(0)
        conn = lst.accept()
        assert conn is not None
        self.conn = conn
        on_accept(conn)
        self.dev.keep = False

    def frame(self, segment: bytes) -> bytes:
        if self.linux_ip and self.family == 4:
            # As a Linux sender's: DF set (path MTU discovery), the ID counting up.
            self.ident = (self.ident + 1) & 0xFFFF
            return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                                  ipv4.build(PEER_IP, OUR_IP, 6, segment, ident=self.ident,
                                             flags_frag=0x4000))
        return _frame(segment, self.family)

    def segment(self, payload: bytes, ack: int, window: int = 0xFFFF) -> bytes:
        self.sent += 1
        if self.sent % self.ts_every == 0:
            self.ts += 1
        return tcp.build(self.peer, self.us, 40000, PORT, self.peer_seq & 0xFFFFFFFF,
                         ack & 0xFFFFFFFF, tcp.ACK, window, payload,
                         tcp.build_options(ts=(self.ts, self.their_ts)))


PUMP_CHUNK = 65536      # what the socket pump (api/sock_base.CHUNK) takes per step


#: Segments per tick of a kernel peer's TSval (a millisecond clock: at the
#: plain TAP's 60-90 MB/s, 40-60 MTU segments carry the same value).
TS_TICK = 48


def receive_path(segments: int = 20000, prof: cProfile.Profile | None = None,
                 gro: int = 1, csum_ok: bool = False, pair: str = "",
                 family: int = 4, batched: bool = False) -> tuple[float, int]:
    """CPU microseconds per received 1448-byte data segment; and ACKs sent.

    ``gro`` > 1 hands the stack GRO super-frames of that many segments (as a
    vnet-header TAP with GRO reads delivers them); ``csum_ok`` delivers every
    frame as one whose checksum the device vouched for (the trusted entry a
    vnet-header TAP uses for NEEDS_CSUM / DATA_VALID frames). ``pair`` moves
    the data on into a Unix socket pair, as the socket pump does for a
    program, and reads it out with ``recv_into`` into a preallocated buffer:
    "recv" takes it from the connection with ``conn.recv(65536)`` (a bytes
    copy, then ``send``), "view" sends straight from the receive buffer's
    chunks (``TcpConnection.send_received`` with the socket's ``sendmsg``, as
    the socket pump does).

    ``batched`` hands MTU frames over as a device's read batch does
    (``on_readable``): the first of every ``BATCH`` to ``Stack.receive``, the
    rest at once to ``Stack.receive_batch``, which merges runs of segments
    (software GRO, stack/gro.py); the peer then sends as Linux does: its
    TSval a millisecond clock (``TS_TICK``), so segments sent within a tick
    carry the same options, and IPv4 with DF set and the ID counting up."""
    got = [0]
    sock_in = sock_out = None
    if pair:
        sock_in, sock_out = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (sock_in, sock_out):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setblocking(False)
    sink = bytearray(1 << 20)

    def drain(conn: Any) -> None:
        def ev() -> None:
            if sock_in is None:
                while (d := conn.recv(1 << 20)):
                    got[0] += len(d)
            elif pair == "recv":
                while (d := conn.recv(PUMP_CHUNK)):
                    sock_in.send(d)
            else:
                conn.send_received(sock_in.sendmsg)
        conn.on_event = ev

    def read_out() -> None:
        if sock_out is not None:
            try:
                while (n := sock_out.recv_into(sink)):
                    got[0] += n
            except BlockingIOError:
                pass

    rig = PathRig(drain, gro=gro > 1, family=family)
    if batched:
        rig.ts_every = TS_TICK
        rig.linux_ip = True
    payload = bytes(rig.mss * gro)
    frames = []
    nframes = segments // gro
    for _ in range(nframes):
        frames.append(rig.frame(rig.segment(payload, rig.our_seq)))
        rig.peer_seq += len(payload)
    receive = rig.stack.receive
    iface = rig.iface
    if csum_ok:
        receive = functools.partial(receive, csum_ok=True)
    batch = max(1, BATCH // gro)
    if prof is not None:
        prof.enable()
    run = rig.loop.run
    if batched:
        receive_batch = rig.stack.receive_batch
        batches = [(frames[i], [(f, 0) for f in frames[i + 1:i + BATCH]])
                   for i in range(0, len(frames), BATCH)]
        start = time.process_time()
        for first, rest in batches:
            receive(iface, first)
            if rest:
                receive_batch(iface, rest)
            run(0)
            read_out()
    else:
        start = time.process_time()
        for i, f in enumerate(frames):
            receive(iface, f)
            if i % batch == batch - 1:
                run(0)          # the end of a device batch: deferred ACKs and events
                read_out()
    run(0)
    read_out()
    elapsed = time.process_time() - start
    if prof is not None:
        prof.disable()
    for s in (sock_in, sock_out):
        if s is not None:
            s.close()
    assert got[0] == nframes * len(payload), got[0]
    return elapsed / (nframes * gro) * 1e6, rig.dev.count


def send_path(acks: int = 10000, prof: cProfile.Profile | None = None,
              per_ack: int = 2, offload: bool = False, family: int = 4) -> tuple[float, int]:
    """Microseconds per ACK received (each acking ``per_ack`` segments and
    opening room for as many more); and data segments sent. With ``offload``
    the device takes TSO writes (``per_ack`` 44: the kernel acking each 64 KB
    GSO packet it received)."""
    chunk = bytes(64 * 1024)

    def fill(conn: Any) -> None:
        def ev() -> None:
            while conn.send(chunk):
                pass
        conn.on_event = ev
        ev()

    rig = PathRig(fill, offload, family=family)
    receive = rig.stack.receive
    iface = rig.iface
    run = rig.loop.run
    if offload:
        # ACKs of what was really sent (a TSO sender is ahead of any script):
        # each built when due, at most ``per_ack`` segments each.
        conn = rig.conn
        before = rig.dev.count
        if prof is not None:
            prof.enable()
        start = time.process_time()
        acked = conn.snd_una
        for _ in range(acks):
            acked = min(acked + per_ack * rig.mss, conn.snd_max)
            receive(iface, rig.frame(rig.segment(b"", acked)))
            run(0)
        elapsed = time.process_time() - start
        if prof is not None:
            prof.disable()
        return elapsed / acks * 1e6, rig.dev.count - before
    frames = []
    ack = rig.our_seq
    for _ in range(acks):
        ack += per_ack * rig.mss
        frames.append(rig.frame(rig.segment(b"", ack)))
    before = rig.dev.count
    if prof is not None:
        prof.enable()
    start = time.process_time()
    for i, f in enumerate(frames):
        receive(iface, f)
        if i % BATCH == BATCH - 1:
            run(0)          # the end of a device batch: deferred ACKs and events
    run(0)
    elapsed = time.process_time() - start
    if prof is not None:
        prof.disable()
    return elapsed / acks * 1e6, rig.dev.count - before


def profile(fn: Callable[[cProfile.Profile], Any], top: int = 30) -> str:
    """cProfile of the timed loop only (``fn`` gets the profiler to enable)."""
    prof = cProfile.Profile()
    fn(prof)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def best(fn: Callable[[], tuple[float, int]], repeat: int) -> tuple[float, int]:
    """The run with the least CPU time per segment among ``repeat`` runs."""
    return min((fn() for _ in range(repeat)), key=lambda r: r[0])


def receive_variants(repeat: int = 5, segments: int = 20000
                     ) -> list[tuple[str, float, int]]:
    """Per-segment receive cost: plain frames, frames the device vouched for,
    and 44-segment GRO super-frames (vouched for, as from a vnet-header TAP)."""
    rows = [("MTU frames, checksum verified", best(lambda: receive_path(segments), repeat))]
    try:
        receive_path(BATCH, batched=True)
    except AttributeError:
        pass                                        # a stack without receive_batch
    else:
        rows.append(("MTU frames as read batches, verified",
                     best(lambda: receive_path(segments, batched=True), repeat)))
    rows += [("44-segment GRO frames, verified",
             best(lambda: receive_path(segments, gro=44), repeat))]
    try:
        receive_path(BATCH, csum_ok=True)
    except TypeError:
        return [(n, r[0], r[1]) for n, r in rows]   # a stack without the trusted entry
    rows.append(("MTU frames, checksum vouched for",
                 best(lambda: receive_path(segments, csum_ok=True), repeat)))
    rows.append(("44-segment GRO frames, vouched for",
                 best(lambda: receive_path(segments, gro=44, csum_ok=True), repeat)))
    rows.append(("  + socket pair, via conn.recv",
                 best(lambda: receive_path(segments, gro=44, csum_ok=True, pair="recv"),
                      repeat)))
    rows.append(("  + socket pair, from the receive buffer",
                 best(lambda: receive_path(segments, gro=44, csum_ok=True, pair="view"),
                      repeat)))
    return [(n, r[0], r[1]) for n, r in rows]


def family_variants(repeat: int = 5, segments: int = 20000
                    ) -> list[tuple[str, float, float]]:
    """The same per-segment figures over IPv4 and IPv6, runs taking turns:
    (what, IPv4 us, IPv6 us)."""
    cases: list[tuple[str, Callable[[int], tuple[float, int]]]] = [
        ("receive, MTU frames, verified", lambda f: receive_path(segments, family=f)),
        ("receive, MTU frames, vouched for",
         lambda f: receive_path(segments, csum_ok=True, family=f)),
        ("receive, 44-segment GRO, vouched for",
         lambda f: receive_path(segments, gro=44, csum_ok=True, family=f)),
        ("send, per ACK of 2 segments", lambda f: send_path(segments // 2, family=f)),
    ]
    rows = []
    for name, fn in cases:
        runs: dict[int, list[float]] = {4: [], 6: []}
        for _ in range(repeat):
            for fam in (4, 6):
                runs[fam].append(fn(fam)[0])
        rows.append((name, min(runs[4]), min(runs[6])))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tcp_path")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure; best kept (5)")
    ap.add_argument("--segments", type=int, default=20000, help="segments per run (20000)")
    ap.add_argument("--no-families", dest="families", action="store_false",
                    help="skip the IPv4 / IPv6 rows")
    ap.add_argument("--profile", choices=("verified", "batched", "vouched", "gro", "send"),
                    help="print a cProfile of one receive (or send) run instead")
    args = ap.parse_args(argv)
    if args.profile:
        runs: dict[str, Callable[[cProfile.Profile], Any]] = {
            "verified": lambda p: receive_path(args.segments, p),
            "batched": lambda p: receive_path(args.segments, p, batched=True),
            "vouched": lambda p: receive_path(args.segments, p, csum_ok=True),
            "gro": lambda p: receive_path(args.segments, p, gro=44, csum_ok=True),
            "send": lambda p: send_path(args.segments // 2, p),
        }
        print(profile(runs[args.profile]))
        return
    for name, us, sent in receive_variants(args.repeat, args.segments):
        print(f"receive, {name:36s} {us:6.2f} us CPU per 1448-byte segment "
              f"({1448 / us:7.1f} MB/s), {sent} ACKs")
    us, sent = best(lambda: send_path(), args.repeat)
    print(f"send: {us:.2f} us CPU per ACK, {sent} segments for 10000 ACKs "
          f"({sent * 1448 / (us * 10000):.1f} MB/s)")
    us, sent = best(lambda: send_path(2000, per_ack=44, offload=True), args.repeat)
    print(f"send with TSO: {us:.2f} us CPU per ACK of 44 segments, {sent} segments for 2000 "
          f"ACKs ({us * 2000 / sent:.2f} us per segment, "
          f"{sent * 1448 / (us * 2000):.1f} MB/s)")
    if args.families:
        for name, us4, us6 in family_variants(args.repeat, args.segments):
            print(f"{name:38s} IPv4 {us4:6.2f} us   IPv6 {us6:6.2f} us   "
                  f"IPv6/IPv4 {us6 / us4:5.2f}")


if __name__ == "__main__":
    main()
