"""The IPv6 fuzz targets: one per IPv6 parser in ``femtotcp.wire`` (the fixed
header, the extension-header chain and its option TLVs, ICMPv6, every Neighbor
Discovery message and option, MLD) and ``stack6``, ``Stack.receive`` on a live
IPv6 world (``fuzz/world6.py``). ``fuzz/targets.py`` registers them beside the
IPv4-era ones; the contract is the same (a function ``bytes -> str | None``
returning the drop reason, raising anything else it meets).

The first byte of an input steers the harness (which entry point, which
addresses, whether to complete a length or a checksum so the fuzzer gets
past it); the rest is the packet. Seeds come from the project's builders,
from scapy's (when installed: the test extra), and from the frames and
messages the project's own IPv6 tests handed to the parsers (``fuzz/harvest.py``
writes those into each target's work directory).
"""

from __future__ import annotations

from femtotcp.wire import Malformed, dns, ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mld, ndp
from femtotcp.wire.icmp6 import Icmp6Header

SRC6 = ip_bytes("fe80::fe")
DST6 = ip_bytes("fe80::1")
GLOBAL_SRC = ip_bytes("2001:db8:1::fe")
GLOBAL_DST = ip_bytes("2001:db8:1::1")
MAC_R = bytes.fromhex("0200000000fe")
MAC_H = bytes.fromhex("020000000001")

#: ``ndp`` and ``mld``: the IPv6 source and destination a message is judged with.
ND_SOURCES = (SRC6, ipv6.UNSPECIFIED, GLOBAL_SRC, ip_bytes("fe80::2"))
ND_DESTS = (ipv6.ALL_NODES, ipv6.solicited_node(DST6), DST6, ipv6.ALL_ROUTERS)
ND_TYPES = (ndp.ROUTER_SOLICITATION, ndp.ROUTER_ADVERTISEMENT, ndp.NEIGHBOR_SOLICITATION,
            ndp.NEIGHBOR_ADVERTISEMENT, ndp.REDIRECT)
MLD_TYPES = (mld.QUERY, mld.V1_REPORT, mld.V1_DONE, mld.V2_REPORT)
EXT_FIRST = (ipv6.PROTO_HOPOPTS, ipv6.PROTO_ROUTING, ipv6.PROTO_FRAGMENT, ipv6.PROTO_DSTOPTS)


# -- the fixed header ------------------------------------------------------------------

def _fix_plen(body: bytearray, at: int = 0) -> None:
    """Make an IPv6 header's payload length match the bytes after it."""
    if len(body) >= at + ipv6.HEADER_LEN:
        n = min(0xFFFF, len(body) - at - ipv6.HEADER_LEN)
        body[at + 4:at + 6] = n.to_bytes(2, "big")


def run_ipv6(data: bytes) -> str | None:
    """byte 0: bit 0 completes the payload length; bit 1 reads the packet as
    the quote in an ICMPv6 error (``parse_quote``) instead of ``parse``."""
    if not data:
        return None
    body = bytearray(data[1:])
    if data[0] & 1:
        _fix_plen(body)
    try:
        if data[0] & 2:
            hdr, rest = ipv6.parse_quote(memoryview(body))
            assert len(rest) <= min(hdr.payload_len, len(body) - ipv6.HEADER_LEN)
            return None
        hdr, payload = ipv6.parse(memoryview(body))
        assert len(payload) == hdr.payload_len <= len(body) - ipv6.HEADER_LEN
        assert 0 <= hdr.flow_label < 1 << 20 and 0 <= hdr.traffic_class < 256
        assert len(hdr.src) == len(hdr.dst) == 16
        ipv6.check_addresses(hdr.src, hdr.dst)
    except Malformed as exc:
        return exc.reason
    return None


# -- the extension-header chain --------------------------------------------------------

