"""IPv4 input and output (RFC 791, RFC 1122 3.2.1, 3.3).

Input delivers locally only: forwarding is off. A datagram from a multicast,
broadcast or limited source, or from one of our own addresses (LAND), is
dropped. Output routes, picks the source, fragments to the interface MTU, and
hands the packet to ARP (or straight to the wire for broadcast and multicast).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.core import rand
from femtotcp.stack.device import OffloadPath
from femtotcp.stack.mcast import NO_STATE, IfGroup, State
from femtotcp.stack.reassembly import Reassembler
from femtotcp.wire import Malformed, ethernet
from femtotcp.wire import ipv4 as wire_ipv4

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.routes import Route
    from femtotcp.stack.stack import Stack

ANY = b"\x00\x00\x00\x00"
IDENT_BUCKETS = 2048
BROADCAST = b"\xff\xff\xff\xff"
ALL_HOSTS = b"\xe0\x00\x00\x01"
_NONE: dict[bytes, IfGroup] = {}


_OPTION_PROBLEMS = frozenset({"ipv4.bad_option_length", "ipv4.bad_option_pointer",
                              "ipv4.duplicate_option"})
_HEADER = struct.Struct("!BBHHHBBH4s4s")
#: What the fast path reads of an Ethernet + IPv4 header, in one call: MACs,
#: ethertype, version/IHL, TOS, total length, flags/fragment offset, protocol,
#: addresses.
_FAST_RX = struct.Struct("!6s6sHBBH2xHxB2x4s4s")
#: The same IPv4 header as three words: their sum is the header's modulo 0xFFFF.
_HDR_WORDS = struct.Struct("!QQI")

#: A protocol's fast handler: ``(src, dst, payload, iface, tos, csum_ok) -> int``,
#: 1 when it consumed the datagram, 2 when it did not but verified its
#: transport checksum, 0 when it did not (the full path runs, from the frame).
FastHandler = Callable[[bytes, bytes, memoryview, "Interface", int, bool], int]


#: Linux's ip_rt_min_pmtu: a Fragmentation Needed naming less sets the path
#: MTU to this (or the old one, when lower), locked: DF is then not set.
MIN_PMTU = 552
#: Destinations with a learned path MTU at most (the oldest go first).
PMTU_MAX_ENTRIES = 1024
#: IP_MTU_DISCOVER's values (Linux's IP_PMTUDISC_*).
PMTUDISC_DONT, PMTUDISC_WANT, PMTUDISC_DO, PMTUDISC_PROBE, PMTUDISC_INTERFACE, \
    PMTUDISC_OMIT = range(6)


def is_multicast(addr: bytes) -> bool:
    return 224 <= addr[0] <= 239


def multicast_mac(addr: bytes) -> bytes:
    """RFC 1112 6.4: 01:00:5e + low 23 bits of the group."""
    return bytes((0x01, 0x00, 0x5E, addr[1] & 0x7F, addr[2], addr[3]))


class Ipv4:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.reassembly = Reassembler(stack, "ipv4", self._reasm_timeout)
        # IP IDs come from per-destination counters (2048 buckets chosen by a
        # keyed hash, random starts), so a peer learns nothing from them about
        # our traffic to others: no idle-scan relay (RFC 7739 5.3, as Linux).
        self.idents = [rand.randbelow(0x10000) for _ in range(IDENT_BUCKETS)]
        self._ident_key = os.urandom(8)
        self._destination = stack.destinations.get
        #: Path MTUs learned from Fragmentation Needed (RFC 1191):
        #: destination -> (MTU, when it expires, locked below ``MIN_PMTU``).
        self.pmtu: dict[bytes, tuple[int, float, bool]] = {}
        #: Multicast groups every interface is in (all-hosts, RFC 1112 4).
        self.groups: set[bytes] = {ALL_HOSTS}
        #: Groups joined per interface, each with its users and their source
        #: filters (``mcast.IfGroup``: several sockets, one membership).
        self.joined: dict[Interface, dict[bytes, IfGroup]] = {}
        #: IGMP's hook (``stack/igmp.py``): ``(iface, group, old, new)`` when an
        #: interface's filter state for a group changed (``mcast.NO_STATE``:
        #: not a member); None without the module.
        self.on_group_change: Callable[[Interface, bytes, State, State], None] | None = None
        #: Interfaces whose unicast datagrams to any address are taken as ours
        #: (a gateway terminates its guest's flows: it is the guest's router).
        self.accept_any: set[Interface] = set()
        #: Interfaces whose DHCP client runs: while such an interface has no
        #: address, unicast to any address is taken as ours (RFC 2131 4.1: the
        #: offer may come before we know the address). An interface with no
        #: IPv4 address and no DHCP (an IPv6-only host) takes none.
        self.leasing: set[Interface] = set()
        #: Protocol -> (fast handler, the full handler it stands for in
        #: ``stack.ip_protocols``): ``add_fast_protocol``; see ``fast_input``.
        self.fast_protocols: dict[int, tuple[FastHandler, object]] = {}
        stack.ethertypes[ethernet.ETH_IPV4] = self.input
        stack.set_ip_output(4, self.output)

    # -- groups (RFC 1112 4, RFC 3376 3) ---------------------------------------------
    def join(self, iface: Interface, group: bytes, include: bool = False) -> None:
        """One more user of ``group`` on ``iface``, with an empty filter in
        EXCLUDE mode (any source) or INCLUDE mode (none yet); the first one
        makes the interface a member (its MAC accepted)."""
        groups = self.joined.setdefault(iface, {})
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = IfGroup()
            iface.multicast_macs.add(multicast_mac(group))
        old = entry.state() if entry.users else NO_STATE
        entry.add_user(include)
        self._changed(iface, group, old, entry.state())

    def leave(self, iface: Interface, group: bytes, include: bool = False,
              sources: tuple[bytes, ...] = ()) -> None:
        """One user fewer (with its filter); the last one's leave ends the
        membership."""
        groups = self.joined.get(iface, _NONE)
        entry = groups.get(group)
        if entry is None:
            return
        old = entry.state()
        entry.del_user(include, sources)
        if entry.users <= 0:
            del groups[group]
            mac = multicast_mac(group)
            if not any(multicast_mac(g) == mac for g in groups):
                iface.multicast_macs.discard(mac)
            self._changed(iface, group, old, NO_STATE)
            return
        self._changed(iface, group, old, entry.state())

    def change_sources(self, iface: Interface, group: bytes, include: bool,
                       sources: tuple[bytes, ...], add: bool) -> None:
        """One user's filter (mode ``include``) gains or loses ``sources``."""
        entry = self.joined.get(iface, _NONE).get(group)
        if entry is None:
            return
        old = entry.state()
        if add:
            entry.add_sources(include, sources)
        else:
            entry.del_sources(include, sources)
        self._changed(iface, group, old, entry.state())

    def switch(self, iface: Interface, group: bytes, include: bool) -> None:
        """One user's empty filter changes mode (Linux's ip_mc_source)."""
        entry = self.joined.get(iface, _NONE).get(group)
        if entry is None:
            return
        old = entry.state()
        entry.excl += -1 if include else 1
        self._changed(iface, group, old, entry.state())

    def state(self, iface: Interface, group: bytes) -> State:
        entry = self.joined.get(iface, _NONE).get(group)
        return entry.state() if entry is not None else NO_STATE

    def _changed(self, iface: Interface, group: bytes, old: State, new: State) -> None:
        if old != new and self.on_group_change is not None:
            self.on_group_change(iface, group, old, new)

    def is_member(self, iface: Interface, group: bytes) -> bool:
        """Whether ``iface`` takes datagrams to ``group``."""
        return group in self.groups or group in self.joined.get(iface, _NONE)

    # -- input -------------------------------------------------------------------
    def add_fast_protocol(self, proto: int, handler: FastHandler, full: object) -> None:
        """Give ``proto`` a fast handler standing in for ``full``, the handler
        the protocol put in ``stack.ip_protocols``: it is used only while that
        entry is still ``full`` (whoever wraps or replaces the entry, as the
        gateway does for ICMP, sees every datagram again). The stack then tries
        ``fast_input`` on every frame before its full path."""
        self.fast_protocols[proto] = (handler, full)
        self.stack.fast_receive = self.fast_input

    def fast_input(self, iface: Interface, frame: bytes | memoryview, csum_ok: bool) -> int:
        """The common case without header objects: an untagged Ethernet frame to
        our MAC carrying an unfragmented IPv4 datagram without options, from a
        plain unicast source to one of our unicast addresses, for a protocol
        with a fast handler. Fixed offsets, one ``struct`` call, the header
        checksum, then the handler (see ``FastHandler``). Whatever fails a
        check, and whatever the handler leaves, returns 0 or 2 before any state
        changed: ``Stack.receive`` then runs the full path on the frame, which
        decides and counts as always (the checks here are a subset of
        ``Stack.receive``'s and ``input``'s, so no frame takes the fast path
        that the full path would drop)."""
        n = len(frame)
        # Ethernet and IPv4 headers (34 bytes: what is read below); each
        # handler checks its own header's length (a 1-byte UDP datagram's
        # frame is 43 bytes: a TAP hands frames over unpadded).
        if n < 34 or iface.vlan is not None:
            return 0
        device = iface.device
        if device.raw_ip or (n > iface.mtu + 18 and not (device.gro or csum_ok)):
            return 0
        dmac, smac, etype, vihl, tos, total, flags_frag, proto, src, dst = \
            _FAST_RX.unpack_from(frame)
        if etype != 0x0800 or vihl != 0x45 or flags_frag & 0x3FFF or dmac != iface.mac \
                or smac == dmac or total + 14 > n or total < 20:
            return 0
        entry = self.fast_protocols.get(proto)
        if entry is None:
            return 0
        handler, full = entry
        stack = self.stack
        if stack.ip_protocols.get(proto) is not full:
            return 0
        local = stack.local_addresses
        first = src[0]
        # (local_addresses never holds 127/8: add_address refuses it.)
        if dst not in local or src in local or first >= 224 or first == 127 or first == 0 \
                or src in stack.broadcast_addresses:
            return 0
        a, b, c = _HDR_WORDS.unpack_from(frame, 14)
        if (a + b + c) % 0xFFFF:
            return 0                # a bad header checksum: the full path counts it
        done = handler(src, dst, memoryview(frame)[34:14 + total], iface, tos, csum_ok)
        if done == 1:
            stack.counters["ipv4.rx"] += 1
        return done

    def input(self, iface: Interface, eth: ethernet.EthernetHeader, payload: memoryview,
              csum_ok: bool = False) -> None:
        stack = self.stack
        counters = stack.counters
        try:
            header, data = wire_ipv4.parse(payload)
        except Malformed as exc:
            if exc.reason in _OPTION_PROBLEMS:
                self._option_problem(eth, payload)
            raise
        counters["ipv4.rx"] += 1
        src = header.src
        dst = header.dst
        # Source checks (RFC 1122 3.2.1.3): never a group or broadcast address.
        if src[0] >= 224 or src == BROADCAST or stack.is_broadcast(src, iface):
            counters["ipv4.bad_source"] += 1
            return
        if src[0] == 127 and eth.src != eth.dst:
            counters["ipv4.martian_source"] += 1
            return
        local_delivery = eth.src == eth.dst   # from queue_local
        if not local_delivery and stack.is_local(src):
            counters["ipv4.land"] += 1
            return
        if dst[0] == 127 and not local_delivery:
            counters["ipv4.martian_destination"] += 1   # loopback never comes from a wire
            return
        # Destination: ours, broadcast, or a joined group.
        unconfigured = not iface.ipv4 and iface in self.leasing
        if stack.is_local(dst):
            if eth.dst[0] & 1:
                # RFC 1122 3.3.6: unicast IP in a link-layer broadcast frame.
                counters["ipv4.unicast_in_l2_broadcast"] += 1
                return
            cast = 0
        elif dst == BROADCAST or stack.is_broadcast(dst, iface):
            cast = 1
        elif is_multicast(dst):
            if dst not in self.groups:
                entry = self.joined.get(iface, _NONE).get(dst)
                if entry is None:
                    counters["ipv4.multicast_not_joined"] += 1
                    return
                # The interface's source filter (ip_check_mc_rcu; IGMP passes).
                if header.proto != 2 and not entry.accepts(src):
                    counters["ipv4.multicast_source_filtered"] += 1
                    return
            cast = 2
        elif unconfigured or any(a.tentative for a in iface.ipv4):
            # DHCP: before an address is bound, accept unicast to anyone (RFC 2131 4.1).
            cast = 0
        elif iface in self.accept_any and not eth.dst[0] & 1:
            cast = 0
        else:
            counters["ipv4.not_for_us"] += 1
            return
        if src == ANY and cast == 0:
            # RFC 1122 3.2.1.3 (a): 0.0.0.0 is a source only while a host learns
            # its address, which it does by broadcast; anything we answered would
            # go to 0.0.0.0, which must never be sent.
            counters["ipv4.zero_source"] += 1
            return
        if header.flags_frag & 0x3FFF:   # MF set or offset non-zero
            got = self.reassembly.add((src, dst, header.proto, header.ident),
                                      header.frag_offset, header.more_fragments, data,
                                      header, payload)
            if got is None:
                return
            whole, (first, first_raw) = got
            data = memoryview(whole)
            csum_ok = False     # the device vouched for one fragment, not the datagram
            # The first fragment's header (RFC 791 3.2: its options are the datagram's).
            header = first._replace(flags_frag=0, total_len=first.header_len + len(whole))
            payload = memoryview(first_raw[:first.header_len] + whole)
        handler = stack.ip_protocols.get(header.proto)
        if handler is None:
            counters["ipv4.unknown_protocol"] += 1
            if cast == 0 and stack.icmp is not None:
                stack.icmp.send_error(header, payload, 3, 2)   # protocol unreachable
            return
        # Protocols see broadcast/multicast delivery in ``header.dst``, and the
        # raw datagram for the ICMP errors they may send about it.
        handler(header, data, iface, payload, csum_ok)

    def _option_problem(self, eth: ethernet.EthernetHeader, packet: memoryview) -> None:
        """RFC 1122 3.2.2.5, RFC 792: a malformed IP option earns a Parameter Problem
        (code 0, pointer at the bad octet), as Linux sends; only for a unicast
        datagram to us from a plausible host (the checks of ``input`` first)."""
        stack = self.stack
        if stack.icmp is None or eth.dst[0] & 1:
            return
        (vihl, tos, total_len, ident, flags_frag, ttl, proto, _csum, src,
         dst) = _HEADER.unpack_from(packet)
        if src[0] in (0, 127) or stack.is_local(src) or not stack.is_local(dst) \
                or dst[0] == 127:
            return
        hlen = (vihl & 0x0F) << 2   # parse checked it against the total length
        good, problem = wire_ipv4.walk_options(bytes(packet[wire_ipv4.HEADER_LEN:hlen]))
        pointer = wire_ipv4.HEADER_LEN + (problem.offset if problem is not None else 0)
        # The error echoes what the options before the bad one recorded, as
        # Linux's (its options compile stops there, what came before done).
        header = wire_ipv4.Ipv4Header(
            tos, total_len, ident, flags_frag, ttl, proto, src, dst, hlen,
            b"".join(bytes((kind, len(data) + 2)) + data for kind, data in good))
        stack.icmp.send_error(header, packet[:total_len], 12, 0, pointer << 24)

    def _reasm_timeout(self, first: tuple[Any, bytes]) -> None:
        """RFC 792: time exceeded, code 1 (fragment reassembly time exceeded)."""
        if self.stack.icmp is not None:
            header, raw = first
            self.stack.icmp.send_error(header, memoryview(raw), 11, 1)

    # -- output --------------------------------------------------------------------
    def output(self, dst: bytes, proto: int, payload: bytes | bytearray | memoryview,
               src: bytes | None = None, ttl: int | None = None, tos: int = 0,
               df: bool | None = False, iface: Interface | None = None,
               options: bytes = b"", pmtu: bool = True) -> int:
        """Send one datagram. Returns 0, or an errno (nothing is raised).
        ``df`` None: DF unless the path MTU to ``dst`` is locked (Linux's
        ip_dont_fragment for IP_PMTUDISC_WANT, TCP's). ``options``: the
        header's options, padded to a multiple of 4 octets
        (``wire.ipv4.reply_options`` makes a reply's). ``pmtu``: measured
        against the path MTU (False: the interface's, IP_PMTUDISC_PROBE and
        below)."""
        stack = self.stack
        counters = stack.counters
        if df is None:
            df = not (self.pmtu and self.pmtu_locked(dst))
        # The per-destination cache (stack/destination.py), shared with IPv6.
        fast = self._destination(dst, len(payload) + 20) \
            if iface is None and not options else None
        if fast is not None and (src is None or src == fast.src or (
                self.accept_any and fast.iface in self.accept_any)):
            counters["ipv4.tx"] += 1
            fast.iface.device.send(b"".join((fast.eth, wire_ipv4.header_only(
                src or fast.src, dst, proto, len(payload),
                stack.config.ttl if ttl is None else ttl,
                tos, self._next_ident(dst, proto), wire_ipv4.DF if df else 0), payload)))
            return 0
        if ttl is None:
            ttl = stack.config.ttl
        hlen = 20 + len(options)
        if len(payload) > 65535 - hlen:
            counters["ipv4.tx_too_big"] += 1
            return errno.EMSGSIZE
        if dst == ANY:
            # RFC 1122 3.2.1.3: 0.0.0.0 is never a destination (127/8 is loopback,
            # delivered locally below, and never leaves the host).
            counters["ipv4.tx_martian"] += 1
            return errno.ENETUNREACH
        if src is not None and src[0] == 127 and dst[0] != 127:
            counters["ipv4.tx_loopback_source"] += 1   # Linux: EINVAL
            return errno.EINVAL
        next_hop = dst
        route = None
        if dst == BROADCAST or is_multicast(dst):
            if iface is None:
                route = stack.routes.lookup(dst)
                iface = route.iface if route is not None else (
                    stack.interfaces[0] if stack.interfaces else None)
            if iface is None:
                return errno.ENETUNREACH
        elif stack.is_local(dst):
            local_iface = stack.local_iface(dst)
            if local_iface is None:
                counters["ipv4.no_route"] += 1
                return errno.ENETUNREACH
            packet = wire_ipv4.build(src or dst, dst, proto, payload, ttl, tos,
                                     self._next_ident(dst, proto), wire_ipv4.DF if df else 0,
                                     options)
            stack.queue_local(packet, local_iface)
            counters["ipv4.tx_loopback"] += 1
            return 0
        else:
            route, iface, next_hop = stack.routes.via(dst, iface)
            if iface is None:
                counters["ipv4.no_route"] += 1
                return errno.ENETUNREACH
        if src is None:
            src = iface.ipv4_for(next_hop) or ANY
        counters["ipv4.tx"] += 1
        mtu = self.path_mtu(dst, iface) if route is not None and pmtu else iface.mtu
        ident = self._next_ident(dst, proto)
        if hlen + len(payload) <= mtu:
            packet = wire_ipv4.build(src, dst, proto, payload, ttl, tos, ident,
                                     wire_ipv4.DF if df else 0, options)
            self._transmit(iface, next_hop, dst, packet)
            if route is not None and route.iface is iface:
                self._remember(dst, route, next_hop, src)
            return 0
        if df:
            counters["ipv4.tx_needs_fragmentation"] += 1
            return errno.EMSGSIZE
        # Fragment (RFC 791 3.2): every piece but the last a multiple of 8 bytes.
        # Only the first carries every option; the others keep those marked
        # "copied" (ip_options_fragment: the rest become NOPs).
        chunk = (mtu - hlen) & ~7
        mv = memoryview(payload)
        total = len(mv)
        offset = 0
        opts = options
        later = wire_ipv4.fragment_options(options) if options else b""
        while offset < total:
            piece = mv[offset:offset + chunk]
            more = offset + len(piece) < total
            flags = (offset >> 3) | (wire_ipv4.MF if more else 0)
            self._transmit(iface, next_hop, dst, wire_ipv4.build(src, dst, proto, piece, ttl,
                                                                 tos, ident, flags, opts))
            opts = later
            counters["ipv4.tx_fragments"] += 1
            offset += len(piece)
        return 0

    # -- offload (TSO) output ---------------------------------------------------------
    def offload_path(self, dst: bytes, src: bytes) -> OffloadPath | None:
        """Where a TCP super-segment to ``dst`` can go in one device write: a
        unicast route through a device with ``offload`` (a vnet-header TAP) whose
        next hop's MAC is known and fresh (no 802.1Q interfaces: the kernel's
        GSO checks want an untagged IPv4 frame; a locked path MTU sends without
        DF, which the offload header sets). None otherwise: the caller sends
        MSS-sized segments through ``output`` (which resolves and re-probes)."""
        stack = self.stack
        route = stack.routes.lookup(dst)
        if route is None:
            return None
        iface = route.iface
        device = iface.device
        if not device.offload or iface.raw_ip or iface.vlan is not None \
                or dst in stack.local_addresses or (self.pmtu and self.pmtu_locked(dst)) \
                or dst == BROADCAST or is_multicast(dst) or stack.is_broadcast(dst, iface) \
                or (src not in stack.local_addresses and iface not in self.accept_any) \
                or stack.arp is None:
            return None
        next_hop = route.gateway or dst
        cache = stack.arp.caches.get(iface)
        n = cache.get(next_hop) if cache else None
        now = stack.now
        if n is None or n.mac is None or not n.sendable(now, stack.arp.reachable):
            return None         # let output() take the ARP path, which resolves or re-probes
        n.used = now
        eth = ethernet.build(n.mac, iface.mac, ethernet.ETH_IPV4, b"", iface.vlan)
        return OffloadPath(iface, device, eth, len(eth) + 20, iface.mtu - 20)

    def output_offload(self, path: OffloadPath, src: bytes, dst: bytes,
                       segment: bytes | bytearray, gso_size: int, tcp_hlen: int,
                       tos: int = 0) -> None:
        """Send one TCP segment (DF) whose checksum field holds the pseudo-header
        sum, as one device write; ``gso_size`` non-zero makes it a TSO
        super-segment the kernel takes as ``gso_size``-byte segments."""
        stack = self.stack
        counters = stack.counters
        counters["ipv4.tx"] += 1
        if gso_size:
            counters["ipv4.tx_tso"] += 1
        head = wire_ipv4.header_only(src, dst, 6, len(segment), stack.config.ttl, tos,
                                     self._next_ident(dst, 6), wire_ipv4.DF)
        start = path.csum_start
        # Ethernet + IPv4 + segment joined in one copy.
        path.device.send_offload(b"".join((path.eth, head, segment)), gso_size, start, 16,
                                 start + tcp_hlen)

    def _remember(self, dst: bytes, route: Route, next_hop: bytes, src: bytes) -> None:
        """After a unicast datagram went out through ARP: a per-destination
        cache entry once its neighbour is resolved (``stack/destination.py``)."""
        stack = self.stack
        iface = route.iface
        if stack.arp is None or iface.raw_ip or (
                src not in stack.local_addresses and iface not in self.accept_any) or \
                dst in stack.broadcast_addresses or dst in stack.local_addresses or \
                is_multicast(dst):
            return
        stack.destinations.remember(dst, stack.routes, route, iface, src,
                                    self.path_mtu(dst, iface), stack.arp, next_hop,
                                    ethernet.ETH_IPV4)

    # -- path MTU (RFC 1191) ------------------------------------------------------------
    def path_mtu(self, dst: bytes, iface: Interface) -> int:
        """The MTU towards ``dst`` through ``iface``: the interface's, or less
        when a Fragmentation Needed taught us so (until it expires)."""
        learned = self.pmtu.get(dst)
        if learned is not None:
            if learned[1] > self.stack.now:
                return min(iface.mtu, learned[0])
            del self.pmtu[dst]
        return iface.mtu

    def pmtu_locked(self, dst: bytes) -> bool:
        """The path MTU to ``dst`` was set below ``MIN_PMTU``: datagrams there
        go without DF (Linux's locked RTAX_MTU)."""
        learned = self.pmtu.get(dst)
        return learned is not None and learned[2] and learned[1] > self.stack.now

    def lower_pmtu(self, dst: bytes, mtu: int) -> None:
        """A Fragmentation Needed about a datagram we sent to ``dst`` (its
        socket checked by the transport), as Linux's __ip_rt_update_pmtu: the
        path MTU never goes up; a figure below ``MIN_PMTU`` (a zero from an
        RFC 792 router included) sets it to that minimum, locked. It ages out
        after ``pmtu_expires`` (Linux's route/mtu_expires)."""
        stack = self.stack
        route = stack.routes.lookup(dst)
        if route is None:
            return
        old = self.path_mtu(dst, route.iface)
        if mtu >= old:
            return
        locked = mtu < MIN_PMTU
        if locked:
            mtu = min(old, MIN_PMTU)
        if len(self.pmtu) >= PMTU_MAX_ENTRIES and dst not in self.pmtu:
            del self.pmtu[next(iter(self.pmtu))]
        self.pmtu[dst] = (mtu, stack.now + stack.config.pmtu_expires, locked)
        stack.destinations.forget(dst)
        stack.counters["ipv4.pmtu_lowered"] += 1

    def datagram_df(self, dst: bytes, size: int, mode: int) -> tuple[int, bool]:
        """IP_MTU_DISCOVER (``mode``) for a datagram of ``size`` octets, IP
        header included, to ``dst``, as Linux's __ip_append_data and
        __ip_make_skb decide: (an errno, 0 when it may go; whether it carries
        DF). DONT, WANT and DO measure it against the path MTU, the others
        against the interface's; too big is EMSGSIZE for DO, PROBE and
        INTERFACE, fragments without DF for the others; DO and PROBE always
        set DF, WANT when it fits and the path MTU is not locked (groups and
        broadcasts too, as Linux)."""
        stack = self.stack
        route = stack.routes.lookup(dst)
        if route is not None:
            iface = route.iface
        elif (is_multicast(dst) or dst == BROADCAST) and stack.interfaces:
            iface = stack.interfaces[0]        # as ``output`` picks for a group
        else:
            return 0, False                    # ``output`` says what is wrong
        mtu = self.path_mtu(dst, iface) if mode < PMTUDISC_PROBE else iface.mtu
        if size > mtu:
            return (errno.EMSGSIZE if mode in (PMTUDISC_DO, PMTUDISC_PROBE,
                                               PMTUDISC_INTERFACE) else 0), False
        return 0, mode in (PMTUDISC_DO, PMTUDISC_PROBE) or (
            mode == PMTUDISC_WANT and not self.pmtu_locked(dst))

    def _transmit(self, iface: Interface, next_hop: bytes, dst: bytes, packet: bytes) -> None:
        stack = self.stack
        if iface.raw_ip:
            stack.send_frame(iface, b"", ethernet.ETH_IPV4, packet)
        elif dst == BROADCAST or stack.is_broadcast(dst, iface):
            stack.send_frame(iface, ethernet.BROADCAST, ethernet.ETH_IPV4, packet)
        elif is_multicast(dst):
            stack.send_frame(iface, multicast_mac(dst), ethernet.ETH_IPV4, packet)
        elif stack.arp is not None:
            stack.arp.resolve_and_send(iface, next_hop, packet)
        else:
            stack.counters["ipv4.no_arp_module"] += 1

    def ident_bucket(self, dst: bytes, proto: int) -> int:
        """The index in ``idents`` of the counter for datagrams to ``dst``
        carrying ``proto`` (a UDP endpoint's template keeps it)."""
        return hash((self._ident_key, dst, proto)) & (IDENT_BUCKETS - 1)

    def _next_ident(self, dst: bytes, proto: int) -> int:
        i = hash((self._ident_key, dst, proto)) & (IDENT_BUCKETS - 1)
        ident = self.idents[i] = (self.idents[i] + 1) & 0xFFFF
        return ident


def install(stack: Stack) -> Ipv4:
    ipv4 = Ipv4(stack)
    stack.ipv4 = ipv4
    return ipv4
