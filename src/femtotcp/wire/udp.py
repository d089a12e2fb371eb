"""UDP datagrams (RFC 768)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed
from femtotcp.wire.checksum import ones_sum, pseudo_header_sum, sum_value

_HDR = struct.Struct("!HHHH")
HEADER_LEN = 8
PROTO = 17


class UdpHeader(NamedTuple):
    src_port: int
    dst_port: int
    length: int  # header + payload, as the sender claims
    checksum: int


def parse(datagram: bytes | memoryview, src: bytes | None = None,
          dst: bytes | None = None) -> tuple[UdpHeader, memoryview]:
    """Split an IP payload into header and payload; verify the checksum when
    the addresses are given. A zero checksum means "none" on IPv4 only."""
    n = len(datagram)
    if n < HEADER_LEN:
        raise Malformed("udp.truncated")
    mv = datagram if isinstance(datagram, memoryview) else memoryview(datagram)
    header = UdpHeader._make(_HDR.unpack_from(mv))
    if not HEADER_LEN <= header.length <= n:
        raise Malformed("udp.bad_length")
    if src is not None and dst is not None:
        if header.checksum == 0:
            if len(src) != 4:
                raise Malformed("udp.zero_checksum_ipv6")
        elif ones_sum(mv[:header.length],
                      pseudo_header_sum(src, dst, PROTO, header.length)) != 0xFFFF:
            raise Malformed("udp.bad_checksum")
    return header, mv[HEADER_LEN:header.length]


def build(src: bytes, dst: bytes, src_port: int, dst_port: int,
          payload: bytes | bytearray | memoryview, pseudo: int | None = None) -> bytes:
    """A datagram with its checksum; ``pseudo``: the pseudo-header's sum
    without the length (``pseudo_header_sum(src, dst, PROTO, 0)``), when the
    caller has it already. The checksum is summed from the header's fields
    and the payload's sum, then the header packed once before the payload."""
    length = HEADER_LEN + len(payload)
    if pseudo is None:
        pseudo = pseudo_header_sum(src, dst, PROTO, 0)
    # The pseudo-header's length and the header's (the sum is never 0: the
    # protocol is in it); a computed zero is sent as all ones (RFC 768).
    r = (pseudo + length + src_port + dst_port + length + sum_value(payload)) % 0xFFFF
    return _HDR.pack(src_port, dst_port, length, 0xFFFF - r if r else 0xFFFF) + payload
