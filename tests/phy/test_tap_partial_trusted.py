"""A vnet-header TAP's frames with a partial checksum (NEEDS_CSUM, no GSO),
read by ``on_readable`` for a stack's trusted receiver: the read path checks
the checksum's position as ``parse_vnet(..., complete=False)`` does, without
its header object, and drops exactly what that drops; with a capture the
checksum is completed first, as before."""

from __future__ import annotations

import os
import socket

from femtotcp.phy.tap import VNET_HDR, TapDevice, build_vnet, parse_vnet
from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, tcp

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")
CSUM_START = 14 + 20


def _frame(payload: bytes) -> bytes:
    seg = tcp.build(SRC, DST, 5001, 9, 1000, 2000, tcp.ACK, 512, payload)
    return ethernet.build(mac_bytes("02:00:00:00:00:02"), mac_bytes("02:00:00:00:00:01"),
                          ethernet.ETH_IPV4, ipv4.build(SRC, DST, 6, seg))


FRAME = _frame(b"payload")
LAST = len(FRAME) - CSUM_START - 2
READS = [
    build_vnet(0, 0, CSUM_START, 16) + FRAME,                    # good
    build_vnet(0, 0, CSUM_START, LAST) + FRAME,                  # field at the last two bytes
    build_vnet(0, 0, CSUM_START, LAST + 1) + FRAME,              # one byte past
    VNET_HDR.pack(1, 0, 0, 0, 60000, 16) + FRAME,                # start past the end
    VNET_HDR.pack(1, 0, 0, 0, 34, 60000) + FRAME,                # field past the end
    VNET_HDR.pack(1, 0, 0, 0, 0xFFFF, 0xFFFF) + FRAME,
    VNET_HDR.pack(1, 0, 0, 0, 2, 0) + FRAME,                     # inside Ethernet
    VNET_HDR.pack(1, 0, 0, 0, 13, 0) + FRAME,
    VNET_HDR.pack(3, 0, 0, 0, CSUM_START, 16) + FRAME,           # NEEDS_CSUM | DATA_VALID
]


def _read_all(capture: bool) -> tuple[list[bytes], list[bytes], TapDevice]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "pt0", 1500, offload=True)
    a.close()
    plain: list[bytes] = []
    trusted: list[bytes] = []
    dev.set_receiver(plain.append, trusted.append)
    if capture:
        dev.add_capture(lambda frame, out: None)
    try:
        for read in READS:
            b.send(read)
        dev.on_readable()
    finally:
        dev.close()
        b.close()
    return plain, trusted, dev


def test_partial_frames_to_the_trusted_receiver_are_what_parse_vnet_keeps() -> None:
    plain, trusted, dev = _read_all(capture=False)
    results = [parse_vnet(r, complete=False) for r in READS]
    kept = [r[1] for r in results if not isinstance(r, str)]
    assert plain == []
    assert trusted == kept and len(kept) == 3
    assert dev.counters["rx_vnet_bad_csum"] == sum(isinstance(r, str) for r in results) == 6
    assert dev.counters["rx_csum_trusted"] == 3


def test_with_a_capture_the_checksum_is_completed_first() -> None:
    plain, trusted, dev = _read_all(capture=True)
    results = [parse_vnet(r) for r in READS]
    assert trusted == [r[1] for r in results if not isinstance(r, str)]
    assert dev.counters["rx_vnet_bad_csum"] == 6
