"""The control socket behind ``femtotcp ctl``, split by job:

- ``protocol``: the wire contract (docs/ctl-json.md): request and reply
  documents, limits, error codes. Tunables (timeouts, limits) are read from
  here at use time: change them as ``femtotcp.control.protocol.NAME``.
- ``server``: ``ControlServer`` (the AF_UNIX socket, one thread per connection,
  peer permissions, dispatch) and ``check_free`` (one serve per path).
- ``commands``: each command's argument checks and work; ``gather``: what they
  read from the stack, in the loop thread.
- ``sockets``: ``SocketService``, the socket service beside the control socket
  that makes sockets for attached programs (``femtotcp run --control``;
  protocol in ``femtotcp.api.remote``); ``ControlServer`` starts it.
- ``client``: ``femtotcp ctl`` (arguments, ``request``, exit status);
  ``render``: the tables it prints for people.

The names other modules use are importable from ``femtotcp.control`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from femtotcp.control.client import (
        add_ctl_arguments,
        build_request,
        ctl_main,
        default_control_path,
        request,
    )
    from femtotcp.control.commands import Commands
    from femtotcp.control.gather import (
        HostLike,
        gather_addr,
        gather_dns,
        gather_neigh,
        gather_routes,
        gather_sockets,
        gather_stats,
        group_drops,
    )
    from femtotcp.control.protocol import (
        CONTROL_DIR,
        MAX_CLIENTS,
        MAX_REPLY,
        MAX_REQUEST,
        PING_MAX_DURATION,
        REQUEST_TIMEOUT,
        SCHEMA_VERSION,
        STACK_TIMEOUT,
        ControlError,
        ControlSocketError,
        Emit,
        encode,
        error_document,
        ok_document,
        parse_request,
    )
    from femtotcp.control.render import render, table
    from femtotcp.control.server import ControlServer, check_free

#: Where each name lives: loaded on first use (PEP 562), so the CLI's
#: parser (``client.add_ctl_arguments``) costs no import of the server side.
_WHERE = {
    "CONTROL_DIR": "protocol",
    "Commands": "commands",
    "ControlError": "protocol",
    "ControlServer": "server",
    "ControlSocketError": "protocol",
    "Emit": "protocol",
    "HostLike": "gather",
    "MAX_CLIENTS": "protocol",
    "MAX_REPLY": "protocol",
    "MAX_REQUEST": "protocol",
    "PING_MAX_DURATION": "protocol",
    "REQUEST_TIMEOUT": "protocol",
    "SCHEMA_VERSION": "protocol",
    "STACK_TIMEOUT": "protocol",
    "add_ctl_arguments": "client",
    "build_request": "client",
    "check_free": "server",
    "ctl_main": "client",
    "default_control_path": "client",
    "encode": "protocol",
    "error_document": "protocol",
    "gather_addr": "gather",
    "gather_dns": "gather",
    "gather_neigh": "gather",
    "gather_routes": "gather",
    "gather_sockets": "gather",
    "gather_stats": "gather",
    "group_drops": "gather",
    "ok_document": "protocol",
    "parse_request": "protocol",
    "render": "render",
    "request": "client",
    "table": "render",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTROL_DIR", "MAX_CLIENTS", "MAX_REPLY", "MAX_REQUEST", "PING_MAX_DURATION",
    "REQUEST_TIMEOUT", "SCHEMA_VERSION", "STACK_TIMEOUT", "Commands", "ControlError",
    "ControlServer", "ControlSocketError", "Emit", "HostLike", "add_ctl_arguments",
    "build_request", "check_free", "ctl_main", "default_control_path", "encode",
    "error_document", "gather_addr", "gather_dns", "gather_neigh", "gather_routes", "gather_sockets",
    "gather_stats", "group_drops", "ok_document", "parse_request", "render", "request",
    "table",
]
