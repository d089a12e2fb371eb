"""Run one fuzz target under atheris (libFuzzer): ``python -m fuzz.one TARGET
SUMMARY.json SEED_DIR [libFuzzer arguments, corpus directories]``.

Every femtotcp module is imported inside ``atheris.instrument_imports`` so
libFuzzer sees the edges of the stack's own code. Each input must

* raise nothing but what the target turns into a drop (an escaping exception
  is a crash: libFuzzer stores the input under ``-artifact_prefix``);
* take at most ``FUZZ_MAX_MS`` (10) milliseconds of CPU time. Instrumented
  code runs several times slower than the real thing, so an input over the
  limit here is stored as ``slow-<sha1>`` beside the crashes and replayed three
  times in a plain process (``fuzz.replay``; the stack target on fresh worlds);
  it fails the run only when the fastest of those is still over the limit
  (``slow_confirmed``), otherwise it is counted in ``slow_unconfirmed``;
* leave memory bounded: Python's allocated blocks (after a full collection)
  are measured when a tenth of the runs is done and again at the end; the run
  fails when they grew by more than ``FUZZ_MAX_BLOCKS`` (50,000). libFuzzer's
  ``-rss_limit_mb`` catches anything gross on the way.

The summary (inputs run, slowest input, memory) is written as JSON every
tenth of the run and at the end; ``fuzz.run`` reads it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import pkgutil
import sys
import time
from typing import Any


class SlowInput(Exception):
    """An input took longer than the limit on every replay."""


class MemoryGrew(Exception):
    """Python's heap grew beyond the allowance over the run."""


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _import_everything() -> None:
    import femtotcp
    skip = ("femtotcp.api", "femtotcp.cli", "femtotcp.control", "femtotcp.demo",
            "femtotcp.__main__")
    for info in pkgutil.walk_packages(femtotcp.__path__, "femtotcp."):
        if info.name.startswith(skip):
            continue
        __import__(info.name)


def main(argv: list[str]) -> None:
    import atheris

    name, summary_path, seed_dir = argv[1], argv[2], argv[3]
    libfuzzer_args = [argv[0]] + argv[4:]
    runs = next((int(a.split("=", 1)[1]) for a in libfuzzer_args if a.startswith("-runs=")),
                1_000_000)
    max_ms = float(os.environ.get("FUZZ_MAX_MS", "10"))
    max_blocks = int(os.environ.get("FUZZ_MAX_BLOCKS", "50000"))
    artifacts = next((a.split("=", 1)[1] for a in libfuzzer_args
                      if a.startswith("-artifact_prefix=")), "./")

    with atheris.instrument_imports(include=["femtotcp", "fuzz.world", "fuzz.targets",
                                             "fuzz.world6", "fuzz.targets6"]):
        _import_everything()
        import fuzz.world  # noqa: F401
        import fuzz.world6  # noqa: F401
        from fuzz.targets import TARGETS
    target = TARGETS[name]
    run = target.run
    before = target.before

    os.makedirs(seed_dir, exist_ok=True)
    for seed in target.seeds():
        with open(os.path.join(seed_dir, hashlib.sha1(seed).hexdigest()), "wb") as f:
            f.write(seed)

    state: dict[str, Any] = {"target": name, "runs_asked": runs, "inputs": 0,
                             "slowest_ms": 0.0, "slow_unconfirmed": 0, "slow_confirmed": 0,
                             "drops": {}, "accepted": 0, "started": time.time(),
                             "rss_kb_start": _rss_kb()}
    checkpoint = max(1, runs // 10)
    warm = max(1, runs // 10)
    drops: dict[str, int] = state["drops"]
    clock = time.process_time

    def write_summary() -> None:
        state["elapsed_s"] = round(time.time() - state["started"], 1)
        state["rss_kb_now"] = _rss_kb()
        with open(summary_path + ".tmp", "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(summary_path + ".tmp", summary_path)

    def replay_ms(path: str) -> float:
        """The fastest of three uninstrumented runs (a separate process)."""
        import subprocess
        out = subprocess.run([sys.executable, "-m", "fuzz.replay", name, path],
                             capture_output=True, text=True, timeout=600)
        try:
            return float(out.stdout.split(" ms", 1)[0])
        except ValueError:
            return float("inf")

    def one_input(data: bytes) -> None:
        if before is not None:
            before()
        t0 = clock()
        reason = run(data)
        ms = (clock() - t0) * 1000
        n = state["inputs"] = state["inputs"] + 1
        if reason is None:
            state["accepted"] += 1
        elif len(drops) < 500:
            drops[reason] = drops.get(reason, 0) + 1
        if ms > state["slowest_ms"]:
            state["slowest_ms"] = round(ms, 3)
        if ms > max_ms:
            digest = hashlib.sha1(data).hexdigest()
            path = f"{artifacts}slow-{digest}"
            with open(path, "wb") as f:
                f.write(data)
            again = replay_ms(path)
            state["slowest_replay_ms"] = max(state.get("slowest_replay_ms", 0.0),
                                             round(again, 3))
            if again > max_ms:
                state["slow_confirmed"] += 1
                write_summary()
                raise SlowInput(f"{name}: input took {again:.1f} ms uninstrumented (limit "
                                f"{max_ms} ms) on every replay; stored as {path}")
            state["slow_unconfirmed"] += 1
        if n == warm:
            gc.collect()
            state["blocks_warm"] = sys.getallocatedblocks()
            state["rss_kb_warm"] = _rss_kb()
        if n % checkpoint == 0 or n == runs:
            if n >= runs:
                gc.collect()
                blocks = sys.getallocatedblocks()
                state["blocks_end"] = blocks
                grew = blocks - state.get("blocks_warm", blocks)
                state["blocks_grew"] = grew
                state["done"] = True
                state["inputs_per_s"] = round(n / max(1e-9, time.time() - state["started"]))
                write_summary()
                if grew > max_blocks:
                    raise MemoryGrew(f"{name}: Python heap grew by {grew} blocks between "
                                     f"input {warm} and input {n} (allowed {max_blocks})")
            else:
                rate = n / max(1e-9, time.time() - state["started"])
                print(f"[fuzz.one] {name}: {n}/{runs} inputs, {rate:.0f}/s, "
                      f"slowest {state['slowest_ms']} ms", file=sys.stderr, flush=True)
                write_summary()

    state["started"] = time.time()
    write_summary()
    gc.freeze()
    atheris.Setup(libfuzzer_args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
