"""The gateway's Router Advertisements: the guest's IPv6 prefix, route and DNS.

The gateway is the only router on the guest's link. It advertises
(RFC 4861 6.2) from its link-local address to all-nodes: itself as default
router, the ``--net6`` /64 as on-link and autonomous (the guest makes its own
address by SLAAC, RFC 4862 5.5.3), the link MTU, and the DNS forwarder's IPv6
address as RDNSS (RFC 8106). Unsolicited advertisements go out at start, the
first ``MAX_INITIAL`` at most ``MAX_INITIAL_INTERVAL`` apart, then every
``MIN_INTERVAL``..``MAX_INTERVAL`` seconds (RFC 4861 6.2.4); a Router
Solicitation is answered with a multicast advertisement, never more often
than one per ``MIN_DELAY_BETWEEN_RAS`` (RFC 4861 6.2.6). Sans-I/O: the
stack's timers and output only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire import ndp as wire_ndp
from femtotcp.wire.ethernet import ETH_IPV6
from femtotcp.wire.icmp6 import parse as icmp6_parse

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

MAX_INITIAL = 3                    # RFC 4861 10: MAX_INITIAL_RTR_ADVERTISEMENTS
MAX_INITIAL_INTERVAL = 16.0        # MAX_INITIAL_RTR_ADVERT_INTERVAL
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_INTERVAL = 600.0               # MaxRtrAdvInterval (the default)
MIN_INTERVAL = 200.0               # MinRtrAdvInterval: 0.33 * MaxRtrAdvInterval
ROUTER_LIFETIME = 1800             # AdvDefaultLifetime: 3 * MaxRtrAdvInterval
VALID_LIFETIME = 86400             # AdvValidLifetime (radvd's default)
PREFERRED_LIFETIME = 14400         # AdvPreferredLifetime
RDNSS_LIFETIME = 1800              # RFC 8106 5.1: at least 3 * MaxRtrAdvInterval


class RouterAdvertiser:
    """Advertises ``prefix``/64 on ``iface`` with ``dns`` as its RDNSS."""

    def __init__(self, stack: Stack, iface: Interface, prefix: bytes, dns: bytes,
                 rand: Callable[[float, float], float] = random.uniform) -> None:
        self.stack = stack
        self.iface = iface
        self.prefix = prefix
        self.dns = dns
        self.rand = rand
        self.sent = 0
        self.last = -1e18
        self._timer: Any = None
        self._answer: Any = None
        #: Told the source of each Router Solicitation (the NAT learns the
        #: guest's link-local address from it).
        self.on_solicit: Callable[[bytes], None] | None = None
        ipv6 = stack.ipv6
        if ipv6 is None:
            raise ValueError("Router Advertisements need the stack's ipv6 module")
        self.ipv6 = ipv6
        ipv6.ndp.router = True                   # the Router flag in our NAs
        ipv6.join(iface, wire_ipv6.ALL_ROUTERS)  # where solicitations go
        self._icmp6_input: Callable[..., None] = ipv6.protocols[wire_ipv6.PROTO_ICMP6]
        ipv6.protocols[wire_ipv6.PROTO_ICMP6] = self._icmp6

    def start(self) -> None:
        """The first unsolicited advertisement (called once the stack started)."""
        self._unsolicited()

    def close(self) -> None:
        for t in (self._timer, self._answer):
            if t is not None:
                t.cancel()
        self._timer = self._answer = None

    # -- building and sending ----------------------------------------------------------
    def message(self, src: bytes) -> bytes:
        """The advertisement (ICMPv6 message) from ``src``."""
        iface = self.iface
        options = (wire_ndp.opt_source_lladdr(iface.mac)
                   + wire_ndp.opt_mtu(iface.mtu)
                   + wire_ndp.opt_prefix(self.prefix, 64, VALID_LIFETIME, PREFERRED_LIFETIME)
                   + wire_ndp.opt_rdnss(RDNSS_LIFETIME, [self.dns]))
        return wire_ndp.build_ra(src, wire_ipv6.ALL_NODES,
                                 cur_hop_limit=self.stack.config.hop_limit,
                                 router_lifetime=ROUTER_LIFETIME, options=options)

    def send(self) -> bool:
        """One advertisement to all-nodes now; False while we have no usable
        link-local address (RFC 4861 4.2: an RA comes from one)."""
        src = next((a.addr for a in self.iface.ipv6
                    if a.usable and wire_ipv6.is_link_local(a.addr)), None)
        if src is None:
            self.stack.counters["gwra.no_link_local"] += 1
            return False
        packet = wire_ipv6.build(src, wire_ipv6.ALL_NODES, wire_ipv6.PROTO_ICMP6,
                                 self.message(src), wire_ndp.HOP_LIMIT)
        self.stack.counters["gwra.tx_ra"] += 1
        self.stack.send_frame(self.iface, wire_ipv6.multicast_mac(wire_ipv6.ALL_NODES),
                              ETH_IPV6, packet)
        self.last = self.stack.now
        return True

    def _unsolicited(self) -> None:
        self._timer = None
        if self.send():
            self.sent += 1
        interval = self.rand(MIN_INTERVAL, MAX_INTERVAL)
        if self.sent < MAX_INITIAL:
            interval = min(interval, MAX_INITIAL_INTERVAL)
        self._timer = self.stack.timers.call_later(interval, self._unsolicited)

    # -- solicitations -----------------------------------------------------------------
    def _icmp6(self, ip: Any, data: memoryview, iface: Interface, *rest: Any) -> None:
        """Router Solicitations on the guest's link are ours; the rest goes on."""
        if len(data) < 1 or data[0] != wire_ndp.ROUTER_SOLICITATION or iface is not self.iface:
            self._icmp6_input(ip, data, iface, *rest)
            return
        icmp, body = icmp6_parse(data, ip.src, ip.dst)       # Malformed: a counted drop
        wire_ndp.parse(icmp, body, ip.src, ip.dst, ip.hop_limit)
        self.stack.counters["gwra.rx_rs"] += 1
        if self.on_solicit is not None:
            self.on_solicit(ip.src)
        if self._answer is not None:
            return                                           # one answer is on its way
        wait = self.last + MIN_DELAY_BETWEEN_RAS - self.stack.now
        if wait <= 0:
            self.send()
            return
        self._answer = self.stack.timers.call_later(wait, self._answer_now)

    def _answer_now(self) -> None:
        self._answer = None
        self.send()