def run_ipv6ext(data: bytes) -> str | None:
    """byte 0: bits 0-1 the first next header (Hop-by-Hop, Routing, Fragment,
    Destination Options); bit 2 the payload follows the fixed header (where
    Hop-by-Hop may be); bits 3-4 the entry point: ``walk``, ``skip_chain``,
    ``read_options`` on the whole input as one options header, or ``walk``
    followed by the walk a reassembled packet gets (from the Fragment
    header's next header on, as ``Ipv6._fragment`` does)."""
    if not data:
        return None
    ctl = data[0]
    nh = EXT_FIRST[ctl & 3]
    first = bool(ctl & 4)
    mode = (ctl >> 3) & 3
    body = memoryview(data[1:])
    n = len(body)
    try:
        if mode == 1:
            upper, offset = ipv6ext.skip_chain(nh, body)
            assert 0 <= offset <= n
            assert upper == ipv6.PROTO_FRAGMENT or upper not in ipv6ext.EXT_HEADERS
            return None
        if mode == 2:
            opts = ipv6ext.read_options(body, hop_by_hop=first)
            assert len(opts) <= ipv6ext.MAX_OPTIONS
            assert all(kind not in (ipv6ext.OPT_PAD1, ipv6ext.OPT_PADN) for kind, _ in opts)
            return None
        chain = ipv6ext.walk(nh, body, first=first)
        if chain.problem is not None:
            p = chain.problem
            assert 0 <= p.pointer <= ipv6.HEADER_LEN + n and p.reason
            return p.reason
        assert 0 <= chain.offset <= n and 0 <= chain.unfragmentable <= n
        assert 0 <= chain.nh_pointer < ipv6.HEADER_LEN + n
        if chain.fragment is None or chain.fragment.atomic:
            assert chain.upper not in ipv6ext.EXT_HEADERS
        elif mode == 3:
            again = ipv6ext.walk(chain.upper, body[chain.offset:],
                                 base=ipv6.HEADER_LEN + chain.unfragmentable,
                                 nh_pointer=chain.nh_pointer, first=False)
            if again.problem is not None:
                return again.problem.reason
    except Malformed as exc:
        return exc.reason
    return None


# -- ICMPv6 ----------------------------------------------------------------------------

def _fix_icmp6(body: bytearray, src: bytes = SRC6, dst: bytes = DST6) -> None:
    if len(body) >= 4:
        body[2:4] = b"\0\0"
        body[2:4] = ipv6.upper_checksum(src, dst, icmp6.PROTO, body).to_bytes(2, "big")


def run_icmp6(data: bytes) -> str | None:
    """byte 0: bit 0 completes the checksum; bits 1-2 the entry point:
    ``parse`` (and, for an error, the quote it carries and its errno),
    ``parse_quote`` alone, or ``no_error_about`` (the next header in byte 1)."""
    if not data:
        return None
    ctl = data[0]
    mode = (ctl >> 1) & 3
    body = bytearray(data[1:])
    try:
        if mode == 1:
            q = icmp6.parse_quote(memoryview(body))
            assert len(q.src) == len(q.dst) == 16 and len(q.transport) <= len(body)
            return None
        if mode == 2:
            if not body:
                return None
            icmp6.no_error_about(body[0], memoryview(body)[1:])
            return None
        if ctl & 1:
            _fix_icmp6(body)
        hdr, rest = icmp6.parse(memoryview(body), SRC6, DST6)
        assert len(rest) == len(body) - icmp6.HEADER_LEN
        if hdr.is_error:
            icmp6.err_convert(hdr.type, hdr.code)
            q = icmp6.parse_quote(rest)
            assert len(q.transport) <= len(rest)
        for src in (SRC6, ipv6.UNSPECIFIED):
            for dst in (DST6, ipv6.ALL_NODES):
                icmp6.error_allowed(hdr.type, hdr.code, src, dst, bool(ctl & 8))
    except Malformed as exc:
        return exc.reason
    return None


# -- Neighbor Discovery ----------------------------------------------------------------

def _check_options(opts: ndp.NdOptions, n: int) -> None:
    for mac in (opts.source_lladdr, opts.target_lladdr):
        assert mac is None or len(mac) == 6
    for p in opts.prefixes:
        assert 0 <= p.prefix_len <= 128 and len(p.prefix) == 16
        assert ipv6.mask(p.prefix, p.prefix_len) == p.prefix
    for r in opts.rdnss:
        assert r.servers and all(len(s) == 16 for s in r.servers)
    for d in opts.dnssl:
        for name in d.domains:
            assert name
            dns.canonical(name)      # what the stack keeps must be a usable name
    # Every option takes at least 8 bytes: the lists are bounded by the message.
    assert len(opts.prefixes) + len(opts.rdnss) + len(opts.dnssl) + opts.unknown <= n // 8
    assert opts.redirected is None or len(opts.redirected) <= n


