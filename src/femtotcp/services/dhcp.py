"""A DHCPv4 client (RFC 2131 4.4) that validates every reply before it acts.

States follow RFC 2131 figure 5: INIT -> SELECTING -> REQUESTING -> (ARP
check) -> BOUND -> RENEWING at T1 -> REBINDING at T2 -> INIT at expiry, plus
INIT-REBOOT/REBOOTING when started with a remembered address. Retransmissions
back off exponentially from 4 s to 64 s with +-1 s of random jitter (RFC 2131
4.1); xids come from ``secrets``.

A reply is used only when it came from port 67, parses (``wire.dhcp``: magic
cookie, option lengths, overload, domain search), is a BOOTREPLY for
Ethernet (htype 1, hlen 6), carries our xid and our MAC in chaddr, has the
message type this state expects, a server identifier, and for OFFER/ACK a
lease time and a usable ``yiaddr`` (not 0/8, broadcast, multicast, class E,
loopback, nor the subnet's network/broadcast address). Everything else is
dropped and counted under ``dhcp.*``, with no change of state.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from femtotcp.core import rand
from femtotcp.stack.stack import need
from femtotcp.wire import Malformed, ip_str
from femtotcp.wire import dhcp as wire

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.proto.udp import UdpEndpoint
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.dhcp")

ANY4 = b"\x00\x00\x00\x00"
BROADCAST4 = b"\xff\xff\xff\xff"
INFINITE = 0xFFFFFFFF

INIT = "INIT"
SELECTING = "SELECTING"
REQUESTING = "REQUESTING"
CHECKING = "CHECKING"
BOUND = "BOUND"
RENEWING = "RENEWING"
REBINDING = "REBINDING"
REBOOTING = "REBOOTING"
DECLINED = "DECLINED"
STOPPED = "STOPPED"

#: Options we ask for (RFC 2132 9.8).
PARAMETERS = bytes([wire.OPT_SUBNET_MASK, wire.OPT_ROUTER, wire.OPT_DNS, wire.OPT_DOMAIN_NAME,
                    wire.OPT_BROADCAST, wire.OPT_LEASE_TIME, wire.OPT_T1, wire.OPT_T2,
                    wire.OPT_DOMAIN_SEARCH])


def usable_unicast(addr: bytes) -> bool:
    """An address a host may be given or may route through: not 0.0.0.0/8,
    loopback, multicast, class E or limited broadcast (RFC 1122 3.2.1.3)."""
    return len(addr) == 4 and addr[0] not in (0, 127) and addr[0] < 224


@dataclass(slots=True)
class Lease:
    """A bound lease. Times are on the stack's clock (seconds)."""

    address: bytes
    prefixlen: int
    server: bytes
    lease_time: int                 # seconds, INFINITE for ever
    obtained: float
    t1: float | None
    t2: float | None
    expiry: float | None
    router: bytes | None = None
    dns: list[bytes] = field(default_factory=list)
    domain: str | None = None
    search: list[str] = field(default_factory=list)
    mtu: int | None = None

    def search_domains(self) -> list[str]:
        """The resolver's search list from this lease, as dhclient writes
        resolv.conf: the domain search option (119), else the domain name
        (15; several names separated by spaces are each a domain)."""
        if self.search:
            return list(self.search)
        return self.domain.split() if self.domain else []

    def describe(self, now: float | None = None) -> dict[str, object]:
        """What ``femtotcp ctl addr`` shows."""
        def rel(t: float | None) -> float | None:
            return None if t is None or now is None else round(t - now, 1)
        return {
            "address": f"{ip_str(self.address)}/{self.prefixlen}",
            "server": ip_str(self.server),
            "router": ip_str(self.router) if self.router else None,
            "dns": [ip_str(a) for a in self.dns],
            "domain": self.domain,
            "search": list(self.search),
            "lease_time": self.lease_time,
            "obtained": self.obtained,
            "t1": self.t1, "t2": self.t2, "expiry": self.expiry,
            "renew_in": rel(self.t1), "rebind_in": rel(self.t2), "expires_in": rel(self.expiry),
        }


