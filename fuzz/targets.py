"""Fuzz targets: one per parser in ``femtotcp.wire`` (and the vnet header of
``phy/tap.py``), and ``stack`` for ``Stack.receive`` with live state.

A target is a function ``bytes -> str | None``: it returns the drop reason
(the counter name ``Malformed`` carries) or None when the input was accepted,
and raises anything else it meets: that is a bug. ``stack`` returns the names
of the drop counters the input moved (or None) and raises ``InternalError``
when the stack swallowed an exception of its own.

The first byte of a parser target's input selects a variant (which entry
point, VLAN configured or not, checksum completed by the harness so the
fuzzer gets past it); seeds are built here from the project's own builders,
and for ``stack`` also from the frames of a live world written to a pcap.

Nothing here needs atheris: the regression tests in tests/fuzz call the same
functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from femtotcp.core.counters import Counters
from femtotcp.phy import tap
from femtotcp.stack import gro
from femtotcp.wire import Malformed, arp, dhcp, dns, ethernet, icmp4, igmp, ipv4, tcp, udp
from femtotcp.wire.checksum import checksum, pseudo_header_sum
from fuzz import targets6

SRC = bytes([192, 0, 2, 254])
DST = bytes([192, 0, 2, 1])
MAC_A = bytes.fromhex("0200000000fe")
MAC_B = bytes.fromhex("020000000001")


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], str | None]
    seeds: Callable[[], list[bytes]]
    doc: str
    #: Called before each input, outside the timed part (the stack world's upkeep).
    before: Callable[[], None] | None = None


# -- parser targets ------------------------------------------------------------------

def _ethernet(data: bytes) -> str | None:
    if not data:
        return None
    vlan = None if data[0] & 1 else data[0] >> 1
    try:
        hdr, payload = ethernet.parse(memoryview(data[1:]), vlan)
    except Malformed as exc:
        return exc.reason
    assert len(hdr.dst) == 6 and len(hdr.src) == 6 and hdr.ethertype >= 0x0600
    assert len(payload) <= len(data) - 15
    return None


def _arp(data: bytes) -> str | None:
    try:
        pkt = arp.parse(memoryview(data))
    except Malformed as exc:
        return exc.reason
    assert len(pkt.sha) == 6 and len(pkt.spa) == 4
    return None


def _fix_ipv4(data: bytearray) -> None:
    hlen = (data[0] & 0x0F) * 4 if data else 0
    if 20 <= hlen <= len(data):
        data[10:12] = b"\0\0"
        data[10:12] = checksum(data[:hlen]).to_bytes(2, "big")


def _ipv4(data: bytes) -> str | None:
    if not data:
        return None
    body = bytearray(data[1:])
    if data[0] & 1:
        _fix_ipv4(body)
    try:
        hdr, payload = ipv4.parse(memoryview(body), verify_checksum=not data[0] & 2)
    except Malformed as exc:
        return exc.reason
    assert hdr.header_len >= 20 and len(payload) == hdr.total_len - hdr.header_len
    assert hdr.total_len <= len(body)
    return None


def _ipv4_options(data: bytes) -> str | None:
    try:
        ipv4.check_options(data)
    except Malformed as exc:
        return exc.reason
    return None


def _checksummed(data: bytes) -> bytearray:
    """The message after byte 0, its checksum (bytes 2-3) completed when byte
    0's bit 0 says so (ICMP and IGMP lay it out alike)."""
    body = bytearray(data[1:])
    if data[0] & 1 and len(body) >= 4:
        body[2:4] = b"\0\0"
        body[2:4] = checksum(body).to_bytes(2, "big")
    return body


def _icmp4(data: bytes) -> str | None:
    if not data:
        return None
    body = _checksummed(data)
    try:
        hdr, payload = icmp4.parse(memoryview(body))
    except Malformed as exc:
        return exc.reason
    assert len(payload) == len(body) - icmp4.HEADER_LEN
    return None