def run_ndp(data: bytes) -> str | None:
    """byte 0: bits 0-2 the message type (RS, RA, NS, NA, Redirect; 5-7: the
    option area alone through ``parse_options``), bits 3-4 the IPv6 source
    (link-local, ::, global, another link-local), bits 5-6 the destination
    (all-nodes, a solicited-node group, unicast, all-routers), bit 7 a hop
    limit of 254 (forwarded). Bytes 1-4 are the ICMPv6 header's last 32
    bits, the rest the message body (what ``icmp6.parse`` hands on)."""
    if not data:
        return None
    ctl = data[0]
    which = ctl & 7
    try:
        if which >= len(ND_TYPES):
            opts = ndp.parse_options(memoryview(data[1:]))
            _check_options(opts, len(data) - 1)
            return None
        if len(data) < 5:
            return None
        src = ND_SOURCES[(ctl >> 3) & 3]
        dst = ND_DESTS[(ctl >> 5) & 3]
        hop = 254 if ctl & 0x80 else ndp.HOP_LIMIT
        hdr = Icmp6Header(ND_TYPES[which], 0, int.from_bytes(data[1:5], "big"))
        body = memoryview(data[5:])
        msg = ndp.parse(hdr, body, src, dst, hop)
    except Malformed as exc:
        return exc.reason
    _check_options(msg.options, len(body))
    if isinstance(msg, (ndp.NeighborSolicitation, ndp.NeighborAdvertisement)):
        assert len(msg.target) == 16 and msg.target[0] != 0xFF
    elif isinstance(msg, ndp.Redirect):
        assert len(msg.target) == len(msg.destination) == 16
    elif isinstance(msg, ndp.RouterAdvertisement):
        assert 0 <= msg.cur_hop_limit < 256 and 0 <= msg.router_lifetime < 1 << 16
    return None


# -- MLD -------------------------------------------------------------------------------

def run_mld(data: bytes) -> str | None:
    """byte 0: bits 0-1 the type (Query, v1 Report, v1 Done, v2 Report), bits
    2-3 the IPv6 source for ``check_ip`` (link-local, ::, global), bit 4 no
    Router Alert, bit 5 a hop limit of 2. Bytes 1-4 are the ICMPv6 header's
    last 32 bits (v2 Report: the record count), the rest the body."""
    if len(data) < 5:
        return None
    ctl = data[0]
    kind = MLD_TYPES[ctl & 3]
    hdr = Icmp6Header(kind, 0, int.from_bytes(data[1:5], "big"))
    body = memoryview(data[5:])
    n = len(body)
    try:
        msg = mld.parse(hdr, body)
        mld.check_ip(kind, ND_SOURCES[(ctl >> 2) & 3], 2 if ctl & 0x20 else mld.HOP_LIMIT,
                     None if ctl & 0x10 else ipv6ext.ROUTER_ALERT_MLD)
    except Malformed as exc:
        return exc.reason
    if isinstance(msg, mld.MldV2Report):
        assert sum(20 + 16 * len(r.sources) + len(r.aux) for r in msg.records) <= n
        assert all(len(s) == 16 for r in msg.records for s in r.sources)
    elif isinstance(msg, mld.MldQuery):
        assert msg.version in (1, 2) and 16 * len(msg.sources) <= n
        assert 0 <= msg.qrv <= 7
    return None


# -- seeds -----------------------------------------------------------------------------

def _with(flags: int, items: list[bytes]) -> list[bytes]:
    return [bytes([flags]) + x for x in items]


