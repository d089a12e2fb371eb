"""IPv6 headers, addresses and extension headers (RFC 8200, RFC 4291): round
trips, every length check, the chain walk's rules, scapy as the oracle both ways."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, ip_bytes, ipv6, ipv6ext
from femtotcp.wire.checksum import reference_checksum
from femtotcp.wire.ipv6ext import Action

SRC = ip_bytes("2001:db8::1")
DST = ip_bytes("2001:db8::2")
LL = ip_bytes("fe80::200:ff:fe00:1")


def header(*, version: int = 6, tc: int = 0, fl: int = 0, plen: int | None = None,
           nh: int = 59, hlim: int = 64, payload: bytes = b"") -> bytes:
    if plen is None:
        plen = len(payload)
    return struct.pack("!IHBB16s16s", version << 28 | tc << 20 | fl, plen, nh, hlim,
                       SRC, DST) + payload


def reason(data: bytes) -> str:
    with pytest.raises(Malformed) as e:
        ipv6.parse(data)
    return e.value.reason


def walk_reason(nh: int, payload: bytes, **kw: object) -> str:
    with pytest.raises(Malformed) as e:
        ipv6ext.walk(nh, payload, **kw)  # type: ignore[arg-type]
    return e.value.reason


def opts_header(nh: int, area: bytes) -> bytes:
    """A Hop-by-Hop/Destination Options header around raw option bytes."""
    assert (len(area) + 2) % 8 == 0
    return bytes((nh, (len(area) + 2) // 8 - 1)) + area


addrs = st.binary(min_size=16, max_size=16)


# -- the fixed header --------------------------------------------------------------

@given(addrs, addrs, st.integers(0, 255), st.binary(max_size=1500), st.integers(0, 255),
       st.integers(0, 255), st.integers(0, 0xFFFFF))
def test_round_trip(src: bytes, dst: bytes, nh: int, payload: bytes, hlim: int, tc: int,
                    fl: int) -> None:
    if nh == 0 and not payload:
        nh = 59
    pkt = ipv6.build(src, dst, nh, payload, hop_limit=hlim, traffic_class=tc, flow_label=fl)
    hdr, body = ipv6.parse(pkt)
    assert hdr == ipv6.Ipv6Header(tc, fl, len(payload), nh, hlim, src, dst)
    assert bytes(body) == payload and len(pkt) == 40 + len(payload)


def test_emit_matches_build() -> None:
    buf = bytearray(48)
    ipv6.emit(buf, 0, SRC, DST, 17, 8, hop_limit=3, traffic_class=0xB8, flow_label=0x12345)
    assert bytes(buf[:40]) == ipv6.header_only(SRC, DST, 17, 8, 3, 0xB8, 0x12345)
    assert ipv6.build(SRC, DST, 17, b"x" * 8, 3, 0xB8, 0x12345)[:40] == bytes(buf[:40])


@pytest.mark.parametrize("plen", [-1, 0x10000])
def test_build_refuses_payload_length_out_of_range(plen: int) -> None:
    with pytest.raises(ValueError):
        ipv6.header_only(SRC, DST, 17, plen)
    with pytest.raises(ValueError):
        ipv6.emit(bytearray(40), 0, SRC, DST, 17, plen)


@pytest.mark.parametrize("length", range(0, 40))
def test_truncated_header(length: int) -> None:
    assert reason(header(payload=b"abc")[:length]) == "ipv6.truncated"


@pytest.mark.parametrize("version", [0, 4, 5, 7, 15])
def test_bad_version(version: int) -> None:
    assert reason(header(version=version)) == "ipv6.bad_version"


@pytest.mark.parametrize(("plen", "present"), [(1, 0), (8, 7), (1000, 999), (0xFFFF, 20)])
def test_payload_length_past_the_data(plen: int, present: int) -> None:
    assert reason(header(plen=plen, payload=b"x" * present)) == "ipv6.truncated"


def test_ethernet_padding_cut_off() -> None:
    hdr, body = ipv6.parse(header(nh=17, payload=b"abcd") + b"\x00" * 20)
    assert hdr.payload_len == 4 and bytes(body) == b"abcd"


def test_jumbogram_refused() -> None:
    """Payload length 0 with Hop-by-Hop next announces a jumbogram (RFC 2675)."""
    assert reason(header(plen=0, nh=0, payload=b"\x3b\x00\xc2\x04\x00\x01\x00\x00")) == \
        "ipv6.jumbogram"


def test_empty_payload_is_fine() -> None:
    hdr, body = ipv6.parse(header(nh=59))
    assert hdr.payload_len == 0 and len(body) == 0


def test_parse_accepts_bytearray_and_memoryview() -> None:
    pkt = header(nh=17, payload=b"xy")
    for form in (bytearray(pkt), memoryview(pkt)):
        assert bytes(ipv6.parse(form)[1]) == b"xy"


def test_parse_quote_tolerates_cut_payload() -> None:
    pkt = ipv6.build(SRC, DST, 17, b"u" * 2000)
    hdr, body = ipv6.parse_quote(pkt[:1232])
    assert hdr.payload_len == 2000 and len(body) == 1192
    with pytest.raises(Malformed) as e:
        ipv6.parse_quote(pkt[:39])
    assert e.value.reason == "ipv6.truncated_quote"
    with pytest.raises(Malformed) as e:
        ipv6.parse_quote(b"\x45" + pkt[1:60])
    assert e.value.reason == "ipv6.bad_quote_version"


@given(st.binary(max_size=100))
def test_random_bytes_parse_or_malformed(data: bytes) -> None:
    try:
        hdr, body = ipv6.parse(data)
    except Malformed as e:
        assert e.reason.startswith("ipv6.")
        return
    assert len(body) == hdr.payload_len <= len(data) - 40


# -- the pseudo-header checksum (RFC 8200 8.1) ------------------------------------

@given(addrs, addrs, st.integers(0, 255), st.binary(max_size=300))
def test_upper_checksum_matches_a_plain_loop(src: bytes, dst: bytes, nh: int,
                                             data: bytes) -> None:
    pseudo = src + dst + struct.pack("!I3xB", len(data), nh)
    assert ipv6.upper_checksum(src, dst, nh, data) == reference_checksum(pseudo + data)
    csum = ipv6.upper_checksum(src, dst, nh, b"\0\0" + data)
    assert ipv6.verify_upper(src, dst, nh, csum.to_bytes(2, "big") + data)


def test_upper_checksum_agrees_with_scapy_udp(scapy: ModuleType) -> None:
    pkt = scapy.IPv6(bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                           / scapy.UDP(sport=5, dport=7) / scapy.Raw(b"hello")))
    udp_bytes = bytes(pkt[scapy.UDP])
    assert ipv6.verify_upper(SRC, DST, 17, udp_bytes)
    zeroed = udp_bytes[:6] + b"\0\0" + udp_bytes[8:]
    assert ipv6.upper_checksum(SRC, DST, 17, zeroed) == pkt[scapy.UDP].chksum


def test_pseudo_length_is_32_bits() -> None:
    """A length over 65535 (a jumbogram's) must still fold correctly."""
    data = b"\x01" * 70000
    pseudo = SRC + DST + struct.pack("!I3xB", len(data), 17)
    assert ipv6.upper_checksum(SRC, DST, 17, data) == reference_checksum(pseudo + data)


# -- addresses (RFC 4291) ----------------------------------------------------------

@pytest.mark.parametrize(("text", "ll", "mc", "ula", "linkscope"), [
    ("fe80::1", True, False, False, True),
    ("febf::1", True, False, False, True),
    ("fec0::1", False, False, False, False),
    ("ff02::1", False, True, False, True),
    ("ff01::1", False, True, False, True),
    ("ff05::2", False, True, False, False),
    ("fd00::1", False, False, True, False),
    ("2001:db8::1", False, False, False, False),
])
def test_address_classes(text: str, ll: bool, mc: bool, ula: bool, linkscope: bool) -> None:
    a = ip_bytes(text)
    assert (ipv6.is_link_local(a), ipv6.is_multicast(a), ipv6.is_unique_local(a),
            ipv6.is_link_scope(a)) == (ll, mc, ula, linkscope)


def test_well_known_addresses() -> None:
    assert ipv6.UNSPECIFIED == ip_bytes("::") and ipv6.is_unspecified(ip_bytes("::"))
    assert ipv6.LOOPBACK == ip_bytes("::1") and ipv6.is_loopback(ip_bytes("::1"))
    assert ipv6.ALL_NODES == ip_bytes("ff02::1")
    assert ipv6.ALL_ROUTERS == ip_bytes("ff02::2")
    assert ipv6.ALL_MLDV2_ROUTERS == ip_bytes("ff02::16")
    assert ipv6.multicast_scope(ip_bytes("ff05::1:3")) == ipv6.SCOPE_SITE


def test_solicited_node_and_mac_agree_with_scapy(scapy: ModuleType) -> None:
    import socket

    for text in ("2001:db8::1:2:3", "fe80::aabb:ccff:fedd:eeff", "::"):
        a = ip_bytes(text)
        ns = ipv6.solicited_node(a)
        assert ns == scapy.in6_getnsma(socket.inet_pton(socket.AF_INET6, text))
        assert ipv6.is_solicited_node(ns) and not ipv6.is_solicited_node(a)
        assert ipv6.multicast_mac(ns) == bytes.fromhex(scapy.in6_getnsmac(ns).replace(":", ""))
    assert ipv6.solicited_node(ip_bytes("2001:db8::12:3456")) == ip_bytes("ff02::1:ff12:3456")
    assert ipv6.multicast_mac(ipv6.ALL_NODES) == bytes.fromhex("333300000001")


def test_v4_mapped() -> None:
    m = ipv6.v4_mapped(bytes([192, 0, 2, 1]))
    assert m == ip_bytes("::ffff:192.0.2.1") and ipv6.is_v4_mapped(m)
    assert ipv6.v4_from_mapped(m) == bytes([192, 0, 2, 1])
    assert ipv6.v4_from_mapped(SRC) is None and not ipv6.is_v4_mapped(ipv6.UNSPECIFIED)
    with pytest.raises(ValueError):
        ipv6.v4_mapped(SRC)


def test_eui64_and_link_local_agree_with_scapy(scapy: ModuleType) -> None:
    mac = bytes.fromhex("020000000001")
    iid = ipv6.eui64_iid(mac)
    assert iid == ip_bytes("::" + scapy.in6_mactoifaceid("02:00:00:00:00:01"))[8:]
    assert ipv6.link_local(iid) == ip_bytes("fe80::ff:fe00:1")
    assert ipv6.with_iid(ip_bytes("2001:db8:1:2::"), iid) == ip_bytes("2001:db8:1:2:0:ff:fe00:1")
    with pytest.raises(ValueError):
        ipv6.eui64_iid(b"\x00" * 8)
    with pytest.raises(ValueError):
        ipv6.with_iid(SRC, b"\x00" * 6)


@pytest.mark.parametrize(("plen", "expect"), [
    (0, "::"), (32, "2001:db8::"), (48, "2001:db8:aaaa::"), (52, "2001:db8:aaaa:b000::"),
    (127, "2001:db8:aaaa:bbbb::fffe"), (128, "2001:db8:aaaa:bbbb::ffff")])
def test_mask(plen: int, expect: str) -> None:
    a = ip_bytes("2001:db8:aaaa:bbbb::ffff")
    assert ipv6.mask(a, plen) == ip_bytes(expect)
    assert ipv6.in_prefix(a, ip_bytes(expect), plen)


def test_mask_refuses_bad_length() -> None:
    for plen in (-1, 129):
        with pytest.raises(ValueError):
            ipv6.mask(SRC, plen)
    assert not ipv6.in_prefix(SRC, ip_bytes("2001:db9::"), 32)


@pytest.mark.parametrize(("src", "dst", "why"), [
    ("ff02::1", "2001:db8::2", "ipv6.multicast_source"),
    ("::1", "2001:db8::2", "ipv6.loopback_address"),
    ("2001:db8::1", "::1", "ipv6.loopback_address"),
    ("::ffff:192.0.2.1", "2001:db8::2", "ipv6.v4_mapped_address"),
    ("2001:db8::1", "::ffff:192.0.2.1", "ipv6.v4_mapped_address"),
    ("2001:db8::1", "::", "ipv6.unspecified_destination"),
    ("2001:db8::1", "ff00::1", "ipv6.bad_multicast_scope"),
    ("2001:db8::1", "ff01::1", "ipv6.bad_multicast_scope"),
])
def test_addresses_no_link_may_carry(src: str, dst: str, why: str) -> None:
    with pytest.raises(Malformed) as e:
        ipv6.check_addresses(ip_bytes(src), ip_bytes(dst))
    assert e.value.reason == why


@pytest.mark.parametrize(("src", "dst"), [
    ("::", "ff02::1:ff00:1"), ("fe80::1", "ff02::1"), ("2001:db8::1", "2001:db8::2"),
    ("fe80::1", "ff05::1:3")])
def test_addresses_that_are_fine(src: str, dst: str) -> None:
    ipv6.check_addresses(ip_bytes(src), ip_bytes(dst))


# -- the chain walk: plain cases ----------------------------------------------------

@pytest.mark.parametrize("upper", [6, 17, 58, 59, 132, 255])
def test_no_extension_headers(upper: int) -> None:
    chain = ipv6ext.walk(upper, b"data")
    assert chain == ipv6ext.Chain(upper, 0, 6, None, 0, None, False, None)


def test_hop_by_hop_router_alert_then_icmp6() -> None:
    hbh = ipv6ext.build_hop_by_hop(58, [ipv6ext.router_alert()])
    assert hbh == bytes.fromhex("3a00050200000100")     # what Linux sends for MLD
    chain = ipv6ext.walk(0, hbh + b"\x8f\x00\x00\x00\x00\x00\x00\x00")
    assert (chain.upper, chain.offset, chain.nh_pointer, chain.router_alert) == (58, 8, 40, 0)
    assert chain.problem is None


def test_whole_chain_in_recommended_order() -> None:
    payload = (ipv6ext.build_hop_by_hop(60, [])
               + ipv6ext.build_dest_options(43, [(0x1E, b"abc")])
               + ipv6ext.build_routing(60, 4 + 1, 0, bytes(12))
               + ipv6ext.build_dest_options(17, [])
               + b"udp header")
    chain = ipv6ext.walk(0, payload)
    assert chain.problem is None and chain.upper == 17 and chain.offset == 8 + 8 + 16 + 8
    assert chain.nh_pointer == 40 + 32 and chain.fragment is None and not chain.rh0


def test_read_options_reports_every_non_padding_option() -> None:
    hdr = ipv6ext.build_dest_options(17, [(0x1E, b"xy"), (0x9F, b""), (0x3F, b"z" * 9)])
    assert ipv6ext.read_options(hdr) == [(0x1E, b"xy"), (0x9F, b""), (0x3F, b"z" * 9)]
    assert ipv6ext.read_options(ipv6ext.build_hop_by_hop(6, [ipv6ext.router_alert(7)]),
                                hop_by_hop=True) == [(5, b"\x00\x07")]
    with pytest.raises(Malformed):
        ipv6ext.read_options(hdr[:-8])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 6, 7, 13, 254])
