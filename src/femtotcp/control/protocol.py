"""The control socket's wire contract (docs/ctl-json.md): documents, limits, errors.

A connection carries one request, a JSON line of at most MAX_REQUEST bytes::

    {"version": 1, "command": "ping", "args": {"host": "192.0.2.1", "count": 3}}

and gets back zero or more progress lines (only ``ping`` sends them) and then
one reply line, the stable document that ``femtotcp ctl --json`` prints::

    {"femtotcp_ctl": 1, "ok": true, "command": "ping", "result": {...}}
    {"femtotcp_ctl": 1, "ok": false, "command": "ping",
     "error": {"code": "bad_request", "message": "..."}}

The limits below are read at use time (``protocol.NAME``), so that a test may
change one for the server and the client alike.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from femtotcp.wire import ip_str, mac_str

#: The version of the request and reply documents (docs/ctl-json.md).
SCHEMA_VERSION = 1
#: Where ``serve`` puts its socket by default and where ``ctl`` looks for one.
CONTROL_DIR = "/run/femtotcp"
#: The largest request line the server reads.
MAX_REQUEST = 64 * 1024
#: The largest reply line the client accepts.
MAX_REPLY = 16 * 1024 * 1024
#: Connections served at once; more get a "busy" reply.
MAX_CLIENTS = 16
#: Seconds a client has to send its whole request.
REQUEST_TIMEOUT = 5.0
#: Seconds to wait for the loop thread to answer before giving up.
STACK_TIMEOUT = 10.0
#: Longest a ping may run (count x interval).
PING_MAX_DURATION = 3600.0


class ControlError(Exception):
    """A request that cannot be answered; ``code`` names the kind (docs/ctl-json.md),
    ``extra`` holds fields some codes add to the error object."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class ControlSocketError(OSError):
    """An OSError whose text is just its message (``femtotcp serve`` prints it)."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()



def stack_unresponsive(timeout: float) -> ControlError:
    """The error for a loop thread that did not take work within ``timeout`` s."""
    return ControlError("stack_unresponsive",
                        f"the stack did not answer within {timeout:g} s")


#: How a command reports progress (one JSON line each) while it runs.
Emit = Callable[[dict[str, Any]], None]


# -- documents -------------------------------------------------------------------
def ok_document(command: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"femtotcp_ctl": SCHEMA_VERSION, "ok": True, "command": command, "result": result}


def error_document(command: str | None, code: str, message: str,
                   **extra: Any) -> dict[str, Any]:
    return {"femtotcp_ctl": SCHEMA_VERSION, "ok": False, "command": command,
            "error": {"code": code, "message": message, **extra}}


def _json_default(obj: object) -> object:
    return _plain(obj)


def encode(doc: Mapping[str, Any]) -> bytes:
    """One JSON line."""
    return json.dumps(doc, default=_json_default, separators=(",", ":"),
                      allow_nan=False).encode() + b"\n"


def _plain(obj: object) -> Any:
    """Turn a protocol object into JSON values: packed addresses become text."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        if len(raw) in (4, 16):
            return ip_str(raw)
        if len(raw) == 6:
            return mac_str(raw)
        return raw.hex()
    if isinstance(obj, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return _plain(obj._asdict())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    return str(obj)



def parse_request(line: bytes) -> object:
    """Decode one request line; ControlError("bad_request") on anything malformed."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ControlError("bad_request", "the request is not UTF-8") from None
    if not text.strip():
        raise ControlError("bad_request", "empty request")
    try:
        return json.loads(text)
    except RecursionError:
        raise ControlError("bad_request", "the request nests too deeply") from None
    except ValueError as exc:
        raise ControlError("bad_request", f"the request is not JSON: {exc}"[:200]) from None
