"""The echo service (RFC 862) over TCP: every byte goes back to its sender.

Echoing is flow-controlled: when the send buffer is full the service stops
reading, so the peer's window closes instead of our memory growing. After the
peer's FIN, the remaining data is echoed and the connection closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from femtotcp.services.tcp_base import ANY, TcpService

if TYPE_CHECKING:
    from femtotcp.proto.tcp import TcpConnection
    from femtotcp.stack.stack import Stack


class TcpEcho(TcpService):
    name = "tcp-echo"

    def __init__(self, stack: Stack, port: int = 7, addr: bytes = ANY) -> None:
        self.pending: dict[TcpConnection, bytes] = {}
        self.echoed = 0
        super().__init__(stack, port, addr)

    def handle(self, conn: TcpConnection) -> None:
        pend = self.pending.pop(conn, b"")
        while True:
            if pend:
                n = conn.send(pend)
                self.echoed += n
                if n < len(pend):
                    self.pending[conn] = pend[n:]
                    return
            data = conn.recv(65536)
            if data is None:
                return
            if data == b"":
                self.finish(conn)
                return
            pend = data

    def finish(self, conn: TcpConnection, abort: bool = False) -> None:
        self.pending.pop(conn, None)
        super().finish(conn, abort)


def start(stack: Stack, port: int = 7, addr: bytes = ANY) -> TcpEcho:
    """Listen on ``port`` and echo; the returned object's ``close()`` stops it."""
    return TcpEcho(stack, port, addr)


start_tcp_echo = start
