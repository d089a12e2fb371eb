"""Ethernet II framing: round trips, runts, 802.3 and 802.1Q, scapy as the oracle."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, ethernet, mac_bytes, mac_str

A = mac_bytes("02:00:00:00:00:01")
B = mac_bytes("02:00:00:00:00:02")

macs = st.binary(min_size=6, max_size=6)
ethertypes = st.integers(min_value=0x0600, max_value=0xFFFF).filter(
    lambda t: t != ethernet.ETH_VLAN)


@given(macs, macs, ethertypes, st.binary(max_size=1500))
def test_round_trip(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = ethernet.build(dst, src, ethertype, payload)
    assert len(frame) == 14 + len(payload)
    hdr, body = ethernet.parse(frame)
    assert (hdr.dst, hdr.src, hdr.ethertype, hdr.vlan) == (dst, src, ethertype, None)
    assert bytes(body) == payload


@given(macs, macs, ethertypes, st.integers(0, 4095), st.binary(max_size=100))
def test_round_trip_tagged(dst: bytes, src: bytes, ethertype: int, vid: int,
                           payload: bytes) -> None:
    frame = ethernet.build(dst, src, ethertype, payload, vlan=vid)
    hdr, body = ethernet.parse(frame, vlan=vid)
    assert (hdr.dst, hdr.src, hdr.ethertype, hdr.vlan) == (dst, src, ethertype, vid)
    assert bytes(body) == payload


def test_parse_accepts_memoryview_and_returns_a_view() -> None:
    frame = bytearray(ethernet.build(B, A, ethernet.ETH_IPV4, b"abcdef"))
    hdr, body = ethernet.parse(memoryview(frame))
    assert isinstance(body, memoryview)
    frame[14] = ord("z")           # a view, not a copy
    assert bytes(body) == b"zbcdef"


@pytest.mark.parametrize("length", range(0, 14))
def test_runt_shorter_than_header(length: int) -> None:
    frame = ethernet.build(B, A, ethernet.ETH_IPV4, b"")[:length]
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame)
    assert e.value.reason == "eth.runt"


def test_header_only_frame_is_not_a_runt() -> None:
    hdr, body = ethernet.parse(ethernet.build(B, A, ethernet.ETH_ARP, b""))
    assert hdr.ethertype == ethernet.ETH_ARP and len(body) == 0


@pytest.mark.parametrize("length", range(14, 18))
def test_truncated_vlan_tag_is_a_runt(length: int) -> None:
    frame = ethernet.build(B, A, ethernet.ETH_IPV4, b"payload", vlan=5)[:length]
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame, vlan=5)
    assert e.value.reason == "eth.runt"


@pytest.mark.parametrize("type_or_len", [0, 46, 1500, 0x05FF])
def test_8023_length_frames_dropped(type_or_len: int) -> None:
    frame = B + A + type_or_len.to_bytes(2, "big") + b"\xaa\xaa\x03" + b"\x00" * 43
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame)
    assert e.value.reason == "eth.8023_length_frame"


def test_8023_inside_a_tag_dropped() -> None:
    frame = ethernet.build(B, A, 0x0100, b"\x00" * 46, vlan=7)
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame, vlan=7)
    assert e.value.reason == "eth.8023_length_frame"


def test_scapy_8023_llc_frame_dropped(scapy: ModuleType) -> None:
    frame = bytes(scapy.Dot3(dst=mac_str(B), src=mac_str(A)) / scapy.LLC() / scapy.Raw(b"x" * 40))
    assert int.from_bytes(frame[12:14], "big") < 0x0600   # scapy wrote a length
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame)
    assert e.value.reason == "eth.8023_length_frame"


def test_tagged_dropped_without_vlan() -> None:
    frame = ethernet.build(B, A, ethernet.ETH_IPV4, b"x" * 46, vlan=10)
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame)
    assert e.value.reason == "eth.vlan_not_configured"


def test_tagged_with_other_vlan_dropped() -> None:
    frame = ethernet.build(B, A, ethernet.ETH_IPV4, b"x" * 46, vlan=10)
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame, vlan=11)
    assert e.value.reason == "eth.vlan_not_configured"


def test_untagged_on_a_vlan_interface_dropped() -> None:
    frame = ethernet.build(B, A, ethernet.ETH_IPV4, b"x" * 46)
    with pytest.raises(Malformed) as e:
        ethernet.parse(frame, vlan=10)
    assert e.value.reason == "eth.untagged_on_vlan"


def test_priority_bits_ignored_in_vlan_match() -> None:
    # PCP 5, DEI 1, VID 10.
    frame = B + A + b"\x81\x00" + ((5 << 13) | (1 << 12) | 10).to_bytes(2, "big") \
        + b"\x08\x00" + b"x" * 10
    hdr, body = ethernet.parse(frame, vlan=10)
    assert hdr.vlan == 10 and hdr.ethertype == ethernet.ETH_IPV4 and bytes(body) == b"x" * 10


def test_padding_stays_in_payload() -> None:
    """Ethernet does not know the payload length: upper layers cut the padding."""
    frame = ethernet.build(B, A, ethernet.ETH_ARP, b"\x01" * 28) + b"\x00" * 18
    _, body = ethernet.parse(frame)
    assert len(body) == 46


def test_is_multicast() -> None:
    assert ethernet.is_multicast(ethernet.BROADCAST)
    assert ethernet.is_multicast(bytes.fromhex("01005e000001"))
    assert ethernet.is_multicast(bytes.fromhex("333300000001"))
    assert not ethernet.is_multicast(A)
    assert not ethernet.is_multicast(bytes.fromhex("001122334455"))


# -- scapy as the oracle ------------------------------------------------------------

def test_scapy_builds_femtotcp_parses(scapy: ModuleType) -> None:
    frame = bytes(scapy.Ether(dst="ff:ff:ff:ff:ff:ff", src=mac_str(A), type=0x0800)
                  / scapy.Raw(b"hello"))
    hdr, body = ethernet.parse(frame)
    assert hdr.dst == ethernet.BROADCAST and hdr.src == A and hdr.ethertype == 0x0800
    assert bytes(body) == b"hello"


def test_scapy_tagged_femtotcp_parses(scapy: ModuleType) -> None:
    frame = bytes(scapy.Ether(dst=mac_str(B), src=mac_str(A))
                  / scapy.Dot1Q(vlan=42, prio=3, type=0x0800)
                  / scapy.Raw(b"\x45" + b"\x00" * 19))
    hdr, body = ethernet.parse(frame, vlan=42)
    assert hdr.vlan == 42 and hdr.ethertype == 0x0800 and len(body) == 20


def test_femtotcp_builds_scapy_parses(scapy: ModuleType) -> None:
    frame = ethernet.build(B, A, 0x86DD, b"\x60" + b"\x00" * 39)
    pkt = scapy.Ether(frame)
    assert pkt.dst == mac_str(B) and pkt.src == mac_str(A) and pkt.type == 0x86DD


def test_femtotcp_tagged_scapy_parses(scapy: ModuleType) -> None:
    frame = ethernet.build(B, A, 0x0806, b"\x00" * 28, vlan=4094)
    pkt = scapy.Ether(frame)
    assert pkt.type == 0x8100
    assert pkt[scapy.Dot1Q].vlan == 4094 and pkt[scapy.Dot1Q].type == 0x0806
