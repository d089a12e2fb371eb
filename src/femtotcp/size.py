"""``femtotcp size``: the size table (interpreter, full build, tiny build, each module).

Every number is measured when the command runs, from zipapps ``femtotcp.build``
makes in a temporary directory; ``HOW`` says how each column is measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from femtotcp import build as fbuild
from femtotcp.stack import modules as modreg

HOW = {
    "zip_bytes": "size of the zipapp `femtotcp build` writes (stripped source, deflate -9; "
                 "`.pyc`: --bytecode, -OO bytecode of this Python; solid: --solid, one "
                 "LZMA stream; seed: the tiny set without `run`, i.e. picoTCP's protocols); "
                 "a module's row: the zip entries (headers + data) of the files only it "
                 "brings (files in the full build and not in the full build without it)",
    "bytecode_bytes": "marshalled code objects as `python -OO` caches them "
                      "(compile(optimize=2)) of the same files",
    "lines": "source lines of the same files (as written, with docstrings and comments)",
    "rss_idle": "VmRSS of an idle `python3 -I BUILD.pyz serve` with every module of the "
                "build in use (--modules, --tcp-echo, --udp-echo, --dns, --control, --pcap "
                "as present; --tun when arp is left out) on a TAP in a throw-away netns "
                "when root; otherwise a subprocess that imports the build and builds the "
                "same stack on an in-memory device",
    "rss_1000": "VmRSS of a subprocess that imports only the build and opens 1,000 TCP "
                "connections between two of its stacks on an in-memory link (raw IP when "
                "arp is left out) on the virtual clock (both ends in the process: 2,000 "
                "connection objects)",
    "import_s": "CPU time (process_time) to import every module in the zipapp in a fresh "
                "`python3 -I`, best of 5",
    "core row": "RSS: an idle serve of the core alone (no protocol module) less the "
                "interpreter's; import: the core's own",
    "module rows": "RSS and import columns: the build of the module, what it needs, and "
                   "ipv4+tcp, minus the same build without the module; tcp's 1000-conn "
                   "column: the growth of that process over its 1,000 connections",
    "interpreter": "the interpreter line: its executable and libpython's bytes in the zip "
                   "column (the standard library not counted), VmRSS of `python3 -I` "
                   "running no femtotcp code",
    "core": "the files every build holds (CLI, host, runtime, stack, TAP/TUN); "
            "shared: files two or more modules use (counted in no module's row)",
}

#: What the probe subprocesses run (with the zipapp first on sys.path).
_PROBE = r'''
import sys, time, zipfile
pyz, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, pyz)

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def import_all():
    import importlib
    import femtotcp
    for mod in getattr(femtotcp, "_SOLID", {}):
        if not mod.endswith("__main__"):
            importlib.import_module(mod)
    for name in zipfile.ZipFile(pyz).namelist():
        if name.endswith(".xz"):
            continue
        if name.startswith("femtotcp/") and "__main__" not in name:
            mod = name[:-4] if name.endswith(".pyc") else name[:-3]
            mod = mod.replace("/", ".").removesuffix(".__init__")
            importlib.import_module(mod)

if mode == "interpreter":
    print(rss(), 0.0)
    raise SystemExit
t0 = time.process_time()
import_all()
took = time.process_time() - t0
if mode == "import":
    print(rss(), took)
    raise SystemExit

from femtotcp.phy.base import Device
from femtotcp.runtime import SimLoop
from femtotcp.stack import modules as modreg
from femtotcp.stack.stack import Stack

class Link(Device):
    """One end of an in-memory cable delivered through the loop."""
    raw_ip = not modreg.available("arp")
    def __init__(self, name, loop):
        super().__init__(name, 1500)
        self.loop, self.peer = loop, None
    def _transmit(self, frame):
        peer = self.peer
        if peer is not None:
            self.loop.call_soon(lambda: peer.deliver(bytes(frame)))

protocols = [n for n in modreg.MODULES if modreg.available(n)]
loop = SimLoop()
a, b = Link("a", loop), Link("b", loop)
a.peer, b.peer = b, a
stacks = []
for i, dev in enumerate((a, b)):
    st = Stack(f"s{i}", modules=protocols)
    st.add_interface(dev, mac=bytes([2, 0, 0, 0, 0, i + 1]), ipv4=f"192.0.2.{i + 1}/24")
    loop.add_stack(st)
    st.start()
    stacks.append(st)
if mode == "idle":
    st = stacks[0]
    if st.tcp is not None:
        from femtotcp.services import tcp_echo
        tcp_echo.start(st, 7)
    if st.udp is not None:
        from femtotcp.services.echo import start_udp_echo
        start_udp_echo(st, 7)
    loop.run(duration=5)
    print(rss(), took)
    raise SystemExit
server, client = stacks
before = rss()
lst = server.tcp.listen(bytes(4), 80, backlog=1100)
conns, accepted = [], []
for i in range(1000):
    conns.append(client.tcp.connect(bytes([192, 0, 2, 1]), 80))
    if i % 50 == 49:
        loop.run(duration=0.01)
        while (c := lst.accept()) is not None:
            accepted.append(c)
ok = loop.run_until(lambda: sum(c.state == "ESTABLISHED" for c in conns) == 1000, 60)
while (c := lst.accept()) is not None:
    accepted.append(c)
if not ok or len(accepted) != 1000:
    raise SystemExit(f"only {len(accepted)} connections accepted")
print(rss(), took, before)
'''


def _probe_raw(pyz: Path | None, mode: str) -> list[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    args = [sys.executable, "-I", "-c", _PROBE, str(pyz or ""), mode]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"size probe {mode} failed: {out.stderr.strip()[-400:]}")
    return out.stdout.split()


def _probe(pyz: Path | None, mode: str) -> tuple[int, float]:
    """(VmRSS, import CPU seconds) of a probe subprocess of ``pyz`` in ``mode``."""
    fields = _probe_raw(pyz, mode)
    return int(fields[0]), float(fields[1])


def connections_rss(pyz: Path) -> tuple[int, int]:
    """VmRSS after 1,000 connections, and of the same process just before them."""
    after, _, before = _probe_raw(pyz, "conns")
    return int(after), int(before)


def _rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def _netns() -> Iterator[str]:
    name = f"ftsize-{os.urandom(4).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def serve_flags(modules: list[str], tmp: Path) -> list[str]:
    """``serve`` flags that put every module of a build to use."""
    protocols = [n for n in modules if n in modreg.MODULES]
    flags = ["--tap" if "arp" in modules else "--tun", "ftsz0", "--ip", "192.0.2.1/24"]
    if protocols:
        flags += ["--modules", ",".join(protocols)]
    if "tcp" in modules:
        flags += ["--tcp-echo", "7"]
    if "udp" in modules:
        flags += ["--udp-echo", "7"]
    if "dns" in modules:
        flags += ["--dns", "192.0.2.53"]
    if "ctl" in modules:
        flags += ["--control", str(tmp / "ctl.sock")]
    if "pcap" in modules:
        flags += ["--pcap", str(tmp / "idle.pcap")]
    return flags


def idle_serve_rss(pyz: Path, modules: list[str]) -> int:
    """VmRSS of an idle ``serve`` of ``pyz`` on a TAP (or TUN) in a throw-away netns."""
    tmp = Path(tempfile.mkdtemp(prefix="ftsize-"))
    try:
        with _netns() as ns:
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-I", str(pyz), "serve",
                   *serve_flags(modules, tmp)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            try:
                assert proc.stdout is not None
                ready, _, _ = select.select([proc.stdout], [], [], 60)
                line = proc.stdout.readline() if ready else ""
                if "serving on" not in line:
                    proc.kill()
                    raise RuntimeError(f"serve did not start: {line}{proc.communicate()[1]}")
                time.sleep(1.0)
                # `ip netns exec` execs the interpreter, so proc.pid is python's.
                return _rss_of(proc.pid)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _can_use_netns() -> bool:
    return (os.geteuid() == 0 and shutil.which("ip") is not None
            and os.path.exists("/dev/net/tun"))


def without(names: list[str], module: str) -> list[str]:
    """``names`` less ``module`` and everything that needs it."""
    gone = {module}
    changed = True
    while changed:
        changed = False
        for n in names:
            if n not in gone and any(d in gone for d in fbuild.needs(n)):
                gone.add(n)
                changed = True
    return [n for n in names if n not in gone]


def base_for(module: str) -> list[str]:
    """What a module's dynamic cost is measured on top of: what it needs (all the
    way down) and ipv4 + tcp, so the connection column can be measured."""
    base: list[str] = []
    todo = [*fbuild.needs(module), *(n for n in ("ipv4", "tcp") if n != module)]
    while todo:
        name = todo.pop()
        if name != module and name not in base:
            base.append(name)
            todo.extend(fbuild.needs(name))
    if module == "ipv4":
        base = []
    return [n for n in fbuild.known() if n in base]


def static_costs(files: list[str]) -> dict[str, int]:
    """-OO bytecode bytes and source lines of package-relative ``files``."""
    bytecode = lines = 0
    for rel in files:
        raw = (fbuild.PKG / rel).read_bytes()
        bytecode += len(fbuild.bytecode_OO(raw, rel))
        lines += raw.count(b"\n")
    return {"bytecode_bytes": bytecode, "lines": lines}


def module_cost(full: fbuild.Build, module: str) -> dict[str, Any]:
    """What ``module`` alone brings: the files of the full build that the full
    build less this module (other modules kept, needs ignored) does not hold.
    Leaving the module out of any build saves at least these bytes."""
    rest = set(fbuild.files_for([n for n in full.modules if n != module]))
    return files_cost(full, [f for f in full.files if f not in rest])


def files_cost(full: fbuild.Build, files: list[str]) -> dict[str, Any]:
    return {"files": files, "zip_bytes": sum(full.entry_bytes[f] for f in files),
            **static_costs(files)}


def table(dynamic: bool = True) -> dict[str, Any]:
    """The size table as data: rows for the interpreter, builds and modules."""
    full_names = fbuild.known()
    tiny_names = list(fbuild.TINY)
    tmp = Path(tempfile.mkdtemp(prefix="ftsize-"))
    use_netns = dynamic and _can_use_netns()
    measured: dict[tuple[str, ...], dict[str, Any]] = {}

    def measure(names: list[str], form: str = "source") -> dict[str, Any]:
        names = [n for n in fbuild.known() if n in names]
        key = (*names, form)
        if key in measured:
            return measured[key]
        result = fbuild.build(names, bytecode=form == "pyc", solid=form == "solid")
        row: dict[str, Any] = {"zip_bytes": len(result.data), "files": len(result.files),
                               **static_costs(result.files)}
        if dynamic:
            pyz = tmp / f"b{len(measured)}.pyz"
            pyz.write_bytes(result.data)
            row["import_s"] = min(_probe(pyz, "import")[1] for _ in range(5))
            row["rss_idle"] = (idle_serve_rss(pyz, names) if use_netns
                               else _probe(pyz, "idle")[0])
            row["rss_1000"] = row["conn_cost"] = None
            if "tcp" in names:
                after, before = connections_rss(pyz)
                row["rss_1000"], row["conn_cost"] = after, after - before
        row["build"] = result
        measured[key] = row
        return row

    try:
        rows: list[dict[str, Any]] = []
        interp: dict[str, Any] = {"name": "interpreter", "kind": "interpreter",
                                  "zip_bytes": interpreter_bytes(), "bytecode_bytes": None,
                                  "lines": None}
        if dynamic:
            interp["rss_idle"] = _probe(None, "interpreter")[0]
            interp["rss_1000"] = None
            interp["import_s"] = 0.0
        rows.append(interp)
        full = measure(full_names)
        seed = [n for n in tiny_names if n in modreg.MODULES]
        for name, names, form in (("full", full_names, "source"),
                                  ("tiny", tiny_names, "source"),
                                  ("tiny .pyc", tiny_names, "pyc"),
                                  ("tiny solid", tiny_names, "solid"),
                                  ("seed", seed, "source"), ("seed solid", seed, "solid")):
            row = measure(names, form)
            rows.append({"name": name, "kind": "build", "modules": names, "form": form,
                         **{k: v for k, v in row.items() if k != "build"}})
        owned: set[str] = set()
        core_files = set(fbuild.files_for([]))
        for module in ["core", *full_names, "shared"]:
            if module == "core":
                cost = files_cost(full["build"], sorted(core_files))
            elif module == "shared":
                cost = files_cost(full["build"], [f for f in full["build"].files
                                                  if f not in owned and f not in core_files])
            else:
                cost = module_cost(full["build"], module)
                owned.update(cost["files"])
            row = {"name": module, "kind": "module", "files": len(cost["files"]),
                   "zip_bytes": cost["zip_bytes"], "bytecode_bytes": cost["bytecode_bytes"],
                   "lines": cost["lines"], "file_list": cost["files"]}
            if dynamic and module == "core":
                alone = measure([])
                row["rss_idle"] = alone["rss_idle"] - interp["rss_idle"]
                row["import_s"] = alone["import_s"]
            if dynamic and module not in ("core", "shared"):
                base = base_for(module)
                with_it, rest = measure([*base, module]), measure(base)
                for col in ("rss_idle", "rss_1000", "import_s"):
                    a, b = with_it.get(col), rest.get(col)
                    row[col] = a - b if a is not None and b is not None else None
                if module == "tcp":
                    row["rss_1000"] = with_it["conn_cost"]
            rows.append(row)
        return {"rows": rows, "how": HOW, "idle_on": (
            "TAP/TUN in a netns" if use_netns else "in-memory device") if dynamic else None,
            "python": sys.version.split()[0]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def interpreter_bytes() -> int:
    """The interpreter's executable plus its shared libpython, when it has one."""
    total = Path(os.path.realpath(sys.executable)).stat().st_size
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        lib = Path(str(sysconfig.get_config_var("LIBDIR")),
                   str(sysconfig.get_config_var("INSTSONAME")))
        if lib.exists():
            total += Path(os.path.realpath(lib)).stat().st_size
    return total


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "kB":
        return f"{value / 1000:.1f}"
    if unit == "MB":
        return f"{value / 1e6:.1f}"
    if unit == "ms":
        return f"{value * 1000:.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    data = table(dynamic="--quick" not in argv)
    if "--json" in argv:
        print(json.dumps(data, indent=2))
        return 0
    cols = [("zip_bytes", "zip kB", "kB"), ("bytecode_bytes", "-OO kB", "kB"),
            ("lines", "lines", ""), ("rss_idle", "idle RSS MB", "MB"),
            ("rss_1000", "1000 conn MB", "MB"), ("import_s", "import ms", "ms")]
    cols = [c for c in cols if any(c[0] in r for r in data["rows"])]
    print(f"{'':12}" + "".join(f"{title:>14}" for _, title, _ in cols))
    for r in data["rows"]:
        label = r["name"] if r["kind"] != "module" else f"  {r['name']}"
        print(f"{label:12}" + "".join(f"{_fmt(r.get(k), u):>14}" for k, _, u in cols))
    print(f"(Python {data['python']}; kB = 1000 bytes; module rows are each module's own "
          f"cost; idle serve on {data['idle_on'] or 'not measured'})")
    for key, text in HOW.items():
        print(f"  {key}: {text}")
    return 0