def nd_messages() -> list[bytes]:
    """Whole ICMPv6 ND messages (checksums over SRC6 -> ALL_NODES) of every type,
    with every option the stack reads."""
    pre = ip_bytes("2001:db8:1::")
    ra_opts = (ndp.opt_source_lladdr(MAC_R) + ndp.opt_prefix(pre, 64, 86400, 14400)
               + ndp.opt_prefix(ip_bytes("2001:db8:2::"), 48, 600, 0, autonomous=False)
               + ndp.opt_mtu(1400) + ndp.opt_rdnss(600, [ip_bytes("2001:db8:1::53"),
                                                         ip_bytes("2001:db8:1::54")])
               + ndp.opt_dnssl(600, ["fuzz", "lab.example"]) + bytes((200, 1)) + bytes(6))
    inner = ipv6.build(DST6, ip_bytes("2001:db8:9::1"), ipv6.PROTO_UDP, bytes(16))
    return [
        ndp.build_rs(SRC6, MAC_R),
        ndp.build_rs(ipv6.UNSPECIFIED),
        ndp.build_ra(SRC6, ipv6.ALL_NODES, router_lifetime=1800, reachable_time=30000,
                     retrans_timer=1000, flags=ndp.RA_OTHER, options=ra_opts),
        ndp.build_ns(SRC6, ipv6.solicited_node(DST6), DST6, MAC_R),
        ndp.build_ns(ipv6.UNSPECIFIED, ipv6.solicited_node(DST6), DST6, nonce=bytes(range(6))),
        ndp.build_na(SRC6, DST6, SRC6, solicited=True, router=True, target_lladdr=MAC_R),
        ndp.build_na(SRC6, ipv6.ALL_NODES, SRC6, override=True, target_lladdr=MAC_R),
        ndp.build_redirect(SRC6, DST6, ip_bytes("fe80::77"), ip_bytes("2001:db8:9::1"),
                           MAC_R, inner),
    ]


def mld_messages() -> list[bytes]:
    groups = [ipv6.solicited_node(DST6), ip_bytes("ff02::fb"), ip_bytes("ff05::1:3")]
    recs = [mld.AddressRecord(mld.CHANGE_TO_EXCLUDE, groups[0]),
            mld.AddressRecord(mld.MODE_IS_INCLUDE, groups[1], (GLOBAL_SRC, SRC6)),
            mld.AddressRecord(mld.ALLOW_NEW_SOURCES, groups[2], (GLOBAL_SRC,), bytes(4))]
    return [
        mld.build_query(SRC6, ipv6.ALL_NODES, 10000),
        mld.build_query(SRC6, groups[1], 1000, groups[1], [GLOBAL_SRC, SRC6], qrv=3,
                        qqi=300, suppress=True),
        mld.build_query(SRC6, ipv6.ALL_NODES, 40000000, qqi=5000),
        mld.build_query(SRC6, ipv6.ALL_NODES, 10000, version=1),
        mld.build_v2_report(SRC6, recs),
        mld.build_v1(SRC6, groups[1], mld.V1_REPORT, groups[1]),
        mld.build_v1(SRC6, ipv6.ALL_ROUTERS, mld.V1_DONE, groups[1]),
    ]


