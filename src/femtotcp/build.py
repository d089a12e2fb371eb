"""``femtotcp build``: one zipapp holding only the modules you name.

The build starts from the core's entry points and each named module's own
Python modules, and follows the imports that run at import time (top level and
class bodies, not function bodies and not ``if TYPE_CHECKING:``): a function-level
import is how optional code is reached, so a module left out is absent from the
file. Every file is stripped with ``ast`` (docstrings, bare strings, asserts,
``TYPE_CHECKING`` blocks, function annotations, comments) and stored deflated.
By default the zip holds that stripped *source*, which any Python 3.11+ runs;
``bytecode=True`` stores ``-OO`` bytecode (``.pyc``) instead, which only the
same Python minor version can load.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import io
import lzma
import marshal
import os
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from femtotcp.stack import modules as modreg

PKG = Path(__file__).resolve().parent

#: What every build holds: the CLI, the host, the loop, the stack and the devices
#: ``serve`` opens (TAP and TUN).
CORE_ROOTS = ("femtotcp.__main__", "femtotcp.cli", "femtotcp.host", "femtotcp.runtime",
              "femtotcp.stack.stack", "femtotcp.phy.tap", "femtotcp.phy.tun")

#: Code reached by function-level imports that rides with a module when the tree
#: has it: the small services ``serve`` starts by flag with their transport, the
#: blocking resolver helper with dns, TLS for stack sockets with run, the
#: control package's parts (loaded by name on first use) with ctl.
RIDERS: dict[str, tuple[str, ...]] = {
    "udp": ("femtotcp.services.echo",),
    "tcp": ("femtotcp.services.tcp_echo", "femtotcp.services.discard",
            "femtotcp.services.chargen"),
    "dns": ("femtotcp.api.resolve",),
    "run": ("femtotcp.api.tls",),
    "ctl": ("femtotcp.gateway.control", "femtotcp.control.sockets",
            # what ``femtotcp.control`` loads on first use (its ``_WHERE``)
            "femtotcp.control.client", "femtotcp.control.commands",
            "femtotcp.control.gather", "femtotcp.control.protocol",
            "femtotcp.control.render", "femtotcp.control.server"),
}

#: The seed's set (picoTCP's comparison): ``make tiny``. ``run`` is the socket
#: API behind ``femtotcp run``.
TINY = ("arp", "ipv4", "icmp4", "udp", "tcp", "dns", "run")

MAIN = b"import sys\nfrom femtotcp.cli import main\nsys.exit(main())\n"
SHEBANG = b"#!/usr/bin/env python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_INDENT = re.compile(r"(?m)^((?:    )+)")


def known() -> list[str]:
    return [*modreg.MODULES, *modreg.EXTRAS]


def needs(name: str) -> tuple[str, ...]:
    return modreg.MODULES[name][1] if name in modreg.MODULES else modreg.EXTRAS[name][1]


def resolve(names: Iterable[str]) -> list[str]:
    """Check a build's module list (names known, needs present); ValueError says what."""
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in wanted if n not in modreg.MODULES and n not in modreg.EXTRAS]
    if unknown:
        raise ValueError(f"unknown module(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known())}")
    for name in wanted:
        missing = [d for d in needs(name) if d not in wanted]
        if missing:
            raise ValueError(f"module {name} needs {', '.join(missing)}, "
                             "which is not in the list")
    modreg.resolve([n for n in wanted if n in modreg.MODULES])
    return wanted


def roots(names: Iterable[str]) -> list[str]:
    out = list(CORE_ROOTS)
    for name in names:
        if name in modreg.MODULES:
            out.append(modreg.MODULES[name][0])
        else:
            out.extend(modreg.EXTRAS[name][0])
        out.extend(r for r in RIDERS.get(name, ()) if source_of(r) is not None)
    return out


