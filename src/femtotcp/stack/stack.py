"""The Stack: interfaces, dispatch tables, and the one output path.

Sans-I/O: ``receive(iface, frame, now)`` consumes a frame, ``end_batch(now)``
finishes a device's read batch (TCP's coalesced ACKs and events),
``poll(now)`` runs due timers, and frames leave through each interface's
device. Protocol modules plug into dispatch tables (ethertype -> handler, IP
protocol -> handler, IP output by family); input for a protocol that is not
loaded is dropped and counted. Time comes from the clock given at
construction (``set_clock`` lets a loop give its own) or from ``now``
arguments; wall-clock time (ICMP timestamps) from ``wall_clock``.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from femtotcp.core.counters import Counters
from femtotcp.core.timers import Timers
from femtotcp.stack import gro
from femtotcp.stack import modules as modreg
from femtotcp.stack.config import StackConfig
from femtotcp.stack.destination import DestinationCache
from femtotcp.stack.interface import Interface, Ipv4Address
from femtotcp.stack.routes import Route, RouteTable
from femtotcp.wire import Malformed, ethernet, ip_bytes, ip_str, mac_bytes
from femtotcp.wire import ipv6 as wire_ipv6

if TYPE_CHECKING:
    from femtotcp.proto.icmp4 import Icmp4
    from femtotcp.proto.icmp6 import Icmp6
    from femtotcp.proto.tcp.layer import Tcp
    from femtotcp.proto.udp import Udp
    from femtotcp.services.dns import Resolver
    from femtotcp.stack.arp import Arp
    from femtotcp.stack.device import NetDevice
    from femtotcp.stack.ipv4 import Ipv4
    from femtotcp.stack.ipv6 import Ipv6
    from femtotcp.wire.ipv4 import Ipv4Header

log = logging.getLogger("femtotcp.stack")

#: (interface, Ethernet header, payload, csum_ok: the device vouched for the
#: transport checksum; see ``Stack.receive``)
EtherHandler = Callable[[Interface, ethernet.EthernetHeader, memoryview, bool], None]
#: (IP header, payload, interface, the whole datagram for ICMP errors about it,
#: csum_ok: TCP/UDP may skip verifying the checksum)
IpHandler = Callable[["Ipv4Header", memoryview, Interface, memoryview, bool], None]
#: (our source, the destination, the quoted transport bytes, errno, ICMP type,
#: code, MTU): False when the transport owns no such packet (ICMPv6 then keeps
#: a Packet Too Big from the path MTU cache), None or True otherwise.
IpErrorHandler = Callable[[bytes, bytes, memoryview, int, int, int, int], "bool | None"]


class IpOutput(Protocol):
    """An IP module's output: send one datagram to ``dst``; 0 or an errno.
    ``df`` None: DF unless the path MTU is locked (IPv4's IP_PMTUDISC_WANT)."""

    def __call__(self, dst: bytes, proto: int, payload: bytes | bytearray | memoryview,
                 src: bytes | None = None, ttl: int | None = None, tos: int = 0,
                 df: bool | None = False, iface: Interface | None = None) -> int: ...

ANY4 = b"\x00\x00\x00\x00"
BROADCAST4 = b"\xff\xff\xff\xff"


M = TypeVar("M")


def need(module: M | None, name: str) -> M:
    """``stack.udp`` (etc.) when that module is loaded; otherwise a clear error
    naming it (for code that cannot work without it)."""
    if module is None:
        raise OSError(errno.ENOPROTOOPT, f"the {name} module is not loaded in this stack")
    return module


def parse_prefix(text: str) -> tuple[bytes, int]:
    """'192.0.2.1/24' -> (packed, 24); ValueError with a message naming the problem."""
    addr, sep, plen = text.partition("/")
    packed = ip_bytes(addr.strip())
    if len(packed) != 4:
        raise ValueError(f"not an IPv4 address: {addr!r}")
    if not sep:
        return packed, 32
    if not plen.isdigit() or not 0 <= int(plen) <= 32:
        raise ValueError(f"bad prefix length in {text!r} (want 0..32)")
    return packed, int(plen)


class Stack:
    """One host. Several can live in one process (no global state)."""

    def __init__(self, name: str = "femtotcp", modules: Iterable[str] | None = None,
                 config: StackConfig | None = None,
                 clock: Callable[[], float] | None = None,
                 wall_clock: Callable[[], float] | None = None) -> None:
        self.name = name
        self.config = config or StackConfig()
        #: Monotonic seconds (timers, RTTs); a loop that drives the stack sets its own.
        self.clock: Callable[[], float] = clock or time.monotonic
        #: Seconds since the epoch (ICMP timestamps: milliseconds since midnight UT).
        self.wall_clock: Callable[[], float] = wall_clock or time.time
        self.counters = Counters()
        self.timers = Timers()
        #: A pre-filter ``receive`` calls first:
        #: ``early_input(iface, frame, csum_ok) -> True`` when it took the frame
        #: (TCP's SynGuard while a listener answers a SYN flood with cookies).
        self.early_input: Callable[[Interface, bytes | memoryview, bool], bool] | None = None
        self.timers.now = self.clock()
        self.interfaces: list[Interface] = []
        self.routes = RouteTable()
        self.ethertypes: dict[int, EtherHandler] = {}
        self.ip_protocols: dict[int, IpHandler] = {}
        self.ip_error_handlers: dict[int, IpErrorHandler] = {}
        self.modules: dict[str, object] = {}
        #: Usable (non-tentative) local addresses and every broadcast address,
        #: kept as sets so the per-packet checks are one hash lookup.
        self.local_addresses: set[bytes] = set()
        self.broadcast_addresses: set[bytes] = {BROADCAST4}
        #: The per-destination output cache both IP families use (stack/destination.py).
        self.destinations = DestinationCache(self)
        self.started = False
        #: End-of-batch work (``end_batch``): each module that defers work registers here.
        self._batch_hooks: list[Callable[[float], None]] = []
        #: Told of every interface's device, now and later (the loop selects on them).
        self._device_watchers: list[Callable[[NetDevice], None]] = []
        #: IP output by address length (4: the ipv4 module's ``output``).
        self._ip_outputs: dict[int, IpOutput] = {}
        #: Send one IP datagram (``dst, proto, payload, src=, ttl=, tos=, df=,
        #: iface=``; 0 or an errno): the output of the one IP module loaded
        #: (no dispatch on the per-segment path), or ``_dispatch_ip_output``
        #: by ``dst``'s length when there are several (``set_ip_output``).
        self.ip_output: IpOutput = self._dispatch_ip_output
        #: The IPv4 fast path (``Ipv4.fast_input``), set once a protocol
        #: registers a fast handler with it (TCP does); tried first on every frame.
        self.fast_receive: Callable[[Interface, bytes | memoryview, bool], int] | None = None
        #: IPv6's (``Ipv6.fast_input``), tried instead for frames whose
        #: ethertype's first byte is 0x86.
        self.fast_receive6: Callable[[Interface, bytes | memoryview, bool], int] | None = None
        #: Datagrams to our own addresses, delivered on the next poll (never re-entrant).
        self._local: deque[tuple[bytes, Interface]] = deque()
        #: Callbacks run on close (services register here).
        self._on_close: list[Callable[[], None]] = []
        # Protocol modules, set by each module's ``install`` when it is loaded.
        self.arp: Arp | None = None
        self.ipv4: Ipv4 | None = None
        self.icmp: Icmp4 | None = None
        self.ipv6: Ipv6 | None = None
        self.icmp6: Icmp6 | None = None
        self.udp: Udp | None = None
        self.tcp: Tcp | None = None
        self.resolver: Resolver | None = None
        for name_ in modreg.resolve(modules):
            self.load_module(name_)

    # -- modules ---------------------------------------------------------------
    def load_module(self, name: str) -> object:
        if name in self.modules:
            return self.modules[name]
        for dep in modreg.MODULES[name][1]:
            self.load_module(dep)
        mod = modreg.load(name)
        obj: object = mod.install(self)  # type: ignore[attr-defined]
        self.modules[name] = obj
        return obj

    def has(self, name: str) -> bool:
        return name in self.modules

    # -- time ------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.timers.now

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Read time from ``clock`` from now on (a loop gives the stack its own)."""
        self.clock = clock
        self.timers.now = clock()

    def watch_devices(self, callback: Callable[[NetDevice], None]) -> None:
        """Call ``callback(device)`` for every interface's device, now and when one
        is added (a loop selects on device fds)."""
        self._device_watchers.append(callback)
        for iface in self.interfaces:
            callback(iface.device)

    def add_batch_hook(self, hook: Callable[[float], None]) -> None:
        """Run ``hook(now)`` at every ``end_batch`` (a module's end-of-batch work)."""
        self._batch_hooks.append(hook)

    def end_batch(self, now: float | None = None) -> None:
        """The end of a device's read batch: the work input deferred until the
        batch was whole runs now (TCP's coalesced ACKs and program events).
        Whoever calls ``receive`` calls this after the frames it had at once;
        ``poll`` calls it too (loopback delivery is a batch). Cheap when idle."""
        if now is None:
            now = self.clock()
        for hook in self._batch_hooks:
            hook(now)

    def next_deadline(self) -> float | None:
        if self._local:
            return self.timers.now
        return self.timers.next_deadline()

    def poll(self, now: float | None = None) -> None:
        """Fire due timers and deliver queued local datagrams."""
        if now is None:
            now = self.clock()
        timers = self.timers
        if now > timers.now:
            timers.now = now
        local = self._local
        for _ in range(len(local)):
            packet, iface = local.popleft()
            self._deliver_local(packet, iface)
        timers.poll(now)
        self.end_batch(now)

    # -- interfaces and addresses ---------------------------------------------
    def add_interface(self, device: NetDevice, mac: str | bytes | None = None,
                      ipv4: str | None = None, mtu: int | None = None,
                      name: str | None = None, vlan: int | None = None) -> Interface:
        if isinstance(mac, str):
            mac = mac_bytes(mac)
        if mac is None:
            # Locally administered unicast MAC derived from the stack and index.
            mac = bytes([0x02]) + os.urandom(5)
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError("interface MAC must be 6 bytes and unicast")
        mtu = mtu or device.mtu
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} out of range (68..65535)")
        # The interface index (a scope id, RFC 4007) counts as Linux's: 1 is
        # loopback ("lo"), devices from 2 in the order they are added.
        iface = Interface(name or device.name, device, mac, mtu, len(self.interfaces) + 2, vlan)
        self.interfaces.append(iface)
        # Partials, not closures: one Python frame fewer per received frame;
        # of ``_receive`` with positional arguments only (a partial with a
        # keyword builds a dict and takes the slow call path on every frame).
        receiver = functools.partial(self._receive, iface, False)
        checked = functools.partial(self._receive, iface, True)

        # Only a device that verifies checksums itself gets the trusted entry;
        # it is given nothing else (a wrapper gets the plain receiver of the
        # device it wraps, so trust never passes through one). Every device
        # gets the batch entry (software GRO); one that reads batches (TAP,
        # TUN) uses it, a wrapper's inner device never has it.
        device.set_receiver(receiver, checked if device.checksum_rx else None,
                            functools.partial(self.receive_batch, iface))
        if ipv4:
            self.add_address(iface, ipv4)
        for watcher in self._device_watchers:
            watcher(device)
        return iface

    def interface(self, name: str) -> Interface:
        for i in self.interfaces:
            if i.name == name:
                return i
        raise KeyError(name)

    def add_address(self, iface: Interface, prefix: str, origin: str = "static",
                    tentative: bool = False) -> Ipv4Address:
        addr, plen = parse_prefix(prefix)
        if addr == ANY4 or addr[0] >= 224 or addr[0] == 127:
            raise ValueError(f"{prefix}: not a usable unicast host address")
        self.remove_address(iface, addr)
        entry = Ipv4Address(addr, plen, origin, tentative)
        iface.ipv4.append(entry)
        if plen < 32:
            self.routes.add(Route(entry.network, plen, None, iface, "connected"))
        self.addresses_changed()
        return entry

    def set_tentative(self, iface: Interface, addr: bytes, tentative: bool) -> None:
        for a in iface.ipv4:
            if a.addr == addr:
                a.tentative = tentative
        self.addresses_changed()

    def addresses_changed(self) -> None:
        """Rebuild the address sets (after any change to an interface's addresses)."""
        self.local_addresses = {a.addr for i in self.interfaces for a in i.ipv4
                                if not a.tentative}
        # IPv6 addresses in use (not tentative or duplicate): one "is this mine".
        self.local_addresses.update(a.addr for i in self.interfaces for a in i.ipv6
                                    if a.usable)
        self.broadcast_addresses = {BROADCAST4} | {
            a.broadcast for i in self.interfaces for a in i.ipv4 if a.prefixlen < 31}

    def remove_address(self, iface: Interface, addr: bytes) -> bool:
        found = [a for a in iface.ipv4 if a.addr == addr]
        for a in found:
            iface.ipv4.remove(a)
            if not any(b.prefixlen == a.prefixlen and b.network == a.network for b in iface.ipv4):
                self.routes.remove(a.network, a.prefixlen, iface)
        self.addresses_changed()
        return bool(found)

    def add_route(self, prefix: str, gateway: str | bytes | None = None,
                  iface: Interface | None = None, origin: str = "static") -> Route:
        addr, plen = parse_prefix(prefix)
        gw = ip_bytes(gateway) if isinstance(gateway, str) else gateway
        if iface is None:
            if gw is not None:
                r = self.routes.lookup(gw)
                if r is None or r.gateway is not None:
                    raise ValueError(f"gateway {ip_str(gw)} is not on a connected network")
                iface = r.iface
            elif self.interfaces:
                iface = self.interfaces[0]
            else:
                raise ValueError("add an interface before adding routes")
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        route = Route(int.from_bytes(addr, "big") & mask, plen, gw, iface, origin)
        self.routes.add(route)
        return route

    def remove_route(self, prefix: str, iface: Interface | None = None) -> bool:
        addr, plen = parse_prefix(prefix)
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        return self.routes.remove(int.from_bytes(addr, "big") & mask, plen, iface)

    def is_local(self, addr: bytes) -> bool:
        """One of our addresses, or loopback (127/8, and ::1 with IPv6: delivered
        without a device)."""
        return addr in self.local_addresses or (addr[0] == 127 and len(addr) == 4) or (
            addr == wire_ipv6.LOOPBACK and self.ipv6 is not None)

    def local_iface(self, addr: bytes) -> Interface | None:
        """The interface holding ``addr``, of either family (the first one for
        IPv4 loopback)."""
        for iface in self.interfaces:
            for a in (iface.ipv4 if len(addr) == 4 else iface.ipv6):
                if a.addr == addr:
                    return iface
        if ((addr[0] == 127 and len(addr) == 4) or addr == wire_ipv6.LOOPBACK) and self.interfaces:
            return self.interfaces[0]
        return None

    def is_broadcast(self, addr: bytes, iface: Interface | None = None) -> bool:
        """Limited broadcast, or the directed broadcast of one of our subnets."""
        return addr in self.broadcast_addresses

    def source_address(self, dst: bytes) -> bytes | None:
        if self.is_local(dst):
            return dst
        if len(dst) == 16:
            return self.ipv6.source_address(dst) if self.ipv6 is not None else None
        route = self.routes.lookup(dst)
        if route is None:
            return None
        return route.iface.ipv4_for(route.gateway or dst)

    def route_mtu(self, dst: bytes) -> int:
        if self.is_local(dst):
            return 65535
        if len(dst) == 16:
            return self.ipv6.route_mtu(dst) if self.ipv6 is not None else 1280
        route = self.routes.lookup(dst)
        if route is None:
            return 576
        return self.ipv4.path_mtu(dst, route.iface) if self.ipv4 is not None else route.iface.mtu

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Announce ourselves (gratuitous ARP or RFC 5227 probing; IPv6: the
        link-local address, DAD, router solicitation)."""
        if self.started:
            return
        self.started = True
        if self.arp is not None:
            for iface in self.interfaces:
                self.arp.start_interface(iface)
        if self.ipv6 is not None:
            for iface in self.interfaces:
                self.ipv6.start_interface(iface)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def close(self) -> None:
        """Run close hooks (services say goodbye: FIN, DHCP release)."""
        hooks, self._on_close = self._on_close, []
        for cb in reversed(hooks):
            try:
                cb()
            except Exception:
                log.exception("close hook failed")

    # -- input -----------------------------------------------------------------
    def receive(self, iface: Interface, frame: bytes | memoryview,
                now: float | None = None, csum_ok: bool = False) -> None:
        """Consume one frame from ``iface``. Never raises: bad input is counted.

        ``csum_ok``: the device vouches for the frame's TCP/UDP checksum (a
        vnet-header TAP for a frame the kernel marked DATA_VALID or left
        partial: Linux's CHECKSUM_UNNECESSARY / CHECKSUM_PARTIAL); it travels
        down the dispatch as the handlers' last argument, and TCP and UDP then
        skip their own verification. Only a device's trusted receiver (given
        to devices whose ``checksum_rx`` is True) passes True, and
        ``receive_batch`` for the frames software GRO verified (a merged one
        may be larger than the MTU)."""
        self._receive(iface, csum_ok, frame, now)

    def _receive(self, iface: Interface, csum_ok: bool, frame: bytes | memoryview,
                 now: float | None = None) -> None:
        """``receive`` with the arguments in the order a device's receivers
        bind them (``functools.partial(self._receive, iface, csum_ok)``)."""
        timers = self.timers
        t = self.clock() if now is None else now
        if t > timers.now:
            timers.now = t
        try:
            early = self.early_input
            if early is not None and early(iface, frame, csum_ok):
                return          # a flood's bare SYN or RST, answered (proto/tcp/synguard.py)
            fast = self.fast_receive
            fast6 = self.fast_receive6
            if fast6 is not None and frame[12:13] == b"\x86":
                fast = fast6        # IPv6's ethertype (0x86DD) starts so; Ipv6.fast_input checks
            if fast is not None:
                # The established-connection fast path (Ipv4.fast_input,
                # Ipv6.fast_input for IPv6's ethertype): 1 is
                # done; 2 is "not taken, but the TCP checksum was verified",
                # which the full path then need not verify again.
                done = fast(iface, frame, csum_ok)
                if done == 1:
                    return
                if done:
                    csum_ok = True
            if iface.device.raw_ip:
                self._receive_raw_ip(iface, frame, csum_ok)
                return
            counters = self.counters
            if len(frame) > iface.mtu + 18 and not (iface.device.gro or csum_ok):
                # header + 802.1Q tag; only a device with GRO offload hands us
                # more, or software GRO (receive_batch: verified, csum_ok).
                counters["eth.oversize"] += 1
                return
            eth, payload = ethernet.parse(frame, iface.vlan)
            dst = eth.dst
            if dst != iface.mac and not (dst[0] & 1 and (
                    dst == ethernet.BROADCAST or dst in iface.multicast_macs
                    or dst[:3] == b"\x01\x00\x5e")):
                counters["eth.not_for_us"] += 1
                return
            if eth.src == iface.mac:
                counters["eth.own_source"] += 1   # our own frame looped back
                return
            handler = self.ethertypes.get(eth.ethertype)
            if handler is None:
                counters["eth.unknown_ethertype"] += 1
                return
            handler(iface, eth, payload, csum_ok)
        except Malformed as exc:
            self.counters.drop(exc.reason)
        except Exception:
            self.counters["stack.internal_error"] += 1
            log.exception("internal error while receiving a frame on %s", iface.name)

    def receive_batch(self, iface: Interface, frames: list[tuple[bytes, int]],
                      trusted: bool = False) -> None:
        """Consume one read batch of ``(frame, vouched)`` pairs from ``iface``,
        in order: runs of in-order segments of one TCP connection merged first
        into verified super-frames (software GRO, stack/gro.py, as Linux does
        for every NIC), then each frame as ``receive`` would. ``vouched``
        counts only when ``trusted`` (the device's trusted receiver exists).
        TUN devices (bare IP) get no merging. Never raises."""
        now = self.clock()
        receive = self._receive
        if iface.device.raw_ip:
            for frame, vouched in frames:
                receive(iface, bool(vouched and trusted), frame, now)
            return
        try:
            merged = gro.coalesce(frames, trusted, iface.mtu + 14, self.counters)
        except Exception:
            self.counters["stack.internal_error"] += 1
            log.exception("internal error while merging a batch on %s", iface.name)
            merged = [(frame, bool(vouched and trusted)) for frame, vouched in frames]
        for frame, csum_ok in merged:
            receive(iface, csum_ok, frame, now)

    def _receive_raw_ip(self, iface: Interface, frame: bytes | memoryview,
                        csum_ok: bool = False) -> None:
        mv = memoryview(frame)
        if not mv:
            self.counters["ip.empty"] += 1
            return
        version = mv[0] >> 4
        ethertype = ethernet.ETH_IPV4 if version == 4 else (
            ethernet.ETH_IPV6 if version == 6 else None)
        handler = self.ethertypes.get(ethertype) if ethertype else None
        if handler is None:
            self.counters["ip.bad_version"] += 1
            return
        handler(iface, ethernet.EthernetHeader(iface.mac, b"\0" * 6, ethertype or 0, None), mv,
                csum_ok)

    # -- output ------------------------------------------------------------------
    def set_ip_output(self, addr_len: int, output: IpOutput) -> None:
        """The IP module for addresses of ``addr_len`` bytes registers its output."""
        outputs = self._ip_outputs
        outputs[addr_len] = output
        self.ip_output = output if len(outputs) == 1 and addr_len == 4 \
            else self._dispatch_ip_output

    def _dispatch_ip_output(self, dst: bytes, proto: int,
                            payload: bytes | bytearray | memoryview,
                            src: bytes | None = None, ttl: int | None = None, tos: int = 0,
                            df: bool | None = False, iface: Interface | None = None) -> int:
        """``ip_output`` through the module of ``dst``'s family."""
        output = self._ip_outputs.get(len(dst))
        if output is None:
            self.counters["ip.no_ipv4_module"] += 1
            return errno.ENETUNREACH
        return output(dst, proto, payload, src, ttl, tos, df, iface)

    @property
    def local_queued(self) -> int:
        """Loopback datagrams waiting for the next poll (``ctl stats`` queues)."""
        return len(self._local)

    def queue_local(self, packet: bytes, iface: Interface) -> None:
        """Loopback: a datagram to one of our own addresses, delivered on poll."""
        if len(self._local) >= self.config.local_queue_max:
            self.counters["ip.loopback_queue_full"] += 1
            return
        self._local.append((packet, iface))

    def _deliver_local(self, packet: bytes, iface: Interface) -> None:
        handler = self.ethertypes.get(ethernet.ETH_IPV4 if packet[0] >> 4 == 4
                                      else ethernet.ETH_IPV6)
        if handler is None:
            return
        eth = ethernet.EthernetHeader(iface.mac, iface.mac, 0, None)
        try:
            handler(iface, eth, memoryview(packet), False)
        except Malformed as exc:
            self.counters.drop(exc.reason)
        except Exception:
            self.counters["stack.internal_error"] += 1
            log.exception("internal error in loopback delivery")

    def send_frame(self, iface: Interface, dst_mac: bytes, ethertype: int,
                   payload: bytes | bytearray | memoryview) -> None:
        """The one output path to a device."""
        if iface.device.raw_ip:
            iface.device.send(bytes(payload))
        else:
            iface.device.send(ethernet.build(dst_mac, iface.mac, ethertype, payload, iface.vlan))

    def local_error(self, packet: bytes | memoryview, err: int = errno.EHOSTUNREACH) -> None:
        """A datagram we sent could not leave because its next hop did not
        resolve (ARP or neighbour discovery): the one path by which such a
        failure reaches the transport that sent it, for both families. As
        Linux's ``dst_link_failure``, the transport hears a host unreachable
        about the datagram (ICMP destination unreachable code 1 for IPv4,
        ICMPv6 code 3, address unreachable, for IPv6) through the handler an
        ICMP error from the wire reaches: ``ip_error_handlers`` or
        ``Ipv6.error_handlers``. TCP's connect fails with ``err``; UDP takes
        it as the soft error it is (Linux's udp_err without IP_RECVERR). Only
        a first fragment names its sender (a later one's data are not ports)."""
        mv = memoryview(packet)
        if not mv:
            return
        version = mv[0] >> 4
        if version == 6:
            ipv6 = self.ipv6
            if ipv6 is None:
                return
            from femtotcp.wire.icmp6 import (  # only with the ipv6 module
                ADDRESS_UNREACHABLE,
                DEST_UNREACHABLE,
                parse_quote,
            )
            try:
                quote = parse_quote(mv)
            except Malformed:
                return
            handler6 = ipv6.error_handlers.get(quote.upper)
            if handler6 is not None:
                handler6(quote.src, quote.dst, quote.transport, err, DEST_UNREACHABLE,
                         ADDRESS_UNREACHABLE, 0)
            return
        if len(mv) < 20 or version != 4:
            return
        hlen = (mv[0] & 0x0F) * 4
        if hlen < 20 or len(mv) < hlen:
            return
        if (mv[6] << 8 | mv[7]) & 0x1FFF:
            return
        handler = self.ip_error_handlers.get(mv[9])
        if handler is not None:
            handler(bytes(mv[12:16]), bytes(mv[16:20]), mv[hlen:], err, 3, 1, 0)
