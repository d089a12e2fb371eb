"""A UDP endpoint's frame template for its last IPv4 destination
(``UdpEndpoint._template``): the frames it sends are byte for byte those of the
general path (the same IP ID counter too), and it is dropped the moment a
route, an address, the neighbour, the interface, the device or the socket's
TTL/TOS changes, so everything the general path does (ARP re-probing,
fragmentation, the new source or next hop) happens as without it."""

from __future__ import annotations

from types import ModuleType

from femtolan import Recorder, arp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.proto.udp import UdpEndpoint
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes, udp
from femtotcp.wire.checksum import reference_checksum

OUR_MAC = mac_bytes("02:00:00:00:00:02")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
GW2_IP = ip_bytes("192.0.2.254")
FAR_IP = ip_bytes("198.51.100.7")
MAC_A = mac_bytes("02:00:00:00:00:0a")
MAC_B = mac_bytes("02:00:00:00:00:0b")
PORT = 7


def setup() -> tuple[SimLoop, Stack, Recorder, UdpEndpoint]:
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("tmpl", modules={"ipv4", "arp", "udp", "icmp4"})
    stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    learn(stack, PEER_IP, MAC_A)
    assert stack.udp is not None
    return loop, stack, dev, stack.udp.open(port=5000)


def learn(stack: Stack, ip: bytes, mac: bytes) -> None:
    """The neighbour asks for us: we learn its MAC (RFC 826 merge)."""
    stack.receive(stack.interfaces[0], arp_frame(arp.REQUEST, mac, ip, bytes(6), OUR_IP))


def warm(ep: UdpEndpoint, dst: bytes = PEER_IP) -> None:
    """Two datagrams in a row to ``dst``: the endpoint keeps a template."""
    for _ in range(2):
        assert ep.sendto(b"warm", dst, PORT) == 0
    assert ep._template is not None


def parsed(frame: bytes) -> tuple[ethernet.EthernetHeader, ipv4.Ipv4Header, udp.UdpHeader,
                                  bytes]:
    eth, body = ethernet.parse(frame)
    assert eth.ethertype == ethernet.ETH_IPV4
    ip, data = ipv4.parse(body)
    header, payload = udp.parse(data, ip.src, ip.dst)     # the checksum verified
    return eth, ip, header, bytes(payload)


def test_template_frames_are_the_general_paths(scapy: ModuleType) -> None:
    """Sizes from empty to the MTU, odd and even, with TTL and TOS set: the
    template's frame equals the one the general path sends with the same IP
    ID, and scapy builds the same bytes (its own checksums)."""
    _, stack, dev, ep = setup()
    ep.ttl, ep.tos = 9, 0x28
    assert stack.ipv4 is not None
    for n in (0, 1, 2, 3, 17, 447, 448, 449, 1000, 1471, 1472):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        warm(ep)
        t = ep._template
        assert ep.sendto(data, PEER_IP, PORT) == 0
        assert ep._template is t                  # sent through the template
        fast = dev.sent[-1]
        ident = parsed(fast)[1].ident
        # The same datagram through the general path (an explicit source
        # takes it), with its IP ID counter moved back by one.
        assert t is not None
        stack.ipv4.idents[t.bucket] = (ident - 1) & 0xFFFF
        assert ep.sendto(data, PEER_IP, PORT, src=OUR_IP) == 0
        assert dev.sent[-1] == fast
        eth, ip, header, payload = parsed(fast)
        assert (eth.dst, eth.src, ip.src, ip.dst, ip.ttl, ip.tos, ip.flags_frag) == \
            (MAC_A, OUR_MAC, OUR_IP, PEER_IP, 9, 0x28, ipv4.DF)   # IP_PMTUDISC_WANT
        assert (header.src_port, header.dst_port, payload) == (5000, PORT, data)
        oracle = (scapy.Ether(dst="02:00:00:00:00:0a", src="02:00:00:00:00:02")
                  / scapy.IP(src="192.0.2.2", dst="192.0.2.1", ttl=9, tos=0x28, id=ident,
                                 flags="DF")
                  / scapy.UDP(sport=5000, dport=PORT) / scapy.Raw(data))
        assert bytes(oracle) == fast


