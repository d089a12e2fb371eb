"""asyncio streams over a femtotcp stack.

``open_connection`` and ``start_server`` have the signatures of
``asyncio.open_connection`` / ``asyncio.start_server`` plus ``network=``
(default: the patched-in network). They make stack sockets of either family
and hand them to asyncio with ``sock=``: asyncio's own selector loop drives
them through their file descriptors, so everything above
(StreamReader/StreamWriter, ssl=...) is asyncio's unchanged code. Connecting
follows getaddrinfo's RFC 6724 order and, with ``happy_eyeballs_delay``, races
the addresses as asyncio does (RFC 8305); serving with no host is one
dual-stack socket on ``::``. ``create_datagram_endpoint`` does the same for UDP.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from femtotcp.api import socket as fsock

_DEFAULT_LIMIT = 2 ** 16

ClientCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]


def _network(network: fsock.Network | None) -> fsock.Network:
    net = network if network is not None else fsock.current_network()
    if net is None:
        raise OSError(errno.ENETDOWN, "no femtotcp network: pass network= or use patch()")
    return net


def _interleave(infos: list[Any], first_family_count: int) -> list[Any]:
    """Addresses alternating by family, the first family's first
    ``first_family_count`` of them leading (RFC 8305 4, as asyncio's
    ``interleave``); the order within a family is getaddrinfo's (RFC 6724)."""
    by_family: dict[int, list[Any]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    if len(groups) < 2:
        return infos
    out: list[Any] = groups[0][:first_family_count - 1]
    rest = [groups[0][first_family_count - 1:], *groups[1:]]
    while any(rest):
        for group in rest:
            if group:
                out.append(group.pop(0))
    return out


async def connect_socket(host: str, port: int, *, network: fsock.Network | None = None,
                         local_addr: tuple[str, int] | None = None, family: int = 0,
                         flags: int = 0, happy_eyeballs_delay: float | None = None,
                         interleave: int | None = None) -> fsock.socket:
    """A connected, non-blocking stack socket to ``host``, IPv6 or IPv4, in
    getaddrinfo's order (RFC 6724: IPv6 first when both families have a
    source and a route). Addresses are tried one after another, or with
    ``happy_eyeballs_delay`` raced as asyncio's ``create_connection`` does
    (RFC 8305): the next attempt starts when the delay passes or the last one
    fails, families interleaved, the first connection wins and the rest are
    closed."""
    net = _network(network)
    loop = asyncio.get_running_loop()
    infos = await loop.run_in_executor(None, net.getaddrinfo, host, port, family,
                                       fsock.SOCK_STREAM, 0, flags)
    locals_: list[Any] | None = None
    if local_addr is not None:
        locals_ = await loop.run_in_executor(None, net.getaddrinfo, *local_addr, family,
                                             fsock.SOCK_STREAM, 0, flags)
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1
    if interleave:
        infos = _interleave(infos, interleave)
    made: list[fsock.socket] = []

    async def attempt(info: Any) -> fsock.socket:
        af, _kind, proto, _canon, address = info
        sock = net.socket(af, fsock.SOCK_STREAM, proto)
        made.append(sock)
        try:
            sock.setblocking(False)
            if locals_ is not None:
                mine = [la[4] for la in locals_ if la[0] == af]
                if not mine:
                    raise OSError(f"no matching local address with family={af} found")
                sock.bind(mine[0])
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    errors: list[BaseException] = []
    winner: fsock.socket | None = None
    try:
        if happy_eyeballs_delay is None or len(infos) < 2:
            for info in infos:
                try:
                    winner = await attempt(info)
                    break
                except OSError as exc:
                    errors.append(exc)
        else:
            from asyncio import staggered
            winner, _index, excs = await staggered.staggered_race(
                [functools.partial(attempt, info) for info in infos], happy_eyeballs_delay)
            errors = [e for e in excs if e is not None]
    finally:
        for sock in made:
            if sock is not winner:
                sock.close()
    if winner is not None:
        return winner
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(e) for e in errors)}")


