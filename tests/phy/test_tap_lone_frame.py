"""A TAP's lone frame (a ping, a handshake's segment): the first frame of a
read batch goes up at once (``deliver``/``deliver_checked``), and
a ``poll(2)`` ends the batch when nothing else is queued. Whatever the vnet
flags, with or without a capture, the stack gets the same datagram, the
device counts the same and a capture sees the frame complete; frames queued
behind the first, or arriving later, are all read."""

from __future__ import annotations

import os
import socket

import pytest

from femtotcp.phy.tap import (
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VNET_HDR,
    TapDevice,
)
from femtotcp.stack import Stack
from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, udp
from femtotcp.wire.checksum import pseudo_header_sum

PEER = ip_bytes("192.0.2.1")
US = ip_bytes("192.0.2.2")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_MAC = mac_bytes("02:00:00:00:00:02")
PORT = 7000
UDP_AT = 14 + 20


def _frame(payload: bytes, sport: int = 5001) -> bytes:
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                          ipv4.build(PEER, US, udp.PROTO, udp.build(PEER, US, sport, PORT,
                                                                    payload)))


def _partial(frame: bytes) -> bytes:
    """``frame`` as the kernel hands it with NEEDS_CSUM: the UDP checksum
    field holds the pseudo-header's folded sum only."""
    length = len(frame) - UDP_AT
    value = pseudo_header_sum(PEER, US, udp.PROTO, length) % 0xFFFF or 0xFFFF
    out = bytearray(frame)
    out[UDP_AT + 6:UDP_AT + 8] = value.to_bytes(2, "big")
    return bytes(out)


def _read(flags: int, frame: bytes) -> bytes:
    """One read from a vnet-header TAP carrying ``frame`` with ``flags``."""
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        return VNET_HDR.pack(flags, 0, 0, 0, UDP_AT, 6) + _partial(frame)
    return VNET_HDR.pack(flags, 0, 0, 0, 0, 0) + frame


class Rig:
    def __init__(self, offload: bool = True, max_batch: int = 128,
                 capture: bool = False) -> None:
        a, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.dev = TapDevice.from_fd(os.dup(a.fileno()), "lone0", 1500, offload=offload,
                                     max_batch=max_batch)
        a.close()
        self.stack = Stack("lone")
        self.stack.add_interface(self.dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
        self.stack.start()
        self.server = self.stack.udp.open(port=PORT)
        self.captured: list[tuple[bytes, bool]] = []
        if capture:
            self.dev.add_capture(lambda frame, out: self.captured.append((frame, out)))

    def readable(self) -> None:
        self.dev.on_readable()
        self.stack.end_batch()

    def received(self) -> list[bytes]:
        got = []
        while (item := self.server.recv()) is not None:
            data, (src, _port) = item
            assert src == PEER
            got.append(data)
        return got

    def close(self) -> None:
        self.dev.close()
        self.peer.close()


FLAGS = [0, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
         VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID]


@pytest.mark.parametrize("capture", [False, True])
@pytest.mark.parametrize("flags", FLAGS)
def test_a_lone_frame_reaches_the_stack_alike_for_every_vnet_flag(flags: int,
                                                                  capture: bool) -> None:
    rig = Rig(capture=capture)
    frame = _frame(b"lone datagram")
    try:
        rig.peer.send(_read(flags, frame))
        rig.readable()
        assert rig.received() == [b"lone datagram"]
        counters = rig.dev.counters
        assert counters["rx_frames"] == 1
        assert counters["rx_csum_trusted"] == (1 if flags else 0)
        assert rig.stack.counters["udp.rx"] == 1
        # A capture sees the frame as the stack should: checksum complete.
        assert rig.captured == ([(frame, False)] if capture else [])
    finally:
        rig.close()


@pytest.mark.parametrize("capture", [False, True])
def test_a_lone_frame_on_a_plain_tap_is_counted_and_captured(capture: bool) -> None:
    rig = Rig(offload=False, capture=capture)
    frame = _frame(b"plain")
    try:
        rig.peer.send(frame)
        rig.readable()
        assert rig.received() == [b"plain"]
        assert rig.dev.counters["rx_frames"] == 1
        assert rig.dev.counters["rx_csum_trusted"] == 0
        assert rig.captured == ([(frame, False)] if capture else [])
    finally:
        rig.close()


def test_an_unvouched_bad_checksum_is_still_dropped_on_the_lone_path() -> None:
    rig = Rig()
    bad = bytearray(_frame(b"corrupt"))
    bad[-1] ^= 0x40
    try:
        rig.peer.send(_read(0, bytes(bad)))
        rig.readable()
        assert rig.received() == []
        assert rig.stack.counters["udp.bad_checksum"] == 1
        assert rig.dev.counters["rx_frames"] == 1
    finally:
        rig.close()


def test_a_frame_the_kernel_vouched_for_is_not_verified_again() -> None:
    """DATA_VALID (Linux's CHECKSUM_UNNECESSARY) reaches UDP through the
    trusted receiver, which skips the verification: even a checksum that
    would fail is taken (the kernel's word), as before."""
    rig = Rig()
    bad = bytearray(_frame(b"vouched"))
    bad[UDP_AT + 6] ^= 0x40
    try:
        rig.peer.send(_read(VIRTIO_NET_HDR_F_DATA_VALID, bytes(bad)))
        rig.readable()
        assert rig.received() == [b"vouched"]
        assert rig.stack.counters["udp.bad_checksum"] == 0
        assert rig.dev.counters["rx_csum_trusted"] == 1
    finally:
        rig.close()


def test_frames_queued_behind_the_first_are_read_in_the_same_batch() -> None:
    rig = Rig()
    try:
        for i in range(5):
            rig.peer.send(_read(VIRTIO_NET_HDR_F_DATA_VALID, _frame(b"burst %d" % i, 5001 + i)))
        rig.readable()
        assert rig.received() == [b"burst %d" % i for i in range(5)]
        assert rig.dev.counters["rx_frames"] == 5
    finally:
        rig.close()


def test_a_frame_arriving_after_a_lone_frame_is_read_next_time() -> None:
    rig = Rig()
    try:
        rig.peer.send(_read(VIRTIO_NET_HDR_F_DATA_VALID, _frame(b"first")))
        rig.readable()
        assert rig.received() == [b"first"]
        rig.peer.send(_read(0, _frame(b"second")))
        rig.readable()
        assert rig.received() == [b"second"]
        rig.readable()          # nothing queued: nothing read, nothing counted
        assert rig.received() == []
        assert rig.dev.counters["rx_frames"] == 2
        assert rig.dev.counters["rx_error"] == 0
    finally:
        rig.close()


def test_a_batch_of_one_leaves_the_rest_for_the_next_readable() -> None:
    rig = Rig(max_batch=1)
    try:
        rig.peer.send(_read(0, _frame(b"one")))
        rig.peer.send(_read(0, _frame(b"two")))
        rig.readable()
        assert rig.received() == [b"one"]
        rig.readable()
        assert rig.received() == [b"two"]
    finally:
        rig.close()


def test_a_receiver_that_closes_the_device_ends_the_batch() -> None:
    a, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "lone1", 1500, offload=True)
    a.close()
    got: list[bytes] = []

    def receiver(frame: bytes) -> None:
        got.append(frame)
        dev.close()

    dev.set_receiver(receiver)
    try:
        peer.send(_read(0, _frame(b"x")))
        peer.send(_read(0, _frame(b"y")))
        dev.on_readable()
        assert got == [_frame(b"x")]
        assert dev.fileno() == -1
    finally:
        dev.close()
        peer.close()
