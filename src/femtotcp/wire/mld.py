"""Multicast Listener Discovery: MLDv2 (RFC 3810) and MLDv1 (RFC 2710).

A host reports the groups it listens to (its solicited-node groups above all,
so snooping switches pass it its NDP traffic) in MLDv2 Reports to ff02::16,
and answers queries of either version. ``parse`` takes an ICMPv6 message that
``icmp6.parse`` accepted; ``check_ip`` applies the rules on the IPv6 fields
(RFC 3810 5.1.14, 5.2.13: link-local source, hop limit 1, Router Alert).
Counts are checked against the bytes present before any loop runs on them;
bytes after the last field are covered by the checksum and otherwise ignored
(RFC 3810 5.1.12, 5.2.11).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from femtotcp.wire import Malformed, ipv6, ipv6ext
from femtotcp.wire import icmp6 as _icmp6
from femtotcp.wire.icmp6 import Icmp6Header

QUERY = _icmp6.MLD_QUERY            # both versions
V1_REPORT = _icmp6.MLD_REPORT
V1_DONE = _icmp6.MLD_DONE
V2_REPORT = _icmp6.MLDV2_REPORT
TYPES = frozenset({QUERY, V1_REPORT, V1_DONE, V2_REPORT})
HOP_LIMIT = 1

# Multicast Address Record types (RFC 3810 5.2.12).
MODE_IS_INCLUDE = 1
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3     # with no sources: leave
CHANGE_TO_EXCLUDE = 4     # with no sources: join
ALLOW_NEW_SOURCES = 5
BLOCK_OLD_SOURCES = 6

V1_LEN = 16               # body after the 8-byte ICMPv6 header: the group address
V2_QUERY_MIN = 20         # group, flags/QRV, QQIC, number of sources
_RECORD = struct.Struct("!BBH16s")
_QUERY_TAIL = struct.Struct("!BBH")


class MldQuery(NamedTuple):
    version: int             # 1 (24 bytes) or 2 (28 or more)
    max_response_ms: int     # decoded Max Response Code (RFC 3810 5.1.3)
    group: bytes             # :: for a General Query
    suppress: bool           # S flag (v2)
    qrv: int                 # Querier's Robustness Variable (v2; 0 for v1)
    qqi: int                 # Querier's Query Interval in seconds (v2; 0 for v1)
    sources: tuple[bytes, ...]


class MldV1Message(NamedTuple):
    """An MLDv1 Report or Done (RFC 2710 3)."""

    type: int
    max_delay: int
    group: bytes


class AddressRecord(NamedTuple):
    type: int
    group: bytes
    sources: tuple[bytes, ...] = ()
    aux: bytes = b""         # hosts send none (RFC 3810 5.2.10); receivers ignore it


class MldV2Report(NamedTuple):
    records: tuple[AddressRecord, ...]


MldMessage = MldQuery | MldV1Message | MldV2Report


# -- the floating-point fields (RFC 3810 5.1.3, 5.1.9) --------------------------------

def _decode_float(code: int, mant_bits: int) -> int:
    """Below 1 << (mant_bits + 3) the code is the value; above, it is
    1|exp(3)|mant: (mant | 1 << mant_bits) << (exp + 3)."""
    if code < 1 << (mant_bits + 3):
        return code
    mant = (code & ((1 << mant_bits) - 1)) | 1 << mant_bits
    return mant << (((code >> mant_bits) & 7) + 3)


def _encode_float(value: int, mant_bits: int) -> int:
    """The code whose value is the largest not above ``value`` (saturating)."""
    if value < 1 << (mant_bits + 3):
        return max(0, value)
    for exp in range(8):
        mant = value >> (exp + 3)
        if mant < 1 << (mant_bits + 1):
            return 1 << (mant_bits + 3) | exp << mant_bits | (mant & ((1 << mant_bits) - 1))
    return (1 << (mant_bits + 4)) - 1


def decode_max_response(code: int) -> int:
    """Max Response Code to milliseconds (12-bit mantissa)."""
    return _decode_float(code, 12)


def encode_max_response(ms: int) -> int:
    return _encode_float(ms, 12)


def decode_qqic(code: int) -> int:
    """Querier's Query Interval Code to seconds (4-bit mantissa)."""
    return _decode_float(code, 4)


def encode_qqic(seconds: int) -> int:
    return _encode_float(seconds, 4)


# -- parsing ---------------------------------------------------------------------------

def read_sources(mv: memoryview, pos: int, count: int, size: int = 16) -> tuple[bytes, ...]:
    return tuple(bytes(mv[pos + size * i:pos + size * (i + 1)]) for i in range(count))


def read_records(mv: memoryview, pos: int, count: int, record: struct.Struct,
                 truncated: str) -> tuple[AddressRecord, ...]:
    """``count`` group records from ``pos``: an MLDv2 report's (RFC 3810 5.2.4)
    or, with IGMPv3's 4-byte addresses in ``record``, an IGMPv3 report's (RFC
    3376 4.2.4, the same layout). Malformed(``truncated``) past the end."""
    size = record.size - 4           # the group's (and each source's) length
    n = len(mv)
    records = []
    for _ in range(count):
        if pos + record.size > n:
            raise Malformed(truncated)
        rtype, aux_words, nsrc, group = record.unpack_from(mv, pos)
        start = pos + record.size
        end = start + size * nsrc + 4 * aux_words
        if end > n:
            raise Malformed(truncated)
        records.append(AddressRecord(rtype, group, read_sources(mv, start, nsrc, size),
                                     bytes(mv[start + size * nsrc:end])))
        pos = end
    return tuple(records)


