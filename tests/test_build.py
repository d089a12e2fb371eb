"""``femtotcp build``: a zipapp of only the named modules (issue 15)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from femtotcp import build as fbuild
from femtotcp.size import _probe, module_cost, without
from femtotcp.stack import modules as modreg


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "femtotcp", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def run_pyz(pyz: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The zipapp alone: ``python -I`` from its own directory, no PYTHONPATH."""
    return subprocess.run([sys.executable, "-I", str(pyz), *args], capture_output=True,
                          text=True, timeout=120, cwd=pyz.parent, env={"PATH": "/usr/bin:/bin"})


def test_the_list_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown module.*bogus"):
        fbuild.resolve(["ipv4", "bogus"])
    with pytest.raises(ValueError, match="module dns needs udp"):
        fbuild.resolve(["ipv4", "dns"])
    with pytest.raises(ValueError, match="module demo needs"):
        fbuild.resolve(["arp", "ipv4", "demo"])
    with pytest.raises(ValueError, match="needs ipv4"):
        fbuild.resolve(["udp"])
    assert fbuild.resolve(["ipv4", "ipv4", " icmp4 "]) == ["ipv4", "icmp4"]


def test_a_module_left_out_is_absent_from_the_file() -> None:
    full = fbuild.build(fbuild.known())
    for module in fbuild.known():
        own = module_cost(full, module)["files"]
        assert own, f"{module} brings no file of its own"
        names = without(fbuild.known(), module)
        files = set(fbuild.build(names).files)
        assert not files & set(own), module
        # and each of them was there in the full build
        assert set(own) <= set(full.files)


def test_tiny_holds_the_seed_set_and_nothing_else() -> None:
    files = set(fbuild.files_for(fbuild.TINY))
    for needed in ("stack/arp.py", "stack/ipv4.py", "proto/icmp4.py", "proto/udp.py",
                   "proto/tcp/connection.py", "services/dns.py", "api/socket.py",
                   "phy/tap.py", "cli.py", "host.py"):
        assert needed in files
    for absent in ("control.py", "services/dhcp.py", "services/dhcp_server.py",
                   "services/dns_server.py", "phy/pcap.py", "phy/vde.py", "phy/faulty.py",
                   "phy/memory.py", "demo.py", "size.py", "build.py", "wire/dhcp.py"):
        assert absent not in files


def test_every_import_inside_a_function_finds_its_module_in_the_full_build() -> None:
    """Function-level imports are how optional code is reached; in the full build
    every one of them must land (the source-tree tools size and build aside)."""
    files = set(fbuild.files_for(fbuild.known()))
    missing = []
    for rel in sorted(files):
        tree = ast.parse((fbuild.PKG / rel).read_bytes())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test).endswith("TYPE_CHECKING")
                       for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                src = fbuild.source_of(target)
                if src is None or target in ("femtotcp.size", "femtotcp.build"):
                    continue
                if src.relative_to(fbuild.PKG).as_posix() not in files:
                    missing.append(f"{rel}:{node.lineno} {target}")
    assert missing == []


