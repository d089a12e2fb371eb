"""ICMPv6 (RFC 4443): echo, and errors in both directions.

Neighbour discovery and MLD are the ipv6 module's (``stack/ipv6.py``); this
module answers echo requests (to a group too, as Linux with
``echo_ignore_multicast=0``), delivers echo replies to ping endpoints, lowers
the path MTU on Packet Too Big (RFC 8201, never below 1280) and sends errors
by RFC 4443 2.4's rules (never about an ICMPv6 error or a Redirect, never to
a source that names no single node, never about a packet to a group except
Packet Too Big and Parameter Problem code 2), rate limited with the same two
token buckets and the same settings as ICMPv4 (``icmp_rate``/``icmp_burst``
and per destination ``icmp_rate_per_dest``/``icmp_burst_per_dest``).
"""

from __future__ import annotations

import errno
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from femtotcp.proto.ratelimit import PerKeyBuckets, TokenBucket
from femtotcp.wire import Malformed
from femtotcp.wire import icmp6 as wire
from femtotcp.wire import ipv6 as wire_ipv6

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

EchoReply = tuple[bytes, int, bytes, int]   # (source, seq, payload, hop limit)


class EchoEndpoint6:
    """A ping endpoint: echo requests out with our identifier, replies queued
    (the shape of ICMPv4's ``EchoEndpoint``)."""

    def __init__(self, icmp: Icmp6, ident: int, queue_max: int = 256) -> None:
        self.icmp = icmp
        self.ident = ident
        self.queue: deque[EchoReply] = deque()
        self.queue_max = queue_max
        self.on_readable: Callable[[], None] | None = None
        self.closed = False

    def send(self, dst: bytes, seq: int, payload: bytes = b"", ttl: int | None = None) -> int:
        if self.closed:
            return errno.EBADF
        stack = self.icmp.stack
        ipv6 = stack.ipv6
        if ipv6 is None:
            return errno.ENETUNREACH
        route = ipv6.routes.lookup(dst)
        iface = route.iface if route is not None else next(
            (i for i in stack.interfaces if i.ipv6), None)
        src = ipv6.source_for(iface, dst) if iface is not None else None
        if src is None:
            return errno.EADDRNOTAVAIL
        msg = wire.build_echo(src, dst, wire.ECHO_REQUEST, self.ident, seq & 0xFFFF, payload)
        return stack.ip_output(dst, wire.PROTO, msg, src=src, ttl=ttl)

    def deliver(self, reply: EchoReply) -> None:
        if len(self.queue) >= self.queue_max:
            self.icmp.stack.counters["icmp6.echo_queue_full"] += 1
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


