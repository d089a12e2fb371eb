"""Blocking name resolution for threads other than the loop's.

The resolver in ``femtotcp.services.dns`` is sans-I/O: a question in, a
callback with a ``DnsResult`` later, all in the loop thread. Programs (the
socket API's ``getaddrinfo``), ``femtotcp ctl resolve`` and the demo wait for
that answer here, and this is where a ``DnsResult`` becomes the
``socket.gaierror`` glibc's getaddrinfo would raise.
"""

from __future__ import annotations

import queue
import socket
import time
from typing import TYPE_CHECKING

from femtotcp.services.dns import (
    BADNAME,
    NODATA,
    NOSERVERS,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TIMEOUT,
    TRUNCATED,
    DnsResult,
    Resolver,
)
from femtotcp.stack.stack import need

if TYPE_CHECKING:
    from femtotcp.runtime import Runtime
    from femtotcp.stack.stack import Stack


class NoResolver(LookupError):
    """The stack has no resolver and the caller asked not to load one."""


def default_timeout(stack: Stack) -> float:
    """The longest a lookup can take: every server, every round, every CNAME hop
    (capped at a minute), plus one fallback to TCP."""
    resolver = stack.resolver
    servers = Resolver.max_servers
    if resolver is not None:    # (read from another thread: a snapshot of the lists)
        servers = max(1, min(servers, len(resolver.servers) + sum(
            len(v) for v in list(resolver.lease_servers.values()))))
    budget = Resolver.timeout * Resolver.attempts * max(1, servers) * (
        Resolver.max_cname_hops + 1)
    return min(budget, 60.0) + Resolver.tcp_timeout


def lookup(runtime: Runtime, stack: Stack, name: str, qtype: int, timeout: float, *,
           load_module: bool = True, start_timeout: float | None = None) -> DnsResult | None:
    """Ask ``stack``'s resolver from another thread and wait up to ``timeout``
    seconds (counted from the call) for its answer; None when none came in time.

    The question is handed to the loop thread with ``Runtime.call``, whose
    TimeoutError (after ``start_timeout`` seconds, default ``timeout``) means
    the loop did not take it. Without a resolver: load the dns module, or
    NoResolver when ``load_module`` is false."""
    deadline = time.monotonic() + timeout
    if runtime.in_loop_thread():
        raise RuntimeError("a blocking lookup from the loop thread would deadlock")
    answers: queue.SimpleQueue[DnsResult] = queue.SimpleQueue()

    def start() -> None:
        if stack.resolver is None:
            if not load_module:
                raise NoResolver(name)
            stack.load_module("dns")
        need(stack.resolver, "dns").resolve(name, qtype, answers.put)

    runtime.call(start, timeout=timeout if start_timeout is None else start_timeout)
    try:
        return answers.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        return None


def resolve_blocking(runtime: Runtime, stack: Stack, name: str, qtype: int,
                     timeout: float | None = None) -> DnsResult:
    """``lookup`` that reports a wait that runs out as a TIMEOUT result
    (``timeout`` None: the resolver's whole budget, ``default_timeout``)."""
    if timeout is None:
        timeout = default_timeout(stack)
    try:
        result = lookup(runtime, stack, name, qtype, timeout)
    except TimeoutError:     # the loop did not take the question in time
        result = None
    return result if result is not None else DnsResult(name, qtype, error=TIMEOUT)


_GAI_MESSAGES = {
    socket.EAI_NONAME: "Name or service not known",
    socket.EAI_AGAIN: "Temporary failure in name resolution",
    socket.EAI_FAIL: "Non-recoverable failure in name resolution",
}
_EAI_NODATA: int = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
_GAI_MESSAGES.setdefault(_EAI_NODATA, "No address associated with hostname")


def gaierror_for(result: DnsResult) -> socket.gaierror | None:
    """The ``socket.gaierror`` glibc's getaddrinfo would raise for ``result``:
    NXDOMAIN/BADNAME -> EAI_NONAME, NODATA -> EAI_NODATA (EAI_NONAME where
    the platform has none), TIMEOUT/SERVFAIL/REFUSED/no servers -> EAI_AGAIN
    (glibc's resolver tries again later for a server that refused), other
    failures -> EAI_FAIL. None when the lookup succeeded."""
    err = result.error
    if err is None:
        if result.addresses or result.names:
            return None
        code = _EAI_NODATA
    elif err in (NXDOMAIN, BADNAME):
        code = socket.EAI_NONAME
    elif err == NODATA:
        code = _EAI_NODATA
    elif err in (TIMEOUT, SERVFAIL, REFUSED, NOSERVERS, TRUNCATED):
        code = socket.EAI_AGAIN
    else:
        code = socket.EAI_FAIL
    return socket.gaierror(code, _GAI_MESSAGES[code])
