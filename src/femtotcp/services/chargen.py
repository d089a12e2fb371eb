"""The character generator (RFC 864) over TCP: on connect, send the rotating
72-character lines of printable ASCII as fast as the peer takes them, until
the peer closes. Anything received is discarded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from femtotcp.services.tcp_base import ANY, TcpService

if TYPE_CHECKING:
    from femtotcp.proto.tcp import TcpConnection
    from femtotcp.stack.stack import Stack

PRINTABLE = bytes(range(0x20, 0x7F))    # the 95 printable ASCII characters
LINE = 72


def pattern() -> bytes:
    """One full cycle: 95 lines, line i starting at character i (RFC 864)."""
    doubled = PRINTABLE * 2
    return b"".join(doubled[i:i + LINE] + b"\r\n" for i in range(len(PRINTABLE)))


CYCLE = pattern()
CHUNK = 64 * 1024
_SOURCE = CYCLE * (CHUNK // len(CYCLE) + 2)


class Chargen(TcpService):
    name = "chargen"

    def __init__(self, stack: Stack, port: int = 19, addr: bytes = ANY) -> None:
        self.offset: dict[TcpConnection, int] = {}
        self.bytes_sent = 0
        super().__init__(stack, port, addr)

    def handle(self, conn: TcpConnection) -> None:
        while True:
            data = conn.recv(1 << 20)
            if data is None:
                break
            if data == b"":
                self.finish(conn)
                return
        pos = self.offset.get(conn, 0)
        view = memoryview(_SOURCE)
        while True:
            n = conn.send(view[pos:pos + CHUNK])
            if n == 0:
                break
            self.bytes_sent += n
            pos = (pos + n) % len(CYCLE)
        self.offset[conn] = pos

    def finish(self, conn: TcpConnection, abort: bool = False) -> None:
        self.offset.pop(conn, None)
        super().finish(conn, abort)


def start(stack: Stack, port: int = 19, addr: bytes = ANY) -> Chargen:
    """Listen on ``port`` and stream the pattern to whoever connects."""
    return Chargen(stack, port, addr)


start_chargen = start
