"""IPv6 extension headers (RFC 8200 4): the chain walk, option TLVs, builders.

``walk`` follows the chain from the fixed header to the upper layer, bounded
in bytes (``MAX_CHAIN_LEN``, so in headers too: each is 8 bytes at least), with
every length checked before it is used. Headers may repeat any number of times
within that bound (RFC 8200 4.1: "accept and attempt to process extension
headers in any order and occurring any number of times"; Linux counts none).
What it finds is either

* a broken packet: ``Malformed(reason)``, dropped without an ICMPv6 error
  (lengths past the end, bad padding, too many options: Linux drops these
  silently too), or
* a rule the packet breaks that RFC 8200 answers with a Parameter Problem:
  returned as ``Chain.problem`` (a ``Problem``: counter name, what to do, the
  ICMPv6 code and the pointer into the invoking packet), so the stack decides
  about the error message with its rate limit and multicast rules, or
* the upper layer: ``Chain.upper`` and where its bytes start.

Rules applied (RFC sections in each place): Hop-by-Hop only right after the
fixed header (4.1); unknown options by their two high bits (4.2); Pad1/PadN
runs of at most 7 bytes, PadN all zero, at most ``MAX_OPTIONS`` other options
per header (Linux's limits); a Routing header with segments left is refused
(a host forwards nothing; RFC 5095 for type 0, which is also flagged when
segments left is 0); a fragment's length and offset checked (4.5); the whole
header chain in the first fragment (RFC 7112); atomic fragments processed in
isolation (RFC 6946).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.ipv6 import (
    HEADER_LEN,
    MAX_PAYLOAD,
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_FRAGMENT,
    PROTO_HOPOPTS,
    PROTO_ICMP6,
    PROTO_NONE,
    PROTO_ROUTING,
    PROTO_TCP,
    PROTO_UDP,
)

#: The extension headers the walk steps through; anything else is the upper layer.
EXT_HEADERS = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT, PROTO_DSTOPTS})
MAX_CHAIN_LEN = 2048     # one Hop-by-Hop header of the largest size fits
FRAGMENT_LEN = 8
#: The most headers ``MAX_CHAIN_LEN`` bytes can hold (``skip_chain``'s bound).
MAX_HEADERS = MAX_CHAIN_LEN // FRAGMENT_LEN
MAX_OPTIONS = 8          # non-padding options per header (Linux max_{hbh,dst}_opts_number)
MAX_PAD = 7              # consecutive padding bytes (Linux: more is an attack)

OPT_PAD1 = 0
OPT_PADN = 1
OPT_TUNNEL_LIMIT = 4     # RFC 2473, Destination Options
OPT_ROUTER_ALERT = 5     # RFC 2711, Hop-by-Hop
OPT_JUMBO = 0xC2         # RFC 2675: no jumbograms here, its errors answered (3)

ROUTER_ALERT_MLD = 0     # RFC 2711 value for MLD (RFC 3810 5)

ROUTING_TYPE0 = 0        # deprecated by RFC 5095

# ICMPv6 Parameter Problem codes (RFC 4443 3.4, RFC 7112).
PP_HEADER_FIELD = 0
PP_NEXT_HEADER = 1
PP_OPTION = 2
PP_INCOMPLETE_CHAIN = 3

#: Smallest upper-layer header that must sit in a first fragment (RFC 7112 5,
#: as Linux's ipv6_frag_thdr_truncated counts it); others need one byte.
_UPPER_MIN = {PROTO_TCP: 20, PROTO_UDP: 8, PROTO_ICMP6: 8, PROTO_NONE: 0}

_FRAG = struct.Struct("!BxHI")
_ROUTING = struct.Struct("!BBBB")


class Action(IntEnum):
    """What to do with a packet holding an unrecognized option: its type's two
    high bits (RFC 8200 4.2)."""

    SKIP = 0
    DISCARD = 1
    DISCARD_ICMP = 2
    DISCARD_ICMP_UNLESS_MULTICAST = 3


class Problem(NamedTuple):
    """A packet to discard, maybe with an ICMPv6 Parameter Problem."""

    reason: str       # the drop counter's name
    action: Action    # DISCARD, DISCARD_ICMP or DISCARD_ICMP_UNLESS_MULTICAST
    code: int         # Parameter Problem code (PP_*)
    pointer: int      # offset in the invoking packet, from the fixed header's first byte


class FragmentHeader(NamedTuple):
    next_header: int
    offset: int       # in bytes (the field times 8)
    more: bool        # the M flag
    ident: int

    @property
    def atomic(self) -> bool:
        """Offset 0 and no more fragments: a whole packet (RFC 6946)."""
        return self.offset == 0 and not self.more


class Chain(NamedTuple):
    """Where the walk ended.

    Without a fragment (or with an atomic one) ``upper`` is the upper-layer
    protocol and its bytes start at ``payload[offset:]``. For a fragment to
    reassemble, ``upper`` is the Fragment header's next header, ``offset`` the
    start of the fragment's data, ``unfragmentable`` the payload bytes before
    the Fragment header, and ``nh_pointer`` the field that named the Fragment
    header (after reassembly it names ``upper``). ``nh_pointer`` is otherwise
    the field that holds ``upper`` (the pointer of a Parameter Problem code 1
    when no handler takes it)."""

    upper: int
    offset: int
    nh_pointer: int
    fragment: FragmentHeader | None
    unfragmentable: int
    router_alert: int | None   # the Hop-by-Hop Router Alert value (RFC 2711)
    rh0: bool                  # a type 0 Routing header was present (RFC 5095)
    problem: Problem | None


def _problem(reason: str, action: Action, code: int, pointer: int) -> Chain:
    return Chain(-1, 0, 0, None, 0, None, False, Problem(reason, action, code, pointer))


def _options(area: memoryview, hop_by_hop: bool, where: int,
             out: list[tuple[int, bytes]] | None = None) -> tuple[int | None, Problem | None]:
    """Walk the TLVs of a Hop-by-Hop or Destination Options header. ``area``
    is the header's bytes after next-header and length; ``where`` is the
    packet offset of ``area[0]``. Returns (router alert value, problem): the
    first unknown option not to be skipped ends the walk as the problem,
    unless ``out`` is given, which collects every non-padding option."""
    alert: int | None = None
    n = len(area)
    i = 0
    pad = 0
    count = 0
    while i < n:
        kind = area[i]
        if kind == OPT_PAD1:
            pad += 1
            if pad > MAX_PAD:
                raise Malformed("ipv6.bad_padding")
            i += 1
            continue
        if i + 2 > n:
            raise Malformed("ipv6.bad_option_length")
        end = i + 2 + area[i + 1]
        if end > n:
            raise Malformed("ipv6.bad_option_length")
        if kind == OPT_PADN:
            pad += end - i
            if pad > MAX_PAD or any(area[i + 2:end]):
                raise Malformed("ipv6.bad_padding")
            i = end
            continue
        pad = 0
        count += 1
        if count > MAX_OPTIONS:
            raise Malformed("ipv6.too_many_options")
        if out is not None:
            out.append((kind, bytes(area[i + 2:end])))
        if hop_by_hop and kind == OPT_JUMBO and out is None:
            # RFC 2675 3, as Linux's ipv6_hop_jumbo: a wrong length or alignment
            # (4n+2) is dropped; a jumbo length that fits 16 bits is a Parameter
            # Problem code 0 at that length; and, the Payload Length of a packet
            # from our links never being 0, so is any other (at the option).
            if end - i != 6 or (where + i) & 3 != 2:
                raise Malformed("ipv6.bad_jumbo_option")
            at = where + i + 2 if int.from_bytes(area[i + 2:end], "big") <= MAX_PAYLOAD \
                else where + i
            return alert, Problem("ipv6.jumbo_option", Action.DISCARD_ICMP, PP_HEADER_FIELD, at)
        if hop_by_hop and kind == OPT_ROUTER_ALERT:
            if end - i != 4:
                raise Malformed("ipv6.bad_router_alert")
            alert = area[i + 2] << 8 | area[i + 3]
        elif kind & 0xC0 and out is None:
            return alert, Problem("ipv6.unknown_option", Action(kind >> 6), PP_OPTION,
                                  where + i)
        i = end
    return alert, None


def read_options(header: bytes | bytearray | memoryview,
                 hop_by_hop: bool = False) -> list[tuple[int, bytes]]:
    """The non-padding options of one whole Hop-by-Hop or Destination Options
    header (next header and length bytes included), checked as ``walk`` does;
    an unknown option does not stop the reading here."""
    mv = header if isinstance(header, memoryview) else memoryview(header)
    if len(mv) < 2 or (mv[1] + 1) * 8 != len(mv):
        raise Malformed("ipv6.ext_truncated")
    out: list[tuple[int, bytes]] = []
    _options(mv[2:], hop_by_hop, 0, out)
    return out


def walk(next_header: int, payload: bytes | bytearray | memoryview, *, base: int = HEADER_LEN,
         nh_pointer: int = 6, first: bool = True) -> Chain:
    """Follow the extension headers from ``next_header`` through ``payload``.

    ``base`` is the packet offset of ``payload[0]`` and ``nh_pointer`` that of
    the field holding ``next_header`` (both for Parameter Problem pointers);
    ``first`` says whether ``payload`` directly follows the fixed header (the
    one place Hop-by-Hop may be). After reassembly, continue with
    ``walk(chain.upper, data, base=HEADER_LEN + chain.unfragmentable,
    nh_pointer=chain.nh_pointer, first=False)``."""
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    n = len(mv)
    pos = 0
    alert: int | None = None
    rh0 = False
    nh = next_header
    fragment: FragmentHeader | None = None
    unfragmentable = 0
    while nh in EXT_HEADERS:
        if nh == PROTO_HOPOPTS and not (first and pos == 0):
            # RFC 8200 4: Hop-by-Hop anywhere else is an unrecognized next header.
            return _problem("ipv6.hbh_not_first", Action.DISCARD_ICMP, PP_NEXT_HEADER,
                            nh_pointer)
        if nh == PROTO_FRAGMENT:
            length = FRAGMENT_LEN
            if pos + length > n:
                raise Malformed("ipv6.ext_truncated")
        else:
            if pos + 2 > n:
                raise Malformed("ipv6.ext_truncated")
            length = (mv[pos + 1] + 1) << 3
            if pos + length > n:
                raise Malformed("ipv6.ext_truncated")
        if pos + length > MAX_CHAIN_LEN:
            raise Malformed("ipv6.ext_chain_too_long")
        here = base + pos
        if nh == PROTO_HOPOPTS or nh == PROTO_DSTOPTS:
            ra, problem = _options(mv[pos + 2:pos + length], nh == PROTO_HOPOPTS, here + 2)
            if problem is not None:
                return Chain(-1, 0, 0, None, 0, alert, rh0, problem)
            if ra is not None:
                alert = ra
        elif nh == PROTO_ROUTING:
            _nh, _len, rtype, segments_left = _ROUTING.unpack_from(mv, pos)
            if rtype == ROUTING_TYPE0:
                rh0 = True
            if segments_left:
                # RFC 8200 4.4: a host processes no routing type, so any header
                # with segments left is unrecognized: code 0 at the type field.
                reason = "ipv6.rh0" if rtype == ROUTING_TYPE0 else "ipv6.unknown_routing_type"
                return Chain(-1, 0, 0, None, 0, alert, rh0,
                             Problem(reason, Action.DISCARD_ICMP, PP_HEADER_FIELD, here + 2))
        else:
            fnh, off_m, ident = _FRAG.unpack_from(mv, pos)
            fragment = FragmentHeader(fnh, off_m & 0xFFF8, bool(off_m & 1), ident)
            unfragmentable = pos
            data_len = n - pos - FRAGMENT_LEN
            if fragment.more and data_len & 7:
                # RFC 8200 4.5: pointing at the Payload Length field.
                return Chain(-1, 0, 0, fragment, pos, alert, rh0,
                             Problem("ipv6.bad_fragment_length", Action.DISCARD_ICMP,
                                     PP_HEADER_FIELD, 4))
            if (base - HEADER_LEN) + pos + fragment.offset + data_len > MAX_PAYLOAD:
                return Chain(-1, 0, 0, fragment, pos, alert, rh0,
                             Problem("ipv6.fragment_too_big", Action.DISCARD_ICMP,
                                     PP_HEADER_FIELD, here + 2))
            if not fragment.atomic:
                if fragment.offset == 0 and not _chain_complete(fnh, mv[pos + FRAGMENT_LEN:]):
                    # RFC 7112 5: the first fragment lacks part of the header chain.
                    return Chain(-1, 0, 0, fragment, pos, alert, rh0,
                                 Problem("ipv6.incomplete_chain", Action.DISCARD_ICMP,
                                         PP_INCOMPLETE_CHAIN, 0))
                return Chain(fnh, pos + FRAGMENT_LEN, nh_pointer, fragment, pos, alert,
                             rh0, None)
            # An atomic fragment: the rest of the chain is processed right here.
        nh_pointer = here
        nh = mv[pos]
        pos += length
    return Chain(nh, pos, nh_pointer, fragment, unfragmentable, alert, rh0, None)


def skip_chain(next_header: int,
               payload: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(upper-layer protocol, its offset) by header lengths alone, processing
    no option: for quoted packets in ICMPv6 errors and RFC 7112's check.
    Stops at a fragment that is not the first one, returning
    (PROTO_FRAGMENT, offset of that Fragment header). Bounded like ``walk``."""
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    n = len(mv)
    pos = 0
    nh = next_header
    for _ in range(MAX_HEADERS):
        if nh == PROTO_FRAGMENT:
            if pos + FRAGMENT_LEN > n:
                raise Malformed("ipv6.ext_truncated")
            if int.from_bytes(mv[pos + 2:pos + 4], "big") & 0xFFF8:
                return PROTO_FRAGMENT, pos
            length = FRAGMENT_LEN
        elif nh in EXT_HEADERS or nh == PROTO_AH:
            if pos + 2 > n:
                raise Malformed("ipv6.ext_truncated")
            # AH counts its length in 4-byte units, minus 2 (RFC 4302 2.2).
            length = (mv[pos + 1] + 2) << 2 if nh == PROTO_AH else (mv[pos + 1] + 1) << 3
            if pos + length > n:
                raise Malformed("ipv6.ext_truncated")
        else:
            return nh, pos
        nh = mv[pos]
        pos += length
    raise Malformed("ipv6.too_many_ext_headers")


