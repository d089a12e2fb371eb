"""DNS messages (RFC 1035 4), parsed with the rules of RFC 9267.

Names are where DNS parsers break (NAME:WRECK, AMNESIA:33, Ripple20), so
``read_name`` enforces, before using any byte:

* a compression pointer points strictly before the start of the run of labels
  that contains it (RFC 9267 2): offsets only decrease, so a walk ends after
  at most one jump per byte and can never loop; and never into the 12-byte
  header (``min_pointer``);
* label types 01 and 10 (RFC 6891 / obsolete extended labels) are rejected;
* a label is at most 63 bytes, a name at most 255 on the wire (RFC 9267 3);
* the name must end with a zero octet inside the data (RFC 9267 4).

Record counts are checked against the bytes present (RFC 9267 6) and every
RDLENGTH against what is left (RFC 9267 5); names inside RDATA must end
exactly where RDLENGTH says; A is exactly 4 bytes, AAAA 16.

Names are returned as text: labels joined with ".", with ".", "\\" and
every byte outside printable ASCII escaped as ``\\DDD`` (the master file
syntax of RFC 1035 5.1). A hostile label can therefore never smuggle a dot,
a NUL or a control character into a name a program sees.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from femtotcp.wire import Malformed

HEADER_LEN = 12
MAX_LABEL = 63
MAX_NAME = 255           # wire length, length octets and final zero included
MAX_UDP = 512            # RFC 1035 4.2.1 without EDNS
MAX_POINTERS = 127       # per name: a 255-byte name has at most 127 labels
PORT = 53

# Types (RFC 1035 3.2.2, RFC 3596, RFC 6891).
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
SRV = 33
OPT = 41
ANY = 255
CLASS_IN = 1

# Flags (RFC 1035 4.1.1).
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
RCODE_MASK = 0x000F

# Response codes.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

_HDR = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RRTAIL = struct.Struct("!HHIH")
_SOA_TAIL = struct.Struct("!IIIII")
_MIN_QUESTION = 5        # root name (1) + type + class
_MIN_RR = 11             # root name (1) + type, class, ttl, rdlength


#: offset -> (name text, wire length) of a name already read in this message.
NameCache = dict[int, tuple[str, int]]


class Question(NamedTuple):
    name: str
    qtype: int
    qclass: int = CLASS_IN


class Record(NamedTuple):
    """A resource record. ``data`` is the parsed RDATA: packed address for
    A/AAAA, a name for CNAME/PTR/NS, (preference, name) for MX, the SOA tuple
    (mname, rname, serial, refresh, retry, expire, minimum) for SOA, and the
    raw bytes for anything else."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: object


class Message(NamedTuple):
    txid: int
    flags: int
    questions: list[Question]
    answers: list[Record]
    authority: list[Record]
    additional: list[Record]

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


# -- names -------------------------------------------------------------------

