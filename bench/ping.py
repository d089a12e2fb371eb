"""``python -m bench.ping``: ping RTT kernel -> stack over TAP (as ``bench.run``
measures it: a vnet-header TAP, 100 pings 10 ms apart) beside the bare Python
TAP echo loop (the floor: read, answer, write, with ``select``) on a TAP with
the same flags (vnet header and offload; both plain with ``--plain``) and the
same pings, alternated ``--rounds`` times; min, average and median of each
(the best round of each), and the stack's overhead over the floor. Then, for
both sides alike: the median over the rounds of each round's median (less
swayed by one lucky round than the best), and the CPU time per ping of the
thread that answers (the stack's loop thread, the floor's loop thread: its
clock from ``pthread_getcpuclockid``, read before and after the pings, so a
wake-up with cold caches is what it counts, the kernel's work in the
thread's system calls included).

``--loop-floor`` adds a third measurement in each round: the floor's own echo
handler run by femtotcp's event loop (a ``Runtime`` with the TAP in its
epoll, no stack): what the loop alone adds to the floor, before any protocol
work.

    python -m bench.ping [--rounds N] [--count N] [--plain] [--loop-floor]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

from bench import tcp_bulk
from femtotcp.phy import netns as nsmod
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime
from femtotcp.stack import Stack

Stats = tuple[float, float, float]


@contextlib.contextmanager
def _stack(offload: bool, loop: list[Runtime] | None = None) -> Iterator[str]:
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
        if loop is not None:
            loop.append(rt)
        try:
            rt.call(stack.start)
            yield ns
        finally:
            rt.stop()
            rt.join(5)
            rt.close()


def rtt_stats(ns: str, host: str = tcp_bulk.STACK, count: int = 100,
              interval: float = 0.01) -> Stats | None:
    """(min, average, median) ping RTT in ms from every reply's own time."""
    try:
        res = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i",
                              str(interval), host], capture_output=True, text=True,
                             timeout=30 + count * interval)
    except (OSError, subprocess.TimeoutExpired):
        return None
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", res.stdout)]
    if not times:
        return None
    return min(times), statistics.fmean(times), statistics.median(times)


def cpu_per_ping(thread: threading.Thread, run: Callable[[], Stats | None], count: int
                 ) -> tuple[Stats | None, float | None]:
    """``run()`` (pings) and the CPU time ``thread`` spent meanwhile, in
    microseconds per ping (None when the thread's clock cannot be read)."""
    try:
        clock = time.pthread_getcpuclockid(thread.ident or 0)
        before = time.clock_gettime_ns(clock)
    except (OSError, AttributeError):
        return run(), None
    got = run()
    try:
        spent = time.clock_gettime_ns(clock) - before
    except OSError:
        return got, None
    return got, spent / count / 1000


def _best(runs: list[Stats]) -> Stats:
    return (min(r[0] for r in runs), min(r[1] for r in runs), min(r[2] for r in runs))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ping")
    ap.add_argument("--rounds", type=int, default=3, help="alternations (3)")
    ap.add_argument("--count", type=int, default=100, help="pings per measurement (100)")
    ap.add_argument("--plain", action="store_true", help="the stack on a plain TAP too")
    ap.add_argument("--loop-floor", action="store_true",
                    help="also the floor's echo handler run by femtotcp's event loop "
                         "(Runtime, epoll) with no stack: the loop's own share")
    args = ap.parse_args(argv)
    stack: list[Stats] = []
    floor: list[Stats] = []
    in_loop: list[Stats] = []
    stack_cpu: list[float] = []
    floor_cpu: list[float] = []
    in_loop_cpu: list[float] = []

    def floor_stats(cpus: list[float]) -> Callable[[str, str, int, float], Stats | None]:
        def stats(ns: str, host: str, count: int, interval: float) -> Stats | None:
            # The floor's loop is the one thread ping_floor started (the
            # stack's loop thread was joined before).
            loops = [t for t in threading.enumerate()
                     if t is not threading.main_thread() and t.is_alive()]
            if len(loops) != 1:
                return rtt_stats(ns, host, count, interval)
            got, cpu = cpu_per_ping(loops[0], lambda: rtt_stats(ns, host, count, interval),
                                    count)
            if got and cpu is not None:
                cpus.append(cpu)
            return got
        return stats

    for _ in range(args.rounds):
        loop: list[Runtime] = []
        with _stack(not args.plain, loop) as ns:
            # One ping first: the kernel resolves the stack's MAC with it (the
            # floor's kernel side has a static neighbour entry instead).
            tcp_bulk.ping_stats(ns, count=1)
            thread = loop[0].thread
            assert thread is not None
            got, cpu = cpu_per_ping(thread, lambda: rtt_stats(ns, count=args.count),
                                    args.count)
        if got:
            stack.append(got)
            if cpu is not None:
                stack_cpu.append(cpu)
        # The floor on a TAP with the stack's own flags (vnet headers and
        # offload unless --plain), the same ping count and interval.
        low = tcp_bulk.ping_floor(1500, args.count, floor_stats(floor_cpu),
                                  offload=not args.plain)
        if low:
            floor.append(low)
        if args.loop_floor:
            got = tcp_bulk.ping_floor(1500, args.count, floor_stats(in_loop_cpu),
                                      offload=not args.plain, in_runtime=True)
            if got:
                in_loop.append(got)
    if not stack or not floor:
        print(f"ping not available (stack {stack}, floor {floor})")
        return
    s_min, s_avg, s_med = _best(stack)
    f_min, f_avg, f_med = _best(floor)
    print(f"ping RTT, best of {args.rounds} rounds of {args.count}: femtotcp min {s_min:.3f} "
          f"avg {s_avg:.3f} median {s_med:.3f} ms; bare Python TAP echo loop min {f_min:.3f} "
          f"avg {f_avg:.3f} median {f_med:.3f} ms; over the floor: min "
          f"{(s_min / f_min - 1) * 100:+.0f} %, avg {(s_avg / f_avg - 1) * 100:+.0f} %, "
          f"median {(s_med / f_med - 1) * 100:+.0f} %")
    s_mm = statistics.median(r[2] for r in stack)
    f_mm = statistics.median(r[2] for r in floor)
    print(f"median of the rounds' medians: femtotcp {s_mm:.3f} ms, floor {f_mm:.3f} ms "
          f"({(s_mm / f_mm - 1) * 100:+.0f} %)")
    if stack_cpu and floor_cpu:
        s_cpu = statistics.median(stack_cpu)
        f_cpu = statistics.median(floor_cpu)
        print(f"CPU per ping of the answering thread (median of rounds): femtotcp "
              f"{s_cpu:.1f} us, floor {f_cpu:.1f} us ({(s_cpu / f_cpu - 1) * 100:+.0f} %)")
    if in_loop:
        l_mm = statistics.median(r[2] for r in in_loop)
        line = (f"the floor's echo handler in femtotcp's event loop (no stack): median of "
                f"the rounds' medians {l_mm:.3f} ms ({(l_mm / f_mm - 1) * 100:+.0f} % over "
                f"the floor)")
        if in_loop_cpu and floor_cpu:
            l_cpu = statistics.median(in_loop_cpu)
            line += (f", CPU per ping {l_cpu:.1f} us "
                     f"({(l_cpu / statistics.median(floor_cpu) - 1) * 100:+.0f} %)")
        print(line)


if __name__ == "__main__":
    main()
