"""``python -m bench.ping``: ping RTT kernel -> stack over TAP (as ``bench.run``
measures it: a vnet-header TAP, 100 pings 10 ms apart) beside the bare Python
TAP echo loop (the floor), alternated ``--rounds`` times; min and average of
each, and the stack's overhead over the floor.

    python -m bench.ping [--rounds N] [--count N]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
from collections.abc import Iterator

from bench import tcp_bulk
from femtotcp.phy import netns as nsmod
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime
from femtotcp.stack import Stack


@contextlib.contextmanager
def _stack(offload: bool) -> Iterator[str]:
    """A stack alone on a TAP (the kernel at 192.0.2.1 in a namespace): only
    APIs every checkout has, so ``PYTHONPATH=OTHER/src`` measures another one."""
    with tcp_bulk.namespace("ftping") as ns:
        with nsmod.entered(ns):
            tap = TapDevice("ftping0", mtu=1500, offload=offload, gro=offload)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{tcp_bulk.KERNEL}/24", "dev",
                        tap.name], check=True)
        stack = Stack("ping")
        stack.add_interface(tap, mac="02:00:00:00:00:02", ipv4=f"{tcp_bulk.STACK}/24")
        rt = Runtime()
        rt.add_stack(stack)
        rt.start()
        try:
            rt.call(stack.start)
            yield ns
        finally:
            rt.stop()
            rt.join(5)
            rt.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ping")
    ap.add_argument("--rounds", type=int, default=3, help="alternations (3)")
    ap.add_argument("--count", type=int, default=100, help="pings per measurement (100)")
    ap.add_argument("--plain", action="store_true", help="the stack on a plain TAP too")
    args = ap.parse_args(argv)
    stack: list[tuple[float, float]] = []
    floor: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        with _stack(not args.plain) as ns:
            # One ping first: the kernel resolves the stack's MAC with it (the
            # floor's kernel side has a static neighbour entry instead).
            tcp_bulk.ping_stats(ns, count=1)
            got = tcp_bulk.ping_stats(ns, count=args.count, interval=0.01)
        if got:
            stack.append(got)
        low = tcp_bulk.ping_floor(1500, args.count)
        if low:
            floor.append(low)
    if not stack or not floor:
        print(f"ping not available (stack {stack}, floor {floor})")
        return
    s_min = min(s[0] for s in stack)
    s_avg = min(s[1] for s in stack)
    f_min = min(f[0] for f in floor)
    f_avg = min(f[1] for f in floor)
    print(f"ping RTT, best of {args.rounds} rounds of {args.count}: femtotcp min {s_min:.3f} "
          f"avg {s_avg:.3f} ms; bare Python TAP echo loop min {f_min:.3f} avg {f_avg:.3f} ms; "
          f"{(s_min / f_min - 1) * 100:+.0f} % / {(s_avg / f_avg - 1) * 100:+.0f} % over the floor")


if __name__ == "__main__":
    main()
