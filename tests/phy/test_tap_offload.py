"""TAP offload without the kernel: the virtio_net_hdr codec, hostile headers, and
a vnet-header device adopted on one end of a SEQPACKET socket pair (one
datagram per read/write, like a TAP fd), read and written as the kernel would."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.phy import tap
from femtotcp.phy.tap import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VNET_HDR,
    VNET_HDR_LEN,
    TapDevice,
    build_vnet,
    parse_vnet,
)
from femtotcp.stack import Stack
from femtotcp.wire import arp, ethernet, icmp4, ip_bytes, ipv4, mac_bytes, tcp, udp
from femtotcp.wire.checksum import ones_sum

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")
KMAC = mac_bytes("02:00:00:00:00:01")
SMAC = mac_bytes("02:00:00:00:00:02")
CSUM_START = 14 + 20


def tcp_frame(payload: bytes, flags: int = tcp.ACK) -> bytes:
    seg = tcp.build(SRC, DST, 5001, 9, 1000, 2000, flags, 512, payload)
    return ethernet.build(SMAC, KMAC, ethernet.ETH_IPV4, ipv4.build(SRC, DST, 6, seg))


def partial(frame: bytes, field: int, proto: int) -> bytes:
    """``frame`` with its transport checksum replaced by the pseudo-header sum,
    as the kernel leaves it for CHECKSUM_PARTIAL."""
    length = len(frame) - CSUM_START
    psum = ones_sum(SRC + DST, proto + length)
    pos = CSUM_START + field
    return frame[:pos] + psum.to_bytes(2, "big") + frame[pos + 2:]


def tcp_ok(frame: bytes) -> bool:
    try:
        tcp.parse(frame[CSUM_START:], SRC, DST)
    except Exception:
        return False
    return True


# -- the codec ---------------------------------------------------------------------------

def test_build_and_parse_plain() -> None:
    frame = tcp_frame(b"x" * 100)
    got = parse_vnet(build_vnet() + frame)
    assert not isinstance(got, str)
    hdr, out = got
    assert hdr == (0, 0, 0, 0, 0, 0) and out == frame and isinstance(out, bytes)


def test_build_fields() -> None:
    raw = build_vnet(VIRTIO_NET_HDR_GSO_TCPV4, 1448, CSUM_START, 16, 66)
    assert raw == VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1, 66, 1448, 34, 16)
    assert len(raw) == VNET_HDR_LEN == 10
    assert raw[4:6] == (1448).to_bytes(2, "little")       # virtio 1.x: little-endian


@pytest.mark.parametrize("size", [0, 1, 2, 1447, 1448, 60000, 65483])
def test_partial_tcp_checksum_is_completed(size: int) -> None:
    frame = tcp_frame(os.urandom(size))
    assert tcp_ok(frame)
    half = partial(frame, 16, 6)
    assert not tcp_ok(half) or half == frame
    gso = VIRTIO_NET_HDR_GSO_TCPV4 if size > 1448 else 0
    got = parse_vnet(build_vnet(gso, 1448 if gso else 0, CSUM_START, 16, 66) + half)
    assert not isinstance(got, str)
    assert tcp_ok(got[1])
    assert got[1][:CSUM_START + 16] == frame[:CSUM_START + 16]
    assert got[1][CSUM_START + 18:] == frame[CSUM_START + 18:]


@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_partial_udp_checksum_is_completed(size: int) -> None:
    dgram = udp.build(SRC, DST, 53, 5353, os.urandom(size))
    frame = ethernet.build(SMAC, KMAC, ethernet.ETH_IPV4, ipv4.build(SRC, DST, 17, dgram))
    got = parse_vnet(build_vnet(0, 0, CSUM_START, 6) + partial(frame, 6, 17))
    assert not isinstance(got, str)
    udp.parse(got[1][CSUM_START:], SRC, DST)       # raises on a bad checksum


def test_data_valid_frame_is_passed_as_is() -> None:
    frame = tcp_frame(b"abc")
    got = parse_vnet(VNET_HDR.pack(tap.VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0) + frame)
    assert not isinstance(got, str) and got[1] == frame


@pytest.mark.parametrize(("header", "reason"), [
    (VNET_HDR.pack(0, 3, 0, 1448, 0, 0), "rx_vnet_bad_gso"),          # UDP (not negotiated)
    (VNET_HDR.pack(0, 4, 0, 1448, 0, 0), "rx_vnet_bad_gso"),          # TCPV6 on IPv4
    (VNET_HDR.pack(0, 5, 0, 1448, 0, 0), "rx_vnet_bad_gso"),          # UDP_L4
    (VNET_HDR.pack(0, 0x7F, 0, 1448, 0, 0), "rx_vnet_bad_gso"),
    (VNET_HDR.pack(0, 0xFF, 0, 1448, 0, 0), "rx_vnet_bad_gso"),
    (VNET_HDR.pack(0, 1, 0, 0, 0, 0), "rx_vnet_bad_gso_size"),        # TCPV4, gso_size 0
    (VNET_HDR.pack(0, 0x81, 0, 0, 0, 0), "rx_vnet_bad_gso_size"),     # ... with ECN
    (VNET_HDR.pack(1, 0, 0, 0, 60000, 16), "rx_vnet_bad_csum"),       # start past the end
    (VNET_HDR.pack(1, 0, 0, 0, 34, 60000), "rx_vnet_bad_csum"),       # field past the end
    (VNET_HDR.pack(1, 0, 0, 0, 0xFFFF, 0xFFFF), "rx_vnet_bad_csum"),
    (VNET_HDR.pack(1, 0, 0, 0, 2, 0), "rx_vnet_bad_csum"),            # inside Ethernet
])
def test_hostile_headers_are_named_drops(header: bytes, reason: str) -> None:
    assert parse_vnet(header + tcp_frame(b"payload")) == reason


@pytest.mark.parametrize("n", [0, 1, 9, 10, 23])
def test_truncated_reads(n: int) -> None:
    assert parse_vnet((build_vnet() + tcp_frame(b""))[:n]) == "rx_vnet_truncated"


def test_checksum_field_at_the_last_two_bytes() -> None:
    frame = tcp_frame(b"")
    hdr = build_vnet(0, 0, CSUM_START, len(frame) - CSUM_START - 2)
    assert not isinstance(parse_vnet(hdr + frame), str)
    hdr = build_vnet(0, 0, CSUM_START, len(frame) - CSUM_START - 1)
    assert parse_vnet(hdr + frame) == "rx_vnet_bad_csum"


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_random_reads_never_raise(data: bytes) -> None:
    got = parse_vnet(data)
    assert isinstance(got, str) or isinstance(got[1], bytes)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.binary(max_size=100))
def test_random_headers_never_raise(flags: int, gso_type: int, hdr_len: int, gso_size: int,
                                    start: int, offset: int, tail: bytes) -> None:
    frame = tcp_frame(tail)
    got = parse_vnet(VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, start, offset) + frame)
    if not isinstance(got, str):
        assert len(got[1]) == len(frame)


# -- a vnet-header device on a socket pair -------------------------------------------------

@pytest.fixture
def pair() -> Iterator[tuple[TapDevice, socket.socket]]:
    """(offload device, the 'kernel' end)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "vnet0", 1500, offload=True)
    a.close()
    b.settimeout(5)
    yield dev, b   # type: ignore[misc]
    dev.close()
    b.close()