class DhcpClient:
    """The DHCP client of one interface."""

    retransmit_base = 4.0          # RFC 2131 4.1
    retransmit_max = 64.0
    request_retries = 4            # REQUEST/REBOOT tries before starting over
    decline_wait = 10.0            # RFC 2131 3.1.5: at least ten seconds
    startup_delay = (0.0, 1.0)     # RFC 2131 4.4.1 says 1-10 s; one host on a LAN here
    min_lease = 10                 # a shorter lease would renew in a storm
    renew_floor = 60.0             # RFC 2131 4.4.5: retransmit no faster than 60 s
    release_grace = 1.0            # keep the address this long after RELEASE (ARP reply)
    probe = True                   # ARP-check the offered address (RFC 2131 2.2, RFC 5227)
    apply_dns = True               # hand the DNS servers and search domains to stack.resolver

    def __init__(self, stack: Stack, iface: Interface) -> None:
        self.stack = stack
        self.iface = iface
        self.state = STOPPED
        self.lease: Lease | None = None
        self.xid = 0
        self.ep: UdpEndpoint | None = None
        self.timer: Timer | None = None
        self.lease_timers: list[Timer] = []
        self.tries = 0
        self.started_at = 0.0
        self.request_sent = 0.0
        self.offer: wire.DhcpMessage | None = None
        self.requested: bytes | None = None
        self.hostname: str | None = None
        self.prober: Any = None
        #: Called with the Lease when one is bound (and again when renewed).
        self.on_bound: Callable[[Lease], None] | None = None
        #: Called with the lost Lease on NAK or expiry.
        self.on_lost: Callable[[Lease], None] | None = None
        #: The last message types sent and received ("tx DISCOVER", "rx OFFER", ...).
        self.history: deque[str] = deque(maxlen=64)

    # -- API ---------------------------------------------------------------------------
    def start(self, requested: bytes | None = None) -> None:
        """Begin acquiring; with ``requested`` try INIT-REBOOT for that address first."""
        if self.state != STOPPED:
            return
        if self.ep is None:
            self.ep = need(self.stack.udp, "udp").open(ANY4, wire.CLIENT_PORT)
            self.ep.on_readable = self._readable
        self.state = INIT
        self.requested = requested
        need(self.stack.ipv4, "ipv4").leasing.add(self.iface)
        low, high = self.startup_delay
        delay = low + (high - low) * rand.randbelow(1001) / 1000
        self._set_timer(delay, self._reboot if requested else self._discover)

    def release(self) -> None:
        """RFC 2131 4.4.6: give the lease back (unicast RELEASE) and stop."""
        lease = self.lease
        if lease is not None and self.state in (BOUND, RENEWING, REBINDING):
            self._send(wire.RELEASE, [(wire.OPT_SERVER_ID, lease.server)],
                       dst=lease.server, ciaddr=lease.address, src=lease.address,
                       xid=rand.randbits(32), broadcast_flag=False)
            self.stack.counters["dhcp.released"] += 1
            self._unbind(lease, announce=False, grace=self.release_grace)
        self.stop()

    def stop(self) -> None:
        """Stop without releasing (the lease stays on the interface until then)."""
        self.state = STOPPED
        if self.stack.ipv4 is not None:
            self.stack.ipv4.leasing.discard(self.iface)
        self._cancel_timer()
        self.prober = None      # a probe still running reports to a state it ignores
        if self.ep is not None:
            self.ep.on_readable = None
            self.ep.close()
            self.ep = None

    def close(self) -> None:
        """Like every service: stop (after ``release()`` when giving the lease back)."""
        self.stop()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"interface": self.iface.name, "state": self.state}
        if self.lease is not None:
            out.update(self.lease.describe(self.stack.now))
        return out

    # -- timers ------------------------------------------------------------------------
    def _set_timer(self, delay: float, cb: Callable[[], None]) -> None:
        self._cancel_timer()
        self.timer = self.stack.timers.call_later(max(0.0, delay), cb)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _backoff(self) -> float:
        """RFC 2131 4.1: 4, 8, 16, 32, 64 s, each randomised by +-1 s."""
        base: float = min(self.retransmit_base * float(1 << min(self.tries, 8)),
                          self.retransmit_max)
        return max(0.5, base + (rand.randbelow(2001) - 1000) / 1000)

    # -- sending -----------------------------------------------------------------------
    def _options(self, msg_type: int, extra: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        opts = [(wire.OPT_MESSAGE_TYPE, bytes([msg_type])),
                (wire.OPT_CLIENT_ID, bytes([wire.HTYPE_ETHER]) + self.iface.mac)]
        opts += extra
        if msg_type in (wire.DISCOVER, wire.REQUEST, wire.INFORM):
            opts.append((wire.OPT_MAX_SIZE, (1500).to_bytes(2, "big")))
            opts.append((wire.OPT_PARAM_REQUEST, PARAMETERS))
            if self.hostname:
                opts.append((wire.OPT_HOSTNAME, self.hostname.encode("ascii", "replace")[:63]))
        return opts

    def _send(self, msg_type: int, extra: list[tuple[int, bytes]], dst: bytes = BROADCAST4,
              ciaddr: bytes = ANY4, src: bytes | None = None, xid: int | None = None,
              broadcast_flag: bool = True) -> None:
        ep = self.ep
        if ep is None:
            return
        secs = int(min(self.stack.now - self.started_at, 0xFFFF))
        msg = wire.build(wire.BOOTREQUEST, self.xid if xid is None else xid, self.iface.mac,
                         self._options(msg_type, extra), ciaddr=ciaddr, secs=secs,
                         flags=wire.FLAG_BROADCAST if broadcast_flag else 0)
        err = ep.sendto(msg, dst, wire.SERVER_PORT, src=src or ANY4, iface=self.iface)
        name = wire.TYPE_NAMES[msg_type]
        self.history.append("tx " + name)
        if err:
            self.stack.counters["dhcp.tx_error"] += 1
            log.debug("sending DHCP%s failed: errno %d", name, err)
        else:
            self.stack.counters["dhcp.tx_" + name.lower()] += 1

    def _discover(self) -> None:
        """INIT -> SELECTING (RFC 2131 4.4.1)."""
        self.state = SELECTING
        self.xid = rand.randbits(32)
        self.tries = 0
        self.offer = None
        self.started_at = self.stack.now
        self._send_discover()

    def _send_discover(self) -> None:
        extra: list[tuple[int, bytes]] = []
        if self.requested is not None:
            extra.append((wire.OPT_REQUESTED_IP, self.requested))
        self._send(wire.DISCOVER, extra)
        self._set_timer(self._backoff(), self._retry_discover)
        self.tries += 1

    def _retry_discover(self) -> None:
        if self.state == SELECTING:
            self._send_discover()

    def _send_request(self) -> None:
        offer = self.offer
        assert offer is not None
        self.request_sent = self.stack.now
        self._send(wire.REQUEST, [(wire.OPT_REQUESTED_IP, offer.yiaddr),
                                  (wire.OPT_SERVER_ID, offer.options[wire.OPT_SERVER_ID])])
        self.tries += 1
        self._set_timer(self._backoff(), self._retry_request)

    def _retry_request(self) -> None:
        if self.state not in (REQUESTING, REBOOTING):
            return
        if self.tries >= self.request_retries:
            self.stack.counters["dhcp.request_timeout"] += 1
            self._restart(0.0)
            return
        if self.state == REQUESTING:
            self._send_request()
        else:
            self._send_reboot()

    def _reboot(self) -> None:
        """INIT-REBOOT -> REBOOTING (RFC 2131 4.4.2)."""
        if self.requested is None:
            self._discover()
            return
        self.state = REBOOTING
        self.xid = rand.randbits(32)
        self.tries = 0
        self.started_at = self.stack.now
        self._send_reboot()

    def _send_reboot(self) -> None:
        assert self.requested is not None
        self.request_sent = self.stack.now
        self._send(wire.REQUEST, [(wire.OPT_REQUESTED_IP, self.requested)])
        self.tries += 1
        self._set_timer(self._backoff(), self._retry_request)

    def _restart(self, delay: float) -> None:
        self.state = INIT
        self.offer = None
        self.requested = None
        self._set_timer(delay, self._discover)

    # -- receiving ---------------------------------------------------------------------
    def _readable(self) -> None:
        ep = self.ep
        while ep is not None and (item := ep.recv()) is not None:
            data, (_src, sport) = item
            self.input(data, sport)
            ep = self.ep

    def input(self, data: bytes, sport: int = wire.SERVER_PORT) -> None:
        """One datagram to port 68. Validated in full before any state changes."""
        counters = self.stack.counters
        counters["dhcp.rx"] += 1
        if sport != wire.SERVER_PORT:
            counters["dhcp.bad_source_port"] += 1
            return
        try:
            msg = wire.parse(data)
        except Malformed as exc:
            counters[exc.reason] += 1
            return
        reason = self._validate(msg)
        if reason is not None:
            counters[reason] += 1
            log.debug("dropped DHCP reply: %s", reason)
            return
        mtype = msg.message_type
        self.history.append("rx " + wire.TYPE_NAMES.get(mtype or 0, "?"))
        counters["dhcp.rx_" + wire.TYPE_NAMES.get(mtype or 0, "?").lower()] += 1
        if mtype == wire.OFFER:
            self._on_offer(msg)
        elif mtype == wire.ACK:
            self._on_ack(msg)
        else:
            self._on_nak(msg)

    def _validate(self, msg: wire.DhcpMessage) -> str | None:
        """The counter name of the first check ``msg`` fails, or None."""
        if msg.op != wire.BOOTREPLY:
            return "dhcp.bad_op"
        if msg.htype != wire.HTYPE_ETHER or msg.hlen != 6:
            return "dhcp.bad_hlen"
        if msg.xid != self.xid:
            return "dhcp.bad_xid"
        if msg.chaddr != self.iface.mac:
            return "dhcp.bad_chaddr"
        mtype = msg.message_type
        if mtype is None:
            return "dhcp.no_message_type"
        state = self.state
        expected = {SELECTING: (wire.OFFER,),
                    REQUESTING: (wire.ACK, wire.NAK),
                    REBOOTING: (wire.ACK, wire.NAK),
                    RENEWING: (wire.ACK, wire.NAK),
                    REBINDING: (wire.ACK, wire.NAK)}.get(state, ())
        if mtype not in expected:
            return "dhcp.bad_message_type_for_state"
        server = msg.addr(wire.OPT_SERVER_ID)
        if server is None:
            return "dhcp.no_server_id"
        if not usable_unicast(server):
            return "dhcp.bad_server_id"
        if state == REQUESTING and self.offer is not None and \
                server != self.offer.options[wire.OPT_SERVER_ID]:
            return "dhcp.bad_server_id"
        if state == RENEWING and self.lease is not None and server != self.lease.server:
            return "dhcp.bad_server_id"
        if mtype == wire.NAK:
            return None
        if msg.u32(wire.OPT_LEASE_TIME) is None:
            return "dhcp.no_lease_time"
        yiaddr = msg.yiaddr
        if not usable_unicast(yiaddr):
            return "dhcp.bad_yiaddr"
        mask = msg.options.get(wire.OPT_SUBNET_MASK)
        if mask is not None:
            plen = wire.mask_to_prefix(mask)
            if plen == 0:
                return "dhcp.bad_subnet_mask"
            if plen < 31:
                host = int.from_bytes(yiaddr, "big") & ~int.from_bytes(mask, "big") & 0xFFFFFFFF
                if host == 0 or host == (~int.from_bytes(mask, "big") & 0xFFFFFFFF):
                    return "dhcp.bad_yiaddr"   # the subnet's network or broadcast address
        if state == REQUESTING and self.offer is not None and yiaddr != self.offer.yiaddr:
            return "dhcp.bad_yiaddr"
        if state == REBOOTING and yiaddr != self.requested:
            return "dhcp.bad_yiaddr"
        return None

    def _on_offer(self, msg: wire.DhcpMessage) -> None:
        """SELECTING: take the first valid offer (RFC 2131 4.4.1)."""
        self.offer = msg
        self.state = REQUESTING
        self.tries = 0
        self._send_request()

    def _on_nak(self, msg: wire.DhcpMessage) -> None:
        """RFC 2131 4.4.1/4.4.5: back to INIT; drop any lease we hold."""
        self.stack.counters["dhcp.nak"] += 1
        lease = self.lease
        if lease is not None:
            self._unbind(lease)
        self._restart(self._backoff() if self.state == REQUESTING else 0.0)

    def _on_ack(self, msg: wire.DhcpMessage) -> None:
        lease = self._lease_from(msg)
        if self.state in (REQUESTING, REBOOTING):
            self._cancel_timer()
            self._check(lease)
            return
        # RENEWING / REBINDING: extend, or move if the server changed the address.
        old = self.lease
        self._cancel_timer()
        if old is not None and old.address != lease.address:
            self._unbind(old)
        self._bind(lease)

    def _lease_from(self, msg: wire.DhcpMessage) -> Lease:
        now = self.request_sent or self.stack.now
        lease_time = msg.u32(wire.OPT_LEASE_TIME) or 0
        mask = msg.options.get(wire.OPT_SUBNET_MASK)
        if mask is not None:
            plen = wire.mask_to_prefix(mask)
        else:   # RFC 2131 leaves it open; the classful default is what clients use
            first = msg.yiaddr[0]
            plen = 8 if first < 128 else 16 if first < 192 else 24
        if lease_time == INFINITE:
            t1 = t2 = expiry = None
        else:
            lease_time = max(lease_time, self.min_lease)
            r1 = msg.u32(wire.OPT_T1)
            r2 = msg.u32(wire.OPT_T2)
            # RFC 2131 4.4.5: T1 0.5, T2 0.875 of the lease unless sane values came.
            if r1 is None or r2 is None or not 0 < r1 < r2 < lease_time:
                if r1 is not None or r2 is not None:
                    self.stack.counters["dhcp.timers_ignored"] += 1
                r1, r2 = lease_time // 2, lease_time * 7 // 8
                if r1 >= r2:
                    r2 = r1 + max(1, (lease_time - r1) // 2)
            t1, t2, expiry = now + r1, now + r2, now + lease_time
        routers = [r for r in msg.addresses(wire.OPT_ROUTER) if usable_unicast(r)]
        dns_servers = [d for d in msg.addresses(wire.OPT_DNS) if usable_unicast(d)]
        domain = None
        if wire.OPT_DOMAIN_NAME in msg.options:
            domain = wire.text(msg.options[wire.OPT_DOMAIN_NAME]) or None
        search = wire.domain_search(msg.options[wire.OPT_DOMAIN_SEARCH]) \
            if wire.OPT_DOMAIN_SEARCH in msg.options else []
        mtu_opt = msg.options.get(wire.OPT_MTU)
        mtu = int.from_bytes(mtu_opt, "big") if mtu_opt else None
        return Lease(msg.yiaddr, plen, msg.options[wire.OPT_SERVER_ID], lease_time, now,
                     t1, t2, expiry, routers[0] if routers else None, dns_servers, domain,
                     search, mtu if mtu and mtu >= 68 else None)

    # -- ARP check, bind, unbind -------------------------------------------------------
    def _check(self, lease: Lease) -> None:
        """RFC 2131 4.4.1: ARP for the address before using it; DECLINE if taken."""
        arp = self.stack.arp
        if not self.probe or arp is None or self.iface.raw_ip:
            self._bind(lease)
            return
        self.state = CHECKING

        def result(mac: bytes | None) -> None:
            self.prober = None
            if self.state != CHECKING:
                return
            if mac is None:
                self._bind(lease)
            else:
                self._decline(lease, mac)

        self.prober = arp.probe(self.iface, lease.address, result)

    def _decline(self, lease: Lease, mac: bytes) -> None:
        log.warning("DHCP offered %s, but %s uses it: declining", ip_str(lease.address),
                    ":".join(f"{b:02x}" for b in mac))
        self.stack.counters["dhcp.declined"] += 1
        self._send(wire.DECLINE, [(wire.OPT_REQUESTED_IP, lease.address),
                                  (wire.OPT_SERVER_ID, lease.server)])
        self.state = DECLINED
        self.offer = None
        self.requested = None
        self._set_timer(self.decline_wait, self._discover)

    def _bind(self, lease: Lease) -> None:
        stack = self.stack
        iface = self.iface
        old = self.lease
        fresh = old is None or old.address != lease.address or old.prefixlen != lease.prefixlen
        if fresh:
            stack.add_address(iface, f"{ip_str(lease.address)}/{lease.prefixlen}", origin="dhcp")
            if stack.arp is not None and not iface.raw_ip:
                stack.arp.announce(iface, lease.address)   # RFC 2131 4.4.1, RFC 5227 2.3
        if old is not None and old.router is not None and (fresh or old.router != lease.router):
            stack.remove_route("0.0.0.0/0", iface)
        if lease.router is not None and (fresh or old is None or old.router != lease.router):
            try:
                stack.add_route("0.0.0.0/0", gateway=ip_str(lease.router), iface=iface,
                                origin="dhcp")
            except ValueError as exc:
                stack.counters["dhcp.bad_router"] += 1
                log.warning("DHCP router %s not usable: %s", ip_str(lease.router), exc)
                lease.router = None
        if self.apply_dns and stack.resolver is not None:
            stack.resolver.set_lease_servers(iface.name, list(lease.dns))
            stack.resolver.set_lease_search(iface.name, lease.search_domains())
        self.lease = lease
        self.state = BOUND
        self.offer = None
        self.requested = None
        for t in self.lease_timers:
            t.cancel()
        timers = stack.timers
        self.lease_timers = []
        if lease.t1 is not None and lease.t2 is not None and lease.expiry is not None:
            self.lease_timers = [timers.call_at(lease.t1, self._renew),
                                 timers.call_at(lease.t2, self._rebind),
                                 timers.call_at(lease.expiry, self._expire)]
        stack.counters["dhcp.bound"] += 1
        log.info("DHCP lease %s/%d from %s for %s s", ip_str(lease.address), lease.prefixlen,
                 ip_str(lease.server), lease.lease_time)
        if self.on_bound is not None:
            self.on_bound(lease)

    def _unbind(self, lease: Lease, announce: bool = True, grace: float = 0.0) -> None:
        stack = self.stack
        iface = self.iface
        for t in self.lease_timers:
            t.cancel()
        self.lease_timers = []
        self.lease = None

        def remove() -> None:
            if self.lease is not None and self.lease.address == lease.address:
                return  # bound again meanwhile
            stack.remove_address(iface, lease.address)
            if lease.router is not None:
                stack.remove_route("0.0.0.0/0", iface)
            resolver = stack.resolver
            if self.apply_dns and resolver is not None:
                if self.lease is None:      # (a lease bound since has set its own)
                    resolver.set_lease_servers(iface.name, [])
                    resolver.set_lease_search(iface.name, [])

        if grace > 0:
            stack.timers.call_later(grace, remove)
        else:
            remove()
        if announce and self.on_lost is not None:
            self.on_lost(lease)

    # -- renewing ---------------------------------------------------------------------
    def _renew(self) -> None:
        """T1: unicast REQUEST to the server that granted the lease (RFC 2131 4.4.5)."""
        lease = self.lease
        if lease is None or self.state != BOUND:
            return
        self.state = RENEWING
        self.xid = rand.randbits(32)
        self.started_at = self.stack.now
        self._send_renew()

    def _send_renew(self) -> None:
        lease = self.lease
        if lease is None or self.state not in (RENEWING, REBINDING):
            return
        self.request_sent = self.stack.now
        renewing = self.state == RENEWING
        self._send(wire.REQUEST, [], dst=lease.server if renewing else BROADCAST4,
                   ciaddr=lease.address, src=lease.address, broadcast_flag=False)
        until = lease.t2 if renewing else lease.expiry
        if until is None:
            return
        remaining = until - self.stack.now
        # RFC 2131 4.4.5: half the remaining time, but not under 60 s; the
        # floor shrinks with leases under 16 minutes so they still retry.
        floor = min(self.renew_floor, lease.lease_time / 16)
        delay = max(remaining / 2, min(floor, remaining))
        if delay < remaining:
            self._set_timer(delay, self._send_renew)

    def _rebind(self) -> None:
        """T2: broadcast REQUEST to any server (RFC 2131 4.4.5)."""
        if self.lease is None or self.state not in (BOUND, RENEWING):
            return
        self.state = REBINDING
        self.xid = rand.randbits(32)
        self._send_renew()

    def _expire(self) -> None:
        lease = self.lease
        if lease is None:
            return
        log.warning("DHCP lease on %s expired", ip_str(lease.address))
        self.stack.counters["dhcp.expired"] += 1
        self._cancel_timer()
        self._unbind(lease)
        self._restart(0.0)


def install(stack: Stack, iface: Interface) -> DhcpClient:
    """A client for ``iface``; call ``start()``. The lease is released when
    the stack closes (``stack.close()``)."""
    client = DhcpClient(stack, iface)
    stack.on_close(client.release)
    return client
