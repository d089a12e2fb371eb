"""The ctl commands: check a request's arguments, gather the answer in the loop
thread, and (for ``ping``) stream progress while it runs.

``Commands`` is what ``ControlServer`` dispatches to (``table()``: command name
-> handler). Arguments come from the client and are hostile too: every one is
checked for type and range before it is used.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from femtotcp.control import protocol
from femtotcp.control.gather import (
    HostLike,
    gather_addr,
    gather_dns,
    gather_neigh,
    gather_routes,
    gather_sockets,
    gather_stats,
)
from femtotcp.control.protocol import ControlError, Emit
from femtotcp.wire import ip_bytes, ip_str

T = TypeVar("T")

#: A command: its request's args and a progress sink in, its result out.
Handler = Callable[[dict[str, Any], Emit], dict[str, Any]]


def _check_args(args: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ControlError("bad_request", f"unknown argument(s): {', '.join(unknown)[:200]}")


def _arg_int(args: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ControlError("bad_request", f"{name} must be an integer in {low}..{high}")
    return value


def _arg_float(args: Mapping[str, Any], name: str, default: float, low: float,
               high: float) -> float:
    value = args.get(name, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise ControlError("bad_request", f"{name} must be a number in {low:g}..{high:g}")
    return float(value)


def _arg_str(args: Mapping[str, Any], name: str, max_len: int = 1024) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > max_len or "\0" in value:
        raise ControlError("bad_request",
                           f"{name} must be a non-empty string of at most {max_len} characters")
    return value



class Commands:
    """The commands of one control server for ``host``. ``call`` runs work in the
    loop thread (ControlError when it does not answer); ``closing`` is set when
    the server shuts down, which ends a running ping."""

    def __init__(self, host: HostLike, call: Callable[..., Any],
                 closing: threading.Event) -> None:
        self.host = host
        self._call = call
        self.closing = closing

    def table(self) -> dict[str, Handler]:
        return {
            "stats": self._cmd_stats, "addr": self._cmd_addr, "route": self._cmd_route,
            "neigh": self._cmd_neigh, "sockets": self._cmd_sockets,
            "resolve": self._cmd_resolve, "ping": self._cmd_ping,
            "capture": self._cmd_capture, "dns": self._cmd_dns,
        }

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = self._call(fn, *args)
        return result

    def _cmd_stats(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_stats, self.host)

    def _cmd_addr(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_addr, self.host)

    def _cmd_route(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_routes, self.host)

    def _cmd_dns(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_dns, self.host)

    def _cmd_neigh(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_neigh, self.host)

    def _cmd_sockets(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ())
        return self.call(gather_sockets, self.host)

    def _cmd_capture(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("action", "path"))
        action = args.get("action")
        host = self.host
        if action == "start":
            path = _arg_str(args, "path", 4096)
            if not os.path.isabs(path):
                raise ControlError("bad_request", "capture path must be absolute")
            try:
                self.call(host.start_capture, path)
            except OSError as exc:
                raise ControlError("failed", f"cannot capture to {path}: "
                                   f"{exc.strerror or exc}") from None
            except ValueError as exc:
                raise ControlError("failed", f"cannot capture to {path}: {exc}") from None
            return {"capturing": True, "path": path, "packets": 0}
        if action == "stop":
            _check_args(args, ("action",))

            def stop() -> tuple[str | None, int]:
                pcap = host.pcap
                path = getattr(pcap, "path", None) if pcap is not None else None
                packets = int(getattr(pcap, "packets", 0)) if pcap is not None else 0
                host.stop_capture()
                return path, packets

            path_, packets = self.call(stop)
            return {"capturing": False, "path": path_, "packets": packets}
        raise ControlError("bad_request", "capture action must be 'start' or 'stop'")

    def _cmd_resolve(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("name", "timeout"))
        name = _arg_str(args, "name", 1024)
        timeout = _arg_float(args, "timeout", 10.0, 0.1, 60.0)
        return self._resolve(name, timeout)

    def _resolve(self, name: str, timeout: float) -> dict[str, Any]:
        """A and AAAA lookups through the stack's resolver (services/dns.py),
        waited for with the API's one blocking lookup (api/resolve.py), within
        ``timeout`` together. The name resolves when either has addresses (A
        first); otherwise the A lookup's error names the failure (AAAA's when
        A found no data)."""
        import time

        from femtotcp.api.resolve import NoResolver, lookup
        from femtotcp.wire import dns as wire_dns
        deadline = time.monotonic() + timeout
        results = []
        for qtype in (wire_dns.A, wire_dns.AAAA):
            left = max(0.1, deadline - time.monotonic())
            try:
                result = lookup(self.host.runtime, self.host.stack, name, qtype, left,
                                load_module=False, start_timeout=protocol.STACK_TIMEOUT)
            except NoResolver:
                raise ControlError("unavailable", "no resolver: start serve with --dns IP "
                                   "to load the dns module") from None
            except TimeoutError:
                raise protocol.stack_unresponsive(protocol.STACK_TIMEOUT) from None
            results.append(result)
        found = [r for r in results if r is not None and r.error is None and r.addresses]
        if not found:
            first = results[0]
            if first is None:
                raise ControlError("resolve_failed", f"{name}: no answer within {timeout:g} s",
                                   dns_error="TIMEOUT")
            error = first.error or "NODATA"
            second = results[1]
            if str(error) == "NODATA" and second is not None and second.error is not None:
                error = second.error
            text = _DNS_ERRORS.get(str(error), str(error))
            raise ControlError("resolve_failed", f"{name}: {text}", dns_error=str(error))
        result = found[0]
        server = result.server
        return {"name": name, "addresses": [ip_str(a) for r in found for a in r.addresses],
                "cname_chain": list(result.cname_chain),
                "ttl": int(min(r.ttl for r in found)),
                "server": ip_str(server) if server else None,
                "source": str(result.source)}

    def _cmd_ping(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        _check_args(args, ("host", "count", "interval", "wait", "size"))
        target = _arg_str(args, "host", 1024)
        count = _arg_int(args, "count", 4, 1, 100000)
        interval = _arg_float(args, "interval", 1.0, 0.01, 60.0)
        wait = _arg_float(args, "wait", 2.0, 0.01, 60.0)
        size = _arg_int(args, "size", 56, 0, 65507 - 8)
        if (count - 1) * interval > protocol.PING_MAX_DURATION:
            raise ControlError("bad_request", f"a ping may last at most "
                               f"{protocol.PING_MAX_DURATION:g} s (count x interval)")
        stack = self.host.stack
        try:
            dst = ip_bytes(target)
        except ValueError:
            dst = ip_bytes(self._resolve(target, 10.0)["addresses"][0])
        module = "icmp" if len(dst) == 4 else "icmp6"
        if getattr(stack, module, None) is None:
            raise ControlError("unavailable", f"the {'icmp4' if len(dst) == 4 else 'icmp6'} "
                               "module is not loaded")
        return self._ping(target, dst, count, interval, wait, size, emit)

    def _ping(self, target: str, dst: bytes, count: int, interval: float, wait: float,
              size: int, emit: Emit) -> dict[str, Any]:
        """RFC 792 echo from the stack, like ping(8): one request per interval, then
        wait up to ``wait`` seconds after the last for stragglers."""
        stack = self.host.stack
        replies: queue.Queue[tuple[float, tuple[bytes, int, bytes, int]]] = queue.Queue()
        payload = bytes((0x10 + i) & 0xFF for i in range(size))

        def open_endpoint() -> Any:
            ep = (stack.icmp if len(dst) == 4 else stack.icmp6).open_echo()
            clock = stack.clock

            def readable() -> None:
                while (r := ep.recv()) is not None:
                    replies.put((clock(), r))

            ep.on_readable = readable
            return ep

        def send(seq: int) -> tuple[float, int]:
            t = stack.clock()
            return t, int(ep.send(dst, seq, payload))

        ep = self.call(open_endpoint)
        sent: dict[int, float] = {}
        got: set[int] = set()
        rtts: list[float] = []
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        dups = 0
        seq = 0
        next_send = time.monotonic()
        deadline = math.inf
        try:
            while True:
                if self.closing.is_set():
                    raise ControlError("shutting_down", "femtotcp serve is shutting down")
                now = time.monotonic()
                if seq < count and now >= next_send:
                    seq += 1
                    t, err = self.call(send, seq)
                    sent[seq] = t
                    if err:
                        e = {"seq": seq, "error": os.strerror(err), "errno": err}
                        errors.append(e)
                        emit(e)
                    next_send += interval
                    if seq == count:
                        deadline = time.monotonic() + wait
                    continue
                outstanding = len(sent) - len(got) - len(errors)
                if seq == count and (outstanding <= 0 or now >= deadline):
                    break
                until = next_send if seq < count else deadline
                try:
                    t_reply, (src, rseq, data, ttl) = replies.get(
                        timeout=min(max(0.0, until - now), 0.5))
                except queue.Empty:
                    continue
                if rseq not in sent:
                    continue      # not one of ours (our identifier, a stale sequence)
                dup = rseq in got
                rtt = round((t_reply - sent[rseq]) * 1000.0, 3)
                row = {"seq": rseq, "from": ip_str(src), "ttl": ttl, "bytes": 8 + len(data),
                       "rtt_ms": rtt, "duplicate": dup, "payload_ok": data == payload}
                if dup:
                    dups += 1
                else:
                    got.add(rseq)
                    rtts.append(rtt)
                rows.append(row)
                emit(row)
        finally:
            try:
                self.call(ep.close)
            except ControlError:
                pass
        transmitted = len(sent)
        received = len(got)
        summary = None
        if rtts:
            avg = sum(rtts) / len(rtts)
            mdev = math.sqrt(sum((r - avg) ** 2 for r in rtts) / len(rtts))
            summary = {"min": min(rtts), "avg": round(avg, 3), "max": max(rtts),
                       "mdev": round(mdev, 3)}
        return {"host": target, "address": ip_str(dst), "transmitted": transmitted,
                "received": received, "duplicates": dups, "errors": len(errors),
                "loss_percent": round(100.0 * (transmitted - received) / transmitted, 1)
                if transmitted else 0.0,
                "replies": rows, "send_errors": errors, "rtt_ms": summary}



#: What the resolver's error names mean, for people.
_DNS_ERRORS = {
    "NXDOMAIN": "no such name (NXDOMAIN)",
    "NODATA": "the name has no IPv4 address (NODATA)",
    "TIMEOUT": "no answer from the DNS servers (TIMEOUT)",
    "NOSERVERS": "no DNS servers configured (NOSERVERS)",
    "SERVFAIL": "the DNS server failed (SERVFAIL)",
    "REFUSED": "the DNS server refused (REFUSED)",
    "BADNAME": "not a valid domain name (BADNAME)",
    "FORMERR": "the DNS server could not parse the query (FORMERR)",
    "NOTIMP": "the DNS server does not implement the query (NOTIMP)",
    "CNAME_LOOP": "the CNAME chain loops or is too long (CNAME_LOOP)",
    "TRUNCATED": "the answer was truncated and TCP failed (TRUNCATED)",
}