def test_reads_count_drops_and_deliver_good_frames(
        pair: tuple[TapDevice, socket.socket]) -> None:
    dev, kernel = pair
    got: list[bytes] = []
    dev.set_receiver(got.append)
    good = tcp_frame(b"hello")
    big = tcp_frame(os.urandom(20000))
    kernel.send(build_vnet() + good)
    kernel.send(VNET_HDR.pack(0, 4, 0, 1448, 0, 0) + good)               # bad gso_type
    kernel.send(VNET_HDR.pack(0, 1, 66, 0, 34, 16) + big)                # gso_size 0
    kernel.send(VNET_HDR.pack(1, 0, 0, 0, 5000, 16) + good)              # csum_start beyond
    kernel.send(b"\x00" * 5)                                             # truncated
    kernel.send(build_vnet() + big)                                      # oversize, not GSO
    kernel.send(build_vnet(VIRTIO_NET_HDR_GSO_TCPV4, 1448, CSUM_START, 16, 66)
                + partial(big, 16, 6))                                   # GRO super-frame
    dev.on_readable()
    assert got[0] == good
    assert len(got) == 2 and tcp_ok(got[1]) and got[1] == big
    c = dev.counters
    assert (c["rx_vnet_bad_gso"], c["rx_vnet_bad_gso_size"], c["rx_vnet_bad_csum"],
            c["rx_vnet_truncated"], c["rx_oversize"], c["rx_gso_frames"],
            c["rx_frames"]) == (1, 1, 1, 1, 1, 1, 2)


def test_gso_frames_dropped_without_gro() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "nogro0", 1500, offload=True, gro=False)
    a.close()
    got: list[bytes] = []
    dev.set_receiver(got.append)
    try:
        big = tcp_frame(os.urandom(5000))
        b.send(build_vnet(VIRTIO_NET_HDR_GSO_TCPV4, 1448, CSUM_START, 16, 66)
               + partial(big, 16, 6))
        small = tcp_frame(b"ok")
        b.send(build_vnet(0, 0, CSUM_START, 16) + partial(small, 16, 6))
        dev.on_readable()
        assert got == [small]
        assert dev.counters["rx_vnet_bad_gso"] == 1 and dev.counters["rx_gso_frames"] == 0
    finally:
        dev.close()
        b.close()