def _igmp(data: bytes) -> str | None:
    """byte 0 bit 0: the checksum completed."""
    if not data:
        return None
    body = _checksummed(data)
    try:
        msg = igmp.parse(memoryview(body))
    except Malformed as exc:
        return exc.reason
    if isinstance(msg, igmp.IgmpV3Report):
        assert sum(8 + 4 * len(r.sources) + len(r.aux) for r in msg.records) <= len(body) - 8
        assert all(len(s) == 4 for r in msg.records for s in r.sources)
    elif isinstance(msg, igmp.IgmpQuery):
        assert msg.version in (1, 2, 3) and 12 + 4 * len(msg.sources) <= max(len(body), 12)
        assert 0 <= msg.qrv <= 7 and len(msg.group) == 4
    return None


def _igmp_messages() -> list[bytes]:
    group = bytes([239, 1, 2, 3])
    return [igmp.build_v3_query(), igmp.build_v3_query(group, 50, [SRC, DST], 3, 60, True),
            igmp.build_v2(igmp.QUERY, bytes(4), 100), igmp.build_v2(igmp.QUERY, bytes(4)),
            igmp.build_v2(igmp.V2_REPORT, group), igmp.build_v2(igmp.V2_LEAVE, group),
            igmp.build_v3_report([igmp.GroupRecord(igmp.CHANGE_TO_EXCLUDE, group),
                                  igmp.GroupRecord(igmp.MODE_IS_INCLUDE, group, (SRC,))])]


def _l4_fix(body: bytearray, proto: int, at: int) -> None:
    if len(body) >= at + 2:
        body[at:at + 2] = b"\0\0"
        n = len(body)
        if proto == udp.PROTO:
            ulen = int.from_bytes(body[4:6], "big")
            n = ulen if 8 <= ulen <= len(body) else n
        csum = checksum(body[:n], pseudo_header_sum(SRC, DST, proto, n))
        body[at:at + 2] = (csum or 0xFFFF).to_bytes(2, "big") if proto == udp.PROTO else \
            csum.to_bytes(2, "big")


def _udp(data: bytes) -> str | None:
    if not data:
        return None
    body = bytearray(data[1:])
    if data[0] & 1:
        _l4_fix(body, udp.PROTO, 6)
    try:
        hdr, payload = udp.parse(memoryview(body), SRC, DST)
    except Malformed as exc:
        return exc.reason
    assert len(payload) == hdr.length - 8
    return None


def _tcp(data: bytes) -> str | None:
    if not data:
        return None
    body = bytearray(data[1:])
    if data[0] & 1:
        _l4_fix(body, tcp.PROTO, 16)
    try:
        hdr, payload = tcp.parse(memoryview(body), SRC, DST)
    except Malformed as exc:
        return exc.reason
    assert 20 <= hdr.header_len <= 60 and len(hdr.options) == hdr.header_len - 20
    opts = tcp.parse_options(hdr.options)
    if opts.wscale is not None:
        assert 0 <= opts.wscale <= tcp.MAX_WSCALE
    assert len(opts.sack_blocks) <= tcp.MAX_SACK_BLOCKS
    return opts.bad


def _tcp_options(data: bytes) -> str | None:
    opts = tcp.parse_options(memoryview(data))
    assert len(opts.sack_blocks) <= tcp.MAX_SACK_BLOCKS
    return opts.bad


def _dns(data: bytes) -> str | None:
    if not data:
        return None
    mode = data[0] % 3
    body = memoryview(data[1:])
    try:
        if mode == 0:
            msg = dns.parse(body)
            for q in msg.questions:
                dns.canonical(q.name) if q.name else None
            for rr in msg.answers + msg.authority + msg.additional:
                assert isinstance(rr.name, str)
        elif mode == 1:
            dns.parse_head(body)
        else:
            # A name at an offset chosen by the second byte (RFC 9267 rules).
            if not body:
                return None
            name, end = dns.read_name(body[1:], body[0] % max(1, len(body) - 1), 0)
            assert end <= len(body) - 1
            if name:
                dns.canonical(name)      # a name we hand out must be re-encodable
    except Malformed as exc:
        return exc.reason
    return None