async def open_connection(host: str, port: int, *, network: fsock.Network | None = None,
                          limit: int = _DEFAULT_LIMIT, ssl: Any = None, family: int = 0,
                          flags: int = 0, server_hostname: str | None = None,
                          local_addr: tuple[str, int] | None = None,
                          ssl_handshake_timeout: float | None = None,
                          happy_eyeballs_delay: float | None = None,
                          interleave: int | None = None,
                          **kwds: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over the stack, either family
    (``connect_socket``), ``happy_eyeballs_delay`` and ``interleave`` included."""
    sock = await connect_socket(host, port, network=network, local_addr=local_addr,
                                family=family, flags=flags,
                                happy_eyeballs_delay=happy_eyeballs_delay,
                                interleave=interleave)
    try:
        if ssl:
            kwds["server_hostname"] = server_hostname if server_hostname is not None else host
            if ssl_handshake_timeout is not None:
                kwds["ssl_handshake_timeout"] = ssl_handshake_timeout
        return await asyncio.open_connection(sock=sock, limit=limit, ssl=ssl, **kwds)
    except BaseException:
        sock.close()
        raise


async def start_server(client_connected_cb: ClientCallback, host: str | None = None,
                       port: int = 0, *, network: fsock.Network | None = None,
                       limit: int = _DEFAULT_LIMIT, family: int = 0, flags: int = 0,
                       backlog: int = 100, reuse_port: bool = False, ssl: Any = None,
                       start_serving: bool = True, **kwds: Any) -> asyncio.Server:
    """``asyncio.start_server`` over the stack, on one listening socket: for
    no host (or "") one dual-stack socket on ``::`` that takes IPv4 too
    (``0.0.0.0`` on a stack without IPv6, or with ``family=AF_INET``); for a
    host, its first passive address of either family."""
    net = _network(network)
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(None, _listener, net, host, port, family, flags,
                                      backlog, reuse_port)
    try:
        sock.setblocking(False)
        return await asyncio.start_server(client_connected_cb, sock=sock, limit=limit,
                                          ssl=ssl, backlog=backlog,
                                          start_serving=start_serving, **kwds)
    except BaseException:
        sock.close()
        raise


def _listener(net: fsock.Network, host: str | None, port: int, family: int, flags: int,
              backlog: int, reuse_port: bool) -> fsock.socket:
    if not host:
        six = getattr(net.stack, "ipv6", None) is not None and family != fsock.AF_INET
        if six:
            return net.create_server(("::", port), family=fsock.AF_INET6, backlog=backlog,
                                     reuse_port=reuse_port,
                                     dualstack_ipv6=family != fsock.AF_INET6)
        return net.create_server(("", port), backlog=backlog, reuse_port=reuse_port)
    infos = net.getaddrinfo(host, port, family, fsock.SOCK_STREAM, 0,
                            flags | socket.AI_PASSIVE)
    af, _kind, _proto, _canon, address = infos[0]
    return net.create_server(address, family=af, backlog=backlog, reuse_port=reuse_port)


async def create_datagram_endpoint(
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[Any, ...] | None = None,
        remote_addr: tuple[Any, ...] | None = None, *,
        network: fsock.Network | None = None, family: int = 0, flags: int = 0,
        allow_broadcast: bool = False) -> tuple[asyncio.DatagramTransport, Any]:
    """``loop.create_datagram_endpoint`` over the stack (UDP), in the family
    of the remote address, else of the local one, else ``family`` (IPv4 by
    default, as asyncio's with no addresses)."""
    net = _network(network)
    loop = asyncio.get_running_loop()
    remote: Any = None
    if remote_addr is not None:
        infos = await loop.run_in_executor(None, net.getaddrinfo, remote_addr[0],
                                           remote_addr[1], family, fsock.SOCK_DGRAM, 0, flags)
        family, remote = infos[0][0], infos[0][4]
    local: Any = None
    if local_addr is not None and local_addr[0]:
        infos = await loop.run_in_executor(None, net.getaddrinfo, local_addr[0],
                                           local_addr[1], family, fsock.SOCK_DGRAM, 0,
                                           flags | socket.AI_PASSIVE)
        family, local = infos[0][0], infos[0][4]
    family = family or fsock.AF_INET
    if local is None:
        local = ("::" if family == fsock.AF_INET6 else "",
                 local_addr[1] if local_addr is not None else 0)
    sock = net.socket(family, fsock.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if allow_broadcast:
            sock.setsockopt(fsock.SOL_SOCKET, fsock.SO_BROADCAST, 1)
        sock.bind(local)
        if remote is not None:
            sock.connect(remote)
        return await loop.create_datagram_endpoint(protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise


__all__ = ["open_connection", "start_server", "create_datagram_endpoint", "connect_socket"]