def ext_chains() -> list[tuple[int, bytes]]:
    """(first next header, payload) pairs: every extension header with options."""
    udp_body = bytes((0x13, 0x88, 0x13, 0x89, 0, 16, 0, 0)) + b"payload!"   # 5000 -> 5001
    hbh = ipv6ext.build_hop_by_hop(ipv6.PROTO_ICMP6, [ipv6ext.router_alert()])
    hbh_many = ipv6ext.build_hop_by_hop(ipv6.PROTO_DSTOPTS, [
        ipv6ext.router_alert(), (0x3E, b"abc"), (0x1E, bytes(9))])
    dst = ipv6ext.build_dest_options(ipv6.PROTO_UDP, [(ipv6ext.OPT_TUNNEL_LIMIT, b"\x04")])
    dst_unknown = ipv6ext.build_dest_options(ipv6.PROTO_UDP, [(0x9E, b"xy")])
    rh = ipv6ext.build_routing(ipv6.PROTO_UDP, 4, 0, bytes(4) + bytes(16))
    rh0 = ipv6ext.build_routing(ipv6.PROTO_UDP, 0, 1, bytes(4) + bytes(16))
    frag_first = ipv6ext.build_fragment(ipv6.PROTO_UDP, 0, True, 0x1234) + udp_body
    frag_later = ipv6ext.build_fragment(ipv6.PROTO_UDP, 16, False, 0x1234) + udp_body
    atomic = ipv6ext.build_fragment(ipv6.PROTO_DSTOPTS, 0, False, 7) + dst + udp_body
    return [
        (ipv6.PROTO_HOPOPTS, hbh + bytes(24)),
        (ipv6.PROTO_HOPOPTS, hbh_many + dst + udp_body),
        (ipv6.PROTO_DSTOPTS, dst_unknown + udp_body),
        (ipv6.PROTO_ROUTING, rh + udp_body),
        (ipv6.PROTO_ROUTING, rh0 + udp_body),
        (ipv6.PROTO_FRAGMENT, frag_first),
        (ipv6.PROTO_FRAGMENT, frag_later),
        (ipv6.PROTO_FRAGMENT, atomic),
        (ipv6.PROTO_DSTOPTS, dst + udp_body),
        (ipv6.PROTO_HOPOPTS, ipv6ext.build_hop_by_hop(ipv6.PROTO_ROUTING, [])
         + ipv6ext.build_routing(ipv6.PROTO_FRAGMENT, 2, 0, bytes(4) + bytes(16))
         + frag_first),
    ]


def packets6() -> list[bytes]:
    """Whole IPv6 packets of every kind the stack meets."""
    out = []
    for nh, payload in ext_chains():
        out.append(ipv6.build(GLOBAL_SRC, GLOBAL_DST, nh, payload))
    for msg in nd_messages():
        out.append(ipv6.build(SRC6, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, msg, hop_limit=255))
    for msg in mld_messages():
        out.append(mld.packet(SRC6, ipv6.ALL_NODES, msg))
    echo = icmp6.build_echo(GLOBAL_SRC, GLOBAL_DST, icmp6.ECHO_REQUEST, 0x4242, 1, b"ping" * 8)
    out.append(ipv6.build(GLOBAL_SRC, GLOBAL_DST, ipv6.PROTO_ICMP6, echo,
                          traffic_class=0x20, flow_label=0x12345))
    for e in icmp_errors():
        out.append(ipv6.build(GLOBAL_SRC, GLOBAL_DST, ipv6.PROTO_ICMP6, e))
    out.append(ipv6.build(GLOBAL_SRC, GLOBAL_DST, ipv6.PROTO_NONE, b""))
    return out


def icmp_errors(src: bytes = GLOBAL_SRC, dst: bytes = GLOBAL_DST) -> list[bytes]:
    """An error of each type quoting a TCP segment (and one quoting a chain)."""
    quoted = ipv6.build(dst, src, ipv6.PROTO_TCP, bytes(20) + b"data")
    chained = ipv6.build(dst, src, ipv6.PROTO_DSTOPTS,
                         ipv6ext.build_dest_options(ipv6.PROTO_UDP, []) + bytes(8))
    return [icmp6.build_dest_unreachable(src, dst, icmp6.PORT_UNREACHABLE, quoted),
            icmp6.build_packet_too_big(src, dst, 1280, quoted),
            icmp6.build_time_exceeded(src, dst, icmp6.HOP_LIMIT_EXCEEDED, quoted),
            icmp6.build_param_problem(src, dst, icmp6.UNRECOGNIZED_NEXT_HEADER, 6, chained)]


def _icmp6_seeds() -> list[bytes]:
    msgs = [icmp6.build_echo(SRC6, DST6, icmp6.ECHO_REQUEST, 1, 2, b"hello")]
    msgs += icmp_errors(SRC6, DST6)
    msgs += [m for m in nd_messages() + mld_messages()]
    quotes = [m[8:] for m in icmp_errors()]
    chains = [bytes([nh]) + p for nh, p in ext_chains()]
    return _with(1, msgs) + _with(2, quotes) + _with(4, chains)


