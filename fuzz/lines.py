"""Line coverage of what the fuzzers reached: replay each target's corpus (and seeds)
in a plain process under ``coverage`` and print, per target, how many statements
of the functions it is about ran (the parse side of a wire module; every function
of the receive path's modules for ``stack``).

    python -m fuzz.lines [TARGET ...]

libFuzzer's ``cov`` counts instrumented edges; this gives the same reach in lines
a reader can check (``coverage`` comes with the ``fuzz`` optional group).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fuzz.run import WORK

SRC = Path(__file__).resolve().parent.parent / "src" / "femtotcp"

#: What each target is about: module (relative to src/femtotcp) -> functions (None:
#: every function of the module). Lines are counted inside those functions' bodies.
PARSE = {
    "wire/dns.py": ["read_name", "_escape_label", "_read_rdata", "_read_records",
                    "_read_questions", "parse", "parse_head"],
    "wire/dhcp.py": ["_walk", "_check", "parse", "domain_search", "text"],
}
MODULES: dict[str, dict[str, list[str] | None]] = {
    "ethernet": {"wire/ethernet.py": ["parse"]}, "arp": {"wire/arp.py": ["parse"]},
    "ipv4": {"wire/ipv4.py": ["parse", "check_options"]},
    "ipv4_options": {"wire/ipv4.py": ["check_options"]},
    "icmp4": {"wire/icmp4.py": ["parse"]}, "udp": {"wire/udp.py": ["parse"]},
    "tcp": {"wire/tcp.py": ["parse", "parse_options"]},
    "tcp_options": {"wire/tcp.py": ["parse_options"]},
    "dns": {"wire/dns.py": PARSE["wire/dns.py"] + ["canonical", "split_name"]},
    "dhcp": {"wire/dhcp.py": PARSE["wire/dhcp.py"], "wire/dns.py": ["read_name"]},
    "vnet": {"phy/tap.py": ["parse_vnet"]},
    "stack": {m: None for m in (
        "stack/stack.py", "stack/arp.py", "stack/ipv4.py", "stack/reassembly.py",
        "proto/icmp4.py", "proto/udp.py", "proto/tcp/layer.py", "proto/tcp/connection.py",
        "proto/tcp/listener.py", "proto/tcp/buffers.py", "services/dns.py",
        "services/dhcp.py", "services/dns_server.py", "services/dhcp_server.py")},
    "ipv6": {"wire/ipv6.py": ["parse", "parse_quote", "check_addresses"]},
    "ipv6ext": {"wire/ipv6ext.py": ["_options", "read_options", "walk", "skip_chain",
                                    "_chain_complete"]},
    "icmp6": {"wire/icmp6.py": ["parse", "parse_quote", "no_error_about", "err_convert",
                                "error_allowed"]},
    "ndp": {"wire/ndp.py": ["_dnssl_names", "parse_options", "parse"],
            "wire/dns.py": ["read_name"]},
    "mld": {"wire/mld.py": ["_decode_float", "_sources", "parse", "check_ip"]},
    "stack6": {m: None for m in (
        "stack/stack.py", "stack/ipv6.py", "stack/ndp.py", "stack/neighbour.py",
        "stack/reassembly.py", "proto/icmp6.py", "proto/udp.py", "proto/tcp/layer.py",
        "proto/tcp/connection.py", "proto/tcp/listener.py", "services/dns.py")},
}


def _body_lines(path: Path, names: list[str] | None) -> set[int]:
    """Line numbers inside the bodies of the named functions (methods included)."""
    import ast
    tree = ast.parse(path.read_text())
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                names is None or node.name in names):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                start = first.end_lineno or first.lineno   # skip the docstring
                start += 1
            else:
                start = first.lineno
            out.update(range(start, (node.end_lineno or start) + 1))
    return out


def measure(name: str) -> list[tuple[str, int, int]]:
    import coverage

    files = {str(SRC / m): fns for m, fns in MODULES[name].items()}
    cov = coverage.Coverage(include=list(files), data_file=None, branch=False)
    cov.start()
    from fuzz.targets import TARGETS
    target = TARGETS[name]
    inputs = []
    for sub in ("seeds", "corpus", "harvest"):
        d = WORK / name / sub
        if d.is_dir():
            inputs += [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()]
    for data in inputs:
        if target.before is not None:
            target.before()
        try:
            target.run(data)
        except Exception:  # noqa: BLE001 - a crash input still counts its lines
            pass
    cov.stop()
    out = []
    for f, fns in files.items():
        _, statements, _, missing, _ = cov.analysis2(f)
        body = _body_lines(Path(f), fns)
        stmts = set(statements) & body
        ran = stmts - set(missing)
        out.append((str(Path(f).relative_to(SRC)), len(ran), len(stmts)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.lines")
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args(argv)
    for name in args.targets or list(MODULES):
        rows = measure(name)
        ran = sum(r[1] for r in rows)
        total = sum(r[2] for r in rows)
        print(f"{name:14} {ran:5}/{total:<5} lines ({100 * ran / max(total, 1):.0f}%)  " +
              ", ".join(f"{f} {a}/{b}" for f, a, b in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
