"""Interfaces: a device plus the stack's addresses on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from femtotcp.wire import ip_str, mac_str

if TYPE_CHECKING:
    from femtotcp.stack.device import NetDevice


@dataclass(slots=True)
class Ipv4Address:
    """One IPv4 address with its prefix; ``origin`` says how it was configured."""

    addr: bytes
    prefixlen: int
    origin: str = "static"           # static | dhcp
    tentative: bool = False          # RFC 5227 probing still running: not used yet

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF

    @property
    def network(self) -> int:
        return int.from_bytes(self.addr, "big") & self.mask

    @property
    def broadcast(self) -> bytes:
        if self.prefixlen >= 31:     # RFC 3021: /31 and /32 have no broadcast
            return b"\xff\xff\xff\xff"
        return (self.network | (~self.mask & 0xFFFFFFFF)).to_bytes(4, "big")

    def contains(self, addr: bytes) -> bool:
        return (int.from_bytes(addr, "big") & self.mask) == self.network

    def __str__(self) -> str:
        return f"{ip_str(self.addr)}/{self.prefixlen}"


@dataclass(slots=True, eq=False)
class Ipv6Address:
    """One IPv6 address (RFC 4862): its state and lifetimes. ``origin`` is
    static, link (the link-local address), slaac or temporary (RFC 8981);
    ``state`` is tentative (DAD running: not used, RFC 4862 5.4), preferred,
    deprecated (kept for existing traffic, not chosen as a source) or
    duplicate (DAD failed).
    Lifetimes are monotonic deadlines (``inf`` for ever)."""

    addr: bytes
    prefixlen: int
    origin: str = "static"
    state: str = "tentative"
    valid_until: float = float("inf")
    preferred_until: float = float("inf")
    dad_counter: int = 0             # RFC 7217 DAD_Counter of a stable-privacy address
    timer: object = None             # the lifetime timer (stack/ipv6.py)

    @property
    def usable(self) -> bool:
        return self.state == "preferred" or self.state == "deprecated"

    def __str__(self) -> str:
        return f"{ip_str(self.addr)}/{self.prefixlen}"


@dataclass(eq=False)
class Interface:
    name: str
    device: NetDevice
    mac: bytes
    mtu: int
    index: int
    vlan: int | None = None
    ipv4: list[Ipv4Address] = field(default_factory=list)
    #: IPv6 addresses (stack/ipv6.py keeps them), every state included.
    ipv6: list[Ipv6Address] = field(default_factory=list)
    #: Extra group MACs accepted (IPv6 solicited-node multicast, etc.).
    multicast_macs: set[bytes] = field(default_factory=set)

    @property
    def raw_ip(self) -> bool:
        return self.device.raw_ip

    def primary_ipv4(self) -> bytes | None:
        for a in self.ipv4:
            if not a.tentative:
                return a.addr
        return None

    def ipv4_for(self, dst: bytes) -> bytes | None:
        """The address on this interface best suited as a source towards ``dst``."""
        fallback = None
        for a in self.ipv4:
            if a.tentative:
                continue
            if a.contains(dst):
                return a.addr
            if fallback is None:
                fallback = a.addr
        return fallback

    def describe(self) -> str:
        addrs = ", ".join(str(a) for a in self.ipv4) or "no IPv4 address"
        return f"{self.name} {mac_str(self.mac)} mtu {self.mtu} {addrs}"
