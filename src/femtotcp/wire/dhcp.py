"""BOOTP/DHCPv4 messages (RFC 951, RFC 2131 2, RFC 2132), every length checked.

Options are collected from the options field and, when option 52 (overload,
RFC 2132 9.3) says so, from ``file`` and then ``sname``; an overload option
found inside those fields is ignored, so the walk never recurses. An option
that appears more than once is concatenated in order (RFC 3396 5). Each
option's length is checked against the field it sits in, fixed-size options
against their size, and list options must hold whole entries only.
Domain search (119) is decoded as RFC 3397 compressed names whose pointers
may only go backwards within the option's data (the FreeBSD dhclient bug of
NAME:WRECK, CVE-2020-7461, was an unchecked walk here).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from femtotcp.wire import Malformed, dns

SERVER_PORT = 67
CLIENT_PORT = 68
BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHER = 1
MAGIC = b"\x63\x82\x53\x63"
FLAG_BROADCAST = 0x8000
FIXED_LEN = 236                 # op .. file
MIN_LEN = FIXED_LEN + 4         # plus the magic cookie
MIN_BOOTP = 300                 # RFC 951: a BOOTP message is at least 300 bytes

# Message types (option 53, RFC 2132 9.6).
DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8
TYPE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
              ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

# Options (RFC 2132).
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_TIME_OFFSET = 2
OPT_ROUTER = 3
OPT_TIME_SERVER = 4
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN_NAME = 15
OPT_MTU = 26
OPT_BROADCAST = 28
OPT_NTP = 42
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
OPT_DOMAIN_SEARCH = 119
OPT_END = 255

#: Options whose value has exactly this many bytes.
FIXED_SIZE: dict[int, int] = {
    OPT_SUBNET_MASK: 4, OPT_TIME_OFFSET: 4, OPT_MTU: 2, OPT_BROADCAST: 4,
    OPT_REQUESTED_IP: 4, OPT_LEASE_TIME: 4, OPT_OVERLOAD: 1, OPT_MESSAGE_TYPE: 1,
    OPT_SERVER_ID: 4, OPT_MAX_SIZE: 2, OPT_T1: 4, OPT_T2: 4,
}
#: Options that are lists of addresses: a non-empty whole number of 4-byte entries.
ADDRESS_LISTS = frozenset({OPT_ROUTER, OPT_TIME_SERVER, OPT_DNS, OPT_NTP, 5, 7, 8, 9, 10, 11,
                           41, 44, 45, 48, 49, 65, 69, 70, 71, 72, 73, 74, 75, 76})

_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class DhcpMessage(NamedTuple):
    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    chaddr: bytes       # the first hlen bytes of the 16-byte field
    sname: bytes        # empty when overloaded with options
    file: bytes
    options: dict[int, bytes]

    @property
    def message_type(self) -> int | None:
        v = self.options.get(OPT_MESSAGE_TYPE)
        return v[0] if v else None

    def addr(self, code: int) -> bytes | None:
        """A 4-byte address option (already length-checked) or None."""
        return self.options.get(code)

    def u32(self, code: int) -> int | None:
        v = self.options.get(code)
        return int.from_bytes(v, "big") if v is not None else None

    def addresses(self, code: int) -> list[bytes]:
        v = self.options.get(code, b"")
        return [v[i:i + 4] for i in range(0, len(v), 4)]


def _walk(field: memoryview, out: dict[int, bytearray], where: str) -> bool:
    """Collect options from one field; True when END was seen."""
    i = 0
    n = len(field)
    while i < n:
        code = field[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return True
        if i + 1 >= n:
            raise Malformed("dhcp.bad_option_length")
        length = field[i + 1]
        if i + 2 + length > n:
            raise Malformed("dhcp.bad_option_length")
        value = field[i + 2:i + 2 + length]
        if code == OPT_OVERLOAD and where != "options":
            pass  # RFC 2132 9.3: only meaningful in the options field; never recurse
        else:
            buf = out.get(code)
            if buf is None:
                out[code] = bytearray(value)
            else:
                buf += value  # RFC 3396: split long options are concatenated
        i += 2 + length
    return False


def _check(options: dict[int, bytes]) -> None:
    for code, value in options.items():
        size = FIXED_SIZE.get(code)
        if size is not None and len(value) != size:
            raise Malformed("dhcp.bad_option_length")
        if code in ADDRESS_LISTS and (not value or len(value) % 4):
            raise Malformed("dhcp.bad_option_length")
    t = options.get(OPT_MESSAGE_TYPE)
    if t is not None and not DISCOVER <= t[0] <= INFORM:
        raise Malformed("dhcp.bad_message_type")
    ov = options.get(OPT_OVERLOAD)
    if ov is not None and ov[0] not in (1, 2, 3):
        raise Malformed("dhcp.bad_overload")
    search = options.get(OPT_DOMAIN_SEARCH)
    if search is not None:
        domain_search(search)
    mask = options.get(OPT_SUBNET_MASK)
    if mask is not None:
        m = int.from_bytes(mask, "big")
        inv = ~m & 0xFFFFFFFF
        if inv & (inv + 1):
            raise Malformed("dhcp.bad_subnet_mask")  # not a contiguous prefix


def parse(data: bytes | memoryview) -> DhcpMessage:
    """Parse a BOOTP/DHCP message (RFC 2131 2); raise Malformed when invalid."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if len(mv) < MIN_LEN:
        raise Malformed("dhcp.truncated")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = _FIXED.unpack_from(mv)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise Malformed("dhcp.bad_op")
    if hlen > 16:
        raise Malformed("dhcp.bad_hlen")
    if bytes(mv[FIXED_LEN:MIN_LEN]) != MAGIC:
        raise Malformed("dhcp.bad_cookie")
    raw: dict[int, bytearray] = {}
    _walk(mv[MIN_LEN:], raw, "options")
    ov = raw.get(OPT_OVERLOAD)
    overload = ov[0] if ov is not None and len(ov) == 1 else 0
    # RFC 2132 9.3: "file" is read first, then "sname".
    if overload & 1:
        _walk(mv[108:236], raw, "file")
    if overload & 2:
        _walk(mv[44:108], raw, "sname")
    options = {k: bytes(v) for k, v in raw.items()}
    _check(options)
    return DhcpMessage(op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr,
                       giaddr, chaddr[:hlen],
                       b"" if overload & 2 else sname.split(b"\0", 1)[0],
                       b"" if overload & 1 else file.split(b"\0", 1)[0],
                       options)


