"""The IPv4 output cache (per destination: route, source, neighbour MAC, Ethernet
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
    assert PEER_IP in stack.ipv4._fast          # the later ones went through the cache


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
