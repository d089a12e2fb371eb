"""ICMPv4 (RFC 792, RFC 1122 3.2.2): echo, and errors in both directions.

Errors we send are rate limited by the rule ICMPv6's follow too
(``proto/ratelimit.ErrorRateLimit``: a global and a per-destination token
bucket, like Linux) and never sent about a broadcast or multicast datagram, a
non-first fragment, another ICMP error, or a datagram whose source is not a
unicast host. Errors we receive are matched to the transport that sent the
offending datagram and reach its socket as an errno.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from femtotcp.proto.echo import EchoTable
from femtotcp.proto.ratelimit import ErrorRateLimit
from femtotcp.stack.ipv4 import PMTUDISC_WANT
from femtotcp.wire import icmp4 as wire
from femtotcp.wire import ipv4 as wire_ipv4
from femtotcp.wire.checksum import ones_sum

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

# Destination-unreachable code -> errno (as Linux's icmp_err_convert).
UNREACH_ERRNO = {
    0: errno.ENETUNREACH, 1: errno.EHOSTUNREACH, 2: errno.ENOPROTOOPT,
    3: errno.ECONNREFUSED, 4: errno.EMSGSIZE, 5: errno.EOPNOTSUPP,
    6: errno.ENETUNREACH, 7: errno.EHOSTDOWN, 8: errno.ENONET, 9: errno.ENETUNREACH,
    10: errno.EHOSTUNREACH, 11: errno.ENETUNREACH, 12: errno.EHOSTUNREACH,
    13: errno.EHOSTUNREACH, 14: errno.EHOSTUNREACH, 15: errno.EHOSTUNREACH,
}
ERROR_PAYLOAD_MAX = 576 - 20 - 8   # RFC 1812 4.3.2.3: as much as fits in 576 bytes
TIMESTAMP_REQUEST = 13             # RFC 792 timestamp / timestamp reply
TIMESTAMP_REPLY = 14

class Icmp4(EchoTable):
    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack
        # One limit for both families' errors (Linux's icmp_global_allow is one
        # bucket for ICMP and ICMPv6): whichever module comes second shares it.
        self.limit: ErrorRateLimit = stack.icmp6.limit if stack.icmp6 is not None \
            else ErrorRateLimit(stack)
        full = stack.ip_protocols[wire_ipv4.PROTO_ICMP] = self.input
        if stack.ipv4 is not None:
            stack.ipv4.add_fast_protocol(wire_ipv4.PROTO_ICMP, self.fast_input4, full)

    # -- ping (proto/echo.py) --------------------------------------------------------
    def send_echo(self, ident: int, dst: bytes, seq: int, payload: bytes,
                  ttl: int | None, src: bytes | None = None) -> int:
        msg = wire.build_echo(wire.ECHO_REQUEST, ident, seq, payload)
        stack = self.stack
        df = False
        if stack.ipv4 is not None:
            # A ping socket's IP_MTU_DISCOVER is Linux's default, WANT: DF
            # when the request fits the path MTU.
            df = stack.ipv4.datagram_df(dst, len(msg) + 20, PMTUDISC_WANT)[1]
        return stack.ip_output(dst, wire_ipv4.PROTO_ICMP, msg, src=src, ttl=ttl, df=df)

    # -- input ---------------------------------------------------------------------
    def fast_input4(self, src: bytes, dst: bytes, data: memoryview, iface: Interface,
                    tos: int, csum_ok: bool) -> int:
        """The IPv4 fast path's ICMP handler (``Ipv4.fast_input``: a unicast
        datagram to us from a plain unicast source): an echo request with a
        good checksum is answered here without header objects; anything else
        returns 0 for the full path (``input``). The reply is the request with
        type 0, its checksum updated for that one change (RFC 1624): the
        request's words sum to zero, so the reply's without the checksum sum to
        ``-(HC + 0x0800)``, modulo 0xFFFF, exactly what ``wire.build`` would
        put there."""
        n = len(data)
        if n < 8 or data[0] != wire.ECHO_REQUEST:
            return 0
        # ``ones_sum(data) == 0xFFFF`` inline for a ping's size (one call fewer
        # on the way to the answer): a non-zero multiple of 0xFFFF.
        if n > 180:
            if ones_sum(data) != 0xFFFF:
                return 0
        else:
            v = int.from_bytes(data, "big") << 8 if n & 1 else int.from_bytes(data, "big")
            if not v or v % 0xFFFF:
                return 0
        counters = self.stack.counters
        counters["icmp4.rx"] += 1
        code = data[1]
        r = (0x1FFFE - 0x0800 - (data[2] << 8 | data[3])) % 0xFFFF
        # r == 0: a non-zero multiple of 0xFFFF (checksum 0), or all zeros (0xFFFF).
        csum = 0xFFFF - r if r else (0 if code or any(data[4:]) else 0xFFFF)
        self.stack.ip_output(src, wire_ipv4.PROTO_ICMP,
                             b"".join((bytes((wire.ECHO_REPLY, code, csum >> 8, csum & 0xFF)),
                                       data[4:])), src=dst, tos=tos)
        counters["icmp4.echo_replied"] += 1
        return 1

    def input(self, header: wire_ipv4.Ipv4Header, data: memoryview, iface: Interface,
              packet: memoryview, csum_ok: bool = False) -> None:
        # ``csum_ok`` vouches for TCP/UDP checksums only: ICMP's is always checked.
        stack = self.stack
        counters = stack.counters
        icmp, body = wire.parse(data)
        counters["icmp4.rx"] += 1
        t = icmp.type
        if t == wire.ECHO_REQUEST:
            if not stack.is_local(header.dst):
                # Smurf: never answer an echo to a broadcast or multicast address.
                counters["icmp4.echo_to_group_ignored"] += 1
                return
            # The code is copied from the request, as Linux does (RFC 792 has it 0).
            options = self._echoed(header)
            if options is None:
                return
            self._reply(header, wire.build(wire.ECHO_REPLY, icmp.code, icmp.rest, body),
                        header.tos, options)
            counters["icmp4.echo_replied"] += 1
        elif t == TIMESTAMP_REQUEST:
            self._timestamp(header, icmp, body)
        elif t == wire.ECHO_REPLY:
            ep = self.echo.get(icmp.ident)
            if ep is None:
                counters["icmp4.echo_reply_unmatched"] += 1
                return
            ep.deliver((header.src, icmp.seq, bytes(body), header.ttl))
        elif t in (wire.DEST_UNREACHABLE, wire.TIME_EXCEEDED, wire.PARAMETER_PROBLEM):
            self._error_input(icmp, body)
        elif t in (wire.SOURCE_QUENCH, wire.REDIRECT):
            counters["icmp4.ignored_type"] += 1   # RFC 6633; redirects are a spoofing vector
        else:
            counters["icmp4.unsupported_type"] += 1

    def _timestamp(self, header: wire_ipv4.Ipv4Header, icmp: wire.IcmpHeader,
                   body: memoryview) -> None:
        """RFC 792 / RFC 1122 3.2.2.8: answer a timestamp request as Linux does.

        The reply copies the originate timestamp and fills receive and transmit
        with milliseconds since midnight UT; never to a broadcast (as echo)."""
        counters = self.stack.counters
        if not self.stack.is_local(header.dst):
            counters["icmp4.timestamp_to_group_ignored"] += 1
            return
        if len(body) < 4:
            counters["icmp4.timestamp_truncated"] += 1
            return
        options = self._echoed(header)
        if options is None:
            return
        stamp = self._now_ms().to_bytes(4, "big")
        self._reply(header, wire.build(TIMESTAMP_REPLY, 0, icmp.rest,
                                       bytes(body[:4]) + stamp + stamp), header.tos, options)
        counters["icmp4.timestamp_replied"] += 1

    def _now_ms(self) -> int:
        """RFC 791's timestamp: milliseconds since midnight UT."""
        return int(self.stack.wall_clock() * 1000) % 86_400_000

    def _echoed(self, header: wire_ipv4.Ipv4Header) -> bytes | None:
        """The options of our answer to the datagram ``header`` came with: its
        record route and timestamp options, with this host recorded on the
        way in and out (RFC 1122 3.2.2.6; Linux's icmp_reply and icmp_send
        echo them alike); None, counted, when they cannot come back
        (``reply_options``: Linux then sends nothing)."""
        if not header.options:
            return b""
        options = wire_ipv4.reply_options(header.options, header.dst, self._now_ms(),
                                          self.stack.is_local)
        if options is None:
            self.stack.counters["icmp4.options_not_echoable"] += 1
        return options

    def _reply(self, header: wire_ipv4.Ipv4Header, msg: bytes, tos: int,
               options: bytes) -> None:
        """Send ``msg`` back to the sender of the datagram ``header`` came
        with, from the address it was sent to, with ``options`` (``_echoed``)."""
        stack = self.stack
        if not options:
            stack.ip_output(header.src, wire_ipv4.PROTO_ICMP, msg, src=header.dst, tos=tos)
            return
        assert stack.ipv4 is not None           # (an IPv4 header came in through it)
        stack.ipv4.output(header.src, wire_ipv4.PROTO_ICMP, msg, src=header.dst, tos=tos,
                          options=options)

    def _error_input(self, icmp: wire.IcmpHeader, body: memoryview) -> None:
        counters = self.stack.counters
        if len(body) < 28:
            counters["icmp4.error_truncated"] += 1
            return
        ihl = (body[0] & 0x0F) * 4
        if body[0] >> 4 != 4 or ihl < 20 or len(body) < ihl + 8:
            counters["icmp4.error_bad_inner"] += 1
            return
        src = bytes(body[12:16])
        dst = bytes(body[16:20])
        if not self.stack.is_local(src):
            counters["icmp4.error_not_ours"] += 1
            return
        if (body[6] << 8 | body[7]) & wire_ipv4.OFFSET_MASK:
            # A later fragment's data is not a transport header: no ports to match.
            counters["icmp4.error_about_fragment"] += 1
            return
        proto = body[9]
        if icmp.type == wire.DEST_UNREACHABLE:
            err = UNREACH_ERRNO.get(icmp.code, errno.EHOSTUNREACH)
        elif icmp.type == wire.TIME_EXCEEDED:
            err = errno.EHOSTUNREACH
        else:
            err = errno.EPROTO
        mtu = icmp.rest & 0xFFFF if icmp.type == wire.DEST_UNREACHABLE and icmp.code == 4 else 0
        handler = self.stack.ip_error_handlers.get(proto)
        counters["icmp4.error_received"] += 1
        if handler is not None:
            handler(src, dst, body[ihl:], err, icmp.type, icmp.code, mtu)

    # -- errors we send ----------------------------------------------------------------
    def send_error(self, header: wire_ipv4.Ipv4Header, packet: memoryview, type_: int,
                   code: int, rest: int = 0) -> bool:
        """Send an ICMP error about ``packet`` (the raw datagram) if the rules allow."""
        stack = self.stack
        counters = stack.counters
        src = header.src
        # Datagrams from the wire with a loopback or own source never get here
        # (ipv4 input drops them), so a local source means loopback traffic.
        if src == b"\0\0\0\0" or src[0] >= 224 or stack.is_broadcast(src):
            counters["icmp4.error_suppressed_source"] += 1
            return False
        if not stack.is_local(header.dst):
            counters["icmp4.error_suppressed_group"] += 1
            return False
        if header.flags_frag & wire_ipv4.OFFSET_MASK:
            counters["icmp4.error_suppressed_fragment"] += 1
            return False
        if header.proto == wire_ipv4.PROTO_ICMP:
            inner = packet[header.header_len:]
            if not inner or inner[0] not in (wire.ECHO_REQUEST, wire.ECHO_REPLY):
                counters["icmp4.error_suppressed_icmp"] += 1
                return False
        if not self.limit.allow(src):
            counters["icmp4.error_rate_limited"] += 1
            return False
        options = self._echoed(header)
        if options is None:
            return False
        # The error fits in 576 octets with its options (Linux's icmp_send).
        msg = wire.build(type_, code, rest, packet[:ERROR_PAYLOAD_MAX - len(options)])
        self._reply(header, msg, (header.tos & 0x1E) | 0xC0, options)
        counters[f"icmp4.tx_error_{type_}_{code}"] += 1
        return True


def install(stack: Stack) -> Icmp4:
    icmp = Icmp4(stack)
    stack.icmp = icmp
    return icmp