@settings(max_examples=300)
@given(data=st.binary(max_size=1472), ident=st.integers(0, 0xFFFF),
       ttl=st.integers(1, 255), tos=st.integers(0, 255),
       sport=st.integers(1, 65535).filter(lambda p: p != 5000),   # (setup holds 5000)
       dport=st.integers(1, 65535))
def test_template_checksums_match_the_wire_builders(data: bytes, ident: int, ttl: int,
                                                    tos: int, sport: int, dport: int) -> None:
    """Any payload, IP ID (the counter's wrap included), TTL, TOS and ports:
    the frame is what ``wire.ipv4.build`` and ``wire.udp.build`` make (both
    checksums, the UDP checksum's zero sent as all ones)."""
    _, stack, dev, _ = setup()
    assert stack.udp is not None and stack.ipv4 is not None
    ep = stack.udp.open(port=sport)
    ep.ttl, ep.tos = ttl, tos
    for _ in range(2):
        assert ep.sendto(b"", PEER_IP, dport) == 0
    t = ep._template
    assert t is not None
    stack.ipv4.idents[t.bucket] = (ident - 1) & 0xFFFF
    assert ep.sendto(data, PEER_IP, dport) == 0
    assert ep._template is t
    expected = ethernet.build(MAC_A, OUR_MAC, ethernet.ETH_IPV4, ipv4.build(
        OUR_IP, PEER_IP, udp.PROTO, udp.build(OUR_IP, PEER_IP, sport, dport, data), ttl, tos,
        ident, ipv4.DF))
    assert dev.sent[-1] == expected


def test_checksum_edges() -> None:
    """The two checksums' edges, made to happen: a UDP checksum that computes
    to zero is sent as all ones (RFC 768), an IPv4 header whose words sum to
    all ones carries a zero checksum, both as the wire builders make them."""
    _, stack, dev, ep = setup()
    assert stack.ipv4 is not None
    warm(ep)
    t = ep._template
    assert t is not None
    # Two bytes of data equal to the checksum over two zero bytes: the sum becomes all ones.
    c = udp.parse(udp.build(OUR_IP, PEER_IP, 5000, PORT, b"\0\0"))[0].checksum
    zero = c.to_bytes(2, "big")
    plain = ipv4.build(OUR_IP, PEER_IP, udp.PROTO, bytes(10), stack.config.ttl, 0, 0, ipv4.DF)
    ident = reference_checksum(plain[:10] + b"\0\0" + plain[12:])    # the sum then all ones
    stack.ipv4.idents[t.bucket] = (ident - 1) & 0xFFFF
    assert ep.sendto(zero, PEER_IP, PORT) == 0
    assert ep._template is t
    frame = dev.sent[-1]
    assert frame[14 + 10:14 + 12] == b"\0\0" and frame[34 + 6:34 + 8] == b"\xff\xff"
    assert frame == ethernet.build(MAC_A, OUR_MAC, ethernet.ETH_IPV4, ipv4.build(
        OUR_IP, PEER_IP, udp.PROTO, udp.build(OUR_IP, PEER_IP, 5000, PORT, zero),
        stack.config.ttl, 0, ident, ipv4.DF))


def test_ip_ids_come_from_the_general_paths_counter() -> None:
    """Datagrams through the template and through ``Stack.ip_output`` to the
    same destination take consecutive IDs from one counter."""
    _, stack, dev, ep = setup()
    warm(ep)
    ids = []
    for i in range(6):
        if i % 2:
            assert stack.ip_output(PEER_IP, udp.PROTO, udp.build(OUR_IP, PEER_IP, 1, 2, b"g"),
                                   src=OUR_IP) == 0
        else:
            assert ep.sendto(b"t", PEER_IP, PORT) == 0
        ids.append(parsed(dev.sent[-1])[1].ident)
    assert ids[1:] == [(a + 1) & 0xFFFF for a in ids[:-1]]


