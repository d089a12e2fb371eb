"""Every counter name the gateway and the QEMU devices use is listed, once, in
gateway/counters.py (the declarations main's registry needs)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import femtotcp
from femtotcp.gateway import counters

PKG = Path(femtotcp.__file__).resolve().parent
FILES = sorted((PKG / "gateway").glob("*.py")) + [PKG / "phy" / "qemu.py"]
#: Names the devices share with every other device (declared by main already).
COMMON = {"rx_error", "tx_error", "rx_frames", "tx_frames", "rx_no_receiver"}


def _used() -> set[str]:
    names: set[str] = set()
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript):
                v = node.value
                attr = v.attr if isinstance(v, ast.Attribute) else getattr(v, "id", "")
                if attr == "counters" and isinstance(node.slice, ast.Constant):
                    names.add(str(node.slice.value))
            # names held in tables (flows.py's per-protocol dicts)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    re.fullmatch(r"(nat|gwdns|gwra|switch)\.[a-z0-9_]+", node.value):
                names.add(node.value)
    return names


def test_every_used_counter_is_declared_once() -> None:
    declared = (counters.DROPS + counters.EVENTS + counters.GAUGES).split()
    assert len(declared) == len(set(declared))
    used = _used()
    assert len(used) > 40
    assert sorted(used - set(declared) - COMMON) == []
    assert sorted(set(declared) - used) == []
