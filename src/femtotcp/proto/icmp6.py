"""ICMPv6 (RFC 4443): echo, and errors in both directions.

Neighbour discovery and MLD are the ipv6 module's (``stack/ipv6.py``); this
module answers echo requests (to a group too, as Linux with
``echo_ignore_multicast=0``), delivers echo replies to ping endpoints, lowers
the path MTU on Packet Too Big (RFC 8201, never below 1280) and sends errors
by RFC 4443 2.4's rules (never about an ICMPv6 error or a Redirect, never to
a source that names no single node, never about a packet to a group except
Packet Too Big and Parameter Problem code 2), rate limited by the rule ICMPv4's
errors follow too (``proto/ratelimit.ErrorRateLimit``: ``icmp_rate``/``icmp_burst``
and per destination ``icmp_rate_per_dest``/``icmp_burst_per_dest``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from femtotcp.proto.echo import EchoTable
from femtotcp.proto.ratelimit import ErrorRateLimit
from femtotcp.wire import Malformed
from femtotcp.wire import icmp6 as wire
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire.checksum import ones_sum

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

class Icmp6(EchoTable):
    echo_full_counter = "icmp6.echo_queue_full"
    family = "ICMPv6"

    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack
        # One limit for both families' errors (Linux's icmp_global_allow is one
        # bucket for ICMP and ICMPv6): whichever module comes second shares it.
        self.limit: ErrorRateLimit = stack.icmp.limit if stack.icmp is not None \
            else ErrorRateLimit(stack)
        ipv6 = stack.ipv6
        if ipv6 is not None:
            ipv6.add_fast_protocol(wire.PROTO, self.fast_input6, ipv6.protocols[wire.PROTO])

    def fast_input6(self, src: bytes, dst: bytes, data: memoryview, iface: Interface,
                    tclass: int, csum_ok: bool) -> int:
        """The IPv6 fast path's ICMPv6 handler (``Ipv6.fast_input``: a packet
        to one of our unicast addresses from a plain unicast source): an echo
        request with a good checksum is answered here as ``input`` answers it
        (from the address it was sent to, its traffic class, code 0, through
        ``Stack.ip_output``: the same hop limit and flow label); anything else
        returns 0 for the full path. The reply is the request with type 129
        and code 0, its checksum updated for that one word (RFC 1624): the
        pseudo-header is the same with the addresses swapped, and the request's
        words sum to zero, so the reply's without the checksum sum to
        ``0x100 - code - HC`` modulo 0xFFFF; never zero in full (the
        pseudo-header's next header is 58), so the checksum ``wire.build``
        puts there is 0 exactly when that is."""
        n = len(data)
        if n < 8 or data[0] != wire.ECHO_REQUEST \
                or ones_sum(data, wire_ipv6.pseudo_sum(src, dst, wire.PROTO, n)) != 0xFFFF:
            return 0
        counters = self.stack.counters
        counters["icmp6.rx"] += 1
        r = (0x100 - data[1] - (data[2] << 8 | data[3])) % 0xFFFF
        csum = 0xFFFF - r if r else 0
        if not self.stack.ip_output(src, wire.PROTO,
                                    b"".join((bytes((wire.ECHO_REPLY, 0, csum >> 8,
                                                     csum & 0xFF)), data[4:])),
                                    src=dst, tos=tclass):
            counters["icmp6.echo_replied"] += 1   # a refusal is counted by the output
        return 1

    # -- ping (proto/echo.py) --------------------------------------------------------
    def send_echo(self, ident: int, dst: bytes, seq: int, payload: bytes,
                  ttl: int | None, src: bytes | None = None) -> int:
        """An echo request from ``src``, else from the source the route to
        ``dst`` would use (the checksum covers it)."""
        stack = self.stack
        ipv6 = stack.ipv6
        if ipv6 is None:
            return errno.ENETUNREACH
        if src is None:
            route = ipv6.routes.lookup(dst)
            iface = route.iface if route is not None else next(
                (i for i in stack.interfaces if i.ipv6), None)
            src = ipv6.source_for(iface, dst) if iface is not None else None
        if src is None:
            return errno.EADDRNOTAVAIL
        msg = wire.build_echo(src, dst, wire.ECHO_REQUEST, ident, seq, payload)
        return stack.ip_output(dst, wire.PROTO, msg, src=src, ttl=ttl)

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
            if not stack.ip_output(header.src, wire.PROTO, reply, src=src,
                                   tos=header.traffic_class):
                counters["icmp6.echo_replied"] += 1   # a refusal is counted by the output
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
        ipv6 = self.stack.ipv6
        if ipv6 is None:
            return
        too_big = icmp.type == wire.PACKET_TOO_BIG
        # What the path allows after this message (never below 1280, RFC 8201 4).
        mtu = min(ipv6.route_mtu(quote.dst), max(wire_ipv6.MIN_MTU, icmp.mtu)) if too_big else 0
        handler = ipv6.error_handlers.get(quote.upper)
        if handler is None:
            counters["icmp6.error_no_transport"] += 1   # a later fragment, or no taker
            if too_big:
                ipv6.lower_pmtu(quote.dst, icmp.mtu)    # an echo of ours (Linux's icmpv6_err)
            return
        err, _ = wire.err_convert(icmp.type, icmp.code)
        taken = handler(quote.src, quote.dst, quote.transport, err, icmp.type, icmp.code, mtu)
        if too_big:
            if taken is False:
                # RFC 8201 5.2 / RFC 5927 4.1: the transport owns no such packet
                # (TCP: no connection, or a sequence number outside the window):
                # the path MTU stays, as Linux's tcp_v6_err leaves it. Otherwise a
                # forged message would shrink it under live connections.
                counters["icmp6.too_big_not_ours"] += 1
                return
            ipv6.lower_pmtu(quote.dst, icmp.mtu)

    # -- errors we send ----------------------------------------------------------------
    def send_error(self, header: wire_ipv6.Ipv6Header, packet: memoryview, type_: int,
                   code: int, rest: int = 0, link_multicast: bool = False) -> bool:
        """Send an ICMPv6 error about ``packet`` (the invoking packet from its
        fixed header on) if RFC 4443 2.4 and the rate limit allow."""
        stack = self.stack
        counters = stack.counters
        src = header.src
        ipv6 = stack.ipv6
        # RFC 4443 2.4 (e.3, e.4): the packet being delivered came in a
        # link-layer group frame (a transport's error, e.g. port unreachable).
        link_multicast = link_multicast or (ipv6 is not None and ipv6.rx_link_multicast)
        if not wire.error_allowed(type_, code, src, header.dst, link_multicast):
            counters["icmp6.error_suppressed"] += 1
            return False
        if wire.no_error_about(header.next_header, packet[wire_ipv6.HEADER_LEN:]):
            counters["icmp6.error_suppressed_icmp"] += 1
            return False
        if not self.limit.allow(src):
            counters["icmp6.error_rate_limited"] += 1
            return False
        # From the address the packet was sent to when it is ours (not a
        # group), else the source the way back would use (RFC 4443 2.2).
        ours = header.dst if header.dst in stack.local_addresses else (
            ipv6.source_address(src) if ipv6 is not None else None)
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
