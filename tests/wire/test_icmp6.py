"""ICMPv6 (RFC 4443): round trips, the pseudo-header checksum, error quotes cut
to 1280 bytes, the "never an error about an error" test, scapy as the oracle."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, icmp6, ip_bytes, ipv6, ipv6ext
from femtotcp.wire.checksum import reference_checksum

SRC = ip_bytes("2001:db8::1")
DST = ip_bytes("2001:db8::2")


def reason(data: bytes, src: bytes = SRC, dst: bytes = DST) -> str:
    with pytest.raises(Malformed) as e:
        icmp6.parse(data, src, dst)
    return e.value.reason


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFFFFFF),
       st.binary(max_size=1500))
def test_round_trip(type_: int, code: int, rest: int, body: bytes) -> None:
    msg = icmp6.build(SRC, DST, type_, code, rest, body)
    hdr, got = icmp6.parse(msg, SRC, DST)
    assert (hdr.type, hdr.code, hdr.rest) == (type_, code, rest)
    assert bytes(got) == body and hdr.is_error == (type_ < 128)
    pseudo = SRC + DST + struct.pack("!I3xB", len(msg), 58)
    assert reference_checksum(pseudo + msg[:2] + b"\0\0" + msg[4:]) == \
        int.from_bytes(msg[2:4], "big")


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_echo_round_trip(ident: int, seq: int, payload: bytes) -> None:
    msg = icmp6.build_echo(SRC, DST, icmp6.ECHO_REQUEST, ident, seq, payload)
    hdr, body = icmp6.parse(msg, SRC, DST)
    assert (hdr.type, hdr.code, hdr.ident, hdr.seq) == (128, 0, ident, seq)
    assert bytes(body) == payload


@pytest.mark.parametrize("length", range(0, 8))
def test_echo_shorter_than_eight_bytes(length: int) -> None:
    msg = icmp6.build_echo(SRC, DST, icmp6.ECHO_REQUEST, 1, 1, b"")[:length]
    assert reason(msg) == "icmp6.truncated"


@given(st.binary(max_size=100), st.integers(min_value=0))
def test_any_bit_flip_fails_checksum(payload: bytes, bit: int) -> None:
    msg = bytearray(icmp6.build_echo(SRC, DST, icmp6.ECHO_REQUEST, 7, 9, payload))
    bit %= len(msg) * 8
    msg[bit >> 3] ^= 1 << (bit & 7)
    assert reason(bytes(msg)) == "icmp6.bad_checksum"


def test_checksum_covers_the_pseudo_header() -> None:
    msg = icmp6.build_echo(SRC, DST, icmp6.ECHO_REQUEST, 1, 2, b"abc")
    icmp6.parse(msg, SRC, DST)
    assert reason(msg, SRC, ip_bytes("2001:db8::3")) == "icmp6.bad_checksum"
    icmp6.parse(msg, DST, SRC)           # swapped addresses sum the same ...
    assert reason(msg + b"\x00\x00") == "icmp6.bad_checksum"   # ... a longer length does not


def test_zero_checksum_is_not_none() -> None:
    """ICMPv6 has no "no checksum" value (unlike UDP over IPv4)."""
    msg = bytearray(icmp6.build_echo(SRC, DST, icmp6.ECHO_REQUEST, 1, 2, b"abc"))
    msg[2:4] = b"\0\0"
    assert reason(bytes(msg)) == "icmp6.bad_checksum"


def test_packet_too_big_and_param_problem_fields() -> None:
    invoking = ipv6.build(DST, SRC, 17, b"u" * 1500)
    hdr, body = icmp6.parse(icmp6.build_packet_too_big(SRC, DST, 1400, invoking), SRC, DST)
    assert (hdr.type, hdr.code, hdr.mtu) == (icmp6.PACKET_TOO_BIG, 0, 1400)
    hdr, body = icmp6.parse(icmp6.build_param_problem(SRC, DST, 2, 42, invoking), SRC, DST)
    assert (hdr.type, hdr.code, hdr.pointer) == (icmp6.PARAMETER_PROBLEM, 2, 42)
    hdr, _ = icmp6.parse(icmp6.build_time_exceeded(SRC, DST, 1, invoking), SRC, DST)
    assert (hdr.type, hdr.code, hdr.rest) == (icmp6.TIME_EXCEEDED, 1, 0)
    hdr, _ = icmp6.parse(icmp6.build_dest_unreachable(SRC, DST, 4, invoking), SRC, DST)
    assert (hdr.type, hdr.code, hdr.rest) == (icmp6.DEST_UNREACHABLE, 4, 0)


@pytest.mark.parametrize("size", [0, 1, 100, 1192, 1193, 1500, 9000, 65535])
def test_error_quote_fits_in_1280(size: int) -> None:
    invoking = ipv6.build(DST, SRC, 17, b"q" * size)
    msg = icmp6.build_dest_unreachable(SRC, DST, icmp6.PORT_UNREACHABLE, invoking)
    pkt = ipv6.build(SRC, DST, 58, msg)
    assert len(pkt) == min(1280, 48 + len(invoking))
    _, body = icmp6.parse(msg, SRC, DST)
    assert bytes(body) == invoking[:1232]
    quoted, data = ipv6.parse_quote(body)
    assert quoted.payload_len == size and len(data) == min(size, 1192)


def test_error_quote_room_for_extension_headers() -> None:
    invoking = ipv6.build(DST, SRC, 17, b"q" * 2000)
    msg = icmp6.build_error(SRC, DST, icmp6.TIME_EXCEEDED, 0, invoking, room=1232 - 8)
    assert len(msg) == 8 + 1224
    assert len(icmp6.quote(invoking, room=-5)) == 0


def test_build_error_refuses_informational_types() -> None:
    with pytest.raises(ValueError):
        icmp6.build_error(SRC, DST, icmp6.ECHO_REPLY, 0, b"x")


def _packet_body(pkt: bytes) -> tuple[int, bytes]:
    hdr, body = ipv6.parse(pkt)
    return hdr.next_header, bytes(body)


@pytest.mark.parametrize(("pkt", "answer"), [
    (ipv6.build(SRC, DST, 58, icmp6.build_dest_unreachable(SRC, DST, 4, b"x" * 48)), True),
    (ipv6.build(SRC, DST, 58, icmp6.build(SRC, DST, icmp6.REDIRECT, 0, 0, bytes(32))), True),
    (ipv6.build(SRC, DST, 58, icmp6.build_echo(SRC, DST, 128, 1, 1)), False),
    (ipv6.build(SRC, DST, 17, b"\x01" * 8), False),
    (ipv6.build(SRC, DST, 60, ipv6ext.build_dest_options(58, [])
                + icmp6.build(SRC, DST, icmp6.TIME_EXCEEDED, 0, 0)), True),
    (ipv6.build(SRC, DST, 44, ipv6ext.build_fragment(58, 8, False, 1) + b"\x01" * 8), False),
    (ipv6.build(SRC, DST, 60, b"\x3a\x05" + bytes(6)), False),     # chain past the end
    (ipv6.build(SRC, DST, 58, b""), False),
])
def test_no_error_about_errors_or_redirects(pkt: bytes, answer: bool) -> None:
    """RFC 4443 2.4 e.1, e.2."""
    assert icmp6.no_error_about(*_packet_body(pkt)) is answer


@given(st.binary(max_size=64))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        hdr, body = icmp6.parse(data, SRC, DST)
    except Malformed as e:
        assert e.reason in ("icmp6.truncated", "icmp6.bad_checksum")
        return
    assert len(body) == len(data) - 8


@given(st.binary(max_size=64))
def test_random_messages_with_fixed_checksum_parse(data: bytes) -> None:
    data = data.ljust(8, b"\0")
    msg = icmp6.build(SRC, DST, data[0], data[1], int.from_bytes(data[4:8], "big"), data[8:])
    assert icmp6.parse(msg, SRC, DST)[0].type == data[0]
    icmp6.no_error_about(58, msg)


# -- scapy as the oracle ------------------------------------------------------------

def _scapy(pkt: object) -> tuple[icmp6.Icmp6Header, bytes]:
    hdr, payload = ipv6.parse(bytes(pkt))  # type: ignore[call-overload]
    assert hdr.next_header == 58
    icmp, body = icmp6.parse(payload, hdr.src, hdr.dst)
    return icmp, bytes(body)


def test_scapy_echo_femtotcp_parses(scapy: ModuleType) -> None:
    icmp, body = _scapy(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                        / scapy.ICMPv6EchoRequest(id=0x1234, seq=77, data=b"ping data!"))
    assert (icmp.type, icmp.code, icmp.ident, icmp.seq) == (128, 0, 0x1234, 77)
    assert body == b"ping data!"


def test_scapy_odd_length_echo_reply_femtotcp_parses(scapy: ModuleType) -> None:
    icmp, body = _scapy(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                        / scapy.ICMPv6EchoReply(id=1, seq=2, data=b"odd"))
    assert icmp.type == 129 and body == b"odd"


def test_scapy_errors_femtotcp_parses(scapy: ModuleType) -> None:
    inner = (scapy.IPerror6(src="2001:db8::2", dst="2001:db8::1")
             / scapy.UDPerror(sport=5000, dport=53))
    base = scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
    icmp, body = _scapy(base / scapy.ICMPv6DestUnreach(code=4) / inner)
    assert (icmp.type, icmp.code) == (1, 4)
    quoted, data = ipv6.parse_quote(body)
    assert quoted.src == DST and int.from_bytes(data[:2], "big") == 5000
    icmp, _ = _scapy(base / scapy.ICMPv6PacketTooBig(mtu=1280) / inner)
    assert (icmp.type, icmp.mtu) == (2, 1280)
    icmp, _ = _scapy(base / scapy.ICMPv6TimeExceeded(code=1) / inner)
    assert (icmp.type, icmp.code) == (3, 1)
    icmp, _ = _scapy(base / scapy.ICMPv6ParamProblem(code=1, ptr=6) / inner)
    assert (icmp.type, icmp.code, icmp.pointer) == (4, 1, 6)


def test_scapy_bad_checksum_rejected(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                / scapy.ICMPv6EchoRequest(cksum=0x1234, data=b"x"))
    hdr, payload = ipv6.parse(pkt)
    assert reason(bytes(payload)) == "icmp6.bad_checksum"


@pytest.mark.parametrize("payload", [b"", b"a", b"abcdefgh" * 100])
def test_femtotcp_echo_scapy_parses(scapy: ModuleType, payload: bytes) -> None:
    pkt = ipv6.build(SRC, DST, 58, icmp6.build_echo(SRC, DST, icmp6.ECHO_REPLY, 0xABCD,
                                                     0x0102, payload))
    sp = scapy.IPv6(pkt)
    echo = sp[scapy.ICMPv6EchoReply]
    assert (echo.type, echo.code, echo.id, echo.seq, bytes(echo.data)) == (
        129, 0, 0xABCD, 0x0102, payload)
    again = scapy.IPv6(pkt)
    del again[scapy.ICMPv6EchoReply].cksum
    assert scapy.IPv6(bytes(again))[scapy.ICMPv6EchoReply].cksum == echo.cksum


def test_femtotcp_error_scapy_parses(scapy: ModuleType) -> None:
    from femtotcp.wire import udp
    inner = ipv6.build(SRC, DST, 17, udp.build(SRC, DST, 4000, 9, b"x" * 2000))
    msg = icmp6.build_dest_unreachable(DST, SRC, icmp6.PORT_UNREACHABLE, inner)
    pkt = scapy.IPv6(ipv6.build(DST, SRC, 58, msg))
    assert len(bytes(pkt)) == 1280
    err = pkt[scapy.ICMPv6DestUnreach]
    assert (err.type, err.code) == (1, 4)
    assert pkt[scapy.IPerror6].src == "2001:db8::1" and pkt[scapy.UDPerror].sport == 4000
    again = scapy.IPv6(bytes(pkt))
    del again[scapy.ICMPv6DestUnreach].cksum
    assert scapy.IPv6(bytes(again))[scapy.ICMPv6DestUnreach].cksum == err.cksum


def test_femtotcp_packet_too_big_scapy_parses(scapy: ModuleType) -> None:
    inner = ipv6.build(SRC, DST, 17, b"y" * 1600)
    msg = icmp6.build_packet_too_big(DST, SRC, 1400, inner)
    sp = scapy.IPv6(ipv6.build(DST, SRC, 58, msg))
    assert sp[scapy.ICMPv6PacketTooBig].mtu == 1400
    msg = icmp6.build_param_problem(DST, SRC, 0, 4, inner)
    sp = scapy.IPv6(ipv6.build(DST, SRC, 58, msg))
    assert (sp[scapy.ICMPv6ParamProblem].code, sp[scapy.ICMPv6ParamProblem].ptr) == (0, 4)


MCAST = ip_bytes("ff02::1")


@pytest.mark.parametrize(("type_", "code", "src", "dst", "link_mc", "allowed"), [
    (icmp6.DEST_UNREACHABLE, 4, SRC, DST, False, True),
    (icmp6.DEST_UNREACHABLE, 4, ipv6.UNSPECIFIED, DST, False, False),    # e.6
    (icmp6.PACKET_TOO_BIG, 0, MCAST, DST, False, False),                 # e.6
    (icmp6.DEST_UNREACHABLE, 4, SRC, MCAST, False, False),               # e.3
    (icmp6.TIME_EXCEEDED, 1, SRC, MCAST, False, False),
    (icmp6.PARAMETER_PROBLEM, 0, SRC, MCAST, False, False),
    (icmp6.PARAMETER_PROBLEM, 1, SRC, MCAST, False, False),
    (icmp6.PACKET_TOO_BIG, 0, SRC, MCAST, False, True),                  # exception 1
    (icmp6.PARAMETER_PROBLEM, 2, SRC, MCAST, False, True),               # exception 2
    (icmp6.DEST_UNREACHABLE, 3, SRC, DST, True, False),                  # e.4, e.5
    (icmp6.PARAMETER_PROBLEM, 2, SRC, DST, True, True),
    (icmp6.PACKET_TOO_BIG, 0, SRC, DST, True, True),
])
def test_error_allowed(type_: int, code: int, src: bytes, dst: bytes, link_mc: bool,
                       allowed: bool) -> None:
    assert icmp6.error_allowed(type_, code, src, dst, link_mc) is allowed


# -- the whole IPv6 input path over the wire modules, fuzzed ------------------------

def _input(pkt: bytes) -> None:
    """What the stack's IPv6 input will do with the wire modules, in order."""
    from femtotcp.wire import mld, ndp
    hdr, payload = ipv6.parse(pkt)
    ipv6.check_addresses(hdr.src, hdr.dst)
    chain = ipv6ext.walk(hdr.next_header, payload)
    if chain.problem is not None or chain.upper != 58 or chain.fragment is not None:
        return
    msg, body = icmp6.parse(payload[chain.offset:], hdr.src, hdr.dst)
    if msg.type in ndp.TYPES:
        ndp.parse(msg, body, hdr.src, hdr.dst, hdr.hop_limit)
    elif msg.type in mld.TYPES:
        mld.check_ip(msg.type, hdr.src, hdr.hop_limit, chain.router_alert)
        mld.parse(msg, body)
    elif msg.is_error:
        icmp6.parse_quote(body)
    icmp6.no_error_about(hdr.next_header, payload)
    icmp6.error_allowed(msg.type, msg.code, hdr.src, hdr.dst)