def test_counters_and_captures_as_the_general_path() -> None:
    _, stack, dev, ep = setup()
    seen: list[tuple[bytes, bool]] = []
    dev.add_capture(lambda frame, out: seen.append((frame, out)))
    warm(ep)
    before = (stack.counters["udp.tx"], stack.counters["ipv4.tx"], dev.counters["tx_frames"])
    for _ in range(3):
        assert ep.sendto(b"abc", PEER_IP, PORT) == 0
    after = (stack.counters["udp.tx"], stack.counters["ipv4.tx"], dev.counters["tx_frames"])
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 3, 3]
    assert seen[-3:] == [(f, True) for f in dev.sent[-3:]]


def test_only_the_last_destination_and_port() -> None:
    """Another port or destination takes the general path (and makes its own
    template once it is sent to twice in a row)."""
    _, stack, dev, ep = setup()
    learn(stack, GW2_IP, MAC_B)
    warm(ep)
    t = ep._template
    assert ep.sendto(b"x", PEER_IP, PORT + 1) == 0
    assert parsed(dev.sent[-1])[2].dst_port == PORT + 1
    t = ep._template
    assert t is not None and (t.dst, t.port) == (PEER_IP, PORT + 1)   # the same destination
    assert ep.sendto(b"y", GW2_IP, PORT) == 0
    eth, ip, header, _ = parsed(dev.sent[-1])
    assert (eth.dst, ip.dst, header.dst_port) == (MAC_B, GW2_IP, PORT)
    assert ep._template is t                    # a first datagram there: kept
    assert ep.sendto(b"z", GW2_IP, PORT) == 0
    assert ep._template is not None and ep._template.dst == GW2_IP
    assert ep.sendto(b"w", PEER_IP, PORT + 1) == 0
    eth, ip, header, _ = parsed(dev.sent[-1])
    assert (eth.dst, ip.dst, header.dst_port) == (MAC_A, PEER_IP, PORT + 1)


def test_new_neighbour_mac_is_used_at_once() -> None:
    _, stack, dev, ep = setup()
    warm(ep)
    learn(stack, PEER_IP, MAC_B)
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert parsed(dev.sent[-1])[0].dst == MAC_B


def test_route_change_is_followed() -> None:
    _, stack, dev, ep = setup()
    learn(stack, GW2_IP, MAC_B)
    stack.add_route("198.51.100.0/24", gateway="192.0.2.1")
    warm(ep, FAR_IP)
    assert parsed(dev.sent[-1])[0].dst == MAC_A
    stack.remove_route("198.51.100.0/24")
    stack.add_route("198.51.100.0/24", gateway="192.0.2.254")
    assert ep.sendto(b"x", FAR_IP, PORT) == 0
    assert parsed(dev.sent[-1])[0].dst == MAC_B
    stack.remove_route("198.51.100.0/24")
    n = len(dev.sent)
    assert ep.sendto(b"x", FAR_IP, PORT) != 0 and len(dev.sent) == n   # no route any more


def test_address_change_changes_the_source() -> None:
    _, stack, dev, ep = setup()
    warm(ep)
    iface = stack.interfaces[0]
    stack.remove_address(iface, OUR_IP)
    stack.add_address(iface, "192.0.2.3/24")
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert parsed(dev.sent[-1])[1].src == ip_bytes("192.0.2.3")


def test_ttl_and_tos_changes_are_followed() -> None:
    _, stack, dev, ep = setup()
    warm(ep)
    assert parsed(dev.sent[-1])[1].ttl == stack.config.ttl
    ep.ttl = 3
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert parsed(dev.sent[-1])[1].ttl == 3
    ep.tos = 0xB8
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert parsed(dev.sent[-1])[1].tos == 0xB8
    ep.ttl = None
    stack.config.ttl = 200
    for _ in range(3):
        assert ep.sendto(b"x", PEER_IP, PORT) == 0
        assert parsed(dev.sent[-1])[1].ttl == 200


