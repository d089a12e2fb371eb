"""A small DHCPv4 server (RFC 2131 4.3) for the in-memory demo network.

One subnet, one pool, leases kept in memory. It answers DISCOVER with an
OFFER, REQUEST (selecting, init-reboot, renewing, rebinding) with ACK or
NAK, honours RELEASE and DECLINE (a declined address is not offered again),
and INFORM. Replies go to the limited broadcast address on the serving
interface unless the client already has an address (ciaddr) to unicast to.
Bad requests are dropped and counted like any other hostile input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from femtotcp.stack.stack import need
from femtotcp.wire import Malformed, ip_bytes, ip_str
from femtotcp.wire import dhcp as wire

if TYPE_CHECKING:
    from femtotcp.proto.udp import UdpEndpoint
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.dhcp_server")

ANY4 = b"\x00\x00\x00\x00"
BROADCAST4 = b"\xff\xff\xff\xff"


@dataclass(slots=True)
class ServerLease:
    mac: bytes
    address: bytes
    expires: float
    state: str                 # "offered" | "bound"


class DhcpServer:
    offer_hold = 30.0          # seconds an offered address stays reserved
    max_leases = 1024

    def __init__(self, stack: Stack, iface: Interface, pool_start: str, pool_end: str,
                 router: str | None = None, dns: Sequence[str] = (), lease_time: int = 3600,
                 domain: str | None = None, search: Sequence[str] = ()) -> None:
        address = next((a for a in iface.ipv4 if not a.tentative), None)
        if address is None:
            raise ValueError(f"{iface.name} needs an IPv4 address to serve DHCP")
        self.stack = stack
        self.iface = iface
        self.server_id = address.addr
        self.prefixlen = address.prefixlen
        self.mask = wire.prefix_to_mask(address.prefixlen)
        self.start = int.from_bytes(ip_bytes(pool_start), "big")
        self.end = int.from_bytes(ip_bytes(pool_end), "big")
        if self.end < self.start or not address.contains(ip_bytes(pool_start)) \
                or not address.contains(ip_bytes(pool_end)):
            raise ValueError("the pool must lie inside the interface's subnet")
        self.router = ip_bytes(router) if router else None
        self.dns = [ip_bytes(d) for d in dns]
        self.lease_time = lease_time
        self.domain = domain
        self.search = list(search)
        self.leases: dict[bytes, ServerLease] = {}      # by client MAC
        self.declined: set[bytes] = set()
        #: Tests: rewrite(reply bytes, request) -> bytes to send instead.
        self.rewrite: Callable[[bytes, wire.DhcpMessage], bytes] | None = None
        self.log: list[tuple[str, str, str]] = []        # (type, mac, address), bounded
        self.ep: UdpEndpoint = need(stack.udp, "udp").open(ANY4, wire.SERVER_PORT)
        self.ep.on_readable = self._readable

    def close(self) -> None:
        self.ep.on_readable = None
        self.ep.close()

    # -- pool ------------------------------------------------------------------------
    def _in_pool(self, addr: bytes) -> bool:
        return len(addr) == 4 and self.start <= int.from_bytes(addr, "big") <= self.end

    def _on_subnet(self, addr: bytes) -> bool:
        mask = int.from_bytes(self.mask, "big")
        return (int.from_bytes(addr, "big") & mask) == (int.from_bytes(self.server_id, "big") & mask)

    def _taken(self, addr: bytes, mac: bytes) -> bool:
        now = self.stack.now
        for lease in self.leases.values():
            if lease.address == addr and lease.mac != mac and lease.expires > now:
                return True
        return addr in self.declined or addr == self.server_id or addr == self.router

    def _pick(self, mac: bytes, requested: bytes | None) -> bytes | None:
        lease = self.leases.get(mac)
        if lease is not None and not self._taken(lease.address, mac):
            return lease.address
        if requested is not None and self._in_pool(requested) and not self._taken(requested, mac):
            return requested
        for n in range(self.start, self.end + 1):
            addr = n.to_bytes(4, "big")
            if not self._taken(addr, mac):
                return addr
        return None

    # -- input -------------------------------------------------------------------------
    def _readable(self) -> None:
        while (item := self.ep.recv()) is not None:
            data, (src, sport) = item
            try:
                self.input(data, src, sport)
            except Malformed as exc:
                self.stack.counters[exc.reason] += 1

    def input(self, data: bytes, src: bytes, sport: int) -> None:
        counters = self.stack.counters
        msg = wire.parse(data)
        if msg.op != wire.BOOTREQUEST or msg.htype != wire.HTYPE_ETHER or msg.hlen != 6:
            counters["dhcpd.bad_request"] += 1
            return
        if msg.giaddr != ANY4:
            counters["dhcpd.unsupported_relay"] += 1
            return
        mtype = msg.message_type
        mac = msg.chaddr
        requested = msg.addr(wire.OPT_REQUESTED_IP)
        server_id = msg.addr(wire.OPT_SERVER_ID)
        now = self.stack.now
        self._note("rx " + wire.TYPE_NAMES.get(mtype or 0, "?"), mac, requested or msg.ciaddr)
        if mtype == wire.DISCOVER:
            addr = self._pick(mac, requested)
            if addr is None:
                counters["dhcpd.pool_exhausted"] += 1
                return
            self._store(ServerLease(mac, addr, now + self.offer_hold, "offered"))
            self._reply(msg, wire.OFFER, addr)
        elif mtype == wire.REQUEST:
            if server_id is not None:
                # SELECTING: the client chose us (or someone else).
                if server_id != self.server_id:
                    lease = self.leases.get(mac)
                    if lease is not None and lease.state == "offered":
                        del self.leases[mac]
                    return
                lease = self.leases.get(mac)
                if lease is None or requested != lease.address or self._taken(lease.address, mac):
                    self._reply(msg, wire.NAK, ANY4)
                    return
                self._bind(msg, lease.address)
                return
            # INIT-REBOOT (requested IP) or RENEWING/REBINDING (ciaddr), RFC 2131 4.3.2.
            wanted = requested if requested is not None else msg.ciaddr
            lease = self.leases.get(mac)
            if lease is None:
                if wanted != ANY4 and not self._on_subnet(wanted):
                    self._reply(msg, wire.NAK, ANY4)
                else:
                    counters["dhcpd.unknown_client"] += 1   # MUST remain silent
                return
            if wanted != lease.address or self._taken(wanted, mac):
                self._reply(msg, wire.NAK, ANY4)
                return
            self._bind(msg, wanted)
        elif mtype == wire.DECLINE:
            if server_id == self.server_id and requested is not None:
                self.declined.add(requested)
                self.leases.pop(mac, None)
                counters["dhcpd.declined"] += 1
        elif mtype == wire.RELEASE:
            lease = self.leases.get(mac)
            if server_id == self.server_id and lease is not None and lease.address == msg.ciaddr:
                del self.leases[mac]
                counters["dhcpd.released"] += 1
        elif mtype == wire.INFORM:
            self._reply(msg, wire.ACK, ANY4, lease_time=False)
        else:
            counters["dhcpd.bad_message_type"] += 1

    def _store(self, lease: ServerLease) -> None:
        if lease.mac not in self.leases and len(self.leases) >= self.max_leases:
            now = self.stack.now
            for mac in [m for m, entry in self.leases.items() if entry.expires <= now]:
                del self.leases[mac]
            if len(self.leases) >= self.max_leases:
                self.stack.counters["dhcpd.lease_table_full"] += 1
                return
        self.leases[lease.mac] = lease

    def _bind(self, msg: wire.DhcpMessage, addr: bytes) -> None:
        self._store(ServerLease(msg.chaddr, addr, self.stack.now + self.lease_time, "bound"))
        self._reply(msg, wire.ACK, addr)

    # -- output ------------------------------------------------------------------------
    def _reply(self, req: wire.DhcpMessage, mtype: int, yiaddr: bytes,
               lease_time: bool = True) -> None:
        opts: list[tuple[int, bytes]] = [(wire.OPT_MESSAGE_TYPE, bytes([mtype])),
                                         (wire.OPT_SERVER_ID, self.server_id)]
        if mtype != wire.NAK:
            if lease_time:
                opts.append((wire.OPT_LEASE_TIME, wire.u32(self.lease_time)))
            opts.append((wire.OPT_SUBNET_MASK, self.mask))
            if self.router is not None:
                opts.append((wire.OPT_ROUTER, self.router))
            if self.dns:
                opts.append((wire.OPT_DNS, b"".join(self.dns)))
            if self.domain:
                opts.append((wire.OPT_DOMAIN_NAME, self.domain.encode("ascii")))
            if self.search:
                opts.append((wire.OPT_DOMAIN_SEARCH, wire.encode_domain_search(self.search)))
        data = wire.build(wire.BOOTREPLY, req.xid, req.chaddr, opts, yiaddr=yiaddr,
                          ciaddr=req.ciaddr if mtype == wire.ACK else ANY4,
                          siaddr=self.server_id, flags=req.flags)
        if self.rewrite is not None:
            data = self.rewrite(data, req)
        # RFC 2131 4.1: unicast to ciaddr when the client has one (not for NAK),
        # else broadcast (our clients set the broadcast bit; we never unicast
        # to an address the client does not hold yet).
        if req.ciaddr != ANY4 and mtype != wire.NAK:
            dst = req.ciaddr
        else:
            dst = BROADCAST4
        self.ep.sendto(data, dst, wire.CLIENT_PORT, src=self.server_id, iface=self.iface)
        self.stack.counters["dhcpd.tx_" + wire.TYPE_NAMES[mtype].lower()] += 1
        self._note("tx " + wire.TYPE_NAMES[mtype], req.chaddr, yiaddr)

    def _note(self, what: str, mac: bytes, addr: bytes) -> None:
        self.log.append((what, ":".join(f"{b:02x}" for b in mac), ip_str(addr)))
        if len(self.log) > 256:
            del self.log[:128]