def _bases() -> list[tuple[bytes, bytes, int, bytes, bytes]]:
    """(src, dst, hop limit, extension headers, ICMPv6 message) of valid packets."""
    from femtotcp.wire import mac_bytes, mld, ndp
    ll, rt = ip_bytes("fe80::2"), ip_bytes("fe80::1")
    mac = mac_bytes("02:00:00:00:00:02")
    sol = ipv6.solicited_node(DST)
    hbh = ipv6ext.build_hop_by_hop(58, [ipv6ext.router_alert()])
    opts = (ndp.opt_source_lladdr(mac) + ndp.opt_mtu(1500)
            + ndp.opt_prefix(ip_bytes("2001:db8:1::"), 64, 100, 50)
            + ndp.opt_rdnss(60, [DST]) + ndp.opt_dnssl(60, ["example.com", "a.b"]))
    invoking = ipv6.build(DST, SRC, 17, b"u" * 100)
    return [
        (ll, ipv6.ALL_MLDV2_ROUTERS, 1, hbh,
         mld.build_v2_report(ll, [mld.AddressRecord(4, sol, (SRC,))])),
        (rt, ipv6.ALL_NODES, 1, hbh, mld.build_query(rt, ipv6.ALL_NODES, 1000, sol, (SRC,))),
        (rt, ipv6.ALL_NODES, 255, b"", ndp.build_ra(rt, ipv6.ALL_NODES, options=opts)),
        (ll, sol, 255, b"", ndp.build_ns(ll, sol, DST, mac)),
        (DST, ll, 255, b"", ndp.build_na(DST, ll, DST, target_lladdr=mac)),
        (rt, ll, 255, b"", ndp.build_redirect(rt, ll, ip_bytes("fe80::9"), SRC, mac, invoking)),
        (SRC, DST, 64, b"", icmp6.build_echo(SRC, DST, 128, 1, 2, b"data")),
        (SRC, DST, 64, b"", icmp6.build_param_problem(SRC, DST, 2, 44, invoking)),
    ]


