"""asyncio over the stack with both families (real-time runtime, in memory).

Stack B serves TCP on IPv4 and IPv6 and answers DNS for the zone ``demo``;
stack S answers neighbour discovery for its IPv6 address but has no TCP (a
blackhole: a SYN to it is never answered, no RST, no ICMP). Names:

* ``both.demo``: A and AAAA of B (both work: RFC 6724 puts IPv6 first);
* ``hole.demo``: AAAA of S, A of B (IPv6 has a route and a source, so it
  comes first, and it never answers): only racing the addresses (RFC 8305,
  ``happy_eyeballs_delay``) connects, over IPv4;
* ``far.demo``: AAAA with no route, A of B: ordered IPv4 first (rule 1).
"""

from __future__ import annotations

import asyncio
import socket as std
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apilan import dual_lan

from femtotcp.api import aio
from femtotcp.api.patch import patch
from femtotcp.api.socket import Network

A4, B4 = "192.0.2.1", "192.0.2.2"
A6, B6, S6 = "2001:db8::a", "2001:db8::b", "2001:db8::5"
FULL = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns", "ipv6", "icmp6"]


@dataclass
class Dual:
    a: Network
    b: Network


@pytest.fixture
def dual() -> Iterator[Dual]:
    with dual_lan([("a", FULL, None, A4, A6), ("b", FULL, None, B4, B6),
                   ("s", ["ipv6"], None, None, S6)]) as (a, b, _s):
        _serve_names(a, b)
        yield Dual(a, b)


def _serve_names(a: Network, b: Network) -> None:
    """B answers for the zone ``demo``; A asks B (over IPv6)."""
    from femtotcp.services.dns_server import DnsResponder

    def responder() -> DnsResponder:
        r = DnsResponder(b.stack, zone="demo", addr=bytes(16))
        for name, addr in (("both.demo", B4), ("both.demo", B6), ("hole.demo", B4),
                           ("hole.demo", S6), ("far.demo", B4),
                           ("far.demo", "2001:db8:99::1")):
            r.add_address(name, addr)
        return r
    b.call(responder)
    a.call(lambda: a.stack.resolver.set_servers([B6]))


async def _who(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server's answer: the family the client came over, as it sees it."""
    peer = writer.get_extra_info("peername")[0]
    writer.write(b"v4" if peer.startswith("::ffff:") else b"v6")
    await writer.drain()
    writer.close()


def test_start_server_is_dual_stack_on_any6(dual: Dual) -> None:
    async def main() -> list[bytes]:
        server = await aio.start_server(_who, None, 0, network=dual.b)
        sock = server.sockets[0]
        assert sock.family == std.AF_INET6 and sock.getsockname()[0] == "::"
        port = sock.getsockname()[1]
        got = []
        async with server:
            for host in (B4, B6):
                reader, writer = await aio.open_connection(host, port, network=dual.a)
                got.append(await reader.read())
                writer.close()
        return got
    assert asyncio.run(main()) == [b"v4", b"v6"]


def test_open_connection_prefers_ipv6_and_races_past_a_blackhole(dual: Dual) -> None:
    async def main() -> dict[str, object]:
        server = await aio.start_server(_who, None, 0, network=dual.b)
        port = server.sockets[0].getsockname()[1]
        out: dict[str, object] = {}
        async with server:
            for name, delay in (("both.demo", None), ("both.demo", 0.25),
                                ("far.demo", None), ("hole.demo", 0.25)):
                reader, writer = await asyncio.wait_for(aio.open_connection(
                    name, port, network=dual.a, happy_eyeballs_delay=delay), 30)
                out[f"{name} {delay}"] = await reader.read()
                writer.close()
            # Without the race, hole.demo's first address (IPv6, blackholed) is
            # where the connect waits: it has not connected after several delays.
            attempt = asyncio.ensure_future(aio.open_connection("hole.demo", port,
                                                                network=dual.a))
            done, _ = await asyncio.wait([attempt], timeout=1.0)
            out["hole.demo sequential"] = bool(done)
            attempt.cancel()
        return out
    got = asyncio.run(main())
    assert got == {"both.demo None": b"v6", "both.demo 0.25": b"v6",
                   "far.demo None": b"v4", "hole.demo 0.25": b"v4",
                   "hole.demo sequential": False}


def test_stdlib_asyncio_happy_eyeballs_under_patch(dual: Dual) -> None:
    """asyncio's own ``open_connection(host, port, happy_eyeballs_delay=0.25)``,
    its sockets and its getaddrinfo being the stack's (``patch``)."""
    async def main(port: int) -> list[bytes]:
        got = []
        for name in ("hole.demo", "both.demo"):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                name, port, happy_eyeballs_delay=0.25), 30)
            got.append(await reader.read())
            writer.close()
        return got

    async def serve_then_connect() -> list[bytes]:
        server = await aio.start_server(_who, None, 0, network=dual.b)
        async with server:
            with patch(dual.a):
                return await main(server.sockets[0].getsockname()[1])
    assert asyncio.run(serve_then_connect()) == [b"v4", b"v6"]


def test_datagram_endpoint_in_either_family(dual: Dual) -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data + b" from " + addr[0].encode(), addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.got.set_result(data)

    async def main() -> list[bytes]:
        server, _ = await aio.create_datagram_endpoint(Echo, local_addr=("::", 5354),
                                                       network=dual.b)
        out = []
        for host in ("both.demo", B4):
            transport, client = await aio.create_datagram_endpoint(
                Client, remote_addr=(host, 5354), network=dual.a)
            transport.sendto(b"hi")
            out.append(await asyncio.wait_for(client.got, 10))
            transport.close()
        server.close()
        return out
    assert asyncio.run(main()) == [b"hi from " + A6.encode(),
                                   b"hi from ::ffff:" + A4.encode()]
