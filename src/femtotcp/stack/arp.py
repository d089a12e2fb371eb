"""ARP (RFC 826): the IPv4 neighbour cache, and address conflict detection (RFC 5227).

Learning is deliberately narrow: an entry is created or updated only from ARP
aimed at one of our addresses (or a gratuitous ARP for a neighbour we already
know), never from a packet whose sender MAC is a group address. Requests are
rate limited (one a second per neighbour, three in all, as Linux), and packets
waiting on resolution sit in a bounded queue; when resolution fails they are
reported to their transport as EHOSTUNREACH.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from femtotcp.core import rand
from femtotcp.core.timers import Timer
from femtotcp.stack.neighbour import (
    INCOMPLETE,
    PROBE,
    REACHABLE,
    STALE,
    Neighbour,
    NeighbourTable,
)
from femtotcp.wire import arp as wire_arp
from femtotcp.wire import ethernet, ip_str, mac_str

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.arp")

ZERO_MAC = b"\x00" * 6
ZERO_IP = b"\x00" * 4

__all__ = ["INCOMPLETE", "PROBE", "REACHABLE", "STALE", "Arp", "Neighbour", "Prober",
           "install"]


class Prober:
    """RFC 5227 2.1.1 probing of one address; ``on_done(mac or None)``."""

    def __init__(self, arp: Arp, iface: Interface, addr: bytes,
                 on_done: Callable[[bytes | None], None]) -> None:
        self.arp = arp
        self.iface = iface
        self.addr = addr
        self.on_done = on_done
        self.sent = 0
        self.done = False
        self.timer: Timer | None = None
        cfg = arp.stack.config
        self._wait(_uniform(0.0, cfg.acd_probe_wait))

    def _wait(self, delay: float) -> None:
        self.timer = self.arp.stack.timers.call_later(delay, self._step)

    def _step(self) -> None:
        if self.done:
            return
        cfg = self.arp.stack.config
        if self.sent < cfg.acd_probe_num:
            self.arp.send(self.iface, wire_arp.REQUEST, ZERO_IP, ZERO_MAC, self.addr,
                          ethernet.BROADCAST)
            self.sent += 1
            if self.sent < cfg.acd_probe_num:
                self._wait(_uniform(cfg.acd_probe_min, cfg.acd_probe_max))
            else:
                self._wait(cfg.acd_announce_wait)
            return
        self.finish(None)

    def finish(self, conflict_mac: bytes | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        self.arp.probers.discard(self)
        self.on_done(conflict_mac)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * rand.randbelow(1_000_000) / 1_000_000


class Arp(NeighbourTable):
    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.probers: set[Prober] = set()
        self.conflicts: dict[bytes, bytes] = {}     # our address -> MAC that claimed it
        self._last_defend: dict[bytes, float] = {}
        #: Called with (iface, addr, mac) when RFC 5227 probing finds a conflict.
        self.on_conflict: Callable[[Interface, bytes, bytes], None] | None = None
        stack.ethertypes[ethernet.ETH_ARP] = self.input

    # -- output ------------------------------------------------------------------
    def send(self, iface: Interface, op: int, spa: bytes, tha: bytes, tpa: bytes,
             dst_mac: bytes) -> None:
        self.stack.counters["arp.tx_request" if op == wire_arp.REQUEST else "arp.tx_reply"] += 1
        self.stack.send_frame(iface, dst_mac, ethernet.ETH_ARP,
                              wire_arp.build(op, iface.mac, spa, tha, tpa))

    def announce(self, iface: Interface, addr: bytes) -> None:
        """A gratuitous ARP request (RFC 5227 2.3 announcement)."""
        self.send(iface, wire_arp.REQUEST, addr, ZERO_MAC, addr, ethernet.BROADCAST)

    def start_interface(self, iface: Interface) -> None:
        if iface.raw_ip:
            return
        cfg = self.stack.config
        for a in list(iface.ipv4):
            if cfg.acd:
                self.stack.set_tentative(iface, a.addr, True)
                def done(mac: bytes | None, addr: bytes = a.addr) -> None:
                    self._acd_done(iface, addr, mac)

                self.probe(iface, a.addr, done)
            else:
                self.announce(iface, a.addr)

    def probe(self, iface: Interface, addr: bytes,
              on_result: Callable[[bytes | None], None]) -> Prober:
        """RFC 5227 probing: ``on_result`` gets the MAC of a host using ``addr``, or None."""
        prober = Prober(self, iface, addr, on_result)
        self.probers.add(prober)
        return prober

    def _acd_done(self, iface: Interface, addr: bytes, mac: bytes | None) -> None:
        if mac is not None:
            log.error("address %s on %s is in use by %s: not using it",
                      ip_str(addr), iface.name, mac_str(mac))
            self.stack.counters["arp.acd_conflict"] += 1
            self.conflicts[addr] = mac
            self.stack.remove_address(iface, addr)
            if self.on_conflict is not None:
                self.on_conflict(iface, addr, mac)
            return
        self.stack.set_tentative(iface, addr, False)
        cfg = self.stack.config

        def announce(left: int) -> None:
            self.announce(iface, addr)
            if left > 1:
                self.stack.timers.call_later(cfg.acd_announce_interval,
                                             lambda: announce(left - 1))

        announce(cfg.acd_announce_num)

    # -- input -------------------------------------------------------------------
    def input(self, iface: Interface, eth: ethernet.EthernetHeader, payload: memoryview,
              csum_ok: bool = False) -> None:
        stack = self.stack
        counters = stack.counters
        pkt = wire_arp.parse(payload)
        counters["arp.rx"] += 1
        sha, spa, tpa = pkt.sha, pkt.spa, pkt.tpa
        if sha[0] & 1 or sha == ZERO_MAC:
            counters["arp.bad_sender_mac"] += 1
            return
        if sha == iface.mac:
            counters["arp.own_frame"] += 1
            return
        if eth.src != sha and not eth.src[0] & 1:
            # Proxies legitimately differ; count it, it is a spoofing hint.
            counters["arp.sender_mismatch"] += 1
        mine = {a.addr: a for a in iface.ipv4}
        # Someone else claims one of our addresses (RFC 5227 2.4).
        if spa in mine or (spa == ZERO_IP and tpa in mine and mine[tpa].tentative):
            claimed = spa if spa in mine else tpa
            for prober in list(self.probers):
                if prober.iface is iface and prober.addr == claimed:
                    prober.finish(sha)
                    return
            if spa in mine:
                counters["arp.address_conflict"] += 1
                last = self._last_defend.get(spa, -1e9)
                if stack.now - last >= 10.0:
                    # Logged and defended once per DEFEND_INTERVAL (RFC 5227 2.4 (b)):
                    # a flood of claims is counted, not written to the log each time.
                    self._last_defend[spa] = stack.now
                    log.warning("ARP from %s claims our address %s on %s",
                                mac_str(sha), ip_str(spa), iface.name)
                    if not mine[spa].tentative:
                        self.announce(iface, spa)
                return
        for prober in list(self.probers):   # DHCP's DECLINE check on a foreign address
            if prober.iface is iface and (spa == prober.addr or (
                    spa == ZERO_IP and tpa == prober.addr)):
                prober.finish(sha)
                return
        target = mine.get(tpa)
        for_us = target is not None and not target.tentative
        if spa == ZERO_IP:
            # RFC 5227 probe for one of our addresses: answer so the prober backs off.
            if for_us and pkt.op == wire_arp.REQUEST:
                self.send(iface, wire_arp.REPLY, tpa, sha, ZERO_IP, sha)
            counters["arp.probe_seen"] += 1
            return
        if spa[0] >= 224 or spa[0] == 127 or spa == b"\xff\xff\xff\xff":
            counters["arp.bad_sender_ip"] += 1
            return
        cache = self.caches.setdefault(iface, {})
        if for_us:
            self._learn(iface, cache, spa, sha)
            if pkt.op == wire_arp.REQUEST:
                self.send(iface, wire_arp.REPLY, tpa, sha, spa, sha)
        elif spa == tpa and spa in cache:
            counters["arp.gratuitous_update"] += 1
            self._learn(iface, cache, spa, sha)
        else:
            counters["arp.not_for_us"] += 1

    def _learn(self, iface: Interface, cache: dict[bytes, Neighbour], ip: bytes,
               mac: bytes) -> None:
        now = self.stack.now
        n = cache.get(ip)
        if n is None:
            n = self._new_entry(cache, ip)
            if n is None:
                return
        n.mac = mac
        n.state = REACHABLE
        n.confirmed = now
        n.requests = 0
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        if n.pending:
            pending, n.pending = n.pending, deque()
            n.pending_bytes = 0
            for packet in pending:
                self.stack.send_frame(iface, mac, ethernet.ETH_IPV4, packet)

    # -- resolution ----------------------------------------------------------------
    def resolve_and_send(self, iface: Interface, next_hop: bytes, packet: bytes) -> None:
        """Send an IPv4 packet to ``next_hop``, resolving its MAC first if needed."""
        cache = self.caches.get(iface)
        if cache is None:
            cache = self.caches[iface] = {}
        n = cache.get(next_hop)
        stack = self.stack
        now = stack.now
        if n is not None and n.mac is not None:
            n.used = now
            stack.send_frame(iface, n.mac, ethernet.ETH_IPV4, packet)
            if n.stale(now, self.reachable):
                # Reachability is stale: keep using the MAC but re-check it with
                # unicast requests (Linux's STALE -> PROBE).
                n.state = PROBE
                n.requests = 0
                self._request(iface, n, unicast=True)
            return
        if n is None:
            n = self._new_entry(cache, next_hop)
            if n is None:
                stack.local_error(packet)
                return
            self._request(iface, n, unicast=False)
        self._enqueue(n, packet)

    def _request(self, iface: Interface, n: Neighbour, unicast: bool) -> None:
        src = iface.ipv4_for(n.ip) or ZERO_IP
        dst_mac = n.mac if unicast and n.mac is not None else ethernet.BROADCAST
        tha = n.mac if unicast and n.mac is not None else ZERO_MAC
        self.send(iface, wire_arp.REQUEST, src, tha, n.ip, dst_mac)
        n.requests += 1
        n.timer = self.stack.timers.call_later(self.stack.config.arp_retry,
                                               lambda: self._retry(iface, n))

    def _retry(self, iface: Interface, n: Neighbour) -> None:
        n.timer = None
        cache = self.caches.get(iface, {})
        if cache.get(n.ip) is not n:
            return
        if n.state == REACHABLE:
            return
        if n.requests < self.stack.config.arp_max_requests:
            self._request(iface, n, unicast=n.state == PROBE)
            return
        self.stack.counters["arp.resolution_failed"] += 1
        self._failed(cache, n)

    def entries(self) -> list[dict[str, object]]:
        """The cache for ``femtotcp ctl neigh``."""
        now = self.stack.now
        out: list[dict[str, object]] = []
        for iface, cache in self.caches.items():
            for n in cache.values():
                state = n.state
                if n.stale(now, self.reachable):
                    state = STALE
                out.append({"interface": iface.name, "address": ip_str(n.ip),
                            "mac": mac_str(n.mac) if n.mac else None, "state": state,
                            "age": round(now - n.confirmed, 3), "pending": len(n.pending)})
        return out


def install(stack: Stack) -> Arp:
    arp = Arp(stack)
    stack.arp = arp
    return arp
