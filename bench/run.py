"""``python -m bench.run``: TCP bulk throughput over TAP (kernel <-> femtotcp) next to
the kernel's own over veth, ping RTT and RSS. Needs root (network namespaces).

    python -m bench.run [--size MB] [--profile] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from bench import tcp_bulk


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200, help="megabytes per transfer (200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per direction (3)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the stack's loop thread (cProfile) for each direction")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces and TAP devices)", file=sys.stderr)
        return 2
    nbytes = args.size * tcp_bulk.MB
    print(f"femtotcp TCP bulk, MTU 1500, {args.size} MB per run, best and median of "
          f"{args.repeat}")
    rows = []
    with tcp_bulk.rig() as r:
        k2s = [tcp_bulk.kernel_to_stack(r, nbytes) for _ in range(args.repeat)]
        s2k = [tcp_bulk.stack_to_kernel(r, nbytes) for _ in range(args.repeat)]
        rtt = tcp_bulk.ping_rtt(r.ns)
        rss = tcp_bulk.rss_mb()
        rows.append(("kernel -> femtotcp (TAP)", k2s))
        rows.append(("femtotcp -> kernel (TAP)", s2k))
        profiles = []
        if args.profile:
            small = min(nbytes, 50 * tcp_bulk.MB)
            profiles.append(("kernel -> femtotcp", tcp_bulk.profiled(
                r, lambda: tcp_bulk.kernel_to_stack(r, small))))
            profiles.append(("femtotcp -> kernel", tcp_bulk.profiled(
                r, lambda: tcp_bulk.stack_to_kernel(r, small))))
    veth = [tcp_bulk.kernel_veth(max(nbytes, 1000 * tcp_bulk.MB)) for _ in range(args.repeat)]
    rows.append(("kernel -> kernel (veth)", veth))
    for name, values in rows:
        print(f"  {name:28s} {max(values):8.1f} MB/s best  {statistics.median(values):8.1f} "
              f"MB/s median")
    for name, values in rows[:2]:
        print(f"  {name:28s} {max(values) / max(veth) * 100:8.2f} % of the kernel's own")
    print(f"  ping RTT kernel -> femtotcp   {rtt:.3f} ms" if rtt is not None
          else "  ping RTT: ping not available")
    print(f"  RSS after the transfers       {rss:.1f} MB")
    for name, text in profiles:
        print(f"\n--- cProfile of the stack thread, {name} ---\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
