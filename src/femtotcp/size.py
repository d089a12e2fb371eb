"""``femtotcp size``: each protocol module's footprint.

For every module a build can leave out, and for the core every build needs:
the source it adds, its bytecode, and the memory its import takes (measured
in a fresh interpreter with tracemalloc, after the core is already imported).
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent

#: module -> the files that exist only for it (paths relative to the package).
FILES: dict[str, list[str]] = {
    "core": ["__init__.py", "runtime.py", "wire/__init__.py", "wire/checksum.py",
             "wire/ethernet.py", "stack/__init__.py", "stack/stack.py", "stack/config.py",
             "stack/interface.py", "stack/modules.py", "stack/routes.py", "stack/timers.py",
             "stack/device.py", "core/__init__.py", "core/counters.py", "core/timers.py",
             "core/loop.py", "core/device.py", "phy/__init__.py", "phy/base.py"],
    "arp": ["stack/arp.py", "stack/neighbour.py", "wire/arp.py"],
    "ipv4": ["stack/ipv4.py", "stack/reassembly.py", "wire/ipv4.py"],
    "icmp4": ["proto/icmp4.py", "proto/ratelimit.py", "proto/echo.py", "wire/icmp4.py"],
    "udp": ["proto/udp.py", "wire/udp.py"],
    "tcp": ["proto/tcp", "wire/tcp.py"],
    "dns": ["services/dns.py", "wire/dns.py"],
    "dhcp": ["services/dhcp.py", "wire/dhcp.py"],
    # ipv6 shares reassembly.py with ipv4 and neighbour.py with arp; icmp6 shares
    # ratelimit.py and echo.py with icmp4 (each counted once, with the IPv4 side).
    "ipv6": ["stack/ipv6.py", "stack/ndp.py", "wire/ipv6.py", "wire/ipv6ext.py",
             "wire/icmp6.py", "wire/ndp.py", "wire/mld.py"],
    "icmp6": ["proto/icmp6.py"],
}
IMPORTS: dict[str, str] = {
    "core": "femtotcp.stack.stack",
    "arp": "femtotcp.stack.arp", "ipv4": "femtotcp.stack.ipv4",
    "icmp4": "femtotcp.proto.icmp4", "udp": "femtotcp.proto.udp",
    "tcp": "femtotcp.proto.tcp", "dns": "femtotcp.services.dns",
    "dhcp": "femtotcp.services.dhcp",
    "ipv6": "femtotcp.stack.ipv6", "icmp6": "femtotcp.proto.icmp6",
}

_MEASURE = """
import sys, tracemalloc
core = sys.argv[1]; target = sys.argv[2]
if target != core:
    __import__(core); __import__("femtotcp.runtime")
tracemalloc.start()
__import__(target)
print(tracemalloc.get_traced_memory()[0])
"""


def _py_files(rel: str) -> list[Path]:
    path = PKG / rel
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path] if path.exists() else []


def measure(name: str) -> dict[str, object] | None:
    files = [f for rel in FILES[name] for f in _py_files(rel)]
    if not files:
        return None
    source = sum(f.stat().st_size for f in files)
    bytecode = sum(len(marshal.dumps(compile(f.read_bytes(), str(f), "exec"))) for f in files)
    lines = sum(f.read_bytes().count(b"\n") for f in files)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", _MEASURE, IMPORTS["core"], IMPORTS[name]],
                         capture_output=True, text=True, env=env)
    memory = int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    return {"module": name, "files": len(files), "lines": lines, "source_bytes": source,
            "bytecode_bytes": bytecode, "import_memory_bytes": memory}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    rows = [r for r in (measure(n) for n in FILES) if r is not None]
    if "--json" in argv:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'module':8} {'files':>5} {'lines':>6} {'source':>9} {'bytecode':>9} {'import mem':>11}")
    for r in rows:
        mem = r["import_memory_bytes"]
        print(f"{r['module']:8} {r['files']:>5} {r['lines']:>6} {_kb(r['source_bytes'])} "
              f"{_kb(r['bytecode_bytes'])} {_kb(mem) if isinstance(mem, int) else '        ?':>11}")
    total_src = sum(int(str(r["source_bytes"])) for r in rows)
    total_bc = sum(int(str(r["bytecode_bytes"])) for r in rows)
    print(f"{'total':8} {'':>5} {'':>6} {_kb(total_src)} {_kb(total_bc)}")
    print("(import mem: bytes allocated by importing the module after the core, tracemalloc)")
    return 0


def _kb(n: object) -> str:
    return f"{int(str(n)) / 1024:7.1f}kB"
