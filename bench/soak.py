"""``python -m bench.soak --hours H``: a long run on the virtual clock, checked.

Client stacks behind lossy links (``phy/faulty.py``: loss, duplication and
reordering both ways) take their addresses from a DHCP server with a short
lease (so they renew all the time), look the server's name up through the DNS
server DHCP gave them, and open, use and close TCP connections to it, a few at
a time each, for H simulated hours. Each transfer sends a request of random
size and length, the server answers with bytes derived from the SHA-256 of
what it received, and the client checks them: every byte in both directions
is accounted for.

At the end (after the traffic stopped and every TIME_WAIT ran out) the soak
checks that

* every transfer completed with matching hashes (none failed, none stuck),
  and the bytes the server received equal the bytes the clients sent;
* no connection is left on any stack, no listener queue holds anything, no
  out-of-order data is held, no DNS lookup is in flight, every DHCP client is
  BOUND and renewed its lease;
* Python's heap (``tracemalloc``) is back to what it was after the warm-up
  round (within a small allowance for counters first seen during the run).

    python -m bench.soak [--hours H | --minutes M] [--clients N] [--workers N]
                         [--loss P] [--duplicate P] [--reorder P] [--seed S]

``run_soak(...)`` returns a ``SoakReport``; tests/test_soak.py runs ten
simulated minutes of it in ``make test``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import socket
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dhcp
from femtotcp.services.dhcp_server import DhcpServer
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import dns, ip_bytes

SERVER = ip_bytes("192.0.2.1")
PORT = 9000
NAME = "srv.soak"
MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]
STUCK_AFTER = 300.0          # a transfer running longer than this (virtual s) is stuck
#: Heap growth (bytes) allowed between the warm-up baseline and the end.
MEMORY_ALLOWANCE = 256 * 1024


@dataclass
class SoakReport:
    simulated_s: float           # the whole run: warm-up, soak, drain
    wall_s: float
    soak_s: float = 0.0          # the soak itself (traffic after the baseline)
    transfers: int = 0
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    bytes_sent: int = 0          # requests, as the clients sent them
    bytes_served: int = 0        # requests, as the server received them
    bytes_returned: int = 0      # responses, as the clients received and checked them
    dns_lookups: int = 0
    dns_failures: int = 0
    dhcp_renewals: int = 0
    leftovers: list[str] = field(default_factory=list)
    heap_baseline: int = 0
    heap_end: int = 0
    heap_peak: int = 0
    frames: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.failures and not self.leftovers and self.completed == self.transfers
                and self.bytes_sent == self.bytes_served
                and self.heap_end - self.heap_baseline <= MEMORY_ALLOWANCE)

    def summary(self) -> str:
        lines = [
            f"soaked {self.soak_s / 60:.1f} simulated minutes ({self.simulated_s / 60:.1f} with "
            f"warm-up and drain) in {self.wall_s:.1f} s wall; {self.frames} frames on the "
            f"clients' links",
            f"transfers: {self.transfers} started, {self.completed} completed with matching "
            f"hashes, {len(self.failures)} failed",
            f"bytes: {self.bytes_sent} sent, {self.bytes_served} received by the server, "
            f"{self.bytes_returned} returned and checked",
            f"dns: {self.dns_lookups} lookups, {self.dns_failures} failed (retried); "
            f"dhcp: {self.dhcp_renewals} leases renewed",
            f"heap (tracemalloc): baseline {self.heap_baseline / 1024:.0f} KiB, peak "
            f"{self.heap_peak / 1024:.0f} KiB, end {self.heap_end / 1024:.0f} KiB "
            f"(allowed growth {MEMORY_ALLOWANCE // 1024} KiB)",
            "fault counters: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counters.items())),
        ]
        for f in self.failures[:20]:
            lines.append(f"FAILED: {f}")
        for x in self.leftovers[:20]:
            lines.append(f"LEFT OVER: {x}")
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)


class _Serve:
    """Server side of one transfer: hash the request, answer with its digest."""

    def __init__(self, soak: Soak, conn: Any) -> None:
        self.soak = soak
        self.conn = conn
        self.head = b""
        self.want = -1
        self.reply_len = 0
        self.got = 0
        self.hash = hashlib.sha256()
        self.out = b""
        self.sent = 0
        self.done = False
        conn.on_event = self.event
        self.event()

    def event(self) -> None:
        conn = self.conn
        try:
            while (data := conn.recv()) is not None:
                if not data:
                    self._eof()
                    break
                if self.want < 0:
                    self.head += data
                    if len(self.head) < 16:
                        continue
                    self.want = int.from_bytes(self.head[:8], "big")
                    self.reply_len = int.from_bytes(self.head[8:16], "big")
                    data = self.head[16:]
                self.got += len(data)
                self.soak.report.bytes_served += len(data)
                self.hash.update(data)
            self._pump()
        except OSError as exc:
            self.soak.fail(f"server side: {exc!r}")
            conn.abort()

    def _eof(self) -> None:
        if self.done:
            return
        self.done = True
        digest = self.hash.digest()
        if self.got != self.want:
            self.soak.fail(f"server got {self.got} bytes, header said {self.want}")
        self.out = (digest * (self.reply_len // 32 + 1))[:self.reply_len]

    def _pump(self) -> None:
        if not self.done or self.conn.state not in ("ESTABLISHED", "CLOSE_WAIT"):
            return
        while self.sent < len(self.out):
            n = self.conn.send(memoryview(self.out)[self.sent:self.sent + 65536])
            if n == 0:
                return
            self.sent += n
        self.conn.close()
        self.conn.on_event = None


class _Worker:
    """One client's loop: (look the name up,) connect, send, read, check, close, wait."""

    def __init__(self, soak: Soak, client: Client, index: int) -> None:
        self.soak = soak
        self.client = client
        self.rng = random.Random(f"{soak.seed}-{client.index}-{index}")
        self.conn: Any = None
        self.started = 0.0
        self.active = False

    def schedule(self, delay: float) -> None:
        if self.soak.stopping:
            return
        self.soak.loop.call_later(delay, self.start)

    def start(self) -> None:
        if self.soak.stopping or self.client.dhcp.state != dhcp.BOUND:
            self.schedule(1.0)
            return
        if self.client.address is None or self.rng.random() < 0.2:
            self.soak.report.dns_lookups += 1
            self.client.stack.resolver.resolve(NAME, dns.A, self._resolved)
            return
        self._connect()

    def _resolved(self, result: Any) -> None:
        if result.error is not None or not result.addresses:
            self.soak.report.dns_failures += 1
            self.schedule(1.0)
            return
        if result.addresses != [SERVER]:
            self.soak.fail(f"{NAME} resolved to {result.addresses}")
        self.client.address = result.addresses[0]
        self._connect()

    def _connect(self) -> None:
        rng = self.rng
        size = rng.choice((0, rng.randrange(1, 2000), rng.randrange(1, 40000)))
        self.reply_len = rng.choice((0, rng.randrange(1, 2000), rng.randrange(1, 40000)))
        payload = rng.randbytes(size)
        self.expect = hashlib.sha256(payload).digest()
        self.out = size.to_bytes(8, "big") + self.reply_len.to_bytes(8, "big") + payload
        self.sent = 0
        self.shut = False
        self.reply = bytearray()
        self.started = self.soak.loop.now()
        self.active = True
        self.soak.report.transfers += 1
        self.conn = self.client.stack.tcp.connect(self.client.address, PORT)
        self.conn.on_event = self.event

    def event(self) -> None:
        conn = self.conn
        try:
            if conn.state in ("ESTABLISHED", "CLOSE_WAIT"):
                while self.sent < len(self.out):
                    n = conn.send(memoryview(self.out)[self.sent:self.sent + 65536])
                    if n == 0:
                        break
                    self.sent += n
                if self.sent == len(self.out) and not self.shut:
                    self.shut = True
                    conn.shutdown(socket.SHUT_WR)
            while (data := conn.recv()) is not None:
                if not data:
                    self._finish()
                    return
                self.reply += data
        except OSError as exc:
            self._end(f"{exc!r} in {conn.state} after {self.sent} bytes sent, "
                      f"{len(self.reply)} received")

    def _finish(self) -> None:
        want = (self.expect * (self.reply_len // 32 + 1))[:self.reply_len]
        if bytes(self.reply) != want:
            self._end(f"reply of {len(self.reply)} bytes does not match "
                      f"({self.reply_len} expected)")
            return
        report = self.soak.report
        report.completed += 1
        report.bytes_sent += len(self.out) - 16
        report.bytes_returned += len(self.reply)
        self.conn.close()
        self._end(None)

    def _end(self, failure: str | None) -> None:
        if failure is not None:
            self.soak.fail(failure)
            self.conn.abort()
        self.conn.on_event = None
        self.conn = None
        self.active = False
        self.out = b""
        self.reply = bytearray()
        self.schedule(self.rng.expovariate(1 / self.soak.think))

    def check_stuck(self, now: float) -> None:
        if self.active and now - self.started > STUCK_AFTER:
            self._end(f"transfer stuck for {now - self.started:.0f} s in {self.conn.state}")


@dataclass
class Client:
    index: int
    stack: Stack
    device: FaultyDevice
    dhcp: dhcp.DhcpClient
    address: bytes | None = None
    renewals: int = 0


class Soak:
    def __init__(self, clients: int = 4, workers: int = 3, loss: float = 0.02,
                 duplicate: float = 0.01, reorder: float = 0.02, seed: int = 1,
                 think: float = 3.0, lease: int = 120) -> None:
        self.seed = seed
        self.think = think
        self.stopping = False
        self.report = SoakReport(0.0, 0.0)
        loop = self.loop = SimLoop()
        self.switch = Switch(loop)
        server = self.server = Stack("server", modules=MODULES)
        server.add_interface(self.switch.port("server"), mac="02:00:00:00:00:01",
                             ipv4="192.0.2.1/24")
        loop.add_stack(server)
        server.start()
        DhcpServer(server, server.interfaces[0], "192.0.2.100", "192.0.2.199",
                   router="192.0.2.1", dns=["192.0.2.1"], lease_time=lease, domain="soak")
        self.responder = DnsResponder(server, zone="soak", ttl=30)
        self.responder.add_address(NAME, "192.0.2.1")
        self.listener = server.tcp.listen(b"\0\0\0\0", PORT, backlog=256)
        self.listener.on_event = self._accept
        self.clients: list[Client] = []
        for i in range(clients):
            st = Stack(f"c{i}", modules=MODULES)
            dev = FaultyDevice(self.switch.port(f"c{i}"), loop, loss=loss,
                               duplicate=duplicate, reorder=reorder, seed=f"{seed}-{i}")
            iface = st.add_interface(dev, mac=f"02:00:00:00:01:{i + 1:02x}")
            loop.add_stack(st)
            st.start()
            client = Client(i, st, dev, dhcp.install(st, iface))
            client.dhcp.on_bound = lambda lease, c=client: self._bound(c, lease)
            client.dhcp.start()
            self.clients.append(client)
        self.workers = [_Worker(self, c, w) for c in self.clients for w in range(workers)]

    def _bound(self, client: Client, lease: Any) -> None:
        client.renewals += 1

    def _accept(self) -> None:
        while (conn := self.listener.accept()) is not None:
            _Serve(self, conn)

    def fail(self, what: str) -> None:
        self.report.failures.append(f"t={self.loop.now():.1f}: {what}")

    def run(self, seconds: float) -> None:
        """Start the workers, run ``seconds`` of virtual time, stop, drain."""
        for i, w in enumerate(self.workers):
            w.schedule(0.5 + 0.1 * i)
        end = self.loop.now() + seconds
        while self.loop.now() < end:
            self.loop.run(duration=min(10.0, end - self.loop.now()))
            now = self.loop.now()
            for w in self.workers:
                w.check_stuck(now)
            self.report.heap_peak = max(self.report.heap_peak,
                                        tracemalloc.get_traced_memory()[0])
        self.stopping = True
        # Let the transfers in flight finish, then every TIME_WAIT (2 MSL) run out.
        self.loop.run_until(lambda: not any(w.active for w in self.workers), STUCK_AFTER)
        for w in self.workers:
            w.check_stuck(self.loop.now() + STUCK_AFTER + 1)
        self.loop.run(duration=130.0)

    def leftovers(self) -> list[str]:
        out = []
        for st in [self.server] + [c.stack for c in self.clients]:
            for conn in st.tcp.connections():
                out.append(f"{st.name}: connection {conn!r}")
            stats = st.tcp.stats()
            for key in ("syn_queue", "accept_queue", "ooo_segments"):
                if stats[key]:
                    out.append(f"{st.name}: tcp {key} = {stats[key]}")
            if st.resolver is not None and st.resolver.lookups:
                out.append(f"{st.name}: DNS lookups in flight {list(st.resolver.lookups)}")
            for ep in st.udp.endpoints.values():
                if ep.queue:
                    out.append(f"{st.name}: UDP {ep.local} holds {len(ep.queue)} datagrams")
            reasm = st.ipv4.reassembly.stats()
            if reasm["datagrams"]:
                out.append(f"{st.name}: reassembly holds {reasm}")
        for c in self.clients:
            # A renewal may be in flight when the run ends (over lossy links a
            # lost REQUEST is retried a minute later): the lease must be held.
            lease = c.dhcp.lease
            if c.dhcp.state not in (dhcp.BOUND, dhcp.RENEWING, dhcp.REBINDING) or \
                    lease is None or (lease.expiry is not None
                                      and lease.expiry <= self.loop.now()):
                out.append(f"c{c.index}: DHCP client in {c.dhcp.state} without a lease")
            if c.renewals < 2:
                out.append(f"c{c.index}: DHCP lease bound {c.renewals} times (no renewal)")
        return out


def run_soak(seconds: float, clients: int = 4, workers: int = 3, loss: float = 0.02,
             duplicate: float = 0.01, reorder: float = 0.02, seed: int = 1,
             think: float = 3.0, warmup: float = 60.0) -> SoakReport:
    """Set up, warm up (one round of everything, then drained), take the heap
    baseline, soak ``seconds`` of virtual time, drain, and check."""
    started = time.perf_counter()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        soak = Soak(clients, workers, loss, duplicate, reorder, seed, think)
        soak.run(warmup)
        soak.stopping = False
        gc.collect()
        report = soak.report
        report.heap_baseline = tracemalloc.get_traced_memory()[0]
        report.heap_peak = report.heap_baseline
        soak.run(seconds)
        report.leftovers = soak.leftovers()
        # Drop what the harness itself holds before measuring.
        for w in soak.workers:
            w.out = b""
            w.reply = bytearray()
        gc.collect()
        report.heap_end = tracemalloc.get_traced_memory()[0]
        report.simulated_s = soak.loop.now()
        report.soak_s = seconds
        report.dhcp_renewals = sum(max(0, c.renewals - 1) for c in soak.clients)
        names = ("tcp.retransmitted_segments", "tcp.fast_retransmit", "tcp.rto_expired",
                 "tcp.ooo_segments", "tcp.dupack", "dns.timeout", "dhcp.bound")
        report.counters = {n: sum(st.counters.get(n, 0) for st in
                                  [soak.server] + [c.stack for c in soak.clients])
                           for n in names}
        for c in soak.clients:
            for k, v in c.device.counters.items():
                report.counters[f"link.{k}"] = report.counters.get(f"link.{k}", 0) + v
        report.frames = report.counters.get("link.rx_frames", 0) + \
            report.counters.get("link.tx_frames", 0)
        report.wall_s = time.perf_counter() - started
        return report
    finally:
        if not tracing:
            tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--hours", type=float, help="simulated hours (default 1)")
    g.add_argument("--minutes", type=float, help="simulated minutes")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=3, help="concurrent transfers per client")
    ap.add_argument("--loss", type=float, default=0.02)
    ap.add_argument("--duplicate", type=float, default=0.01)
    ap.add_argument("--reorder", type=float, default=0.02)
    ap.add_argument("--think", type=float, default=3.0,
                    help="mean pause between a worker's transfers (virtual s)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    seconds = args.minutes * 60 if args.minutes is not None else (args.hours or 1.0) * 3600
    report = run_soak(seconds, args.clients, args.workers, args.loss, args.duplicate,
                      args.reorder, args.seed, args.think)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
