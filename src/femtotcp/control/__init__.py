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

__all__ = [
    "CONTROL_DIR", "MAX_CLIENTS", "MAX_REPLY", "MAX_REQUEST", "PING_MAX_DURATION",
    "REQUEST_TIMEOUT", "SCHEMA_VERSION", "STACK_TIMEOUT", "Commands", "ControlError",
    "ControlServer", "ControlSocketError", "Emit", "HostLike", "add_ctl_arguments",
    "build_request", "check_free", "ctl_main", "default_control_path", "encode",
    "error_document", "gather_addr", "gather_dns", "gather_neigh", "gather_routes", "gather_sockets",
    "gather_stats", "group_drops", "ok_document", "parse_request", "render", "request",
    "table",
]
