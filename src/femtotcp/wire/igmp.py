"""IGMP: version 3 (RFC 3376) with versions 1 (RFC 1112) and 2 (RFC 2236).

A host reports the groups its sockets joined so routers and snooping switches
pass their traffic: IGMPv3 Membership Reports to 224.0.0.22 by default, v2
Reports to the group and Leaves to 224.0.0.2 (or v1 Reports) while an older
querier is present. ``parse`` checks the checksum and every count against the
bytes present before any loop runs on them; bytes after the last field are
covered by the checksum and otherwise ignored (RFC 3376 4.1.10, 4.2.11).
``packet`` makes the whole IPv4 datagram a host sends: TTL 1, the Router Alert
option (RFC 2113; RFC 3376 4), TOS 0xc0 and DF, as Linux's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire import ipv4 as _ipv4
from femtotcp.wire.checksum import checksum, ones_sum
from femtotcp.wire.mld import ALLOW_NEW_SOURCES as ALLOW_NEW_SOURCES
from femtotcp.wire.mld import BLOCK_OLD_SOURCES as BLOCK_OLD_SOURCES
from femtotcp.wire.mld import CHANGE_TO_EXCLUDE as CHANGE_TO_EXCLUDE
from femtotcp.wire.mld import CHANGE_TO_INCLUDE as CHANGE_TO_INCLUDE
from femtotcp.wire.mld import MODE_IS_EXCLUDE as MODE_IS_EXCLUDE
from femtotcp.wire.mld import MODE_IS_INCLUDE as MODE_IS_INCLUDE
from femtotcp.wire.mld import AddressRecord, read_records, read_sources
from femtotcp.wire.mld import decode_qqic as decode_code
from femtotcp.wire.mld import encode_qqic as encode_code

# (RFC 3376 4.1.1/4.1.7's 8-bit codes are MLDv2's QQIC format: ``decode_code``
# and ``encode_code`` are wire.mld's, for Max Resp Code and QQIC alike.)

PROTO = 2
QUERY = 0x11
V1_REPORT = 0x12
V2_REPORT = 0x16
V2_LEAVE = 0x17
V3_REPORT = 0x22
TYPES = frozenset({QUERY, V1_REPORT, V2_REPORT, V2_LEAVE, V3_REPORT})

ALL_HOSTS = b"\xe0\x00\x00\x01"        # 224.0.0.1: every host, never reported
ALL_ROUTERS = b"\xe0\x00\x00\x02"      # 224.0.0.2: v2 Leaves
ALL_V3_ROUTERS = b"\xe0\x00\x00\x16"   # 224.0.0.22: v3 Reports
TTL = 1
TOS = 0xC0                             # (Linux's: internetwork control)
ROUTER_ALERT = b"\x94\x04\x00\x00"     # RFC 2113: type 148, length 4, value 0

# Group Record types (RFC 3376 4.2.12) are MLDv2's numbers: MODE_IS_INCLUDE,
# MODE_IS_EXCLUDE, CHANGE_TO_INCLUDE, CHANGE_TO_EXCLUDE, ALLOW_NEW_SOURCES and
# BLOCK_OLD_SOURCES come from wire/mld.py (imported above).

HEADER_LEN = 8            # type, max resp code, checksum, group
V3_QUERY_MIN = 12         # + resv/S/QRV, QQIC, number of sources
_HDR = struct.Struct("!BBH4s")
_QUERY_TAIL = struct.Struct("!BBH")
_RECORD = struct.Struct("!BBH4s")
_V3_REPORT_HDR = struct.Struct("!BBHHH")


class IgmpQuery(NamedTuple):
    version: int              # 1, 2 or 3 (RFC 3376 7.1)
    max_response: int         # tenths of a second (decoded Max Resp Code; 0 for v1)
    group: bytes              # 0.0.0.0 for a General Query
    suppress: bool            # S flag (v3)
    qrv: int                  # Querier's Robustness Variable (v3; 0 otherwise)
    qqi: int                  # Querier's Query Interval in seconds (v3; 0 otherwise)
    sources: tuple[bytes, ...]


class IgmpReport(NamedTuple):
    """A v1 or v2 Report, or a v2 Leave."""

    type: int
    group: bytes


#: A Group Record (RFC 3376 4.2.4): MLDv2's Multicast Address Record with
#: 4-byte addresses (type, group, sources, aux: hosts send no auxiliary data).
GroupRecord = AddressRecord


class IgmpV3Report(NamedTuple):
    records: tuple[GroupRecord, ...]


IgmpMessage = IgmpQuery | IgmpReport | IgmpV3Report


def _sources(mv: memoryview, pos: int, count: int) -> tuple[bytes, ...]:
    return read_sources(mv, pos, count, 4)


def parse(data: bytes | bytearray | memoryview) -> IgmpMessage:
    """One IGMP message (an IPv4 payload, protocol 2)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise Malformed("igmp.truncated")
    if ones_sum(mv) != 0xFFFF:
        raise Malformed("igmp.bad_checksum")
    kind, code, _csum, group = _HDR.unpack_from(mv)
    if kind == QUERY:
        if n == HEADER_LEN:
            # RFC 3376 7.1: 8 bytes and a zero Max Resp Code is v1, non-zero v2.
            return IgmpQuery(2 if code else 1, code, group, False, 0, 0, ())
        if n < V3_QUERY_MIN:
            raise Malformed("igmp.bad_query_length")     # 9 to 11 bytes: ignored
        flags, qqic, nsrc = _QUERY_TAIL.unpack_from(mv, HEADER_LEN)
        if V3_QUERY_MIN + 4 * nsrc > n:
            raise Malformed("igmp.bad_source_count")
        return IgmpQuery(3, decode_code(code), group, bool(flags & 0x08), flags & 7,
                         decode_code(qqic), _sources(mv, V3_QUERY_MIN, nsrc))
    if kind in (V1_REPORT, V2_REPORT, V2_LEAVE):
        return IgmpReport(kind, group)
    if kind != V3_REPORT:
        raise Malformed("igmp.unknown_type")
    count = int.from_bytes(mv[6:8], "big")
    if HEADER_LEN + count * _RECORD.size > n:
        raise Malformed("igmp.bad_record_count")
    return IgmpV3Report(read_records(mv, HEADER_LEN, count, _RECORD, "igmp.truncated"))


