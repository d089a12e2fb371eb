"""Test helpers: an in-memory LAN of stacks on a virtual clock, and raw frame builders.

``make_lan(n)`` builds ``n`` stacks on one ``SimLoop`` and one memory ``Switch``:
stack ``i`` is 192.0.2.(i+1)/24 with MAC 02:00:00:00:00:(i+1). ``faults=dict(...)``
wraps every stack's port in a ``FaultyDevice`` (each with its own seed). A
``Sniffer`` is an extra switch port (192.0.2.254, 02:00:00:00:00:fe) that records
every frame it sees, answers ARP for its address, and injects raw frames, for
tests that speak to a stack byte by byte.

The module is imported by tests/conftest.py (which puts tests/ on sys.path) and
directly by hypothesis tests, which cannot take function-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from femtotcp.phy.base import Device
from femtotcp.phy.memory import MemoryDevice, Switch
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.interface import Interface
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, arp, ethernet, icmp4, ip_bytes, ipv4, mac_bytes, udp

SUBNET = "192.0.2."
SNIFF_IP = ip_bytes("192.0.2.254")
SNIFF_MAC = mac_bytes("02:00:00:00:00:fe")
BCAST_MAC = ethernet.BROADCAST
LIMITED_BCAST = b"\xff\xff\xff\xff"
SUBNET_BCAST = ip_bytes("192.0.2.255")


def addr(i: int) -> bytes:
    """Packed address of host ``i`` (0-based) on the test LAN."""
    return ip_bytes(f"{SUBNET}{i + 1}")


def mac(i: int) -> bytes:
    return mac_bytes(f"02:00:00:00:00:{i + 1:02x}")


# -- raw frames --------------------------------------------------------------------

class Recorder(Device):
    """A device that keeps every frame the stack sends (``sent``)."""

    def __init__(self) -> None:
        super().__init__("rec", 1500)
        self.sent: list[bytes] = []

    def _transmit(self, frame: bytes) -> None:
        self.sent.append(frame)


def arp_frame(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes,
              eth_dst: bytes = BCAST_MAC, eth_src: bytes | None = None) -> bytes:
    return ethernet.build(eth_dst, eth_src or sha, ethernet.ETH_ARP,
                          arp.build(op, sha, spa, tha, tpa))


def ip_frame(src: bytes, dst: bytes, proto: int, payload: bytes, *,
             dst_mac: bytes = b"", src_mac: bytes = SNIFF_MAC, ttl: int = 64,
             ident: int = 1, flags_frag: int = 0, options: bytes = b"") -> bytes:
    packet = ipv4.build(src, dst, proto, payload, ttl=ttl, ident=ident,
                        flags_frag=flags_frag, options=options)
    return ethernet.build(dst_mac or BCAST_MAC, src_mac, ethernet.ETH_IPV4, packet)


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, data: bytes,
              **kw: Any) -> bytes:
    return ip_frame(src, dst, udp.PROTO, udp.build(src, dst, sport, dport, data), **kw)


def echo_frame(src: bytes, dst: bytes, ident: int = 0x4242, seq: int = 1,
               data: bytes = b"ping", **kw: Any) -> bytes:
    return ip_frame(src, dst, ipv4.PROTO_ICMP,
                    icmp4.build_echo(icmp4.ECHO_REQUEST, ident, seq, data), **kw)


def fragment(src: bytes, dst: bytes, proto: int, payload: bytes, offset: int, size: int,
             more: bool | None = None, ident: int = 7, **kw: Any) -> bytes:
    """One fragment frame holding ``payload[offset:offset+size]`` (offset in bytes)."""
    piece = payload[offset:offset + size]
    if more is None:
        more = offset + len(piece) < len(payload)
    flags = (offset >> 3) | (ipv4.MF if more else 0)
    return ip_frame(src, dst, proto, piece, ident=ident, flags_frag=flags, **kw)


def fragments(src: bytes, dst: bytes, proto: int, payload: bytes, size: int = 512,
              ident: int = 7, **kw: Any) -> list[bytes]:
    """``payload`` cut into fragment frames of ``size`` bytes (a multiple of 8)."""
    return [fragment(src, dst, proto, payload, off, size, ident=ident, **kw)
            for off in range(0, len(payload), size)]


class IpFrame(NamedTuple):
    eth: ethernet.EthernetHeader
    ip: ipv4.Ipv4Header
    payload: bytes


def parse_ip(frame: bytes) -> IpFrame | None:
    """An IPv4 frame's layers, or None for anything else."""
    try:
        eth, body = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_IPV4:
            return None
        hdr, payload = ipv4.parse(body)
    except Malformed:
        return None
    return IpFrame(eth, hdr, bytes(payload))


def parse_arp(frame: bytes) -> tuple[Any, Any]:
    """(Ethernet header, ARP packet), or (None, None) for anything else."""
    try:
        eth, body = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_ARP:
            return None, None
        return eth, arp.parse(body)
    except Malformed:
        return None, None


