"""wire/igmp.py: IGMPv1/v2/v3 messages, scapy as the independent oracle both ways,
and every malformed length a named drop."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.igmp import IGMP, IGMPv3, IGMPv3_MQ, IGMPv3_MR, IGMPv3_MR_Group
from scapy.layers.inet import IP, IPOption_Router_Alert

from femtotcp.wire import Malformed, igmp

G = socket.inet_aton("239.1.2.3")
S1 = socket.inet_aton("192.0.2.9")
S2 = socket.inet_aton("192.0.2.10")


def test_scapy_v3_queries_parse() -> None:
    general = bytes(IGMPv3_MQ(mrcode=100, qrv=2, qqic=125))
    assert igmp.parse(general) == igmp.IgmpQuery(3, 100, bytes(4), False, 2, 125, ())
    specific = bytes(IGMPv3_MQ(mrcode=200, gaddr="239.1.2.3", s=1, qrv=7, qqic=200,
                               srcaddrs=["192.0.2.9", "192.0.2.10"]))
    q = igmp.parse(specific)
    assert isinstance(q, igmp.IgmpQuery)
    # scapy encodes the Max Resp time (20 s) itself; QQIC it takes as the code:
    # 200 = 0xc8 is floating point (RFC 3376 4.1.7), exp 4, mant 8: 24 << 7 = 3072 s.
    assert (q.version, q.max_response, q.group, q.suppress, q.qrv, q.qqi, q.sources) == (
        3, 200, G, True, 7, 3072, (S1, S2))
    assert specific[1] >= 128          # (so the decoding above is the float one)


def test_scapy_v1_v2_messages_parse() -> None:
    assert igmp.parse(bytes(IGMP(type=0x11, mrcode=100, gaddr="0.0.0.0"))) == \
        igmp.IgmpQuery(2, 100, bytes(4), False, 0, 0, ())
    assert igmp.parse(bytes(IGMP(type=0x11, mrcode=0, gaddr="0.0.0.0"))).version == 1
    for kind in (igmp.V1_REPORT, igmp.V2_REPORT, igmp.V2_LEAVE):
        assert igmp.parse(bytes(IGMP(type=kind, gaddr="239.1.2.3"))) == \
            igmp.IgmpReport(kind, G)


def test_scapy_v3_report_parses() -> None:
    raw = bytes(IGMPv3_MR(records=[
        IGMPv3_MR_Group(rtype=4, maddr="239.1.2.3"),
        IGMPv3_MR_Group(rtype=1, maddr="239.1.2.4", srcaddrs=["192.0.2.9"])]))
    assert igmp.parse(raw) == igmp.IgmpV3Report((
        igmp.GroupRecord(4, G, ()), igmp.GroupRecord(1, socket.inet_aton("239.1.2.4"), (S1,))))


def test_our_messages_as_scapy_reads_them() -> None:
    rep = IGMPv3(igmp.build_v3_report([
        igmp.GroupRecord(igmp.CHANGE_TO_EXCLUDE, G),
        igmp.GroupRecord(igmp.MODE_IS_INCLUDE, G, (S1, S2))]))
    assert isinstance(rep, IGMPv3_MR) and rep.numgrp == 2
    assert [(r.rtype, r.maddr, r.srcaddrs) for r in rep.records] == [
        (4, "239.1.2.3", []), (1, "239.1.2.3", ["192.0.2.9", "192.0.2.10"])]
    again = IGMPv3(bytes(rep))
    again.chksum = None                 # scapy recomputes: ours was right
    assert bytes(IGMPv3(bytes(again))) == bytes(rep)
    leave = IGMP(igmp.build_v2(igmp.V2_LEAVE, G))
    assert (leave.type, leave.gaddr) == (0x17, "239.1.2.3")
    check = IGMP(bytes(leave))
    check.chksum = None
    assert bytes(IGMP(bytes(check))) == bytes(leave)
    q = IGMPv3(igmp.build_v3_query(G, 3072, [S1], 3, 60, True))
    assert isinstance(q, IGMPv3_MQ)
    assert (q.gaddr, q.s, q.qrv, q.srcaddrs, q.mrcode) == ("239.1.2.3", 1, 3, ["192.0.2.9"],
                                                           0xC8)


def test_packet_is_ttl_1_with_router_alert() -> None:
    msg = igmp.build_v3_report([igmp.GroupRecord(igmp.CHANGE_TO_EXCLUDE, G)])
    pkt = IP(igmp.packet(S1, igmp.ALL_V3_ROUTERS, msg, 7))
    assert (pkt.ttl, pkt.tos, pkt.proto, pkt.dst, pkt.flags.DF, pkt.id) == (
        1, 0xC0, 2, "224.0.0.22", True, 7)
    assert any(isinstance(o, IPOption_Router_Alert) for o in pkt.options)
    ours = bytes(pkt)
    pkt.chksum = None
    assert bytes(IP(bytes(pkt))) == ours          # the header checksum is scapy's too


def test_float_codes_round_trip() -> None:
    for value in (0, 1, 127, 128, 129, 1000, 3072, 31744):
        code = igmp.encode_code(value)
        assert 0 <= code <= 255 and igmp.decode_code(code) <= value
    assert igmp.decode_code(0xFF) == 31744


def _fixed(raw: bytes) -> bytes:
    from femtotcp.wire.checksum import checksum
    body = bytearray(raw)
    body[2:4] = b"\0\0"
    body[2:4] = checksum(body).to_bytes(2, "big")
    return bytes(body)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\x11\x64\x00", "igmp.truncated"),
    (bytes(IGMP(type=0x16, gaddr="239.1.2.3"))[:7], "igmp.truncated"),
    (b"\x16\x00\x00\x00" + G, "igmp.bad_checksum"),
    (_fixed(bytes(IGMPv3_MQ())[:10]), "igmp.bad_query_length"),
    (_fixed(bytes(IGMPv3_MQ())[:11] + b"\0"[:0]), "igmp.bad_query_length"),
    (_fixed(bytes(IGMPv3_MQ(srcaddrs=["192.0.2.9"]))[:12] + bytes(3)), "igmp.bad_source_count"),
    (_fixed(b"\x22\x00\x00\x00\x00\x00\x00\x05" + bytes(16)), "igmp.bad_record_count"),
    (_fixed(b"\x22\x00\x00\x00\x00\x00\x00\x02" + bytes([4, 0, 0, 3]) + G + bytes(8)),
     "igmp.truncated"),
    (_fixed(b"\x22\x00\x00\x00\x00\x00\x00\x01" + bytes([4, 2, 0, 0]) + G + bytes(4)),
     "igmp.truncated"),
    (_fixed(b"\x30\x00\x00\x00" + bytes(4)), "igmp.unknown_type"),
])
def test_malformed_is_a_named_drop(raw: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as exc:
        igmp.parse(raw)
    assert exc.value.reason == reason


def test_a_query_with_bytes_after_its_sources_is_taken() -> None:
    """RFC 3376 4.1.10: what follows the sources is ignored (checksummed)."""
    raw = _fixed(bytes(IGMPv3_MQ(gaddr="239.1.2.3", srcaddrs=["192.0.2.9"])) + bytes(8))
    q = igmp.parse(raw)
    assert isinstance(q, igmp.IgmpQuery) and q.sources == (S1,)