def test_builder_pads_to_eight(n: int) -> None:
    hdr = ipv6ext.build_dest_options(59, [(0x1E, b"q" * n)])
    assert len(hdr) % 8 == 0 and len(hdr) == (hdr[1] + 1) * 8
    assert ipv6ext.read_options(hdr) == [(0x1E, b"q" * n)]
    assert ipv6ext.walk(60, hdr).problem is None


def test_builders_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        ipv6ext.build_dest_options(59, [(1, b"\0\0")])
    with pytest.raises(ValueError):
        ipv6ext.build_dest_options(59, [(0x1E, b"x" * 256)])
    with pytest.raises(ValueError):
        ipv6ext.build_dest_options(59, [(0x1E, b"x" * 255)] * 9)
    with pytest.raises(ValueError):
        ipv6ext.build_routing(59, 4, 0, b"\0" * 3)
    with pytest.raises(ValueError):
        ipv6ext.build_fragment(59, 7, False, 1)
    with pytest.raises(ValueError):
        ipv6ext.build_fragment(59, 0x10000, False, 1)


# -- unknown options by their two high bits (RFC 8200 4.2) ---------------------------

@pytest.mark.parametrize(("kind", "action"), [
    (0x1E, None),                                     # 00: skip
    (0x5E, Action.DISCARD),                           # 01: discard silently
    (0x9E, Action.DISCARD_ICMP),                      # 10: discard, ICMP code 2
    (0xDE, Action.DISCARD_ICMP_UNLESS_MULTICAST),     # 11: ICMP unless multicast dst
])
@pytest.mark.parametrize("nh", [0, 60])
def test_unknown_option_action(kind: int, action: Action | None, nh: int) -> None:
    payload = ipv6ext.build_options_header(17, [(0x1E, b""), (kind, b"abc")]) + b"u" * 8
    chain = ipv6ext.walk(nh, payload)
    if action is None:
        assert chain.problem is None and chain.upper == 17
        return
    assert chain.problem == ipv6ext.Problem("ipv6.unknown_option", action,
                                            ipv6ext.PP_OPTION, 40 + 2 + 2)


