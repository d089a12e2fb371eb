"""TCP segments and options (RFC 9293 3.1, RFC 7323, RFC 2018).

``parse`` checks the data offset against the bytes present (``tcp.bad_offset``)
and, given the addresses, the checksum over the pseudo header
(``tcp.bad_checksum``). Options are parsed on demand by ``parse_options``; a
broken option list (a length of 0 or 1, an option running past the end) stops
the walk like Linux does, keeps what was valid before it, and names the
problem in ``TcpOptions.bad`` so the caller can count it. Known options with a
wrong length are skipped. An MSS of 0 is ignored; a window scale above 14 is
used as 14 (RFC 7323 2.3).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import checksum, ones_sum

PROTO = 6
HEADER_LEN = 20
MAX_HEADER_LEN = 60

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERM = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WSCALE = 14  # RFC 7323 2.3
MAX_SACK_BLOCKS = 4

_HDR = struct.Struct("!HHIIHHHH")
_TS = struct.Struct("!II")
_U16 = struct.Struct("!H")
#: NOP NOP TS(10): how Linux (and femtotcp) lays out the timestamp on every segment.
TS_ALIGNED = b"\x01\x01\x08\x0a"
_TS_ONLY = struct.Struct("!III")     # NOP NOP TS(10) as one word, TSval, TSecr
#: The SYN options Linux (and femtotcp) send: MSS, SACK permitted, timestamp,
#: NOP and window scale, as five words (kind/length words checked, values read).
_SYN_STD = struct.Struct("!HHIIII")
_SACK = [struct.Struct(f"!{2 * k}I") for k in range(MAX_SACK_BLOCKS + 1)]


class TcpHeader(NamedTuple):
    src_port: int
    dst_port: int
    seq: int
    ack: int
    header_len: int  # data offset in bytes, already checked: 20..60 and <= segment
    flags: int  # the low 8 bits (CWR ECE URG ACK PSH RST SYN FIN)
    window: int
    checksum: int
    urgent: int
    options: memoryview  # the raw option bytes (may be empty)


class TcpOptions:
    """The options of one segment. Absent options are None/False/empty."""

    __slots__ = ("mss", "wscale", "sack_perm", "sack_blocks", "ts_val", "ts_ecr", "bad")

    def __init__(self) -> None:
        self.mss: int | None = None
        self.wscale: int | None = None
        self.sack_perm = False
        self.sack_blocks: tuple[tuple[int, int], ...] = ()
        self.ts_val: int | None = None
        self.ts_ecr: int | None = None
        self.bad: str | None = None  # counter name of the first problem found

    def __repr__(self) -> str:
        fields = (f"{k}={getattr(self, k)!r}" for k in self.__slots__
                  if getattr(self, k) not in (None, False, ()))
        return f"TcpOptions({', '.join(fields)})"


NO_OPTIONS = TcpOptions()  # shared, never mutated: for segments without options


def parse(segment: bytes | bytearray | memoryview, src: bytes | None = None,
          dst: bytes | None = None) -> tuple[TcpHeader, memoryview]:
    """Split an IP payload into header and payload; verify the checksum when
    the addresses are given (IPv4 or IPv6 pseudo header, RFC 9293 3.1)."""
    n = len(segment)
    if n < HEADER_LEN:
        raise Malformed("tcp.truncated")
    mv = segment if isinstance(segment, memoryview) else memoryview(segment)
    sport, dport, seq, ack, off_flags, window, csum, urgent = _HDR.unpack_from(mv)
    hlen = (off_flags >> 10) & 0x3C
    if hlen < HEADER_LEN or hlen > n:
        raise Malformed("tcp.bad_offset")
    if src is not None and dst is not None:
        if ones_sum(mv, ones_sum(src + dst) + PROTO + n) != 0xFFFF:
            raise Malformed("tcp.bad_checksum")
    return (TcpHeader(sport, dport, seq, ack, hlen, off_flags & 0xFF, window, csum, urgent,
                      mv[HEADER_LEN:hlen]),
            mv[hlen:])


def parse_options(raw: bytes | bytearray | memoryview) -> TcpOptions:
    """Walk an option list (RFC 9293 3.1); never raises, never loops on a zero length."""
    n = len(raw)
    opts = TcpOptions()
    if n == 0:
        return opts
    if n == 12:
        kind, tsv, ecr = _TS_ONLY.unpack_from(raw)
        if kind == 0x0101080A:          # TS_ALIGNED
            opts.ts_val = tsv
            opts.ts_ecr = ecr
            return opts
    elif n == 20:
        mss_kind, mss, sack_ts, tsv, ecr, ws_word = _SYN_STD.unpack_from(raw)
        if mss_kind == 0x0204 and mss and sack_ts == 0x0402080A and \
                ws_word >> 8 == 0x010303 and ws_word & 0xFF <= MAX_WSCALE:
            # the walk below would find the same (a bad MSS or scale: it decides)
            opts.mss = mss
            opts.sack_perm = True
            opts.ts_val = tsv
            opts.ts_ecr = ecr
            opts.wscale = ws_word & 0xFF
            return opts
    i = 0
    while i < n:
        kind = raw[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            opts.bad = "tcp.bad_option_length"
            break
        length = raw[i + 1]
        if length < 2:
            opts.bad = "tcp.bad_option_length"
            break
        if i + length > n:
            opts.bad = "tcp.bad_option_length"
            break
        if kind == OPT_MSS:
            if length == 4:
                mss = _U16.unpack_from(raw, i + 2)[0]
                if mss:
                    opts.mss = mss
                else:
                    opts.bad = opts.bad or "tcp.bad_option_mss"
            else:
                opts.bad = opts.bad or "tcp.bad_option_length"
        elif kind == OPT_WSCALE:
            if length == 3:
                ws = raw[i + 2]
                if ws > MAX_WSCALE:
                    ws = MAX_WSCALE
                    opts.bad = opts.bad or "tcp.bad_option_wscale"
                opts.wscale = ws
            else:
                opts.bad = opts.bad or "tcp.bad_option_length"
        elif kind == OPT_SACK_PERM:
            if length == 2:
                opts.sack_perm = True
            else:
                opts.bad = opts.bad or "tcp.bad_option_length"
        elif kind == OPT_TIMESTAMP:
            if length == 10:
                opts.ts_val, opts.ts_ecr = _TS.unpack_from(raw, i + 2)
            else:
                opts.bad = opts.bad or "tcp.bad_option_length"
        elif kind == OPT_SACK:
            count, rem = divmod(length - 2, 8)
            if rem or not 1 <= count <= MAX_SACK_BLOCKS:
                opts.bad = opts.bad or "tcp.bad_option_length"
            else:
                vals = _SACK[count].unpack_from(raw, i + 2)
                opts.sack_blocks = tuple(zip(vals[0::2], vals[1::2], strict=True))
        i += length
    return opts


def build_options(mss: int | None = None, wscale: int | None = None, sack_perm: bool = False,
                  ts: tuple[int, int] | None = None,
                  sack_blocks: tuple[tuple[int, int], ...] | list[tuple[int, int]] = ()) -> bytes:
    """Options in Linux's layout, padded with NOPs to a multiple of 4 (at most 40 bytes)."""
    out = bytearray()
    if mss is not None:
        out += b"\x02\x04" + _U16.pack(mss)
    if sack_perm and ts is not None:
        out += b"\x04\x02\x08\x0a" + _TS.pack(ts[0] & 0xFFFFFFFF, ts[1] & 0xFFFFFFFF)
    else:
        if ts is not None:
            out += TS_ALIGNED + _TS.pack(ts[0] & 0xFFFFFFFF, ts[1] & 0xFFFFFFFF)
        if sack_perm:
            out += b"\x01\x01\x04\x02"
    if wscale is not None:
        out += b"\x01\x03\x03" + bytes((wscale,))
    if sack_blocks:
        room = (40 - len(out) - 4) // 8
        blocks = list(sack_blocks)[:min(room, MAX_SACK_BLOCKS)]
        if blocks:
            out += b"\x01\x01\x05" + bytes((2 + 8 * len(blocks),))
            for left, right in blocks:
                out += _TS.pack(left & 0xFFFFFFFF, right & 0xFFFFFFFF)
    if len(out) % 4:
        out += b"\x01" * (4 - len(out) % 4)
    if len(out) > 40:
        raise ValueError("TCP options exceed 40 bytes")
    return bytes(out)


