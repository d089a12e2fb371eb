"""Neighbor Discovery messages and options (RFC 4861 4, 6.1, 7.1, 8.1; RFC 8106).

``parse`` takes an ICMPv6 message that ``icmp6.parse`` already accepted
(checksum verified) together with the IP fields the validity rules need, and
applies every check RFC 4861 asks of a receiver that can be made on the packet
alone: hop limit 255 (so the message was not forwarded), code 0, the minimum
length of each message, every option's length non-zero and inside the message,
and the address rules of each message. Rules that need state (a redirect only
from the current first-hop router, a prefix's lifetimes against the existing
address) belong to the stack.

Options the stack uses are checked for their own length and contents; an
option that breaks its format drops the whole message (a link-layer address
option that is not Ethernet's, a Prefix Information option whose prefix length
exceeds 128, an RDNSS option of even length, a DNSSL option whose names break
the DNS rules). Unrecognized options are skipped (RFC 4861 4.6). Of options
that may appear once, the first counts, as in Linux's ndisc_parse_options.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from femtotcp.wire import Malformed, dns
from femtotcp.wire import icmp6 as _icmp6
from femtotcp.wire.icmp6 import Icmp6Header
from femtotcp.wire.ipv6 import (
    ALL_ROUTERS,
    MIN_MTU,
    UNSPECIFIED,
    is_link_local,
    is_solicited_node,
    mask,
)
from femtotcp.wire.ipv6 import (
    HEADER_LEN as IPV6_HEADER_LEN,
)

HOP_LIMIT = 255          # RFC 4861: sent with 255, anything else was forwarded

ROUTER_SOLICITATION = _icmp6.ROUTER_SOLICITATION
ROUTER_ADVERTISEMENT = _icmp6.ROUTER_ADVERTISEMENT
NEIGHBOR_SOLICITATION = _icmp6.NEIGHBOR_SOLICITATION
NEIGHBOR_ADVERTISEMENT = _icmp6.NEIGHBOR_ADVERTISEMENT
REDIRECT = _icmp6.REDIRECT
TYPES = frozenset({ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT, NEIGHBOR_SOLICITATION,
                   NEIGHBOR_ADVERTISEMENT, REDIRECT})

# Option types (RFC 4861 4.6, RFC 3971 5.3.2, RFC 8106 5).
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
OPT_PREFIX_INFO = 3
OPT_REDIRECTED_HEADER = 4
OPT_MTU = 5
OPT_NONCE = 14
OPT_RDNSS = 25
OPT_DNSSL = 31

# RA flags (RFC 4861 4.2, RFC 4191 2.2 preference bits).
RA_MANAGED = 0x80
RA_OTHER = 0x40
# NA flags, in the top bits of the 32 bits after the checksum (RFC 4861 4.4).
NA_ROUTER = 0x80000000
NA_SOLICITED = 0x40000000
NA_OVERRIDE = 0x20000000
# Prefix Information flags (RFC 4861 4.6.2).
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40
INFINITY = 0xFFFFFFFF    # an infinite lifetime

#: Bytes after the 8-byte ICMPv6 header before the options start.
_FIXED = {ROUTER_SOLICITATION: 0, ROUTER_ADVERTISEMENT: 8, NEIGHBOR_SOLICITATION: 16,
          NEIGHBOR_ADVERTISEMENT: 16, REDIRECT: 32}

_RA_TAIL = struct.Struct("!II")
_PREFIX = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")
_LIFETIME = struct.Struct("!BBHI")   # RDNSS and DNSSL: type, length, reserved, lifetime


class PrefixInfo(NamedTuple):
    prefix: bytes         # bits after prefix_len cleared (RFC 4861 4.6.2: ignored)
    prefix_len: int
    on_link: bool         # L
    autonomous: bool      # A
    valid_lifetime: int   # seconds, INFINITY for ever
    preferred_lifetime: int


class Rdnss(NamedTuple):
    lifetime: int
    servers: tuple[bytes, ...]


class Dnssl(NamedTuple):
    lifetime: int
    domains: tuple[str, ...]


@dataclass(slots=True)
class NdOptions:
    source_lladdr: bytes | None = None
    target_lladdr: bytes | None = None
    mtu: int | None = None
    redirected: bytes | None = None   # the Redirected Header's quoted packet
    nonce: bytes | None = None
    prefixes: list[PrefixInfo] = field(default_factory=list)
    rdnss: list[Rdnss] = field(default_factory=list)
    dnssl: list[Dnssl] = field(default_factory=list)
    unknown: int = 0                  # unrecognized options skipped


class RouterSolicitation(NamedTuple):
    options: NdOptions


class RouterAdvertisement(NamedTuple):
    cur_hop_limit: int    # 0: unspecified
    flags: int            # RA_MANAGED, RA_OTHER, preference bits
    router_lifetime: int  # seconds; 0: not a default router
    reachable_time: int   # milliseconds; 0: unspecified
    retrans_timer: int    # milliseconds; 0: unspecified
    options: NdOptions

    @property
    def managed(self) -> bool:
        return bool(self.flags & RA_MANAGED)

    @property
    def other(self) -> bool:
        return bool(self.flags & RA_OTHER)


class NeighborSolicitation(NamedTuple):
    target: bytes
    options: NdOptions


class NeighborAdvertisement(NamedTuple):
    target: bytes
    router: bool
    solicited: bool
    override: bool
    options: NdOptions


class Redirect(NamedTuple):
    target: bytes         # the better first hop (or the destination itself)
    destination: bytes
    options: NdOptions


NdMessage = (RouterSolicitation | RouterAdvertisement | NeighborSolicitation
             | NeighborAdvertisement | Redirect)


# -- options ---------------------------------------------------------------------------

def _dnssl_names(data: memoryview) -> tuple[str, ...]:
    """Names of a DNSSL option (RFC 8106 5.2): uncompressed DNS names, then
    zero padding to the option's end. Each name obeys dns.read_name's rules
    inside the option alone; a pointer is refused (compression is not used)."""
    names: list[str] = []
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:
            if any(data[pos:]):
                raise Malformed("ndp.bad_dnssl_option")
            break
        try:
            # min_pointer past the end: every compression pointer is refused.
            name, nxt = dns.read_name(data, pos, min_pointer=n + 1)
        except Malformed:
            raise Malformed("ndp.bad_dnssl_option") from None
        names.append(name)
        pos = nxt          # > pos: at least one label and the terminator
    return tuple(names)


def parse_options(data: bytes | bytearray | memoryview) -> NdOptions:
    """Walk the option area of an ND message (RFC 4861 4.6)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    opts = NdOptions()
    n = len(mv)
    pos = 0
    while pos < n:
        if pos + 2 > n:
            raise Malformed("ndp.bad_option_length")
        kind = mv[pos]
        length = mv[pos + 1] << 3
        if length == 0 or pos + length > n:
            # RFC 4861 4.6: length 0 is invalid (and would never advance).
            raise Malformed("ndp.bad_option_length")
        body = mv[pos:pos + length]
        if kind == OPT_SOURCE_LLADDR or kind == OPT_TARGET_LLADDR:
            if length != 8:
                raise Malformed("ndp.bad_lladdr_option")   # Ethernet: 6 bytes, length 1
            mac = bytes(body[2:8])
            if kind == OPT_SOURCE_LLADDR:
                if opts.source_lladdr is None:
                    opts.source_lladdr = mac
            elif opts.target_lladdr is None:
                opts.target_lladdr = mac
        elif kind == OPT_PREFIX_INFO:
            if length != 32:
                raise Malformed("ndp.bad_prefix_option")
            _t, _l, plen, flags, valid, preferred, _r, prefix = _PREFIX.unpack_from(body)
            if plen > 128:
                raise Malformed("ndp.bad_prefix_length")
            opts.prefixes.append(PrefixInfo(mask(prefix, plen), plen,
                                            bool(flags & PREFIX_ON_LINK),
                                            bool(flags & PREFIX_AUTONOMOUS), valid, preferred))
        elif kind == OPT_MTU:
            if length != 8:
                raise Malformed("ndp.bad_mtu_option")
            if opts.mtu is None:
                opts.mtu = _MTU.unpack_from(body)[3]
        elif kind == OPT_REDIRECTED_HEADER:
            if opts.redirected is None:
                opts.redirected = bytes(body[8:])
        elif kind == OPT_NONCE:
            if opts.nonce is None:
                opts.nonce = bytes(body[2:])
        elif kind == OPT_RDNSS:
            count, odd = divmod(length // 8 - 1, 2)
            if count < 1 or odd:
                raise Malformed("ndp.bad_rdnss_option")   # RFC 8106 5.1: 3, 5, 7, ...
            lifetime = _LIFETIME.unpack_from(body)[3]
            opts.rdnss.append(Rdnss(lifetime, tuple(bytes(body[8 + 16 * i:24 + 16 * i])
                                                    for i in range(count))))
        elif kind == OPT_DNSSL:
            if length < 16:
                raise Malformed("ndp.bad_dnssl_option")   # RFC 8106 5.2: at least 2
            lifetime = _LIFETIME.unpack_from(body)[3]
            opts.dnssl.append(Dnssl(lifetime, _dnssl_names(body[8:])))
        else:
            opts.unknown += 1
        pos += length
    return opts


# -- messages --------------------------------------------------------------------------

def parse(icmp: Icmp6Header, body: bytes | bytearray | memoryview, src: bytes, dst: bytes,
          hop_limit: int) -> NdMessage:
    """Validate and split one ND message. ``icmp``/``body`` come from
    ``icmp6.parse``; ``src``, ``dst`` and ``hop_limit`` from the IPv6 header."""
    kind = icmp.type
    fixed = _FIXED.get(kind)
    if fixed is None:
        raise Malformed("ndp.not_nd")
    if hop_limit != HOP_LIMIT:
        raise Malformed("ndp.bad_hop_limit")
    if icmp.code != 0:
        raise Malformed("ndp.bad_code")
    mv = body if isinstance(body, memoryview) else memoryview(body)
    if len(mv) < fixed:
        raise Malformed("ndp.truncated")
    opts = parse_options(mv[fixed:])
    if kind == NEIGHBOR_SOLICITATION or kind == NEIGHBOR_ADVERTISEMENT:
        target = bytes(mv[0:16])
        if target[0] == 0xFF:
            raise Malformed("ndp.multicast_target")
        if kind == NEIGHBOR_SOLICITATION:
            if src == UNSPECIFIED:
                # RFC 4861 7.1.1: DAD probes go to a solicited-node group, no SLLA.
                if not is_solicited_node(dst):
                    raise Malformed("ndp.dad_bad_destination")
                if opts.source_lladdr is not None:
                    raise Malformed("ndp.slla_from_unspecified")
            return NeighborSolicitation(target, opts)
        flags = icmp.rest
        if flags & NA_SOLICITED and dst[0] == 0xFF:
            raise Malformed("ndp.solicited_to_multicast")   # RFC 4861 7.1.2
        return NeighborAdvertisement(target, bool(flags & NA_ROUTER),
                                     bool(flags & NA_SOLICITED), bool(flags & NA_OVERRIDE),
                                     opts)
    if kind == ROUTER_ADVERTISEMENT:
        if not is_link_local(src):
            raise Malformed("ndp.ra_source_not_link_local")  # RFC 4861 6.1.2
        reachable, retrans = _RA_TAIL.unpack_from(mv)
        rest = icmp.rest
        return RouterAdvertisement(rest >> 24, (rest >> 16) & 0xFF, rest & 0xFFFF,
                                   reachable, retrans, opts)
    if kind == ROUTER_SOLICITATION:
        if src == UNSPECIFIED and opts.source_lladdr is not None:
            raise Malformed("ndp.slla_from_unspecified")     # RFC 4861 6.1.1
        return RouterSolicitation(opts)
    # Redirect (RFC 4861 8.1).
    if not is_link_local(src):
        raise Malformed("ndp.redirect_source_not_link_local")
    target = bytes(mv[0:16])
    destination = bytes(mv[16:32])
    if destination[0] == 0xFF:
        raise Malformed("ndp.redirect_multicast_destination")
    if target != destination and not is_link_local(target):
        raise Malformed("ndp.redirect_bad_target")
    return Redirect(target, destination, opts)


# -- option builders -------------------------------------------------------------------

def opt_lladdr(kind: int, mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError("an Ethernet address is 6 bytes")
    return bytes((kind, 1)) + mac


def opt_source_lladdr(mac: bytes) -> bytes:
    return opt_lladdr(OPT_SOURCE_LLADDR, mac)


def opt_target_lladdr(mac: bytes) -> bytes:
    return opt_lladdr(OPT_TARGET_LLADDR, mac)


def opt_prefix(prefix: bytes, prefix_len: int, valid_lifetime: int, preferred_lifetime: int,
               on_link: bool = True, autonomous: bool = True) -> bytes:
    if not 0 <= prefix_len <= 128:
        raise ValueError(f"prefix length out of range: {prefix_len}")
    flags = (PREFIX_ON_LINK if on_link else 0) | (PREFIX_AUTONOMOUS if autonomous else 0)
    return _PREFIX.pack(OPT_PREFIX_INFO, 4, prefix_len, flags, valid_lifetime,
                        preferred_lifetime, 0, mask(prefix, prefix_len))


def opt_mtu(mtu: int) -> bytes:
    return _MTU.pack(OPT_MTU, 1, 0, mtu)


def opt_nonce(nonce: bytes) -> bytes:
    """RFC 3971 5.3.2 (used for DAD by RFC 7527): 6 bytes fill one unit."""
    if (len(nonce) + 2) % 8 or not nonce:
        raise ValueError("a nonce is 6, 14, 22, ... bytes")
    return bytes((OPT_NONCE, (len(nonce) + 2) // 8)) + nonce


def opt_rdnss(lifetime: int, servers: Sequence[bytes]) -> bytes:
    if not servers or any(len(s) != 16 for s in servers) or len(servers) > 127:
        raise ValueError("RDNSS carries 1 to 127 IPv6 addresses")
    return _LIFETIME.pack(OPT_RDNSS, 1 + 2 * len(servers), 0, lifetime) + b"".join(servers)


def opt_dnssl(lifetime: int, domains: Iterable[str]) -> bytes:
    """Names uncompressed, zero-padded to a multiple of 8 (RFC 8106 5.2)."""
    names = b"".join(dns.encode_name(d) for d in domains)
    if not names:
        raise ValueError("DNSSL carries at least one domain")
    names += bytes(-len(names) % 8)
    units = 1 + len(names) // 8
    if units > 255:
        raise ValueError("DNSSL option longer than 2040 bytes")
    return _LIFETIME.pack(OPT_DNSSL, units, 0, lifetime) + names


def opt_redirected(packet: bytes | bytearray | memoryview,
                   room: int = MIN_MTU - IPV6_HEADER_LEN - 40) -> bytes:
    """The Redirected Header option: as much of ``packet`` as fits in ``room``
    bytes of option, cut to a multiple of 8 (RFC 4861 4.6.3)."""
    cap = max(0, min(room, 255 * 8) - 8) & ~7     # data bytes that fit, whole units
    data = bytes(packet[:cap])
    data += bytes(-len(data) % 8)
    return bytes((OPT_REDIRECTED_HEADER, 1 + len(data) // 8)) + bytes(6) + data


# -- message builders ------------------------------------------------------------------

def build_rs(src: bytes, source_lladdr: bytes | None = None, dst: bytes = ALL_ROUTERS) -> bytes:
    """Router Solicitation (RFC 4861 4.1); no SLLA from the unspecified address."""
    opts = opt_source_lladdr(source_lladdr) if source_lladdr is not None else b""
    return _icmp6.build(src, dst, ROUTER_SOLICITATION, 0, 0, opts)


def build_ra(src: bytes, dst: bytes, *, cur_hop_limit: int = 64, flags: int = 0,
             router_lifetime: int = 1800, reachable_time: int = 0, retrans_timer: int = 0,
             options: bytes = b"") -> bytes:
    """Router Advertisement (RFC 4861 4.2); ``options`` from the opt_* builders."""
    rest = (cur_hop_limit & 0xFF) << 24 | (flags & 0xFF) << 16 | (router_lifetime & 0xFFFF)
    return _icmp6.build(src, dst, ROUTER_ADVERTISEMENT, 0, rest,
                        _RA_TAIL.pack(reachable_time, retrans_timer) + options)


def build_ns(src: bytes, dst: bytes, target: bytes, source_lladdr: bytes | None = None,
             nonce: bytes | None = None) -> bytes:
    """Neighbor Solicitation (RFC 4861 4.3); a DAD probe has src ::, no SLLA."""
    opts = b""
    if source_lladdr is not None:
        opts += opt_source_lladdr(source_lladdr)
    if nonce is not None:
        opts += opt_nonce(nonce)
    return _icmp6.build(src, dst, NEIGHBOR_SOLICITATION, 0, 0, target + opts)


def build_na(src: bytes, dst: bytes, target: bytes, *, router: bool = False,
             solicited: bool = False, override: bool = True,
             target_lladdr: bytes | None = None) -> bytes:
    """Neighbor Advertisement (RFC 4861 4.4)."""
    rest = ((NA_ROUTER if router else 0) | (NA_SOLICITED if solicited else 0)
            | (NA_OVERRIDE if override else 0))
    opts = opt_target_lladdr(target_lladdr) if target_lladdr is not None else b""
    return _icmp6.build(src, dst, NEIGHBOR_ADVERTISEMENT, 0, rest, target + opts)


def build_redirect(src: bytes, dst: bytes, target: bytes, destination: bytes,
                   target_lladdr: bytes | None = None,
                   redirected: bytes | bytearray | memoryview = b"") -> bytes:
    """Redirect (RFC 4861 4.5), the redirected packet cut so the whole IPv6
    packet stays within 1280 bytes."""
    opts = opt_target_lladdr(target_lladdr) if target_lladdr is not None else b""
    if redirected:
        opts += opt_redirected(redirected, MIN_MTU - IPV6_HEADER_LEN - 40 - len(opts))
    return _icmp6.build(src, dst, REDIRECT, 0, 0, target + destination + opts)