def test_unknown_option_pointer_after_other_headers() -> None:
    """The pointer counts from the fixed header's first byte (RFC 4443 3.4)."""
    payload = (ipv6ext.build_hop_by_hop(60, [])
               + bytes((17, 0, 1, 1, 0, 0x9A, 1, 0)) + b"u" * 8)
    problem = ipv6ext.walk(0, payload).problem
    assert problem is not None and problem.pointer == 40 + 8 + 5
    assert problem.code == 2 and problem.action is Action.DISCARD_ICMP


def test_router_alert_only_in_hop_by_hop() -> None:
    """In Destination Options type 5 is just an unknown option with bits 00."""
    dst = ipv6ext.build_dest_options(17, [ipv6ext.router_alert()])
    chain = ipv6ext.walk(60, dst + b"u" * 8)
    assert chain.problem is None and chain.router_alert is None


@pytest.mark.parametrize(("jumbo", "pointer"), [
    (b"\x00\x01\x00\x00", 42),     # 65536: the Payload Length is not 0, at the option
    (b"\x00\x00\x01\x00", 44),     # < 65536: at the Jumbo Payload Length
])
def test_jumbo_option_errors_as_rfc_2675(jumbo: bytes, pointer: int) -> None:
    """RFC 2675 3 (Linux's ipv6_hop_jumbo): Parameter Problem code 0, never a
    code 2 as an unknown option would get."""
    hbh = ipv6ext.build_hop_by_hop(17, [(ipv6ext.OPT_JUMBO, jumbo)])
    problem = ipv6ext.walk(0, hbh).problem
    assert problem == ipv6ext.Problem("ipv6.jumbo_option", Action.DISCARD_ICMP,
                                      ipv6ext.PP_HEADER_FIELD, pointer)


