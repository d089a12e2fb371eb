"""MLDv2 (RFC 3810) and MLDv1 (RFC 2710): reports with address records, queries
of both versions, the floating-point codes, the IP-level rules, scapy both ways."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, icmp6, ip_bytes, ipv6, ipv6ext, mld

HOST = ip_bytes("fe80::2")
ROUTER = ip_bytes("fe80::1")
G1 = ipv6.solicited_node(ip_bytes("2001:db8::2"))
G2 = ip_bytes("ff05::1:3")
S1 = ip_bytes("2001:db8::10")
S2 = ip_bytes("2001:db8::11")


def parse(msg: bytes, src: bytes = HOST, dst: bytes = ipv6.ALL_MLDV2_ROUTERS) -> mld.MldMessage:
    hdr, body = icmp6.parse(msg, src, dst)
    return mld.parse(hdr, body)


def reason(msg: bytes, src: bytes = HOST, dst: bytes = ipv6.ALL_MLDV2_ROUTERS) -> str:
    with pytest.raises(Malformed) as e:
        parse(msg, src, dst)
    return e.value.reason


RECORDS = (mld.AddressRecord(mld.CHANGE_TO_EXCLUDE, G1),
           mld.AddressRecord(mld.MODE_IS_INCLUDE, G2, (S1, S2)),
           mld.AddressRecord(mld.ALLOW_NEW_SOURCES, G2, (S1,), b"auxdata!"))


# -- round trips ----------------------------------------------------------------------

def test_v2_report_round_trip() -> None:
    rep = parse(mld.build_v2_report(HOST, RECORDS))
    assert rep == mld.MldV2Report(RECORDS)


def test_empty_v2_report() -> None:
    assert parse(mld.build_v2_report(HOST, [])) == mld.MldV2Report(())


def test_report_packet_carries_hop_limit_1_and_router_alert() -> None:
    """What the stack will send: every layer parses and check_ip accepts it."""
    pkt = mld.build_v2_report_packet(HOST, RECORDS[:1])
    hdr, payload = ipv6.parse(pkt)
    assert (hdr.hop_limit, hdr.dst, hdr.next_header) == (1, ipv6.ALL_MLDV2_ROUTERS, 0)
    chain = ipv6ext.walk(hdr.next_header, payload)
    assert chain.problem is None and chain.upper == 58 and chain.router_alert == 0
    icmp, body = icmp6.parse(payload[chain.offset:], hdr.src, hdr.dst)
    mld.check_ip(icmp.type, hdr.src, hdr.hop_limit, chain.router_alert)
    assert mld.parse(icmp, body) == mld.MldV2Report(RECORDS[:1])


def test_v2_query_round_trip() -> None:
    msg = mld.build_query(ROUTER, G2, 10000, G2, (S1, S2), qrv=3, qqi=256, suppress=True)
    q = parse(msg, ROUTER, G2)
    assert q == mld.MldQuery(2, 10000, G2, True, 3, 256, (S1, S2))


def test_general_v2_query() -> None:
    q = parse(mld.build_query(ROUTER, ipv6.ALL_NODES, 1000), ROUTER, ipv6.ALL_NODES)
    assert q == mld.MldQuery(2, 1000, ipv6.UNSPECIFIED, False, 2, 125, ())


def test_v1_messages() -> None:
    q = parse(mld.build_query(ROUTER, ipv6.ALL_NODES, 10000, version=1), ROUTER,
              ipv6.ALL_NODES)
    assert q == mld.MldQuery(1, 10000, ipv6.UNSPECIFIED, False, 0, 0, ())
    assert len(mld.build_query(ROUTER, ipv6.ALL_NODES, 10000, version=1)) == 24
    rep = parse(mld.build_v1(HOST, G1, mld.V1_REPORT, G1), HOST, G1)
    assert rep == mld.MldV1Message(mld.V1_REPORT, 0, G1)
    done = parse(mld.build_v1(HOST, ipv6.ALL_ROUTERS, mld.V1_DONE, G1), HOST, ipv6.ALL_ROUTERS)
    assert done == mld.MldV1Message(mld.V1_DONE, 0, G1)


def test_additional_data_ignored() -> None:
    """RFC 3810 5.1.12, 5.2.11: bytes after the fields count only for the checksum."""
    rep = icmp6.build(HOST, ipv6.ALL_MLDV2_ROUTERS, mld.V2_REPORT, 0, 1,
                      mld.build_v2_report(HOST, RECORDS[:1])[8:] + b"extra")
    assert parse(rep) == mld.MldV2Report(RECORDS[:1])
    q = icmp6.build(ROUTER, ipv6.ALL_NODES, mld.QUERY, 0, 100 << 16,
                    bytes(16) + b"\x02\x7d\x00\x00" + b"more bytes")
    assert parse(q, ROUTER, ipv6.ALL_NODES) == mld.MldQuery(2, 100, bytes(16), False, 2, 125, ())


# -- the floating-point codes (RFC 3810 5.1.3, 5.1.9) -----------------------------------

def test_max_response_code_every_value() -> None:
    for code in range(0x10000):
        ms = mld.decode_max_response(code)
        assert mld.encode_max_response(ms) == code
    assert mld.decode_max_response(0x7FFF) == 32767
    assert mld.decode_max_response(0x8000) == 32768
    assert mld.decode_max_response(0xFFFF) == 0x1FFF << 10


@given(st.integers(0, 0x1FFF << 10))
def test_max_response_encoding_rounds_down(ms: int) -> None:
    got = mld.decode_max_response(mld.encode_max_response(ms))
    assert got <= ms and ms - got <= ms >> 12


def test_qqic_every_value() -> None:
    for code in range(0x100):
        assert mld.encode_qqic(mld.decode_qqic(code)) == code
    assert mld.decode_qqic(0x80) == 128 and mld.decode_qqic(0xFF) == 0x1F << 10
    assert mld.encode_qqic(10 ** 9) == 0xFF and mld.encode_max_response(10 ** 12) == 0xFFFF


# -- malformed --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [mld.QUERY, mld.V1_REPORT, mld.V1_DONE])
@pytest.mark.parametrize("body_len", [0, 1, 8, 15])
def test_shorter_than_a_group_address(kind: int, body_len: int) -> None:
    assert reason(icmp6.build(HOST, G1, kind, 0, 0, bytes(body_len)), HOST, G1) == \
        "mld.truncated"


@pytest.mark.parametrize("body_len", [17, 18, 19])
def test_query_of_25_to_27_bytes(body_len: int) -> None:
    """RFC 3810 8.1: neither an MLDv1 nor an MLDv2 query."""
    assert reason(icmp6.build(ROUTER, G1, mld.QUERY, 0, 0, bytes(body_len)), ROUTER, G1) == \
        "mld.bad_query_length"


@pytest.mark.parametrize("nsrc", [1, 2, 0xFFFF])
def test_query_source_count_past_the_data(nsrc: int) -> None:
    body = bytes(16) + bytes((2, 125)) + nsrc.to_bytes(2, "big") + bytes(16 * (nsrc - 1))
    assert reason(icmp6.build(ROUTER, G1, mld.QUERY, 0, 0, body), ROUTER, G1) == \
        "mld.bad_source_count"


@pytest.mark.parametrize("count", [2, 3, 0xFFFF])
def test_report_record_count_past_the_data(count: int) -> None:
    """The count is checked against the bytes present before any loop runs."""
    body = mld.build_v2_report(HOST, RECORDS[:1])[8:]
    msg = icmp6.build(HOST, ipv6.ALL_MLDV2_ROUTERS, mld.V2_REPORT, 0, count, body)
    assert reason(msg) == "mld.bad_record_count"


@pytest.mark.parametrize("cut", [1, 16, 17])
def test_record_sources_past_the_data(cut: int) -> None:
    body = mld.build_v2_report(HOST, RECORDS[1:2])[8:]
    msg = icmp6.build(HOST, ipv6.ALL_MLDV2_ROUTERS, mld.V2_REPORT, 0, 1, body[:-cut])
    assert reason(msg) == "mld.truncated"


def test_record_aux_data_past_the_data() -> None:
    body = mld.build_v2_report(HOST, RECORDS[2:])[8:]
    msg = icmp6.build(HOST, ipv6.ALL_MLDV2_ROUTERS, mld.V2_REPORT, 0, 1, body[:-4])
    assert reason(msg) == "mld.truncated"


def test_not_mld() -> None:
    assert reason(icmp6.build_echo(HOST, ROUTER, 128, 1, 1, bytes(20)), HOST, ROUTER) == \
        "mld.not_mld"


@pytest.mark.parametrize(("kind", "src", "hop", "alert", "why"), [
    (mld.QUERY, ROUTER, 2, 0, "mld.bad_hop_limit"),
    (mld.V2_REPORT, HOST, 255, 0, "mld.bad_hop_limit"),
    (mld.QUERY, ROUTER, 1, None, "mld.no_router_alert"),
    (mld.V2_REPORT, HOST, 1, None, "mld.no_router_alert"),
    (mld.QUERY, ip_bytes("2001:db8::1"), 1, 0, "mld.bad_source"),
    (mld.QUERY, ipv6.UNSPECIFIED, 1, 0, "mld.bad_source"),
    (mld.V2_REPORT, ip_bytes("2001:db8::1"), 1, 0, "mld.bad_source"),
])
def test_ip_rules(kind: int, src: bytes, hop: int, alert: int | None, why: str) -> None:
    with pytest.raises(Malformed) as e:
        mld.check_ip(kind, src, hop, alert)
    assert e.value.reason == why


def test_ip_rules_accept() -> None:
    mld.check_ip(mld.QUERY, ROUTER, 1, 0)
    mld.check_ip(mld.V2_REPORT, ipv6.UNSPECIFIED, 1, 0)     # before an address exists
    mld.check_ip(mld.V1_REPORT, HOST, 1, 0)


def test_builders_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        mld.build_v2_report(HOST, [mld.AddressRecord(1, G1, (), b"odd")])


@settings(max_examples=400)
@given(st.sampled_from([130, 131, 132, 143]), st.integers(0, 0xFFFFFFFF),
       st.binary(max_size=120))
def test_random_bodies_never_raise_anything_else(kind: int, rest: int, body: bytes) -> None:
    msg = icmp6.build(HOST, G1, kind, 0, rest, body)
    try:
        got = parse(msg, HOST, G1)
    except Malformed as e:
        assert e.reason.startswith("mld.")
        return
    if isinstance(got, mld.MldV2Report):
        assert sum(20 + 16 * len(r.sources) + len(r.aux) for r in got.records) <= len(body)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(0, 100))
def test_mutated_reports_never_raise_anything_else(flips: list[tuple[int, int]],
                                                   cut: int) -> None:
    msg = bytearray(mld.build_v2_report(HOST, RECORDS))
    for pos, value in flips:
        msg[4 + pos % (len(msg) - 4)] = value
    msg = msg[:max(8, len(msg) - cut)]
    fixed = icmp6.build(HOST, G1, msg[0], msg[1], int.from_bytes(msg[4:8], "big"), msg[8:])
    try:
        parse(fixed, HOST, G1)
    except Malformed as e:
        assert e.reason.startswith("mld.")


# -- scapy as the oracle ----------------------------------------------------------------

def _from_scapy(pkt: object) -> tuple[mld.MldMessage, int | None, int]:
    hdr, payload = ipv6.parse(bytes(pkt))  # type: ignore[call-overload]
    chain = ipv6ext.walk(hdr.next_header, payload)
    assert chain.problem is None and chain.upper == 58
    icmp, body = icmp6.parse(payload[chain.offset:], hdr.src, hdr.dst)
    return mld.parse(icmp, body), chain.router_alert, hdr.hop_limit


def _scapy_v2_report(scapy: ModuleType) -> object:
    """RECORDS[:2] in an MLDv2 report as scapy builds it: hop limit 1, Router Alert."""
    return (scapy.IPv6(src="fe80::2", dst="ff02::16", hlim=1)
            / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
            / scapy.ICMPv6MLReport2(records=[
                scapy.ICMPv6MLDMultAddrRec(rtype=4, dst="ff02::1:ff00:2"),
                scapy.ICMPv6MLDMultAddrRec(rtype=1, dst="ff05::1:3",
                                           sources=["2001:db8::10", "2001:db8::11"])]))


def test_scapy_v2_report_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = _scapy_v2_report(scapy)
    rep, alert, hop = _from_scapy(pkt)
    assert (alert, hop) == (0, 1)
    assert rep == mld.MldV2Report((mld.AddressRecord(4, G1), mld.AddressRecord(1, G2, (S1, S2))))


def test_scapy_queries_femtotcp_parses(scapy: ModuleType) -> None:
    q2, alert, _ = _from_scapy(scapy.IPv6(src="fe80::1", dst="ff05::1:3", hlim=1)
                               / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                               / scapy.ICMPv6MLQuery2(mrd=20000, mladdr="ff05::1:3", S=1, QRV=2,
                                                      QQIC=125, sources=["2001:db8::10"]))
    assert q2 == mld.MldQuery(2, 20000, G2, True, 2, 125, (S1,)) and alert == 0
    q1, _, _ = _from_scapy(scapy.IPv6(src="fe80::1", dst="ff02::1", hlim=1)
                           / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                           / scapy.ICMPv6MLQuery(mrd=10000))
    assert q1 == mld.MldQuery(1, 10000, ipv6.UNSPECIFIED, False, 0, 0, ())


def test_scapy_v1_report_and_done_femtotcp_parses(scapy: ModuleType) -> None:
    rep, _, _ = _from_scapy(scapy.IPv6(src="fe80::2", dst="ff05::1:3", hlim=1)
                            / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                            / scapy.ICMPv6MLReport(mladdr="ff05::1:3"))
    assert rep == mld.MldV1Message(mld.V1_REPORT, 0, G2)
    done, _, _ = _from_scapy(scapy.IPv6(src="fe80::2", dst="ff02::2", hlim=1)
                             / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                             / scapy.ICMPv6MLDone(mladdr="ff05::1:3"))
    assert done == mld.MldV1Message(mld.V1_DONE, 0, G2)


def test_femtotcp_report_packet_scapy_parses(scapy: ModuleType) -> None:
    pkt = mld.build_v2_report_packet(HOST, RECORDS[:2])
    sp = scapy.IPv6(pkt)
    assert (sp.hlim, sp.dst, sp.nh) == (1, "ff02::16", 0)
    hbh = sp[scapy.IPv6ExtHdrHopByHop]
    assert isinstance(hbh.options[0], scapy.RouterAlert) and hbh.options[0].value == 0
    rep = sp[scapy.ICMPv6MLReport2]
    assert rep.records_number == 2
    recs = []
    for first in rep.records:        # scapy nests each further record in the one before
        cur = first
        while isinstance(cur, scapy.ICMPv6MLDMultAddrRec):
            recs.append((cur.rtype, cur.dst, list(cur.sources)))
            cur = cur.payload
    assert recs == [(4, "ff02::1:ff00:2", []),
                    (1, "ff05::1:3", ["2001:db8::10", "2001:db8::11"])]
    ours = _scapy_v2_report(scapy)
    assert bytes(ours) == pkt                # byte for byte what scapy builds
    again = scapy.IPv6(pkt)
    del again[scapy.ICMPv6MLReport2].cksum
    assert scapy.IPv6(bytes(again))[scapy.ICMPv6MLReport2].cksum == rep.cksum


def test_femtotcp_query_scapy_parses(scapy: ModuleType) -> None:
    msg = mld.build_query(ROUTER, G2, 40000, G2, (S1,), qrv=3, qqi=200)
    sp = scapy.IPv6(mld.packet(ROUTER, G2, msg))
    q = sp[scapy.ICMPv6MLQuery2]
    assert (q.mrd, q.mladdr, q.S, q.QRV, q.QQIC, list(q.sources)) == (
        mld.encode_max_response(40000), "ff05::1:3", 0, 3, mld.encode_qqic(200),
        ["2001:db8::10"])
    assert mld.decode_max_response(q.mrd) <= 40000


maddrs = st.binary(min_size=15, max_size=15).map(lambda b: b"\xff" + b)
records = st.builds(mld.AddressRecord, st.integers(1, 6), maddrs,
                    st.lists(st.binary(min_size=16, max_size=16), max_size=4).map(tuple),
                    st.binary(max_size=3).map(lambda b: b * 4))


@settings(max_examples=200)
@given(st.lists(records, max_size=8))
def test_v2_report_round_trip_any_records(recs: list[mld.AddressRecord]) -> None:
    assert parse(mld.build_v2_report(HOST, recs)) == mld.MldV2Report(tuple(recs))


@settings(max_examples=200)
@given(maddrs, st.lists(st.binary(min_size=16, max_size=16), max_size=5), st.integers(0, 7),
       st.booleans(), st.integers(0, 0x1FFF << 10), st.integers(0, 0x1F << 10))
def test_v2_query_round_trip_any_fields(group: bytes, sources: list[bytes], qrv: int,
                                        s: bool, ms: int, qqi: int) -> None:
    q = parse(mld.build_query(ROUTER, group, ms, group, sources, qrv=qrv, qqi=qqi, suppress=s),
              ROUTER, group)
    assert q == mld.MldQuery(2, mld.decode_max_response(mld.encode_max_response(ms)), group,
                             s, qrv, mld.decode_qqic(mld.encode_qqic(qqi)), tuple(sources))