def parse_icmp(frame: bytes) -> tuple[IpFrame, icmp4.IcmpHeader, bytes] | None:
    f = parse_ip(frame)
    if f is None or f.ip.proto != ipv4.PROTO_ICMP:
        return None
    try:
        hdr, body = icmp4.parse(f.payload)
    except Malformed:
        return None
    return f, hdr, bytes(body)


# -- the LAN -----------------------------------------------------------------------

class Sniffer:
    """A switch port that records what reaches it, answers ARP for its own
    address (so stacks can reply to it) and injects raw frames."""

    def __init__(self, switch: Switch, name: str = "sniffer", ip: bytes = SNIFF_IP,
                 mac_: bytes = SNIFF_MAC, answer_arp: bool = True) -> None:
        self.port: MemoryDevice = switch.port(name)
        self.ip = ip
        self.mac = mac_
        self.answer_arp = answer_arp
        self.frames: list[bytes] = []
        self.port.set_receiver(self._receive)

    def _receive(self, frame: bytes) -> None:
        self.frames.append(frame)
        if not self.answer_arp:
            return
        _, req = parse_arp(frame)
        if req is not None and req.op == arp.REQUEST and req.tpa == self.ip \
                and req.spa != b"\0\0\0\0":
            self.port.send(arp_frame(arp.REPLY, self.mac, self.ip, req.sha, req.spa,
                                     eth_dst=req.sha))

    def inject(self, frame: bytes) -> None:
        self.port.send(frame)

    def clear(self) -> None:
        self.frames.clear()

    def ip_frames(self, pred: Callable[[IpFrame], bool] = lambda f: True) -> list[IpFrame]:
        out = []
        for frame in self.frames:
            f = parse_ip(frame)
            if f is not None and pred(f):
                out.append(f)
        return out

    def arps(self) -> list[tuple[ethernet.EthernetHeader, arp.ArpPacket]]:
        return [a for a in (parse_arp(f) for f in self.frames) if a[0] is not None]

    def icmps(self, type_: int | None = None,
              code: int | None = None) -> list[tuple[IpFrame, icmp4.IcmpHeader, bytes]]:
        out = []
        for frame in self.frames:
            got = parse_icmp(frame)
            if got is None:
                continue
            if type_ is not None and got[1].type != type_:
                continue
            if code is not None and got[1].code != code:
                continue
            out.append(got)
        return out


@dataclass
class Lan:
    loop: SimLoop
    switch: Switch
    stacks: list[Stack] = field(default_factory=list)
    ifaces: list[Interface] = field(default_factory=list)
    devices: list[Any] = field(default_factory=list)

    def add_stack(self, i: int, *, config: StackConfig | None = None,
                  modules: Iterable[str] | None = None, faults: dict[str, Any] | None = None,
                  ip: str | None = None, mtu: int | None = None, start: bool = True,
                  seed: int = 0) -> Stack:
        stack = Stack(name=f"h{i}", modules=modules, config=config or StackConfig())
        dev: Any = self.switch.port(f"h{i}")
        if faults:
            from femtotcp.phy.faulty import FaultyDevice
            dev = FaultyDevice(dev, self.loop, seed=seed * 1000 + i, **faults)
        iface = stack.add_interface(dev, mac=mac(i), ipv4=ip or f"{SUBNET}{i + 1}/24",
                                    mtu=mtu)
        self.loop.add_stack(stack)
        if start:
            stack.start()
        self.stacks.append(stack)
        self.ifaces.append(iface)
        self.devices.append(dev)
        return stack

    def capture(self, i: int, outbound: bool = True) -> list[bytes]:
        """Every frame stack ``i`` sends (or receives, with ``outbound=False``)."""
        frames: list[bytes] = []
        self.devices[i].add_capture(
            lambda frame, out: frames.append(frame) if out == outbound else None)
        return frames

    def sniffer(self, name: str = "sniffer", **kw: Any) -> Sniffer:
        return Sniffer(self.switch, name, **kw)

    def run(self, duration: float) -> None:
        self.loop.run(duration=duration)

    def run_until(self, pred: Callable[[], bool], timeout: float = 30.0) -> bool:
        return self.loop.run_until(pred, timeout)


def resolve(lan: Lan, i: int, j: int) -> None:
    """Make stacks ``i`` and ``j`` know each other's MAC (one ping), so a test
    of something else does not depend on ARP's pending queue."""
    replies: list[Any] = []
    ep = lan.stacks[i].icmp.ping(addr(j), replies.append)
    if not lan.run_until(lambda: bool(replies), 10):
        raise AssertionError(f"host {i} could not ping host {j}")
    ep.close()


def make_lan(n: int = 2, *, config: StackConfig | None = None,
             modules: Iterable[str] | None = None, faults: dict[str, Any] | None = None,
             mtu: int | None = None, start: bool = True, seed: int = 0,
             settle: bool = True) -> Lan:
    """``n`` stacks on one switch; with ``settle`` the start-up ARP traffic is
    delivered before returning (virtual time does not move)."""
    loop = SimLoop()
    lan = Lan(loop, Switch(loop))
    for i in range(n):
        lan.add_stack(i, config=config, modules=modules, faults=faults, mtu=mtu,
                      start=start, seed=seed)
    if settle:
        loop.run(duration=0)
    return lan
