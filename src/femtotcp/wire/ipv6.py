"""IPv6 headers (RFC 8200 3) and addresses (RFC 4291), every length checked first.

The fixed header is all a plain datagram needs: for TCP, UDP or ICMPv6 right
after it the stack dispatches on ``next_header`` directly and never walks an
extension chain (``ipv6ext.walk`` is for the other cases). Unlike IPv4 there is
no header checksum; the upper layers cover the addresses through the
pseudo-header (RFC 8200 8.1, ``pseudo_sum``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import checksum, ones_sum

_HDR = struct.Struct("!IHBB16s16s")
HEADER_LEN = 40
MIN_MTU = 1280          # RFC 8200 5: every link carries 1280-byte packets
MAX_PAYLOAD = 0xFFFF    # without jumbograms (RFC 2675, not supported)

# Next Header values (IANA "Assigned Internet Protocol Numbers").
PROTO_HOPOPTS = 0
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMP6 = 58
PROTO_NONE = 59         # RFC 8200 4.7: nothing follows
PROTO_DSTOPTS = 60

UNSPECIFIED = bytes(16)
LOOPBACK = bytes(15) + b"\x01"
ALL_NODES = b"\xff\x02" + bytes(13) + b"\x01"          # ff02::1
ALL_ROUTERS = b"\xff\x02" + bytes(13) + b"\x02"        # ff02::2
ALL_MLDV2_ROUTERS = b"\xff\x02" + bytes(13) + b"\x16"  # ff02::16 (RFC 3810 5.2.14)
LINK_LOCAL_PREFIX = b"\xfe\x80" + bytes(6)             # fe80::/64 (RFC 4291 2.5.6)
_SOLICITED_PREFIX = b"\xff\x02" + bytes(9) + b"\x01\xff"  # ff02::1:ff00:0/104
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"             # ::ffff:0:0/96

# Multicast scopes (RFC 4291 2.7, RFC 7346).
SCOPE_INTERFACE = 1
SCOPE_LINK = 2
SCOPE_REALM = 3
SCOPE_ADMIN = 4
SCOPE_SITE = 5
SCOPE_ORGANIZATION = 8
SCOPE_GLOBAL = 14


class Ipv6Header(NamedTuple):
    traffic_class: int
    flow_label: int
    payload_len: int   # as the sender claims; checked against the bytes present
    next_header: int
    hop_limit: int
    src: bytes
    dst: bytes


def parse(data: bytes | bytearray | memoryview) -> tuple[Ipv6Header, memoryview]:
    """Return (header, payload). Ethernet padding after the payload is cut off.

    A payload length of 0 with a Hop-by-Hop header next would announce a
    jumbogram (RFC 2675), which no Ethernet link carries: dropped."""
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("ipv6.truncated")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    vtf, plen, nh, hlim, src, dst = _HDR.unpack_from(mv)
    if vtf >> 28 != 6:
        raise Malformed("ipv6.bad_version")
    end = HEADER_LEN + plen
    if end > n:
        raise Malformed("ipv6.truncated")
    if plen == 0 and nh == PROTO_HOPOPTS:
        raise Malformed("ipv6.jumbogram")
    return (Ipv6Header((vtf >> 20) & 0xFF, vtf & 0xFFFFF, plen, nh, hlim, src, dst),
            mv[HEADER_LEN:end])


def parse_quote(data: bytes | bytearray | memoryview) -> tuple[Ipv6Header, memoryview]:
    """The header quoted in an ICMPv6 error (RFC 4443 2.4 c): the invoking
    packet is cut at 1280 bytes, so its payload length may exceed what is
    present. Returns the header and the quoted part of its payload."""
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("ipv6.truncated_quote")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    vtf, plen, nh, hlim, src, dst = _HDR.unpack_from(mv)
    if vtf >> 28 != 6:
        raise Malformed("ipv6.bad_quote_version")
    return (Ipv6Header((vtf >> 20) & 0xFF, vtf & 0xFFFFF, plen, nh, hlim, src, dst),
            mv[HEADER_LEN:min(n, HEADER_LEN + plen)])


def header_only(src: bytes, dst: bytes, next_header: int, payload_len: int,
                hop_limit: int = 64, traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """The 40-byte fixed header for ``payload_len`` bytes (extension headers
    count as payload)."""
    if not 0 <= payload_len <= MAX_PAYLOAD:
        raise ValueError(f"IPv6 payload length out of range: {payload_len}")
    return _HDR.pack(0x60000000 | (traffic_class & 0xFF) << 20 | (flow_label & 0xFFFFF),
                     payload_len, next_header, hop_limit, src, dst)


def build(src: bytes, dst: bytes, next_header: int, payload: bytes | bytearray | memoryview,
          hop_limit: int = 64, traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """A whole datagram: fixed header plus ``payload`` (extension headers
    included, ``next_header`` naming the first)."""
    return b"".join((header_only(src, dst, next_header, len(payload), hop_limit,
                                 traffic_class, flow_label), payload))     # one copy


def emit(buf: bytearray, offset: int, src: bytes, dst: bytes, next_header: int,
         payload_len: int, hop_limit: int = 64, traffic_class: int = 0,
         flow_label: int = 0) -> None:
    """Write the fixed header into ``buf`` at ``offset`` (the output path
    reserves the room in front of the payload)."""
    if not 0 <= payload_len <= MAX_PAYLOAD:
        raise ValueError(f"IPv6 payload length out of range: {payload_len}")
    _HDR.pack_into(buf, offset, 0x60000000 | (traffic_class & 0xFF) << 20
                   | (flow_label & 0xFFFFF), payload_len, next_header, hop_limit, src, dst)


# -- the upper-layer checksum (RFC 8200 8.1) ----------------------------------------

def pseudo_sum(src: bytes, dst: bytes, next_header: int, upper_len: int) -> int:
    """Ones' complement sum of the IPv6 pseudo-header: source, destination
    (the final one when a Routing header is present), the 32-bit upper-layer
    length and the upper-layer protocol. Feed it to ``checksum``/``ones_sum``
    as ``initial``; it is the twin of IPv4's ``checksum.pseudo_header_sum``."""
    return ones_sum(src + dst) + next_header + upper_len


