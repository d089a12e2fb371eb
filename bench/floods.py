"""``python -m bench.floods``: floods against one stack on the in-memory LAN, on a
virtual clock (sans-I/O: frames go to the victim's device receiver, as a
device hands them over, as fast as Python goes, and virtual time advances as if they arrived at ``--rate`` frames
a second).

    python -m bench.floods [--frames N] [--rate FPS] [FLOOD ...]

For each flood it prints the RSS before, at the peak and after (once the
flood stopped and two virtual minutes of timers ran), Python's heap in
allocated blocks at the same three points, the counters and queue gauges
that flood is about, and whether, half-way through the flood, the stack
answered a ping and accepted a new TCP connection from a legitimate host
(within one virtual second). Rates are frames per CPU second of this process
(the machine may be shared); the flood itself includes the victim's replies.

The victim is 192.0.2.1 (MAC 02:00:00:00:00:01) with a default route through
192.0.2.254 (the flooder's port, which answers ARP and swallows the rest), a
listener on port 80, a resolver pointed at 192.0.2.53 (a responder 50 ms
away) and, on a second interface, a DHCP client bound to a real server.
Spoofed sources come from 198.51.100.0/24 and 203.0.113.0/24 (documentation
ranges; nothing leaves the process).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from femtotcp.phy.memory import MemoryDevice, Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dhcp as dhcpc
from femtotcp.services.dhcp_server import DhcpServer
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.interface import Interface
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, dhcp, dns, ethernet, ip_bytes, ipv4, mac_bytes, tcp, udp

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]
VICTIM = ip_bytes("192.0.2.1")
VICTIM_MAC = mac_bytes("02:00:00:00:00:01")
CLIENT = ip_bytes("192.0.2.2")
NS = ip_bytes("192.0.2.53")
ROUTER = ip_bytes("192.0.2.254")
ROUTER_MAC = mac_bytes("02:00:00:00:00:fe")
DHCP_MAC = mac_bytes("02:00:00:00:01:01")
DHCPD_MAC = mac_bytes("02:00:00:00:01:fe")
POISON = ip_bytes("203.0.113.66")


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class _Router:
    """The flooder's switch port: answers ARP for its address, drops the rest."""

    def __init__(self, switch: Switch, name: str, ip: bytes, mac: bytes) -> None:
        self.port: MemoryDevice = switch.port(name)
        self.ip, self.mac = ip, mac
        self.frames = 0
        self.port.set_receiver(self._receive)

    def _receive(self, frame: bytes) -> None:
        self.frames += 1
        if frame[12:14] != b"\x08\x06":
            return
        req = arp.parse(memoryview(frame)[14:])
        if req.op == arp.REQUEST and req.tpa == self.ip:
            self.port.send(ethernet.build(req.sha, self.mac, ethernet.ETH_ARP,
                                          arp.build(arp.REPLY, self.mac, self.ip, req.sha,
                                                    req.spa)))


class Rig:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        loop = self.loop = SimLoop()
        self.lan = Switch(loop)
        self.dhcp_net = Switch(loop)
        self.victim = self._stack("victim", self.lan, VICTIM_MAC, "192.0.2.1/24")
        self.if0 = self.victim.interfaces[0]
        self.victim.add_route("0.0.0.0/0", "192.0.2.254")
        self.client = self._stack("client", self.lan, mac_bytes("02:00:00:00:00:02"),
                                  "192.0.2.2/24")
        ns = self._stack("ns", self.lan, mac_bytes("02:00:00:00:00:53"), "192.0.2.53/24")
        self.responder = DnsResponder(ns, zone="demo")
        self.router = _Router(self.lan, "router", ROUTER, ROUTER_MAC)
        self.listener = self.victim.tcp.listen(b"\0\0\0\0", 80)
        self.accepted: list[Any] = []
        self.listener.on_event = self._accept
        self.victim.resolver.set_servers([NS])
        # DHCP: a real server on the second network, the client bound to it.
        self.if1 = self.victim.add_interface(self.dhcp_net.port("victim-dhcp"), mac=DHCP_MAC)
        srv = self._stack("dhcpd", self.dhcp_net, DHCPD_MAC, "198.51.100.1/24")
        DhcpServer(srv, srv.interfaces[0], "198.51.100.10", "198.51.100.200",
                   router="198.51.100.1", lease_time=600)
        self.dhcp = dhcpc.install(self.victim, self.if1)
        self.dhcp.probe = False
        self.dhcp.apply_dns = False
        self.dhcp.start()
        loop.run_until(lambda: self.dhcp.state == dhcpc.BOUND, 30)
        self.ping_ok(timeout=5)          # ARP settled both ways

    def _stack(self, name: str, switch: Switch, mac: bytes, ip: str) -> Stack:
        st = Stack(name, modules=MODULES)
        st.add_interface(switch.port(name), mac=mac, ipv4=ip)
        self.loop.add_stack(st)
        st.start()
        return st

    def _accept(self) -> None:
        while (c := self.listener.accept()) is not None:
            self.accepted.append(c)

    # -- what a legitimate host sees ----------------------------------------------------
    def ping_ok(self, timeout: float = 1.0) -> bool:
        got: list[Any] = []
        ep = self.client.icmp.ping(VICTIM, got.append)
        ok = self.loop.run_until(lambda: bool(got), timeout)
        ep.close()
        return ok

    def connect_ok(self, timeout: float = 1.0) -> bool:
        conn = self.client.tcp.connect(VICTIM, 80)
        ok = self.loop.run_until(lambda: conn.state == "ESTABLISHED", timeout)
        conn.abort()
        return ok

    def rand_src(self) -> bytes:
        return bytes((198, 51, 100) if self.rng.random() < 0.5 else (203, 0, 113)) + \
            bytes((self.rng.randrange(1, 255),))


