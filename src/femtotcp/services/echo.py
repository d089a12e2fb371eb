"""The echo service (RFC 862) over UDP: every datagram goes back to its sender."""

from __future__ import annotations

from typing import TYPE_CHECKING

from femtotcp.stack.stack import need

if TYPE_CHECKING:
    from femtotcp.proto.udp import UdpEndpoint
    from femtotcp.stack.stack import Stack

ANY = b"\x00\x00\x00\x00"
#: Source ports of services that answer any datagram (echo, daytime, qotd, chargen,
#: time) and port 0: answering them lets one spoofed datagram bounce between two
#: such services forever (the echo/chargen loop, CVE-1999-0103).
LOOP_PORTS = frozenset({0, 7, 13, 17, 19, 37})


class UdpEcho:
    def __init__(self, stack: Stack, port: int = 7, addr: bytes = ANY) -> None:
        self.stack = stack
        self.endpoint: UdpEndpoint = need(stack.udp, "udp").open(addr, port)
        self.endpoint.on_readable = self._readable
        self.echoed = 0

    def _readable(self) -> None:
        ep = self.endpoint
        while (item := ep.recv_full()) is not None:
            data, (src, sport), dst = item
            # Answer from the address the datagram was sent to; not to broadcasts.
            if not self.stack.is_local(dst):
                self.stack.counters["echo.group_ignored"] += 1
                continue
            if sport in LOOP_PORTS:
                self.stack.counters["echo.loop_refused"] += 1
                continue
            ep.sendto(data, src, sport, src=dst)
            self.echoed += 1

    def close(self) -> None:
        self.endpoint.close()


def start_udp_echo(stack: Stack, port: int = 7, addr: bytes = ANY) -> UdpEcho:
    return UdpEcho(stack, port, addr)
