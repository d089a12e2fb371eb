"""Replay stored inputs on a target, without atheris: ``python -m fuzz.replay TARGET
FILE... [--times N]``. Prints each input's outcome (the drop reason, or "accepted",
or the exception) and its fastest CPU time over N runs (the stack target gets a
fresh world (``stack6``: IPv6 world) before every run, built outside the timing).

``fuzz/one.py`` uses it to confirm a slow input: under atheris every line of the
stack is instrumented and runs several times slower, so an input is only called
slow when the uninstrumented code is over the limit too.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time


def best_ms(name: str, data: bytes, times: int = 3) -> tuple[float, str]:
    from fuzz.targets import TARGETS
    target = TARGETS[name]
    best = float("inf")
    outcome = ""
    for _ in range(times):
        if name == "stack":
            from fuzz.world import reset
            reset()
        elif name == "stack6":
            from fuzz import world6
            world6.reset()
        gc.collect()
        t0 = time.process_time()
        try:
            reason = target.run(data)
            outcome = reason or "accepted"
        except Exception as exc:  # noqa: BLE001 - reported, not judged, here
            outcome = f"{type(exc).__name__}: {exc}"
        best = min(best, (time.process_time() - t0) * 1000)
    return best, outcome


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.replay")
    ap.add_argument("target")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--times", type=int, default=3)
    args = ap.parse_args(argv)
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        ms, outcome = best_ms(args.target, data, args.times)
        print(f"{ms:.3f} ms\t{outcome}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