def _chain_complete(next_header: int, rest: memoryview) -> bool:
    """Whether the headers after a first fragment's Fragment header reach
    through the upper-layer header (RFC 7112 5)."""
    try:
        upper, offset = skip_chain(next_header, rest)
    except Malformed:
        return False
    if upper == PROTO_FRAGMENT:
        return False
    return offset + _UPPER_MIN.get(upper, 1) <= len(rest)


# -- builders ------------------------------------------------------------------------

def _pad(n: int) -> bytes:
    """``n`` bytes of padding: Pad1 for one byte, PadN otherwise."""
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes((OPT_PADN, n - 2)) + bytes(n - 2)


def build_options_header(next_header: int, options: Sequence[tuple[int, bytes]]) -> bytes:
    """A Hop-by-Hop or Destination Options header: the options in order, then
    Pad1/PadN to a multiple of 8 bytes (RFC 8200 4.2)."""
    body = bytearray()
    for kind, data in options:
        if kind in (OPT_PAD1, OPT_PADN):
            raise ValueError("padding is added by the builder")
        if len(data) > 255:
            raise ValueError(f"option {kind} data longer than 255 bytes")
        body += bytes((kind, len(data))) + data
    total = 2 + len(body)
    total += -total % 8
    if total > 2048:
        raise ValueError("options header longer than 2048 bytes")
    return bytes((next_header, total // 8 - 1)) + bytes(body) + _pad(total - 2 - len(body))


def build_hop_by_hop(next_header: int, options: Sequence[tuple[int, bytes]]) -> bytes:
    return build_options_header(next_header, options)


def build_dest_options(next_header: int, options: Sequence[tuple[int, bytes]]) -> bytes:
    return build_options_header(next_header, options)


def router_alert(value: int = ROUTER_ALERT_MLD) -> tuple[int, bytes]:
    """The Router Alert option (RFC 2711) for ``build_hop_by_hop``."""
    return OPT_ROUTER_ALERT, value.to_bytes(2, "big")


def build_routing(next_header: int, routing_type: int, segments_left: int,
                  data: bytes = b"\x00\x00\x00\x00") -> bytes:
    """A Routing header; ``data`` is everything after the first four bytes."""
    total = 4 + len(data)
    if total % 8 or total > 2048:
        raise ValueError("a Routing header is a multiple of 8 bytes, at most 2048")
    return _ROUTING.pack(next_header, total // 8 - 1, routing_type, segments_left) + data


def build_fragment(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """A Fragment header; ``offset`` in bytes, a multiple of 8."""
    if offset & 7 or not 0 <= offset <= 0xFFF8:
        raise ValueError(f"fragment offset must be a multiple of 8 up to 65528: {offset}")
    return _FRAG.pack(next_header, offset | int(more), ident & 0xFFFFFFFF)


# -- fragmentation on output (RFC 8200 4.5) ------------------------------------------------

def unfragmentable_len(next_header: int, payload: bytes | bytearray | memoryview) -> int:
    """Bytes of ``payload`` that every fragment repeats (RFC 8200 4.5): the
    headers up to and including a Routing header if present, else a leading
    Hop-by-Hop header, else none. Only headers we build are walked: their
    lengths are trusted no further than the bytes present."""
    n = len(payload)
    pos = 0
    keep = 0
    nh = next_header
    for _ in range(MAX_HEADERS):
        if nh not in (PROTO_HOPOPTS, PROTO_DSTOPTS, PROTO_ROUTING) or pos + 2 > n:
            break
        length = (payload[pos + 1] + 1) << 3
        if pos + length > n:
            raise ValueError("extension header longer than the payload")
        if nh == PROTO_ROUTING or (nh == PROTO_HOPOPTS and pos == 0):
            keep = pos + length
        nh = payload[pos]
        pos += length
    return keep


def fragment(next_header: int, payload: bytes | bytearray | memoryview, mtu: int,
             ident: int) -> list[tuple[int, bytes]]:
    """Cut an IPv6 payload (``next_header`` naming its first header) into
    fragments for packets of at most ``mtu`` bytes (RFC 8200 4.5): each is the
    unfragmentable part, a Fragment header and a piece of the rest, every
    piece but the last a multiple of 8 bytes. Returns (the fixed header's next
    header, fragment payload) per fragment, in order."""
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    if len(mv) > MAX_PAYLOAD:
        raise ValueError("payload longer than 65535 bytes")
    keep = unfragmentable_len(next_header, mv)
    chunk = (mtu - HEADER_LEN - keep - FRAGMENT_LEN) & ~7
    if chunk < 8:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment")
    if keep == 0:
        first_nh, frag_nh, head = PROTO_FRAGMENT, next_header, b""
    else:
        # The last unfragmentable header now names the Fragment header.
        last = 0
        nh = next_header
        pos = 0
        while pos < keep:
            last = pos
            nh = mv[pos]
            pos += (mv[pos + 1] + 1) << 3
        frag_nh = nh
        first_nh = next_header
        head = bytes(mv[:last]) + bytes((PROTO_FRAGMENT,)) + bytes(mv[last + 1:keep])
    rest = mv[keep:]
    total = len(rest)
    out = []
    offset = 0
    while True:
        piece = rest[offset:offset + chunk]
        more = offset + len(piece) < total
        out.append((first_nh, head + build_fragment(frag_nh, offset, more, ident)
                    + bytes(piece)))
        offset += len(piece)
        if not more:
            return out
