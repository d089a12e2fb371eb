"""IPv4 headers (RFC 791), with every length checked before it is used."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import checksum, ones_sum

_HDR = struct.Struct("!BBHHHBBH4s4s")
HEADER_LEN = 20
#: This host's loopback address (127.0.0.1; all of 127/8 is loopback).
LOOPBACK = b"\x7f\x00\x00\x01"
MF = 0x2000
DF = 0x4000
OFFSET_MASK = 0x1FFF

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# Options (RFC 791 3.1): type 0 ends the list, type 1 is a one-byte NOP,
# everything else is type, length (>= 2, covering type and length), data.
OPT_EOL = 0
OPT_NOP = 1
OPT_RR = 7          # record route
OPT_TS = 68         # timestamp
OPT_LSRR = 131      # loose source route
OPT_SSRR = 137      # strict source route
OPT_RA = 148        # router alert (RFC 2113)
#: The timestamp option's flags (its fourth octet's low half; the high half
#: counts the hosts that found it full).
TS_ONLY = 0
TS_AND_ADDR = 1
TS_PRESPEC = 3
#: Options whose third byte is a pointer: (smallest length, smallest pointer).
_POINTER_MIN = {OPT_RR: (3, 4), OPT_LSRR: (3, 4), OPT_SSRR: (3, 4), OPT_TS: (4, 5)}
SOURCE_ROUTES = frozenset({OPT_LSRR, OPT_SSRR})
#: Options a datagram may carry once (a second one is an error, as Linux's
#: ip_options_compile has it; both source routes count as one kind).
_ONCE = {OPT_RR: OPT_RR, OPT_TS: OPT_TS, OPT_LSRR: OPT_LSRR, OPT_SSRR: OPT_LSRR}


class Ipv4Header(NamedTuple):
    tos: int
    total_len: int
    ident: int
    flags_frag: int  # the 16-bit flags + fragment offset field
    ttl: int
    proto: int
    src: bytes
    dst: bytes
    header_len: int
    options: bytes

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags_frag & MF)

    @property
    def frag_offset(self) -> int:
        """Offset of this fragment's data in bytes."""
        return (self.flags_frag & OFFSET_MASK) << 3

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_frag & DF)


def parse(data: bytes | memoryview, verify_checksum: bool = True) -> tuple[Ipv4Header, memoryview]:
    """Return (header, payload). Ethernet padding after total_len is cut off."""
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("ipv4.truncated")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    vihl, tos, total_len, ident, flags_frag, ttl, proto, _csum, src, dst = _HDR.unpack_from(mv)
    if vihl >> 4 != 4:
        raise Malformed("ipv4.bad_version")
    hlen = (vihl & 0x0F) << 2
    if hlen < HEADER_LEN:
        raise Malformed("ipv4.bad_ihl")
    if total_len < hlen:
        raise Malformed("ipv4.bad_total_length")
    if total_len > n:
        raise Malformed("ipv4.truncated")
    if verify_checksum and ones_sum(mv[:hlen]) != 0xFFFF:
        raise Malformed("ipv4.bad_checksum")
    # The reserved flag bit (RFC 791: must be zero) is ignored on receipt, as
    # Linux does (RFC 1122 1.2.2: be liberal in what you accept).
    options = b""
    if hlen > HEADER_LEN:
        options = bytes(mv[HEADER_LEN:hlen])
        for kind, _ in check_options(options):
            if kind in SOURCE_ROUTES:
                # Hosts drop source-routed datagrams (Linux accept_source_route=0).
                raise Malformed("ipv4.source_route")
    return (
        Ipv4Header(tos, total_len, ident, flags_frag, ttl, proto, src, dst, hlen, options),
        mv[hlen:total_len],
    )


class OptionProblem(NamedTuple):
    """The first malformed option: the counter's name, and the offset of the
    octet at fault in the option bytes (Linux's ip_options_compile pointer: the
    type octet for a bad length, the length or pointer octet for a route or
    timestamp option too short or pointing before its data)."""

    reason: str
    offset: int