@dataclass
class Flood:
    name: str
    doc: str
    frame: Callable[[Rig, int], tuple[Interface, bytes]]
    gauges: Callable[[Rig], dict[str, object]]
    counters: tuple[str, ...]
    setup: Callable[[Rig], None] | None = None
    check: Callable[[Rig], dict[str, object]] | None = None


def _ip_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes, proto: int,
              payload: bytes, **kw: Any) -> bytes:
    return ethernet.build(dst_mac, src_mac, ethernet.ETH_IPV4,
                          ipv4.build(src, dst, proto, payload, **kw))


# -- the floods --------------------------------------------------------------------------

_SYN_OPTS = tcp.build_options(mss=1460, sack_perm=True, ts=(12345, 0), wscale=7)


def _syn(r: Rig, i: int) -> tuple[Interface, bytes]:
    src = r.rand_src()
    seg = tcp.build(src, VICTIM, r.rng.randrange(1024, 65536), 80, r.rng.getrandbits(32), 0,
                    tcp.SYN, 64240, options=_SYN_OPTS)
    return r.if0, _ip_frame(VICTIM_MAC, ROUTER_MAC, src, VICTIM, tcp.PROTO, seg)


def _tcp_gauges(r: Rig) -> dict[str, object]:
    s = r.victim.tcp.stats()
    return {"syn_queue": s["syn_queue"], "accept_queue": s["accept_queue"],
            "connections": sum(v for k, v in s.items() if k.startswith("state.")),
            "ooo_segments": s["ooo_segments"], "ooo_bytes": s["ooo_bytes"]}


_FRAG_DATA = bytes(1024)


def _frag(r: Rig, i: int) -> tuple[Interface, bytes]:
    src = r.rand_src()
    return r.if0, _ip_frame(VICTIM_MAC, ROUTER_MAC, src, VICTIM, udp.PROTO,
                            udp.build(src, VICTIM, 4000, 9, _FRAG_DATA * 2)[:1024],
                            ident=i & 0xFFFF, flags_frag=ipv4.MF)


def _reasm_gauges(r: Rig) -> dict[str, object]:
    s = r.victim.ipv4.reassembly.stats()
    return {"reasm_datagrams": s["datagrams"], "reasm_bytes": s["bytes"]}


def _ooo_setup(r: Rig) -> None:
    conn = r.client.tcp.connect(VICTIM, 80)
    r.loop.run_until(lambda: conn.state == "ESTABLISHED" and bool(r.accepted), 5)
    r.ooo_conn = conn                                # type: ignore[attr-defined]
    r.ooo_server = r.accepted[-1]                    # type: ignore[attr-defined]


def _ooo(r: Rig, i: int) -> tuple[Interface, bytes]:
    server = r.ooo_server                            # type: ignore[attr-defined]
    lport, rport = server.key[1], server.key[3]
    # Segments past a hole that is never filled, spread over the window.
    seq = (server.rcv_nxt + 1000 + r.rng.randrange(0, 200_000)) & 0xFFFFFFFF
    seg = tcp.build(CLIENT, VICTIM, rport, lport, seq, server.snd_nxt & 0xFFFFFFFF,
                    tcp.ACK, 64240, b"x" * 100)
    return r.if0, _ip_frame(VICTIM_MAC, ROUTER_MAC, CLIENT, VICTIM, tcp.PROTO, seg)