def pseudo_sum(src: bytes, dst: bytes) -> int:
    """The address part of the pseudo header; add PROTO + length per segment."""
    return ones_sum(src + dst) + PROTO


def build(src: bytes, dst: bytes, src_port: int, dst_port: int, seq: int, ack: int,
          flags: int, window: int, payload: bytes | bytearray | memoryview = b"",
          options: bytes = b"", urgent: int = 0) -> bytes:
    """A complete segment with its checksum (RFC 9293 3.1)."""
    hlen = HEADER_LEN + len(options)
    if hlen % 4 or hlen > MAX_HEADER_LEN:
        raise ValueError("TCP options must be padded to a multiple of 4, at most 40 bytes")
    seg = bytearray(_HDR.pack(src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                              (hlen << 10) | (flags & 0xFF), window, 0, urgent))
    seg += options
    seg += payload
    csum = checksum(seg, ones_sum(src + dst) + PROTO + len(seg))
    seg[16] = csum >> 8
    seg[17] = csum & 0xFF
    return bytes(seg)


def build_fast(psum: int, src_port: int, dst_port: int, seq: int, ack: int, flags: int,
               window: int, options: bytes, payload: bytes | bytearray) -> bytes:
    """``build`` for the per-segment path: ``psum`` is ``pseudo_sum(src, dst)``,
    ``options`` already padded, ``seq``/``ack`` already 32-bit. The header is
    even-sized, so the payload's sum simply continues the header's."""
    off_flags = (HEADER_LEN + len(options)) << 10 | flags
    hdr = _HDR.pack(src_port, dst_port, seq, ack, off_flags, window, 0, 0) + options
    csum = checksum(payload, ones_sum(hdr, psum + len(hdr) + len(payload)))
    return _HDR.pack(src_port, dst_port, seq, ack, off_flags, window, csum, 0) + options + payload


def flags_str(flags: int) -> str:
    """Flags as tcpdump writes them: S, ., F, R, P, U, E, W."""
    out = ""
    for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"),
                    (CWR, "W")):
        if flags & bit:
            out += ch
    if flags & ACK:
        out += "."
    return out or "none"