def walk_options(options: bytes) -> tuple[list[tuple[int, bytes]], OptionProblem | None]:
    """The one walk of an option list (RFC 791 3.1): the (type, data) of each
    option up to the first problem, and that problem (None when all is well).
    Every length is checked against what is left before it is used."""
    out: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return out, OptionProblem("ipv4.bad_option_length", i)
        length = options[i + 1]
        if length < 2 or i + length > n:
            return out, OptionProblem("ipv4.bad_option_length", i)
        once = _ONCE.get(kind)
        if once is not None:
            if once in seen:
                return out, OptionProblem("ipv4.duplicate_option", i)
            seen.add(once)
        limits = _POINTER_MIN.get(kind)
        if limits is not None:
            if length < limits[0]:
                return out, OptionProblem("ipv4.bad_option_pointer", i + 1)
            pointer = options[i + 2]
            if pointer < limits[1]:
                return out, OptionProblem("ipv4.bad_option_pointer", i + 2)
            if kind == OPT_RR or kind == OPT_TS:
                offset = _record_problem(options, i, kind, length, pointer)
                if offset:
                    return out, OptionProblem("ipv4.bad_option_pointer", offset)
        elif kind == OPT_RA and length < 4:
            return out, OptionProblem("ipv4.bad_option_length", i + 1)
        out.append((kind, options[i + 2:i + length]))
        i += length
    return out, None


def _record_problem(options: bytes, i: int, kind: int, length: int, pointer: int) -> int:
    """For a record route or timestamp option at ``i``: the offset of the octet
    at fault when a host could not record in it as Linux's ip_options_compile
    checks (a pointer that leaves part of a slot; a timestamp option found
    full by 15 hosts already), else 0."""
    if pointer <= length:
        slot = 8 if kind == OPT_TS and options[i + 3] & 0x0F in (TS_AND_ADDR, TS_PRESPEC) \
            else 4
        return i + 2 if pointer + slot - 1 > length else 0
    if kind == OPT_TS and options[i + 3] & 0x0F != TS_PRESPEC and options[i + 3] >> 4 == 15:
        return i + 3
    return 0


def reply_options(options: bytes, ours: bytes, now_ms: int,
                  is_ours: Callable[[bytes], bool]) -> bytes | None:
    """The options of a reply (an echo or timestamp reply, an ICMP error) to a
    datagram to ``ours`` that carried ``options`` (checked by ``walk_options``),
    as Linux builds them, which RFC 1122 3.2.2.6 asks of an echo reply: the
    record route and timestamp options come back, each with what this host
    records twice, once on receipt (ip_options_compile) and once on the way
    out (ip_options_echo, ip_options_build), so the recorded route is the
    round trip's; every other option is left out; the list is padded to a
    multiple of 4 octets. ``now_ms``: milliseconds since midnight UT (RFC 791's
    timestamp). None when a recording option's room ends in the middle of a
    slot we would fill: Linux then sends no reply."""
    rr = ts = None
    for i, kind, length in _spans(options):
        if kind == OPT_RR:
            rr = bytearray(options[i:i + length])
        elif kind == OPT_TS:
            ts = bytearray(options[i:i + length])
    out = bytearray()
    if rr is not None:
        length, pointer = rr[1], rr[2]
        if pointer <= length:                   # room on receipt: ours goes in
            rr[pointer - 1:pointer + 3] = ours
            pointer += 4
            if pointer <= length:               # and again as the reply leaves
                if pointer + 3 > length:
                    return None
                rr[pointer - 1:pointer + 3] = ours
                pointer += 4
            rr[2] = pointer
        out += rr
    if ts is not None:
        if not _timestamps(ts, ours, now_ms.to_bytes(4, "big"), is_ours):
            return None
        out += ts
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    return bytes(out)