def test_jumbo_option_of_a_wrong_length_or_alignment_is_dropped() -> None:
    assert walk_reason(0, bytes((17, 0, 0xC2, 3, 0, 1, 0, 0))) == "ipv6.bad_jumbo_option"
    # at 4n+3 (after a Pad1), not 4n+2
    assert walk_reason(0, bytes((17, 1, 0, 0xC2, 4, 0, 1, 0, 0, 1, 5, 0, 0, 0, 0, 0))) \
        == "ipv6.bad_jumbo_option"


# -- malformed option areas ------------------------------------------------------------

@pytest.mark.parametrize(("area", "why"), [
    (b"\x1e\x05\x00\x00\x00\x00", "ipv6.bad_option_length"),     # one byte past the end
    (b"\x1e\xff\x00\x00\x00\x00", "ipv6.bad_option_length"),
    (b"\x00\x00\x00\x00\x00\x1e", "ipv6.bad_option_length"),     # type without length byte
    (b"\x00" * 6 + b"\x00\x00\x00\x00\x00\x00\x00\x00", "ipv6.bad_padding"),  # 14 x Pad1
    (b"\x01\x04\x00\x00\x00\x00" + b"\x01\x06" + bytes(6), "ipv6.bad_padding"),  # PadN 6 + 8
    (b"\x01\x04\x00\x00\x01\x00", "ipv6.bad_padding"),            # PadN with data
    (b"\x05\x03\x00\x00\x00\x00", "ipv6.bad_router_alert"),      # router alert length 3
    (b"\x05\x00\x01\x02\x00\x00", "ipv6.bad_router_alert"),
])
def test_bad_hop_by_hop_options(area: bytes, why: str) -> None:
    assert walk_reason(0, opts_header(17, area) + b"u" * 8) == why


def test_padding_limit_is_seven() -> None:
    ok = opts_header(17, b"\x01\x05" + bytes(5) + b"\x1e\x00" + bytes((1, 3, 0, 0, 0)))
    assert ipv6ext.walk(60, ok).problem is None
    six = opts_header(17, b"\x00" * 6)                      # the whole header padding
    assert ipv6ext.walk(60, six).problem is None


def test_too_many_options() -> None:
    eight = opts_header(17, b"\x1e\x00" * 7 + b"\x1e\x06" + bytes(6))
    assert ipv6ext.walk(60, eight).problem is None
    nine = opts_header(17, b"\x1e\x00" * 9 + b"\x01\x02\x00\x00")
    assert walk_reason(60, nine) == "ipv6.too_many_options"


# -- malformed chains: lengths ----------------------------------------------------------

@pytest.mark.parametrize("nh", [0, 43, 60])
@pytest.mark.parametrize("present", [0, 1])
def test_header_without_its_length_byte(nh: int, present: int) -> None:
    assert walk_reason(nh, b"\x11"[:present]) == "ipv6.ext_truncated"


def test_hop_by_hop_length_wrap() -> None:
    """Hdr Ext Len 255 means 2048 bytes (a C parser in 8 bits wraps to 0)."""
    hbh = b"\x11\xff\x01\x04\x00\x00\x00\x00"
    assert walk_reason(0, hbh + b"u" * 100) == "ipv6.ext_truncated"
    pkt = ipv6.build(SRC, DST, 0, hbh + b"u" * 100)
    hdr, body = ipv6.parse(pkt)
    assert walk_reason(hdr.next_header, body) == "ipv6.ext_truncated"


def test_largest_hop_by_hop_fits() -> None:
    area = (b"\x1e\xff" + bytes(255)) * 7 + b"\x1e\xf0" + bytes(0xF0) + b"\x01\x03" + bytes(3)
    hbh = opts_header(17, area)
    assert len(hbh) == 2048
    assert ipv6ext.walk(0, hbh + b"u" * 8).offset == 2048


@pytest.mark.parametrize("missing", [1, 7, 8, 15])
def test_destination_options_past_the_end(missing: int) -> None:
    dst = ipv6ext.build_dest_options(17, [(0x1E, b"x" * 12)])
    assert len(dst) == 16
    assert walk_reason(60, dst[:16 - missing]) == "ipv6.ext_truncated"


def test_extension_length_zero_advances_eight() -> None:
    """Hdr Ext Len 0 is 8 bytes, never 0: a chain of them ends at the byte bound."""
    zero = bytes((60, 0, 1, 4, 0, 0, 0, 0))
    assert walk_reason(60, zero * 1000) == "ipv6.ext_chain_too_long"
    chain = ipv6ext.walk(60, zero * 7 + bytes((17, 0, 1, 4, 0, 0, 0, 0)))
    assert chain.offset == 64 and chain.upper == 17


