"""asyncio streams over a femtotcp stack.

``open_connection`` and ``start_server`` have the signatures of
``asyncio.open_connection`` / ``asyncio.start_server`` plus ``network=``
(default: the patched-in network). They make stack sockets and hand them to
asyncio with ``sock=``: asyncio's own selector loop drives them through their
file descriptors, so everything above (StreamReader/StreamWriter, ssl=...) is
asyncio's unchanged code. ``create_datagram_endpoint`` does the same for UDP.
"""

from __future__ import annotations

import asyncio
import errno
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


async def connect_socket(host: str, port: int, *, network: fsock.Network | None = None,
                         local_addr: tuple[str, int] | None = None) -> fsock.socket:
    """A connected, non-blocking stack socket (each address tried in turn)."""
    net = _network(network)
    loop = asyncio.get_running_loop()
    infos = await loop.run_in_executor(None, net.getaddrinfo, host, port, fsock.AF_INET,
                                       fsock.SOCK_STREAM)
    errors: list[OSError] = []
    for _family, _kind, proto, _canon, address in infos:
        sock = net.socket(fsock.AF_INET, fsock.SOCK_STREAM, proto)
        try:
            sock.setblocking(False)
            if local_addr is not None:
                sock.bind(local_addr)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(e) for e in errors)}")


async def open_connection(host: str, port: int, *, network: fsock.Network | None = None,
                          limit: int = _DEFAULT_LIMIT, ssl: Any = None,
                          server_hostname: str | None = None,
                          local_addr: tuple[str, int] | None = None,
                          ssl_handshake_timeout: float | None = None,
                          **kwds: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over the stack."""
    sock = await connect_socket(host, port, network=network, local_addr=local_addr)
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
                       limit: int = _DEFAULT_LIMIT, backlog: int = 100,
                       reuse_port: bool = False, ssl: Any = None,
                       start_serving: bool = True, **kwds: Any) -> asyncio.Server:
    """``asyncio.start_server`` over the stack (one listening socket)."""
    net = _network(network)
    sock = net.create_server((host or "", port), backlog=backlog, reuse_port=reuse_port)
    try:
        sock.setblocking(False)
        return await asyncio.start_server(client_connected_cb, sock=sock, limit=limit,
                                          ssl=ssl, backlog=backlog,
                                          start_serving=start_serving, **kwds)
    except BaseException:
        sock.close()
        raise


async def create_datagram_endpoint(
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None, *,
        network: fsock.Network | None = None,
        allow_broadcast: bool = False) -> tuple[asyncio.DatagramTransport, Any]:
    """``loop.create_datagram_endpoint`` over the stack (UDP)."""
    net = _network(network)
    loop = asyncio.get_running_loop()
    sock = net.socket(fsock.AF_INET, fsock.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if allow_broadcast:
            sock.setsockopt(fsock.SOL_SOCKET, fsock.SO_BROADCAST, 1)
        sock.bind(local_addr or ("", 0))
        if remote_addr is not None:
            host, port = remote_addr
            infos = await loop.run_in_executor(None, net.getaddrinfo, host, port,
                                               fsock.AF_INET, fsock.SOCK_DGRAM)
            sock.connect(infos[0][4])
        return await loop.create_datagram_endpoint(protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise


__all__ = ["open_connection", "start_server", "create_datagram_endpoint", "connect_socket"]