def _ooo_check(r: Rig) -> dict[str, object]:
    conn = r.ooo_conn                                # type: ignore[attr-defined]
    server = r.ooo_server                            # type: ignore[attr-defined]
    conn.send(b"still-ok")
    r.loop.run(duration=1.0)
    got = server.recv() or b""
    return {"conn_still_delivers": got.startswith(b"still-ok")}


def _udp_closed(r: Rig, i: int) -> tuple[Interface, bytes]:
    src = r.rand_src()
    return r.if0, _ip_frame(VICTIM_MAC, ROUTER_MAC, src, VICTIM, udp.PROTO,
                            udp.build(src, VICTIM, 4000, r.rng.randrange(1000, 30000),
                                      b"hello"))


def _udp_gauges(r: Rig) -> dict[str, object]:
    eps = r.victim.udp.endpoints.values()
    return {"udp_queued": sum(len(e.queue) for e in eps),
            "udp_queued_bytes": sum(e.queued_bytes for e in eps)}


def _arp_sender(r: Rig) -> tuple[bytes, bytes]:
    """A random unicast MAC and a random sender address: the stack learns a sender
    that asks for (or answers) one of its addresses, from any subnet."""
    spa = bytes([r.rng.randrange(1, 224)]) + r.rng.randbytes(3)
    if spa[0] in (127, 192):
        spa = bytes([198, 18]) + spa[2:]
    return bytes([2, 0xAA]) + r.rng.randbytes(4), spa


def _arp_req(r: Rig, i: int) -> tuple[Interface, bytes]:
    sha, spa = _arp_sender(r)
    return r.if0, ethernet.build(ethernet.BROADCAST, sha, ethernet.ETH_ARP,
                                 arp.build(arp.REQUEST, sha, spa, bytes(6), VICTIM))


def _arp_rep(r: Rig, i: int) -> tuple[Interface, bytes]:
    sha, spa = _arp_sender(r)
    return r.if0, ethernet.build(VICTIM_MAC, sha, ethernet.ETH_ARP,
                                 arp.build(arp.REPLY, sha, spa, VICTIM_MAC, VICTIM))


def _arp_gauges(r: Rig) -> dict[str, object]:
    cache = r.victim.arp.caches.get(r.if0, {})
    return {"arp_cache": len(cache), "arp_pending": sum(len(n.pending) for n in cache.values())}


def _dns_setup(r: Rig) -> None:
    r.responder.add_address("www.demo", "192.0.2.80")
    r.dns_results = []                               # type: ignore[attr-defined]
    r.dns_asked = 0                                  # type: ignore[attr-defined]


def _dns_spray(r: Rig, i: int) -> tuple[Interface, bytes]:
    if i % 500 == 0:
        r.dns_asked += 1                             # type: ignore[attr-defined]
        r.responder.add_address(f"h{i}.demo", "192.0.2.80")
        r.victim.resolver.resolve(f"h{i}.demo", dns.A,
                                  r.dns_results.append)  # type: ignore[attr-defined]
    # Half to the port of a query in flight (an attacker who learned it), half blind.
    port = r.rng.randrange(32768, 61000)
    if i & 1:
        for lookup in r.victim.resolver.lookups.values():
            for attempt in lookup.attempts:
                port = attempt.ep.local[1]
    name = next(iter(r.victim.resolver.lookups), ("www.demo", 1))[0]
    reply = dns.build(r.rng.getrandbits(16), dns.QR | dns.RD | dns.RA,
                      [dns.Question(name, dns.A)],
                      [dns.Record(name, dns.A, 1, 3600, POISON)])
    return r.if0, _ip_frame(VICTIM_MAC, ROUTER_MAC, NS, VICTIM, udp.PROTO,
                            udp.build(NS, VICTIM, 53, port, reply))


def _dns_check(r: Rig) -> dict[str, object]:
    r.loop.run(duration=10)
    results = r.dns_results                          # type: ignore[attr-defined]
    poisoned = sum(1 for x in results if POISON in (x.addresses or []))
    ok = sum(1 for x in results if x.error is None)
    return {"lookups": r.dns_asked, "answered": ok,  # type: ignore[attr-defined]
            "poisoned": poisoned}


def _dns_gauges(r: Rig) -> dict[str, object]:
    return {"lookups_in_flight": len(r.victim.resolver.lookups),
            "dns_cache": len(r.victim.resolver.cache)}