def test_too_big_for_the_mtu_is_fragmented() -> None:
    _, stack, dev, ep = setup()
    warm(ep)
    dev.sent.clear()
    assert ep.sendto(bytes(1473), PEER_IP, PORT) == 0    # 1501 bytes of IP
    assert len(dev.sent) == 2 and stack.counters["ipv4.tx_fragments"] == 2
    warm(ep)
    stack.interfaces[0].mtu = 576
    dev.sent.clear()
    assert ep.sendto(bytes(1000), PEER_IP, PORT) == 0
    assert len(dev.sent) == 2 and all(len(f) <= 576 + 14 for f in dev.sent)


def test_swapped_device_gets_the_frames() -> None:
    _, stack, _, ep = setup()
    warm(ep)
    other = Recorder()
    stack.interfaces[0].device = other
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert len(other.sent) == 1 and parsed(other.sent[0])[3] == b"x"


def test_stale_neighbour_is_rechecked() -> None:
    loop, stack, dev, ep = setup()
    warm(ep)
    loop.run(duration=stack.config.arp_reachable + 1)
    dev.sent.clear()
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    kinds = [ethernet.parse(f)[0].ethertype for f in dev.sent]
    assert ethernet.ETH_IPV4 in kinds and ethernet.ETH_ARP in kinds   # sent, and re-probed
    arp_req = next(f for f in dev.sent if ethernet.parse(f)[0].ethertype == ethernet.ETH_ARP)
    assert ethernet.parse(arp_req)[0].dst == MAC_A                   # unicast probe


def test_forgotten_neighbour_is_resolved_again() -> None:
    _, stack, dev, ep = setup()
    warm(ep)
    assert stack.arp is not None
    stack.arp.caches[stack.interfaces[0]].clear()
    dev.sent.clear()
    assert ep.sendto(b"x", PEER_IP, PORT) == 0
    assert [ethernet.parse(f)[0].ethertype for f in dev.sent] == [ethernet.ETH_ARP]
    assert ethernet.parse(dev.sent[0])[0].dst == ethernet.BROADCAST
    learn(stack, PEER_IP, MAC_B)                 # the answer: the queued datagram leaves
    sent = [parsed(f) for f in dev.sent if ethernet.parse(f)[0].ethertype == ethernet.ETH_IPV4]
    assert [(eth.dst, data) for eth, _, _, data in sent] == [(MAC_B, b"x")]


def test_explicit_source_or_closed_endpoint_never_use_it() -> None:
    _, stack, dev, ep = setup()
    stack.add_address(stack.interfaces[0], "192.0.2.9/24")
    warm(ep)
    assert ep.sendto(b"x", PEER_IP, PORT, src=ip_bytes("192.0.2.9")) == 0
    assert parsed(dev.sent[-1])[1].src == ip_bytes("192.0.2.9")
    ep.close()
    n = len(dev.sent)
    assert ep.sendto(b"x", PEER_IP, PORT) != 0 and len(dev.sent) == n


def test_on_an_8021q_interface_the_tag_is_kept() -> None:
    """The Ethernet header with its 802.1Q tag (18 bytes) heads the
    template's frames as the general path's."""
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("tmplv", modules={"ipv4", "arp", "udp", "icmp4"})
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24", vlan=5)
    loop.add_stack(stack)
    request = arp_frame(arp.REQUEST, MAC_A, PEER_IP, bytes(6), OUR_IP)
    stack.receive(iface, request[:12] + b"\x81\x00\x00\x05" + request[12:])
    assert stack.udp is not None and stack.ipv4 is not None
    ep = stack.udp.open(port=5000)
    warm(ep)
    t = ep._template
    assert t is not None
    assert ep.sendto(b"tagged", PEER_IP, PORT) == 0
    assert ep._template is t
    fast = dev.sent[-1]
    eth, body = ethernet.parse(fast, 5)
    assert (eth.dst, eth.vlan) == (MAC_A, 5)
    ip, data = ipv4.parse(body)
    assert bytes(udp.parse(data, ip.src, ip.dst)[1]) == b"tagged"
    stack.ipv4.idents[t.bucket] = (stack.ipv4.idents[t.bucket] - 1) & 0xFFFF
    assert ep.sendto(b"tagged", PEER_IP, PORT, src=OUR_IP) == 0
    assert dev.sent[-1] == fast