def _ndp_seeds() -> list[bytes]:
    out = []
    for m in nd_messages():
        which = ND_TYPES.index(m[0])
        src = ND_SOURCES.index(SRC6)
        if m[0] in (ndp.ROUTER_SOLICITATION, ndp.NEIGHBOR_SOLICITATION) and \
                b"\x01\x01" not in m[8 + (16 if m[0] == ndp.NEIGHBOR_SOLICITATION else 0):]:
            src = ND_SOURCES.index(ipv6.UNSPECIFIED)
        dst = 1 if m[0] == ndp.NEIGHBOR_SOLICITATION else 2 if m[0] in (
            ndp.NEIGHBOR_ADVERTISEMENT, ndp.REDIRECT) and m[4] & 0x40 else 0
        out.append(bytes([which | src << 3 | dst << 5]) + m[4:])
    ra = nd_messages()[2]
    out.append(bytes([7]) + ra[16:])           # the RA's options alone
    return out


def _mld_seeds() -> list[bytes]:
    return [bytes([MLD_TYPES.index(m[0])]) + m[4:] for m in mld_messages()]


def scapy_packets() -> list[bytes]:
    """IPv6 packets built by scapy (the test extra), for a second builder's
    idea of each format; empty when scapy is not installed."""
    try:
        import logging
        logging.getLogger("scapy").setLevel(logging.ERROR)
        from scapy.layers import inet6 as s6
    except ImportError:
        return []
    src, dst = "fe80::fe", "fe80::1"
    g1, g2 = "2001:db8:1::fe", "2001:db8:1::1"
    pkts = [
        s6.IPv6(src=src, dst="ff02::1", hlim=255) / s6.ICMPv6ND_RA(routerlifetime=1800)
        / s6.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:fe")
        / s6.ICMPv6NDOptMTU(mtu=1400)
        / s6.ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64)
        / s6.ICMPv6NDOptRDNSS(dns=["2001:db8:1::53"], lifetime=600)
        / s6.ICMPv6NDOptDNSSL(searchlist=["fuzz.", "lab.example."], lifetime=600),
        s6.IPv6(src=src, dst="ff02::2", hlim=255) / s6.ICMPv6ND_RS()
        / s6.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:fe"),
        s6.IPv6(src="::", dst="ff02::1:ff00:1", hlim=255) / s6.ICMPv6ND_NS(tgt=dst),
        s6.IPv6(src=src, dst=dst, hlim=255) / s6.ICMPv6ND_NA(tgt=src, R=1, S=1, O=1)
        / s6.ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:fe"),
        s6.IPv6(src=src, dst=dst, hlim=255)
        / s6.ICMPv6ND_Redirect(tgt="fe80::77", dst="2001:db8:9::1")
        / s6.ICMPv6NDOptRedirectedHdr(pkt=s6.IPv6(src=dst, dst="2001:db8:9::1")
                                      / s6.UDP()),
        s6.IPv6(src=src, dst="ff02::1", hlim=1)
        / s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert()]) / s6.ICMPv6MLQuery2(),
        s6.IPv6(src=src, dst="ff02::16", hlim=1)
        / s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert()])
        / s6.ICMPv6MLReport2(records=[s6.ICMPv6MLDMultAddrRec(dst="ff02::1:ff00:1"),
                                      s6.ICMPv6MLDMultAddrRec(dst="ff02::fb",
                                                              sources=[g1])]),
        s6.IPv6(src=src, dst="ff02::1", hlim=1)
        / s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert()]) / s6.ICMPv6MLQuery(),
        s6.IPv6(src=g1, dst=g2) / s6.IPv6ExtHdrDestOpt(options=[s6.PadN(optdata=b"\0\0")])
        / s6.IPv6ExtHdrRouting(addresses=["2001:db8::9"], segleft=0)
        / s6.IPv6ExtHdrFragment(id=99, m=1) / s6.UDP(sport=53, dport=5000) / (b"x" * 16),
        s6.IPv6(src=g1, dst=g2) / s6.ICMPv6EchoRequest(id=7, seq=1, data=b"ping"),
        s6.IPv6(src=g1, dst=g2) / s6.ICMPv6DestUnreach(code=4)
        / s6.IPv6(src=g2, dst=g1) / s6.UDP(sport=5000, dport=53),
        s6.IPv6(src=g1, dst=g2) / s6.ICMPv6PacketTooBig(mtu=1280)
        / s6.IPv6(src=g2, dst=g1) / s6.TCP(),
    ]
    return [bytes(p) for p in pkts]


