"""ICMPv4 messages (RFC 792). The checksum covers the bytes actually received."""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import checksum, ones_sum

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

# Destination unreachable codes.
NET_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTO_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAG_NEEDED = 4
ADMIN_PROHIBITED = 13

#: Destination-unreachable codes that are hard errors (RFC 1122 4.1.3.3; the
#: "fatal" ones of Linux's icmp_err_convert): protocol and port unreachable,
#: unknown or isolated hosts and networks, and every administrative prohibition.
UNREACH_HARD = frozenset({2, 3, 6, 7, 8, 9, 10, 13, 14, 15})

ERROR_TYPES = frozenset({DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                         PARAMETER_PROBLEM})

_HDR = struct.Struct("!BBHI")
HEADER_LEN = 8


class IcmpHeader(NamedTuple):
    type: int
    code: int
    rest: int  # the 32 bits after the checksum (id + seq for echo; MTU for frag-needed)

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF


def parse(data: bytes | memoryview) -> tuple[IcmpHeader, memoryview]:
    if len(data) < HEADER_LEN:
        raise Malformed("icmp4.truncated")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if ones_sum(mv) != 0xFFFF:
        raise Malformed("icmp4.bad_checksum")
    type_, code, _csum, rest = _HDR.unpack_from(mv)
    return IcmpHeader(type_, code, rest), mv[HEADER_LEN:]


def build(type_: int, code: int, rest: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    msg = bytearray(_HDR.pack(type_, code, 0, rest))
    msg += payload
    csum = checksum(msg)
    msg[2] = csum >> 8
    msg[3] = csum & 0xFF
    return bytes(msg)


def build_echo(type_: int, ident: int, seq: int, payload: bytes | memoryview = b"") -> bytes:
    return build(type_, 0, (ident << 16) | seq, payload)
