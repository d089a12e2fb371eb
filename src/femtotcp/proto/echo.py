"""Ping endpoints, shared by ICMPv4 and ICMPv6: an identifier, a bounded queue
of replies, and the table of endpoints by identifier (``EchoTable``). Each
family's module builds and sends the request itself (``send_echo``)."""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from femtotcp.core import rand

if TYPE_CHECKING:
    from femtotcp.stack.stack import Stack

EchoReply = tuple[bytes, int, bytes, int]   # (source, seq, payload, ttl or hop limit)


class EchoEndpoint:
    """A ping socket: echo requests out with our identifier, replies queued."""

    def __init__(self, table: EchoTable, ident: int, queue_max: int = 256) -> None:
        self.icmp = table
        self.ident = ident
        self.queue: deque[EchoReply] = deque()
        self.queue_max = queue_max
        self.on_readable: Callable[[], None] | None = None
        self.closed = False

    def send(self, dst: bytes, seq: int, payload: bytes = b"", ttl: int | None = None,
             src: bytes | None = None) -> int:
        """An echo request to ``dst``, from ``src`` (None: the route's choice)."""
        if self.closed:
            return errno.EBADF
        return self.icmp.send_echo(self.ident, dst, seq & 0xFFFF, payload, ttl, src)

    def deliver(self, reply: EchoReply) -> None:
        if len(self.queue) >= self.queue_max:
            self.icmp.stack.counters[self.icmp.echo_full_counter] += 1
            return
        self.queue.append(reply)
        if self.on_readable is not None:
            self.on_readable()

    def recv(self) -> EchoReply | None:
        return self.queue.popleft() if self.queue else None

    def close(self) -> None:
        self.closed = True
        if self.icmp.echo.get(self.ident) is self:
            del self.icmp.echo[self.ident]


class EchoTable:
    """The endpoints of one ICMP module by identifier."""

    stack: Stack
    #: The counter of a reply dropped on a full endpoint queue.
    echo_full_counter = "icmp4.echo_queue_full"
    family = "ICMP"

    def __init__(self) -> None:
        self.echo: dict[int, EchoEndpoint] = {}

    def send_echo(self, ident: int, dst: bytes, seq: int, payload: bytes,
                  ttl: int | None, src: bytes | None = None) -> int:
        raise NotImplementedError

    def open_echo(self, ident: int | None = None) -> EchoEndpoint:
        """An echo endpoint with a free identifier (random unless given)."""
        if ident is None:
            for _ in range(64):
                ident = 1 + rand.randbelow(0xFFFF)
                if ident not in self.echo:
                    break
            else:
                raise OSError(errno.EAGAIN, f"no free {self.family} echo identifier")
        elif ident in self.echo:
            raise OSError(errno.EADDRINUSE, f"{self.family} echo identifier {ident} in use")
        ep = EchoEndpoint(self, ident)
        self.echo[ident] = ep
        return ep

    def ping(self, dst: bytes, on_reply: Callable[[EchoReply], None], seq: int = 1,
             payload: bytes = b"femtotcp ping") -> EchoEndpoint:
        """Send one echo request; ``on_reply`` gets each reply. Close the endpoint when done."""
        ep = self.open_echo()

        def readable() -> None:
            while (r := ep.recv()) is not None:
                on_reply(r)

        ep.on_readable = readable
        ep.send(dst, seq, payload)
        return ep