def ipv6_seeds() -> list[bytes]:
    pk = packets6() + scapy_packets()
    return _with(0, pk) + _with(1, pk[:4]) + _with(2, [p[:80] for p in pk[-6:]])


def ipv6ext_seeds() -> list[bytes]:
    out = []
    for nh, payload in ext_chains():
        out.append(bytes([EXT_FIRST.index(nh) | 4]) + payload)
        out.append(bytes([EXT_FIRST.index(nh) | 4 | 8]) + payload)
        if nh == ipv6.PROTO_FRAGMENT:
            out.append(bytes([EXT_FIRST.index(nh) | 4 | 24]) + payload)
    for _nh, payload in ext_chains()[:3]:
        length = (payload[1] + 1) * 8
        out.append(bytes([4 | 16]) + payload[:length])
    for p in scapy_packets():
        if p[6] in EXT_FIRST:
            out.append(bytes([EXT_FIRST.index(p[6]) | 4]) + p[40:])
    return out


def icmp6_seeds() -> list[bytes]:
    out = _icmp6_seeds()
    for p in scapy_packets():
        if p[6] == ipv6.PROTO_ICMP6:
            body = bytearray(p[40:])
            _fix_icmp6(body)     # re-summed over the harness's addresses
            out.append(bytes([1]) + bytes(body))
    return out


def ndp_seeds() -> list[bytes]:
    out = _ndp_seeds()
    for p in scapy_packets():
        if p[6] == ipv6.PROTO_ICMP6 and p[40] in ND_TYPES:
            src = ND_SOURCES.index(p[8:24]) if p[8:24] in ND_SOURCES else 0
            dst = ND_DESTS.index(p[24:40]) if p[24:40] in ND_DESTS else 2
            out.append(bytes([ND_TYPES.index(p[40]) | src << 3 | dst << 5]) + p[44:])
    return out


def mld_seeds() -> list[bytes]:
    out = _mld_seeds()
    for p in scapy_packets():
        try:
            upper, off = ipv6ext.skip_chain(p[6], memoryview(p)[40:])
        except Malformed:
            continue
        if upper == ipv6.PROTO_ICMP6 and p[40 + off] in MLD_TYPES:
            out.append(bytes([MLD_TYPES.index(p[40 + off])]) + p[44 + off:])
    return out


def frames6() -> list[bytes]:
    """The packets as Ethernet frames (for the ``ethernet`` target too)."""
    out = []
    for p in packets6():
        dst = p[24:40]
        mac = ipv6.multicast_mac(dst) if dst[0] == 0xFF else MAC_H
        out.append(ethernet.build(mac, MAC_R, ethernet.ETH_IPV6, p))
    return out


# -- Stack.receive on a live IPv6 world (fuzz/world6.py) --------------------------------

