"""``make fuzz``: run every fuzz target (or those named), one at a time, each in
its own process under atheris/libFuzzer (``fuzz/one.py``), and print a table.

    python -m fuzz.run [--runs N] [--nice N] [--list] [TARGET ...]

Work files live in ``fuzz/.work/`` (git-ignored): ``TARGET/corpus`` (what
libFuzzer keeps, reused by the next run), ``TARGET/seeds`` (built from the
project's builders and a live world's pcap), ``TARGET/harvest`` (what the
project's own tests handed the IPv6 parsers, from ``python -m fuzz.harvest``;
read as a corpus too when present), ``TARGET/log.txt`` (libFuzzer's
output) and ``artifacts/`` (crashes, timeouts and slow inputs; a found input
belongs in tests/fuzz/ as a regression test once fixed).

A target passes when its N inputs ran with nothing escaping, no input over
10 ms of CPU time and Python's heap not growing (see fuzz/one.py). In the
table, "slowest" is the slowest input as instrumented (several times slower
than plain code) and ">10ms" how many inputs went over the limit instrumented
but not when replayed plain. Exit status 1 when any target failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"
_STATUS = re.compile(r"#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+)")


def _names() -> list[str]:
    from fuzz.targets import TARGETS
    return list(TARGETS)


def run_target(name: str, runs: int, nice: int, max_len: int, extra: list[str]) -> dict[str, object]:
    tdir = WORK / name
    corpus = tdir / "corpus"
    seeds = tdir / "seeds"
    artifacts = WORK / "artifacts"
    for d in (corpus, seeds, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    summary = tdir / "summary.json"
    if summary.exists():
        summary.unlink()
    cmd = ["nice", "-n", str(nice), sys.executable, "-m", "fuzz.one", name, str(summary),
           str(seeds), f"-runs={runs}", f"-max_len={max_len}", "-timeout=10",
           "-rss_limit_mb=1536", f"-artifact_prefix={artifacts}/{name}-",
           "-print_final_stats=1", "-len_control=0", *extra, str(corpus), str(seeds)]
    harvest = tdir / "harvest"       # inputs of the project's own tests (fuzz/harvest.py)
    if harvest.is_dir() and any(harvest.iterdir()):
        cmd.append(str(harvest))
    log = tdir / "log.txt"
    last: dict[str, object] = {}
    started = time.time()
    print(f"== {name}: {runs} inputs", flush=True)
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stderr=subprocess.STDOUT, stdout=subprocess.PIPE,
                                text=True, errors="replace", cwd=ROOT.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            m = _STATUS.search(line)
            if m:
                last = {"execs": int(m[1]), "cov": int(m[3]), "ft": int(m[4]),
                        "corpus": int(m[5]), "exec_s": int(m[7])}
                if m[2] in ("INITED", "DONE", "pulse"):
                    print(f"   {line.rstrip()}", flush=True)
            elif line.strip() and not line.startswith(("#", "INFO:", "MERGE", '"', "WARNING",
                                                       "Done ", "stat::")):
                print(f"   {line.rstrip()}", flush=True)
        code = proc.wait()
    out: dict[str, object] = {"target": name, "exit": code, **last,
                              "wall_s": round(time.time() - started, 1)}
    if summary.exists():
        out.update(json.loads(summary.read_text()))
    ok = code == 0 and bool(out.get("done")) and out.get("slow_confirmed", 0) == 0
    out["result"] = "pass" if ok else "FAIL"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", help="targets to run (default: all)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("FUZZ_RUNS", 1_000_000)))
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=1600)
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    ap.add_argument("--libfuzzer", action="append", default=[],
                    help="an extra libFuzzer argument (repeatable), e.g. -max_total_time=60")
    args = ap.parse_args(argv)
    from fuzz.targets import TARGETS
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:14} {t.doc}")
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]' (make fuzz does)",
              file=sys.stderr)
        return 2
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    results = [run_target(n, args.runs, args.nice, args.max_len, args.libfuzzer) for n in names]
    print()
    print(f"{'target':14} {'inputs':>9} {'exec/s':>7} {'cov':>6} {'ft':>6} {'corpus':>6} "
          f"{'slowest':>8} {'>10ms':>5} {'heap+':>7} {'rss MB':>11} result")
    for r in results:
        rss = f"{int(r.get('rss_kb_warm', 0)) // 1024}->{int(r.get('rss_kb_now', 0)) // 1024}"
        print(f"{r['target']:14} {r.get('inputs', 0):>9} {r.get('inputs_per_s', 0):>7} "
              f"{r.get('cov', 0):>6} {r.get('ft', 0):>6} {r.get('corpus', 0):>6} "
              f"{r.get('slowest_ms', 0):>6}ms {r.get('slow_unconfirmed', 0):>5} "
              f"{r.get('blocks_grew', '?'):>7} {rss:>11} "
              f"{r['result']}")
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r["result"] == "pass" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
