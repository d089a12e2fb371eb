"""``femtotcp size``: the table's numbers come from the code under test, and a
module's listed cost is what leaving it out saves (issue 15)."""

from __future__ import annotations

import io
import json
import marshal
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from femtotcp import build as fbuild
from femtotcp import size


def rows_by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in data["rows"]}


@pytest.fixture(scope="module")
def quick() -> dict[str, dict[str, Any]]:
    return rows_by_name(size.table(dynamic=False))


def test_static_columns_match_an_independent_count(quick: dict[str, dict[str, Any]]) -> None:
    """Bytes of the zip, -OO bytecode and lines, recounted here from the zip itself."""
    for name, names in (("full", fbuild.known()), ("tiny", list(fbuild.TINY))):
        data = fbuild.build(names).data
        row = quick[name]
        assert row["zip_bytes"] == len(data)
        zf = zipfile.ZipFile(io.BytesIO(data))
        rels = [n.removeprefix("femtotcp/") for n in zf.namelist() if n != "__main__.py"]
        assert row["files"] == len(rels)
        lines = bytecode = 0
        for rel in rels:
            raw = (fbuild.PKG / rel).read_bytes()
            lines += len(raw.splitlines())
            bytecode += len(marshal.dumps(compile(raw, rel, "exec", optimize=2)))
        assert row["lines"] == lines and row["bytecode_bytes"] == bytecode
    pyc = fbuild.build(list(fbuild.TINY), bytecode=True).data
    assert quick["tiny .pyc"]["zip_bytes"] == len(pyc)
    solid = fbuild.build(list(fbuild.TINY), solid=True).data
    assert quick["tiny solid"]["zip_bytes"] == len(solid) < quick["tiny"]["zip_bytes"]
    seed = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]
    assert quick["seed"]["zip_bytes"] == len(fbuild.build(seed).data)
    assert quick["seed solid"]["zip_bytes"] == len(fbuild.build(seed, solid=True).data)
    # The rows add up: core + every module's own + shared = the full build's files.
    parts = ["core", *fbuild.known(), "shared"]
    assert sum(quick[p]["lines"] for p in parts) == quick["full"]["lines"]
    entries = sum(quick[p]["zip_bytes"] for p in parts)
    assert entries < quick["full"]["zip_bytes"] < entries + 1024   # + __main__ and the end


@pytest.mark.parametrize("base", ["full", "tiny"])
def test_leaving_a_module_out_saves_at_least_its_listed_cost(
        base: str, quick: dict[str, dict[str, Any]]) -> None:
    names = fbuild.known() if base == "full" else list(fbuild.TINY)
    whole = len(fbuild.build(names).data)
    for module in names:
        smaller = len(fbuild.build(size.without(names, module)).data)
        cost = quick[module]["zip_bytes"]
        assert cost > 0
        assert whole - smaller >= cost, (base, module, whole - smaller, cost)


def test_the_numbers_follow_the_source(tmp_path: Path) -> None:
    """No constants: a copy of the source with 40 more lines in wire/arp.py gives a
    table with 40 more lines for arp and the builds that hold it, and more bytes."""
    src = Path(fbuild.__file__).resolve().parent
    copy = tmp_path / "src" / "femtotcp"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    extra = "".join(f"\ndef _extra_{i}(x: int) -> int:\n    return x * {i} + {i * 7919}\n"
                    for i in range(20))
    assert extra.count("\n") == 60
    with open(copy / "wire" / "arp.py", "a") as f:
        f.write(extra)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "src"))
    res = subprocess.run([sys.executable, "-m", "femtotcp", "size", "--quick", "--json"],
                         capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    changed = rows_by_name(json.loads(res.stdout))
    now = rows_by_name(size.table(dynamic=False))
    for name in ("arp", "full", "tiny"):
        assert changed[name]["lines"] == now[name]["lines"] + 60
        assert changed[name]["zip_bytes"] > now[name]["zip_bytes"]
        assert changed[name]["bytecode_bytes"] > now[name]["bytecode_bytes"]
    for name in ("ipv4", "tcp", "core"):
        assert changed[name]["lines"] == now[name]["lines"]


def test_the_dynamic_columns_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSS and import time, on a small module set so the test stays short: the
    full build is the tiny one (measured once, in its three forms), and every
    module row is still the build with it less the build without it."""
    monkeypatch.setattr(fbuild, "known", lambda: ["arp", "ipv4", "tcp"])
    monkeypatch.setattr(fbuild, "TINY", ("arp", "ipv4", "tcp"))
    data = size.table(dynamic=True)
    rows = rows_by_name(data)
    interp, full, tiny = rows["interpreter"], rows["full"], rows["tiny"]
    assert interp["rss_idle"] > 0 and interp["zip_bytes"] > 1_000_000
    for row in (full, tiny, rows["tiny .pyc"], rows["tiny solid"]):
        assert row["rss_idle"] > interp["rss_idle"]
        assert row["import_s"] > 0
        assert row["rss_1000"] > interp["rss_idle"]
    # A module's row is the full build less the build without it.
    for module in ("arp", "ipv4", "tcp"):
        assert rows[module]["rss_idle"] is not None, module
    assert data["idle_on"] in ("TAP/TUN in a netns", "in-memory device")
    assert set(data["how"]) >= {"zip_bytes", "bytecode_bytes", "lines", "rss_idle",
                                "rss_1000", "import_s"}


def test_a_thousand_connections_take_memory(tmp_path: Path) -> None:
    pyz = tmp_path / "tiny.pyz"
    fbuild.write(fbuild.TINY, pyz)
    idle, _ = size._probe(pyz, "idle")
    busy, _ = size._probe(pyz, "conns")
    assert busy > idle + 1_000_000        # 2,000 connection objects are not free


def test_size_prints_the_table() -> None:
    res = subprocess.run([sys.executable, "-m", "femtotcp", "size", "--quick"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for label in ("interpreter", "full", "tiny", "tiny .pyc", "tiny solid", "seed", "  tcp", "  dns", "  ctl",
                  "zip kB", "-OO kB", "lines", "zip_bytes:", "lines:"):
        assert label in out
