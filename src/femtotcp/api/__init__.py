"""What programs use: stdlib-compatible sockets, asyncio streams, and patching.

- ``femtotcp.api.socket``: ``socket`` objects with ``socket.socket``'s interface
  on a stack, and ``Network`` (a stack plus its runtime) with the socket
  module's helpers (``create_connection``, ``getaddrinfo``...).
- ``femtotcp.api.aio``: ``open_connection`` / ``start_server`` for asyncio.
- ``femtotcp.api.patch``: ``patch(host)`` runs unmodified programs over a stack;
  ``scoped(...)`` does it for one thread.
- ``femtotcp.api.run``: ``femtotcp run``.
- ``femtotcp.api.remote``: attached programs (``femtotcp run --control``): the
  sockets live in a ``femtotcp serve`` (its socket service,
  ``femtotcp.control.sockets``) and reach the program as file descriptors;
  ``boot/sitecustomize.py`` attaches the program's Python children.

Inside: ``network`` (``Network``: a stack and its runtime as programs see
them, name lookups, which network a thread uses); the loop-thread halves of
sockets by kind, around ``sock_base`` (shared ``_Link``, constants):
``sock_tcp`` (byte pump, listening, ``TcpMode``), ``sock_udp``, ``sock_ping``;
``loop`` (``call``: run work in the loop thread and wait, on ``Runtime.call``);
``sock_base`` also has ``_SocketBase``, what the in-process and the attached
socket classes share;
``resolve`` (the one blocking name lookup, and ``socket.gaierror`` for its
failures).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Network", "network_for"]


def __getattr__(name: str) -> Any:
    # Lazy: importing femtotcp.api must not import the socket layer. (The
    # function ``patch`` lives in the submodule of the same name:
    # ``from femtotcp.api.patch import patch``.)
    if name in ("Network", "network_for"):
        from femtotcp.api import socket as _socket
        return getattr(_socket, name)
    raise AttributeError(name)