BASES = _bases()


@settings(max_examples=500)
@given(st.sampled_from(range(len(BASES))),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       st.integers(0, 200), st.booleans())
def test_mutated_ipv6_input_never_raises_anything_else(which: int,
                                                       flips: list[tuple[int, int]],
                                                       cut: int, fix: bool) -> None:
    """Mutations of the ICMPv6 message, its checksum made right again (so the
    parsers behind it see them) or left wrong; then cut short."""
    src, dst, hop, ext, msg = BASES[which]
    m = bytearray(msg)
    for pos, value in flips:
        m[pos % len(m)] = value
    if fix and len(m) >= 8:
        m = bytearray(icmp6.build(src, dst, m[0], m[1], int.from_bytes(m[4:8], "big"), m[8:]))
    body = bytes(ext + m)[:max(0, len(ext) + len(m) - cut)]
    pkt = ipv6.build(src, dst, 0 if ext else 58, body, hop_limit=hop)
    try:
        _input(pkt)
    except Malformed as e:
        assert e.reason.split(".")[0] in ("ipv6", "icmp6", "ndp", "mld")


def test_every_base_packet_passes_the_input_path() -> None:
    for src, dst, hop, ext, msg in BASES:
        _input(ipv6.build(src, dst, 0 if ext else 58, ext + msg, hop_limit=hop))