def _offer(r: Rig, i: int) -> tuple[Interface, bytes]:
    server = bytes([198, 51, 100, r.rng.randrange(2, 255)])
    msg = dhcp.build(dhcp.BOOTREPLY, r.rng.getrandbits(32), DHCP_MAC,
                     [(dhcp.OPT_MESSAGE_TYPE, bytes([dhcp.OFFER])),
                      (dhcp.OPT_SERVER_ID, server), (dhcp.OPT_LEASE_TIME, dhcp.u32(3600)),
                      (dhcp.OPT_SUBNET_MASK, dhcp.prefix_to_mask(24)),
                      (dhcp.OPT_ROUTER, server)],
                     yiaddr=bytes([198, 51, 100, r.rng.randrange(2, 255)]))
    frame = ethernet.build(ethernet.BROADCAST, bytes([2, 0xBB]) + r.rng.randbytes(4),
                           ethernet.ETH_IPV4,
                           ipv4.build(server, b"\xff\xff\xff\xff", udp.PROTO,
                                      udp.build(server, b"\xff\xff\xff\xff", 67, 68, msg)))
    return r.if1, frame


def _dhcp_setup(r: Rig) -> None:
    # The client starts over (as after a lost lease) while the flood runs.
    r.dhcp.stop()
    r.dhcp.start()


def _dhcp_check(r: Rig) -> dict[str, object]:
    r.loop.run_until(lambda: r.dhcp.state == dhcpc.BOUND, 60)
    lease = r.dhcp.lease
    return {"dhcp_state": r.dhcp.state,
            "server": ".".join(map(str, lease.server)) if lease is not None else None}


def _dhcp_gauges(r: Rig) -> dict[str, object]:
    return {"dhcp_state": r.dhcp.state, "history": len(r.dhcp.history)}


FLOODS: dict[str, Flood] = {f.name: f for f in (
    Flood("syn", "TCP SYNs from spoofed sources to a listening port", _syn, _tcp_gauges,
          ("tcp.syncookies_sent", "tcp.early_syn", "tcp.syn_queue_overflow", "tcp.listen_overflow",
           "tcp.passive_opens")),
    Flood("fragments", "first fragments (MF set), every one with a new IP ID", _frag,
          _reasm_gauges, ("ipv4.reasm_table_full", "ipv4.reasm_memory_full",
                          "ipv4.reasm_timeout")),
    Flood("tcp_ooo", "in-window segments past a hole on an established connection", _ooo,
          _tcp_gauges, ("tcp.ooo_segments", "tcp.ooo_dropped", "tcp.ooo_pruned",
                        "tcp.ooo_held_segments",
                        "tcp.ooo_held_bytes"), setup=_ooo_setup, check=_ooo_check),
    Flood("udp_closed", "UDP datagrams to closed ports", _udp_closed, _udp_gauges,
          ("udp.no_port", "icmp4.error_rate_limited", "ipv4.tx")),
    Flood("arp_requests", "ARP requests for the victim from random senders", _arp_req,
          _arp_gauges, ("arp.rx", "arp.cache_full", "arp.address_conflict")),
    Flood("arp_replies", "unsolicited ARP replies from random senders", _arp_rep,
          _arp_gauges, ("arp.rx", "arp.cache_full", "arp.not_for_us")),
    Flood("dns_spray", "DNS replies with random txids at the resolver's ports",
          _dns_spray, _dns_gauges, ("dns.rx", "dns.bad_txid", "dns.no_port", "udp.no_port",
                                    "dns.tx_query"),
          setup=_dns_setup, check=_dns_check),
    Flood("dhcp_offers", "DHCP OFFERs with random xids while the client re-acquires",
          _offer, _dhcp_gauges, ("dhcp.rx", "dhcp.bad_xid", "dhcp.bound"),
          setup=_dhcp_setup, check=_dhcp_check),
)}


@dataclass
class Result:
    name: str
    frames: int
    wall_s: float
    cpu_s: float
    rss: tuple[int, int, int]
    blocks: tuple[int, int, int]
    ping: bool
    connect: bool
    counters: dict[str, int]
    gauges_peak: dict[str, object]
    gauges_after: dict[str, object]
    extra: dict[str, object] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)


