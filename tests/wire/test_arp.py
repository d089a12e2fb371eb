"""ARP packets (RFC 826): round trips, every field validated, scapy as the oracle."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from femtotcp.wire import Malformed, arp, ip_bytes, ip_str, mac_bytes, mac_str

MAC_A = mac_bytes("02:00:00:00:00:01")
MAC_B = mac_bytes("02:00:00:00:00:02")
IP_A = ip_bytes("192.0.2.1")
IP_B = ip_bytes("192.0.2.2")


def raw(htype: int = 1, ptype: int = 0x0800, hlen: int = 6, plen: int = 4, op: int = 1) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", htype, ptype, hlen, plen, op,
                       MAC_A, IP_A, b"\0" * 6, IP_B)


@given(st.sampled_from([arp.REQUEST, arp.REPLY]), st.binary(min_size=6, max_size=6),
       st.binary(min_size=4, max_size=4), st.binary(min_size=6, max_size=6),
       st.binary(min_size=4, max_size=4))
def test_round_trip(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    data = arp.build(op, sha, spa, tha, tpa)
    assert len(data) == arp.LENGTH == 28
    assert arp.parse(data) == arp.ArpPacket(op, sha, spa, tha, tpa)
    assert arp.parse(memoryview(data)) == arp.ArpPacket(op, sha, spa, tha, tpa)


def test_valid_raw_parses() -> None:
    assert arp.parse(raw()).op == arp.REQUEST


@pytest.mark.parametrize("length", range(0, 28))
def test_truncated(length: int) -> None:
    with pytest.raises(Malformed) as e:
        arp.parse(raw()[:length])
    assert e.value.reason == "arp.truncated"


def test_ethernet_padding_after_arp_ignored() -> None:
    pkt = arp.parse(raw(op=2) + b"\x00" * 18)
    assert pkt.op == arp.REPLY and pkt.tpa == IP_B


@pytest.mark.parametrize(("fields", "reason"), [
    ({"htype": 6}, "arp.bad_htype"),            # IEEE 802 networks
    ({"htype": 0}, "arp.bad_htype"),
    ({"ptype": 0x86DD}, "arp.bad_ptype"),
    ({"ptype": 0x0806}, "arp.bad_ptype"),
    ({"hlen": 8}, "arp.bad_length"),
    ({"hlen": 0}, "arp.bad_length"),
    ({"plen": 16}, "arp.bad_length"),
    ({"plen": 0}, "arp.bad_length"),
    ({"op": 0}, "arp.bad_opcode"),
    ({"op": 3}, "arp.bad_opcode"),              # RARP request
    ({"op": 4}, "arp.bad_opcode"),              # RARP reply
    ({"op": 8}, "arp.bad_opcode"),              # InARP
    ({"op": 0xFFFF}, "arp.bad_opcode"),
])
def test_fields_validated(fields: dict[str, int], reason: str) -> None:
    with pytest.raises(Malformed) as e:
        arp.parse(raw(**fields))
    assert e.value.reason == reason


@given(st.binary(max_size=64))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        pkt = arp.parse(data)
    except Malformed as e:
        assert e.reason.startswith("arp.")
        return
    assert pkt.op in (arp.REQUEST, arp.REPLY)
    assert data[:8] == b"\x00\x01\x08\x00\x06\x04" + pkt.op.to_bytes(2, "big")


# -- scapy as the oracle ------------------------------------------------------------

@pytest.mark.parametrize("op", ["who-has", "is-at"])
def test_scapy_builds_femtotcp_parses(scapy: ModuleType, op: str) -> None:
    pkt = scapy.ARP(op=op, hwsrc=mac_str(MAC_A), psrc=ip_str(IP_A), hwdst=mac_str(MAC_B),
                    pdst=ip_str(IP_B))
    parsed = arp.parse(bytes(pkt))
    assert parsed == arp.ArpPacket(1 if op == "who-has" else 2, MAC_A, IP_A, MAC_B, IP_B)


def test_scapy_padded_frame_parses(scapy: ModuleType) -> None:
    frame = bytes(scapy.Ether(dst="ff:ff:ff:ff:ff:ff", src=mac_str(MAC_A)) /
                  scapy.ARP(hwsrc=mac_str(MAC_A), psrc=ip_str(IP_A), pdst=ip_str(IP_B)) /
                  scapy.Raw(b"\x00" * 18))
    assert len(frame) == 60
    assert arp.parse(frame[14:]).tpa == IP_B


def test_scapy_rarp_request_rejected(scapy: ModuleType) -> None:
    pkt = bytes(scapy.ARP(op=3, hwsrc=mac_str(MAC_A), hwdst=mac_str(MAC_A)))
    with pytest.raises(Malformed):
        arp.parse(pkt)


def test_femtotcp_builds_scapy_parses(scapy: ModuleType) -> None:
    data = arp.build(arp.REPLY, MAC_B, IP_B, MAC_A, IP_A)
    pkt = scapy.ARP(data)
    assert (pkt.hwtype, pkt.ptype, pkt.hwlen, pkt.plen, pkt.op) == (1, 0x0800, 6, 4, 2)
    assert (pkt.hwsrc, pkt.psrc, pkt.hwdst, pkt.pdst) == (
        mac_str(MAC_B), "192.0.2.2", mac_str(MAC_A), "192.0.2.1")
    assert bytes(pkt) == data
