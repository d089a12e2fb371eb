"""The per-destination output cache of both families (route, source, neighbour MAC, Ethernet
header) never outlives what it was made from: a route, address, MTU, device or
ARP change takes effect on the very next datagram, and a neighbour whose
reachability is stale is re-checked exactly as without the cache."""

from __future__ import annotations

from femtotcp.phy.base import Device
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes

OUR_MAC = mac_bytes("02:00:00:00:00:02")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
GW2_IP = ip_bytes("192.0.2.254")
FAR_IP = ip_bytes("198.51.100.7")
MAC_A = mac_bytes("02:00:00:00:00:0a")
MAC_B = mac_bytes("02:00:00:00:00:0b")


class Recorder(Device):
    def __init__(self, name: str = "rec") -> None:
        super().__init__(name, 1500)
        self.frames: list[bytes] = []

    def _transmit(self, frame: bytes) -> None:
        self.frames.append(frame)


def setup() -> tuple[SimLoop, Stack, Recorder]:
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("cache", modules={"ipv4", "arp", "udp", "icmp4"})
    stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    learn(stack, PEER_IP, MAC_A)
    return loop, stack, dev


def learn(stack: Stack, ip: bytes, mac: bytes) -> None:
    """The neighbour asks for us: we learn its MAC (RFC 826 merge)."""
    iface = stack.interfaces[0]
    stack.receive(iface, ethernet.build(ethernet.BROADCAST, mac, ethernet.ETH_ARP,
                                        arp.build(arp.REQUEST, mac, ip, b"\0" * 6, OUR_IP)))


def last_ip(dev: Recorder) -> tuple[ethernet.EthernetHeader, ipv4.Ipv4Header]:
    frame = dev.frames[-1]
    eth, body = ethernet.parse(frame)
    assert eth.ethertype == ethernet.ETH_IPV4
    return eth, ipv4.parse(body)[0]


def send(stack: Stack, dst: bytes, size: int = 100, src: bytes | None = None) -> int:
    return int(stack.ip_output(dst, 17, bytes(size), src=src))


def test_repeated_sends_are_identical_to_the_first() -> None:
    _, stack, dev = setup()
    dev.frames.clear()
    for _ in range(3):
        assert send(stack, PEER_IP) == 0
    eths = [ethernet.parse(f)[0] for f in dev.frames]
    assert len(eths) == 3 and all(e.dst == MAC_A and e.src == OUR_MAC for e in eths)
    idents = [ipv4.parse(ethernet.parse(f)[1])[0].ident for f in dev.frames]
    assert idents[1] == (idents[0] + 1) & 0xFFFF and idents[2] == (idents[1] + 1) & 0xFFFF
    assert stack.counters["ipv4.tx"] == 3
    assert PEER_IP in stack.destinations        # the later ones went through the cache


def test_new_neighbour_mac_is_used_at_once() -> None:
    _, stack, dev = setup()
    send(stack, PEER_IP)
    send(stack, PEER_IP)
    learn(stack, PEER_IP, MAC_B)
    send(stack, PEER_IP)
    assert last_ip(dev)[0].dst == MAC_B


def test_route_change_is_followed() -> None:
    _, stack, dev = setup()
    learn(stack, GW2_IP, MAC_B)
    stack.add_route("198.51.100.0/24", gateway="192.0.2.1")
    send(stack, FAR_IP)
    send(stack, FAR_IP)
    assert last_ip(dev)[0].dst == MAC_A
    stack.remove_route("198.51.100.0/24")
    stack.add_route("198.51.100.0/24", gateway="192.0.2.254")
    send(stack, FAR_IP)
    assert last_ip(dev)[0].dst == MAC_B
    stack.remove_route("198.51.100.0/24")
    n = len(dev.frames)
    assert send(stack, FAR_IP) != 0 and len(dev.frames) == n     # no route any more


def test_address_change_changes_the_source() -> None:
    _, stack, dev = setup()
    send(stack, PEER_IP)
    send(stack, PEER_IP)
    assert last_ip(dev)[1].src == OUR_IP
    iface = stack.interfaces[0]
    stack.remove_address(iface, OUR_IP)
    stack.add_address(iface, "192.0.2.3/24")
    send(stack, PEER_IP)
    assert last_ip(dev)[1].src == ip_bytes("192.0.2.3")


