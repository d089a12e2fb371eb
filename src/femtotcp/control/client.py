"""``femtotcp ctl``: the client of the control socket.

Parses the command line (``add_ctl_arguments``, cli.py calls it), sends one
request (``request``), and prints the reply: the JSON document with
``--json``, tables for people otherwise (render.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import stat
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from femtotcp.control import protocol
from femtotcp.control.protocol import ControlError, encode, error_document
from femtotcp.control.render import _print_progress, render


def request(path: str, command: str, args: Mapping[str, Any] | None = None,
            timeout: float = 15.0,
            on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Send one request to a control server and return its reply document.

    ``timeout`` bounds each wait for a line, so a long ping that keeps sending
    progress does not time out."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(encode({"version": protocol.SCHEMA_VERSION, "command": command,
                          "args": dict(args or {})}))
        buf = bytearray()
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError("the control server sent something that is not a "
                                     "JSON object")
                if "progress" in doc and "ok" not in doc:
                    if on_progress is not None:
                        on_progress(doc["progress"])
                    continue
                return doc
            if len(buf) > protocol.MAX_REPLY:
                raise ValueError(f"reply longer than {protocol.MAX_REPLY} bytes")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the control server closed the connection "
                                      "without a reply")
            buf += chunk


def default_control_path(directory: str | None = None) -> str:
    """The one control socket in CONTROL_DIR, or ControlError asking for --control."""
    d = directory or protocol.CONTROL_DIR
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        names = []
    except PermissionError:
        raise ControlError("no_server", f"cannot read {d} (are you root?); "
                           "give the socket with --control PATH") from None
    socks = []
    for n in names:
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode):
                socks.append(n)
        except OSError:
            continue
    if len(socks) == 1:
        return os.path.join(d, socks[0])
    if not socks:
        raise ControlError("no_server", f"no control socket in {d}: is `femtotcp serve` "
                           "running? Give the socket with --control PATH")
    raise ControlError("no_server", f"several control sockets in {d} ({', '.join(socks)}): "
                       "choose one with --control PATH")


def _add_common(p: argparse.ArgumentParser, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument("--control", metavar="PATH", default=default,
                   help=f"the serve's control socket (default: the one socket in "
                        f"{protocol.CONTROL_DIR}/)")
    p.add_argument("--json", action="store_true",
                   default=False if top else argparse.SUPPRESS,
                   help="print the reply as a JSON document (see docs/ctl-json.md)")


def _positive_int(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not a positive count")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return v


def add_ctl_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``femtotcp ctl`` flags and commands (cli.py calls this)."""
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="ctl_command", metavar="COMMAND")
    sub.required = True
    simple = {"stats": "every counter, drops by reason, queue occupancy",
              "addr": "addresses, their origin, the DHCP lease",
              "route": "the routing table and learned path MTUs",
              "neigh": "the neighbour (ARP) cache",
              "dns": "the resolver's servers (and where each came from), search list",
              "sockets": "UDP and TCP sockets, like ss -tuan",
              "flows": "NAT flows of a femtotcp gateway"}
    for name, text in simple.items():
        _add_common(sub.add_parser(name, help=text), top=False)
    r = sub.add_parser("resolve", help="look a name up through the stack's resolver")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--timeout", type=_seconds, default=10.0, metavar="S")
    _add_common(r, top=False)
    p = sub.add_parser("ping", help="ICMP echo from the stack")
    p.add_argument("host", metavar="HOST")
    p.add_argument("-c", "--count", type=_positive_int, default=4, metavar="N",
                   help="requests to send (default 4)")
    p.add_argument("-i", "--interval", type=_seconds, default=1.0, metavar="S",
                   help="seconds between requests (default 1)")
    p.add_argument("-W", "--wait", type=_seconds, default=2.0, metavar="S",
                   help="seconds to wait for replies after the last request (default 2)")
    p.add_argument("-s", "--size", type=int, default=56, metavar="N",
                   help="payload bytes (default 56)")
    _add_common(p, top=False)
    c = sub.add_parser("capture", help="start or stop a pcap capture")
    csub = c.add_subparsers(dest="capture_action", metavar="start FILE | stop")
    csub.required = True
    cs = csub.add_parser("start", help="capture every frame to FILE")
    cs.add_argument("file", metavar="FILE")
    _add_common(cs, top=False)
    _add_common(csub.add_parser("stop", help="stop the capture"), top=False)
    _add_common(c, top=False)
    f = sub.add_parser("forward", help="a gateway's port forwards: add|del|list")
    f.add_argument("forward_action", choices=["add", "del", "list"])
    f.add_argument("spec", nargs="?", default="", metavar="[ADDR:]HOSTPORT:GUESTPORT")
    f.add_argument("-u", "--udp", action="store_true", help="a UDP forward (default TCP)")
    _add_common(f, top=False)


def build_request(args: argparse.Namespace) -> tuple[str, dict[str, Any], float]:
    """(command, args, client timeout) from parsed ``ctl`` arguments."""
    cmd = args.ctl_command
    if cmd == "resolve":
        return cmd, {"name": args.name, "timeout": args.timeout}, args.timeout + 10.0
    if cmd == "ping":
        req = {"host": args.host, "count": args.count, "interval": args.interval,
               "wait": args.wait, "size": args.size}
        return cmd, req, args.interval + args.wait + protocol.STACK_TIMEOUT + 5.0
    if cmd == "capture":
        if args.capture_action == "start":
            return cmd, {"action": "start", "path": os.path.abspath(args.file)}, 15.0
        return cmd, {"action": "stop"}, 15.0
    if cmd == "forward":
        return cmd, {"action": args.forward_action, "spec": args.spec,
                     "proto": "udp" if args.udp else "tcp"}, 15.0
    return cmd, {}, 15.0


def ctl_main(args: argparse.Namespace, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """``femtotcp ctl``: 0 on success, 1 on an error reply or no server."""
    out = out or sys.stdout
    err = err or sys.stderr
    command, req, timeout = build_request(args)
    as_json = bool(getattr(args, "json", False))
    try:
        path = args.control or default_control_path()
        progress = None if as_json else (lambda p: _print_progress(command, p, out))
        doc = request(path, command, req, timeout=timeout, on_progress=progress)
    except ControlError as exc:
        doc = error_document(command, exc.code, exc.message)
    except OSError as exc:
        doc = error_document(command, "no_server", _connect_error(
            args.control or protocol.CONTROL_DIR, exc, timeout))
    except ValueError as exc:
        doc = error_document(command, "bad_reply", f"bad reply from the control server: {exc}")
    if as_json:
        out.write(json.dumps(doc, indent=2) + "\n")
    elif doc.get("ok"):
        out.write(render(command, doc.get("result") or {}))
    else:
        e = doc.get("error") or {}
        err.write(f"femtotcp ctl: error: {e.get('message', 'unknown error')}\n")
    out.flush()
    if not doc.get("ok"):
        return 1
    if command == "ping" and not (doc.get("result") or {}).get("received"):
        return 1
    return 0


def _connect_error(path: str, exc: OSError, timeout: float) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no control socket at {path} (is `femtotcp serve` running?)"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing answers on {path} (a stale socket: femtotcp serve is not running)"
    if isinstance(exc, PermissionError):
        return f"permission denied on {path} (the control socket is root's)"
    if isinstance(exc, TimeoutError):
        return f"no answer from femtotcp serve on {path} within {timeout:g} s"
    return f"{path}: {exc.strerror or exc}"

