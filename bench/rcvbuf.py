"""What appending one received segment to a connection's receive buffer costs,
by how much the program has left unread there (a program slower than the
network leaves data buffered: every bulk download).

Each step appends ``--batch`` (16) full-sized segments through
``Receiver.fast_data`` and ``_schedule_ack``
(header prediction's in-order data inside a batch whose ACK is already
deferred: most segments of a burst; the segments are views of ``bytes``
frames, as a device delivers them), timed, then reads as many segments' worth
from the front with ``Receiver.read``, timed apart, so the backlog stays where it
was put.
Times are CPU time of this thread (``time.thread_time``), nanoseconds per
segment, the best of ``--repeat`` runs. ``python -m bench.rcvbuf [--repeat N]
[--steps N] [--batch N]`` (at most 16).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from bench.tcp_path import PathRig

BATCH = 16
BACKLOGS = (0, 64 << 10, 256 << 10, 1 << 20)


def _measure(rig: PathRig, frames: list[bytes], hlen: int, plen: int, backlog: int,
             steps: int, batch_size: int) -> tuple[float, float]:
    conn: Any = rig.conn
    rcv = conn.rcv
    rcv.rcvbuf = max(rcv.rcvbuf, 4 << 20)
    rcv.config = replace(rcv.config, ack_coalesce_segments=2 * BATCH)
    off = len(frames[0]) - plen - hlen
    views = [memoryview(f)[off:] for f in frames]
    nviews = len(views)
    fast_data = rcv.fast_data
    schedule_ack = rcv._schedule_ack
    read = rcv.read
    k = 0
    while len(rcv.rcv_buf) < backlog:
        fast_data(views[k % nviews], hlen, plen)
        k += 1
    clock = time.thread_time_ns
    t_append = t_read = 0
    for _ in range(steps):
        batch = [views[(k + i) % nviews] for i in range(batch_size)]
        k += batch_size
        # inside a batch whose ACK is deferred and not due: no ACK is sent
        rcv._ack_deferred = True
        rcv.quickack = 0
        rcv.ack_now = False
        rcv.last_ack_sent = rcv.rcv_nxt - plen
        rcv.rcv_mss = plen
        sent = rig.dev.count
        t0 = clock()
        for seg in batch:
            fast_data(seg, hlen, plen)
            schedule_ack(0.0)
        t1 = clock()
        assert rig.dev.count == sent, "an ACK was sent inside the timed appends"
        read(batch_size * plen)
        t2 = clock()
        t_append += t1 - t0
        t_read += t2 - t1
    while rcv.rcv_buf:
        read(1 << 20)
    n = steps * batch_size
    return t_append / n, t_read / n


def run(repeat: int = 5, steps: int = 2000, batch: int = BATCH
        ) -> list[tuple[int, float, float]]:
    rig = PathRig(lambda conn: None)
    payload = bytes(rig.mss)
    template = rig.frame(rig.segment(payload, rig.our_seq))
    hlen = 20 + 12                      # TCP header with the timestamp option
    frames = [bytes(bytearray(template)) for _ in range(1024)]
    out = []
    for backlog in BACKLOGS:
        best_a = best_r = float("inf")
        for _ in range(repeat):
            a, r = _measure(rig, frames, hlen, len(payload), backlog, steps, batch)
            best_a = min(best_a, a)
            best_r = min(best_r, r)
        out.append((backlog, best_a, best_r))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.rcvbuf")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure; best kept (5)")
    ap.add_argument("--steps", type=int, default=2000,
                    help=f"steps of {BATCH} segments per run (2000)")
    ap.add_argument("--batch", type=int, default=BATCH, choices=range(1, BATCH + 1),
                    metavar="N", help=f"segments per step, 1-{BATCH} ({BATCH})")
    args = ap.parse_args(argv)
    for backlog, a, r in run(args.repeat, args.steps, args.batch):
        print(f"{backlog >> 10:5d} KB buffered: append {a:7.0f} ns per segment, "
              f"read {r:6.0f} ns per segment")


if __name__ == "__main__":
    main()