def test_explicit_other_source_is_respected() -> None:
    _, stack, dev = setup()
    stack.add_address(stack.interfaces[0], "192.0.2.9/24")
    send(stack, PEER_IP, src=OUR_IP)
    send(stack, PEER_IP, src=ip_bytes("192.0.2.9"))
    assert last_ip(dev)[1].src == ip_bytes("192.0.2.9")


def test_mtu_change_fragments_again() -> None:
    _, stack, dev = setup()
    send(stack, PEER_IP, 1400)
    send(stack, PEER_IP, 1400)
    stack.interfaces[0].mtu = 576
    dev.frames.clear()
    send(stack, PEER_IP, 1400)
    assert len(dev.frames) == 3 and all(len(f) <= 576 + 14 for f in dev.frames)


def test_swapped_device_gets_the_frames() -> None:
    _, stack, dev = setup()
    send(stack, PEER_IP)
    send(stack, PEER_IP)
    other = Recorder("other")
    stack.interfaces[0].device = other
    send(stack, PEER_IP)
    assert len(other.frames) == 1


def test_stale_neighbour_is_rechecked() -> None:
    loop, stack, dev = setup()
    send(stack, PEER_IP)
    send(stack, PEER_IP)
    loop.run(duration=stack.config.arp_reachable + 1)
    dev.frames.clear()
    send(stack, PEER_IP)
    kinds = [ethernet.parse(f)[0].ethertype for f in dev.frames]
    assert ethernet.ETH_IPV4 in kinds and ethernet.ETH_ARP in kinds   # sent, and re-probed
    arp_req = next(f for f in dev.frames if ethernet.parse(f)[0].ethertype == ethernet.ETH_ARP)
    assert ethernet.parse(arp_req)[0].dst == MAC_A                   # unicast probe


def test_forgotten_neighbour_is_resolved_again() -> None:
    _, stack, dev = setup()
    send(stack, PEER_IP)
    send(stack, PEER_IP)
    stack.arp.caches[stack.interfaces[0]].clear()
    dev.frames.clear()
    send(stack, PEER_IP)
    assert [ethernet.parse(f)[0].ethertype for f in dev.frames] == [ethernet.ETH_ARP]
    assert ethernet.parse(dev.frames[0])[0].dst == ethernet.BROADCAST


def test_broadcast_and_local_never_use_the_cache() -> None:
    _, stack, dev = setup()
    for _ in range(2):
        send(stack, ip_bytes("192.0.2.255"))
    assert last_ip(dev)[0].dst == ethernet.BROADCAST
    n = len(dev.frames)
    for _ in range(2):
        send(stack, OUR_IP)
    assert len(dev.frames) == n                 # delivered locally, never on the wire


# -- IPv6: the same cache (stack/destination.py) ------------------------------------------
OUR6 = ip_bytes("2001:db8::2")
PEER6 = ip_bytes("2001:db8::1")
ROUTER6 = ip_bytes("fe80::fe")
FAR6 = ip_bytes("2001:db8:99::7")


def setup6() -> tuple[SimLoop, Stack, Recorder]:
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("cache6", modules={"ipv4", "arp", "udp", "icmp4", "ipv6", "icmp6"})
    stack.config.ipv6_dad = False
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    assert stack.ipv6 is not None
    stack.ipv6.add_address(iface, OUR6, 64)
    advertise(stack, PEER6, MAC_A)
    return loop, stack, dev


def frame6(src: bytes, dst: bytes, payload: bytes) -> bytes:
    from femtotcp.wire import ipv6
    return ethernet.build(OUR_MAC, MAC_A, ethernet.ETH_IPV6,
                          ipv6.build(src, dst, ipv6.PROTO_ICMP6, payload, 255))


def advertise(stack: Stack, ip: bytes, mac: bytes) -> None:
    """We solicit ``ip`` and it answers (a solicited NA: REACHABLE)."""
    from femtotcp.wire import ndp
    send(stack, ip, 10)
    na = ndp.build_na(ip, OUR6, ip, solicited=True, target_lladdr=mac)
    stack.receive(stack.interfaces[0], frame6(ip, OUR6, na))


def sent6(dev: Recorder) -> list[tuple[ethernet.EthernetHeader, object, bytes]]:
    from femtotcp.wire import ipv6
    out = []
    for f in dev.frames:
        eth, body = ethernet.parse(f)
        if eth.ethertype == ethernet.ETH_IPV6:
            h, payload = ipv6.parse(body)
            out.append((eth, h, bytes(payload)))
    return out