def test_headers_repeat_any_number_of_times() -> None:
    """RFC 8200 4.1: any order, any number of times (Linux counts none): ten
    Destination Options headers, then ICMPv6, reach the upper layer; only the
    byte bound ends a chain."""
    zero = bytes((60, 0, 1, 4, 0, 0, 0, 0))
    chain = ipv6ext.walk(60, zero * 9 + bytes((58, 0, 1, 4, 0, 0, 0, 0)) + bytes(8))
    assert chain.problem is None and chain.upper == 58 and chain.offset == 80
    most = ipv6ext.MAX_CHAIN_LEN // 8
    assert ipv6ext.walk(60, zero * (most - 1) + bytes((17, 0, 1, 4, 0, 0, 0, 0))).upper == 17
    assert walk_reason(60, zero * most + bytes((17, 0, 1, 4, 0, 0, 0, 0))) \
        == "ipv6.ext_chain_too_long"


def test_chain_length_bound() -> None:
    big = opts_header(60, (b"\x1e\xff" + bytes(255)) * 3 + b"\x1e\x01" + bytes(1))
    assert len(big) == 776
    ok = big + big + b"\x3b\x00" + bytes(6)
    assert ipv6ext.walk(60, ok).upper == 59
    assert walk_reason(60, big * 3) == "ipv6.ext_chain_too_long"


@pytest.mark.parametrize("present", range(0, 8))
def test_fragment_header_truncated(present: int) -> None:
    assert walk_reason(44, ipv6ext.build_fragment(17, 8, True, 1)[:present]) == \
        "ipv6.ext_truncated"


# -- rules of the chain -----------------------------------------------------------------

@pytest.mark.parametrize("before", [60, 43])
def test_hop_by_hop_only_first(before: int) -> None:
    first = (ipv6ext.build_dest_options(0, []) if before == 60
             else ipv6ext.build_routing(0, 4 + 1, 0, bytes(12)))
    payload = first + ipv6ext.build_hop_by_hop(17, []) + b"u" * 8
    chain = ipv6ext.walk(before, payload)
    assert chain.problem == ipv6ext.Problem("ipv6.hbh_not_first", Action.DISCARD_ICMP,
                                            ipv6ext.PP_NEXT_HEADER, 40)


def test_hop_by_hop_not_first_after_reassembly() -> None:
    problem = ipv6ext.walk(0, ipv6ext.build_hop_by_hop(17, []), base=48, nh_pointer=40,
                           first=False).problem
    assert problem is not None and problem.reason == "ipv6.hbh_not_first"
    assert problem.pointer == 40


def test_rh0_with_segments_left_refused() -> None:
    rh0 = ipv6ext.build_routing(17, 0, 1, bytes(4) + ip_bytes("2001:db8::99"))
    chain = ipv6ext.walk(43, rh0 + b"u" * 8)
    assert chain.rh0
    assert chain.problem == ipv6ext.Problem("ipv6.rh0", Action.DISCARD_ICMP,
                                            ipv6ext.PP_HEADER_FIELD, 42)


def test_rh0_without_segments_left_flagged() -> None:
    """RFC 5095: an RH0 is an unrecognized type; with segments left 0 it would
    be ignored, so the walk only flags it and the stack refuses it."""
    rh0 = ipv6ext.build_routing(17, 0, 0, bytes(4) + ip_bytes("2001:db8::99"))
    chain = ipv6ext.walk(43, rh0 + b"u" * 8)
    assert chain.rh0 and chain.problem is None and chain.upper == 17


@pytest.mark.parametrize("rtype", [2, 3, 4, 200])
def test_other_routing_types(rtype: int) -> None:
    left = ipv6ext.walk(43, ipv6ext.build_routing(17, rtype, 2, bytes(12)))
    assert left.problem == ipv6ext.Problem("ipv6.unknown_routing_type", Action.DISCARD_ICMP,
                                           0, 42)
    done = ipv6ext.walk(43, ipv6ext.build_routing(17, rtype, 0, bytes(12)))
    assert done.problem is None and not done.rh0 and done.offset == 16


# -- fragments (RFC 8200 4.5, RFC 7112, RFC 6946) ---------------------------------------

def test_first_fragment() -> None:
    frag = ipv6ext.build_fragment(17, 0, True, 0xDEADBEEF)
    chain = ipv6ext.walk(44, frag + b"u" * 16)
    assert chain.fragment == ipv6ext.FragmentHeader(17, 0, True, 0xDEADBEEF)
    assert (chain.upper, chain.offset, chain.unfragmentable, chain.nh_pointer) == (17, 8, 0, 6)
    assert chain.problem is None and not chain.fragment.atomic


def test_later_fragment_after_unfragmentable_part() -> None:
    payload = (ipv6ext.build_hop_by_hop(44, [])
               + ipv6ext.build_fragment(6, 1480, False, 7) + b"\xff" * 13)
    chain = ipv6ext.walk(0, payload)
    assert chain.fragment == ipv6ext.FragmentHeader(6, 1480, False, 7)
    assert (chain.upper, chain.offset, chain.unfragmentable, chain.nh_pointer) == (6, 16, 8, 40)
    assert chain.problem is None


def test_fragment_reserved_bits_ignored() -> None:
    frag = bytes((17, 0xFF)) + (1480 | 6 | 1).to_bytes(2, "big") + (9).to_bytes(4, "big")
    chain = ipv6ext.walk(44, frag + b"u" * 8)
    assert chain.fragment == ipv6ext.FragmentHeader(17, 1480, True, 9)


def test_atomic_fragment_is_processed_in_isolation() -> None:
    payload = ipv6ext.build_fragment(60, 0, False, 5) + ipv6ext.build_dest_options(17, []) + \
        b"udp!udp!"
    chain = ipv6ext.walk(44, payload)
    assert chain.fragment is not None and chain.fragment.atomic
    assert (chain.upper, chain.offset, chain.nh_pointer) == (17, 16, 48)
    assert chain.problem is None


