"""The discard service (RFC 863) over TCP: read everything, count it, answer nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from femtotcp.services.tcp_base import ANY, TcpService

if TYPE_CHECKING:
    from femtotcp.proto.tcp import TcpConnection
    from femtotcp.stack.stack import Stack


class Discard(TcpService):
    name = "discard"

    def __init__(self, stack: Stack, port: int = 9, addr: bytes = ANY) -> None:
        self.bytes_received = 0
        super().__init__(stack, port, addr)

    def handle(self, conn: TcpConnection) -> None:
        while True:
            data = conn.recv(1 << 20)
            if data is None:
                return
            if data == b"":
                self.finish(conn)
                return
            self.bytes_received += len(data)


def start(stack: Stack, port: int = 9, addr: bytes = ANY) -> Discard:
    """Listen on ``port`` and discard; ``bytes_received`` counts what came in."""
    return Discard(stack, port, addr)


start_discard = start
