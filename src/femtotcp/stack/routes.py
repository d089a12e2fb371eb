"""Routing tables: longest-prefix match over a short list. One table per
family (``Stack.routes`` for IPv4, ``Ipv6.routes``); a route's ``width`` is its
address size in bits (32 or 128)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from femtotcp.wire import ip_str

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface


@dataclass(slots=True)
class Route:
    network: int
    prefixlen: int
    gateway: bytes | None
    iface: Interface
    origin: str = "static"       # static | connected | dhcp | ra | redirect
    width: int = 32              # address bits: 32 (IPv4) or 128 (IPv6)

    @property
    def mask(self) -> int:
        full = (1 << self.width) - 1
        return (full << (self.width - self.prefixlen)) & full if self.prefixlen else 0

    def matches(self, dst: int) -> bool:
        return (dst & self.mask) == self.network

    def describe(self) -> dict[str, object]:
        return {
            "destination": f"{ip_str(self.network.to_bytes(self.width // 8, 'big'))}"
                           f"/{self.prefixlen}",
            "gateway": ip_str(self.gateway) if self.gateway else None,
            "interface": self.iface.name,
            "origin": self.origin,
        }


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []   # kept sorted, longest prefix first
        self._cache: dict[bytes, Route | None] = {}
        #: Changes with every change to the table (what the per-destination
        #: output cache checks, instead of a lookup per datagram).
        self.version = 0

    def add(self, route: Route) -> None:
        self.remove(route.network, route.prefixlen, route.iface)
        self.routes.append(route)
        self.routes.sort(key=lambda r: -r.prefixlen)
        self._cache.clear()
        self.version += 1

    def remove(self, network: int, prefixlen: int, iface: Interface | None = None,
               origin: str | None = None) -> bool:
        before = len(self.routes)
        self.routes = [r for r in self.routes
                       if not (r.network == network and r.prefixlen == prefixlen
                               and (iface is None or r.iface is iface)
                               and (origin is None or r.origin == origin))]
        self._cache.clear()
        self.version += 1
        return len(self.routes) != before

    def remove_iface_origin(self, iface: Interface, origin: str) -> None:
        self.routes = [r for r in self.routes if not (r.iface is iface and r.origin == origin)]
        self._cache.clear()
        self.version += 1

    def via(self, dst: bytes, iface: Interface | None
            ) -> tuple[Route | None, Interface | None, bytes]:
        """Where a unicast datagram to ``dst`` leaves: (route, interface, next hop).
        The route's interface and its gateway (or ``dst`` on-link); a caller that
        forces an interface the route does not use sends to ``dst`` on-link there
        (SO_BINDTODEVICE, a link-scoped address). The interface is None when
        nothing leads there."""
        route = self.lookup(dst)
        if route is None or (iface is not None and route.iface is not iface):
            return route, iface, dst
        return route, route.iface, route.gateway or dst

    def lookup(self, dst: bytes) -> Route | None:
        cache = self._cache
        route = cache.get(dst)
        if route is not None or dst in cache:
            return route
        value = int.from_bytes(dst, "big")
        route = next((r for r in self.routes if r.matches(value)), None)
        if len(cache) > 4096:
            cache.clear()
        cache[dst] = route
        return route
