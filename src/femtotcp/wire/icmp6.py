"""ICMPv6 messages (RFC 4443). The checksum covers the pseudo-header (RFC 8200
8.1) and the bytes actually received; there is no "no checksum" value."""

from __future__ import annotations

import errno
import struct
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import checksum, ones_sum
from femtotcp.wire.ipv6 import HEADER_LEN as IPV6_HEADER_LEN
from femtotcp.wire.ipv6 import MIN_MTU, PROTO_ICMP6, UNSPECIFIED, pseudo_sum
from femtotcp.wire.ipv6 import parse_quote as parse_ipv6_quote
from femtotcp.wire.ipv6ext import skip_chain

PROTO = PROTO_ICMP6

# Error messages (RFC 4443 3): types below 128.
DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
# Informational messages (RFC 4443 4) and the ones carried in ICMPv6.
ECHO_REQUEST = 128
ECHO_REPLY = 129
MLD_QUERY = 130            # RFC 2710 / RFC 3810
MLD_REPORT = 131           # MLDv1 (RFC 2710)
MLD_DONE = 132
ROUTER_SOLICITATION = 133  # RFC 4861
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
REDIRECT = 137
MLDV2_REPORT = 143         # RFC 3810

# Destination Unreachable codes (RFC 4443 3.1).
NO_ROUTE = 0
ADMIN_PROHIBITED = 1
BEYOND_SCOPE = 2
ADDRESS_UNREACHABLE = 3
PORT_UNREACHABLE = 4
SOURCE_POLICY_FAILED = 5
REJECT_ROUTE = 6
# Time Exceeded codes (RFC 4443 3.3).
HOP_LIMIT_EXCEEDED = 0
REASSEMBLY_TIME_EXCEEDED = 1
# Parameter Problem codes (RFC 4443 3.4, RFC 7112).
ERRONEOUS_HEADER_FIELD = 0
UNRECOGNIZED_NEXT_HEADER = 1
UNRECOGNIZED_OPTION = 2
INCOMPLETE_CHAIN = 3

_HDR = struct.Struct("!BBHI")
HEADER_LEN = 8
#: The most of an invoking packet an error can quote: the error's IPv6
#: packet must not exceed the minimum MTU (RFC 4443 2.4 c).
MAX_QUOTE = MIN_MTU - IPV6_HEADER_LEN - HEADER_LEN


class Icmp6Header(NamedTuple):
    type: int
    code: int
    rest: int  # the 32 bits after the checksum

    @property
    def ident(self) -> int:
        """Echo identifier."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Echo sequence number."""
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        """Packet Too Big's MTU; for Parameter Problem ``pointer`` is the same field."""
        return self.rest

    @property
    def pointer(self) -> int:
        return self.rest

    @property
    def is_error(self) -> bool:
        return self.type < 128


def is_error(type_: int) -> bool:
    """Error messages have types 0-127 (RFC 4443 2.1)."""
    return type_ < 128


def parse(data: bytes | bytearray | memoryview, src: bytes,
          dst: bytes) -> tuple[Icmp6Header, memoryview]:
    """Return (header, body after the first 8 bytes). Every message type has
    at least 4 bytes after the checksum, so a shorter one is truncated."""
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("icmp6.truncated")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if ones_sum(mv, pseudo_sum(src, dst, PROTO, n)) != 0xFFFF:
        raise Malformed("icmp6.bad_checksum")
    type_, code, _csum, rest = _HDR.unpack_from(mv)
    return Icmp6Header(type_, code, rest), mv[HEADER_LEN:]


