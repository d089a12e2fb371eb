"""Neighbour discovery (RFC 4861) and the address autoconfiguration it drives
(RFC 4862): the IPv6 neighbour cache, DAD, router discovery, SLAAC, redirects.

The cache is ARP's (``stack/neighbour.py``: one dict per interface of
``Neighbour`` entries, the same bounds and aging, the same ``stale`` rule) with
RFC 4861 7.3.2's states: INCOMPLETE (multicast solicitations, then failure),
REACHABLE (confirmed within ``ndp_reachable`` seconds), STALE (used but not
confirmed), DELAY (used while STALE: wait ``ndp_delay_first_probe`` for
upper-layer confirmation) and PROBE (unicast solicitations, then removal).

Every ND message was validated by ``wire.ndp.parse`` (hop limit 255, code 0,
lengths, options); what needs state is here: a Redirect is taken only from
the router we use for its destination, for an on-link target; an RA's prefix
makes an address only for a /64 (with a stable-privacy IID, RFC 7217); the
lifetime of an existing SLAAC address is lowered only as RFC 4862 5.5.3 e)
allows.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from femtotcp.core.timers import Timer
from femtotcp.stack.neighbour import (
    DELAY,
    INCOMPLETE,
    PROBE,
    REACHABLE,
    STALE,
    Neighbour,
    NeighbourTable,
)
from femtotcp.stack.routes import Route
from femtotcp.wire import ethernet, ip_str, mac_str
from femtotcp.wire import ipv6 as wire
from femtotcp.wire import ndp as wire_ndp

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface, Ipv6Address
    from femtotcp.stack.ipv6 import Ipv6
    from femtotcp.stack.stack import Stack
    from femtotcp.wire.icmp6 import Icmp6Header

log = logging.getLogger("femtotcp.ndp")

MAX_RTR_SOLICITATION_DELAY = 1.0   # RFC 4861 10
TWO_HOURS = 7200.0                 # RFC 4862 5.5.3 e)
MAX_REDIRECTS = 256                # host routes learned from redirects
MAX_ROUTERS = 16                   # default router list
MAX_PREFIXES = 64                  # on-link prefixes and SLAAC addresses from RAs
MAX_DNS = 8                        # RDNSS servers remembered
MAX_TEMPORARY = 4                  # temporary addresses per prefix (RFC 8981)
REGEN_ADVANCE = 5.0                # RFC 8981 3.8: 2 + 3 retries x 1 probe x 1 s
MAX_DESYNC_FACTOR = 0.4            # of the temporary preferred lifetime (RFC 8981 3.8)
INF = float("inf")


class _Dad:
    __slots__ = ("entry", "nonce", "sent", "timer")

    def __init__(self, entry: Ipv6Address) -> None:
        self.entry = entry
        self.nonce = os.urandom(6)
        self.sent = 0
        self.timer: Timer | None = None


def _uniform(high: float) -> float:
    """A random delay in [0, high) (os.urandom: no OpenSSL behind ``secrets``)."""
    return high * (int.from_bytes(os.urandom(4), "big") % 1_000_000) / 1_000_000


class Ndp(NeighbourTable):
    prefix = "ndp"

    def __init__(self, stack: Stack, ipv6: Ipv6) -> None:
        super().__init__(stack)
        self.ipv6 = ipv6
        cfg = stack.config
        self.dad: dict[tuple[Interface, bytes], _Dad] = {}
        #: Default router list: (interface, router address) -> expiry.
        self.routers: dict[tuple[Interface, bytes], float] = {}
        #: On-link prefixes from RAs: (interface, prefix, length) -> expiry.
        self.prefixes: dict[tuple[Interface, bytes, int], float] = {}
        #: RDNSS servers (RFC 8106): address -> expiry; DNSSL domains likewise. The
        #: resolver reads the unexpired ones (``current_servers``, ``current_search``).
        self.dns_servers: dict[bytes, float] = {}
        self.dns_domains: dict[str, float] = {}
        #: RFC 8981 DESYNC_FACTOR: chosen once per stack.
        self._desync = _uniform(MAX_DESYNC_FACTOR * cfg.ipv6_temp_preferred)
        self.reachable = cfg.ndp_reachable
        self.retrans = cfg.ndp_retrans
        self._rs_left: dict[Interface, int] = {}
        self._last_warning: dict[bytes, float] = {}
        #: One expiry timer per router and per on-link prefix (not one per RA).
        self._expiry_timers: dict[object, Timer] = {}
        #: We are a router (a gateway): our advertisements carry the Router flag,
        #: which a host needs to keep us in its default router list (RFC 4861 7.2.5).
        self.router = False

    # -- sending ------------------------------------------------------------------------
    def _send(self, iface: Interface, src: bytes, dst: bytes, message: bytes,
              dst_mac: bytes, counter: str) -> None:
        self.stack.counters[counter] += 1
        self.stack.send_frame(iface, dst_mac, ethernet.ETH_IPV6,
                              wire.build(src, dst, wire.PROTO_ICMP6, message, wire_ndp.HOP_LIMIT))

    def _solicit(self, iface: Interface, n: Neighbour, unicast: bool) -> None:
        """RFC 4861 7.2.2: NS to the solicited-node group (or to the cached MAC
        when probing), from one of our usable addresses, with our SLLA."""
        src = self.ipv6.source_for(iface, n.ip)
        if src is None:
            self.stack.counters["ndp.no_source"] += 1
        elif unicast and n.mac is not None:
            self._send(iface, src, n.ip, wire_ndp.build_ns(src, n.ip, n.ip, iface.mac),
                       n.mac, "ndp.tx_ns")
        else:
            group = wire.solicited_node(n.ip)
            self._send(iface, src, group, wire_ndp.build_ns(src, group, n.ip, iface.mac),
                       wire.multicast_mac(group), "ndp.tx_ns")
        n.requests += 1
        self._arm(iface, n, self.retrans)

    def _arm(self, iface: Interface, n: Neighbour, delay: float) -> None:
        if n.timer is not None:
            n.timer.cancel()
        n.timer = self.stack.timers.call_later(delay, lambda: self._timeout(iface, n))

    # -- resolution (RFC 4861 7.2, 7.3) ---------------------------------------------------
    def resolve_and_send(self, iface: Interface, next_hop: bytes, packet: bytes) -> None:
        stack = self.stack
        cache = self.caches.get(iface)
        if cache is None:
            cache = self.caches[iface] = {}
        n = cache.get(next_hop)
        now = stack.now
        if n is not None and n.mac is not None:
            n.used = now
            stack.send_frame(iface, n.mac, ethernet.ETH_IPV6, packet)
            if n.stale(now, self.reachable):
                n.state = STALE
            if n.state == STALE:
                # RFC 4861 7.3.3: a packet sent to a STALE entry starts DELAY.
                n.state = DELAY
                n.requests = 0
                self._arm(iface, n, stack.config.ndp_delay_first_probe)
            return
        if n is None:
            n = self._new_entry(cache, next_hop)
            if n is None:
                stack.local_error(packet)     # the cache is full of waiting entries
                return
            self._solicit(iface, n, unicast=False)
        self._enqueue(n, packet)

    def _timeout(self, iface: Interface, n: Neighbour) -> None:
        n.timer = None
        cache = self.caches.get(iface, {})
        if cache.get(n.ip) is not n:
            return
        cfg = self.stack.config
        if n.state == INCOMPLETE:
            if n.requests < cfg.ndp_multicast_solicit:
                self._solicit(iface, n, unicast=False)
                return
            self.stack.counters["ndp.resolution_failed"] += 1
            self._forget(iface, n)
        elif n.state == DELAY:
            n.state = PROBE
            n.requests = 0
            self._solicit(iface, n, unicast=True)
        elif n.state == PROBE:
            if n.requests < cfg.ndp_unicast_solicit:
                self._solicit(iface, n, unicast=True)
                return
            self.stack.counters["ndp.probe_failed"] += 1
            self._forget(iface, n)

    def _forget(self, iface: Interface, n: Neighbour) -> None:
        """Resolution failed (RFC 4861 7.3.3, 7.2.2): the entry goes, waiting
        packets are dropped (counted) and reported to their senders as address
        unreachable (``NeighbourTable._failed``, ARP's path too), and a router
        that stopped answering leaves the default router list."""
        if (iface, n.ip) in self.routers:
            self._drop_router(iface, n.ip)
        self._failed(self.caches.get(iface, {}), n)

    def _learn(self, iface: Interface, ip: bytes, mac: bytes, state: str,
               create: bool = True) -> Neighbour | None:
        """Record ``mac`` for ``ip`` (RFC 4861 7.2.3, 6.3.4: a new entry or a
        changed address is STALE; ``state`` REACHABLE only on a solicited NA)."""
        cache = self.caches.setdefault(iface, {})
        n = cache.get(ip)
        now = self.stack.now
        if n is None:
            n = self._new_entry(cache, ip) if create else None
            if n is None:
                return None
        elif n.mac == mac and state == STALE and n.state != INCOMPLETE:
            return n          # the same address: no state change
        n.mac = mac
        n.state = state
        if state == REACHABLE:
            n.confirmed = now
        n.requests = 0
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        if n.pending:
            pending, n.pending = n.pending, deque()
            n.pending_bytes = 0
            for packet in pending:
                self.stack.send_frame(iface, mac, ethernet.ETH_IPV6, packet)
            if state == STALE:
                # Packets just went out to a STALE entry: DELAY (RFC 4861 7.3.3).
                n.state = DELAY
                self._arm(iface, n, self.stack.config.ndp_delay_first_probe)
        return n

    def confirm(self, iface: Interface, ip: bytes) -> None:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1)."""
        n = self.caches.get(iface, {}).get(ip)
        if n is not None and n.mac is not None:
            n.state = REACHABLE
            n.confirmed = self.stack.now
            if n.timer is not None:
                n.timer.cancel()
                n.timer = None

    # -- input -----------------------------------------------------------------------
    def input(self, header: wire.Ipv6Header, icmp: Icmp6Header, body: memoryview,
              iface: Interface) -> None:
        msg = wire_ndp.parse(icmp, body, header.src, header.dst, header.hop_limit)
        counters = self.stack.counters
        if isinstance(msg, wire_ndp.NeighborSolicitation):
            counters["ndp.rx_ns"] += 1
            self._ns(header, msg, iface)
        elif isinstance(msg, wire_ndp.NeighborAdvertisement):
            counters["ndp.rx_na"] += 1
            self._na(header, msg, iface)
        elif isinstance(msg, wire_ndp.RouterAdvertisement):
            counters["ndp.rx_ra"] += 1
            self._ra(header, msg, iface)
        elif isinstance(msg, wire_ndp.Redirect):
            counters["ndp.rx_redirect"] += 1
            self._redirect(header, msg, iface)
        else:
            counters["ndp.rs_ignored"] += 1     # hosts do not answer RS

    def _mine(self, iface: Interface, addr: bytes) -> Ipv6Address | None:
        for a in iface.ipv6:
            if a.addr == addr:
                return a
        return None

    def _ns(self, header: wire.Ipv6Header, msg: wire_ndp.NeighborSolicitation,
            iface: Interface) -> None:
        counters = self.stack.counters
        src = header.src
        target = self._mine(iface, msg.target)
        if target is None:
            counters["ndp.ns_not_for_us"] += 1
            return
        if target.state == "tentative":
            dad = self.dad.get((iface, target.addr))
            if src != wire.UNSPECIFIED:
                counters["ndp.ns_for_tentative"] += 1   # RFC 4862 5.4.3: ignored
            elif dad is not None and msg.options.nonce == dad.nonce:
                counters["ndp.dad_looped"] += 1         # our own probe (RFC 7527)
            elif dad is not None:
                self._dad_failed(iface, target)         # RFC 4862 5.4.3: another DAD
            return
        if target.state == "duplicate":
            return
        slla = msg.options.source_lladdr
        if src == wire.UNSPECIFIED:
            # Someone's DAD for an address we hold: defend it (RFC 4861 7.2.4).
            counters["ndp.dad_defended"] += 1
            self._warn(target.addr, "DAD probe from another node for our address %s on %s",
                       iface)
            self._advertise(iface, target.addr, wire.ALL_NODES,
                            wire.multicast_mac(wire.ALL_NODES), solicited=False)
            return
        if slla is not None:
            self._learn(iface, src, slla, STALE)
        mac = slla
        if mac is None:
            n = self.caches.get(iface, {}).get(src)
            mac = n.mac if n is not None else None
        if mac is None:
            # Unicast NS without SLLA from a neighbour we do not know: answer
            # through resolution.
            self.ipv6._transmit(iface, src, src, wire.build(
                target.addr, src, wire.PROTO_ICMP6,
                wire_ndp.build_na(target.addr, src, target.addr, router=self.router,
                                  solicited=True, target_lladdr=iface.mac), wire_ndp.HOP_LIMIT))
            counters["ndp.tx_na"] += 1
            return
        self._advertise(iface, target.addr, src, mac, solicited=True)

    def _warn(self, addr: bytes, message: str, iface: Interface) -> None:
        """Logged once per 10 s per address (as ARP's defence): a flood is counted,
        not written to the log each time."""
        now = self.stack.now
        if now - self._last_warning.get(addr, -1e9) < 10.0:
            return
        if len(self._last_warning) > 64:
            self._last_warning.clear()
        self._last_warning[addr] = now
        log.warning(message, ip_str(addr), iface.name)

    def _advertise(self, iface: Interface, addr: bytes, dst: bytes, dst_mac: bytes,
                   solicited: bool) -> None:
        self._send(iface, addr, dst, wire_ndp.build_na(addr, dst, addr, router=self.router,
                                                       solicited=solicited, override=True,
                                                       target_lladdr=iface.mac),
                   dst_mac, "ndp.tx_na")

    def _na(self, header: wire.Ipv6Header, msg: wire_ndp.NeighborAdvertisement,
            iface: Interface) -> None:
        counters = self.stack.counters
        mine = self._mine(iface, msg.target)
        if mine is not None:
            if mine.state == "tentative":
                self._dad_failed(iface, mine)            # RFC 4862 5.4.4
            else:
                counters["ndp.na_for_our_address"] += 1
                self._warn(mine.addr, "neighbour advertisement from another node claims our "
                           "address %s on %s", iface)
            return
        n = self.caches.get(iface, {}).get(msg.target)
        if n is None:
            counters["ndp.na_unsolicited"] += 1          # RFC 4861 7.2.5: no entry
            return
        tlla = msg.options.target_lladdr
        if n.state == INCOMPLETE:
            if tlla is None:
                counters["ndp.na_no_tlla"] += 1
                return
            self._learn(iface, n.ip, tlla, REACHABLE if msg.solicited else STALE)
        else:
            changed = tlla is not None and tlla != n.mac
            if not msg.override and changed:
                if n.state == REACHABLE:
                    n.state = STALE
                counters["ndp.na_not_override"] += 1
                return
            if changed:
                assert tlla is not None
                self._learn(iface, n.ip, tlla, REACHABLE if msg.solicited else STALE)
            elif msg.solicited:
                self.confirm(iface, n.ip)
        if n.router and not msg.router and (iface, n.ip) in self.routers:
            self._drop_router(iface, n.ip)              # RFC 4861 7.2.5: no longer a router
        n.router = msg.router

    # -- DAD (RFC 4862 5.4) --------------------------------------------------------------
    def start_dad(self, iface: Interface, entry: Ipv6Address) -> None:
        cfg = self.stack.config
        key = (iface, entry.addr)
        if key in self.dad or entry.state != "tentative":
            return
        if not cfg.ipv6_dad or iface.raw_ip or cfg.ipv6_dad_transmits <= 0:
            self.ipv6.address_ready(iface, entry)
            self._after_ready(iface, entry)
            return
        dad = self.dad[key] = _Dad(entry)
        # RFC 4862 5.4.2: a random delay before the first probe.
        dad.timer = self.stack.timers.call_later(_uniform(MAX_RTR_SOLICITATION_DELAY),
                                                 lambda: self._dad_step(iface, dad))

    def cancel_dad(self, iface: Interface, entry: Ipv6Address) -> None:
        dad = self.dad.pop((iface, entry.addr), None)
        if dad is not None and dad.timer is not None:
            dad.timer.cancel()

    def _dad_step(self, iface: Interface, dad: _Dad) -> None:
        dad.timer = None
        entry = dad.entry
        if self.dad.get((iface, entry.addr)) is not dad:
            return
        if dad.sent < self.stack.config.ipv6_dad_transmits:
            group = wire.solicited_node(entry.addr)
            self._send(iface, wire.UNSPECIFIED, group,
                       wire_ndp.build_ns(wire.UNSPECIFIED, group, entry.addr, None, dad.nonce),
                       wire.multicast_mac(group), "ndp.tx_dad")
            dad.sent += 1
            dad.timer = self.stack.timers.call_later(self.retrans,
                                                     lambda: self._dad_step(iface, dad))
            return
        del self.dad[(iface, entry.addr)]
        self.ipv6.address_ready(iface, entry)
        self._after_ready(iface, entry)

    def _dad_failed(self, iface: Interface, entry: Ipv6Address) -> None:
        self.cancel_dad(iface, entry)
        self.ipv6.address_duplicate(iface, entry)

    def _after_ready(self, iface: Interface, entry: Ipv6Address) -> None:
        """A usable link-local address: solicit routers (RFC 4861 6.3.7); any
        address: advertise it once, unsolicited (as Linux does). Nothing is sent
        before the stack starts."""
        if iface.raw_ip or not self.stack.started:
            return
        self._advertise(iface, entry.addr, wire.ALL_NODES, wire.multicast_mac(wire.ALL_NODES),
                        solicited=False)
        cfg = self.stack.config
        if wire.is_link_local(entry.addr) and cfg.ipv6_accept_ra and cfg.ipv6_rtr_solicits:
            self._rs_left[iface] = cfg.ipv6_rtr_solicits
            self.stack.timers.call_later(_uniform(MAX_RTR_SOLICITATION_DELAY),
                                         lambda: self._solicit_router(iface))

    def _solicit_router(self, iface: Interface) -> None:
        left = self._rs_left.get(iface, 0)
        if left <= 0 or any(i is iface for i, _ in self.routers):
            return
        self._rs_left[iface] = left - 1
        src = next((a.addr for a in iface.ipv6 if a.usable and wire.is_link_local(a.addr)),
                   wire.UNSPECIFIED)
        slla = iface.mac if src != wire.UNSPECIFIED else None
        self._send(iface, src, wire.ALL_ROUTERS, wire_ndp.build_rs(src, slla),
                   wire.multicast_mac(wire.ALL_ROUTERS), "ndp.tx_rs")
        if left > 1:
            self.stack.timers.call_later(self.stack.config.ipv6_rtr_solicit_interval,
                                         lambda: self._solicit_router(iface))

    # -- router discovery and SLAAC (RFC 4861 6.3.4, RFC 4862 5.5) -----------------------
    def _ra(self, header: wire.Ipv6Header, ra: wire_ndp.RouterAdvertisement,
            iface: Interface) -> None:
        stack = self.stack
        counters = stack.counters
        cfg = stack.config
        if not cfg.ipv6_accept_ra:
            counters["ndp.ra_ignored"] += 1
            return
        router = header.src
        now = stack.now
        opts = ra.options
        if opts.source_lladdr is not None:
            n = self._learn(iface, router, opts.source_lladdr, STALE)
            if n is not None:
                n.router = True
        if ra.cur_hop_limit:
            self.ipv6.hop_limit = ra.cur_hop_limit
        if ra.reachable_time and ra.reachable_time <= 3_600_000:
            self.reachable = ra.reachable_time / 1000
        if ra.retrans_timer and ra.retrans_timer <= 60_000:
            self.retrans = max(0.1, ra.retrans_timer / 1000)
        if opts.mtu is not None:
            if wire.MIN_MTU <= opts.mtu <= iface.mtu:
                if self.ipv6.link_mtu.get(iface) != opts.mtu:
                    self.ipv6.link_mtu[iface] = opts.mtu
                    stack.destinations.forget_interface(iface)
            else:
                counters["ndp.ra_bad_mtu"] += 1
        key = (iface, router)
        if ra.router_lifetime:
            if key in self.routers or len(self.routers) < MAX_ROUTERS:
                fresh = key not in self.routers
                self.routers[key] = now + ra.router_lifetime
                if fresh:
                    self._default_route()
                    log.info("IPv6 default router %s on %s", ip_str(router), iface.name)
                self._expire_at(key, ra.router_lifetime, lambda: self._router_expiry(key))
            else:
                counters["ndp.router_list_full"] += 1
        elif key in self.routers:
            self._drop_router(iface, router)
        for p in opts.prefixes:
            self._prefix(iface, p)
        for k in [k for k, t in self.dns_servers.items() if t <= now]:
            del self.dns_servers[k]
        for name in [d for d, t in self.dns_domains.items() if t <= now]:
            del self.dns_domains[name]
        for r in opts.rdnss:
            for server in r.servers[:MAX_DNS]:
                if r.lifetime == 0:
                    self.dns_servers.pop(server, None)
                elif server in self.dns_servers or len(self.dns_servers) < MAX_DNS:
                    self.dns_servers[server] = now + r.lifetime
        for d in opts.dnssl:
            for name in d.domains[:MAX_DNS]:
                if d.lifetime == 0:
                    self.dns_domains.pop(name, None)
                elif name in self.dns_domains or len(self.dns_domains) < MAX_DNS:
                    self.dns_domains[name] = now + d.lifetime

    def _expire_at(self, key: object, delay: float, callback: Callable[[], None]) -> None:
        old = self._expiry_timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._expiry_timers.pop(key, None)
            callback()

        self._expiry_timers[key] = self.stack.timers.call_later(delay + 0.001, fire)

    def _router_expiry(self, key: tuple[Interface, bytes]) -> None:
        expiry = self.routers.get(key)
        if expiry is not None and expiry <= self.stack.now:
            self._drop_router(*key)

    def _drop_router(self, iface: Interface, router: bytes) -> None:
        if self.routers.pop((iface, router), None) is not None:
            self.stack.counters["ndp.router_expired"] += 1
            self._default_route()

    def _default_route(self) -> None:
        """::/0 through the first router of the default router list (RFC 4861 6.3.6)."""
        routes = self.ipv6.routes
        routes.remove(0, 0)
        for iface, router in self.routers:
            routes.add(Route(0, 0, router, iface, "ra", 128))
            return

    def _prefix(self, iface: Interface, p: wire_ndp.PrefixInfo) -> None:
        stack = self.stack
        counters = stack.counters
        if wire.is_link_local(p.prefix):
            counters["ndp.prefix_link_local"] += 1   # RFC 4861 6.3.4 / RFC 4862 5.5.3 b)
            return
        if p.prefix[0] == 0xFF:
            counters["ndp.prefix_multicast"] += 1
            return
        if p.preferred_lifetime > p.valid_lifetime:
            counters["ndp.prefix_bad_lifetimes"] += 1   # RFC 4862 5.5.3 c)
            return
        now = stack.now
        valid = INF if p.valid_lifetime == wire_ndp.INFINITY else float(p.valid_lifetime)
        preferred = INF if p.preferred_lifetime == wire_ndp.INFINITY \
            else float(p.preferred_lifetime)
        if p.on_link:
            key = (iface, p.prefix, p.prefix_len)
            if valid == 0:
                if self.prefixes.pop(key, None) is not None:
                    self.ipv6.routes.remove(int.from_bytes(p.prefix, "big"), p.prefix_len, iface,
                                            origin="ra")     # a static one stays
            elif key in self.prefixes or len(self.prefixes) < MAX_PREFIXES:
                self.prefixes[key] = now + valid
                self.ipv6._connected(iface, p.prefix, p.prefix_len, "ra")
                if valid != INF:
                    self._expire_at(key, valid, lambda: self._prefix_expiry(key))
            else:
                counters["ndp.prefix_list_full"] += 1
        if not p.autonomous or not stack.config.ipv6_autoconf:
            return
        if p.prefix_len != 64:
            counters["ndp.slaac_bad_prefix_length"] += 1   # RFC 4862 5.5.3 d), 64-bit IIDs
            return
        existing = [a for a in iface.ipv6 if a.origin == "slaac" and a.state != "duplicate"
                    and a.addr[:8] == p.prefix[:8]]
        for a in existing:
            remaining = a.valid_until - now
            # RFC 4862 5.5.3 e): a lifetime is cut to no less than two hours.
            if valid > TWO_HOURS or valid > remaining:
                new_valid = valid
            elif remaining <= TWO_HOURS:
                new_valid = remaining
            else:
                new_valid = TWO_HOURS
            self.ipv6.set_lifetimes(iface, a, new_valid, min(preferred, new_valid))
        if not existing and valid:
            if sum(1 for a in iface.ipv6 if a.origin == "slaac") >= MAX_PREFIXES:
                counters["ndp.prefix_list_full"] += 1
                return
            addr = wire.with_iid(p.prefix, self.ipv6.stable_iid(p.prefix, iface))
            try:
                self.ipv6.add_address(iface, addr, 64, "slaac", valid, preferred)
            except ValueError:
                counters["ndp.slaac_bad_address"] += 1    # e.g. inside ::ffff:0:0/96
                return
            counters["ndp.slaac_address"] += 1
        if stack.config.ipv6_temporary:
            self._temporary(iface, p.prefix, valid, preferred)

    # -- temporary addresses (RFC 8981) -----------------------------------------------
    def _temporary(self, iface: Interface, prefix: bytes, valid: float, preferred: float,
                   regenerate: bool = False) -> None:
        """RFC 8981 3.4, 3.5: a temporary address beside the stable one, with a
        random IID and lifetimes no longer than the prefix's or the
        ``ipv6_temp_*`` settings (less a per-stack DESYNC_FACTOR); regenerated
        REGEN_ADVANCE seconds before it is deprecated."""
        stack = self.stack
        cfg = stack.config
        now = stack.now
        temps = [a for a in iface.ipv6 if a.origin == "temporary" and a.addr[:8] == prefix[:8]
                 and a.state != "duplicate"]
        for a in temps:
            # Never longer than the prefix now allows (RFC 8981 3.5).
            if a.valid_until - now > valid or a.preferred_until - now > preferred:
                self.ipv6.set_lifetimes(iface, a, min(a.valid_until - now, valid),
                                        min(a.preferred_until - now, preferred, valid))
        if not valid or (not regenerate and any(a.state in ("tentative", "preferred")
                                                for a in temps)):
            return
        if len(temps) >= MAX_TEMPORARY or sum(
                1 for a in iface.ipv6 if a.origin == "temporary") >= MAX_PREFIXES:
            stack.counters["ndp.temporary_limit"] += 1
            return
        t_preferred = min(preferred, cfg.ipv6_temp_preferred - self._desync)
        t_valid = min(valid, cfg.ipv6_temp_valid)
        if t_preferred <= REGEN_ADVANCE:
            return                     # RFC 8981 3.4 step 6: it could never be used
        iid = os.urandom(8)
        while iid == bytes(8) or int.from_bytes(iid, "big") >= 0xFDFFFFFFFFFFFF80:
            iid = os.urandom(8)
        try:
            self.ipv6.add_address(iface, prefix[:8] + iid, 64, "temporary", t_valid,
                                  t_preferred)
        except ValueError:
            stack.counters["ndp.slaac_bad_address"] += 1
            return
        stack.counters["ndp.temporary_address"] += 1
        key = (iface, prefix[:8], "regen")
        self._expire_at(key, t_preferred - REGEN_ADVANCE,
                        lambda: self._regenerate(iface, prefix))

    def _regenerate(self, iface: Interface, prefix: bytes) -> None:
        """While the prefix still has a usable stable address, a new temporary
        one takes over before the current one is deprecated."""
        now = self.stack.now
        public = next((a for a in iface.ipv6 if a.origin == "slaac" and a.usable
                       and a.addr[:8] == prefix[:8]), None)
        if public is None or not self.stack.config.ipv6_temporary:
            return
        self._temporary(iface, prefix, public.valid_until - now, public.preferred_until - now,
                        regenerate=True)

    def _prefix_expiry(self, key: tuple[Interface, bytes, int]) -> None:
        expiry = self.prefixes.get(key)
        if expiry is not None and expiry <= self.stack.now:
            del self.prefixes[key]
            iface, prefix, plen = key
            self.ipv6.routes.remove(int.from_bytes(prefix, "big"), plen, iface, origin="ra")

    # -- redirects (RFC 4861 8.1, 8.3) ---------------------------------------------------
    def _redirect(self, header: wire.Ipv6Header, msg: wire_ndp.Redirect,
                  iface: Interface) -> None:
        counters = self.stack.counters
        route = self.ipv6.routes.lookup(msg.destination)
        if route is None or route.gateway != header.src or route.iface is not iface:
            counters["ndp.redirect_not_from_router"] += 1
            return
        on_link = msg.target == msg.destination
        if sum(1 for r in self.ipv6.routes.routes if r.origin == "redirect") >= MAX_REDIRECTS:
            counters["ndp.redirect_table_full"] += 1
            return
        self.ipv6.routes.add(Route(int.from_bytes(msg.destination, "big"), 128,
                                   None if on_link else msg.target, iface, "redirect", 128))
        tlla = msg.options.target_lladdr
        if tlla is not None:
            n = self._learn(iface, msg.target, tlla, STALE)
            if n is not None and not on_link:
                n.router = True
        counters["ndp.redirect_accepted"] += 1

    def entries(self) -> list[dict[str, object]]:
        """The cache for ``femtotcp ctl neigh`` (ARP's fields, plus ``router``)."""
        now = self.stack.now
        out: list[dict[str, object]] = []
        for iface, cache in self.caches.items():
            for n in cache.values():
                state = STALE if n.stale(now, self.reachable) else n.state
                out.append({"interface": iface.name, "address": ip_str(n.ip),
                            "mac": mac_str(n.mac) if n.mac else None, "state": state,
                            "age": round(now - n.confirmed, 3), "pending": len(n.pending),
                            "router": n.router})
        return out
