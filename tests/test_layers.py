"""The layer rules of docs/architecture.md, checked over the source with ast.

- the sans-I/O core (wire/, stack/, proto/, services/) imports no edge: not
  phy/, the runtime, api/, the CLI, the control socket or the host builder;
- phy/ does not import the core's state (stack/, proto/, services/) nor the edges;
- core/ (what both sides share) imports nothing of femtotcp but itself;
- no attribute of ``Stack`` is typed ``Any``;
- every counter name the source uses is declared in the registry.
"""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

import femtotcp
from femtotcp.core import counters as registry
from femtotcp.stack.stack import Stack, need

PKG = Path(femtotcp.__file__).resolve().parent
EDGES = ("femtotcp.phy", "femtotcp.runtime", "femtotcp.api", "femtotcp.cli",
         "femtotcp.control", "femtotcp.host", "femtotcp.demo", "femtotcp.demo_dhcp_dns",
         "femtotcp.size")
RULES: dict[str, tuple[str, ...]] = {
    "wire": EDGES + ("femtotcp.stack", "femtotcp.proto", "femtotcp.services"),
    "stack": EDGES,
    "proto": EDGES + ("femtotcp.services",),
    "services": EDGES,
    "phy": ("femtotcp.stack", "femtotcp.proto", "femtotcp.services", "femtotcp.runtime",
            "femtotcp.api", "femtotcp.cli", "femtotcp.control", "femtotcp.host"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at top level, in functions, under
    TYPE_CHECKING), relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else _module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PKG / layer).rglob("*.py")):
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PKG)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_point_the_right_way(layer: str) -> None:
    assert (PKG / layer).is_dir()
    assert _violations(layer, RULES[layer]) == []


def test_core_imports_only_itself() -> None:
    bad = [f"{p.relative_to(PKG)}:{line} imports {name}"
           for p in sorted((PKG / "core").rglob("*.py"))
           for line, name in _imports(p)
           if name.startswith("femtotcp") and not name.startswith("femtotcp.core")]
    assert bad == []


def test_the_rule_checker_sees_imports() -> None:
    """The checker itself: plain and TYPE_CHECKING imports are both seen."""
    found = {name for _, name in _imports(PKG / "stack" / "stack.py")}
    assert "femtotcp.core.counters.Counters" in found      # absolute imports resolve
    assert any(n.startswith("femtotcp.proto.tcp") for n in found)   # TYPE_CHECKING too
    assert _violations("stack", ("femtotcp.core",)) != []


def _stack_annotations() -> dict[str, str]:
    """``self.name: T`` annotations in Stack's methods, as source text."""
    tree = ast.parse((PKG / "stack" / "stack.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Stack")
    out: dict[str, str] = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute) \
                and isinstance(node.target.value, ast.Name) and node.target.value.id == "self":
            out[node.target.attr] = ast.unparse(node.annotation)
    for name, ann in getattr(Stack, "__annotations__", {}).items():
        out[name] = str(ann)
    return out


def test_no_stack_attribute_is_typed_any() -> None:
    annotations = _stack_annotations()
    for name in ("arp", "ipv4", "icmp", "udp", "tcp", "resolver"):
        assert name in annotations, name
    anys = {n: a for n, a in annotations.items()
            if any(t.id == "Any" for t in ast.walk(ast.parse(a, mode="eval"))
                   if isinstance(t, ast.Name))}
    assert anys == {}
    assert not hasattr(Stack("x", modules=[]), "loop")


def test_a_missing_module_is_named() -> None:
    stack = Stack("x", modules=["arp", "ipv4"])
    assert stack.udp is None and stack.tcp is None and stack.ipv4 is not None
    with pytest.raises(OSError) as info:
        need(stack.udp, "udp")
    assert info.value.errno == errno.ENOPROTOOPT and "udp" in str(info.value)
    assert need(stack.ipv4, "ipv4") is stack.ipv4
    # Without a transport, output still goes through the one IP module.
    assert stack.ip_output == stack.ipv4.output


def _counter_keys() -> list[tuple[str, str]]:
    """Literal names used as ``counters[...]`` keys, ``Malformed(...)`` reasons and
    ``.drop(...)`` arguments across the package."""
    out = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            key: ast.expr | None = None
            if isinstance(node, ast.Subscript):
                v = node.value
                name = v.attr if isinstance(v, ast.Attribute) else getattr(v, "id", "")
                if name == "counters":
                    key = node.slice
            elif isinstance(node, ast.Call) and (
                    getattr(node.func, "id", "") == "Malformed"
                    or getattr(node.func, "attr", "") == "drop") and node.args:
                key = node.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                out.append((f"{path.relative_to(PKG)}:{node.lineno}", key.value))
    return out


def test_every_counter_name_used_is_declared() -> None:
    keys = _counter_keys()
    assert len(keys) > 200
    assert [(where, k) for where, k in keys if registry.kind_of(k) is None] == []


def test_an_undeclared_counter_is_an_error_in_tests() -> None:
    c = registry.Counters()
    assert registry.Counters.strict       # tests/conftest.py
    c["tcp.bad_checksum"] += 1
    with pytest.raises(registry.UndeclaredCounter):
        c["tcp.bad_chekcsum"] += 1
    c["icmp4.tx_error_3_3"] += 2          # a declared family
    c["tcp.established"] += 1
    c["tcp.syn_queue"] = 4
    assert c.drops() == {"tcp.bad_checksum": 1}
    assert registry.kind_of("tcp.syn_queue") is registry.GAUGE


def test_a_counter_has_one_kind() -> None:
    with pytest.raises(ValueError):
        registry.declare(registry.EVENT, "tcp.bad_checksum")
