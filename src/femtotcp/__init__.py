"""femtotcp: a pure-Python user-space TCP/IP stack.

The protocol core is sans-I/O (frames and a clock in, frames out); devices in
``phy/`` and the loop in ``runtime`` are the only parts that touch file
descriptors.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def patch(target: Any) -> Any:
    """Make the socket module use a femtotcp stack (see ``femtotcp.api.patch``).

    ``target`` is a running ``femtotcp.host.Host`` or a ``(stack, runtime)``
    pair; the result is a context manager that undoes the patch."""
    from femtotcp.api.patch import patch as _patch
    return _patch(target)