class Icmp6:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        cfg = stack.config
        self.bucket = TokenBucket(cfg.icmp_rate, cfg.icmp_burst, stack.now)
        self.per_dest = PerKeyBuckets(cfg.icmp_rate_per_dest, cfg.icmp_burst_per_dest)
        self.echo: dict[int, EchoEndpoint6] = {}

    # -- ping ----------------------------------------------------------------------
    def open_echo(self, ident: int | None = None) -> EchoEndpoint6:
        if ident is None:
            for _ in range(64):
                ident = 1 + secrets.randbelow(0xFFFF)
                if ident not in self.echo:
                    break
            else:
                raise OSError(errno.EAGAIN, "no free ICMPv6 echo identifier")
        elif ident in self.echo:
            raise OSError(errno.EADDRINUSE, f"ICMPv6 echo identifier {ident} in use")
        ep = EchoEndpoint6(self, ident)
        self.echo[ident] = ep
        return ep

    def ping(self, dst: bytes, on_reply: Callable[[EchoReply], None], seq: int = 1,
             payload: bytes = b"femtotcp ping") -> EchoEndpoint6:
        """Send one echo request; ``on_reply`` gets each reply. Close the endpoint when done."""
        ep = self.open_echo()

        def readable() -> None:
            while (r := ep.recv()) is not None:
                on_reply(r)

        ep.on_readable = readable
        ep.send(dst, seq, payload)
        return ep

    # -- input ---------------------------------------------------------------------
    def input(self, header: wire_ipv6.Ipv6Header, icmp: wire.Icmp6Header, body: memoryview,
              iface: Interface, packet: memoryview) -> None:
        """One ICMPv6 message the ipv6 module parsed (checksum verified)."""
        stack = self.stack
        counters = stack.counters
        t = icmp.type
        if t == wire.ECHO_REQUEST:
            dst = header.dst
            src = dst
            if dst[0] == 0xFF:
                ipv6 = stack.ipv6
                found = ipv6.source_for(iface, header.src) if ipv6 is not None else None
                if found is None:
                    counters["icmp6.echo_no_source"] += 1
                    return
                src = found
            reply = wire.build(src, header.src, wire.ECHO_REPLY, 0, icmp.rest, body)
            stack.ip_output(header.src, wire.PROTO, reply, src=src, tos=header.traffic_class)
            counters["icmp6.echo_replied"] += 1
        elif t == wire.ECHO_REPLY:
            ep = self.echo.get(icmp.ident)
            if ep is None:
                counters["icmp6.echo_reply_unmatched"] += 1
                return
            ep.deliver((header.src, icmp.seq, bytes(body), header.hop_limit))
        elif t < 128:
            self._error_input(icmp, body)
        else:
            counters["icmp6.unsupported_type"] += 1

    def _error_input(self, icmp: wire.Icmp6Header, body: memoryview) -> None:
        counters = self.stack.counters
        try:
            quote = wire.parse_quote(body)
        except Malformed as exc:
            counters.drop(exc.reason)
            return
        if quote.src not in self.stack.local_addresses:
            counters["icmp6.error_not_ours"] += 1
            return
        counters["icmp6.error_received"] += 1
        if icmp.type == wire.PACKET_TOO_BIG:
            ipv6 = self.stack.ipv6
            if ipv6 is not None:
                ipv6.lower_pmtu(quote.dst, icmp.mtu)
        # Transports over IPv6 (TCP, UDP) come with their own issue; until then an
        # error reaches only the path MTU and the counters.

    # -- errors we send ----------------------------------------------------------------
    def send_error(self, header: wire_ipv6.Ipv6Header, packet: memoryview, type_: int,
                   code: int, rest: int = 0, link_multicast: bool = False) -> bool:
        """Send an ICMPv6 error about ``packet`` (the invoking packet from its
        fixed header on) if RFC 4443 2.4 and the rate limit allow."""
        stack = self.stack
        counters = stack.counters
        src = header.src
        if not wire.error_allowed(type_, code, src, header.dst, link_multicast):
            counters["icmp6.error_suppressed"] += 1
            return False
        if wire.no_error_about(header.next_header, packet[wire_ipv6.HEADER_LEN:]):
            counters["icmp6.error_suppressed_icmp"] += 1
            return False
        now = stack.now
        local = src in stack.local_addresses
        if not local and (not self.per_dest.take(src, now) or not self.bucket.take(now)):
            counters["icmp6.error_rate_limited"] += 1
            return False
        ours = header.dst if header.dst in stack.local_addresses else None
        if ours is None:
            ipv6 = stack.ipv6
            iface = ipv6.iface_of(src) if ipv6 is not None else None
            route = ipv6.routes.lookup(src) if ipv6 is not None else None
            if route is not None:
                iface = route.iface
            elif iface is None and stack.interfaces:
                iface = stack.interfaces[0]
            ours = ipv6.source_for(iface, src) if ipv6 is not None and iface else None
        if ours is None:
            counters["icmp6.error_no_source"] += 1
            return False
        msg = wire.build_error(ours, src, type_, code, packet, rest)
        stack.ip_output(src, wire.PROTO, msg, src=ours)
        counters[f"icmp6.tx_error_{type_}_{code}"] += 1
        return True


def install(stack: Stack) -> Icmp6:
    icmp = Icmp6(stack)
    stack.icmp6 = icmp
    return icmp