def parse(icmp: Icmp6Header, body: bytes | bytearray | memoryview) -> MldMessage:
    """One MLD message; ``icmp``/``body`` come from ``icmp6.parse``."""
    mv = body if isinstance(body, memoryview) else memoryview(body)
    n = len(mv)
    kind = icmp.type
    if kind not in TYPES:
        raise Malformed("mld.not_mld")
    if kind == V2_REPORT:
        count = icmp.rest & 0xFFFF
        if count * _RECORD.size > n:
            raise Malformed("mld.bad_record_count")
        return MldV2Report(read_records(mv, 0, count, _RECORD, "mld.truncated"))
    if n < V1_LEN:
        raise Malformed("mld.truncated")
    group = bytes(mv[:16])
    max_code = icmp.rest >> 16
    if kind != QUERY:
        return MldV1Message(kind, max_code, group)
    if n == V1_LEN:
        return MldQuery(1, max_code, group, False, 0, 0, ())
    if n < V2_QUERY_MIN:
        raise Malformed("mld.bad_query_length")     # RFC 3810 8.1: 25 to 27 bytes
    flags, qqic, nsrc = _QUERY_TAIL.unpack_from(mv, 16)
    if V2_QUERY_MIN + 16 * nsrc > n:
        raise Malformed("mld.bad_source_count")
    return MldQuery(2, decode_max_response(max_code), group, bool(flags & 0x08), flags & 7,
                    decode_qqic(qqic), read_sources(mv, V2_QUERY_MIN, nsrc))


def check_ip(kind: int, src: bytes, hop_limit: int, router_alert: int | None) -> None:
    """RFC 3810 5.1.14 / 5.2.13 (and RFC 2710 3): a link-local source (or ::
    for a report, sent before an address exists), hop limit 1, a Router Alert
    in the Hop-by-Hop header; else the message is silently discarded."""
    if hop_limit != HOP_LIMIT:
        raise Malformed("mld.bad_hop_limit")
    if router_alert is None:
        raise Malformed("mld.no_router_alert")
    if not ipv6.is_link_local(src) and not (kind != QUERY and src == ipv6.UNSPECIFIED):
        raise Malformed("mld.bad_source")


# -- building --------------------------------------------------------------------------

def _record(rec: AddressRecord) -> bytes:
    if len(rec.aux) % 4:
        raise ValueError("auxiliary data is whole 32-bit words")
    return (_RECORD.pack(rec.type, len(rec.aux) // 4, len(rec.sources), rec.group)
            + b"".join(rec.sources) + rec.aux)


def build_v2_report(src: bytes, records: Sequence[AddressRecord],
                    dst: bytes = ipv6.ALL_MLDV2_ROUTERS) -> bytes:
    """The ICMPv6 message of an MLDv2 Report (RFC 3810 5.2)."""
    if len(records) > 0xFFFF:
        raise ValueError("too many records")
    body = b"".join(_record(r) for r in records)
    return _icmp6.build(src, dst, V2_REPORT, 0, len(records), body)


def packet(src: bytes, dst: bytes, message: bytes) -> bytes:
    """A whole IPv6 packet for an MLD message: hop limit 1 and a Hop-by-Hop
    header with the Router Alert for MLD (RFC 3810 5)."""
    hbh = ipv6ext.build_hop_by_hop(ipv6.PROTO_ICMP6, [ipv6ext.router_alert()])
    return ipv6.build(src, dst, ipv6.PROTO_HOPOPTS, hbh + message, hop_limit=HOP_LIMIT)


def build_v2_report_packet(src: bytes, records: Sequence[AddressRecord]) -> bytes:
    return packet(src, ipv6.ALL_MLDV2_ROUTERS, build_v2_report(src, records))


def build_query(src: bytes, dst: bytes, max_response_ms: int, group: bytes = ipv6.UNSPECIFIED,
                sources: Sequence[bytes] = (), qrv: int = 2, qqi: int = 125,
                suppress: bool = False, version: int = 2) -> bytes:
    """An MLDv2 Query (RFC 3810 5.1), or an MLDv1 one (24 bytes) with ``version=1``."""
    if version == 1:
        return _icmp6.build(src, dst, QUERY, 0, min(max_response_ms, 0xFFFF) << 16, group)
    tail = _QUERY_TAIL.pack((0x08 if suppress else 0) | (qrv if qrv <= 7 else 0),
                            encode_qqic(qqi), len(sources))
    return _icmp6.build(src, dst, QUERY, 0, encode_max_response(max_response_ms) << 16,
                        group + tail + b"".join(sources))


def build_v1(src: bytes, dst: bytes, kind: int, group: bytes, max_delay: int = 0) -> bytes:
    """An MLDv1 Report or Done (RFC 2710 3), for a link with an MLDv1 querier."""
    return _icmp6.build(src, dst, kind, 0, (max_delay & 0xFFFF) << 16, group)