@pytest.mark.parametrize("data_len", [1, 7, 9, 1001])
def test_fragment_with_more_not_multiple_of_eight(data_len: int) -> None:
    chain = ipv6ext.walk(44, ipv6ext.build_fragment(59, 8, True, 1) + b"x" * data_len)
    assert chain.problem == ipv6ext.Problem("ipv6.bad_fragment_length", Action.DISCARD_ICMP,
                                            0, 4)


def test_last_fragment_any_length() -> None:
    chain = ipv6ext.walk(44, ipv6ext.build_fragment(59, 8, False, 1) + b"x" * 3)
    assert chain.problem is None and chain.fragment is not None


def test_fragment_reassembling_past_65535() -> None:
    pay = ipv6ext.build_fragment(59, 65528, False, 1) + b"x" * 8
    assert ipv6ext.walk(44, pay).problem == ipv6ext.Problem(
        "ipv6.fragment_too_big", Action.DISCARD_ICMP, 0, 42)
    ok = ipv6ext.build_fragment(59, 65520, False, 1) + b"x" * 7
    assert ipv6ext.walk(44, ok).problem is None


@pytest.mark.parametrize(("after", "data"), [
    (6, b"t" * 8),                                    # TCP header cut
    (6, b"t" * 16),
    (17, b""),                                        # no UDP header at all
    (58, b""),
    (60, b"\x06\x00" + bytes(6) + b"t" * 8),           # Destination Options, then TCP cut
    (60, b"\x11\x01" + bytes(6)),                     # Destination Options cut
    (44, b"\x11\x00\x00\x08" + bytes(4)),              # a later fragment's header inside
])
def test_first_fragment_without_whole_chain(after: int, data: bytes) -> None:
    """RFC 7112 5: the first fragment must reach through the upper-layer header."""
    chain = ipv6ext.walk(44, ipv6ext.build_fragment(after, 0, True, 1) + data)
    assert chain.problem == ipv6ext.Problem("ipv6.incomplete_chain", Action.DISCARD_ICMP,
                                            ipv6ext.PP_INCOMPLETE_CHAIN, 0)


@pytest.mark.parametrize(("after", "data"), [
    (6, b"t" * 24), (17, b"u" * 8), (58, b"i" * 8), (59, b""), (132, b"s" * 8)])
def test_first_fragment_with_upper_header(after: int, data: bytes) -> None:
    chain = ipv6ext.walk(44, ipv6ext.build_fragment(after, 0, True, 1) + data)
    assert chain.problem is None and chain.upper == after


def test_first_fragment_with_whole_chain() -> None:
    data = ipv6ext.build_dest_options(6, []) + b"t" * 24
    chain = ipv6ext.walk(44, ipv6ext.build_fragment(60, 0, True, 1) + data)
    assert chain.problem is None and chain.upper == 60 and chain.offset == 8


def test_walk_after_reassembly() -> None:
    """The stack continues on the reassembled data with the chain's fields."""
    payload = ipv6ext.build_hop_by_hop(44, []) + ipv6ext.build_fragment(60, 0, True, 3) + \
        ipv6ext.build_dest_options(17, [(0x9E, b"")]) + b"u" * 8
    first = ipv6ext.walk(0, payload)
    data = payload[first.offset:]
    rest = ipv6ext.walk(first.upper, data, base=40 + first.unfragmentable,
                        nh_pointer=first.nh_pointer, first=False)
    assert rest.problem is not None and rest.problem.pointer == 40 + 8 + 2


# -- skip_chain and the bounds ------------------------------------------------------------

def test_skip_chain() -> None:
    payload = (ipv6ext.build_hop_by_hop(51, [(0x9E, b"")])      # options are not processed
               + bytes((60, 1, 0, 0)) + bytes(8)                  # AH: (1 + 2) * 4 bytes
               + ipv6ext.build_dest_options(58, []) + b"icmp")
    assert ipv6ext.skip_chain(0, payload) == (58, 28)
    later = ipv6ext.build_fragment(6, 8, False, 1) + b"x"
    assert ipv6ext.skip_chain(44, later) == (44, 0)
    with pytest.raises(Malformed):
        ipv6ext.skip_chain(60, bytes((60, 0)) * 4 * 9)
    with pytest.raises(Malformed):
        ipv6ext.skip_chain(51, b"\x06\x05" + bytes(10))


ext_kinds = st.sampled_from([0, 43, 44, 60, 6, 17, 58, 59, 51])


@st.composite
def chains(draw: st.DrawFn) -> tuple[int, bytes]:
    """Plausible chains: random headers of the four kinds with random options."""
    kinds = draw(st.lists(ext_kinds, max_size=10))
    first = kinds[0] if kinds else 59
    out = b""
    for i, kind in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else draw(st.sampled_from([6, 17, 58, 59]))
        if kind in (0, 60):
            opts = draw(st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=12)),
                                 max_size=4))
            out += ipv6ext.build_options_header(nxt, opts)
        elif kind == 43:
            out += ipv6ext.build_routing(nxt, draw(st.integers(0, 255)),
                                         draw(st.integers(0, 3)), bytes(4))
        elif kind == 44:
            out += ipv6ext.build_fragment(nxt, draw(st.integers(0, 20)) * 8,
                                          draw(st.booleans()), draw(st.integers(0, 9)))
        else:
            break
    return first, out + draw(st.binary(max_size=40))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    nh, payload = draw(chains())
    pkt = bytearray(ipv6.build(SRC, DST, nh, payload))
    for _ in range(draw(st.integers(0, 6))):
        if not pkt:
            break
        i = draw(st.integers(0, len(pkt) - 1))
        pkt[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(pkt)))
    return bytes(pkt[:cut]) if draw(st.booleans()) else bytes(pkt)


