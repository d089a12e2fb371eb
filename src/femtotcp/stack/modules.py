"""The protocol modules a stack can load, and what each needs.

Nothing here imports a module at top level: a build without TCP never imports
``femtotcp.proto.tcp``. Each module exposes ``install(stack) -> object``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

#: name -> (python module, modules it needs)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "arp": ("femtotcp.stack.arp", ()),
    "ipv4": ("femtotcp.stack.ipv4", ()),
    "icmp4": ("femtotcp.proto.icmp4", ("ipv4",)),
    "udp": ("femtotcp.proto.udp", ("ipv4",)),
    "tcp": ("femtotcp.proto.tcp", ("ipv4",)),
    "dns": ("femtotcp.services.dns", ("udp",)),
    "ipv6": ("femtotcp.stack.ipv6", ()),          # with neighbour discovery (stack/ndp.py)
    "icmp6": ("femtotcp.proto.icmp6", ("ipv6",)),
}

DEFAULT_MODULES = ("arp", "ipv4", "icmp4", "udp", "tcp")


def available(name: str) -> bool:
    """True when the module's code is present in this build."""
    if name not in MODULES:
        return False
    try:
        spec = importlib.util.find_spec(MODULES[name][0])
    except ModuleNotFoundError:
        return False
    # A directory without __init__.py is a namespace package, not a module.
    return spec is not None and spec.origin is not None


def resolve(names: Iterable[str] | None) -> list[str]:
    """Order ``names`` so dependencies come first; ValueError names what is wrong."""
    if names is None:
        wanted = [n for n in DEFAULT_MODULES if available(n)]
    else:
        wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        unknown = [n for n in wanted if n not in MODULES]
        if unknown:
            raise ValueError(f"unknown module(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(MODULES))}")
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        for dep in MODULES[name][1]:
            if dep not in wanted:
                raise ValueError(f"module {name} needs {dep}, which is not in the list")
            visit(dep, chain + (name,))
        order.append(name)

    for n in wanted:
        visit(n, ())
    return order


def load(name: str) -> object:
    return importlib.import_module(MODULES[name][0])