def test_ipv6_repeated_sends_use_the_shared_cache() -> None:
    _, stack, dev = setup6()
    dev.frames.clear()
    for _ in range(3):
        assert send(stack, PEER6) == 0
    assert PEER6 in stack.destinations
    frames = sent6(dev)
    assert len(frames) == 3 and all(e.dst == MAC_A and e.src == OUR_MAC and h.src == OUR6
                                    for e, h, _ in frames)     # type: ignore[attr-defined]
    assert stack.counters["ipv6.tx"] == 4       # and the one that resolved the neighbour


def test_ipv6_stale_neighbour_goes_through_nud() -> None:
    """A REACHABLE entry past its reachable time is STALE: the next datagram
    takes the full path, which starts DELAY and then probes by unicast NS."""
    loop, stack, dev = setup6()
    send(stack, PEER6)
    send(stack, PEER6)
    assert stack.ipv6 is not None
    loop.run(duration=stack.ipv6.ndp.reachable + 1)
    send(stack, PEER6)
    (entry,) = [e for e in stack.ipv6.ndp.entries() if e["address"] == "2001:db8::1"]
    assert entry["state"] == "DELAY"
    dev.frames.clear()
    loop.run(duration=stack.config.ndp_delay_first_probe + 0.5)
    probes = [e for e, h, p in sent6(dev) if p[0] == 135]
    assert probes and probes[0].dst == MAC_A             # unicast NS: PROBE


def test_ipv6_new_mac_and_packet_too_big_take_effect_at_once() -> None:
    from femtotcp.wire import icmp6, ndp
    _, stack, dev = setup6()
    send(stack, PEER6, 1400)
    send(stack, PEER6, 1400)
    # An unsolicited override NA with a new MAC: the entry is STALE, the next
    # datagram goes to the new MAC through the full path.
    na = ndp.build_na(PEER6, OUR6, PEER6, override=True, target_lladdr=MAC_B)
    stack.receive(stack.interfaces[0], frame6(PEER6, OUR6, na))
    dev.frames.clear()
    send(stack, PEER6, 1400)
    assert sent6(dev)[0][0].dst == MAC_B
    # Packet Too Big for a 1400-byte datagram: the next one is fragmented. The
    # quoted datagram must be from a bound port (a UDP endpoint's), or ICMPv6
    # leaves the path MTU alone (nobody here sent it).
    assert stack.udp is not None
    port = stack.udp.open(bytes(16), 0).local[1]
    invoking = bytearray(dev.frames[0][14:])
    invoking[40:42] = port.to_bytes(2, "big")
    ptb = icmp6.build_packet_too_big(PEER6, OUR6, 1280, bytes(invoking))
    stack.receive(stack.interfaces[0], ethernet.build(OUR_MAC, MAC_B, ethernet.ETH_IPV6,
                                                      _ipv6(PEER6, OUR6, ptb)))
    assert PEER6 not in stack.destinations
    dev.frames.clear()
    send(stack, PEER6, 1400)
    assert len(sent6(dev)) == 2 and all(len(f) <= 1280 + 14 for f in dev.frames)


def _ipv6(src: bytes, dst: bytes, icmp: bytes) -> bytes:
    from femtotcp.wire import ipv6
    return ipv6.build(src, dst, ipv6.PROTO_ICMP6, icmp, 64)


def test_ipv6_route_and_address_changes_are_followed() -> None:
    from femtotcp.stack.routes import Route
    _, stack, dev = setup6()
    assert stack.ipv6 is not None
    iface = stack.interfaces[0]
    stack.ipv6.routes.add(Route(0, 0, PEER6, iface, "static", 128))
    send(stack, FAR6)
    send(stack, FAR6)
    assert FAR6 in stack.destinations
    advertise(stack, ROUTER6, MAC_B)
    stack.ipv6.routes.add(Route(0, 0, ROUTER6, iface, "static", 128))
    dev.frames.clear()
    send(stack, FAR6)
    assert sent6(dev)[-1][0].dst == MAC_B
    stack.ipv6.add_address(iface, ip_bytes("2001:db8:99::2"), 64)
    dev.frames.clear()
    send(stack, FAR6)
    assert sent6(dev)[-1][1].src == ip_bytes("2001:db8:99::2")   # type: ignore[attr-defined]