def _with_checksum(msg: bytearray) -> bytes:
    csum = checksum(msg)
    msg[2] = csum >> 8
    msg[3] = csum & 0xFF
    return bytes(msg)


def build_v3_report(records: Sequence[GroupRecord]) -> bytes:
    """An IGMPv3 Membership Report (RFC 3376 4.2)."""
    if len(records) > 0xFFFF:
        raise ValueError("too many records")
    msg = bytearray(_V3_REPORT_HDR.pack(V3_REPORT, 0, 0, 0, len(records)))
    for rec in records:
        if len(rec.aux) % 4:
            raise ValueError("auxiliary data is whole 32-bit words")
        msg += _RECORD.pack(rec.type, len(rec.aux) // 4, len(rec.sources), rec.group)
        msg += b"".join(rec.sources) + rec.aux
    return _with_checksum(msg)


def build_v2(kind: int, group: bytes, max_response: int = 0) -> bytes:
    """An 8-byte message: a v1/v2 Report, a v2 Leave, or a v1/v2 Query."""
    return _with_checksum(bytearray(_HDR.pack(kind, max_response, 0, group)))


def build_v3_query(group: bytes = b"\0\0\0\0", max_response: int = 100,
                   sources: Sequence[bytes] = (), qrv: int = 2, qqi: int = 125,
                   suppress: bool = False) -> bytes:
    """An IGMPv3 Query (RFC 3376 4.1): what a querier sends (tests, tools)."""
    msg = bytearray(_HDR.pack(QUERY, encode_code(max_response), 0, group))
    msg += _QUERY_TAIL.pack((0x08 if suppress else 0) | (qrv & 7), encode_code(qqi),
                            len(sources))
    msg += b"".join(sources)
    return _with_checksum(msg)


def packet(src: bytes, dst: bytes, message: bytes, ident: int = 0) -> bytes:
    """The IPv4 datagram carrying ``message`` as a host sends it."""
    return _ipv4.build(src, dst, PROTO, message, TTL, TOS, ident, _ipv4.DF, ROUTER_ALERT)
