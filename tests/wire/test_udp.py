"""UDP datagrams (RFC 768): round trips, length and checksum rules, scapy as the oracle."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, ip_bytes, ipv4, udp
from femtotcp.wire.checksum import pseudo_header_sum, reference_checksum

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")
SRC6 = ip_bytes("2001:db8::1")
DST6 = ip_bytes("2001:db8::2")

ports = st.integers(0, 0xFFFF)


def reason(data: bytes, src: bytes | None = SRC, dst: bytes | None = DST) -> str:
    with pytest.raises(Malformed) as e:
        udp.parse(data, src, dst)
    return e.value.reason


@given(ports, ports, st.binary(max_size=1472), st.sampled_from([(SRC, DST), (SRC6, DST6)]))
def test_round_trip(sport: int, dport: int, payload: bytes, addrs: tuple[bytes, bytes]) -> None:
    src, dst = addrs
    msg = udp.build(src, dst, sport, dport, payload)
    hdr, body = udp.parse(msg, src, dst)
    assert (hdr.src_port, hdr.dst_port, hdr.length) == (sport, dport, 8 + len(payload))
    assert hdr.checksum != 0
    assert bytes(body) == payload
    # The checksum against the plain loop over an explicit pseudo-header.
    if len(src) == 4:
        pseudo = src + dst + bytes([0, 17]) + len(msg).to_bytes(2, "big")
    else:
        pseudo = src + dst + len(msg).to_bytes(4, "big") + bytes([0, 0, 0, 17])
    zeroed = msg[:6] + b"\0\0" + msg[8:]
    expected = reference_checksum(pseudo + zeroed) or 0xFFFF
    assert hdr.checksum == expected
    # The same datagram from the pseudo-header's sum given by the caller.
    assert udp.build(src, dst, sport, dport, payload,
                     pseudo_header_sum(src, dst, udp.PROTO, 0)) == msg


@pytest.mark.parametrize("length", range(0, 8))
def test_truncated(length: int) -> None:
    assert reason(udp.build(SRC, DST, 1, 2, b"")[:length]) == "udp.truncated"


@pytest.mark.parametrize("claimed", [0, 1, 7])
def test_length_below_header(claimed: int) -> None:
    msg = bytearray(udp.build(SRC, DST, 1, 2, b"abcd"))
    msg[4:6] = claimed.to_bytes(2, "big")
    assert reason(bytes(msg), None, None) == "udp.bad_length"


@pytest.mark.parametrize("extra", [1, 100, 0xFFFF - 12])
def test_length_beyond_ip_payload(extra: int) -> None:
    msg = bytearray(udp.build(SRC, DST, 1, 2, b"abcd"))
    msg[4:6] = (12 + extra).to_bytes(2, "big")
    assert reason(bytes(msg), None, None) == "udp.bad_length"


def test_length_shorter_than_ip_payload_trims() -> None:
    """The UDP length wins over the IP payload (which may carry trailing bytes);
    the checksum covers the UDP length only."""
    msg = udp.build(SRC, DST, 1, 2, b"abcd")
    hdr, body = udp.parse(msg + b"trailing junk", SRC, DST)
    assert hdr.length == 12 and bytes(body) == b"abcd"


def test_bad_checksum() -> None:
    msg = bytearray(udp.build(SRC, DST, 1, 2, b"abcd"))
    msg[-1] ^= 0x40
    assert reason(bytes(msg)) == "udp.bad_checksum"


def test_checksum_includes_pseudo_header() -> None:
    msg = udp.build(SRC, DST, 1, 2, b"abcd")
    assert reason(msg, SRC, ip_bytes("192.0.2.3")) == "udp.bad_checksum"


def test_zero_checksum_allowed_on_ipv4() -> None:
    msg = bytearray(udp.build(SRC, DST, 1, 2, b"abcd"))
    msg[6:8] = b"\0\0"
    msg[-1] ^= 0xFF                       # nothing checks the payload then
    hdr, body = udp.parse(bytes(msg), SRC, DST)
    assert hdr.checksum == 0 and len(body) == 4


def test_zero_checksum_refused_on_ipv6() -> None:
    """RFC 8200 8.1: the UDP checksum is mandatory over IPv6."""
    msg = bytearray(udp.build(SRC6, DST6, 1, 2, b"abcd"))
    msg[6:8] = b"\0\0"
    assert reason(bytes(msg), SRC6, DST6) == "udp.zero_checksum_ipv6"


def test_checksum_not_checked_without_addresses() -> None:
    msg = bytearray(udp.build(SRC, DST, 1, 2, b"abcd"))
    msg[-1] ^= 0xFF
    hdr, body = udp.parse(bytes(msg))
    assert (hdr.src_port, hdr.dst_port, hdr.length) == (1, 2, 12)
    assert hdr.checksum == int.from_bytes(msg[6:8], "big")
    assert bytes(body) == b"abc" + bytes([ord("d") ^ 0xFF])


def test_computed_zero_sent_as_all_ones() -> None:
    """RFC 768: a checksum that computes to zero is sent as 0xFFFF. Find a payload
    whose sum makes the checksum zero, then check the transmitted value."""
    base = udp.build(SRC, DST, 1000, 2000, b"\0\0")
    partial = int.from_bytes(base[6:8], "big")      # checksum with the two zero bytes
    # Adding X to the sum lowers the checksum by X: choose X = the checksum itself.
    filler = partial.to_bytes(2, "big")
    msg = udp.build(SRC, DST, 1000, 2000, filler)
    assert msg[6:8] == b"\xff\xff"
    hdr, _ = udp.parse(msg, SRC, DST)
    assert hdr.checksum == 0xFFFF
    assert reference_checksum(
        SRC + DST + bytes([0, 17, 0, 10]) + msg[:6] + b"\0\0" + msg[8:]) == 0


@given(st.binary(max_size=40))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        hdr, body = udp.parse(data, SRC, DST)
    except Malformed as e:
        assert e.reason.startswith("udp.")
        return
    assert 8 <= hdr.length <= len(data) and len(body) == hdr.length - 8


def test_pseudo_header_sum_used_by_parse() -> None:
    msg = udp.build(SRC, DST, 7, 7, b"echo")
    from femtotcp.wire.checksum import ones_sum
    assert ones_sum(msg, pseudo_header_sum(SRC, DST, 17, len(msg))) == 0xFFFF


# -- scapy as the oracle ------------------------------------------------------------

def test_scapy_builds_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2") / scapy.UDP(sport=5353, dport=53)
                / scapy.Raw(b"query"))
    hdr_ip, data = ipv4.parse(pkt)
    hdr, body = udp.parse(data, hdr_ip.src, hdr_ip.dst)
    assert (hdr.src_port, hdr.dst_port, hdr.length) == (5353, 53, 13)
    assert bytes(body) == b"query"


def test_scapy_padded_frame_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.1", dst="192.0.2.2") / scapy.UDP(sport=1, dport=2)
                / scapy.Raw(b"x"))
    hdr_ip, data = ipv4.parse(pkt + b"\0" * 17)
    hdr, body = udp.parse(data, hdr_ip.src, hdr_ip.dst)
    assert bytes(body) == b"x"


def test_scapy_ipv6_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2") / scapy.UDP(sport=1, dport=2)
                / scapy.Raw(b"six"))
    hdr, body = udp.parse(pkt[40:], SRC6, DST6)
    assert bytes(body) == b"six"


def test_scapy_zero_checksum_accepted(scapy: ModuleType) -> None:
    pkt = bytes(scapy.UDP(sport=1, dport=2, chksum=0) / scapy.Raw(b"nocheck"))
    hdr, body = udp.parse(pkt, SRC, DST)
    assert hdr.checksum == 0 and bytes(body) == b"nocheck"


def test_scapy_bad_checksum_rejected(scapy: ModuleType) -> None:
    pkt = bytes(scapy.UDP(sport=1, dport=2, chksum=0x1234) / scapy.Raw(b"x"))
    assert reason(pkt) == "udp.bad_checksum"


@pytest.mark.parametrize("payload", [b"", b"a", b"datagram" * 150])
def test_femtotcp_builds_scapy_parses(scapy: ModuleType, payload: bytes) -> None:
    msg = udp.build(SRC, DST, 40000, 9, payload)
    pkt = scapy.IP(ipv4.build(SRC, DST, 17, msg))
    u = pkt[scapy.UDP]
    assert (u.sport, u.dport, u.len) == (40000, 9, 8 + len(payload))
    assert bytes(pkt[scapy.UDP].payload) == payload
    again = scapy.IP(ipv4.build(SRC, DST, 17, msg))
    del again[scapy.UDP].chksum
    assert scapy.IP(bytes(again))[scapy.UDP].chksum == pkt[scapy.UDP].chksum


def test_femtotcp_ipv6_checksum_scapy_agrees(scapy: ModuleType) -> None:
    msg = udp.build(SRC6, DST6, 1, 2, b"v6 payload")
    head = scapy.IPv6(src="2001:db8::1", dst="2001:db8::2", nh=17, plen=len(msg))
    pkt = scapy.IPv6(bytes(head) + msg)
    again = scapy.IPv6(bytes(pkt))
    del again[scapy.UDP].chksum
    assert scapy.IPv6(bytes(again))[scapy.UDP].chksum == pkt[scapy.UDP].chksum
