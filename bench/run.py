"""``python -m bench.run``: TCP bulk throughput over TAP (kernel <-> femtotcp) next to
the kernel's own over veth, ping RTT and RSS (needs root: network namespaces);
then PyTCP's figures over TAP with the same set-up (``bench.pytcp_bench``; PyTCP is
installed on demand into bench/.venv-pytcp) and the ratios femtotcp/PyTCP; then the
per-segment path measured without any I/O (``bench.tcp_path``) and the wire-level
cost of IPv6 input next to IPv4's (``bench.ipv6_wire``).

    python -m bench.run [--size MB] [--repeat N] [--mtu 1500,9000] [--profile]
                        [--path-only] [--pytcp-size MB] [--no-pytcp]

Each MTU is measured with TAP offload (TSO writes, GRO reads, checksums the
kernel vouches for) and without (a plain TAP), in both directions; ping RTT is
printed beside a bare Python TAP echo loop's (the floor).

To compare two checkouts on a busy machine, alternate the quick parts, each
run once per checkout in turn (``PYTHONPATH=OTHER/src:OTHER`` for the other):
``python -m bench.nooffload`` (plain TAP, both directions, MTU 1500),
``python -m bench.ping`` (the stack's ping beside the floor, alternated) and
``python -m bench.tcp_path`` (the per-segment path without I/O).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys


def _row(name: str, values: list[float], veth: list[float] | None) -> None:
    share = (f"  {statistics.median(values) / statistics.median(veth) * 100:6.1f} % of veth"
             if veth else "")
    print(f"    {name:40s} {max(values):8.1f} MB/s best {statistics.median(values):8.1f} "
          f"MB/s median{share}")


def _tap(args: argparse.Namespace) -> None:
    from bench import tcp_bulk

    nbytes = args.size * tcp_bulk.MB
    print(f"TCP bulk over TAP, {args.size} MB per run, best and median of {args.repeat} "
          "runs, beside the kernel's own TCP over a veth pair in the same run")
    profiles = []
    k2s: list[float] = []
    s2k: list[float] = []
    veth1500: list[float] = []
    rtt: float | None = None
    ping: tuple[float, float] | None = None
    rss = 0.0
    for mtu in args.mtu:
        print(f"  MTU {mtu}")
        veth = [tcp_bulk.kernel_veth(max(nbytes, 1000 * tcp_bulk.MB), mtu)
                for _ in range(args.repeat)]
        _row("kernel -> kernel (veth)", veth, None)
        for offload in (True, False):
            how = "offload (TSO + GRO)" if offload else "no offload"
            with tcp_bulk.rig(mtu, offload, offload) as r:
                rx = [tcp_bulk.kernel_to_stack(r, nbytes) for _ in range(args.repeat)]
                tx = [tcp_bulk.stack_to_kernel(r, nbytes) for _ in range(args.repeat)]
                if mtu == args.mtu[0] and offload:
                    k2s, s2k, veth1500 = rx, tx, veth
                    ping = tcp_bulk.ping_stats(r.ns, count=100, interval=0.01)
                    rtt = ping[1] if ping else None
                    rss = tcp_bulk.rss_mb()
                    if args.profile:
                        small = min(nbytes, 50 * tcp_bulk.MB)
                        profiles.append((f"kernel -> femtotcp over TAP, MTU {mtu}, {how}",
                                         tcp_bulk.profiled(
                                             r, lambda r=r, small=small: tcp_bulk.kernel_to_stack(r, small))))
                        profiles.append((f"femtotcp -> kernel over TAP, MTU {mtu}, {how}",
                                         tcp_bulk.profiled(
                                             r, lambda r=r, small=small: tcp_bulk.stack_to_kernel(r, small))))
            _row(f"kernel -> femtotcp, {how}", rx, veth)
            _row(f"femtotcp -> kernel, {how}", tx, veth)
            with tcp_bulk.rig(mtu, offload, offload, ipv6=True) as r6:
                rx6 = [tcp_bulk.kernel_to_stack(r6, nbytes, tcp_bulk.STACK6)
                       for _ in range(args.repeat)]
                tx6 = [tcp_bulk.stack_to_kernel(r6, nbytes, tcp_bulk.STACK6)
                       for _ in range(args.repeat)]
            _row(f"kernel -> femtotcp over IPv6, {how}", rx6, veth)
            _row(f"femtotcp -> kernel over IPv6, {how}", tx6, veth)
            print(f"    IPv6 / IPv4 (best): in {max(rx6) / max(rx):.2f}, "
                  f"out {max(tx6) / max(tx):.2f}")
    # The floor on a TAP with the flags of the stack's measured above (offload).
    floor = tcp_bulk.ping_floor(args.mtu[0], offload=True)
    if ping is not None and floor is not None:
        print(f"  ping RTT (100 pings, MTU {args.mtu[0]}), min / avg: femtotcp "
              f"{ping[0]:.3f} / {ping[1]:.3f} ms; bare Python TAP echo loop (the floor) "
              f"{floor[0]:.3f} / {floor[1]:.3f} ms: {(ping[0] / floor[0] - 1) * 100:+.0f} % / "
              f"{(ping[1] / floor[1] - 1) * 100:+.0f} % over the floor")
    else:
        print(f"  ping RTT femtotcp {ping}, floor {floor} (ping not available?)")
    print(f"  RSS after the transfers       {rss:.1f} MB")
    from bench import ipv6_stack
    rtt4, rtt6 = ipv6_stack.ping_rtts()
    print("  ping RTT kernel -> femtotcp with IPv6 loaded: "
          + "   ".join(f"{name} {v:.3f} ms" if v is not None else f"{name} n/a"
                       for name, v in (("IPv4", rtt4), ("IPv6", rtt6))))
    if not args.no_pytcp and k2s:
        _pytcp(args, veth1500, k2s, s2k, rtt, rss)
    for name, text in profiles:
        print(f"\n--- cProfile of the stack's loop thread, {name} ---\n{text}")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:8.1f} x" if a and b else "     n/a"


def _pytcp(args: argparse.Namespace, veth: list[float], k2s: list[float],
           s2k: list[float], rtt: float | None, rss: float) -> None:
    """PyTCP over TAP with the same set-up, and the ratios femtotcp/PyTCP (medians)."""
    from bench import pytcp_bench

    print(f"\nPyTCP ({pytcp_bench.PACKAGE} {pytcp_bench.VERSION}, {sys.version.split()[0]}"
          f" venv bench/.venv-pytcp) over TAP, MTU 1500, {args.pytcp_size} MB per run, "
          f"best and median of {args.repeat} runs", flush=True)
    if not pytcp_bench.STAMP.exists():
        print(f"  (installing {pytcp_bench.PACKAGE}=={pytcp_bench.VERSION} into "
              "bench/.venv-pytcp, once)", flush=True)
    res = pytcp_bench.measure(args.pytcp_size * pytcp_bench.MB, args.repeat)
    rows = [("kernel -> PyTCP (TAP)", res.k2p), ("PyTCP -> kernel (TAP)", res.p2k)]
    for name, values in rows:
        if values:
            print(f"  {name:28s} {max(values):8.1f} MB/s best  "
                  f"{statistics.median(values):8.1f} MB/s median")
    for name, values in rows:
        if values:
            print(f"  {name:28s} {statistics.median(values) / statistics.median(veth) * 100:8.2f}"
                  f" % of the kernel's own (medians)")
    if res.rtt_ms is not None:
        print(f"  ping RTT kernel -> PyTCP      {res.rtt_ms:.3f} ms")
    if res.rss_mb is not None:
        print(f"  RSS of PyTCP's process        {res.rss_mb:.1f} MB")
    if res.error:
        what = "not measured" if not (res.k2p or res.p2k) else "incomplete"
        print(f"  PyTCP {what}: {res.error}")
    med = statistics.median
    if res.k2p or res.p2k or res.rtt_ms is not None:
        print("femtotcp / PyTCP (medians; for RTT and RSS, PyTCP's / femtotcp's: "
              "above 1 is femtotcp ahead)")
        print(f"  kernel -> stack (TAP)        {_ratio(med(k2s), med(res.k2p) if res.k2p else None)}")
        print(f"  stack -> kernel (TAP)        {_ratio(med(s2k), med(res.p2k) if res.p2k else None)}")
        print(f"  ping RTT                     {_ratio(res.rtt_ms, rtt)}")
        print(f"  RSS                          {_ratio(res.rss_mb, rss)}")


def _path(args: argparse.Namespace) -> None:
    from bench import tcp_path

    print("Per-segment path without I/O (frames handed to Stack.receive, batches of "
          f"{tcp_path.BATCH}; CPU time, best of {args.repeat} runs):")
    for name, us, acks in tcp_path.receive_variants(args.repeat):
        print(f"  receiving, {name:36s} {us:6.2f} us per 1448-byte segment "
              f"(= {1448 / us:7.1f} MB/s of CPU), {acks} ACKs")
    us_tx, segs = tcp_path.best(lambda: tcp_path.send_path(10000), args.repeat)
    per_seg = us_tx * 10000 / segs
    print(f"  sending:   {per_seg:6.1f} us per 1448-byte segment, ACK processing included "
          f"(= {1448 / per_seg:.1f} MB/s of CPU)")
    from bench import ipv6_stack, ipv6_wire
    ipv6_wire.main([])
    ipv6_stack.main([])
    if args.profile:
        print("\n--- cProfile, receiving ---")
        print(tcp_path.profile(lambda p: tcp_path.receive_path(20000, p)))
        print("--- cProfile, sending ---")
        print(tcp_path.profile(lambda p: tcp_path.send_path(10000, p)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200, help="megabytes per transfer (200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per direction (3)")
    ap.add_argument("--mtu", type=lambda v: [int(x) for x in v.split(",")],
                    default=[1500, 9000], help="MTUs to measure, comma-separated (1500,9000)")
    ap.add_argument("--profile", action="store_true",
                    help="also print cProfile reports of the stack's loop thread")
    ap.add_argument("--path-only", action="store_true",
                    help="only the per-segment path (no root needed)")
    ap.add_argument("--pytcp-size", type=int, default=50,
                    help="megabytes per PyTCP transfer (50; PyTCP moves a few MB/s)")
    ap.add_argument("--no-pytcp", action="store_true",
                    help="skip PyTCP (otherwise installed on demand into bench/.venv-pytcp)")
    args = ap.parse_args(argv)
    if not args.path_only:
        if os.geteuid() != 0:
            print("bench: the TAP measurements need root (network namespaces); "
                  "running --path-only", file=sys.stderr)
        else:
            _tap(args)
            print()
    _path(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