def upper_checksum(src: bytes, dst: bytes, next_header: int,
                   data: bytes | bytearray | memoryview) -> int:
    """The checksum to put in an upper-layer header whose field in ``data`` is 0."""
    return checksum(data, pseudo_sum(src, dst, next_header, len(data)))


def verify_upper(src: bytes, dst: bytes, next_header: int,
                 data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, pseudo_sum(src, dst, next_header, len(data))) == 0xFFFF


# -- addresses (RFC 4291) ------------------------------------------------------------

def is_unspecified(addr: bytes) -> bool:
    return addr == UNSPECIFIED


def is_loopback(addr: bytes) -> bool:
    return addr == LOOPBACK


def is_multicast(addr: bytes) -> bool:
    return addr[0] == 0xFF


def multicast_scope(addr: bytes) -> int:
    """The scope nibble of a multicast address (RFC 4291 2.7)."""
    return addr[1] & 0x0F


def is_link_local(addr: bytes) -> bool:
    """Unicast fe80::/10 (RFC 4291 2.5.6)."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def is_link_scope(addr: bytes) -> bool:
    """Link-local unicast, or multicast of link or interface scope: the
    addresses that need an interface to mean anything (RFC 4007)."""
    if addr[0] == 0xFF:
        return addr[1] & 0x0F <= SCOPE_LINK
    return is_link_local(addr)


def is_unique_local(addr: bytes) -> bool:
    """fc00::/7 (RFC 4193)."""
    return addr[0] & 0xFE == 0xFC


def is_v4_mapped(addr: bytes) -> bool:
    """::ffff:a.b.c.d (RFC 4291 2.5.5.2)."""
    return addr[:12] == _V4_MAPPED_PREFIX


def v4_mapped(addr4: bytes) -> bytes:
    if len(addr4) != 4:
        raise ValueError("an IPv4 address is 4 bytes")
    return _V4_MAPPED_PREFIX + addr4


def v4_from_mapped(addr: bytes) -> bytes | None:
    """The IPv4 address inside a v4-mapped address, else None."""
    return addr[12:] if addr[:12] == _V4_MAPPED_PREFIX else None


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the low 24 bits of ``addr`` (RFC 4291 2.7.1)."""
    return _SOLICITED_PREFIX + addr[13:16]


def is_solicited_node(addr: bytes) -> bool:
    return addr[:13] == _SOLICITED_PREFIX


def multicast_mac(addr: bytes) -> bytes:
    """33:33 and the low 32 bits of a multicast address (RFC 2464 7)."""
    return b"\x33\x33" + addr[12:16]


def eui64_iid(mac: bytes) -> bytes:
    """Modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 app. A):
    ff:fe in the middle, universal/local bit inverted."""
    if len(mac) != 6:
        raise ValueError("a MAC address is 6 bytes")
    return bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def with_iid(prefix: bytes, iid: bytes) -> bytes:
    """The first 64 bits of ``prefix`` joined to a 64-bit interface identifier."""
    if len(iid) != 8:
        raise ValueError("an interface identifier is 8 bytes")
    return prefix[:8] + iid


def link_local(iid: bytes) -> bytes:
    """fe80::IID."""
    return with_iid(LINK_LOCAL_PREFIX, iid)


def mask(addr: bytes, prefix_len: int) -> bytes:
    """``addr`` with every bit after the first ``prefix_len`` cleared."""
    if not 0 <= prefix_len <= 128:
        raise ValueError(f"prefix length out of range: {prefix_len}")
    value = int.from_bytes(addr, "big")
    value &= ((1 << 128) - 1) ^ ((1 << (128 - prefix_len)) - 1)
    return value.to_bytes(16, "big")


def in_prefix(addr: bytes, prefix: bytes, prefix_len: int) -> bool:
    return mask(addr, prefix_len) == mask(prefix, prefix_len)


def check_addresses(src: bytes, dst: bytes, looped: bool = False) -> None:
    """Addresses no packet from a link may carry, as Linux's ipv6_rcv drops
    them: a multicast source (RFC 4291 2.7), loopback either way (RFC 4291
    2.5.3; ``looped``: the packet never left the host, where ::1 is fine),
    v4-mapped either way (RFC 4291 2.5.5.2 and Linux), the unspecified
    destination (RFC 4291 2.5.2), a multicast destination of reserved scope 0
    or of interface-local scope."""
    if src[0] == 0xFF:
        raise Malformed("ipv6.multicast_source")
    if (src == LOOPBACK or dst == LOOPBACK) and not looped:
        raise Malformed("ipv6.loopback_address")
    if src[:12] == _V4_MAPPED_PREFIX or dst[:12] == _V4_MAPPED_PREFIX:
        raise Malformed("ipv6.v4_mapped_address")
    if dst == UNSPECIFIED:
        raise Malformed("ipv6.unspecified_destination")
    if dst[0] == 0xFF and dst[1] & 0x0F <= SCOPE_INTERFACE:
        raise Malformed("ipv6.bad_multicast_scope")