def _escape_label(label: bytes | memoryview) -> str:
    out = []
    for b in bytes(label):
        if b == 0x2E or b == 0x5C:            # "." and "\\"
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def read_name(msg: bytes | memoryview, offset: int, min_pointer: int = HEADER_LEN,
              cache: NameCache | None = None, limit: int | None = None) -> tuple[str, int]:
    """Read the (possibly compressed) name at ``offset`` in ``msg``.

    Returns (name, offset just after the name as it appears at ``offset``,
    i.e. after the first pointer or the terminator). ``min_pointer`` is the
    lowest offset a pointer may target: 12 in a DNS message (never into the
    header), 0 inside a DHCP option (RFC 3397 2). ``limit`` bounds the
    name's own bytes (up to its first pointer): the end of an RDATA.

    ``cache`` (one dict per message) remembers the name that starts at every
    offset a walk read, and a pointer to one of them ends the walk there: a
    message whose names all point into one long chain of pointers, or into
    the labels of one long name, costs one walk of it, not one per name (before,
    a 1500-byte reply took milliseconds and a 64 KiB one seconds).
    A name may follow at most ``MAX_POINTERS`` pointers (one per label is all
    a compressor needs).
    """
    n = len(msg)
    labels: list[str] = []
    wire_len = 0
    pos = offset
    run_start = offset        # start of the current run of labels
    end: int | None = None    # where the caller continues
    #: (offset, labels before it, wire length before it) of every place the walk
    #: read: a name starts at each of them, for the cache.
    seen: list[tuple[int, int, int]] = []
    hops = 0
    tail: tuple[str, int] | None = None  # a cached suffix the walk ended in
    first = n if limit is None else min(n, limit)
    while True:
        seen.append((pos, len(labels), wire_len))
        bound = first if end is None else n
        if pos >= bound:
            raise Malformed("dns.truncated_name")
        length = msg[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= bound:
                raise Malformed("dns.truncated_name")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            # RFC 9267 2: strictly backwards (before this run), never into
            # the header. Targets only decrease, so the walk terminates.
            if target >= run_start or target < min_pointer:
                raise Malformed("dns.bad_pointer")
            hops += 1
            if hops > MAX_POINTERS:
                raise Malformed("dns.too_many_pointers")
            if cache is not None:
                tail = cache.get(target)
                if tail is not None:
                    wire_len += tail[1]
                    if wire_len > MAX_NAME:
                        raise Malformed("dns.bad_name_length")
                    break
            pos = run_start = target
            continue
        if kind:
            raise Malformed("dns.bad_label_type")
        if length == 0:
            wire_len += 1
            if wire_len > MAX_NAME:
                raise Malformed("dns.bad_name_length")
            if end is None:
                end = pos + 1
            break
        # length <= 63 follows from kind == 0.
        if pos + 1 + length > bound:
            raise Malformed("dns.truncated_name")
        wire_len += 1 + length
        if wire_len >= MAX_NAME:   # the terminator still needs one byte
            raise Malformed("dns.bad_name_length")
        labels.append(_escape_label(msg[pos + 1:pos + 1 + length]))
        pos += 1 + length
    if tail is not None and tail[0]:
        labels.append(tail[0])
    if cache is not None:
        for at, index, before in seen:
            if at not in cache:
                cache[at] = (".".join(labels[index:]), wire_len - before)
    return ".".join(labels), end


def split_name(name: str) -> list[bytes]:
    """Text name to its labels (master-file escapes understood). ValueError
    for an empty label, a label over 63 bytes or a name over 255 bytes."""
    if name in ("", "."):
        return []
    labels: list[bytes] = []
    cur = bytearray()
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c == "\\":
            digits = name[i + 1:i + 4]
            if len(digits) == 3 and all(d in "0123456789" for d in digits):
                value = int(name[i + 1:i + 4])
                if value > 255:
                    raise ValueError(f"bad escape in {name!r}")
                cur.append(value)
                i += 4
                continue
            if i + 1 >= n:
                raise ValueError(f"dangling escape in {name!r}")
            cur += name[i + 1].encode("utf-8")
            i += 2
            continue
        if c == ".":
            if not cur:
                raise ValueError(f"empty label in {name!r}")
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
            continue
        cur += c.encode("utf-8")
        i += 1
    if cur:
        labels.append(bytes(cur))
    elif not name.endswith("."):
        raise ValueError(f"empty label in {name!r}")
    total = 1
    for label in labels:
        if len(label) > MAX_LABEL:
            raise ValueError(f"label longer than {MAX_LABEL} bytes in {name!r}")
        total += 1 + len(label)
    if total > MAX_NAME:
        raise ValueError(f"name longer than {MAX_NAME} bytes: {name!r}")
    return labels


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of ``name`` (ValueError when it is not valid)."""
    out = bytearray()
    for label in split_name(name):
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out)


def canonical(name: str) -> str:
    """The comparable form of a valid name: ASCII lower-cased (RFC 4343), no
    trailing dot, escapes normalised. ValueError for an invalid name."""
    return ".".join(_escape_label(label.lower()) for label in split_name(name))


def names_equal(a: str, b: str) -> bool:
    return canonical(a) == canonical(b)


# -- messages ------------------------------------------------------------------

def _read_rdata(msg: memoryview, rtype: int, start: int, rdlen: int,
                cache: NameCache) -> object:
    end = start + rdlen
    if rtype == A:
        if rdlen != 4:
            raise Malformed("dns.bad_rdlength")
        return bytes(msg[start:end])
    if rtype == AAAA:
        if rdlen != 16:
            raise Malformed("dns.bad_rdlength")
        return bytes(msg[start:end])
    if rtype in (CNAME, PTR, NS):
        # The name's own bytes must end exactly where RDLENGTH says (a
        # pointer may lead anywhere before, RFC 1035 4.1.4).
        name, after = read_name(msg, start, HEADER_LEN, cache, end)
        if after != end:
            raise Malformed("dns.bad_rdlength")
        return name
    if rtype == MX:
        if rdlen < 3:
            raise Malformed("dns.bad_rdlength")
        pref = (msg[start] << 8) | msg[start + 1]
        name, after = read_name(msg, start + 2, HEADER_LEN, cache, end)
        if after != end:
            raise Malformed("dns.bad_rdlength")
        return (pref, name)
    if rtype == SOA:
        mname, pos = read_name(msg, start, HEADER_LEN, cache, end)
        rname, pos = read_name(msg, pos, HEADER_LEN, cache, end)
        if end - pos != _SOA_TAIL.size:
            raise Malformed("dns.bad_rdlength")
        return (mname, rname) + _SOA_TAIL.unpack_from(msg, pos)
    return bytes(msg[start:end])


def _read_records(msg: memoryview, pos: int, count: int, out: list[Record],
                  cache: NameCache) -> int:
    n = len(msg)
    for _ in range(count):
        name, pos = read_name(msg, pos, HEADER_LEN, cache)
        if pos + _RRTAIL.size > n:
            raise Malformed("dns.truncated")
        rtype, rclass, ttl, rdlen = _RRTAIL.unpack_from(msg, pos)
        pos += _RRTAIL.size
        if pos + rdlen > n:
            raise Malformed("dns.bad_rdlength")
        if ttl & 0x80000000:
            ttl = 0  # RFC 2181 8: a TTL with the top bit set is treated as zero
        out.append(Record(name, rtype, rclass, ttl, _read_rdata(msg, rtype, pos, rdlen, cache)))
        pos += rdlen
    return pos


def _read_questions(mv: memoryview, count: int,
                    cache: NameCache) -> tuple[list[Question], int]:
    n = len(mv)
    pos = HEADER_LEN
    questions: list[Question] = []
    for _ in range(count):
        name, pos = read_name(mv, pos, HEADER_LEN, cache)
        if pos + _QTAIL.size > n:
            raise Malformed("dns.truncated")
        qtype, qclass = _QTAIL.unpack_from(mv, pos)
        pos += _QTAIL.size
        questions.append(Question(name, qtype, qclass))
    return questions, pos


def parse(data: bytes | memoryview) -> Message:
    """Parse a whole DNS message; raise Malformed for anything inconsistent.

    Trailing bytes after the last record are ignored (RFC 1035 does not
    forbid them); everything the counts announce must be present.
    """
    mv = data if isinstance(data, memoryview) else memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise Malformed("dns.truncated")
    txid, flags, qd, an, ns, ar = _HDR.unpack_from(mv)
    # RFC 9267 6: counts must be possible before anything is read or allocated.
    if qd * _MIN_QUESTION + (an + ns + ar) * _MIN_RR > n - HEADER_LEN:
        raise Malformed("dns.bad_count")
    cache: NameCache = {}
    questions, pos = _read_questions(mv, qd, cache)
    answers: list[Record] = []
    authority: list[Record] = []
    additional: list[Record] = []
    pos = _read_records(mv, pos, an, answers, cache)
    pos = _read_records(mv, pos, ns, authority, cache)
    _read_records(mv, pos, ar, additional, cache)
    return Message(txid, flags, questions, answers, authority, additional)


def parse_head(data: bytes | memoryview) -> tuple[int, int, list[Question]]:
    """(txid, flags, questions) only: enough to match a truncated (TC) reply,
    whose other sections a server may have cut short (RFC 2181 9)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    n = len(mv)
    if n < HEADER_LEN:
        raise Malformed("dns.truncated")
    txid, flags, qd, _an, _ns, _ar = _HDR.unpack_from(mv)
    if qd * _MIN_QUESTION > n - HEADER_LEN:
        raise Malformed("dns.bad_count")
    questions, _ = _read_questions(mv, qd, {})
    return txid, flags, questions


# -- building ------------------------------------------------------------------

class NameWriter:
    """Appends names with compression (RFC 1035 4.1.4): every suffix already
    written at an offset below 0x4000 is reused through a pointer."""

    def __init__(self, compress: bool) -> None:
        self.buf = bytearray()
        self.compress = compress
        self.suffixes: dict[tuple[bytes, ...], int] = {}

    def name(self, name: str) -> None:
        labels = split_name(name)
        keys = [tuple(label.lower() for label in labels[i:]) for i in range(len(labels))]
        for i, label in enumerate(labels):
            if self.compress:
                ptr = self.suffixes.get(keys[i])
                if ptr is not None:
                    self.buf += bytes([0xC0 | (ptr >> 8), ptr & 0xFF])
                    return
                if len(self.buf) < 0x4000:
                    self.suffixes[keys[i]] = len(self.buf)
            self.buf.append(len(label))
            self.buf += label
        self.buf.append(0)


def _rdata(w: NameWriter, rtype: int, data: object) -> None:
    """Append RDATA with its length; names inside compress like owner names."""
    at = len(w.buf)
    w.buf += b"\0\0"
    if rtype in (CNAME, PTR, NS):
        assert isinstance(data, str)
        w.name(data)
    elif rtype == MX:
        assert isinstance(data, tuple)
        w.buf += struct.pack("!H", data[0])
        w.name(data[1])
    elif rtype == SOA:
        assert isinstance(data, tuple)
        w.name(data[0])
        w.name(data[1])
        w.buf += _SOA_TAIL.pack(*data[2:7])
    else:
        assert isinstance(data, (bytes, bytearray))
        if rtype == A and len(data) != 4 or rtype == AAAA and len(data) != 16:
            raise ValueError("A needs 4 bytes of RDATA, AAAA 16")
        w.buf += data
    rdlen = len(w.buf) - at - 2
    w.buf[at:at + 2] = struct.pack("!H", rdlen)


def build(txid: int, flags: int, questions: Sequence[Question],
          answers: Sequence[Record] = (), authority: Sequence[Record] = (),
          additional: Sequence[Record] = (), compress: bool = True) -> bytes:
    """Build a message; names are compressed unless ``compress`` is False."""
    w = NameWriter(compress)
    w.buf += _HDR.pack(txid, flags, len(questions), len(answers), len(authority),
                       len(additional))
    for q in questions:
        w.name(q.name)
        w.buf += _QTAIL.pack(q.qtype, q.qclass)
    for section in (answers, authority, additional):
        for rr in section:
            w.name(rr.name)
            w.buf += struct.pack("!HHI", rr.rtype, rr.rclass, rr.ttl & 0xFFFFFFFF)
            _rdata(w, rr.rtype, rr.data)
    return bytes(w.buf)


def build_query(txid: int, name: str, qtype: int, recursion: bool = True) -> bytes:
    """A standard query for one question (RFC 1035 4.1.1: RD set for a stub)."""
    return build(txid, RD if recursion else 0, [Question(name, qtype, CLASS_IN)])


def reverse_name(addr: bytes) -> str:
    """The PTR name of a packed address (RFC 1035 3.5, RFC 3596 2.5)."""
    if len(addr) == 4:
        return ".".join(str(b) for b in reversed(addr)) + ".in-addr.arpa"
    if len(addr) == 16:
        return ".".join(addr.hex()[::-1]) + ".ip6.arpa"
    raise ValueError("address must be 4 or 16 bytes")