def _dhcp(data: bytes) -> str | None:
    if not data:
        return None
    body = memoryview(data[1:])
    try:
        if data[0] & 1:
            names = dhcp.domain_search(bytes(body))
            assert all(names)
            return None
        msg = dhcp.parse(body)
    except Malformed as exc:
        return exc.reason
    for code in (dhcp.OPT_ROUTER, dhcp.OPT_DNS):
        assert all(len(a) == 4 for a in msg.addresses(code))
    if dhcp.OPT_DOMAIN_SEARCH in msg.options:
        dhcp.domain_search(msg.options[dhcp.OPT_DOMAIN_SEARCH])
    for code in (dhcp.OPT_HOSTNAME, dhcp.OPT_DOMAIN_NAME, dhcp.OPT_MESSAGE):
        if code in msg.options:
            dhcp.text(msg.options[code])
    return None


def _vnet(data: bytes) -> str | None:
    got = tap.parse_vnet(memoryview(data))
    if isinstance(got, str):
        return got
    hdr, frame = got
    assert len(frame) == len(data) - tap.VNET_HDR_LEN
    return None


def _fixed_tcp4(frame: bytes) -> bytes:
    """``frame`` with its IPv4 header and TCP checksums completed, when it is
    long enough to hold both (so the fuzzer gets past them to the merge)."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != tcp.PROTO:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    if ihl < 20 or len(frame) < 14 + ihl + 20:
        return frame
    f = bytearray(frame)
    f[24:26] = b"\0\0"
    f[24:26] = checksum(f[14:14 + ihl]).to_bytes(2, "big")
    seg = 14 + ihl
    f[seg + 16:seg + 18] = b"\0\0"
    pseudo = pseudo_header_sum(bytes(f[26:30]), bytes(f[30:34]), tcp.PROTO, len(f) - seg)
    f[seg + 16:seg + 18] = checksum(f[seg:], pseudo).to_bytes(2, "big")
    return bytes(f)


def _gro(data: bytes) -> str | None:
    """``stack.gro.coalesce`` over one read batch. Byte 0: bit 0, the device
    is trusted; bit 1, the harness completes each frame's IPv4 and TCP
    checksums. Then frames, each as a byte (bit 0: vouched for) and a 2-byte
    length before it. Whatever the batch, merging never raises, never returns
    more frames than it got or more bytes, and its counters account for every
    frame it took away."""
    if not data:
        return None
    frames: list[tuple[bytes, int]] = []
    i = 1
    while i + 3 <= len(data) and len(frames) < 64:
        n = int.from_bytes(data[i + 1:i + 3], "big")
        frame = data[i + 3:i + 3 + n]
        frames.append((_fixed_tcp4(frame) if data[0] & 2 else frame, data[i] & 1))
        i += 3 + n
    counters = Counters()
    out = gro.coalesce(frames, bool(data[0] & 1), 1514, counters)
    assert len(out) <= len(frames)
    assert sum(len(f) for f, _ in out) <= sum(len(f) for f, _ in frames)
    assert len(frames) - len(out) == \
        counters["gro.merged_segments"] - counters["gro.merged_frames"]
    return None


def _gro_batch(frames: list[bytes], trusted: int = 0, vouched: int = 0) -> bytes:
    return bytes([trusted]) + b"".join(bytes([vouched]) + len(f).to_bytes(2, "big") + f
                                       for f in frames)


def _gro_seeds() -> list[bytes]:
    """Runs of in-order segments as Linux sends them (DF, the IP ID counting
    up, the same timestamps), one spoiled, one ending with PSH, mixed flows."""
    opts = tcp.build_options(ts=(7, 9))

    def seg(seq: int, ident: int, payload: bytes, flags: int = tcp.ACK,
            sport: int = 40000) -> bytes:
        t = tcp.build(SRC, DST, sport, 22, seq, 2000, flags, 502, payload, options=opts)
        return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4,
                              ipv4.build(SRC, DST, tcp.PROTO, t, ident=ident, flags_frag=0x4000))

    run = [seg(1000 + 100 * k, 50 + k, bytes([k]) * 100) for k in range(6)]
    spoiled = list(run)
    spoiled[3] = spoiled[3][:-1] + b"\x00"
    ended = run[:3] + [seg(1300, 53, b"end", tcp.ACK | tcp.PSH)] + run[4:]
    mixed = [run[0], seg(5000, 9, b"x" * 100, sport=40001), run[1], run[2]]
    return [_gro_batch(run), _gro_batch(run, 1, 1), _gro_batch(run, 2), _gro_batch(spoiled),
            _gro_batch(ended), _gro_batch(mixed), _gro_batch(_frames())]


# -- seeds ---------------------------------------------------------------------------

def _frames() -> list[bytes]:
    """Ethernet frames of every kind the stack meets (built with the wire builders)."""
    out = []
    eth = ethernet.build
    out.append(eth(ethernet.BROADCAST, MAC_A, ethernet.ETH_ARP,
                   arp.build(arp.REQUEST, MAC_A, SRC, b"\0" * 6, DST)))
    out.append(eth(MAC_B, MAC_A, ethernet.ETH_ARP, arp.build(arp.REPLY, MAC_A, SRC, MAC_B, DST)))
    for ip in _ip_packets():
        out.append(eth(MAC_B, MAC_A, ethernet.ETH_IPV4, ip))
    out.append(eth(MAC_B, MAC_A, ethernet.ETH_IPV4, _ip_packets()[0], vlan=5))
    return out


def _segments() -> list[bytes]:
    opts = tcp.build_options(mss=1460, wscale=7, sack_perm=True, ts=(1, 0))
    sack = tcp.build_options(ts=(5, 6), sack_blocks=[(100, 200), (300, 400), (500, 600)])
    return [
        tcp.build(SRC, DST, 40000, 22, 1000, 0, tcp.SYN, 64240, options=opts),
        tcp.build(SRC, DST, 40000, 22, 1001, 2000, tcp.ACK, 502),
        tcp.build(SRC, DST, 40000, 22, 1001, 2000, tcp.ACK | tcp.PSH, 502, b"hello"),
        tcp.build(SRC, DST, 40000, 22, 1006, 2000, tcp.ACK, 502, options=sack),
        tcp.build(SRC, DST, 40000, 22, 1006, 2000, tcp.FIN | tcp.ACK, 502),
        tcp.build(SRC, DST, 40000, 22, 1006, 0, tcp.RST, 0),
        tcp.build(SRC, DST, 40000, 22, 1006, 2000, tcp.ACK | tcp.URG, 502, b"!", urgent=1),
    ]


def _dns_messages() -> list[bytes]:
    q = dns.Question("www.example.com", dns.A)
    rrs = [dns.Record("www.example.com", dns.CNAME, 1, 60, "web.example.com"),
           dns.Record("web.example.com", dns.A, 1, 60, bytes([192, 0, 2, 80])),
           dns.Record("web.example.com", dns.AAAA, 1, 60, bytes(16))]
    auth = [dns.Record("example.com", dns.SOA, 1, 300,
                       ("ns.example.com", "host.example.com", 1, 2, 3, 4, 5))]
    extra = [dns.Record("example.com", dns.MX, 1, 60, (10, "mail.example.com")),
             dns.Record("x.example.com", dns.TXT, 1, 60, b"\x05hello"),
             dns.Record("1.2.0.192.in-addr.arpa", dns.PTR, 1, 60, "www.example.com")]
    return [dns.build_query(0x1234, "www.example.com", dns.A),
            dns.build(0x1234, dns.QR | dns.RD | dns.RA, [q], rrs, auth, extra),
            dns.build(0x1234, dns.QR | dns.RD | dns.RA, [q], rrs, auth, extra, compress=False),
            dns.build(0x1234, dns.QR | dns.TC, [q]),
            dns.build(0x1234, dns.QR | dns.NXDOMAIN, [q], (), auth)]


def _dhcp_messages() -> list[bytes]:
    mac = MAC_B
    common = [(dhcp.OPT_SERVER_ID, bytes([192, 0, 2, 254])), (dhcp.OPT_LEASE_TIME, dhcp.u32(120)),
              (dhcp.OPT_SUBNET_MASK, dhcp.prefix_to_mask(24)),
              (dhcp.OPT_ROUTER, bytes([192, 0, 2, 254])),
              (dhcp.OPT_DNS, bytes([192, 0, 2, 254, 192, 0, 2, 253])),
              (dhcp.OPT_DOMAIN_NAME, b"example"), (dhcp.OPT_T1, dhcp.u32(60)),
              (dhcp.OPT_T2, dhcp.u32(100)), (dhcp.OPT_MTU, (1500).to_bytes(2, "big")),
              (dhcp.OPT_DOMAIN_SEARCH, dhcp.encode_domain_search(["example", "lab.example"]))]
    yi = bytes([192, 0, 2, 50])
    out = []
    for t in (dhcp.OFFER, dhcp.ACK, dhcp.NAK):
        out.append(dhcp.build(dhcp.BOOTREPLY, 0x1234, mac,
                              [(dhcp.OPT_MESSAGE_TYPE, bytes([t]))] + common, yiaddr=yi))
    file_opts = bytes([dhcp.OPT_ROUTER, 4, 192, 0, 2, 1, dhcp.OPT_END])
    sname_opts = bytes([dhcp.OPT_DNS, 4, 192, 0, 2, 53, dhcp.OPT_END])
    out.append(dhcp.build(dhcp.BOOTREPLY, 0x1234, mac,
                          [(dhcp.OPT_MESSAGE_TYPE, b"\x05"), (dhcp.OPT_OVERLOAD, b"\x03")],
                          file=file_opts, sname=sname_opts, yiaddr=yi))
    out.append(dhcp.build(dhcp.BOOTREQUEST, 0x1234, mac,
                          [(dhcp.OPT_MESSAGE_TYPE, b"\x01"),
                           (dhcp.OPT_PARAM_REQUEST, bytes([1, 3, 6, 15, 119]))]))
    return out


def _ip_packets() -> list[bytes]:
    echo = icmp4.build_echo(icmp4.ECHO_REQUEST, 0x4242, 1, b"ping" * 8)
    out = [ipv4.build(SRC, DST, ipv4.PROTO_ICMP, echo),
           ipv4.build(SRC, DST, ipv4.PROTO_ICMP, echo,
                      options=bytes([ipv4.OPT_RR, 11, 4]) + bytes(8)),
           ipv4.build(SRC, DST, ipv4.PROTO_ICMP, echo,
                      options=bytes([ipv4.OPT_TS, 12, 5, 1]) + bytes(8)),
           ipv4.build(SRC, DST, ipv4.PROTO_ICMP, echo, options=b"\x01\x01\x94\x04\x00\x00"),
           ipv4.build(SRC, DST, udp.PROTO, udp.build(SRC, DST, 5000, 9, b"x" * 20)),
           ipv4.build(SRC, DST, udp.PROTO, udp.build(SRC, DST, 53, 33000, _dns_messages()[1])),
           ipv4.build(SRC, DST, udp.PROTO, udp.build(SRC, DST, 67, 68, _dhcp_messages()[0]))]
    for seg in _segments():
        out.append(ipv4.build(SRC, DST, tcp.PROTO, seg))
    big = udp.build(SRC, DST, 5000, 9, bytes(range(256)) * 8)
    for off in range(0, len(big), 512):
        piece = big[off:off + 512]
        mf = ipv4.MF if off + len(piece) < len(big) else 0
        out.append(ipv4.build(SRC, DST, udp.PROTO, piece, ident=77, flags_frag=mf | off >> 3))
    inner = ipv4.build(DST, SRC, tcp.PROTO, _segments()[1])[:28]
    for t, c, rest in ((3, 4, 1400), (3, 3, 0), (11, 0, 0), (12, 0, 20 << 24), (5, 1, 0)):
        out.append(ipv4.build(SRC, DST, ipv4.PROTO_ICMP, icmp4.build(t, c, rest, inner)))
    return out


def _with(flags: int, items: list[bytes]) -> list[bytes]:
    return [bytes([flags]) + x for x in items]


def _vnet_seeds() -> list[bytes]:
    frame = _frames()[4]
    return [tap.build_vnet() + frame,
            tap.build_vnet(csum_start=34, csum_offset=16) + frame,
            tap.build_vnet(tap.VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16, 54) + frame]


def _stack_seeds() -> list[bytes]:
    from fuzz.world import World
    seeds = []
    for variant in (0, 1):
        seeds += World(variant, record=True).seeds()
    # Hand-built frames to the victim, with checksums completed and (flag 2)
    # moved onto the live connection / query / DHCP exchange.
    from fuzz import world
    for frame in _frames():
        f = bytearray(frame)
        f[0:6] = world.VICTIM_MAC
        f[6:12] = world.ATTACKER_MAC
        seeds.append(bytes([4]) + bytes(f))
        seeds.append(bytes([6]) + bytes(f))
        seeds.append(bytes([6 | 0x10]) + bytes(f))
        seeds.append(bytes([6 | 0x20]) + bytes(f))      # with data in flight
    # ACKs and SACKs (relative to snd_una) for data in flight on the live connection.
    for ack, blocks in ((1460, ()), (0, ((1460, 2920),)), (0, ((1460, 2920), (4380, 5840))),
                        (2920, ()), (0, ())):
        seg = tcp.build(world.PEER_IP, world.VICTIM_IP, 80, 1, 0, ack, tcp.ACK, 60000,
                        options=tcp.build_options(sack_blocks=blocks) if blocks else b"")
        f = ethernet.build(world.VICTIM_MAC, world.PEER_MAC, ethernet.ETH_IPV4,
                           ipv4.build(world.PEER_IP, world.VICTIM_IP, tcp.PROTO, seg))
        seeds.append(bytes([6 | 0x20]) + f)
    # Queries for the victim's DNS responder and DHCP server.
    vic, att = world.VICTIM_IP, world.ATTACKER_IP
    for q in (dns.build_query(7, "www.fuzz", dns.A), dns.build_query(8, "web.fuzz", dns.AAAA),
              dns.build_query(9, "1.2.0.192.in-addr.arpa", dns.PTR)):
        seeds.append(bytes([4]) + ethernet.build(
            world.VICTIM_MAC, world.ATTACKER_MAC, ethernet.ETH_IPV4,
            ipv4.build(att, vic, udp.PROTO, udp.build(att, vic, 5353, 53, q))))
    for msg in _dhcp_messages()[-1:] + [dhcp.build(
            dhcp.BOOTREQUEST, 0x99, MAC_A, [(dhcp.OPT_MESSAGE_TYPE, bytes([dhcp.REQUEST])),
                                            (dhcp.OPT_REQUESTED_IP, bytes([192, 0, 2, 100])),
                                            (dhcp.OPT_SERVER_ID, vic)])]:
        zero, bc = bytes(4), b"\xff" * 4
        seeds.append(bytes([4]) + ethernet.build(
            ethernet.BROADCAST, MAC_A, ethernet.ETH_IPV4,
            ipv4.build(zero, bc, udp.PROTO, udp.build(zero, bc, 68, 67, msg))))
    # ICMP errors quoting the live connection (flag 2 rewrites the quote).
    for f in _frames():
        if f[23] == ipv4.PROTO_ICMP and f[34] in (3, 11, 12):
            g = bytearray(f)
            g[0:6], g[6:12] = world.VICTIM_MAC, world.PEER_MAC
            g[26:30] = world.PEER_IP
            g[66:70] = bytes(4)          # the quoted seq: snd_una + 0 once adapted
            seeds.append(bytes([6]) + bytes(g))
    bcast = bytearray(ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4, _ip_packets()[6]))
    bcast[0:6] = ethernet.BROADCAST
    seeds.append(bytes([7]) + bytes(bcast))
    return seeds


def _prepare_world() -> None:
    from fuzz.world import prepare
    prepare()


def _run_stack(data: bytes) -> str | None:
    from fuzz.world import current
    return current().run(data)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ethernet", _ethernet, lambda: _with(1, _frames()[:-1]) + _with(10, _frames()[-1:])
           + _with(1, targets6.frames6()[:4]),
           "ethernet.parse (byte 0: VLAN configured or not)"),
    Target("arp", _arp, lambda: [arp.build(arp.REQUEST, MAC_A, SRC, bytes(6), DST),
                                 arp.build(arp.REPLY, MAC_A, SRC, MAC_B, DST)],
           "arp.parse"),
    Target("ipv4", _ipv4, lambda: _with(1, _ip_packets()) + _with(3, _ip_packets()[1:4]),
           "ipv4.parse with options (byte 0: fix/skip the header checksum)"),
    Target("ipv4_options", _ipv4_options,
           lambda: [p[20:(p[0] & 15) * 4] for p in _ip_packets()[1:4]],
           "ipv4.check_options"),
    Target("icmp4", _icmp4,
           lambda: _with(1, [p[20:] for p in _ip_packets() if p[9] == ipv4.PROTO_ICMP]),
           "icmp4.parse (the quoted header of an error is the stack's: see stack)"),
    Target("igmp", _igmp, lambda: _with(1, _igmp_messages()),
           "igmp.parse: v1/v2/v3 queries, v1/v2 reports, v2 leaves, v3 reports"),
    Target("udp", _udp, lambda: _with(1, [p[20:] for p in _ip_packets() if p[9] == udp.PROTO
                                          and not p[6:8].hex().strip("0")]),
           "udp.parse with the pseudo-header checksum"),
    Target("tcp", _tcp, lambda: _with(1, _segments()), "tcp.parse and tcp.parse_options"),
    Target("tcp_options", _tcp_options, lambda: [s[20:(s[12] >> 4) * 4] for s in _segments()],
           "tcp.parse_options"),
    Target("dns", _dns, lambda: _with(0, _dns_messages()) + _with(1, _dns_messages()[3:4])
           + _with(2, [bytes([12]) + m for m in _dns_messages()[1:2]]),
           "dns.parse, dns.parse_head and dns.read_name"),
    Target("dhcp", _dhcp, lambda: _with(0, _dhcp_messages())
           + _with(1, [dhcp.encode_domain_search(["example", "lab.example", "a.lab.example"])]),
           "dhcp.parse (options, overload, domain search)"),
    Target("vnet", _vnet, _vnet_seeds, "phy.tap.parse_vnet"),
    Target("gro", _gro, _gro_seeds, "stack.gro.coalesce over a read batch (software GRO)"),
    Target("stack", _run_stack, _stack_seeds,
           "Stack.receive with a live TCP connection, a listener, a DNS query in flight "
           "and a DHCP client (fuzz/world.py)", before=_prepare_world),
    # IPv6 (fuzz/targets6.py, fuzz/world6.py).
    Target("ipv6", targets6.run_ipv6, targets6.ipv6_seeds,
           "ipv6.parse, parse_quote, check_addresses (byte 0: fix the payload length)"),
    Target("ipv6ext", targets6.run_ipv6ext, targets6.ipv6ext_seeds,
           "ipv6ext.walk (options TLVs, Routing, Fragment), skip_chain, read_options"),
    Target("icmp6", targets6.run_icmp6, targets6.icmp6_seeds,
           "icmp6.parse (checksum), parse_quote, no_error_about, err_convert"),
    Target("ndp", targets6.run_ndp, targets6.ndp_seeds,
           "ndp.parse: RS, RA, NS, NA, Redirect and every option (SLLA, TLLA, Prefix, "
           "MTU, Redirected Header, Nonce, RDNSS, DNSSL)"),
    Target("mld", targets6.run_mld, targets6.mld_seeds,
           "mld.parse and check_ip: MLDv1/v2 queries, v1 reports/done, v2 reports"),
    Target("stack6", targets6.run_stack6, targets6.stack6_seeds,
           "Stack.receive over IPv6: link-local and SLAAC addresses, a TCP connection with "
           "data in flight, a listener, a UDP socket, a pending neighbour resolution, a "
           "reassembly and a DNS AAAA query in flight (fuzz/world6.py)",
           before=targets6.prepare_world6),
)}