def stack6_seeds() -> list[bytes]:
    from femtotcp.wire import tcp
    from fuzz import world6
    w = world6.World6(record=True)
    seeds = w.seeds()
    peer, victim = w.peer_g, w.victim_g
    # Every hand-built packet, readdressed three ways, length and checksum completed.
    for f in frames6():
        kind = f[54] if f[20] == ipv6.PROTO_ICMP6 else -1
        for how in (1, 2, 3):
            if how == 1 and kind in ND_TYPES:
                continue
            seeds.append(bytes([how << 6 | 4 | 1]) + f)
    # TCP on the live connection: data, ACKs and SACKs (offsets from rcv_nxt/snd_una).
    def on_conn(seg: bytes, ctl: int = 6 | 0x20) -> None:
        seeds.append(bytes([ctl]) + ethernet.build(
            world6.VICTIM_MAC, world6.PEER_MAC, ethernet.ETH_IPV6,
            ipv6.build(peer, victim, ipv6.PROTO_TCP, seg)))
    for ack, blocks in ((1440, ()), (0, ((1440, 2880),)), (0, ((1440, 2880), (4320, 5760))),
                        (2880, ()), (0, ())):
        on_conn(tcp.build(peer, victim, 80, 1, 0, ack, tcp.ACK, 60000,
                          options=tcp.build_options(sack_blocks=blocks) if blocks else b""))
    on_conn(tcp.build(peer, victim, 80, 1, 0, 0, tcp.ACK | tcp.PSH, 60000, b"more data"), 6)
    on_conn(tcp.build(peer, victim, 80, 1, 0, 0, tcp.FIN | tcp.ACK, 60000), 6)
    on_conn(tcp.build(peer, victim, 80, 1, 0, 0, tcp.RST, 0), 6)
    on_conn(tcp.build(peer, victim, 80, 1, 4, 0, tcp.ACK | tcp.PSH, 60000, b"ooo"), 6)
    on_conn(tcp.build(peer, victim, 80, 1, 0, 0, tcp.SYN, 60000,
                      options=tcp.build_options(mss=1440, wscale=7, sack_perm=True)), 6)
    # A SYN to the listener, UDP to the socket, a DNS AAAA answer for the query in flight.
    from femtotcp.wire import dns, udp
    syn = tcp.build(peer, victim, 40001, 22, 99, 0, tcp.SYN, 60000,
                    options=tcp.build_options(mss=1440, ts=(1, 0)))
    udp_in = udp.build(peer, victim, 6000, world6.UDP_PORT, b"datagram")
    q = dns.Question("q1.fuzz.example", dns.AAAA)
    answers = [dns.Record("q1.fuzz.example", dns.CNAME, 1, 60, "w.fuzz.example"),
               dns.Record("w.fuzz.example", dns.AAAA, 1, 60, GLOBAL_DST)]
    reply = dns.build(0, dns.QR | dns.RD | dns.RA, [q], answers)
    dns_in = udp.build(world6.DNS6, victim, 53, 33000, reply)
    for nh, payload, ctl in ((ipv6.PROTO_TCP, syn, 4), (ipv6.PROTO_UDP, udp_in, 4),
                             (ipv6.PROTO_UDP, dns_in, 6)):
        seeds.append(bytes([ctl | 1 << 6]) + ethernet.build(
            world6.VICTIM_MAC, world6.PEER_MAC, ethernet.ETH_IPV6,
            ipv6.build(peer, victim, nh, payload)))
    # ICMPv6 errors quoting the live connection; fragments joining the reassembly.
    for e in icmp_errors(peer, victim):
        seeds.append(bytes([6]) + ethernet.build(world6.VICTIM_MAC, world6.ROUTER_MAC,
                                                 ethernet.ETH_IPV6,
                                                 ipv6.build(peer, victim, ipv6.PROTO_ICMP6, e)))
    for off, more in ((72, True), (80, False), (0, False), (32, False)):
        body = ipv6ext.build_fragment(ipv6.PROTO_UDP, off, more, 1) + b"y" * 8
        seeds.append(bytes([2 | 1]) + ethernet.build(
            world6.VICTIM_MAC, world6.PEER_MAC, ethernet.ETH_IPV6,
            ipv6.build(peer, victim, ipv6.PROTO_FRAGMENT, body)))
    # An NS for our address and an NA answering the pending resolution.
    ns = ndp.build_ns(SRC6, victim, victim, MAC_R)
    na = ndp.build_na(peer, victim, w.nobody, solicited=True, target_lladdr=MAC_R)
    for src, msg, how in ((SRC6, ns, 2), (peer, na, 1)):
        seeds.append(bytes([how << 6 | 6]) + ethernet.build(
            world6.VICTIM_MAC, MAC_R, ethernet.ETH_IPV6,
            ipv6.build(src, victim, ipv6.PROTO_ICMP6, msg, hop_limit=255)))
    # The router's RA again, with time to pass (lifetimes, DAD of nothing new, RS).
    seeds.append(bytes([4 | 3 << 3]) + world6.ra_frame())
    return seeds


def prepare_world6() -> None:
    from fuzz.world6 import prepare
    prepare()


def run_stack6(data: bytes) -> str | None:
    from fuzz.world6 import current
    return current().run(data)