def _docstring_or_assert(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            found.append(f"assert at line {node.lineno}")
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if ast.get_docstring(node, clean=False) is not None:
                found.append(f"docstring in {getattr(node, 'name', 'module')}")
    return found


def test_the_zip_holds_stripped_source() -> None:
    data = fbuild.build(fbuild.TINY).data
    assert data.startswith(fbuild.SHEBANG)
    zf = zipfile.ZipFile(__import__("io").BytesIO(data))
    sources = [n for n in zf.namelist() if n.endswith(".py")]
    assert "__main__.py" in sources and len(sources) == len(fbuild.files_for(fbuild.TINY)) + 1
    for name in sources:
        text = zf.read(name).decode()
        assert "#" not in "".join(line.split("'")[0].split('"')[0]
                                  for line in text.splitlines()), name   # no comments
        assert _docstring_or_assert(ast.parse(text)) == [], name
    original = (fbuild.PKG / "stack/arp.py").read_text()
    stripped = zf.read("femtotcp/stack/arp.py").decode()
    assert len(stripped) < len(original) * 0.8


def test_strip_keeps_what_runs() -> None:
    source = b'''
"""Module doc."""
from __future__ import annotations
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple
if TYPE_CHECKING:
    from nowhere import Missing
else:
    RUNTIME = 1

@dataclass
class Point:
    """Doc."""
    x: int
    y: int = 2
    tags: list[str] = field(default_factory=list)

class Pair(NamedTuple):
    a: int
    b: str

def f(n: int, *rest: Missing, k: int = 3, **kw: str) -> int:
    """Doc."""
    assert n > 100, "stripped like -OO"
    total: int = n + k
    later: int
    if n:
        "a bare string"
    else:
        pass
    while False:
        """only a string"""
    return total
'''
    text = fbuild.strip(source)
    assert "Doc" not in text and "assert" not in text and "Missing" not in text
    ns: dict[str, object] = {}
    exec(compile(text, "stripped", "exec"), ns)
    point = ns["Point"](1)  # type: ignore[operator]
    assert (point.x, point.y, point.tags) == (1, 2, [])  # type: ignore[attr-defined]
    assert ns["Pair"](1, "b")._fields == ("a", "b")  # type: ignore[operator]
    assert ns["f"](1) == 4 and ns["RUNTIME"] == 1  # type: ignore[operator]
    # Four-space indentation became one space per level.
    assert "\n total = n + k" in text


@pytest.mark.parametrize("names", [
    [], ["ipv4"], ["arp", "ipv4"], list(fbuild.TINY),
    *[without(fbuild.known(), m) for m in fbuild.known()],
], ids=lambda n: ",".join(n) or "core")
def test_every_build_imports_completely(names: list[str], tmp_path: Path) -> None:
    """Every module a build holds imports from the zip alone: nothing it needs at
    import time was left out (python -I, the zip the only femtotcp on the path)."""
    pyz = tmp_path / "b.pyz"
    fbuild.write(names, pyz)
    _probe(pyz, "import")
    if len(names) < 2:
        _probe(pyz, "idle")      # a stack of (almost) nothing still builds and runs


def test_cli_build_and_the_needs_messages(tmp_path: Path) -> None:
    out = tmp_path / "small.pyz"
    res = cli("build", "--modules", "ipv4,icmp4", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "left out: arp, udp, tcp, dns" in res.stdout
    assert out.stat().st_size == len(fbuild.build(["ipv4", "icmp4"]).data)
    has = "this build has: ipv4, icmp4"
    for args, needle in (
            (["serve", "--tun", "t0", "--ip", "192.0.2.2/24", "--tcp-echo", "7"],
             f"--tcp-echo needs the tcp module; {has}"),
            (["serve", "--tun", "t0", "--ip", "192.0.2.2/24", "--udp-echo", "7"],
             f"--udp-echo needs the udp module; {has}"),
            (["serve", "--tap", "t0", "--ip", "192.0.2.2/24"],
             f"--tap needs the arp module; {has}"),
            (["serve", "--tun", "t0", "--ip", "192.0.2.2/24", "--dns", "192.0.2.1"],
             f"--dns needs the dns module; {has}"),
            (["serve", "--tun", "t0", "--dhcp"], f"--dhcp needs the dhcp module; {has}"),
            (["serve", "--tun", "t0", "--ip", "192.0.2.2/24", "--control", "x.sock"],
             f"--control needs the ctl module; {has}"),
            (["serve", "--tun", "t0", "--ip", "192.0.2.2/24", "--modules", "ipv4,tcp"],
             f"--modules tcp: not in this build; {has}"),
            (["run", "--tun", "t0", "--ip", "192.0.2.2/24", "x.py"],
             f"run needs the run module; {has}"),
            (["ctl", "stats"], f"ctl needs the ctl module; {has}"),
            (["size"], "size needs femtotcp's source tree"),
            (["build", "--modules", "ipv4", "-o", "x.pyz"], "build needs femtotcp's source")):
        res = run_pyz(out, *args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, res.stderr)
    res = run_pyz(out, "--version")
    assert res.returncode == 0 and "femtotcp" in res.stdout


def test_source_tree_flags_still_checked_against_modules_list() -> None:
    from femtotcp.host import HostOptions
    opts = HostOptions(tap="t0", ip="192.0.2.2/24", modules=["arp", "ipv4", "udp"],
                       dns=["192.0.2.1"])
    with pytest.raises(ValueError, match="--dns needs the dns module"):
        opts.validate()
    assert modreg.present()[:6] == ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]


def test_bytecode_build_runs_on_this_python(tmp_path: Path) -> None:
    pyz = tmp_path / "tiny-pyc.pyz"
    result = fbuild.write(fbuild.TINY, pyz, bytecode=True)
    names = zipfile.ZipFile(pyz).namelist()
    assert all(n.endswith(".pyc") for n in names if n.startswith("femtotcp/"))
    assert len(result.files) == len(fbuild.files_for(fbuild.TINY))
    res = run_pyz(pyz, "serve", "--tap", "t0", "--dhcp")
    assert res.returncode == 2 and "--dhcp needs the dhcp module" in res.stderr
    _probe(pyz, "idle")


def test_solid_build_holds_one_stream_and_runs(tmp_path: Path) -> None:
    """--solid: the stripped modules in one LZMA stream; still only the named ones,
    still the same messages, and every module imports from it alone."""
    import lzma
    pyz = tmp_path / "tiny-solid.pyz"
    result = fbuild.write(fbuild.TINY, pyz, solid=True)
    zf = zipfile.ZipFile(pyz)
    assert sorted(zf.namelist()) == ["__main__.py", "femtotcp/__init__.py",
                                     "femtotcp/modules.xz"]
    table = marshal_loads(lzma.decompress(zf.read("femtotcp/modules.xz")))
    assert "femtotcp.proto.tcp.connection" in table and "femtotcp.control" not in table
    assert {rel for rel, _, _ in table.values()} | {"__init__.py"} == set(result.files)
    assert len(result.data) < len(fbuild.build(fbuild.TINY).data)
    res = run_pyz(pyz, "serve", "--tap", "t0", "--dhcp")
    assert res.returncode == 2
    assert "--dhcp needs the dhcp module; this build has: arp, ipv4, icmp4, udp, tcp, " \
           "dns, run" in res.stderr
    _probe(pyz, "import")
    _probe(pyz, "conns")
    with pytest.raises(ValueError, match="exclusive"):
        fbuild.build(["ipv4"], bytecode=True, solid=True)


def marshal_loads(data: bytes) -> dict[str, tuple[str, bool, str]]:
    import marshal
    table = marshal.loads(data)
    assert isinstance(table, dict)
    return table


@pytest.mark.parametrize("form", ["source", "solid"])
def test_the_full_build_runs_the_whole_demo(form: str, tmp_path: Path) -> None:
    """Every module of the full build, stripped, from the zip alone: the in-memory
    demo (ARP, ping, UDP, TCP, http.server over the socket API, DHCP, DNS) passes."""
    pyz = tmp_path / "full.pyz"
    fbuild.write(fbuild.known(), pyz, solid=form == "solid")
    res = run_pyz(pyz, "demo", "--pcap", str(tmp_path / "demo.pcap"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "SHA-256 matches" in res.stdout and "byte-exact" in res.stdout
    assert "all parts worked" in res.stdout


def test_what_the_control_package_loads_on_first_use_is_in_a_build_with_ctl() -> None:
    """``femtotcp.control`` imports its parts by name when a name is first used
    (so the CLI's parser costs no server import); the build cannot see those
    imports, so ctl's riders must carry every one of them."""
    from femtotcp import control
    files = set(fbuild.files_for(["ctl"]))
    parts = set(control._WHERE.values())
    assert parts and all(f"control/{part}.py" in files for part in parts)
    for name in control.__all__:
        assert getattr(control, name) is not None
    assert set(control.__all__) == set(control._WHERE)