def _timestamps(ts: bytearray, ours: bytes, now: bytes,
                is_ours: Callable[[bytes], bool]) -> bool:
    """``reply_options`` for a timestamp option, in place; False when the
    reply cannot carry it."""
    length, pointer, flag = ts[1], ts[2], ts[3] & 0x0F
    need_addr = need_time = False
    if pointer > length:                        # full: one more host counted
        if flag != TS_PRESPEC:
            ts[3] = flag | ((ts[3] >> 4) + 1) << 4
        return True
    if flag == TS_ONLY:
        ts[pointer - 1:pointer + 3] = now
        pointer += 4
        need_time = True
    elif flag == TS_AND_ADDR:
        ts[pointer - 1:pointer + 3] = ours
        ts[pointer + 3:pointer + 7] = now
        pointer += 8
        need_addr = need_time = True
    elif flag == TS_PRESPEC and is_ours(bytes(ts[pointer - 1:pointer + 3])):
        ts[pointer + 3:pointer + 7] = now
        pointer += 8
        need_time = True
    if pointer > length:
        ts[2] = pointer
        return True
    # The slots the reply fills as it leaves.
    if need_addr:
        if pointer + 3 > length:
            return False
        ts[pointer - 1:pointer + 3] = ours
        pointer += 4
    if need_time:
        if pointer + 3 > length:
            return False
        if flag != TS_PRESPEC:
            ts[pointer - 1:pointer + 3] = now
            pointer += 4
        elif pointer + 7 <= length and is_ours(bytes(ts[pointer - 1:pointer + 3])):
            ts[pointer + 3:pointer + 7] = now
            pointer += 8
    ts[2] = pointer
    return True


def check_options(options: bytes) -> list[tuple[int, bytes]]:
    """The options as (type, data); ``Malformed`` names the first problem."""
    out, problem = walk_options(options)
    if problem is not None:
        raise Malformed(problem.reason)
    return out


def build(src: bytes, dst: bytes, proto: int, payload: bytes | bytearray | memoryview,
          ttl: int = 64, tos: int = 0, ident: int = 0, flags_frag: int = 0,
          options: bytes = b"") -> bytes:
    if len(options) % 4:
        options = options + b"\x00" * (4 - len(options) % 4)
    if not options:
        return b"".join((header_only(src, dst, proto, len(payload), ttl, tos, ident,
                                     flags_frag), payload))
    hlen = HEADER_LEN + len(options)
    header = bytearray(_HDR.pack(0x40 | (hlen >> 2), tos, hlen + len(payload), ident,
                                 flags_frag, ttl, proto, 0, src, dst) + options)
    csum = checksum(header)
    header[10] = csum >> 8
    header[11] = csum & 0xFF
    return bytes(header) + bytes(payload)


def fragment_options(options: bytes) -> bytes:
    """The options of a fragment after the first: those whose type has the
    "copied" flag (0x80, RFC 791 3.1) stay, every other becomes NOPs, so the
    header keeps its length (as Linux's ip_options_fragment)."""
    out = bytearray(options)
    for i, kind, length in _spans(options):
        if not kind & 0x80:
            out[i:i + length] = bytes([OPT_NOP]) * length
    return bytes(out)


def _spans(options: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, type, length) of each option but NOPs, up to the end of the
    list, in options ``walk_options`` found sound (or built here): a length
    that would not be is where the walk stops."""
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        length = options[i + 1] if i + 1 < n else 0
        if length < 2 or i + length > n:
            return
        yield i, kind, length
        i += length


def header_only(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int, tos: int,
                ident: int, flags_frag: int) -> bytes:
    """A 20-byte header (no options) for ``payload_len`` bytes of payload: packed
    once to sum it (a non-zero 160-bit value, so ``%`` alone gives the ones'
    complement sum, 0 standing for 0xFFFF), once with the checksum."""
    total = HEADER_LEN + payload_len
    r = int.from_bytes(_HDR.pack(0x45, tos, total, ident, flags_frag, ttl, proto, 0, src, dst),
                       "big") % 0xFFFF
    return _HDR.pack(0x45, tos, total, ident, flags_frag, ttl, proto, 0xFFFF - r if r else 0,
                     src, dst)
