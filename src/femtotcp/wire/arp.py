"""ARP for IPv4 over Ethernet (RFC 826). RARP (RFC 903) is not ours to answer."""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed

REQUEST = 1
REPLY = 2
LENGTH = 28
_ARP = struct.Struct("!HHBBH6s4s6s4s")


class ArpPacket(NamedTuple):
    op: int
    sha: bytes  # sender hardware address
    spa: bytes  # sender protocol address
    tha: bytes
    tpa: bytes


def parse(data: bytes | memoryview) -> ArpPacket:
    if len(data) < LENGTH:
        raise Malformed("arp.truncated")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data)
    if htype != 1:
        raise Malformed("arp.bad_htype")
    if ptype != 0x0800:
        raise Malformed("arp.bad_ptype")
    if hlen != 6 or plen != 4:
        raise Malformed("arp.bad_length")
    if op not in (REQUEST, REPLY):
        raise Malformed("arp.bad_opcode")
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return _ARP.pack(1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