def test_writes_carry_a_vnet_header(pair: tuple[TapDevice, socket.socket]) -> None:
    dev, kernel = pair
    seen: list[tuple[bytes, bool]] = []
    dev.add_capture(lambda f, out: seen.append((f, out)))
    frame = tcp_frame(b"plain")
    dev.send(frame)
    assert kernel.recv(70000) == bytes(VNET_HDR_LEN) + frame
    big = partial(tcp_frame(b"z" * 2896), 16, 6)
    dev.send_offload(big, 1448, CSUM_START, 16, CSUM_START + 20)
    raw = kernel.recv(70000)
    assert VNET_HDR.unpack_from(raw) == (1, 1, CSUM_START + 20, 1448, CSUM_START, 16)
    assert raw[VNET_HDR_LEN:] == big
    # The receiving side's view: completing the checksum gives a valid segment.
    done = parse_vnet(raw)
    assert not isinstance(done, str) and tcp_ok(done[1])
    assert dev.counters["tx_gso_frames"] == 1 and dev.counters["tx_gso_segments"] == 2
    assert dev.counters["tx_frames"] == 2
    # The capture holds the super-frame as written, once.
    assert seen == [(frame, True), (big, True)]


def test_send_offload_needs_an_offload_device() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "plain0", 1500)
    try:
        dev.send_offload(tcp_frame(b"x"), 1448, CSUM_START, 16, 54)
        assert dev.counters["tx_offload_unsupported"] == 1
        dev.send(tcp_frame(b"x"))
        assert b.recv(2000) == tcp_frame(b"x")     # no header without offload
    finally:
        dev.close()
        a.close()
        b.close()


def test_closed_device_counts_offload_writes(pair: tuple[TapDevice, socket.socket]) -> None:
    dev, _ = pair
    dev.close()
    dev.send_offload(tcp_frame(b"x"), 0, CSUM_START, 16, 54)
    assert dev.counters["tx_closed"] == 1


def _ping_frame(size: int) -> bytes:
    echo = icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"p" * size)
    return ethernet.build(SMAC, KMAC, ethernet.ETH_IPV4, ipv4.build(SRC, DST, 1, echo))


@pytest.mark.parametrize(("offload", "gro"), [(False, None), (True, None), (True, False)])
def test_stack_takes_oversize_frames_only_from_a_gro_device(offload: bool,
                                                            gro: bool | None) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "st0", 1500, offload=offload, gro=gro)
    a.close()
    stack = Stack("offload")
    iface = stack.add_interface(dev, mac=SMAC, ipv4="192.0.2.2/24")
    try:
        assert dev.gro == (offload and gro is not False)
        big = _ping_frame(4000)
        stack.receive(iface, big)
        if dev.gro:
            assert stack.counters["eth.oversize"] == 0 and stack.counters["ipv4.rx"] == 1
        else:
            assert stack.counters["eth.oversize"] == 1 and stack.counters["ipv4.rx"] == 0
    finally:
        dev.close()
        b.close()


def test_refused_tso_write_turns_offload_off(pair: tuple[TapDevice, socket.socket],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dev, kernel = pair

    def refuse(fd: int, buffers: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(tap.os, "writev", refuse)
    dev.send_offload(tcp_frame(b"z" * 2896), 1448, CSUM_START, 16, 54)
    assert not dev.offload and dev.counters["tx_offload_disabled"] == 1
    assert dev.counters["tx_invalid"] == 1
    monkeypatch.undo()
    dev.send(tcp_frame(b"after"))                 # the fd still has vnet headers
    assert kernel.recv(70000) == bytes(VNET_HDR_LEN) + tcp_frame(b"after")


@pytest.mark.parametrize("vlan", [None, 5])
def test_offload_path_needs_an_untagged_offload_interface(vlan: int | None) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = TapDevice.from_fd(os.dup(a.fileno()), "vl0", 1500, offload=True, gro=False)
    a.close()
    stack = Stack("vlan")
    iface = stack.add_interface(dev, mac=SMAC, ipv4="192.0.2.2/24", vlan=vlan)
    try:
        assert stack.ipv4.offload_path(SRC, DST) is None        # neighbour unknown
        stack.receive(iface, ethernet.build(
            ethernet.BROADCAST, KMAC, ethernet.ETH_ARP,
            arp.build(arp.REQUEST, KMAC, SRC, b"\0" * 6, DST), vlan))
        path = stack.ipv4.offload_path(SRC, DST)
        if vlan is None:
            assert path is not None and path.csum_start == CSUM_START
            assert path.eth == ethernet.build(KMAC, SMAC, ethernet.ETH_IPV4, b"")
        else:
            assert path is None
        dev.offload = False
        assert stack.ipv4.offload_path(SRC, DST) is None
    finally:
        dev.close()
        b.close()


def test_a_tcpv6_super_frame_is_taken_on_an_ipv6_frame() -> None:
    """GSO TCPV6 (TUN_F_TSO6, asked with GRO) is accepted on an IPv6 frame only."""
    frame = ethernet.build(mac_bytes("02:00:00:00:00:02"), mac_bytes("02:00:00:00:00:01"),
                           ethernet.ETH_IPV6, bytes(40) + bytes(20) + b"payload")
    got = parse_vnet(tap.VNET_HDR.pack(0, tap.VIRTIO_NET_HDR_GSO_TCPV6, 0, 1440, 0, 0) + frame)
    assert not isinstance(got, str) and got[1] == frame
    assert tap._offload_flags(True) & tap.TUN_F_TSO6 and not tap._offload_flags(False)