def _input(pkt: bytes) -> None:
    """Everything the IPv6 input does with the wire modules on one packet."""
    try:
        hdr, payload = ipv6.parse(pkt)
        ipv6.check_addresses(hdr.src, hdr.dst)
        chain = ipv6ext.walk(hdr.next_header, payload)
    except Malformed as e:
        assert e.reason.startswith("ipv6.")
        return
    if chain.problem is None:
        assert 0 <= chain.offset <= len(payload)
        assert chain.offset <= ipv6ext.MAX_CHAIN_LEN + ipv6ext.FRAGMENT_LEN
        assert chain.upper not in ipv6ext.EXT_HEADERS or chain.fragment is not None
    else:
        assert 0 <= chain.problem.pointer < len(pkt)
    try:
        ipv6ext.skip_chain(hdr.next_header, payload)
    except Malformed as e:
        assert e.reason.startswith("ipv6.")


@settings(max_examples=400)
@given(mutated())
def test_mutated_packets_never_raise_anything_else(pkt: bytes) -> None:
    _input(pkt)


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_random_payloads_never_raise_anything_else(nh: int, payload: bytes) -> None:
    _input(ipv6.build(SRC, DST, nh, payload))
    _input(ipv6.build(SRC, DST, 0, payload))
    _input(ipv6.build(SRC, DST, 60, payload))


# -- scapy as the oracle -----------------------------------------------------------------

def test_scapy_builds_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9, tc=0xB8, fl=0xABCDE)
                / scapy.UDP(sport=1, dport=2) / scapy.Raw(b"payload"))
    hdr, body = ipv6.parse(pkt)
    assert hdr == ipv6.Ipv6Header(0xB8, 0xABCDE, 15, 17, 9, SRC, DST)
    assert bytes(body[8:]) == b"payload"


def test_scapy_chain_femtotcp_walks(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IPv6(src="fe80::1", dst="ff02::16")
                / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                / scapy.IPv6ExtHdrDestOpt(
                    options=[scapy.HBHOptUnknown(otype=0x1E, optdata=b"ab")])
                / scapy.IPv6ExtHdrRouting(type=0, segleft=0, addresses=["2001:db8::9"])
                / scapy.ICMPv6EchoRequest(id=1, seq=2))
    hdr, body = ipv6.parse(pkt)
    chain = ipv6ext.walk(hdr.next_header, body)
    assert chain.problem is None and chain.upper == 58 and chain.router_alert == 0
    assert chain.rh0 and bytes(body[chain.offset:chain.offset + 1]) == b"\x80"


@pytest.mark.parametrize(("otype", "action"), [(0x5F, Action.DISCARD),
                                               (0x9F, Action.DISCARD_ICMP),
                                               (0xDF, Action.DISCARD_ICMP_UNLESS_MULTICAST)])
def test_scapy_unknown_option_femtotcp_acts(scapy: ModuleType, otype: int, action: Action) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                / scapy.IPv6ExtHdrDestOpt(options=[scapy.PadN(optdata=b"\0\0"),
                                                   scapy.HBHOptUnknown(otype=otype, optdata=b"x")])
                / scapy.UDP())
    hdr, body = ipv6.parse(pkt)
    problem = ipv6ext.walk(hdr.next_header, body).problem
    assert problem is not None and problem.action is action
    assert pkt[problem.pointer] == otype


def test_scapy_rh0_femtotcp_refuses(scapy: ModuleType) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                / scapy.IPv6ExtHdrRouting(type=0, addresses=["2001:db8::3", "2001:db8::4"])
                / scapy.UDP())
    hdr, body = ipv6.parse(pkt)
    chain = ipv6ext.walk(hdr.next_header, body)
    assert chain.rh0 and chain.problem is not None and chain.problem.reason == "ipv6.rh0"
    assert pkt[chain.problem.pointer] == 0 and chain.problem.pointer == 42


@pytest.mark.parametrize(("offset", "m"), [(0, 1), (185, 1), (185, 0), (0, 0)])
def test_scapy_fragment_femtotcp_parses(scapy: ModuleType, offset: int, m: int) -> None:
    pkt = bytes(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                / scapy.IPv6ExtHdrFragment(offset=offset, m=m, id=0x01020304, nh=17)
                / scapy.Raw(b"\0" * 24))
    hdr, body = ipv6.parse(pkt)
    chain = ipv6ext.walk(hdr.next_header, body)
    assert chain.problem is None
    assert chain.fragment == ipv6ext.FragmentHeader(17, offset * 8, bool(m), 0x01020304)
    assert chain.fragment.atomic == (offset == 0 and m == 0)


def test_scapy_fragments_femtotcp_walks_each(scapy: ModuleType) -> None:
    frags = scapy.fragment6(scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
                            / scapy.IPv6ExtHdrFragment() / scapy.UDP(sport=1, dport=2)
                            / scapy.Raw(b"z" * 3000),
                            1280)
    seen = []
    for f in frags:
        hdr, body = ipv6.parse(bytes(f))
        chain = ipv6ext.walk(hdr.next_header, body)
        assert chain.problem is None and chain.fragment is not None
        seen.append((chain.fragment.offset, chain.fragment.more, len(body) - chain.offset))
    assert seen[0][0] == 0 and all(m for _, m, _ in seen[:-1]) and not seen[-1][1]
    assert sum(n for _, _, n in seen) == 3008


def test_femtotcp_builds_scapy_parses(scapy: ModuleType) -> None:
    pkt = ipv6.build(SRC, DST, 59, b"", hop_limit=255, traffic_class=0x2E, flow_label=77)
    sp = scapy.IPv6(pkt)
    assert (sp.version, sp.tc, sp.fl, sp.plen, sp.nh, sp.hlim, sp.src, sp.dst) == (
        6, 0x2E, 77, 0, 59, 255, "2001:db8::1", "2001:db8::2")


