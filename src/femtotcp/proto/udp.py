"""UDP (RFC 768, RFC 1122 4.1) in the core: endpoints with bounded queues.

A datagram for a port nobody holds gets ICMP port unreachable (never for a
broadcast or multicast destination). ICMP errors reach connected endpoints as
an errno, as on Linux. Ephemeral ports are chosen at random (RFC 6056 3.3.1).
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from femtotcp.core import rand
from femtotcp.proto.ports import port_taken, sharers_taken
from femtotcp.stack.ipv4 import (
    PMTUDISC_DO,
    PMTUDISC_DONT,
    PMTUDISC_INTERFACE,
    PMTUDISC_OMIT,
    PMTUDISC_PROBE,
    PMTUDISC_WANT,
    is_multicast,
)
from femtotcp.stack.mcast import Memberships, allows
from femtotcp.wire import Malformed, icmp4, icmp6
from femtotcp.wire import ipv4 as wire_ipv4
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire import udp as wire
from femtotcp.wire.checksum import pseudo_header_sum, sum_value
from femtotcp.wire.ipv6 import is_multicast as is_multicast6

if TYPE_CHECKING:
    from femtotcp.stack.destination import Destination
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.ipv6 import Ipv6
    from femtotcp.stack.stack import Stack
    from femtotcp.wire.ipv4 import Ipv4Header
    from femtotcp.wire.ipv6 import Ipv6Header

ANY = b"\x00\x00\x00\x00"
ANY6 = bytes(16)
MAX_PAYLOAD = 65507
#: Over IPv6: the 65535-byte payload length less the UDP header.
MAX_PAYLOAD6 = 65527

Datagram = tuple[bytes, tuple[bytes, int], bytes]   # (data, (src, sport), dst)

#: An Ethernet frame's headers before a UDP payload (an IPv4 datagram without
#: options), in the fields a ``_Template`` leaves open: the Ethernet header
#: (14 bytes, 18 with an 802.1Q tag: the ``{}``), version/IHL and TOS, total
#: length, IP ID, flags/fragment offset, TTL and protocol (4 bytes), header
#: checksum, addresses (8 bytes), ports (4 bytes), UDP length and checksum.
_FRAME = "!{}sHH4sH8s4sHH"


class _Template(NamedTuple):
    """What ``UdpEndpoint.sendto`` keeps of its last IPv4 destination once a
    datagram to it left through the per-destination cache: the frame's
    constant parts and the sums of its checksums' constant words. It holds
    while ``Stack.destinations`` still returns the same entry (the route
    table's version, the address set, the neighbour and its MAC, the
    interface's MAC and MTU: see ``stack/destination.py``), the route table is
    the same object, and the TTL and TOS are those it was made with."""

    dst: bytes
    port: int
    entry: Destination
    routes: object
    ttl: int
    tos: int
    pack: Callable[..., bytes]  # ``_FRAME``'s, for this Ethernet header's length
    head: bytes         # Ethernet header, 0x45, TOS
    middle: bytes       # flags/fragment offset 0 (no DF), TTL, protocol 17
    addrs: bytes        # source and destination addresses
    ports: bytes        # source and destination ports
    ip_sum: int         # the IPv4 header's words but total length, ID, checksum
    udp_sum: int        # the pseudo-header (but its length) and both ports
    idents: list[int]   # ``Ipv4.idents``, the IP ID counters
    bucket: int         # the counter ``Ipv4._next_ident`` uses for (dst, 17)


class UdpEndpoint:
    def __init__(self, udp: Udp, addr: bytes, port: int, v6only: bool = False) -> None:
        self.udp = udp
        self.local = (addr, port)
        #: IPV6_V6ONLY: an endpoint on ``::`` without it takes (and sends)
        #: IPv4 datagrams too, with 4-byte addresses (Linux's default).
        self.v6only = v6only
        #: SO_REUSEADDR and SO_REUSEPORT as they were at bind: who may share
        #: the binding (``Udp.open``).
        self.reuse_addr = False
        self.reuse_port = False
        self.remote: tuple[bytes, int] | None = None
        self.queue: deque[Datagram] = deque()
        self.queued_bytes = 0
        self.rcvbuf = udp.stack.config.udp_rcvbuf
        self.error: int | None = None
        self.on_readable: Callable[[], None] | None = None
        #: A consumer that takes a datagram at once when nothing is queued
        #: (``take(data, (src, sport)) -> bool``; the API's link writes it to
        #: the program's end of its pair): False, and it is queued as always.
        self.take: Callable[[bytes, tuple[bytes, int]], bool] | None = None
        self.closed = False
        self.ttl: int | None = None
        #: The TTL (hop limit) of datagrams to a multicast group: 1 unless
        #: IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS say otherwise (Linux's
        #: default keeps them on the link).
        self.mcast_ttl = 1
        #: IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP: a datagram this endpoint
        #: sends to a group its interface joined is delivered here too.
        self.mcast_loop = True
        #: The socket's group memberships (``stack/mcast.py``); None: an
        #: endpoint of the stack's own, with Linux's defaults.
        self.mcast: Memberships | None = None
        self.tos = 0
        #: IP_MTU_DISCOVER (``Ipv4.datagram_df``): Linux's default for UDP,
        #: WANT, sends IPv4 datagrams that fit the path MTU with DF.
        self.pmtudisc = PMTUDISC_WANT
        #: The last IPv4 destination sent to from this endpoint's own choice of
        #: source, with what that choice rests on, as ``Stack.destinations``
        #: checks its entries (the route table, its version and the address
        #: set, each replaced or versioned on a change), the source, and the
        #: sum of the pseudo-header's addresses and protocol: (dst, routes,
        #: version, addresses, src, sum). Reused while all of those hold.
        self._path: tuple[bytes, object, int, object, bytes, int] | None = None
        #: The last IPv4 destination's frame template (``_Template``): a
        #: datagram there that fits is one ``struct`` call and one device send.
        self._template: _Template | None = None

    def set_pmtudisc(self, mode: int) -> None:
        """IP_MTU_DISCOVER (``PMTUDISC_*``); the frame template, made under
        the old mode, goes."""
        self.pmtudisc = mode
        self._template = None

    # -- sending ---------------------------------------------------------------------
    def sendto(self, data: bytes | bytearray | memoryview, dst: bytes, port: int,
               src: bytes | None = None, iface: Interface | None = None) -> int:
        """Send one datagram; 0 or an errno."""
        if self.closed:
            return errno.EBADF
        if len(data) > (MAX_PAYLOAD if len(dst) == 4 else MAX_PAYLOAD6):
            return errno.EMSGSIZE
        if not 0 < port < 65536:
            return errno.EINVAL
        stack = self.udp.stack
        t = self._template
        if t is not None and src is None and iface is None and t[0] == dst and t[1] == port:
            (_, _, entry, routes, ttl, tos, pack, head, middle, addrs, ports, ip_sum, udp_sum,
             idents, bucket) = t
            n = len(data)
            own_ttl = self.ttl
            if stack.destinations.get(dst, n + 28) is entry and tos == self.tos and \
                    ttl == (stack.config.ttl if own_ttl is None else own_ttl) and \
                    stack.routes is routes:
                # The frame the general path would send, the IP ID from the
                # same counter (``Ipv4._next_ident``), in one device send.
                ident = idents[bucket] = (idents[bucket] + 1) & 0xFFFF
                total = n + 28
                r = (ip_sum + total + ident) % 0xFFFF
                ulen = n + 8
                # RFC 768: the pseudo-header's length, the header's, the data;
                # a computed zero is sent as all ones.
                u = (udp_sum + ulen + ulen + sum_value(data)) % 0xFFFF
                counters = stack.counters
                counters["udp.tx"] += 1
                counters["ipv4.tx"] += 1
                entry.iface.device.send(pack(
                    head, total, ident, middle, 0xFFFF - r if r else 0, addrs, ports, ulen,
                    0xFFFF - u if u else 0xFFFF) + data)
                return 0
            self._template = None
        pseudo: int | None = None
        again = False       # to the destination of the last datagram, as then
        if src is None:
            path = self._path
            routes = stack.routes
            if path is not None and path[0] == dst and path[2] == routes.version and \
                    path[1] is routes and path[3] is stack.local_addresses and iface is None:
                src, pseudo = path[4], path[5]
                again = True
            else:
                found = self._source(dst, iface)
                if isinstance(found, int):
                    return found
                src = found
                if len(dst) == 4 and iface is None:
                    pseudo = pseudo_header_sum(src, dst, wire.PROTO, 0)
                    self._path = (dst, routes, routes.version, stack.local_addresses, src,
                                  pseudo)
        df = False
        ipv4 = stack.ipv4
        mode = self.pmtudisc
        if len(dst) == 4 and ipv4 is not None and mode != PMTUDISC_DONT:
            err, df = ipv4.datagram_df(dst, len(data) + 28, mode)
            if err:
                return err
        msg = wire.build(src, dst, self.local[1], port, data, pseudo)
        stack.counters["udp.tx"] += 1
        group = is_multicast(dst) if len(dst) == 4 else is_multicast6(dst)
        hops = self.mcast_ttl if group else self.ttl
        if mode >= PMTUDISC_PROBE and len(dst) == 4 and ipv4 is not None:
            # The interface's MTU, not the path's (Linux's ip_sk_use_pmtu).
            err = ipv4.output(dst, wire.PROTO, msg, src=src, ttl=hops, tos=self.tos,
                              iface=iface, df=df, pmtu=False)
        else:
            err = int(stack.ip_output(dst, wire.PROTO, msg, src=src, ttl=hops, tos=self.tos,
                                      iface=iface, df=df))
        if group and not err and self.mcast_loop:
            self._loop(msg, src, dst, iface)
        if again and not err and pseudo is not None and not group:
            # A second datagram in a row to ``dst``: worth a template.
            self._remember_template(stack, dst, port, src, pseudo, len(msg) + 20)
        return err

    def _loop(self, msg: bytes, src: bytes, dst: bytes, iface: Interface | None) -> None:
        """IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP: when the interface the
        datagram left by is a member of its group, a copy is this host's
        input too, on the next poll (Linux's ip_mc_output and
        ip6_finish_output2 loop it back through the device)."""
        stack = self.udp.stack
        if len(dst) == 4:
            ipv4 = stack.ipv4
            if iface is None:
                route = stack.routes.lookup(dst)
                iface = route.iface if route is not None else (
                    stack.interfaces[0] if stack.interfaces else None)
            if iface is None or ipv4 is None or not ipv4.is_member(iface, dst):
                return
            packet = wire_ipv4.build(src, dst, wire.PROTO, msg, self.mcast_ttl, self.tos)
        else:
            ipv6 = stack.ipv6
            iface = ipv6.route_iface(dst, iface) if ipv6 is not None else None
            if iface is None or ipv6 is None or dst not in ipv6.groups.get(iface, {}):
                return
            packet = wire_ipv6.build(src, dst, wire.PROTO, msg, self.mcast_ttl, self.tos)
        stack.queue_local(packet, iface)

    def _remember_template(self, stack: Stack, dst: bytes, port: int, src: bytes,
                           pseudo: int, size: int) -> None:
        """After a datagram to ``dst`` left by the source this endpoint chose:
        a template, when the per-destination cache holds ``dst`` with that
        source (its neighbour resolved and usable as it is)."""
        entry = stack.destinations.get(dst, size)
        ipv4 = stack.ipv4
        if entry is None or entry.src != src or ipv4 is None:
            return
        ttl = stack.config.ttl if self.ttl is None else self.ttl
        tos = self.tos
        sport = self.local[1]
        addrs = src + dst
        # What fits the entry fits the path MTU (``datagram_df``): DF but for
        # DONT, INTERFACE, OMIT and a locked path MTU.
        mode = self.pmtudisc
        df = 0x40 if mode in (PMTUDISC_DO, PMTUDISC_PROBE) or (
            mode == PMTUDISC_WANT and not ipv4.pmtu_locked(dst)) else 0
        # The IPv4 header's fixed words: 0x45/TOS, flags, TTL/protocol, addresses.
        ip_sum = 0x4500 + tos + (df << 8) + (ttl << 8) + wire.PROTO + sum_value(addrs)
        head = entry.eth + bytes((0x45, tos))
        self._template = _Template(
            dst, port, entry, stack.routes, ttl, tos,
            struct.Struct(_FRAME.format(len(head))).pack, head, bytes((df, 0, ttl, wire.PROTO)),
            addrs,
            struct.pack("!HH", sport, port), ip_sum, pseudo + sport + port, ipv4.idents,
            ipv4.ident_bucket(dst, wire.PROTO))

    def _source(self, dst: bytes, iface: Interface | None) -> bytes | int:
        """The source address towards ``dst``: the bound one, else the one
        the stack picks; an errno when there is none."""
        stack = self.udp.stack
        src = self.local[0]
        if len(src) != len(dst):
            if src != ANY6 or self.v6only:
                return errno.EAFNOSUPPORT  # an IPv6 endpoint to an IPv4 address, or back
            src = ANY                      # a dual-stack endpoint speaking IPv4
        if src == ANY:
            # A group datagram leaves by the interface IP_MULTICAST_IF chose:
            # its address is the source (Linux routes it with that device).
            found = iface.ipv4_for(dst) if iface is not None and is_multicast(dst) \
                else stack.source_address(dst)
            if found is None:
                if iface is None:
                    return errno.ENETUNREACH
                found = iface.primary_ipv4() or ANY
            return found
        if src == ANY6:
            ipv6 = stack.ipv6
            found = ipv6.source_address(dst, iface) if ipv6 is not None else None
            return errno.ENETUNREACH if found is None else found
        return src

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self.remote is None:
            return errno.EDESTADDRREQ
        return self.sendto(data, *self.remote)

    def connect(self, addr: bytes, port: int) -> None:
        self.remote = (addr, port)
        self.error = None

    @property
    def sockname(self) -> tuple[bytes, int]:
        """The local address as getsockname() shows it: an endpoint bound to the
        wildcard and connected names the source its route picks, as Linux's
        connect() does (ip4_datagram_connect)."""
        addr, port = self.local
        if self.remote is not None and addr in (ANY, ANY6):
            addr = self.udp.stack.source_address(self.remote[0]) or addr
        return addr, port

    # -- receiving -------------------------------------------------------------------
    def deliver(self, data: bytes, src: tuple[bytes, int], dst: bytes) -> None:
        counters = self.udp.stack.counters
        if self.remote is not None and src != self.remote:
            counters["udp.not_from_peer"] += 1
            return
        take = self.take
        if take is not None and not self.queue and take(data, src):
            return
        if (len(self.queue) >= self.udp.stack.config.udp_queue_max
                or self.queued_bytes + len(data) > self.rcvbuf):
            counters["udp.rcvbuf_full"] += 1
            return
        self.queue.append((data, src, dst))
        self.queued_bytes += len(data)
        if self.on_readable is not None:
            self.on_readable()

    def recv_full(self) -> Datagram | None:
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0])
        return item

    def recv(self) -> tuple[bytes, tuple[bytes, int]] | None:
        item = self.recv_full()
        return None if item is None else (item[0], item[1])

    @property
    def readable(self) -> bool:
        return bool(self.queue) or self.error is not None

    def take_error(self) -> int | None:
        err, self.error = self.error, None
        return err

    def set_error(self, err: int) -> None:
        self.error = err
        if self.on_readable is not None:
            self.on_readable()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.udp.release(self)


#: The UDP header: source port, destination port, length, checksum.
_UDP_HDR = struct.Struct("!HHHH")


class Udp:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        #: Each bound (address, port): its endpoint, or, when several share it,
        #: the last one bound (which unicast goes to unless ``_pick`` finds a
        #: better one, as Linux's newest-first socket lookup).
        self.endpoints: dict[tuple[bytes, int], UdpEndpoint] = {}
        #: Bindings shared by several endpoints (SO_REUSEADDR on all of them,
        #: or SO_REUSEPORT), in binding order.
        self.shared: dict[tuple[bytes, int], list[UdpEndpoint]] = {}
        #: Gateway hook: ``catch_all(ip, udp, payload) -> bool`` sees datagrams to
        #: addresses not ours, and to ours on unbound ports; True: consumed.
        #: (IPv6 too.)
        self.catch_all: Callable[[Ipv4Header | Ipv6Header, wire.UdpHeader, memoryview],
                                 bool] | None = None
        full = stack.ip_protocols[wire.PROTO] = self.input
        stack.ip_error_handlers[wire.PROTO] = self.on_ip_error
        if stack.ipv4 is not None:
            stack.ipv4.add_fast_protocol(wire.PROTO, self.fast_input4, full)
        if stack.ipv6 is not None:
            self.attach_ipv6(stack.ipv6)

    def attach_ipv6(self, ipv6: Ipv6) -> None:
        """Carry UDP over IPv6 too (next header 17)."""
        ipv6.protocols[wire.PROTO] = self.input6
        ipv6.error_handlers[wire.PROTO] = self.on_ip6_error

    def open(self, local_addr: bytes = ANY, port: int = 0, v6only: bool = False,
             reuse_addr: bool = False, reuse_port: bool = False) -> UdpEndpoint:
        """Bind an endpoint (a 4-byte address for IPv4, 16 bytes for IPv6; the
        all-zero one is the family's wildcard); port 0 picks a random free
        ephemeral port. A binding that overlaps others is shared when all of
        them and this one set SO_REUSEADDR (``reuse_addr``), or all set
        SO_REUSEPORT (Linux's udp_lib_lport_inuse, one user here)."""
        if not 0 <= port < 65536:
            raise OSError(errno.EINVAL, f"port {port} out of range")
        if len(local_addr) not in (4, 16):
            raise OSError(errno.EINVAL, "an address is 4 (IPv4) or 16 (IPv6) bytes")
        multicast = local_addr[0] >= 224 if len(local_addr) == 4 else local_addr[0] == 0xFF
        if local_addr not in (ANY, ANY6) and not self.stack.is_local(local_addr) \
                and not multicast:
            raise OSError(errno.EADDRNOTAVAIL, "address not on this host")
        if port == 0:
            port = self.ephemeral_port(local_addr, v6only)
        elif self._in_use(local_addr, port, v6only, reuse_addr, reuse_port):
            raise OSError(errno.EADDRINUSE, f"UDP port {port} in use")
        ep = UdpEndpoint(self, local_addr, port, v6only)
        ep.reuse_addr = reuse_addr
        ep.reuse_port = reuse_port
        key = (local_addr, port)
        old = self.endpoints.get(key)
        if old is not None:
            self.shared.setdefault(key, [old]).append(ep)
        self.endpoints[key] = ep
        return ep

    def _in_use(self, addr: bytes, port: int, v6only: bool = True,
                reuse_addr: bool = False, reuse_port: bool = False) -> bool:
        dual = self._dual(port)
        if reuse_addr or reuse_port:
            return sharers_taken(
                ((key, self.members(key)) for key in self.endpoints), addr, port, v6only,
                None if dual is None else dual.local,
                lambda ep: (reuse_addr and ep.reuse_addr) or (reuse_port and ep.reuse_port))
        return port_taken(self.endpoints, addr, port, v6only,
                          () if dual is None else (dual.local,))

    def members(self, key: tuple[bytes, int]) -> list[UdpEndpoint]:
        """Every endpoint bound to ``key``, in binding order."""
        group = self.shared.get(key)
        if group is not None:
            return group
        ep = self.endpoints.get(key)
        return [] if ep is None else [ep]

    def all_endpoints(self) -> list[UdpEndpoint]:
        """Every bound endpoint (``ctl``'s lists and queue figures)."""
        return [ep for key in self.endpoints for ep in self.members(key)]

    def _pick(self, ep: UdpEndpoint, src: bytes, sport: int) -> UdpEndpoint:
        """The endpoint of a shared binding a unicast datagram from (``src``,
        ``sport``) goes to, as Linux scores them: one connected to that source
        first; else, SO_REUSEPORT, one of the group chosen by a hash of the
        source (the same flow, the same endpoint); else the last bound."""
        group = self.shared.get(ep.local)
        if group is None:
            return ep
        peer = (src, sport)
        open_ones = []
        for member in group:
            if member.remote == peer:
                return member
            if member.remote is None:
                open_ones.append(member)
        if not open_ones:
            return ep                       # (it drops and counts the datagram)
        last = open_ones[-1]
        if last.reuse_port:
            ports = [m for m in open_ones if m.reuse_port]
            return ports[hash(peer) % len(ports)]
        return last

    def _deliver_all(self, ep: UdpEndpoint, data: bytes, src: tuple[bytes, int],
                     dst: bytes) -> None:
        """A broadcast or multicast datagram: a copy to every endpoint of the
        binding (Linux's __udp4_lib_mcast_deliver); each one connected
        elsewhere drops its copy."""
        for member in self.members(ep.local):
            member.deliver(data, src, dst)

    def _to_group(self, group: bytes, port: int, data: bytes, src: tuple[bytes, int],
                  iface: Interface, wildcards: tuple[bytes, ...]) -> None:
        """A datagram to a group the interface joined (Linux's
        __udp4_lib_mcast_deliver / __udp6_lib_mcast_deliver): a copy to every
        endpoint on ``port`` bound to the group or a wildcard (an IPv6 one
        taking IPv4 when not v6only) whose socket joined the group on
        ``iface`` or, without that membership, has MULTICAST_ALL on; each one
        connected elsewhere drops its copy. Nobody on the port:
        ``udp.no_port`` (as for broadcast); nobody of them a member:
        ``udp.multicast_filtered``."""
        index = iface.index
        bound = taken = False
        for addr in (group, *wildcards):
            for ep in self.members((addr, port)):
                if len(addr) == 16 and len(group) == 4 and ep.v6only:
                    continue
                bound = True
                if allows(ep.mcast, group, index, src[0], len(ep.local[0]) == 16):
                    ep.deliver(data, src, group)
                    taken = True
        if not taken:
            self.stack.counters["udp.multicast_filtered" if bound else
                                "udp.no_port" if len(group) == 4 else "udp.no_port6"] += 1

    def _dual(self, port: int) -> UdpEndpoint | None:
        """The endpoint on ``::`` that takes IPv4 on ``port``, if any."""
        ep = self.endpoints.get((ANY6, port))
        return ep if ep is not None and not ep.v6only else None

    def ephemeral_port(self, addr: bytes, v6only: bool = True) -> int:
        cfg = self.stack.config
        span = cfg.ephemeral_high - cfg.ephemeral_low + 1
        start = rand.randbelow(span)
        for i in range(span):
            port = cfg.ephemeral_low + (start + i) % span
            if not self._in_use(addr, port, v6only):
                return port
        raise OSError(errno.EADDRINUSE, "no free UDP port")

    def release(self, ep: UdpEndpoint) -> None:
        key = ep.local
        group = self.shared.get(key)
        if group is not None and ep in group:
            group.remove(ep)
            if self.endpoints.get(key) is ep:
                self.endpoints[key] = group[-1]
            if len(group) == 1:
                del self.shared[key]
            return
        if self.endpoints.get(key) is ep:
            del self.endpoints[key]

    def fast_input4(self, src: bytes, dst: bytes, data: memoryview, iface: Interface,
                    tos: int, csum_ok: bool) -> int:
        """The IPv4 fast path's UDP handler (``Ipv4.fast_input``: a unicast
        datagram to one of our addresses from a plain unicast source): a
        well-formed datagram for a bound endpoint is delivered here, as
        ``input`` would (the gateway's ``catch_all`` is not asked about a
        datagram to our address on a bound port there either); anything else
        (truncated, a bad length or checksum, no endpoint: port unreachable
        or the catch-all) returns 0 before any state changed, and the full
        path decides and counts."""
        n = len(data)
        if n < wire.HEADER_LEN:
            return 0
        sport, dport, length, csum = _UDP_HDR.unpack_from(data)
        if not wire.HEADER_LEN <= length <= n:
            return 0
        eps = self.endpoints
        ep = eps.get((dst, dport)) or eps.get((ANY, dport)) or self._dual(dport)
        if ep is None:
            return 0
        if self.shared and ep.local in self.shared:
            ep = self._pick(ep, src, sport)
        if csum and not csum_ok:
            # The pseudo-header and the datagram summed as ``ones_sum`` would
            # (the sum is never 0: the protocol is in it).
            if (sum_value(data[:length]) + int.from_bytes(src + dst, "big") + wire.PROTO
                    + length) % 0xFFFF:
                return 0
        self.stack.counters["udp.rx"] += 1
        ep.deliver(bytes(data[wire.HEADER_LEN:length]), (src, sport), dst)
        return 1

    def input(self, header: Ipv4Header, data: memoryview, iface: Interface,
              packet: memoryview, csum_ok: bool = False) -> None:
        stack = self.stack
        counters = stack.counters
        # The checksum is verified unless the device vouched for it (Stack.receive).
        udp, payload = wire.parse(data) if csum_ok else wire.parse(data, header.src, header.dst)
        counters["udp.rx"] += 1
        eps = self.endpoints
        dst = header.dst
        if 224 <= dst[0] <= 239:
            if self.catch_all is None or not self.catch_all(header, udp, payload):
                self._to_group(dst, udp.dst_port, bytes(payload),
                               (header.src, udp.src_port), iface, (ANY, ANY6))
            return
        ep = eps.get((dst, udp.dst_port)) or eps.get((ANY, udp.dst_port)) \
            or self._dual(udp.dst_port)
        hook = self.catch_all
        if hook is not None and (ep is None or not stack.is_local(header.dst)) \
                and hook(header, udp, payload):
            return
        if ep is None:
            counters["udp.no_port"] += 1
            if stack.icmp is not None and stack.is_local(header.dst):
                stack.icmp.send_error(header, packet, 3, 3)
            return
        self._to(ep, bytes(payload), (header.src, udp.src_port), header.dst)

    def _to(self, ep: UdpEndpoint, data: bytes, src: tuple[bytes, int], dst: bytes) -> None:
        """Deliver a datagram the full path found ``ep`` for: to the one member
        of a shared binding it is for, or, sent to a group or broadcast
        address, to all of them."""
        if not self.shared or ep.local not in self.shared:
            ep.deliver(data, src, dst)
        elif self.stack.is_local(dst):
            self._pick(ep, *src).deliver(data, src, dst)
        else:
            self._deliver_all(ep, data, src, dst)

    def input6(self, header: Ipv6Header, data: memoryview, iface: Interface,
               packet: memoryview, csum_ok: bool = False) -> None:
        """Next header 17 over IPv6: the checksum is mandatory (RFC 8200 8.1: a
        zero one is dropped, ``udp.zero_checksum_ipv6``); no port earns
        Destination Unreachable code 4, never for a group destination."""
        stack = self.stack
        counters = stack.counters
        src = header.src
        dst = header.dst
        # Verified unless the device vouched for it; a zero checksum never passes.
        udp, payload = wire.parse(data, src, dst) if not csum_ok else wire.parse(data)
        if csum_ok and udp.checksum == 0:
            raise Malformed("udp.zero_checksum_ipv6")
        counters["udp.rx"] += 1
        eps = self.endpoints
        if dst[0] == 0xFF:
            if self.catch_all is None or not self.catch_all(header, udp, payload):
                self._to_group(dst, udp.dst_port, bytes(payload), (src, udp.src_port),
                               iface, (ANY6,))
            return
        ep = eps.get((dst, udp.dst_port)) or eps.get((ANY6, udp.dst_port))
        hook = self.catch_all
        if hook is not None and (ep is None or dst not in stack.local_addresses) \
                and hook(header, udp, payload):
            return
        if ep is None:
            counters["udp.no_port6"] += 1
            if stack.icmp6 is not None and dst[0] != 0xFF:
                stack.icmp6.send_error(header, packet, icmp6.DEST_UNREACHABLE,
                                       icmp6.PORT_UNREACHABLE)
            return
        self._to(ep, bytes(payload), (src, udp.src_port), dst)

    def _connected_member(self, ep: UdpEndpoint | None, dst: bytes,
                          dport: int) -> UdpEndpoint | None:
        """Of a shared binding, the member connected to (``dst``, ``dport``),
        which an ICMP error about a datagram to there is for."""
        if ep is None or ep.local not in self.shared:
            return ep
        return next((m for m in self.shared[ep.local] if m.remote == (dst, dport)), ep)

    def on_ip_error(self, src: bytes, dst: bytes, inner: memoryview, err: int,
                    icmp_type: int, icmp_code: int, mtu: int) -> None:
        """RFC 1122 4.1.3.3: pass ICMP errors to the application, as Linux's udp_err
        does without IP_RECVERR: only hard errors (port, protocol, prohibited
        unreachables; parameter problem) and only to a connected endpoint.
        Soft ones (net/host unreachable, time exceeded, source quench) change
        nothing. Fragmentation Needed about a datagram from a port we hold
        lowers the path MTU (unless the endpoint's IP_MTU_DISCOVER is
        INTERFACE or OMIT) and is EMSGSIZE, hard, unless it is DONT."""
        if len(inner) < 4:
            return
        sport = int.from_bytes(inner[0:2], "big")
        dport = int.from_bytes(inner[2:4], "big")
        ep = self.endpoints.get((src, sport)) or self.endpoints.get((ANY, sport)) \
            or self._dual(sport)
        too_big = icmp_type == icmp4.DEST_UNREACHABLE and icmp_code == icmp4.FRAG_NEEDED
        if too_big and ep is not None:
            member = self._connected_member(ep, dst, dport) or ep
            ipv4 = self.stack.ipv4
            if member.pmtudisc not in (PMTUDISC_INTERFACE, PMTUDISC_OMIT) and ipv4 is not None:
                ipv4.lower_pmtu(dst, mtu)
        ep = self._connected_member(ep, dst, dport)
        if ep is None or ep.remote != (dst, dport):
            self.stack.counters["udp.icmp_error_unconnected"] += 1
        elif icmp_type == icmp4.PARAMETER_PROBLEM or (
                icmp_type == icmp4.DEST_UNREACHABLE and icmp_code in icmp4.UNREACH_HARD) or (
                too_big and ep.pmtudisc != PMTUDISC_DONT):
            ep.set_error(err)
        else:
            self.stack.counters["udp.icmp_error_soft"] += 1

    def on_ip6_error(self, src: bytes, dst: bytes, inner: memoryview, err: int,
                     icmp_type: int, icmp_code: int, mtu: int) -> bool:
        """An ICMPv6 error about a datagram we sent, as Linux's __udp6_lib_err
        without IPV6_RECVERR: to a connected endpoint only, and only the fatal
        ones (icmpv6_err_convert: port unreachable, administratively
        prohibited, policy, reject route, parameter problem) and Packet Too Big
        (EMSGSIZE: Linux's default IPV6_MTU_DISCOVER makes it hard; ICMPv6
        lowers the path MTU after this). False when no endpoint holds the
        source port: nobody here sent it (``IpErrorHandler``; a forged Packet
        Too Big then leaves the path MTU, as Linux finds no socket)."""
        if len(inner) < 4:
            return False
        sport = int.from_bytes(inner[0:2], "big")
        dport = int.from_bytes(inner[2:4], "big")
        bound = self.endpoints.get((src, sport)) or self.endpoints.get((ANY6, sport))
        if bound is None:
            self.stack.counters["udp.icmp_error_no_port"] += 1
            return False
        ep = self._connected_member(bound, dst, dport)
        if ep is None or ep.remote != (dst, dport):
            self.stack.counters["udp.icmp_error_unconnected"] += 1
            return True
        if icmp6.err_convert(icmp_type, icmp_code)[1] or icmp_type == icmp6.PACKET_TOO_BIG:
            ep.set_error(err)
        else:
            self.stack.counters["udp.icmp_error_soft"] += 1
        return True


def install(stack: Stack) -> Udp:
    udp = Udp(stack)
    stack.udp = udp
    return udp
