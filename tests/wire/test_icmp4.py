"""ICMPv4 messages (RFC 792): round trips, checksum over the real bytes, scapy as the oracle."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, icmp4, ip_bytes, ipv4, udp
from femtotcp.wire.checksum import checksum, reference_checksum

SRC = ip_bytes("192.0.2.1")
DST = ip_bytes("192.0.2.2")


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFFFFFF),
       st.binary(max_size=1500))
def test_round_trip(type_: int, code: int, rest: int, payload: bytes) -> None:
    msg = icmp4.build(type_, code, rest, payload)
    hdr, body = icmp4.parse(msg)
    assert (hdr.type, hdr.code, hdr.rest) == (type_, code, rest)
    assert bytes(body) == payload
    assert reference_checksum(msg[:2] + b"\0\0" + msg[4:]) == int.from_bytes(msg[2:4], "big")


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_echo_round_trip(ident: int, seq: int, payload: bytes) -> None:
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, ident, seq, payload)
    hdr, body = icmp4.parse(msg)
    assert (hdr.type, hdr.code, hdr.ident, hdr.seq) == (8, 0, ident, seq)
    assert bytes(body) == payload


@pytest.mark.parametrize("length", range(0, 8))
def test_truncated(length: int) -> None:
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"")[:length]
    with pytest.raises(Malformed) as e:
        icmp4.parse(msg)
    assert e.value.reason == "icmp4.truncated"


@given(st.binary(max_size=100), st.integers(min_value=0))
def test_any_bit_flip_fails_checksum(payload: bytes, bit: int) -> None:
    msg = bytearray(icmp4.build_echo(icmp4.ECHO_REQUEST, 7, 9, payload))
    bit %= len(msg) * 8
    msg[bit >> 3] ^= 1 << (bit & 7)
    with pytest.raises(Malformed) as e:
        icmp4.parse(bytes(msg))
    assert e.value.reason == "icmp4.bad_checksum"


def test_checksum_covers_every_byte_given() -> None:
    """Bytes past the message change the sum: the caller must cut at the IP
    total length, and the checksum is never taken over a length from a header."""
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 2, b"abc")
    hdr, body = icmp4.parse(msg)
    assert (hdr.type, hdr.ident, hdr.seq, bytes(body)) == (icmp4.ECHO_REQUEST, 1, 2, b"abc")
    with pytest.raises(Malformed):
        icmp4.parse(msg + b"\x01")


def test_zero_padding_past_even_message_is_harmless_only_for_zero_bytes() -> None:
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 2, b"ab")
    hdr, body = icmp4.parse(msg + b"\x00\x00")  # zeros add nothing to a ones' complement sum
    assert (hdr.ident, hdr.seq, bytes(body)) == (1, 2, b"ab\x00\x00")
    with pytest.raises(Malformed):
        icmp4.parse(msg + b"\x00\x01")


def test_error_checksum_uses_the_bytes_present_not_the_inner_total_length() -> None:
    """An error quotes a header whose total length is far more than what follows.
    The checksum covers the quoted bytes actually carried."""
    inner = ipv4.build(DST, SRC, 17, udp.build(DST, SRC, 5000, 53, b"q" * 1000))
    quote = inner[:28]
    assert int.from_bytes(quote[2:4], "big") == len(inner) > len(quote)
    msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE, 0, quote)
    hdr, body = icmp4.parse(msg)
    assert bytes(body) == quote
    assert checksum(msg) == 0


def test_frag_needed_mtu_in_rest() -> None:
    msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, 1400, b"\x45" + b"\0" * 27)
    hdr, _ = icmp4.parse(msg)
    assert hdr.rest & 0xFFFF == 1400


@given(st.binary(max_size=64))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        hdr, body = icmp4.parse(data)
    except Malformed as e:
        assert e.reason in ("icmp4.truncated", "icmp4.bad_checksum")
        return
    assert len(body) == len(data) - 8


# -- scapy as the oracle ------------------------------------------------------------

def test_scapy_echo_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.ICMP(type=8, id=0x1234, seq=77) / scapy.Raw(b"ping data!"))
    hdr, body = icmp4.parse(pkt)
    assert (hdr.type, hdr.code, hdr.ident, hdr.seq) == (8, 0, 0x1234, 77)
    assert bytes(body) == b"ping data!"


def test_scapy_odd_length_echo_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.ICMP(type=0, id=1, seq=2) / scapy.Raw(b"odd"))
    hdr, body = icmp4.parse(pkt)
    assert hdr.type == 0 and bytes(body) == b"odd"


def test_scapy_port_unreachable_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.ICMP(type=3, code=3)
                / scapy.IPerror(src="192.0.2.1", dst="192.0.2.2", len=1028)
                / scapy.UDPerror(sport=5000, dport=53, len=1008))
    hdr, body = icmp4.parse(pkt)
    assert (hdr.type, hdr.code) == (icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE)
    assert bytes(body[12:16]) == SRC and int.from_bytes(body[20:22], "big") == 5000


def test_scapy_time_exceeded_in_ip_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IP(src="192.0.2.2", dst="192.0.2.1") / scapy.ICMP(type=11, code=1)
                / scapy.IPerror(src="192.0.2.1", dst="192.0.2.2", flags="MF") / scapy.UDPerror())
    hdr_ip, data = ipv4.parse(pkt)
    hdr, body = icmp4.parse(data)
    assert (hdr.type, hdr.code) == (icmp4.TIME_EXCEEDED, 1)


def test_scapy_bad_checksum_rejected(scapy: ModuleType) -> None:
    pkt = bytes(scapy.ICMP(type=8, chksum=0x1234) / scapy.Raw(b"x"))
    with pytest.raises(Malformed):
        icmp4.parse(pkt)


@pytest.mark.parametrize("payload", [b"", b"a", b"abcdefgh" * 100])
def test_femtotcp_echo_scapy_parses(scapy: ModuleType, payload: bytes) -> None:
    msg = icmp4.build_echo(icmp4.ECHO_REPLY, 0xABCD, 0x0102, payload)
    sp = scapy.ICMP(msg)
    assert (sp.type, sp.code, sp.id, sp.seq) == (0, 0, 0xABCD, 0x0102)
    assert bytes(sp.payload) == payload
    again = scapy.ICMP(msg)
    del again.chksum
    assert scapy.ICMP(bytes(again)).chksum == sp.chksum


def test_femtotcp_error_scapy_parses(scapy: ModuleType) -> None:
    inner = ipv4.build(SRC, DST, 17, udp.build(SRC, DST, 4000, 9, b"x" * 20))
    msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE, 0, inner[:28])
    pkt = scapy.IP(ipv4.build(DST, SRC, 1, msg))
    assert pkt[scapy.ICMP].type == 3 and pkt[scapy.ICMP].code == 3
    assert pkt[scapy.IPerror].src == "192.0.2.1" and pkt[scapy.UDPerror].sport == 4000
    again = scapy.IP(ipv4.build(DST, SRC, 1, msg))
    del again[scapy.ICMP].chksum
    assert scapy.IP(bytes(again))[scapy.ICMP].chksum == pkt[scapy.ICMP].chksum
