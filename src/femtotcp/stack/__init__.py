"""The host: Stack, interfaces, neighbour cache, routes, IP input/output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from femtotcp.stack.stack import Stack

__all__ = ["Stack"]


def __getattr__(name: str) -> Any:
    """``Stack`` is loaded on first use (PEP 562): the CLI reads
    ``femtotcp.stack.modules`` (what this build holds) before it knows whether
    the command needs a stack at all (``run --control`` and ``ctl`` do not)."""
    if name == "Stack":
        from femtotcp.stack.stack import Stack
        globals()["Stack"] = Stack
        return Stack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