def run(flood: Flood, frames: int, rate: float, batch: int = 200) -> Result:
    r = Rig()
    if flood.setup is not None:
        flood.setup(r)
    victim = r.victim
    before_counters = dict(victim.counters)
    gc.collect()
    rss0, blocks0 = rss_kb(), sys.getallocatedblocks()
    rss_peak, blocks_peak = rss0, blocks0
    peak: dict[str, object] = {}
    ping = connect = False
    dt = batch / rate
    t0 = time.perf_counter()
    c0 = time.process_time()
    loop = r.loop
    i = 0
    while i < frames:
        for _ in range(min(batch, frames - i)):
            iface, frame = flood.frame(r, i)
            iface.device.deliver(frame)      # as a device hands it over (early paths too)
            i += 1
        loop.run(duration=dt)
        if i % (batch * 25) == 0 or i >= frames:
            rss_peak = max(rss_peak, rss_kb())
            blocks_peak = max(blocks_peak, sys.getallocatedblocks())
            g = flood.gauges(r)
            for k, v in g.items():
                if isinstance(v, int):
                    old = peak.get(k, v)
                    peak[k] = max(v, old) if isinstance(old, int) else v
                else:
                    peak[k] = v
        if i == (frames // 2) // batch * batch:
            # Half-way: a legitimate host pings and connects while the flood goes on
            # (the probe's own virtual time carries flood frames too).
            ping = _under_flood(r, flood, i, rate, r.ping_ok)
            connect = _under_flood(r, flood, i, rate, r.connect_ok)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    extra = flood.check(r) if flood.check is not None else {}
    loop.run(duration=120.0)
    after = flood.gauges(r)
    gc.collect()
    rss1, blocks1 = rss_kb(), sys.getallocatedblocks()
    counters = {k: victim.counters.get(k, 0) - before_counters.get(k, 0) for k in flood.counters}
    drops = {k: v - before_counters.get(k, 0) for k, v in victim.counters.drops().items()
             if v - before_counters.get(k, 0)}
    internal = victim.counters.get("stack.internal_error", 0)
    if internal:
        extra["INTERNAL_ERRORS"] = internal
    return Result(flood.name, frames, wall, cpu, (rss0, rss_peak, rss1), (blocks0, blocks_peak, blocks1),
                  ping, connect, counters, peak, after, extra, drops)


def _under_flood(r: Rig, flood: Flood, start: int, rate: float,
                 probe: Callable[[float], bool]) -> bool:
    """Run ``probe`` (at most one virtual second) while flood frames keep coming:
    a timer feeds ``rate`` frames a second in 10 ms slices."""
    state = {"i": start, "on": True}

    def feed() -> None:
        if not state["on"]:
            return
        for _ in range(int(rate / 100)):
            iface, frame = flood.frame(r, state["i"])
            iface.device.deliver(frame)
            state["i"] += 1
        r.loop.call_later(0.01, feed)

    r.loop.call_later(0.0, feed)
    ok = probe(1.0)
    state["on"] = False
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floods",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("floods", nargs="*", help=f"floods to run (default all: {', '.join(FLOODS)})")
    ap.add_argument("--frames", type=int, default=50_000, help="frames per flood")
    ap.add_argument("--rate", type=float, default=20_000.0,
                    help="virtual arrival rate, frames per second")
    args = ap.parse_args(argv)
    names = args.floods or list(FLOODS)
    for n in names:
        if n not in FLOODS:
            ap.error(f"unknown flood {n!r}; known: {', '.join(FLOODS)}")
    print(f"{args.frames} frames per flood at {args.rate:.0f} frames/s of virtual time\n")
    results = []
    for n in names:
        res = run(FLOODS[n], args.frames, args.rate)
        results.append(res)
        print(f"{n}: {FLOODS[n].doc}")
        print(f"  {res.frames / res.cpu_s:,.0f} frames per CPU second ({res.cpu_s:.1f} s CPU, "
              f"{res.wall_s:.1f} s wall)")
        print(f"  RSS MB before/peak/after: "
              f"{'/'.join(f'{x / 1024:.1f}' for x in res.rss)}; heap blocks: "
              f"{'/'.join(str(x) for x in res.blocks)}")
        print(f"  counters: {res.counters}")
        print(f"  gauges at peak: {res.gauges_peak}; after: {res.gauges_after}")
        if res.extra:
            print(f"  check: {res.extra}")
        print(f"  during the flood: ping {'answered' if res.ping else 'NOT answered'}, "
              f"new connection {'accepted' if res.connect else 'NOT accepted'}")
        print(flush=True)
    print(f"{'flood':13} {'frames/cpu-s':>12} {'RSS MB before/peak/after':>25} "
          f"{'heap blocks before/peak/after':>30} ping connect")
    for res in results:
        rss = "/".join(f"{x / 1024:.1f}" for x in res.rss)
        blocks = "/".join(str(x) for x in res.blocks)
        print(f"{res.name:13} {res.frames / res.cpu_s:>12,.0f} {rss:>25} {blocks:>30} "
              f"{'yes' if res.ping else 'NO':4} {'yes' if res.connect else 'NO'}")
    bad = [r.name for r in results if not (r.ping and r.connect) or "INTERNAL_ERRORS" in r.extra]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