# -- what an error is about ---------------------------------------------------------

def test_parse_quote_plain_udp() -> None:
    from femtotcp.wire import udp
    inner = ipv6.build(DST, SRC, 17, udp.build(DST, SRC, 4000, 53, b"q" * 2000))
    _, body = icmp6.parse(icmp6.build_dest_unreachable(SRC, DST, 4, inner), SRC, DST)
    q = icmp6.parse_quote(body)
    assert (q.src, q.dst, q.upper) == (DST, SRC, 17)
    assert int.from_bytes(q.transport[:2], "big") == 4000 and len(q.transport) == 1192


def test_parse_quote_past_extension_headers() -> None:
    inner = ipv6.build(DST, SRC, 0, ipv6ext.build_hop_by_hop(60, [])
                       + ipv6ext.build_dest_options(6, [(0x1E, b"x" * 10)]) + b"T" * 20)
    q = icmp6.parse_quote(inner)
    assert q.upper == 6 and bytes(q.transport) == b"T" * 20


def test_parse_quote_first_and_later_fragments() -> None:
    first = ipv6.build(DST, SRC, 44, ipv6ext.build_fragment(17, 0, True, 1) + b"U" * 16)
    q = icmp6.parse_quote(first)
    assert q.upper == 17 and bytes(q.transport) == b"U" * 16
    later = ipv6.build(DST, SRC, 44, ipv6ext.build_fragment(17, 1232, False, 1) + b"U" * 16)
    assert icmp6.parse_quote(later).upper == ipv6.PROTO_FRAGMENT


@pytest.mark.parametrize("quote", [
    b"",
    ipv6.build(DST, SRC, 17, b"u" * 8)[:39],                 # header cut
    b"\x40" + ipv6.build(DST, SRC, 17, b"u" * 8)[1:],         # not IPv6
    ipv6.build(DST, SRC, 60, b"\x11\x03" + bytes(30))[:50],   # header past the quote
])
def test_parse_quote_malformed(quote: bytes) -> None:
    with pytest.raises(Malformed) as e:
        icmp6.parse_quote(quote)
    assert e.value.reason == "icmp6.bad_quote"


def test_scapy_error_quote_femtotcp_reads(scapy: ModuleType) -> None:
    inner = (scapy.IPerror6(src="2001:db8::2", dst="2001:db8::1")
             / scapy.UDPerror(sport=5000, dport=53))
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                / scapy.ICMPv6PacketTooBig(mtu=1280) / inner)
    _, payload = ipv6.parse(pkt)
    _, body = icmp6.parse(payload, SRC, DST)
    q = icmp6.parse_quote(body)
    assert (q.src, q.dst, q.upper) == (DST, SRC, 17)
    assert int.from_bytes(q.transport[2:4], "big") == 53
