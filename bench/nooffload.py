"""``python -m bench.nooffload``: kernel -> stack and stack -> kernel over a plain
TAP (no vnet header: MTU-sized frames, every checksum verified and computed by
the stack, one read or write per frame), IPv4 at MTU 1500 only: the part of
``bench.run`` that measures the per-segment path with real I/O, quick enough to
alternate with another checkout (``PYTHONPATH=OTHER/src``) in one session.

    python -m bench.nooffload [--size MB] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics

from bench import tcp_bulk


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.nooffload")
    ap.add_argument("--size", type=int, default=100, help="megabytes per transfer (100)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per direction (3)")
    args = ap.parse_args(argv)
    nbytes = args.size * tcp_bulk.MB
    with tcp_bulk.rig(1500, False, False) as r:
        rx = [tcp_bulk.kernel_to_stack(r, nbytes) for _ in range(args.repeat)]
        tx = [tcp_bulk.stack_to_kernel(r, nbytes) for _ in range(args.repeat)]
    for name, values in (("kernel -> stack", rx), ("stack -> kernel", tx)):
        print(f"{name}, plain TAP, MTU 1500: {max(values):7.1f} MB/s best "
              f"{statistics.median(values):7.1f} MB/s median")


if __name__ == "__main__":
    main()
