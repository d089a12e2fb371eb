"""Checksums verified once, and only trusted where a device vouches for them.

A vnet-header TAP hands the stack frames the kernel marked ``DATA_VALID`` or
left partial (``NEEDS_CSUM``) through a trusted receiver, and TCP/UDP skip
their checksum for those. Everything else must still be verified: a TCP or UDP
segment with a bad checksum is dropped on every other path (plain TAP, vnet
frames without flags, memory devices, a FaultyDevice that corrupts, a pcap
replay), even when a device calls ``deliver_checked`` for it.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable, Iterator

import pytest

from femtotcp.phy.base import Device
from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.memory import Wire
from femtotcp.phy.pcap import PcapDevice, PcapWriter
from femtotcp.phy.tap import (
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VNET_HDR,
    TapDevice,
    build_vnet,
)
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, tcp, udp
from femtotcp.wire.checksum import ones_sum

PEER = ip_bytes("192.0.2.1")
US = ip_bytes("192.0.2.2")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
US_MAC = mac_bytes("02:00:00:00:00:02")
CSUM_START = 14 + 20


def _eth(proto: int, segment: bytes) -> bytes:
    return ethernet.build(US_MAC, PEER_MAC, ethernet.ETH_IPV4,
                          ipv4.build(PEER, US, proto, segment))


def tcp_syn(payload: bytes = b"") -> bytes:
    return _eth(6, tcp.build(PEER, US, 40000, 9, 1000, 0, tcp.SYN, 65535, payload))


def udp_dgram(payload: bytes = b"datagram") -> bytes:
    return _eth(17, udp.build(PEER, US, 40000, 7, payload))


def spoil(frame: bytes) -> bytes:
    """The same frame with its last byte changed: the IP header stays valid,
    the transport checksum no longer matches."""
    return frame[:-1] + bytes([frame[-1] ^ 0x5A])


def partial(frame: bytes, field: int) -> bytes:
    """``frame`` with its transport checksum replaced by the pseudo-header sum
    (CHECKSUM_PARTIAL, as the kernel hands it to a TAP with TUN_F_CSUM)."""
    proto = frame[14 + 9]
    psum = ones_sum(PEER + US, proto + len(frame) - CSUM_START)
    pos = CSUM_START + field
    return frame[:pos] + psum.to_bytes(2, "big") + frame[pos + 2:]


BAD = [pytest.param(spoil(tcp_syn(b"x" * 100)), "tcp.bad_checksum", id="tcp"),
       pytest.param(spoil(udp_dgram()), "udp.bad_checksum", id="udp")]


def reached(stack: Stack) -> int:
    """Segments that got past the checksum to TCP's or UDP's demultiplexing."""
    c = stack.counters
    return c["tcp.no_connection"] + c["udp.rx"]


def checksum_drops(stack: Stack) -> int:
    c = stack.counters
    return c["tcp.bad_checksum"] + c["udp.bad_checksum"] + c["ipv4.bad_checksum"]


@pytest.fixture
def tap_pair() -> Iterator[Callable[..., tuple[TapDevice, socket.socket, Stack]]]:
    """A TAP adopted on one end of a SEQPACKET pair (one datagram per read, as a
    TAP fd), the other end playing the kernel; a stack on the TAP."""
    opened: list[tuple[TapDevice, socket.socket]] = []

    def make(offload: bool, gro: bool | None = None,
             wrap: Callable[[TapDevice], Device] | None = None
             ) -> tuple[TapDevice, socket.socket, Stack]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        dev = TapDevice.from_fd(os.dup(a.fileno()), "trust0", 1500, offload=offload, gro=gro)
        a.close()
        opened.append((dev, b))
        stack = Stack("trust")
        stack.add_interface(wrap(dev) if wrap else dev, mac=US_MAC, ipv4="192.0.2.2/24")
        return dev, b, stack

    yield make
    for dev, b in opened:
        dev.close()
        b.close()


# -- the trusted entry: what it skips, and who gets it ---------------------------------

def test_device_vouching_skips_the_transport_checksum(tap_pair: Callable[..., tuple[
        TapDevice, socket.socket, Stack]]) -> None:
    """The control for every test below: a frame with a bad checksum that the
    kernel marked DATA_VALID is taken as the kernel says (as Linux does for
    CHECKSUM_UNNECESSARY), so the other tests' drops are the checksum's doing."""
    dev, kernel, stack = tap_pair(offload=True)
    assert dev.checksum_rx and dev.has_checked_receiver and dev.capabilities.checksum_rx
    for frame in (spoil(tcp_syn(b"x" * 100)), spoil(udp_dgram())):
        kernel.send(VNET_HDR.pack(VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0) + frame)
    dev.on_readable()
    assert checksum_drops(stack) == 0 and reached(stack) == 2
    assert dev.counters["rx_csum_trusted"] == 2


def test_partial_checksums_are_left_partial_for_the_trusted_receiver(tap_pair: Callable[
        ..., tuple[TapDevice, socket.socket, Stack]]) -> None:
    """NEEDS_CSUM frames (a GRO super-frame too) reach TCP without being
    summed in the device or in TCP: verified zero times, as the kernel built them."""
    dev, kernel, stack = tap_pair(offload=True)
    small = partial(tcp_syn(b"y" * 10), 16)
    big = partial(tcp_syn(os.urandom(20000)), 16)
    kernel.send(build_vnet(0, 0, CSUM_START, 16) + small)
    kernel.send(build_vnet(VIRTIO_NET_HDR_GSO_TCPV4, 1448, CSUM_START, 16, 54) + big)
    dev.on_readable()
    assert checksum_drops(stack) == 0 and reached(stack) == 2
    assert dev.counters["rx_gso_frames"] == 1 and dev.counters["rx_csum_trusted"] == 2


@pytest.mark.parametrize(("frame", "counter"), BAD)
def test_plain_tap_frames_are_verified(tap_pair: Callable[..., tuple[
        TapDevice, socket.socket, Stack]], frame: bytes, counter: str) -> None:
    dev, kernel, stack = tap_pair(offload=False)
    assert not dev.checksum_rx and not dev.has_checked_receiver
    kernel.send(frame)
    dev.on_readable()
    dev.deliver_checked(frame)            # a device without checksum_rx cannot vouch
    assert stack.counters[counter] == 2 and reached(stack) == 0
    assert dev.counters["rx_csum_trusted"] == 0


@pytest.mark.parametrize(("frame", "counter"), BAD)
def test_vnet_frames_without_flags_are_verified(tap_pair: Callable[..., tuple[
        TapDevice, socket.socket, Stack]], frame: bytes, counter: str) -> None:
    dev, kernel, stack = tap_pair(offload=True)
    kernel.send(build_vnet() + frame)
    kernel.send(VNET_HDR.pack(0x04, 0, 0, 0, 0, 0) + frame)     # an unknown flag vouches nothing
    dev.on_readable()
    assert stack.counters[counter] == 2 and reached(stack) == 0


@pytest.mark.parametrize(("frame", "counter"), BAD)
def test_memory_devices_are_verified(frame: bytes, counter: str) -> None:
    loop = SimLoop()
    wire = Wire(loop)
    stack = Stack("trust")
    stack.add_interface(wire.b, mac=US_MAC, ipv4="192.0.2.2/24")
    assert not wire.b.checksum_rx and not wire.b.has_checked_receiver
    wire.b.deliver(frame)
    wire.b.deliver_checked(frame)
    wire.a.send(frame)
    loop.run()
    assert stack.counters[counter] == 3 and reached(stack) == 0


def test_a_device_cannot_vouch_after_the_fact() -> None:
    """The trusted receiver is given when the interface is added, only to a
    device that states checksum_rx then; claiming it later changes nothing."""
    loop = SimLoop()
    wire = Wire(loop)
    stack = Stack("trust")
    stack.add_interface(wire.b, mac=US_MAC, ipv4="192.0.2.2/24")
    wire.b.checksum_rx = True
    wire.b.deliver_checked(spoil(udp_dgram()))
    assert stack.counters["udp.bad_checksum"] == 1 and reached(stack) == 0


@pytest.mark.parametrize("flags", [VIRTIO_NET_HDR_F_DATA_VALID, "partial"])
def test_faulty_device_corruption_is_caught_whatever_the_kernel_said(
        tap_pair: Callable[..., tuple[TapDevice, socket.socket, Stack]],
        flags: int | str) -> None:
    """A FaultyDevice between a vnet TAP and the stack: what the kernel vouched
    for is corrupted on the way, so nothing it delivers may be trusted."""
    box: list[FaultyDevice] = []
    loop = SimLoop()

    def wrap(tap: TapDevice) -> Device:
        box.append(FaultyDevice(tap, loop, corrupt=1.0, seed=7, outbound=False))
        return box[0]

    dev, kernel, stack = tap_pair(offload=True, wrap=wrap)
    faulty = box[0]
    assert not faulty.checksum_rx and not dev.has_checked_receiver
    assert faulty.gro == dev.gro                   # super-frames pass through
    n = 40
    for i in range(n):
        frame = tcp_syn(bytes([i]) * (50 + i)) if i % 2 else udp_dgram(bytes([i]) * (30 + i))
        if flags == "partial":
            header = build_vnet(0, 0, CSUM_START, 16 if i % 2 else 6)
            frame = partial(frame, 16 if i % 2 else 6)
        else:
            header = VNET_HDR.pack(VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0)
        kernel.send(header + frame)
    dev.on_readable()
    loop.run()
    assert faulty.counters["in.corrupted"] == n
    assert reached(stack) == 0 and dev.counters["rx_csum_trusted"] == 0
    assert checksum_drops(stack) > 0


def test_faulty_device_passes_completed_partial_checksums(tap_pair: Callable[..., tuple[
        TapDevice, socket.socket, Stack]]) -> None:
    """Without corruption, partial checksums reach a wrapped stack completed
    (the TAP completes them for a receiver that verifies), GRO super-frames
    whole."""
    loop = SimLoop()
    box: list[FaultyDevice] = []

    def wrap(tap: TapDevice) -> Device:
        box.append(FaultyDevice(tap, loop, outbound=False))
        return box[0]

    dev, kernel, stack = tap_pair(offload=True, wrap=wrap)
    kernel.send(build_vnet(0, 0, CSUM_START, 16) + partial(tcp_syn(b"z" * 10), 16))
    kernel.send(build_vnet(VIRTIO_NET_HDR_GSO_TCPV4, 1448, CSUM_START, 16, 54)
                + partial(tcp_syn(os.urandom(9000)), 16))
    dev.on_readable()
    loop.run()
    assert checksum_drops(stack) == 0 and stack.counters["eth.oversize"] == 0
    assert reached(stack) == 2


@pytest.mark.parametrize(("frame", "counter"), BAD)
def test_pcap_replay_is_verified(frame: bytes, counter: str) -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf)
    writer.write(frame, ts=1.0)
    writer.write(udp_dgram(b"good"), ts=1.1)        # the control: it gets through
    buf.seek(0)
    loop = SimLoop()
    dev = PcapDevice(buf, loop)
    stack = Stack("trust")
    stack.add_interface(dev, mac=US_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    assert not dev.checksum_rx and not dev.has_checked_receiver
    dev.start()
    loop.run()
    dev.deliver_checked(frame)
    assert stack.counters[counter] == 2 and reached(stack) == 1


def test_captures_see_completed_checksums(tap_pair: Callable[..., tuple[
        TapDevice, socket.socket, Stack]]) -> None:
    """With a capture attached, the TAP completes partial checksums first: the
    capture holds valid frames, and the stack still takes them as vouched for."""
    dev, kernel, stack = tap_pair(offload=True)
    seen: list[bytes] = []
    dev.add_capture(lambda f, out: None if out else seen.append(f))
    whole = tcp_syn(b"w" * 33)
    kernel.send(build_vnet(0, 0, CSUM_START, 16) + partial(whole, 16))
    dev.on_readable()
    assert seen == [whole] and reached(stack) == 1
    assert dev.counters["rx_csum_trusted"] == 1