def build(src: bytes, dst: bytes, type_: int, code: int, rest: int,
          body: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole message with its checksum over the pseudo-header."""
    msg = bytearray(_HDR.pack(type_, code, 0, rest & 0xFFFFFFFF))
    msg += body
    csum = checksum(msg, pseudo_sum(src, dst, PROTO, len(msg)))
    msg[2] = csum >> 8
    msg[3] = csum & 0xFF
    return bytes(msg)


def build_echo(src: bytes, dst: bytes, type_: int, ident: int, seq: int,
               payload: bytes | bytearray | memoryview = b"") -> bytes:
    """Echo Request or Reply (RFC 4443 4.1, 4.2)."""
    return build(src, dst, type_, 0, (ident & 0xFFFF) << 16 | (seq & 0xFFFF), payload)


def quote(invoking: bytes | bytearray | memoryview, room: int = MAX_QUOTE) -> memoryview:
    """As much of the invoking packet (from its IPv6 header on) as fits in an
    error without the error packet exceeding 1280 bytes (RFC 4443 2.4 c).
    ``room`` is smaller when the error carries extension headers."""
    mv = invoking if isinstance(invoking, memoryview) else memoryview(invoking)
    return mv[:max(0, room)]


def build_error(src: bytes, dst: bytes, type_: int, code: int,
                invoking: bytes | bytearray | memoryview, rest: int = 0,
                room: int = MAX_QUOTE) -> bytes:
    """An error message quoting the invoking packet, cut to fit. ``rest`` is
    the MTU (Packet Too Big), the pointer (Parameter Problem) or 0."""
    if not is_error(type_):
        raise ValueError(f"ICMPv6 type {type_} is not an error")
    return build(src, dst, type_, code, rest, quote(invoking, room))


def build_dest_unreachable(src: bytes, dst: bytes, code: int,
                           invoking: bytes | bytearray | memoryview) -> bytes:
    return build_error(src, dst, DEST_UNREACHABLE, code, invoking)


def build_packet_too_big(src: bytes, dst: bytes, mtu: int,
                         invoking: bytes | bytearray | memoryview) -> bytes:
    return build_error(src, dst, PACKET_TOO_BIG, 0, invoking, mtu)


def build_time_exceeded(src: bytes, dst: bytes, code: int,
                        invoking: bytes | bytearray | memoryview) -> bytes:
    return build_error(src, dst, TIME_EXCEEDED, code, invoking)


def build_param_problem(src: bytes, dst: bytes, code: int, pointer: int,
                        invoking: bytes | bytearray | memoryview) -> bytes:
    return build_error(src, dst, PARAMETER_PROBLEM, code, invoking, pointer)


def no_error_about(next_header: int, payload: bytes | bytearray | memoryview) -> bool:
    """Whether a packet must not be answered with an error because it is an
    ICMPv6 error or a Redirect (RFC 4443 2.4 e.1, e.2). ``payload`` follows
    the fixed header; the chain is skipped by lengths. A chain that cannot be
    followed, or a non-first fragment, is not known to be one (False)."""
    try:
        upper, offset = skip_chain(next_header, payload)
    except Malformed:
        return False
    if upper != PROTO or offset >= len(payload):
        return False
    type_ = payload[offset]
    return type_ < 128 or type_ == REDIRECT


def error_allowed(type_: int, code: int, src: bytes, dst: bytes,
                  link_multicast: bool = False) -> bool:
    """Whether an error of ``type_``/``code`` may answer a packet from ``src``
    to ``dst`` (RFC 4443 2.4 e.3-e.6): never when the source names no single
    node (unspecified or multicast); never when the packet went to a multicast
    address or a link-layer multicast/broadcast, except Packet Too Big and
    Parameter Problem code 2 (an option whose type starts with bits 10; for
    bits 11 the caller also stays silent, RFC 8200 4.2). The error and
    redirect cases (e.1, e.2) are ``no_error_about``; the rate limit is the
    stack's."""
    if src == UNSPECIFIED or src[0] == 0xFF:
        return False
    if dst[0] == 0xFF or link_multicast:
        return type_ == PACKET_TOO_BIG or (type_ == PARAMETER_PROBLEM
                                           and code == UNRECOGNIZED_OPTION)
    return True


class Quote(NamedTuple):
    """The invoking packet quoted in an error, as far as it is present."""

    src: bytes
    dst: bytes
    upper: int             # its upper-layer protocol; PROTO_FRAGMENT for a later fragment
    transport: memoryview  # the quoted upper-layer bytes (often cut short)


def parse_quote(body: bytes | bytearray | memoryview) -> Quote:
    """Where an error came from and about what (RFC 4443 2.4 c): the quoted
    fixed header and, past its extension headers, the upper-layer bytes the
    stack matches to a connection. A quote too short for its own headers is
    ``icmp6.bad_quote``."""
    try:
        hdr, rest = parse_ipv6_quote(body)
        upper, offset = skip_chain(hdr.next_header, rest)
    except Malformed:
        raise Malformed("icmp6.bad_quote") from None
    return Quote(hdr.src, hdr.dst, upper, rest[offset:])


#: Destination Unreachable codes -> (errno, fatal), as Linux's icmpv6_err_convert.
_UNREACH = {
    NO_ROUTE: (errno.ENETUNREACH, False),
    ADMIN_PROHIBITED: (errno.EACCES, True),
    BEYOND_SCOPE: (errno.EHOSTUNREACH, False),
    ADDRESS_UNREACHABLE: (errno.EHOSTUNREACH, False),
    PORT_UNREACHABLE: (errno.ECONNREFUSED, True),
    SOURCE_POLICY_FAILED: (errno.EACCES, True),
    REJECT_ROUTE: (errno.EACCES, True),
}


def err_convert(type_: int, code: int) -> tuple[int, bool]:
    """An ICMPv6 error as (errno, fatal), Linux's icmpv6_err_convert: a fatal
    (hard) error ends a connection attempt and reaches a connected socket."""
    if type_ == DEST_UNREACHABLE:
        return _UNREACH.get(code, (errno.EPROTO, True))
    if type_ == PACKET_TOO_BIG:
        return errno.EMSGSIZE, False
    if type_ == PARAMETER_PROBLEM:
        return errno.EPROTO, True
    if type_ == TIME_EXCEEDED:
        return errno.EHOSTUNREACH, False
    return errno.EPROTO, False
