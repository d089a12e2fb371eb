"""Ethernet II frames (and 802.1Q tags).

802.3 frames (a length, not an ethertype, in bytes 12-13) are rejected: the
stack speaks Ethernet II only. A tagged frame is accepted only when the caller
says which VLAN it serves; everything else tagged is dropped.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from femtotcp.wire import Malformed

HEADER_LEN = 14
MIN_FRAME = 14  # we accept frames without the 60-byte padding (TAP strips nothing)
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_RARP = 0x8035
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6

_TYPE = struct.Struct("!H")


class EthernetHeader(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int
    vlan: int | None  # VLAN id when the frame carried an 802.1Q tag


def parse(frame: bytes | memoryview, vlan: int | None = None) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into header and payload; raise Malformed on anything else."""
    n = len(frame)
    if n < HEADER_LEN:
        raise Malformed("eth.runt")
    mv = frame if isinstance(frame, memoryview) else memoryview(frame)
    (ethertype,) = _TYPE.unpack_from(mv, 12)
    offset = HEADER_LEN
    tag: int | None = None
    if ethertype == ETH_VLAN:
        if n < HEADER_LEN + 4:
            raise Malformed("eth.runt")
        tci, ethertype = struct.unpack_from("!HH", mv, 14)
        tag = tci & 0x0FFF
        if vlan is None or tag != vlan:
            raise Malformed("eth.vlan_not_configured")
        offset += 4
    elif vlan is not None:
        raise Malformed("eth.untagged_on_vlan")
    if ethertype < 0x0600:
        raise Malformed("eth.8023_length_frame")
    return EthernetHeader(bytes(mv[0:6]), bytes(mv[6:12]), ethertype, tag), mv[offset:]


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes | bytearray | memoryview,
          vlan: int | None = None) -> bytes:
    if vlan is None:
        return b"".join((dst, src, _TYPE.pack(ethertype), payload))
    return b"".join((dst, src, struct.pack("!HHH", ETH_VLAN, vlan & 0x0FFF, ethertype), payload))


def is_multicast(mac: bytes) -> bool:
    """Group address (multicast or broadcast): the I/G bit."""
    return bool(mac[0] & 1)
