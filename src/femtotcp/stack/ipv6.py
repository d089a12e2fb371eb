"""IPv6 input and output (RFC 8200), addresses (RFC 4291, RFC 4862) and groups.

Input delivers locally only (a host forwards nothing): the fixed header is
parsed and its addresses checked, the destination must be one of our usable
addresses or a group joined on the interface, then TCP/UDP/ICMPv6 right after
the fixed header are dispatched at once; anything else walks the extension
chain (``wire.ipv6ext.walk``: unknown options by their high bits, Hop-by-Hop
only first, a Routing header with segments left refused, RFC 5095 for type 0;
the whole chain in the first fragment, RFC 7112) and fragments are reassembled
(RFC 8200 4.5, bounded like IPv4's, any overlap discarding the datagram, RFC
5722). Upper layers register in ``protocols`` (ICMPv6, 58, is this module's
own: neighbour discovery lives here, the rest goes to ``stack.icmp6``).

Output routes (``routes``: connected prefixes, RA routes, redirects), picks
the source, fragments to the path MTU (``pmtu``, lowered by Packet Too Big,
never below 1280) and hands the packet to neighbour discovery
(``stack/ndp.py``) or straight to the wire for multicast.

Addresses live on ``Interface.ipv6`` with their DAD state and lifetimes; the
usable ones are in ``stack.local_addresses`` beside IPv4's (one "is this
address mine"). Interface identifiers are stable-privacy ones (RFC 7217) from
a secret made per stack with ``os.urandom``.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from femtotcp.core import rand
from femtotcp.stack.device import OffloadPath
from femtotcp.stack.interface import Ipv6Address
from femtotcp.stack.ndp import Ndp
from femtotcp.stack.reassembly import Reassembler
from femtotcp.stack.routes import Route, RouteTable
from femtotcp.wire import ethernet, ip_bytes, ip_str, ipv6ext, mld
from femtotcp.wire import icmp6 as wire_icmp6
from femtotcp.wire import ipv6 as wire

try:
    from _blake2 import blake2s  # the C BLAKE2 hashlib wraps, without loading OpenSSL
except ImportError:               # pragma: no cover - a Python built without it
    from hashlib import blake2s

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.ipv4 import FastHandler
    from femtotcp.stack.stack import IpErrorHandler, Stack

log = logging.getLogger("femtotcp.ipv6")

#: (IPv6 header, upper-layer bytes, interface, the whole packet for ICMPv6 errors)
#: (header, upper-layer bytes, interface, whole packet, csum_ok: the device
#: vouched for the TCP/UDP checksum, see ``Stack.receive``)
Ipv6Handler = Callable[[wire.Ipv6Header, memoryview, "Interface", memoryview, bool], None]
#: (IPv6 header, ICMPv6 header, body, interface, the whole packet)
Icmp6Handler = Callable[[wire.Ipv6Header, wire_icmp6.Icmp6Header, memoryview, "Interface",
                         memoryview], None]

INF = float("inf")
PMTU_MAX_ENTRIES = 1024
_DIRECT = frozenset({wire.PROTO_TCP, wire.PROTO_UDP, wire.PROTO_ICMP6})
_NDP_TYPES = frozenset({133, 134, 135, 136, 137})
_MLD_TYPES = frozenset({130, 131, 132, 143})
MLD_UNSOLICITED_INTERVAL = 1.0   # RFC 3810 9.11 (Linux mldv2_unsolicited_report_interval)
#: MLDv1's Unsolicited Report Interval (RFC 2710 7.10; Linux
#: mldv1_unsolicited_report_interval): a join's second report comes within it.
MLD_V1_UNSOLICITED_INTERVAL = 10.0
#: Older Version Querier Present Timeout (RFC 3810 9.12): Robustness Variable
#: (2) x Query Interval (125 s) + Query Response Interval (10 s), as Linux.
MLD_OLDER_QUERIER_TIMEOUT = 2 * 125.0 + 10.0
IDGEN_RETRIES = 3        # RFC 7217 6: stable-privacy addresses tried after a DAD conflict
#: What the fast path reads of an Ethernet + IPv6 header, in one call: MACs,
#: ethertype, version/traffic class/flow label, payload length, next header,
#: hop limit, addresses.
_FAST_RX = struct.Struct("!6s6sHIHBB16s16s")
#: ::/80 holds ::, ::1, the v4-mapped and the v4-compatible addresses: no
#: fast-path source starts with it.
_ZERO80 = bytes(10)


class _FragHead(NamedTuple):
    """What the reassembler keeps of a first fragment (for Time Exceeded)."""

    header: wire.Ipv6Header
    header_len: int      # fixed header plus the unfragmentable part
    total_len: int       # the fragment packet's length


class Ipv6:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.routes = RouteTable()
        self.protocols: dict[int, Ipv6Handler] = {wire.PROTO_ICMP6: self._icmp6_input}
        #: ICMPv6 errors about what a transport sent, by its next header
        #: (``Stack.ip_error_handlers``' signature; the type and code are ICMPv6's).
        self.error_handlers: dict[int, IpErrorHandler] = {}
        #: Groups joined per interface, with a use count (all-nodes, solicited-node).
        self.groups: dict[Interface, dict[bytes, int]] = {}
        #: MLDv1 compatibility (RFC 3810 8.2.1): until when each interface
        #: heard an MLDv1 querier; its pending v1 reports per group (a query's
        #: answer or a join's repeat), and the groups whose last report on the
        #: link was ours (they get a Done when left, RFC 2710 4).
        self.mld_v1_until: dict[Interface, float] = {}
        self._mld_v1_timers: dict[tuple[Interface, bytes], Timer] = {}
        self._mld_last_reporter: set[tuple[Interface, bytes]] = set()
        #: Learned path MTUs: destination -> (MTU, expiry).
        self.pmtu: dict[bytes, tuple[int, float]] = {}
        #: The link MTU an RA gave (RFC 4861 6.3.4), per interface.
        self.link_mtu: dict[Interface, int] = {}
        self.hop_limit = stack.config.hop_limit
        self.reassembly = Reassembler(stack, "ipv6", self._reasm_timeout, "ipv6_reasm_timeout")
        #: RFC 7217's secret_key: per stack, never leaves it.
        self.secret = os.urandom(16)
        self._destination = stack.destinations.get
        #: The Router Alert of the packet being delivered (for MLD's checks).
        self.rx_router_alert: int | None = None
        #: The packet being delivered came in fragments (an atomic one included):
        #: neighbour discovery ignores it (RFC 6980 5).
        self.rx_fragmented = False
        #: The packet being delivered came in a link-layer broadcast or multicast
        #: frame (RFC 4443 2.4 e.3/e.4: no ICMPv6 error about it; ``Icmp6.send_error``
        #: reads it). False outside ``input``.
        self.rx_link_multicast = False
        #: Told of every address whose DAD found a duplicate (iface, address).
        self.on_conflict: Callable[[Interface, bytes], None] | None = None
        #: Interfaces whose unicast to any address is ours to take (a gateway's
        #: guest side, as ``Ipv4.accept_any``).
        self.accept_any: set[Interface] = set()
        #: Next header -> (fast handler, the full handler it stands for in
        #: ``protocols``): ``add_fast_protocol``; see ``fast_input``.
        self.fast_protocols: dict[int, tuple[FastHandler, object]] = {}
        self.ndp = Ndp(stack, self)
        stack.ethertypes[ethernet.ETH_IPV6] = self.input
        stack.set_ip_output(16, self.output)
        # Transports loaded before this module register for IPv6 now; those
        # loaded after do it themselves (``attach_ipv6``).
        if stack.udp is not None:
            stack.udp.attach_ipv6(self)
        if stack.tcp is not None:
            stack.tcp.attach_ipv6(self)

    # -- addresses -----------------------------------------------------------------
    def stable_iid(self, prefix: bytes, iface: Interface, dad_counter: int = 0) -> bytes:
        """RFC 7217 5: F(Prefix, Net_Iface, Network_ID, DAD_Counter, secret_key),
        keyed BLAKE2s here (RFC 7217 allows any PRF; no OpenSSL for SHA-256),
        64 bits of it; never a reserved IID (RFC 5453)."""
        for extra in range(8):
            iid = blake2s(prefix[:8] + iface.mac + iface.name.encode()
                          + bytes((dad_counter + extra,)), key=self.secret,
                          digest_size=8).digest()
            value = int.from_bytes(iid, "big")
            if value != 0 and not 0xFDFFFFFFFFFFFF80 <= value <= 0xFDFFFFFFFFFFFFFF:
                return iid
        return b"\x02" + bytes(6) + b"\x01"   # unreachable in practice

    def add_address(self, iface: Interface, addr: bytes, prefixlen: int = 64,
                    origin: str = "static", valid: float = INF, preferred: float = INF,
                    dad_counter: int = 0) -> Ipv6Address:
        """Add ``addr``; it stays tentative until DAD passes (RFC 4862 5.4).
        ``valid``/``preferred`` are lifetimes in seconds from now."""
        if len(addr) != 16 or addr[0] == 0xFF or addr == wire.UNSPECIFIED \
                or addr == wire.LOOPBACK or wire.is_v4_mapped(addr):
            raise ValueError(f"{ip_str(addr)}: not a usable unicast IPv6 address")
        if not 0 <= prefixlen <= 128:
            raise ValueError(f"bad IPv6 prefix length {prefixlen} (want 0..128)")
        stack = self.stack
        self.remove_address(iface, addr)
        now = stack.now
        entry = Ipv6Address(addr, prefixlen, origin, "tentative", now + valid, now + preferred,
                            dad_counter)
        iface.ipv6.append(entry)
        self.join(iface, wire.solicited_node(addr))
        if wire.is_link_local(addr):
            self._connected(iface, wire.LINK_LOCAL_PREFIX + bytes(8), 64)
        elif prefixlen < 128:
            self._connected(iface, wire.mask(addr, prefixlen), prefixlen)
        self._schedule_lifetime(iface, entry)
        if stack.started or not stack.config.ipv6_dad:
            self.ndp.start_dad(iface, entry)
        return entry

    def _connected(self, iface: Interface, prefix: bytes, plen: int,
                   origin: str = "connected") -> None:
        network = int.from_bytes(prefix, "big")
        for r in self.routes.routes:
            if r.network == network and r.prefixlen == plen and r.iface is iface:
                return
        self.routes.add(Route(network, plen, None, iface, origin, 128))

    def remove_address(self, iface: Interface, addr: bytes) -> bool:
        found = [a for a in iface.ipv6 if a.addr == addr]
        for a in found:
            iface.ipv6.remove(a)
            self._cancel(a)
            if a.state != "duplicate":
                self.leave(iface, wire.solicited_node(a.addr))
            self.ndp.cancel_dad(iface, a)
            if not wire.is_link_local(a.addr) and a.prefixlen < 128 and not any(
                    b.prefixlen == a.prefixlen and wire.in_prefix(b.addr, a.addr, a.prefixlen)
                    for b in iface.ipv6):
                # The prefix's connected route goes with its last address (an RA's
                # on-link prefix keeps its own route, origin ``ra``).
                self.routes.remove(int.from_bytes(wire.mask(a.addr, a.prefixlen), "big"),
                                   a.prefixlen, iface, "connected")
        if found:
            self.stack.addresses_changed()
        return bool(found)

    def address_ready(self, iface: Interface, entry: Ipv6Address) -> None:
        """DAD passed: the address is used from now on."""
        now = self.stack.now
        entry.state = "preferred" if now < entry.preferred_until else "deprecated"
        self._schedule_lifetime(iface, entry)
        self.stack.addresses_changed()
        log.info("IPv6 address %s on %s is %s", entry, iface.name, entry.state)

    def address_duplicate(self, iface: Interface, entry: Ipv6Address) -> None:
        """DAD found another node using the address (RFC 4862 5.4.5): never used.
        A stable-privacy address is tried again with the next DAD_Counter
        (RFC 7217 6), a temporary one with a new random IID, at most
        ``IDGEN_RETRIES`` times."""
        stack = self.stack
        log.error("IPv6 address %s on %s is in use by another node (duplicate address "
                  "detection): not using it", ip_str(entry.addr), iface.name)
        stack.counters["ndp.dad_conflict"] += 1
        if entry.state != "duplicate":
            self.leave(iface, wire.solicited_node(entry.addr))
        entry.state = "duplicate"
        self._cancel(entry)
        stack.addresses_changed()
        if self.on_conflict is not None:
            self.on_conflict(iface, entry.addr)
        if entry.origin in ("slaac", "temporary") and entry.dad_counter < IDGEN_RETRIES:
            # RFC 8981 3.4 (TEMP_IDGEN_RETRIES): a temporary one gets a new random IID.
            now = stack.now
            iid = self.stable_iid(entry.addr, iface, entry.dad_counter + 1) \
                if entry.origin == "slaac" else os.urandom(8)
            self.add_address(iface, wire.with_iid(entry.addr, iid), entry.prefixlen, entry.origin,
                             entry.valid_until - now, entry.preferred_until - now,
                             entry.dad_counter + 1)

    def _cancel(self, entry: Ipv6Address) -> None:
        timer: Any = entry.timer
        if timer is not None:
            timer.cancel()
            entry.timer = None

    def _schedule_lifetime(self, iface: Interface, entry: Ipv6Address) -> None:
        """One timer per address: at the preferred lifetime's end it is deprecated,
        at the valid lifetime's end removed (RFC 4862 5.5.4). A tentative address
        waits for the valid lifetime only: ``address_ready`` decides preferred or
        deprecated when DAD ends and schedules again (a preferred lifetime that
        ran out during DAD must not re-arm a timer for a past deadline forever)."""
        self._cancel(entry)
        now = self.stack.now
        when = entry.valid_until
        if entry.state == "preferred" and entry.preferred_until < when:
            when = entry.preferred_until
        if when == INF:
            return
        entry.timer = self.stack.timers.call_later(max(0.0, when - now),
                                                   lambda: self._lifetime(iface, entry))

    def _lifetime(self, iface: Interface, entry: Ipv6Address) -> None:
        entry.timer = None
        now = self.stack.now
        if now >= entry.valid_until:
            self.stack.counters["ipv6.address_expired"] += 1
            self.remove_address(iface, entry.addr)
            return
        if now >= entry.preferred_until and entry.state == "preferred":
            entry.state = "deprecated"
            self.stack.addresses_changed()
        self._schedule_lifetime(iface, entry)

    def set_lifetimes(self, iface: Interface, entry: Ipv6Address, valid: float,
                      preferred: float) -> None:
        now = self.stack.now
        entry.valid_until = now + valid
        entry.preferred_until = now + preferred
        if entry.state == "deprecated" and preferred > 0:
            entry.state = "preferred"
            self.stack.addresses_changed()
        elif entry.state == "preferred" and preferred <= 0:
            entry.state = "deprecated"
            self.stack.addresses_changed()
        self._schedule_lifetime(iface, entry)

    def start_interface(self, iface: Interface) -> None:
        """The link-local address (RFC 4862 5.3), DAD on every address, then
        router solicitation (RFC 4861 6.3.7) once the link-local one is usable."""
        if iface.raw_ip:
            for a in iface.ipv6:
                self.ndp.start_dad(iface, a)
            return
        self.join(iface, wire.ALL_NODES)
        # Groups joined before the start (static addresses' solicited-node groups).
        joined = [g for g in self.groups.get(iface, {}) if g != wire.ALL_NODES]
        self.report_state_change(iface, joined, mld.CHANGE_TO_EXCLUDE)
        cfg = self.stack.config
        if cfg.ipv6_link_local and not any(wire.is_link_local(a.addr) for a in iface.ipv6):
            ll = wire.link_local(self.stable_iid(wire.LINK_LOCAL_PREFIX, iface))
            self.add_address(iface, ll, 64, "link")
        for a in list(iface.ipv6):
            if a.state == "tentative":
                self.ndp.start_dad(iface, a)

    def source_for(self, iface: Interface, dst: bytes) -> bytes | None:
        """Source address selection (RFC 6724, the rules that matter here):
        same scope first (link-local for link-scope destinations), preferred
        over deprecated, temporary when ``ipv6_temporary``, then the longest
        common prefix."""
        link = wire.is_link_scope(dst)
        temporary = self.stack.config.ipv6_temporary
        best: Ipv6Address | None = None
        best_key = (-1, -1, -1, -1)
        for a in iface.ipv6:
            if not a.usable:
                continue
            same_scope = wire.is_link_local(a.addr) == link
            common = 128 - (int.from_bytes(a.addr, "big")
                            ^ int.from_bytes(dst, "big")).bit_length()
            # Rule 7: temporary addresses first when they are asked for (RFC 8981).
            key = (int(same_scope), int(a.state == "preferred"),
                   int(temporary and a.origin == "temporary"), common)
            if key > best_key:
                best, best_key = a, key
        return best.addr if best is not None else None

    def route_iface(self, dst: bytes, iface: Interface | None = None) -> Interface | None:
        """The interface a datagram to ``dst`` leaves by (as ``output`` picks it)."""
        if iface is not None:
            return iface
        route = self.routes.lookup(dst)
        if route is not None:
            return route.iface
        if dst[0] == 0xFF or wire.is_link_local(dst):
            return next((i for i in self.stack.interfaces if i.ipv6), None)
        return None

    def source_address(self, dst: bytes, iface: Interface | None = None) -> bytes | None:
        """The source ``output`` would give a datagram to ``dst``: ``dst`` itself
        when it is ours, else RFC 6724's choice on the outgoing interface."""
        if dst in self.stack.local_addresses or dst == wire.LOOPBACK:
            return dst
        out = self.route_iface(dst, iface)
        return self.source_for(out, dst) if out is not None else None

    def route_mtu(self, dst: bytes) -> int:
        """The path MTU towards ``dst`` (65535 for our own addresses, 1280
        without a route)."""
        if dst in self.stack.local_addresses or dst == wire.LOOPBACK:
            return 65535
        out = self.route_iface(dst)
        return self.path_mtu(dst, out) if out is not None else wire.MIN_MTU

    # -- groups (RFC 4291 2.7, MLDv2 RFC 3810) -------------------------------------------
    def join(self, iface: Interface, group: bytes) -> None:
        groups = self.groups.setdefault(iface, {})
        count = groups.get(group, 0)
        groups[group] = count + 1
        if count:
            return
        iface.multicast_macs.add(wire.multicast_mac(group))
        if group != wire.ALL_NODES and self.stack.started:
            self.report_state_change(iface, [group], mld.CHANGE_TO_EXCLUDE)

    def leave(self, iface: Interface, group: bytes) -> None:
        groups = self.groups.get(iface, {})
        count = groups.get(group, 0)
        if count > 1:
            groups[group] = count - 1
            return
        if not count:
            return
        del groups[group]
        mac = wire.multicast_mac(group)
        if not any(wire.multicast_mac(g) == mac for g in groups):
            iface.multicast_macs.discard(mac)
        if group != wire.ALL_NODES and self.stack.started:
            self.report_state_change(iface, [group], mld.CHANGE_TO_INCLUDE)

    def report_state_change(self, iface: Interface, groups: list[bytes], kind: int) -> None:
        """RFC 3810 6.1: a state-change report, sent Robustness Variable (2)
        times, ``MLD_UNSOLICITED_INTERVAL`` apart (Linux: 1 s). With an MLDv1
        querier on the link, MLDv1's messages instead (``_v1_state_change``)."""
        if self.mld_v1(iface):
            self._v1_state_change(iface, groups, kind == mld.CHANGE_TO_EXCLUDE)
            return
        self.report(iface, groups, kind)

        def again() -> None:
            if not self.mld_v1(iface):   # (an MLDv1 querier since: RFC 3810 8.2.1)
                self.report(iface, groups, kind)

        self.stack.timers.call_later(MLD_UNSOLICITED_INTERVAL, again)

    def report(self, iface: Interface, groups: list[bytes], kind: int) -> None:
        """An MLDv2 report (RFC 3810 5.2) so snooping switches pass our groups'
        traffic; from the link-local address, or :: before it is usable."""
        groups = [g for g in groups if _reportable(g)]
        if iface.raw_ip or not groups:
            return
        src = self._mld_source(iface)
        records = [mld.AddressRecord(kind, g, (), b"") for g in groups]
        packet = mld.build_v2_report_packet(src, records)
        self.stack.counters["mld.tx_report"] += 1
        self.stack.send_frame(iface, wire.multicast_mac(wire.ALL_MLDV2_ROUTERS),
                              ethernet.ETH_IPV6, packet)

    def _mld_source(self, iface: Interface) -> bytes:
        return next((a.addr for a in iface.ipv6 if a.usable and wire.is_link_local(a.addr)),
                    wire.UNSPECIFIED)

    # -- MLDv1 compatibility (RFC 3810 8.2.1, RFC 2710) ----------------------------------
    def mld_v1(self, iface: Interface) -> bool:
        """Whether ``iface`` is in MLDv1 compatibility mode: an MLDv1 query was
        heard there within ``MLD_OLDER_QUERIER_TIMEOUT``."""
        until = self.mld_v1_until.get(iface)
        if until is None:
            return False
        if until > self.stack.now:
            return True
        del self.mld_v1_until[iface]
        return False

    def _v1_state_change(self, iface: Interface, groups: list[bytes], joined: bool) -> None:
        """MLDv1's join (a Report at once, another within the Unsolicited
        Report Interval) or leave (a Done to all-routers when our report was
        the last one heard: RFC 2710 4)."""
        for group in groups:
            if not _reportable(group):
                continue
            key = (iface, group)
            if joined:
                self._v1_send(iface, group, mld.V1_REPORT)
                self._v1_schedule(iface, group, rand.delay(MLD_V1_UNSOLICITED_INTERVAL))
                continue
            timer = self._mld_v1_timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            if key in self._mld_last_reporter:
                self._mld_last_reporter.discard(key)
                self._v1_send(iface, group, mld.V1_DONE)

    def _v1_schedule(self, iface: Interface, group: bytes, delay: float) -> None:
        """A v1 Report for ``group`` after ``delay``, unless one is due sooner."""
        key = (iface, group)
        timers = self.stack.timers
        pending = self._mld_v1_timers.get(key)
        if pending is not None:
            if pending.when <= timers.now + delay:
                return
            pending.cancel()
        self._mld_v1_timers[key] = timers.call_later(
            delay, lambda: self._v1_due(iface, group))

    def _v1_due(self, iface: Interface, group: bytes) -> None:
        self._mld_v1_timers.pop((iface, group), None)
        if group in self.groups.get(iface, {}) and self.mld_v1(iface):
            self._v1_send(iface, group, mld.V1_REPORT)

    def _v1_send(self, iface: Interface, group: bytes, kind: int) -> None:
        """An MLDv1 Report (to the group) or Done (to all-routers), RFC 2710 3."""
        if iface.raw_ip:
            return
        src = self._mld_source(iface)
        dst = group if kind == mld.V1_REPORT else wire.ALL_ROUTERS
        packet = mld.packet(src, dst, mld.build_v1(src, dst, kind, group))
        if kind == mld.V1_REPORT:
            self._mld_last_reporter.add((iface, group))
            self.stack.counters["mld.tx_v1_report"] += 1
        else:
            self.stack.counters["mld.tx_v1_done"] += 1
        self.stack.send_frame(iface, wire.multicast_mac(dst), ethernet.ETH_IPV6, packet)

    # -- input -----------------------------------------------------------------------
    def add_fast_protocol(self, nh: int, handler: FastHandler, full: object) -> None:
        """Give next header ``nh`` a fast handler standing in for ``full``, the
        handler its protocol put in ``protocols`` (as ``Ipv4.add_fast_protocol``:
        used only while that entry is still ``full``). The stack then tries
        ``fast_input`` on every IPv6 frame before its full path."""
        self.fast_protocols[nh] = (handler, full)
        self.stack.fast_receive6 = self.fast_input

    def fast_input(self, iface: Interface, frame: bytes | memoryview, csum_ok: bool) -> int:
        """``Ipv4.fast_input``'s twin: an untagged Ethernet frame to our MAC
        carrying an IPv6 packet whose next header (no extension headers) has a
        fast handler, hop limit above 0, from a unicast source that is not ours
        (not multicast, not in ::/80: neither ::, ::1 nor v4-mapped; those go to
        the full path, which drops and counts what it refuses) to one of
        our usable unicast addresses (``stack.local_addresses``: never a
        tentative or duplicate one, RFC 4862 5.4, as ``input`` decides), whole
        in the frame (Ethernet padding cut). One ``struct`` call, then the
        handler (``(src, dst, payload, iface, traffic class, csum_ok) -> int``,
        see ``ipv4.FastHandler``). Whatever fails a check, and whatever the
        handler leaves, returns 0 or 2 before any state changed, and
        ``Stack.receive`` runs the full path on the frame: these checks are a
        subset of ``Stack.receive``'s and ``input``'s (``wire.parse``,
        ``check_addresses``, the land and destination checks)."""
        n = len(frame)
        if n < 62 or iface.vlan is not None:
            return 0
        device = iface.device
        if device.raw_ip or (n > iface.mtu + 18 and not (device.gro or csum_ok)):
            return 0
        dmac, smac, etype, vtf, plen, nh, hop, src, dst = _FAST_RX.unpack_from(frame)
        if etype != 0x86DD or vtf >> 28 != 6 or dmac != iface.mac or smac == dmac \
                or plen + 54 > n or not hop:
            return 0
        entry = self.fast_protocols.get(nh)
        if entry is None:
            return 0
        handler, full = entry
        if self.protocols.get(nh) is not full:
            return 0
        stack = self.stack
        local = stack.local_addresses
        if dst not in local or src in local or src[0] == 0xFF or src[:10] == _ZERO80:
            return 0
        done = handler(src, dst, memoryview(frame)[54:54 + plen], iface, (vtf >> 20) & 0xFF,
                       csum_ok)
        if done == 1:
            stack.counters["ipv6.rx"] += 1
        return done

    def input(self, iface: Interface, eth: ethernet.EthernetHeader, payload: memoryview,
              csum_ok: bool = False) -> None:
        """The ethertype handler. ``csum_ok`` (the device vouched for the
        transport checksum, or left it partial: a TAP's NEEDS_CSUM) goes to
        TCP and UDP with the packet, unless it was reassembled."""
        if not eth.dst[0] & 1:
            self._input(iface, eth, payload, csum_ok)
            return
        self.rx_link_multicast = True
        try:
            self._input(iface, eth, payload, csum_ok)
        finally:
            self.rx_link_multicast = False

    def _input(self, iface: Interface, eth: ethernet.EthernetHeader, payload: memoryview,
               csum_ok: bool) -> None:
        stack = self.stack
        counters = stack.counters
        header, data = wire.parse(payload)
        counters["ipv6.rx"] += 1
        src = header.src
        dst = header.dst
        local_delivery = eth.src == eth.dst   # from queue_local
        wire.check_addresses(src, dst, local_delivery)
        local = stack.local_addresses
        if src in local and not local_delivery:
            counters["ipv6.land"] += 1          # our own address from the wire
            return
        if dst[0] == 0xFF:
            joined = self.groups.get(iface)
            if not joined or dst not in joined:
                counters["ipv6.multicast_not_joined"] += 1
                return
        elif dst not in local and (iface not in self.accept_any or eth.dst[0] & 1) \
                and not (local_delivery and dst == wire.LOOPBACK):
            counters["ipv6.not_for_us"] += 1   # includes tentative addresses (RFC 4862 5.4)
            return
        nh = header.next_header
        self.rx_router_alert = None
        self.rx_fragmented = False
        if nh in _DIRECT:
            if nh == wire.PROTO_TCP and (src == wire.UNSPECIFIED or eth.dst[0] & 1):
                # See _deliver.
                counters["ipv6.tcp_link_multicast" if eth.dst[0] & 1
                         else "ipv6.tcp_from_unspecified"] += 1
                return
            handler = self.protocols.get(nh)
            if handler is not None:
                handler(header, data, iface, payload, csum_ok)
                return
            offset = 0
            pointer = 6
        else:
            chain = ipv6ext.walk(nh, data)
            if chain.problem is not None:
                self._problem(header, payload, chain.problem, eth)
                return
            if chain.rh0:
                counters["ipv6.rh0_ignored"] += 1   # segments left 0: processed past it
            self.rx_router_alert = chain.router_alert
            frag = chain.fragment
            if frag is not None and not frag.atomic:
                self._fragment(iface, eth, header, data, payload, chain)
                return
            if frag is not None:
                counters["ipv6.atomic_fragment"] += 1   # RFC 6946: whole on its own
                self.rx_fragmented = True
            nh = chain.upper
            offset = chain.offset
            pointer = chain.nh_pointer
        self._deliver(iface, eth, header, nh, data[offset:], payload, pointer, csum_ok)

    def _deliver(self, iface: Interface, eth: ethernet.EthernetHeader,
                 header: wire.Ipv6Header, upper: int, data: memoryview, packet: memoryview,
                 pointer: int, csum_ok: bool = False) -> None:
        counters = self.stack.counters
        if upper == wire.PROTO_TCP and header.src == wire.UNSPECIFIED:
            # RFC 4291 2.5.2: :: is the source of a host with no address yet
            # (DAD, RS, MLD), never of a connection; Linux's TCP neither
            # answers it nor resets it (a reply to :: is refused on output).
            counters["ipv6.tcp_from_unspecified"] += 1
            return
        if upper == wire.PROTO_TCP and eth.dst[0] & 1:
            # A connection is between two unicast link-layer addresses: TCP in a
            # link-layer broadcast or multicast frame is dropped, neither
            # answered nor reset (Linux's tcp_v6_rcv takes only PACKET_HOST).
            counters["ipv6.tcp_link_multicast"] += 1
            return
        handler = self.protocols.get(upper)
        if handler is not None:
            handler(header, data, iface, packet, csum_ok)
            return
        if upper == wire.PROTO_NONE:
            counters["ipv6.no_next_header"] += 1   # RFC 8200 4.7: nothing to deliver
            return
        counters["ipv6.unknown_next_header"] += 1
        # RFC 8200 4: Parameter Problem code 1 pointing at the Next Header field.
        icmp6 = self.stack.icmp6
        if icmp6 is not None:
            icmp6.send_error(header, packet, wire_icmp6.PARAMETER_PROBLEM,
                             wire_icmp6.UNRECOGNIZED_NEXT_HEADER, pointer,
                             bool(eth.dst[0] & 1))

    def _problem(self, header: wire.Ipv6Header, packet: memoryview, problem: ipv6ext.Problem,
                 eth: ethernet.EthernetHeader) -> None:
        """A packet ``ipv6ext.walk`` refused: counted, and a Parameter Problem
        when its action says so (RFC 8200 4.2: bits 11 never to a multicast
        destination)."""
        self.stack.counters[problem.reason] += 1
        icmp6 = self.stack.icmp6
        if icmp6 is None or problem.action == ipv6ext.Action.DISCARD:
            return
        if problem.action == ipv6ext.Action.DISCARD_ICMP_UNLESS_MULTICAST and \
                header.dst[0] == 0xFF:
            return
        icmp6.send_error(header, packet, wire_icmp6.PARAMETER_PROBLEM, problem.code,
                         problem.pointer, bool(eth.dst[0] & 1))

    def _fragment(self, iface: Interface, eth: ethernet.EthernetHeader,
                  header: wire.Ipv6Header, data: memoryview, packet: memoryview,
                  chain: ipv6ext.Chain) -> None:
        """RFC 8200 4.5: reassemble, then walk the rest of the chain."""
        frag = chain.fragment
        assert frag is not None
        unfrag = chain.unfragmentable
        got = self.reassembly.add(
            (header.src, header.dst, wire.PROTO_FRAGMENT, frag.ident), frag.offset,
            frag.more, data[chain.offset:],
            _FragHead(header, wire.HEADER_LEN + unfrag, wire.HEADER_LEN + len(data)), packet)
        if got is None:
            return
        whole = got[0]
        # The reassembled packet: the first fragment's unfragmentable part, its
        # last Next Header now naming what the Fragment header named.
        buf = bytearray(wire.header_only(header.src, header.dst, header.next_header,
                                         unfrag + len(whole), header.hop_limit,
                                         header.traffic_class, header.flow_label))
        buf += data[:unfrag]
        buf += whole
        buf[chain.nh_pointer] = chain.upper
        full = memoryview(bytes(buf))
        rest = full[wire.HEADER_LEN + unfrag:]
        chain2 = ipv6ext.walk(chain.upper, rest, base=wire.HEADER_LEN + unfrag,
                              nh_pointer=chain.nh_pointer, first=False)
        if chain2.problem is not None:
            self._problem(header, full, chain2.problem, eth)
            return
        if chain2.fragment is not None:
            self.stack.counters["ipv6.nested_fragment"] += 1
            return
        header = header._replace(payload_len=len(full) - wire.HEADER_LEN)
        self.rx_fragmented = True
        self._deliver(iface, eth, header, chain2.upper, rest[chain2.offset:], full,
                      chain2.nh_pointer)

    def _reasm_timeout(self, first: tuple[Any, bytes]) -> None:
        """RFC 8200 4.5: Time Exceeded code 1, only when the first fragment came."""
        head, raw = first
        icmp6 = self.stack.icmp6
        if icmp6 is not None:
            icmp6.send_error(head.header, memoryview(raw), wire_icmp6.TIME_EXCEEDED,
                             wire_icmp6.REASSEMBLY_TIME_EXCEEDED, 0, False)

    def _icmp6_input(self, header: wire.Ipv6Header, data: memoryview, iface: Interface,
                     packet: memoryview, csum_ok: bool = False) -> None:
        """ICMPv6: neighbour discovery and MLD here, the rest in ``stack.icmp6``."""
        counters = self.stack.counters
        icmp, body = wire_icmp6.parse(data, header.src, header.dst)
        counters["icmp6.rx"] += 1
        t = icmp.type
        if t in _NDP_TYPES:
            if self.rx_fragmented:
                # RFC 6980 5: ND messages are never fragmented; a fragmented
                # one is silently ignored (Linux's suppress_frag_ndisc).
                counters["ndp.fragmented"] += 1
                return
            self.ndp.input(header, icmp, body, iface)
        elif t in _MLD_TYPES:
            self._mld_input(header, icmp, body, iface)
        elif self.stack.icmp6 is not None:
            if t == wire_icmp6.ECHO_REQUEST and header.src == wire.UNSPECIFIED:
                counters["icmp6.echo_from_unspecified"] += 1   # no answer can reach ::
                return
            self.stack.icmp6.input(header, icmp, body, iface, packet)
        else:
            counters["icmp6.module_not_loaded"] += 1

    def _mld_input(self, header: wire.Ipv6Header, icmp: wire_icmp6.Icmp6Header,
                   body: memoryview, iface: Interface) -> None:
        """A query is answered with a current-state report of our groups (RFC
        3810 6.2, without the random delay's spread: one report); reports of
        other hosts are ignored (MLDv2 hosts do not suppress).

        An MLDv1 query (RFC 3810 8.2.1, as Linux) puts the interface in MLDv1
        compatibility mode for ``MLD_OLDER_QUERIER_TIMEOUT``: meanwhile
        queries (an MLDv2 one too) are answered by an MLDv1 Report per group,
        each after a random delay up to the query's Maximum Response Delay,
        and another host's v1 Report for a group cancels ours (RFC 2710 4)."""
        msg = mld.parse(icmp, body)
        mld.check_ip(icmp.type, header.src, header.hop_limit, self.rx_router_alert)
        counters = self.stack.counters
        if isinstance(msg, mld.MldV1Message) and msg.type == mld.V1_REPORT:
            key = (iface, msg.group)
            timer = self._mld_v1_timers.pop(key, None)
            if timer is not None:
                timer.cancel()
                counters["mld.v1_report_suppressed"] += 1
            self._mld_last_reporter.discard(key)
            counters["mld.report_heard"] += 1
            return
        if not isinstance(msg, mld.MldQuery):
            counters["mld.report_ignored"] += 1
            return
        counters["mld.query"] += 1
        group = msg.group
        groups = [g for g in self.groups.get(iface, {}) if _reportable(g)
                  and (group == wire.UNSPECIFIED or g == group)]
        if msg.version == 1:
            counters["mld.v1_query"] += 1
            self.mld_v1_until[iface] = self.stack.now + MLD_OLDER_QUERIER_TIMEOUT
        if self.mld_v1(iface):
            for g in groups:
                self._v1_schedule(iface, g, rand.delay(msg.max_response_ms / 1000))
            return
        self.report(iface, groups, mld.MODE_IS_EXCLUDE)

    # -- output ------------------------------------------------------------------------
    def output(self, dst: bytes, proto: int, payload: bytes | bytearray | memoryview,
               src: bytes | None = None, ttl: int | None = None, tos: int = 0,
               df: bool | None = False, iface: Interface | None = None, flow: int = 0) -> int:
        """Send one datagram (``ttl`` is the hop limit, ``tos`` the traffic class,
        ``df`` forbids fragmenting it (None as True: IPv6 locks no path MTU),
        ``flow`` is the flow label, RFC 6437).
        Returns 0, or an errno (nothing raised)."""
        stack = self.stack
        counters = stack.counters
        hop = self.hop_limit if ttl is None else ttl
        if iface is None:
            # The per-destination cache (stack/destination.py), shared with IPv4.
            fast = self._destination(dst, wire.HEADER_LEN + len(payload))
            if fast is not None and (src is None or src == fast.src):
                counters["ipv6.tx"] += 1
                fast.iface.device.send(fast.eth + wire.build(src or fast.src, dst, proto,
                                                             payload, hop, tos, flow))
                return 0
        if dst == wire.UNSPECIFIED or wire.is_v4_mapped(dst):
            counters["ipv6.tx_martian"] += 1
            return errno.ENETUNREACH
        if src is not None and (len(src) != 16 or (src == wire.LOOPBACK
                                                   and dst != wire.LOOPBACK)):
            counters["ipv6.tx_bad_source"] += 1    # IPv4's, or ::1 leaving the host
            return errno.EINVAL
        if len(payload) > wire.MAX_PAYLOAD:
            counters["ipv6.tx_too_big"] += 1
            return errno.EMSGSIZE
        if dst in stack.local_addresses or dst == wire.LOOPBACK:
            local_iface = stack.local_iface(dst)
            if local_iface is None:
                return errno.ENETUNREACH
            stack.queue_local(wire.build(src or dst, dst, proto, payload, hop, tos, flow),
                              local_iface)
            counters["ipv6.tx_loopback"] += 1
            return 0
        next_hop = dst
        route = None
        if dst[0] == 0xFF or wire.is_link_local(dst):
            if iface is None and src is not None and wire.is_link_local(src):
                iface = self.stack.local_iface(src)      # RFC 4007: a link-local source's own link
            if iface is None:
                route = self.routes.lookup(dst)
                iface = route.iface if route is not None else next(
                    (i for i in stack.interfaces if i.ipv6), None)
            if iface is None:
                counters["ipv6.no_route"] += 1
                return errno.ENETUNREACH
        else:
            route, iface, next_hop = self.routes.via(dst, iface)
            if iface is None:
                counters["ipv6.no_route"] += 1
                return errno.ENETUNREACH
        if src is None:
            src = self.source_for(iface, dst)
            if src is None:
                counters["ipv6.no_source"] += 1
                return errno.EADDRNOTAVAIL
        counters["ipv6.tx"] += 1
        mtu = self.path_mtu(dst, iface)
        if wire.HEADER_LEN + len(payload) <= mtu:
            self._transmit(iface, next_hop, dst,
                           wire.build(src, dst, proto, payload, hop, tos, flow))
            if route is not None and route.iface is iface and dst[0] != 0xFF \
                    and not iface.raw_ip and src in stack.local_addresses:
                stack.destinations.remember(dst, self.routes, route, iface, src, mtu, self.ndp,
                                            next_hop, ethernet.ETH_IPV6)
            return 0
        if df or df is None:
            counters["ipv6.tx_needs_fragmentation"] += 1
            return errno.EMSGSIZE
        # RFC 8200 4.5; identifications unpredictable (RFC 7739).
        ident = int.from_bytes(os.urandom(4), "big")
        for first_nh, piece in ipv6ext.fragment(proto, payload, mtu, ident):
            self._transmit(iface, next_hop, dst,
                           wire.build(src, dst, first_nh, piece, hop, tos, flow))
            counters["ipv6.tx_fragments"] += 1
        return 0

    def offload_path(self, dst: bytes, src: bytes) -> OffloadPath | None:
        """A TSO path to ``dst`` (as ``Ipv4.offload_path``): a unicast route
        through an ``offload`` device (no VLAN) whose next hop's MAC is known
        and REACHABLE or being probed; None otherwise (``output`` then
        resolves and probes)."""
        stack = self.stack
        if dst[0] == 0xFF or dst in stack.local_addresses:
            return None
        route = self.routes.lookup(dst)
        if route is None:
            return None
        iface = route.iface
        if wire.is_link_local(dst) and wire.is_link_local(src):
            iface = stack.local_iface(src) or iface     # the link of the source (RFC 4007)
        if src not in stack.local_addresses and iface not in self.accept_any:
            return None
        device = iface.device
        if not device.offload or iface.raw_ip or iface.vlan is not None:
            return None
        n = self.ndp.caches.get(iface, {}).get(route.gateway or dst)
        now = stack.now
        # REACHABLE and fresh, or DELAY/PROBE (reachability being confirmed
        # already); a STALE entry goes through ``output`` once, which starts NUD.
        if n is None or n.mac is None or not n.sendable(now, self.ndp.reachable):
            return None
        n.used = now
        eth = ethernet.build(n.mac, iface.mac, ethernet.ETH_IPV6, b"")
        return OffloadPath(iface, device, eth, len(eth) + wire.HEADER_LEN,
                           self.path_mtu(dst, iface) - wire.HEADER_LEN)

    def output_offload(self, path: OffloadPath, src: bytes, dst: bytes,
                       segment: bytes | bytearray, gso_size: int, tcp_hlen: int,
                       tos: int = 0, flow: int = 0, hop: int | None = None) -> None:
        """One TCP segment whose checksum field holds the pseudo-header sum, in
        one device write; ``gso_size`` makes it a TSO super-segment (the
        device marks it TCPV6). ``hop``: the hop limit (None: the stack's)."""
        counters = self.stack.counters
        counters["ipv6.tx"] += 1
        if gso_size:
            counters["ipv6.tx_tso"] += 1
        head = wire.header_only(src, dst, wire.PROTO_TCP, len(segment),
                                self.hop_limit if hop is None else hop, tos, flow)
        start = path.csum_start
        # Ethernet + IPv6 + segment joined in one copy (as IPv4's output).
        path.device.send_offload(b"".join((path.eth, head, segment)), gso_size, start, 16,
                                 start + tcp_hlen)

    def path_mtu(self, dst: bytes, iface: Interface) -> int:
        mtu = self.link_mtu.get(iface, iface.mtu)
        learned = self.pmtu.get(dst)
        if learned is not None:
            if learned[1] > self.stack.now:
                return min(mtu, learned[0])
            del self.pmtu[dst]
        return mtu

    def lower_pmtu(self, dst: bytes, mtu: int) -> None:
        """Packet Too Big (RFC 8201 4): the path MTU to ``dst`` drops, never below
        1280 (RFC 8021: no atomic fragments for smaller figures)."""
        mtu = max(wire.MIN_MTU, mtu)
        old = self.pmtu.get(dst)
        if old is not None and old[0] <= mtu and old[1] > self.stack.now:
            return
        if len(self.pmtu) >= PMTU_MAX_ENTRIES and dst not in self.pmtu:
            del self.pmtu[next(iter(self.pmtu))]
        self.pmtu[dst] = (mtu, self.stack.now + self.stack.config.ipv6_pmtu_expires)
        self.stack.destinations.forget(dst)
        self.stack.counters["ipv6.pmtu_lowered"] += 1

    def _transmit(self, iface: Interface, next_hop: bytes, dst: bytes, packet: bytes) -> None:
        stack = self.stack
        if iface.raw_ip:
            stack.send_frame(iface, b"", ethernet.ETH_IPV6, packet)
        elif dst[0] == 0xFF:
            stack.send_frame(iface, wire.multicast_mac(dst), ethernet.ETH_IPV6, packet)
        else:
            self.ndp.resolve_and_send(iface, next_hop, packet)

    # -- for ctl ----------------------------------------------------------------------
    def describe_addresses(self, iface: Interface) -> list[dict[str, object]]:
        now = self.stack.now

        def left(t: float) -> float | None:
            return None if t == INF else round(max(0.0, t - now), 3)

        return [{"address": ip_str(a.addr), "prefixlen": a.prefixlen, "origin": a.origin,
                 "state": a.state, "valid_lifetime": left(a.valid_until),
                 "preferred_lifetime": left(a.preferred_until)} for a in iface.ipv6]


def parse_prefix6(text: str) -> tuple[bytes, int]:
    """'2001:db8::1/64' -> (packed, 64); ValueError naming the problem."""
    addr, sep, plen = text.partition("/")
    try:
        packed = ip_bytes(addr.strip())
    except (ValueError, OSError):
        raise ValueError(f"not an IPv6 address: {addr!r}") from None
    if len(packed) != 16:
        raise ValueError(f"not an IPv6 address: {addr!r}")
    if not sep:
        return packed, 128
    if not plen.isdigit() or not 0 <= int(plen) <= 128:
        raise ValueError(f"bad prefix length in {text!r} (want 0..128)")
    return packed, int(plen)


def install(stack: Stack) -> Ipv6:
    ipv6 = Ipv6(stack)
    stack.ipv6 = ipv6
    return ipv6


def _reportable(group: bytes) -> bool:
    """Whether MLD speaks of ``group``: never of all-nodes, nor of a group of
    scope 0 or 1 (RFC 3810 6, RFC 2710 5)."""
    return group != wire.ALL_NODES and group[1] & 0x0F > 1
