"""A small base for TCP services on the core API: listen, accept everything,
and drive each connection from its ``on_event`` callback (loop thread)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from femtotcp.stack.stack import need

if TYPE_CHECKING:
    from femtotcp.proto.tcp import TcpConnection
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.services")

ANY = b"\x00\x00\x00\x00"


class TcpService(ABC):
    """Subclasses implement ``handle(conn)``, called whenever the connection
    may have changed; ``finish(conn)`` forgets it."""

    name = "tcp-service"

    def __init__(self, stack: Stack, port: int, addr: bytes = ANY, backlog: int = 128) -> None:
        self.stack = stack
        self.listener = need(stack.tcp, "tcp").listen(addr, port, backlog)
        self.listener.on_event = self._accept
        self.port = self.listener.local[1]
        self.connections: set[TcpConnection] = set()
        self.accepted = 0
        self.closed = False

    def _accept(self) -> None:
        while (conn := self.listener.accept()) is not None:
            self.accepted += 1
            self.connections.add(conn)
            conn.on_event = lambda c=conn: self._event(c)
            self._event(conn)

    def _event(self, conn: TcpConnection) -> None:
        if conn not in self.connections:
            return
        try:
            self.handle(conn)
        except OSError as exc:
            # The peer reset or timed out: nothing more to do for it.
            log.debug("%s: connection ended: %s", self.name, exc)
            self.finish(conn, abort=True)

    @abstractmethod
    def handle(self, conn: TcpConnection) -> None:
        """React to whatever changed on ``conn`` (read, write, EOF)."""

    def finish(self, conn: TcpConnection, abort: bool = False) -> None:
        self.connections.discard(conn)
        conn.on_event = None
        if abort:
            conn.abort()
        else:
            conn.close()

    def close(self) -> None:
        """Stop listening and close every connection (FIN)."""
        if self.closed:
            return
        self.closed = True
        self.listener.close()
        for conn in list(self.connections):
            self.finish(conn)
