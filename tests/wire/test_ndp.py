"""Neighbor Discovery (RFC 4861, RFC 8106): every message and option round trip,
every validity rule of RFC 4861 6.1, 7.1 and 8.1, each option's length, DNSSL
names under the DNS rules, scapy as the oracle both ways."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, icmp6, ip_bytes, ipv6, mac_bytes, ndp

ROUTER = ip_bytes("fe80::1")
HOST = ip_bytes("fe80::2")
GLOBAL = ip_bytes("2001:db8::2")
MAC = mac_bytes("02:00:00:00:00:02")
RMAC = mac_bytes("02:00:00:00:00:01")
PREFIX = ip_bytes("2001:db8:1:2::")


def nd(msg: bytes, src: bytes, dst: bytes, hop_limit: int = 255) -> ndp.NdMessage:
    hdr, body = icmp6.parse(msg, src, dst)
    return ndp.parse(hdr, body, src, dst, hop_limit)


def nd_reason(msg: bytes, src: bytes, dst: bytes, hop_limit: int = 255) -> str:
    with pytest.raises(Malformed) as e:
        nd(msg, src, dst, hop_limit)
    return e.value.reason


def raw(src: bytes, dst: bytes, type_: int, rest: int, body: bytes, code: int = 0) -> bytes:
    return icmp6.build(src, dst, type_, code, rest, body)


def ra_with(options: bytes) -> bytes:
    return raw(ROUTER, ipv6.ALL_NODES, ndp.ROUTER_ADVERTISEMENT, 64 << 24 | 1800,
               bytes(8) + options)


def opt_reason(options: bytes) -> str:
    return nd_reason(ra_with(options), ROUTER, ipv6.ALL_NODES)


# -- round trips ----------------------------------------------------------------------

def test_router_solicitation() -> None:
    rs = nd(ndp.build_rs(HOST, MAC), HOST, ipv6.ALL_ROUTERS)
    assert isinstance(rs, ndp.RouterSolicitation) and rs.options.source_lladdr == MAC
    rs = nd(ndp.build_rs(ipv6.UNSPECIFIED), ipv6.UNSPECIFIED, ipv6.ALL_ROUTERS)
    assert isinstance(rs, ndp.RouterSolicitation) and rs.options.source_lladdr is None


def test_router_advertisement_with_every_option() -> None:
    opts = (ndp.opt_source_lladdr(RMAC) + ndp.opt_mtu(1480)
            + ndp.opt_prefix(PREFIX, 64, 86400, 14400)
            + ndp.opt_prefix(ip_bytes("2001:db8:9::"), 48, ndp.INFINITY, 0, autonomous=False)
            + ndp.opt_rdnss(600, [ip_bytes("2001:db8::53"), ip_bytes("2001:db8::54")])
            + ndp.opt_dnssl(600, ["example.com", "corp.example.org"])
            + bytes((200, 1)) + bytes(6))                        # unknown: skipped
    msg = ndp.build_ra(ROUTER, ipv6.ALL_NODES, cur_hop_limit=64,
                       flags=ndp.RA_MANAGED | ndp.RA_OTHER, router_lifetime=1800,
                       reachable_time=30000, retrans_timer=1000, options=opts)
    ra = nd(msg, ROUTER, ipv6.ALL_NODES)
    assert isinstance(ra, ndp.RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.managed, ra.other, ra.router_lifetime, ra.reachable_time,
            ra.retrans_timer) == (64, True, True, 1800, 30000, 1000)
    o = ra.options
    assert (o.source_lladdr, o.mtu, o.unknown) == (RMAC, 1480, 1)
    assert o.prefixes == [ndp.PrefixInfo(PREFIX, 64, True, True, 86400, 14400),
                          ndp.PrefixInfo(ip_bytes("2001:db8:9::"), 48, True, False,
                                         ndp.INFINITY, 0)]
    assert o.rdnss == [ndp.Rdnss(600, (ip_bytes("2001:db8::53"), ip_bytes("2001:db8::54")))]
    assert o.dnssl == [ndp.Dnssl(600, ("example.com", "corp.example.org"))]


def test_neighbor_solicitation_and_dad_probe() -> None:
    ns = nd(ndp.build_ns(HOST, ipv6.solicited_node(GLOBAL), GLOBAL, MAC), HOST,
            ipv6.solicited_node(GLOBAL))
    assert ns == ndp.NeighborSolicitation(GLOBAL, ndp.NdOptions(source_lladdr=MAC))
    dad = ipv6.solicited_node(GLOBAL)
    ns = nd(ndp.build_ns(ipv6.UNSPECIFIED, dad, GLOBAL, nonce=b"\x01\x02\x03\x04\x05\x06"),
            ipv6.UNSPECIFIED, dad)
    assert isinstance(ns, ndp.NeighborSolicitation)
    assert ns.target == GLOBAL and ns.options.nonce == b"\x01\x02\x03\x04\x05\x06"


@pytest.mark.parametrize(("r", "s", "o"), [(False, False, False), (True, True, True),
                                           (False, True, False), (True, False, True)])
def test_neighbor_advertisement(r: bool, s: bool, o: bool) -> None:
    msg = ndp.build_na(GLOBAL, HOST, GLOBAL, router=r, solicited=s, override=o,
                       target_lladdr=MAC)
    na = nd(msg, GLOBAL, HOST)
    assert na == ndp.NeighborAdvertisement(GLOBAL, r, s, o, ndp.NdOptions(target_lladdr=MAC))


def test_redirect() -> None:
    dest = ip_bytes("2001:db8:77::1")
    quoted = ipv6.build(HOST, dest, 17, b"d" * 2000)
    msg = ndp.build_redirect(ROUTER, HOST, ip_bytes("fe80::99"), dest, RMAC, quoted)
    assert len(msg) + 40 <= 1280
    red = nd(msg, ROUTER, HOST)
    assert isinstance(red, ndp.Redirect)
    assert (red.target, red.destination, red.options.target_lladdr) == (
        ip_bytes("fe80::99"), dest, RMAC)
    assert red.options.redirected is not None
    assert red.options.redirected == quoted[:len(red.options.redirected)]
    assert len(msg) + 40 > 1280 - 8                        # as much as fits
    on_link = nd(ndp.build_redirect(ROUTER, HOST, dest, dest), ROUTER, HOST)
    assert isinstance(on_link, ndp.Redirect) and on_link.target == dest


def test_redirected_header_short_packet_padded() -> None:
    opt = ndp.opt_redirected(b"abc")
    assert opt == bytes((4, 2)) + bytes(6) + b"abc" + bytes(5)
    assert ndp.opt_redirected(b"x" * 100, room=40) == bytes((4, 5)) + bytes(6) + b"x" * 32


def test_first_of_single_options_counts() -> None:
    opts = (ndp.opt_source_lladdr(RMAC) + ndp.opt_source_lladdr(MAC) + ndp.opt_mtu(1400)
            + ndp.opt_mtu(9000))
    o = ndp.parse_options(opts)
    assert (o.source_lladdr, o.mtu) == (RMAC, 1400)


def test_prefix_bits_past_the_length_ignored() -> None:
    opt = struct.pack("!BBBBIII16s", 3, 4, 56, 0xC0, 10, 5, 0, ip_bytes("2001:db8:1:2ff::1"))
    (info,) = ndp.parse_options(opt).prefixes
    assert info.prefix == ip_bytes("2001:db8:1:200::") and info.prefix_len == 56


@pytest.mark.parametrize("plen", [0, 1, 64, 127, 128])
def test_prefix_lengths_accepted(plen: int) -> None:
    (info,) = ndp.parse_options(ndp.opt_prefix(PREFIX, plen, 1, 1)).prefixes
    assert info.prefix_len == plen


# -- message rules (RFC 4861 6.1, 7.1, 8.1) -----------------------------------------------

@pytest.mark.parametrize("hop", [0, 1, 64, 254])
@pytest.mark.parametrize("which", ["rs", "ra", "ns", "na", "redirect"])
def test_hop_limit_must_be_255(hop: int, which: str) -> None:
    msgs = {
        "rs": (ndp.build_rs(HOST, MAC), HOST, ipv6.ALL_ROUTERS),
        "ra": (ndp.build_ra(ROUTER, ipv6.ALL_NODES), ROUTER, ipv6.ALL_NODES),
        "ns": (ndp.build_ns(HOST, GLOBAL, GLOBAL, MAC), HOST, GLOBAL),
        "na": (ndp.build_na(GLOBAL, HOST, GLOBAL), GLOBAL, HOST),
        "redirect": (ndp.build_redirect(ROUTER, HOST, GLOBAL, GLOBAL), ROUTER, HOST),
    }
    msg, src, dst = msgs[which]
    nd(msg, src, dst)
    assert nd_reason(msg, src, dst, hop) == "ndp.bad_hop_limit"


@pytest.mark.parametrize(("type_", "fixed"), [(133, 4), (134, 12), (135, 20), (136, 20),
                                               (137, 36)])
def test_code_must_be_zero_and_minimum_lengths(type_: int, fixed: int) -> None:
    body = bytes(fixed - 4)
    src = ROUTER
    dst = ipv6.ALL_NODES if type_ != 135 else ipv6.solicited_node(GLOBAL)
    if type_ in (135, 136, 137):
        body = GLOBAL + bytes(fixed - 20)
        if type_ == 137:
            body = GLOBAL + GLOBAL
    msg = raw(src, dst, type_, 0, body)
    nd(msg, src, dst)
    assert nd_reason(raw(src, dst, type_, 0, body, code=1), src, dst) == "ndp.bad_code"
    for cut in range(1, len(body) + 1):
        assert nd_reason(raw(src, dst, type_, 0, body[:-cut]), src, dst) == "ndp.truncated"


def test_not_an_nd_message() -> None:
    assert nd_reason(icmp6.build_echo(HOST, ROUTER, 128, 1, 1), HOST, ROUTER) == "ndp.not_nd"


def test_ra_source_must_be_link_local() -> None:
    msg = ndp.build_ra(GLOBAL, ipv6.ALL_NODES)
    assert nd_reason(msg, GLOBAL, ipv6.ALL_NODES) == "ndp.ra_source_not_link_local"


@pytest.mark.parametrize("kind", ["ns", "na"])
def test_multicast_target(kind: str) -> None:
    target = ip_bytes("ff02::1")
    msg = (ndp.build_ns(HOST, target, target) if kind == "ns"
           else ndp.build_na(HOST, ipv6.ALL_NODES, target))
    dst = target if kind == "ns" else ipv6.ALL_NODES
    assert nd_reason(msg, HOST, dst) == "ndp.multicast_target"


def test_dad_probe_rules() -> None:
    sol = ipv6.solicited_node(GLOBAL)
    assert nd_reason(ndp.build_ns(ipv6.UNSPECIFIED, GLOBAL, GLOBAL), ipv6.UNSPECIFIED,
                     GLOBAL) == "ndp.dad_bad_destination"
    assert nd_reason(ndp.build_ns(ipv6.UNSPECIFIED, sol, GLOBAL, MAC), ipv6.UNSPECIFIED,
                     sol) == "ndp.slla_from_unspecified"
    assert nd_reason(ndp.build_rs(ipv6.UNSPECIFIED, MAC), ipv6.UNSPECIFIED,
                     ipv6.ALL_ROUTERS) == "ndp.slla_from_unspecified"


def test_solicited_advertisement_to_multicast() -> None:
    msg = ndp.build_na(GLOBAL, ipv6.ALL_NODES, GLOBAL, solicited=True)
    assert nd_reason(msg, GLOBAL, ipv6.ALL_NODES) == "ndp.solicited_to_multicast"
    nd(ndp.build_na(GLOBAL, ipv6.ALL_NODES, GLOBAL), GLOBAL, ipv6.ALL_NODES)


@pytest.mark.parametrize(("src", "target", "dest", "why"), [
    (GLOBAL, GLOBAL, GLOBAL, "ndp.redirect_source_not_link_local"),
    (ROUTER, ip_bytes("fe80::5"), ip_bytes("ff0e::1"), "ndp.redirect_multicast_destination"),
    (ROUTER, ip_bytes("2001:db8::5"), GLOBAL, "ndp.redirect_bad_target"),
])
def test_redirect_rules(src: bytes, target: bytes, dest: bytes, why: str) -> None:
    assert nd_reason(ndp.build_redirect(src, HOST, target, dest), src, HOST) == why


# -- options: lengths and contents ---------------------------------------------------------

@pytest.mark.parametrize("options", [
    bytes((1, 0)) + bytes(6),                                  # SLLA of length 0
    ndp.opt_mtu(1500) + bytes((3, 0)) + bytes(30),             # a later option of length 0
    bytes((200, 0)),                                           # unknown option, length 0
    bytes((25, 0)) + bytes(22),
])
def test_options_of_length_zero(options: bytes) -> None:
    assert opt_reason(options) == "ndp.bad_option_length"


@pytest.mark.parametrize("options", [
    bytes((1, 2)) + bytes(6),                                  # 16 claimed, 8 present
    ndp.opt_mtu(1500) + b"\x05",                               # a lone type byte
    ndp.opt_prefix(PREFIX, 64, 1, 1)[:24],
])
def test_options_past_the_end(options: bytes) -> None:
    assert opt_reason(options) == "ndp.bad_option_length"


@pytest.mark.parametrize(("options", "why"), [
    (bytes((1, 2)) + bytes(14), "ndp.bad_lladdr_option"),       # not Ethernet's length
    (bytes((2, 3)) + bytes(22), "ndp.bad_lladdr_option"),
    (bytes((3, 3)) + bytes(22), "ndp.bad_prefix_option"),
    (bytes((3, 5)) + bytes(38), "ndp.bad_prefix_option"),
    (bytes((5, 2)) + bytes(14), "ndp.bad_mtu_option"),
    (bytes((25, 1)) + bytes(6), "ndp.bad_rdnss_option"),        # no address
    (bytes((25, 2)) + bytes(14), "ndp.bad_rdnss_option"),       # half an address
    (bytes((25, 4)) + bytes(30), "ndp.bad_rdnss_option"),       # even length
    (bytes((31, 1)) + bytes(6), "ndp.bad_dnssl_option"),        # no room for a name
])
def test_bad_option_formats(options: bytes, why: str) -> None:
    assert opt_reason(options) == why


@pytest.mark.parametrize("plen", [129, 200, 255])
def test_ra_prefix_info_with_bad_prefix_length(plen: int) -> None:
    opt = struct.pack("!BBBBIII16s", 3, 4, plen, 0xC0, 10, 5, 0, PREFIX)
    assert opt_reason(opt) == "ndp.bad_prefix_length"


def _dnssl(names: bytes) -> bytes:
    names += bytes(-(len(names) + 8) % 8)
    return struct.pack("!BBHI", 31, 1 + len(names) // 8, 0, 60) + names


@pytest.mark.parametrize("names", [
    b"\x07example\xc0\x00",                  # a compression pointer
    b"\x07example\x0fcomcomcomcomcom",        # no terminator before the option ends
    b"\x3fexample",                          # a label past the option's end
    b"\x47example\x00",                      # label type 01
    b"\x03com\x00\x00\x01\x00",              # padding that is not zero
    (b"\x3f" + b"a" * 63) * 4 + b"\x00",     # name over 255 bytes
])
def test_bad_dnssl_names(names: bytes) -> None:
    assert opt_reason(_dnssl(names)) == "ndp.bad_dnssl_option"


def test_dnssl_names_escaped_like_dns() -> None:
    o = ndp.parse_options(_dnssl(b"\x03a.b\x03com\x00\x04x\x00yz\x00"))
    assert o.dnssl == [ndp.Dnssl(60, ("a\\.b.com", "x\\000yz"))]


def test_option_builders_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        ndp.opt_lladdr(1, b"\x00" * 8)
    with pytest.raises(ValueError):
        ndp.opt_prefix(PREFIX, 129, 1, 1)
    with pytest.raises(ValueError):
        ndp.opt_rdnss(1, [])
    with pytest.raises(ValueError):
        ndp.opt_rdnss(1, [b"\x00" * 4])
    with pytest.raises(ValueError):
        ndp.opt_dnssl(1, [])
    with pytest.raises(ValueError):
        ndp.opt_dnssl(1, ["a" * 64])
    with pytest.raises(ValueError):
        ndp.opt_nonce(b"\x01" * 5)


@settings(max_examples=400)
@given(st.binary(max_size=120))
def test_random_option_areas(data: bytes) -> None:
    try:
        o = ndp.parse_options(data)
    except Malformed as e:
        assert e.reason.startswith("ndp.")
        return
    assert len(o.prefixes) + len(o.rdnss) + len(o.dnssl) + o.unknown <= len(data) // 8


@st.composite
def option_lists(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.sampled_from([
        ndp.opt_source_lladdr(MAC), ndp.opt_target_lladdr(RMAC), ndp.opt_mtu(1500),
        ndp.opt_prefix(PREFIX, 64, 100, 50), ndp.opt_rdnss(5, [GLOBAL]),
        ndp.opt_dnssl(5, ["example.com"]), ndp.opt_nonce(b"123456"), bytes((99, 1)) + bytes(6),
    ]), max_size=6))
    return b"".join(parts)


@settings(max_examples=400)
@given(st.sampled_from([133, 134, 135, 136, 137]), option_lists(),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=5),
       st.integers(0, 255), st.integers(0, 80))
def test_mutated_messages_never_raise_anything_else(type_: int, options: bytes,
                                                    flips: list[tuple[int, int]], hop: int,
                                                    cut: int) -> None:
    fixed = {133: b"", 134: bytes(8), 135: GLOBAL, 136: GLOBAL, 137: HOST + GLOBAL}[type_]
    body = bytearray(fixed + options)
    for pos, value in flips:
        if body:
            body[pos % len(body)] = value
    body = body[:len(body) - cut] if cut < len(body) else body
    msg = raw(ROUTER, ipv6.ALL_NODES, type_, 0, bytes(body))
    hdr, got = icmp6.parse(msg, ROUTER, ipv6.ALL_NODES)
    try:
        ndp.parse(hdr, got, ROUTER, ipv6.ALL_NODES, 255 if hop > 20 else hop)
    except Malformed as e:
        assert e.reason.startswith("ndp.")


# -- scapy as the oracle ----------------------------------------------------------------------

def _from_scapy(pkt: object) -> ndp.NdMessage:
    hdr, payload = ipv6.parse(bytes(pkt))  # type: ignore[call-overload]
    icmp, body = icmp6.parse(payload, hdr.src, hdr.dst)
    return ndp.parse(icmp, body, hdr.src, hdr.dst, hdr.hop_limit)


def test_scapy_ra_femtotcp_parses(scapy: ModuleType) -> None:
    pkt = (scapy.IPv6(src="fe80::1", dst="ff02::1", hlim=255)
           / scapy.ICMPv6ND_RA(chlim=64, M=1, O=0, routerlifetime=1800, reachabletime=30000,
                               retranstimer=1000)
           / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
           / scapy.ICMPv6NDOptMTU(mtu=1480)
           / scapy.ICMPv6NDOptPrefixInfo(prefix="2001:db8:1:2::", prefixlen=64,
                                         validlifetime=86400, preferredlifetime=14400, L=1, A=1)
           / scapy.ICMPv6NDOptRDNSS(dns=["2001:db8::53"], lifetime=600)
           / scapy.ICMPv6NDOptDNSSL(searchlist=["example.com", "lab.example.net"], lifetime=300))
    ra = _from_scapy(pkt)
    assert isinstance(ra, ndp.RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.managed, ra.other, ra.router_lifetime, ra.reachable_time,
            ra.retrans_timer) == (64, True, False, 1800, 30000, 1000)
    o = ra.options
    assert (o.source_lladdr, o.mtu) == (RMAC, 1480)
    assert o.prefixes == [ndp.PrefixInfo(PREFIX, 64, True, True, 86400, 14400)]
    assert o.rdnss == [ndp.Rdnss(600, (ip_bytes("2001:db8::53"),))]
    assert o.dnssl == [ndp.Dnssl(300, ("example.com", "lab.example.net"))]


def test_scapy_ns_na_rs_femtotcp_parses(scapy: ModuleType) -> None:
    ns = _from_scapy(scapy.IPv6(src="fe80::2", dst="ff02::1:ff00:2", hlim=255)
                     / scapy.ICMPv6ND_NS(tgt="2001:db8::2")
                     / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:02"))
    assert ns == ndp.NeighborSolicitation(GLOBAL, ndp.NdOptions(source_lladdr=MAC))
    na = _from_scapy(scapy.IPv6(src="2001:db8::2", dst="fe80::2", hlim=255)
                     / scapy.ICMPv6ND_NA(tgt="2001:db8::2", R=0, S=1, O=1)
                     / scapy.ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02"))
    assert na == ndp.NeighborAdvertisement(GLOBAL, False, True, True,
                                           ndp.NdOptions(target_lladdr=MAC))
    rs = _from_scapy(scapy.IPv6(src="fe80::2", dst="ff02::2", hlim=255)
                     / scapy.ICMPv6ND_RS()
                     / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:02"))
    assert rs == ndp.RouterSolicitation(ndp.NdOptions(source_lladdr=MAC))


def test_scapy_redirect_femtotcp_parses(scapy: ModuleType) -> None:
    inner = (scapy.IPv6(src="fe80::2", dst="2001:db8:77::1") / scapy.UDP()
             / scapy.Raw(b"r" * 96))
    red = _from_scapy(scapy.IPv6(src="fe80::1", dst="fe80::2", hlim=255)
                      / scapy.ICMPv6ND_Redirect(tgt="fe80::99", dst="2001:db8:77::1")
                      / scapy.ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01")
                      / scapy.ICMPv6NDOptRedirectedHdr(pkt=inner))
    assert isinstance(red, ndp.Redirect)
    assert (red.target, red.destination, red.options.target_lladdr) == (
        ip_bytes("fe80::99"), ip_bytes("2001:db8:77::1"), RMAC)
    assert red.options.redirected is not None
    assert red.options.redirected == bytes(inner)          # 144 bytes: no padding


def test_scapy_ra_hop_limit_64_dropped(scapy: ModuleType) -> None:
    pkt = scapy.IPv6(src="fe80::1", dst="ff02::1", hlim=64) / scapy.ICMPv6ND_RA()
    with pytest.raises(Malformed) as e:
        _from_scapy(pkt)
    assert e.value.reason == "ndp.bad_hop_limit"


def _scapy_checksum_agrees(scapy: ModuleType, pkt: bytes, layer: type) -> object:
    sp = scapy.IPv6(pkt)
    again = scapy.IPv6(pkt)
    del again[layer].cksum
    assert scapy.IPv6(bytes(again))[layer].cksum == sp[layer].cksum
    return sp


def test_femtotcp_ra_scapy_parses(scapy: ModuleType) -> None:
    opts = (ndp.opt_source_lladdr(RMAC) + ndp.opt_mtu(1480)
            + ndp.opt_prefix(PREFIX, 64, 86400, 14400, on_link=True, autonomous=False)
            + ndp.opt_rdnss(600, [ip_bytes("2001:db8::53"), ip_bytes("2001:db8::54")])
            + ndp.opt_dnssl(300, ["example.com"]))
    msg = ndp.build_ra(ROUTER, ipv6.ALL_NODES, cur_hop_limit=64, flags=ndp.RA_OTHER,
                       router_lifetime=1800, reachable_time=30000, retrans_timer=1000,
                       options=opts)
    sp = _scapy_checksum_agrees(scapy, ipv6.build(ROUTER, ipv6.ALL_NODES, 58, msg, 255),
                                scapy.ICMPv6ND_RA)
    ra = sp[scapy.ICMPv6ND_RA]  # type: ignore[index]
    assert (ra.chlim, ra.M, ra.O, ra.routerlifetime, ra.reachabletime, ra.retranstimer) == (
        64, 0, 1, 1800, 30000, 1000)
    assert sp[scapy.ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"  # type: ignore[index]
    assert sp[scapy.ICMPv6NDOptMTU].mtu == 1480  # type: ignore[index]
    pi = sp[scapy.ICMPv6NDOptPrefixInfo]  # type: ignore[index]
    assert (pi.prefix, pi.prefixlen, pi.L, pi.A, pi.validlifetime, pi.preferredlifetime) == (
        "2001:db8:1:2::", 64, 1, 0, 86400, 14400)
    rd = sp[scapy.ICMPv6NDOptRDNSS]  # type: ignore[index]
    assert (rd.lifetime, rd.dns) == (600, ["2001:db8::53", "2001:db8::54"])
    dl = sp[scapy.ICMPv6NDOptDNSSL]  # type: ignore[index]
    assert (dl.lifetime, dl.searchlist) == (300, ["example.com."])


def test_femtotcp_ns_na_rs_scapy_parses(scapy: ModuleType) -> None:
    sol = ipv6.solicited_node(GLOBAL)
    sp = _scapy_checksum_agrees(scapy, ipv6.build(HOST, sol, 58,
                                                  ndp.build_ns(HOST, sol, GLOBAL, MAC), 255),
                                scapy.ICMPv6ND_NS)
    assert sp[scapy.ICMPv6ND_NS].tgt == "2001:db8::2"  # type: ignore[index]
    assert sp[scapy.ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:02"  # type: ignore[index]
    msg = ndp.build_na(GLOBAL, HOST, GLOBAL, router=True, solicited=True, override=False,
                       target_lladdr=MAC)
    sp = _scapy_checksum_agrees(scapy, ipv6.build(GLOBAL, HOST, 58, msg, 255), scapy.ICMPv6ND_NA)
    na = sp[scapy.ICMPv6ND_NA]  # type: ignore[index]
    assert (na.R, na.S, na.O, na.tgt) == (1, 1, 0, "2001:db8::2")
    assert sp[scapy.ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:02"  # type: ignore[index]
    sp = _scapy_checksum_agrees(scapy, ipv6.build(HOST, ipv6.ALL_ROUTERS, 58,
                                                  ndp.build_rs(HOST, MAC), 255),
                                scapy.ICMPv6ND_RS)
    assert sp[scapy.ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:02"  # type: ignore[index]


def test_femtotcp_redirect_scapy_parses(scapy: ModuleType) -> None:
    dest = ip_bytes("2001:db8:77::1")
    inner = ipv6.build(HOST, dest, 17, b"d" * 64)
    msg = ndp.build_redirect(ROUTER, HOST, ip_bytes("fe80::99"), dest, RMAC, inner)
    sp = _scapy_checksum_agrees(scapy, ipv6.build(ROUTER, HOST, 58, msg, 255),
                                scapy.ICMPv6ND_Redirect)
    red = sp[scapy.ICMPv6ND_Redirect]  # type: ignore[index]
    assert (red.tgt, red.dst) == ("fe80::99", "2001:db8:77::1")
    redirected = sp[scapy.ICMPv6NDOptRedirectedHdr]  # type: ignore[index]
    assert bytes(redirected.pkt)[:len(inner)] == inner


# -- property round trips -------------------------------------------------------------------

addrs = st.binary(min_size=16, max_size=16)
u32 = st.integers(0, 0xFFFFFFFF)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)


@settings(max_examples=200)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), u32, u32,
       st.lists(st.tuples(addrs, st.integers(0, 128), u32, u32, st.booleans(), st.booleans()),
                max_size=3),
       st.lists(addrs, min_size=1, max_size=3), st.lists(domains, min_size=1, max_size=3),
       st.integers(1280, 65535))
def test_ra_round_trip(hop: int, flags: int, lifetime: int, reachable: int, retrans: int,
                       prefixes: list[tuple[bytes, int, int, int, bool, bool]],
                       servers: list[bytes], names: list[str], mtu: int) -> None:
    opts = b"".join(ndp.opt_prefix(p, n, v, pr, on_link=l_, autonomous=a)
                    for p, n, v, pr, l_, a in prefixes)
    opts += ndp.opt_rdnss(7, servers) + ndp.opt_dnssl(8, names) + ndp.opt_mtu(mtu)
    msg = ndp.build_ra(ROUTER, ipv6.ALL_NODES, cur_hop_limit=hop, flags=flags,
                       router_lifetime=lifetime, reachable_time=reachable,
                       retrans_timer=retrans, options=opts)
    ra = nd(msg, ROUTER, ipv6.ALL_NODES)
    assert isinstance(ra, ndp.RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.flags, ra.router_lifetime, ra.reachable_time,
            ra.retrans_timer) == (hop, flags, lifetime, reachable, retrans)
    assert ra.options.prefixes == [ndp.PrefixInfo(ipv6.mask(p, n), n, l_, a, v, pr)
                                   for p, n, v, pr, l_, a in prefixes]
    assert ra.options.rdnss == [ndp.Rdnss(7, tuple(servers))]
    assert ra.options.dnssl == [ndp.Dnssl(8, tuple(names))]
    assert ra.options.mtu == mtu


@settings(max_examples=200)
@given(addrs.filter(lambda a: a[0] != 0xFF), st.binary(min_size=6, max_size=6),
       st.booleans(), st.booleans(), st.booleans())
def test_ns_na_round_trip(target: bytes, mac: bytes, r: bool, s: bool, o: bool) -> None:
    ns = nd(ndp.build_ns(HOST, GLOBAL, target, mac), HOST, GLOBAL)
    assert ns == ndp.NeighborSolicitation(target, ndp.NdOptions(source_lladdr=mac))
    na = nd(ndp.build_na(GLOBAL, HOST, target, router=r, solicited=s, override=o,
                         target_lladdr=mac), GLOBAL, HOST)
    assert na == ndp.NeighborAdvertisement(target, r, s, o, ndp.NdOptions(target_lladdr=mac))
