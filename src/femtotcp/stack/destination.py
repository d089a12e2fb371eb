"""The per-destination output cache both IP families share (``Stack.destinations``).

An entry is what the full output path worked out for a unicast destination:
its route, the interface and source address, the neighbour and its MAC, the
prebuilt Ethernet header and the MTU. ``Ipv4.output`` and ``Ipv6.output``
look a destination up first (one dict probe; addresses of 4 and 16 bytes
never collide) and, on a hit, build one header and make one ``device.send``.

An entry is never trusted: every use checks it against the live objects it
was made from, each of which is *replaced* (or versioned) on a change, so a
cheap test notices any change on the very next datagram: the family's route table
(its ``version`` moves with every change), the address set (``Stack.local_addresses`` is rebuilt by ``addresses_changed``), the
neighbour entry (still the one in its cache, with the same ``mac`` object),
the interface's MAC and MTU. The neighbour must need no state change to be
used (``Neighbour.sendable``: REACHABLE and confirmed within the table's
``reachable`` time, or already being probed), so NUD and ARP's re-probing
run exactly as without the cache. A path MTU that drops (ICMPv6 Packet Too
Big, an RA's MTU option) forgets the entries it concerns; a datagram larger
than the entry's MTU takes the full path (which fragments or refuses it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from femtotcp.stack.neighbour import REACHABLE, STALE
from femtotcp.wire import ethernet

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.neighbour import Neighbour, NeighbourTable
    from femtotcp.stack.routes import Route, RouteTable
    from femtotcp.stack.stack import Stack

#: Destinations remembered (the table is cleared when full: entries are cheap
#: to make again, and a scan of thousands would cost more than it saves).
MAX_DESTINATIONS = 1024


class Destination(NamedTuple):
    """One entry: what output found for a destination, and what it was made from."""

    routes: RouteTable          # the family's table the route came from
    version: int                # routes.version when made
    route: Route
    addrs: set[bytes]           # stack.local_addresses when made (replaced on change)
    iface: Interface
    src: bytes
    src_mac: bytes              # iface.mac when made
    if_mtu: int                 # iface.mtu when made
    mtu: int                    # the path MTU when made (<= if_mtu)
    neighbours: NeighbourTable  # ARP or neighbour discovery
    cache: dict[bytes, Neighbour]   # the neighbour's per-interface cache
    neigh: Neighbour
    mac: bytes                  # neigh.mac when made (replaced when re-learned)
    eth: bytes                  # the Ethernet header (802.1Q tag included)


class DestinationCache:
    """The entries of one stack, for both families."""

    __slots__ = ("stack", "timers", "entries")

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.timers = stack.timers      # the stack's clock, one load fewer per hit
        self.entries: dict[bytes, Destination] = {}

    def get(self, dst: bytes, size: int) -> Destination | None:
        """The entry for ``dst`` if everything it was made from still holds
        and a datagram of ``size`` bytes (IP header included) fits its MTU;
        else None, and an entry that no longer holds is dropped."""
        d = self.entries.get(dst)
        if d is None:
            return None
        # One unpacking instead of a dozen attribute loads (the per-segment path).
        (routes, version, _route, addrs, iface, _src, src_mac, if_mtu, mtu, neighbours, cache,
         nb, mac, _eth) = d
        stack = self.stack
        now = self.timers.now
        state = nb.state
        if routes.version == version and stack.local_addresses is addrs and \
                nb.mac is mac and cache.get(nb.ip) is nb and iface.mac is src_mac and \
                iface.mtu == if_mtu and size <= mtu and state != STALE and (
                    state != REACHABLE or now - nb.confirmed <= neighbours.reachable):
            nb.used = now
            return d
        del self.entries[dst]
        return None

    def remember(self, dst: bytes, routes: RouteTable, route: Route, iface: Interface,
                 src: bytes, mtu: int, neighbours: NeighbourTable, next_hop: bytes,
                 ethertype: int) -> None:
        """After a unicast datagram to ``dst`` left through ``route`` and the
        neighbour ``next_hop``: an entry, when that neighbour is resolved and
        usable as it is (the caller has checked that ``dst`` is a unicast
        address not ours and ``src`` one of ours)."""
        cache = neighbours.caches.get(iface)
        n = cache.get(next_hop) if cache is not None else None
        if cache is None or n is None or n.mac is None or \
                not n.sendable(self.stack.timers.now, neighbours.reachable):
            return
        entries = self.entries
        if len(entries) >= MAX_DESTINATIONS:
            entries.clear()
        entries[dst] = Destination(routes, routes.version, route, self.stack.local_addresses,
                                   iface, src,
                                   iface.mac, iface.mtu, mtu, neighbours, cache, n, n.mac,
                                   ethernet.build(n.mac, iface.mac, ethertype, b"", iface.vlan))

    def forget(self, dst: bytes) -> None:
        self.entries.pop(dst, None)

    def forget_interface(self, iface: Interface) -> None:
        """Every entry through ``iface`` (its link MTU changed)."""
        for dst in [k for k, d in self.entries.items() if d.iface is iface]:
            del self.entries[dst]

    def __contains__(self, dst: bytes) -> bool:
        return dst in self.entries

    def __len__(self) -> int:
        return len(self.entries)