def _option_bytes(options: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in options:
        if not value:
            out += bytes([code, 0])
            continue
        # RFC 3396: values longer than 255 bytes are split into several options.
        for i in range(0, len(value), 255):
            chunk = value[i:i + 255]
            out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


def build(op: int, xid: int, chaddr: bytes, options: Iterable[tuple[int, bytes]],
          ciaddr: bytes = b"\0\0\0\0", yiaddr: bytes = b"\0\0\0\0",
          siaddr: bytes = b"\0\0\0\0", giaddr: bytes = b"\0\0\0\0",
          flags: int = 0, secs: int = 0, hops: int = 0, htype: int = HTYPE_ETHER,
          sname: bytes = b"", file: bytes = b"",
          raw_options: bytes | None = None) -> bytes:
    """Build a message; ``options`` are (code, value) pairs in order, END is
    appended and the message padded to the BOOTP minimum of 300 bytes.
    ``raw_options`` replaces the encoded options verbatim (tests)."""
    if len(chaddr) > 16 or len(sname) > 64 or len(file) > 128:
        raise ValueError("chaddr, sname or file too long")
    head = _FIXED.pack(op, htype, len(chaddr), hops, xid & 0xFFFFFFFF, secs & 0xFFFF, flags,
                       ciaddr, yiaddr, siaddr, giaddr, chaddr.ljust(16, b"\0"),
                       sname.ljust(64, b"\0"), file.ljust(128, b"\0"))
    body = raw_options if raw_options is not None else _option_bytes(options) + bytes([OPT_END])
    msg = head + MAGIC + body
    if len(msg) < MIN_BOOTP:
        msg += b"\0" * (MIN_BOOTP - len(msg))
    return msg


def u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "big")


def prefix_to_mask(prefix: int) -> bytes:
    return u32((0xFFFFFFFF << (32 - prefix)) if prefix else 0)


def mask_to_prefix(mask: bytes) -> int:
    """Prefix length of a contiguous mask (parse already rejected others)."""
    return bin(int.from_bytes(mask, "big")).count("1")


def domain_search(value: bytes) -> list[str]:
    """Decode option 119 (RFC 3397 2): a list of names, compressed with
    pointers relative to the start of the (concatenated) option data."""
    names: list[str] = []
    pos = 0
    n = len(value)
    cache: dns.NameCache = {}
    while pos < n:
        try:
            name, nxt = dns.read_name(value, pos, 0, cache)
        except Malformed:
            raise Malformed("dhcp.bad_domain_search") from None
        if nxt <= pos or not name:
            # A root name is no search domain; nxt > pos always holds, and
            # checking it keeps the loop provably finite.
            raise Malformed("dhcp.bad_domain_search")
        names.append(name)
        pos = nxt
    return names


def encode_domain_search(names: Iterable[str]) -> bytes:
    """Option 119's value for ``names``, compressed like DNS (RFC 3397 2)."""
    w = dns.NameWriter(compress=True)
    for name in names:
        w.name(name)
    return bytes(w.buf)


def text(value: bytes) -> str:
    """An NVT-ASCII option (host name, domain name, message) as text, with
    NULs cut and non-printable bytes replaced: never trusted as-is."""
    value = value.split(b"\0", 1)[0]
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in value)
