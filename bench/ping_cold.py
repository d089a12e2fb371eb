"""``python -m bench.ping_cold``: the stack's answer to one ping with cold
caches, beside the bare echo loop's (``bench.ping``'s floor), without root
and without a kernel peer: repeatable where ``bench.ping``'s RTTs swing by
tens of percent from run to run.

A ping arrives after an idle spell (``ping -i 0.01``: 10 ms), when the CPU's
caches hold little of the interpreter's state; every Python line on its way
to the answer then costs several times what it costs in a burst, and that,
not the warm cost, is what ``bench.ping`` sees. Here the stack's TAP device
is one end of a ``SOCK_SEQPACKET`` pair carrying vnet-header frames, as a
TAP with offload does (``TapDevice.from_fd``); each round evicts the caches
(a 64 MB copy), writes one echo request to the other end, and times the
device's read handler from its call until the reply's write returned (what
the pinger waits for; the work after the write is not counted). Then the
same request again at once: the warm figure. The floor is the bare loop's
handler (read, answer in place, write) on the same pair.

``--stages`` also prints when, after the call, each step of the stack's path
was entered (median, cold): the device's ``deliver``, ``Stack._receive``,
``Ipv4.fast_input``, ICMP's ``fast_input4``, ``Ipv4.output``, the device's
``send``. The timing wrappers add a little to each step.

    python -m bench.ping_cold [--rounds N] [--stages]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.tcp_bulk import echo_answerer
from femtotcp.phy.base import Device
from femtotcp.phy.tap import VNET_HDR_LEN, TapDevice
from femtotcp.proto.icmp4 import Icmp4
from femtotcp.stack import Stack
from femtotcp.stack.ipv4 import Ipv4
from femtotcp.wire import arp, ethernet, icmp4, ipv4

STACK_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
STACK_IP = bytes((192, 0, 2, 2))
PEER_IP = bytes((192, 0, 2, 1))
HDR = bytes(VNET_HDR_LEN)
EVICT = 64 << 20
pc = time.perf_counter_ns


def request(seq: int) -> bytes:
    """An echo request from the peer, as ping sends it (56 bytes of data)."""
    msg = icmp4.build(icmp4.ECHO_REQUEST, 0, (0x1234 << 16) | seq, bytes(56))
    return HDR + ethernet.build(STACK_MAC, PEER_MAC, 0x0800,
                                ipv4.build(PEER_IP, STACK_IP, 1, msg, 64, 0, seq, ipv4.DF))


def drain(peer: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(peer.recv(70000))
        except BlockingIOError:
            return out


def measure(peer: socket.socket, handler: Callable[[], None], written: list[int],
            rounds: int, check: Callable[[list[bytes]], None],
            marks: dict[str, int] | None = None) -> tuple[list[float], list[float],
                                                          list[dict[str, float]]]:
    """Cold and warm microseconds from ``handler()``'s call until ``written[0]``
    (the stamp the write path leaves), and the cold rounds' stage marks."""
    big = bytearray(EVICT)
    cold: list[float] = []
    warm: list[float] = []
    stages: list[dict[str, float]] = []
    for i in range(rounds):
        big[:] = bytes(EVICT) if i % 2 else big
        for times in (cold, warm):
            peer.send(request(i + 2))
            if marks is not None:
                marks.clear()
            t0 = pc()
            handler()
            times.append((written[0] - t0) / 1000)
            if marks is not None and times is cold:
                stages.append({k: (v - t0) / 1000 for k, v in marks.items()})
            check(drain(peer))
    return cold, warm, stages


def _timed(marks: dict[str, int], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def step(*args: Any, **kwargs: Any) -> Any:
        marks[name] = pc()
        return fn(*args, **kwargs)
    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ping_cold")
    ap.add_argument("--rounds", type=int, default=300, help="pings of each kind (300)")
    ap.add_argument("--stages", action="store_true",
                    help="also when each step of the stack's path was entered")
    args = ap.parse_args(argv)
    marks: dict[str, int] | None = None
    if args.stages:
        # Before the stack exists: it binds these methods as it is built.
        marks = {}
        for cls, name, label in ((Device, "deliver", "device deliver"),
                                 (Stack, "_receive", "Stack._receive"),
                                 (Ipv4, "fast_input", "Ipv4.fast_input"),
                                 (Icmp4, "fast_input4", "Icmp4.fast_input4"),
                                 (Ipv4, "output", "Ipv4.output")):
            setattr(cls, name, _timed(marks, label, getattr(cls, name)))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer.setblocking(False)
    dev = TapDevice.from_fd(os.dup(ours.fileno()), offload=True)
    stack = Stack("cold")
    stack.add_interface(dev, mac=STACK_MAC, ipv4="192.0.2.2/24")
    stack.set_clock(time.monotonic)
    stack.start()
    written = [0]
    send = dev.send
    if marks is not None:
        send = _timed(marks, "device send", send)

    def timed_send(frame: bytes) -> None:
        send(frame)
        written[0] = pc()

    dev.send = timed_send         # type: ignore[method-assign]

    def answer() -> None:
        dev.on_readable()
        stack.end_batch()

    # The first request makes the stack resolve the peer's MAC: answer its ARP.
    peer.send(request(1))
    answer()
    for frame in drain(peer):
        if frame[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14] == b"\x08\x06":
            peer.send(HDR + ethernet.build(STACK_MAC, PEER_MAC, 0x0806,
                                           arp.build(2, PEER_MAC, PEER_IP, STACK_MAC, STACK_IP)))
            answer()
    drain(peer)

    def one_reply(frames: list[bytes]) -> None:
        if len(frames) != 1 or frames[0][VNET_HDR_LEN + 34] != icmp4.ECHO_REPLY:
            raise SystemExit(f"expected one echo reply, got {frames!r}")

    cold, warm, stages = measure(peer, answer, written, args.rounds, one_reply, marks)

    ours.setblocking(False)

    def stamp() -> None:
        written[0] = pc()

    floor = echo_answerer(ours.fileno(), True, written=stamp)
    f_cold, f_warm, _ = measure(peer, floor, written, args.rounds, one_reply)
    med = statistics.median
    print(f"one ping answered, {args.rounds} rounds, median us from the read handler's call "
          f"to the reply written: femtotcp cold {med(cold):.1f} warm {med(warm):.1f}; "
          f"bare echo loop cold {med(f_cold):.1f} warm {med(f_warm):.1f}; "
          f"the stack's extra: cold {med(cold) - med(f_cold):.1f}, "
          f"warm {med(warm) - med(f_warm):.1f}")
    if stages:
        print("  cold, us after the call: " + ", ".join(
            f"{k} {med(s[k] for s in stages if k in s):.1f}" for k in stages[0]))
    peer.close()
    ours.close()
    dev.close()


if __name__ == "__main__":
    main()