def test_femtotcp_chain_scapy_parses(scapy: ModuleType) -> None:
    payload = (ipv6ext.build_hop_by_hop(60, [ipv6ext.router_alert(0)])
               + ipv6ext.build_dest_options(43, [(0x1E, b"abc")])
               + ipv6ext.build_routing(44, 0, 0, bytes(4) + SRC)
               + ipv6ext.build_fragment(17, 1480, True, 0xCAFE)
               + b"x" * 8)
    sp = scapy.IPv6(ipv6.build(SRC, DST, 0, payload))
    hbh = sp[scapy.IPv6ExtHdrHopByHop]
    assert hbh.nh == 60 and hbh.len == 0
    assert isinstance(hbh.options[0], scapy.RouterAlert) and hbh.options[0].value == 0
    dst = sp[scapy.IPv6ExtHdrDestOpt]
    assert dst.nh == 43 and [(o.otype, o.optdata) for o in dst.options
                             if o.otype not in (0, 1)] == [(0x1E, b"abc")]
    rh = sp[scapy.IPv6ExtHdrRouting]
    assert (rh.nh, rh.type, rh.segleft, rh.addresses) == (44, 0, 0, ["2001:db8::1"])
    fr = sp[scapy.IPv6ExtHdrFragment]
    assert (fr.nh, fr.offset, fr.m, fr.id) == (17, 185, 1, 0xCAFE)


def _lines_run(fn: object, *args: object) -> int:
    """How many source lines of the wire modules ``fn(*args)`` executes."""
    import sys
    count = 0
    watched = (ipv6ext.__file__, ipv6.__file__)

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if frame.f_code.co_filename not in watched:
            return None
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)  # type: ignore[operator]
    except Malformed:
        pass
    finally:
        sys.settrace(old)
    return count


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0, 43, 44, 60]), st.binary(min_size=1, max_size=24))
def test_work_is_bounded_whatever_the_length(nh: int, pattern: bytes) -> None:
    """The walk's work has a bound set by MAX_HEADERS and MAX_CHAIN_LEN, not
    by the packet: a pattern repeated to 64 KB costs no more than 2 KB of it."""
    big = (pattern * (65535 // len(pattern) + 1))[:65535]
    lines_big = _lines_run(ipv6ext.walk, nh, big)
    lines_small = _lines_run(ipv6ext.walk, nh, big[:ipv6ext.MAX_CHAIN_LEN + 8])
    assert lines_big <= lines_small + 200     # a fragment check may differ at the end
    assert lines_big < 40 * ipv6ext.MAX_CHAIN_LEN
    lines_skip = _lines_run(ipv6ext.skip_chain, nh, big)
    assert lines_skip < 20 * ipv6ext.MAX_HEADERS


# -- fragmentation on output (RFC 8200 4.5) --------------------------------------------

def _chain_payload() -> tuple[int, bytes, int]:
    """HBH, DstOpts, Routing (unfragmentable), DstOpts, UDP (fragmentable)."""
    from femtotcp.wire import udp
    unfrag = (ipv6ext.build_hop_by_hop(60, [ipv6ext.router_alert(0)])
              + ipv6ext.build_dest_options(43, [(0x1E, b"d1")])
              + ipv6ext.build_routing(60, 0, 0, bytes(4) + DST))
    frag = ipv6ext.build_dest_options(17, [(0x1E, b"d2")]) + udp.build(
        SRC, DST, 7, 9, bytes(range(256)) * 12)
    return 0, unfrag + frag, len(unfrag)


@pytest.mark.parametrize(("nh", "payload", "keep"), [
    (17, b"u" * 3000, 0),
    (0, ipv6ext.build_hop_by_hop(17, []) + b"u" * 3000, 8),
    (60, ipv6ext.build_dest_options(17, []) + b"u" * 3000, 0),
    (60, ipv6ext.build_dest_options(43, []) + ipv6ext.build_routing(17, 0, 0, bytes(12))
     + b"u" * 9, 24),
    _chain_payload(),
])
def test_unfragmentable_part(nh: int, payload: bytes, keep: int) -> None:
    assert ipv6ext.unfragmentable_len(nh, payload) == keep


@pytest.mark.parametrize("mtu", [1280, 1500, 1337, 200])
@pytest.mark.parametrize("which", ["plain", "chain"])
def test_fragment_and_walk_back(mtu: int, which: str) -> None:
    nh, payload, keep = (17, bytes(range(256)) * 12, 0) if which == "plain" else \
        _chain_payload()
    frags = ipv6ext.fragment(nh, payload, mtu, 0xABCDEF01)
    assert len(frags) > 1
    pieces = []
    for i, (first_nh, body) in enumerate(frags):
        pkt = ipv6.build(SRC, DST, first_nh, body)
        assert len(pkt) <= mtu
        hdr, got = ipv6.parse(pkt)
        chain = ipv6ext.walk(hdr.next_header, got)
        assert chain.problem is None and chain.fragment is not None
        assert chain.fragment.ident == 0xABCDEF01 and chain.unfragmentable == keep
        assert bytes(got[:keep]) == bytes(body[:keep])
        data = bytes(got[chain.offset:])
        assert chain.fragment.more == (i < len(frags) - 1)
        if chain.fragment.more:
            assert len(data) % 8 == 0
        pieces.append((chain.fragment.offset, data, chain.upper))
    assert [p[0] for p in pieces] == sorted(p[0] for p in pieces)
    assert b"".join(p[1] for p in pieces) == payload[keep:]
    assert {p[2] for p in pieces} == {17 if which == "plain" else 60}


def test_fragments_scapy_reassembles(scapy: ModuleType) -> None:
    nh, payload, _ = _chain_payload()
    original = ipv6.build(SRC, DST, nh, payload)
    frags = [scapy.IPv6(ipv6.build(SRC, DST, first_nh, body))
             for first_nh, body in ipv6ext.fragment(nh, payload, 1280, 77)]
    whole = scapy.defragment6(frags)
    assert bytes(whole) == original


def test_fragment_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ipv6ext.fragment(17, b"x" * 100, 40 + 8 + 7, 1)
    with pytest.raises(ValueError):
        ipv6ext.fragment(17, b"x" * 65536, 1500, 1)
    with pytest.raises(ValueError):
        ipv6ext.unfragmentable_len(0, b"\x11\x05" + bytes(6))