def source_of(module: str) -> Path | None:
    """The file of ``femtotcp.x.y`` in the source tree (a package's ``__init__.py``)."""
    parts = module.split(".")
    if parts[0] != "femtotcp":
        return None
    base = PKG.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    path = base.with_suffix(".py")
    return path if path.is_file() else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_time_imports(tree: ast.Module, module: str) -> set[str]:
    """``femtotcp`` modules imported when ``module`` is imported (not in functions)."""
    found: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    raise ValueError(f"{module}: relative imports are not followed")
                base = node.module or ""
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            # Class bodies, if/try/with/for blocks run at import time too.
            for attr in ("body", "orelse", "finalbody"):
                visit(getattr(node, attr, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                visit(handler.body)

    visit(tree.body)
    return {m for m in found if m.split(".")[0] == "femtotcp" and source_of(m) is not None}


def closure(start: Iterable[str]) -> list[str]:
    """Every ``femtotcp`` module importing ``start`` loads, with parent packages."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = source_of(mod)
        if path is None:
            raise ValueError(f"no source for {mod}")
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        st = path.stat()
        todo.extend(_imports_of(str(path), mod, st.st_mtime_ns, st.st_size))
    return sorted(seen)


@functools.lru_cache(maxsize=512)
def _imports_of(path: str, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    return frozenset(import_time_imports(ast.parse(Path(path).read_bytes()), module))


@functools.lru_cache(maxsize=512)
def _stripped(path: str, name: str, mtime_ns: int, size: int) -> str:
    return strip(Path(path).read_bytes(), name)


def files_for(names: Iterable[str]) -> list[str]:
    """The package-relative paths a build of ``names`` holds."""
    out = []
    for mod in closure(roots(names)):
        path = source_of(mod)
        assert path is not None
        out.append(path.relative_to(PKG).as_posix())
    return sorted(out)


class _Strip(ast.NodeTransformer):
    """Drop what the running code never reads (as ``-OO`` does, and more)."""

    def _body(self, body: list[ast.stmt], keep_annotations: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for node in body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                continue                               # docstring or bare string
            if isinstance(node, ast.Assert):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                out.extend(self._body(node.orelse, keep_annotations))
                continue
            if isinstance(node, ast.AnnAssign) and not keep_annotations:
                if node.value is None:
                    continue
                node = ast.Assign(targets=[node.target], value=node.value,
                                  lineno=node.lineno)
            new = self.visit(node)
            if new is not None:
                out.append(new)
        return out

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = self._body(node.body, True)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        # Class annotations are fields (dataclass, NamedTuple): they stay.
        node.body = self._body(node.body, True) or [ast.Pass()]
        node.bases = [self.visit(b) for b in node.bases]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.returns = None
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                a.annotation = None
        node.body = self._body(node.body, False) or [ast.Pass()]
        node.args = self.visit(node.args)
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                body = self._body(value, False)
                setattr(node, name, body if body or name == "orelse" else [ast.Pass()])
            elif isinstance(value, list):
                setattr(node, name, [self.visit(v) if isinstance(v, ast.AST) else v
                                     for v in value])
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node


def strip(source: bytes, filename: str = "<femtotcp>") -> str:
    """Source without docstrings, asserts, comments and function annotations."""
    tree = ast.fix_missing_locations(_Strip().visit(ast.parse(source, filename)))
    text = ast.unparse(tree) + "\n"
    # One space per indentation level instead of four, kept only when the
    # result parses to the very same tree (a string spanning lines would not).
    narrow = _INDENT.sub(lambda m: " " * (len(m.group(1)) // 4), text)
    try:
        same = ast.dump(ast.parse(narrow)) == ast.dump(ast.parse(text))
    except SyntaxError:
        same = False
    return narrow if same else text


def bytecode_OO(source: bytes, filename: str) -> bytes:
    """The marshalled code object ``python -OO`` would cache for ``source``."""
    return marshal.dumps(compile(source, filename, "exec", optimize=2))


@dataclass
class Build:
    """A built zipapp and what each file in it costs."""

    modules: list[str]
    data: bytes
    bytecode: bool
    #: package-relative source path -> bytes its entries take in the zip
    entry_bytes: dict[str, int] = field(default_factory=dict)
    solid: bool = False

    @property
    def files(self) -> list[str]:
        return sorted(self.entry_bytes)


def _entry(zf: zipfile.ZipFile, name: str, payload: bytes) -> int:
    """Store one file; the bytes it takes (local header + data + directory entry)."""
    info = zipfile.ZipInfo(name, _EPOCH)
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    zf.writestr(info, payload, zipfile.ZIP_DEFLATED, 9)
    return 30 + 46 + 2 * len(info.filename.encode()) + info.compress_size


#: Appended to ``femtotcp/__init__.py`` in a solid build: serve the package's
#: modules from one LZMA stream (``femtotcp/modules.xz``) inside the zip.
SOLID_LOADER = """
def _solid():
    import lzma, marshal, sys
    from importlib.machinery import ModuleSpec
    here = __path__[0]
    table = marshal.loads(lzma.decompress(__loader__.get_data(here + '/modules.xz')))

    class SolidFinder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            entry = table.get(name)
            if entry is None:
                return None
            spec = ModuleSpec(name, cls, origin=here + '/' + entry[0], is_package=entry[1])
            spec.has_location = True
            return spec

        @staticmethod
        def create_module(spec):
            return None

        @staticmethod
        def exec_module(module):
            spec = module.__spec__
            module.__file__ = spec.origin
            exec(compile(table[spec.name][2], spec.origin, 'exec'), module.__dict__)

    sys.meta_path.insert(0, SolidFinder)
    return table
_SOLID = _solid()
"""


def build(names: Iterable[str], bytecode: bool = False, solid: bool = False) -> Build:
    """Build a zipapp of ``names`` (protocol modules, services, faces) in memory.
    ``solid``: every module but the package's ``__init__`` in one LZMA stream
    (smaller; needs the interpreter's ``lzma``); a file's cost is then not its own."""
    if bytecode and solid:
        raise ValueError("--bytecode and --solid are exclusive")
    wanted = resolve(names)
    buf = io.BytesIO()
    costs: dict[str, int] = {}
    table: dict[str, tuple[str, bool, str]] = {}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        _entry(zf, "__main__.py", MAIN)
        for rel in files_for(wanted):
            path = PKG / rel
            st = path.stat()
            name = f"femtotcp/{rel}"
            text = _stripped(str(path), name, st.st_mtime_ns, st.st_size)
            if solid and rel != "__init__.py":
                module = "femtotcp." + rel.removesuffix(".py").replace("/", ".")
                is_pkg = module.endswith(".__init__")
                table[module.removesuffix(".__init__")] = (rel, is_pkg, text)
                costs[rel] = 0
                continue
            if solid:
                costs[rel] = _entry(zf, name, (text + SOLID_LOADER).encode())
            elif bytecode:
                code = compile(text, name, "exec", optimize=2)
                pyc = importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)
                costs[rel] = _entry(zf, name + "c", pyc)
            else:
                costs[rel] = _entry(zf, name, text.encode())
        if solid:
            blob = lzma.compress(marshal.dumps(table), preset=9 | lzma.PRESET_EXTREME)
            _entry(zf, "femtotcp/modules.xz", blob)
    return Build(wanted, SHEBANG + buf.getvalue(), bytecode, costs, solid)


def write(names: Iterable[str], path: str | os.PathLike[str], bytecode: bool = False,
          solid: bool = False) -> Build:
    """Build and write an executable zipapp to ``path``."""
    result = build(names, bytecode, solid)
    target = Path(path)
    target.write_bytes(result.data)
    target.chmod(0o755)
    return result


def main(names: list[str], output: str, bytecode: bool = False, solid: bool = False) -> int:
    result = write(names, output, bytecode, solid)
    left = [n for n in known() if n not in result.modules]
    print(f"femtotcp: wrote {output}: {len(result.data)} bytes, {len(result.files)} files, "
          f"{'-OO bytecode (this Python only)' if bytecode else 'stripped source'}"
          f"{' in one LZMA stream' if solid else ''}; "
          f"modules: {', '.join(result.modules)}; left out: {', '.join(left) or 'none'}")
    return 0
