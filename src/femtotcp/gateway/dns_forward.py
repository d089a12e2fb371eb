"""The guest's DNS server: a forwarder on the gateway's DNS address.

Queries over UDP to the DNS address are answered from ``--host-record``
names (A records) or passed to the host's resolvers (``/etc/resolv.conf``, a
loopback stub such as 127.0.0.53 included, or ``--dns-upstream``) through a
host UDP socket, one per outstanding query; the reply goes back to the guest
unchanged. At most ``max_pending`` queries wait at once, each for
``timeout`` seconds, after which the guest gets SERVFAIL.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from femtotcp.wire import Malformed, ip_bytes, ip_str
from femtotcp.wire import dns as wire

if TYPE_CHECKING:
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.gateway.dns")

Watch = Callable[[int, bool, bool, Any], None]


def resolv_conf_servers(path: str = "/etc/resolv.conf") -> list[str]:
    """The IPv4 ``nameserver`` lines of ``path`` (none when it cannot be read)."""
    servers: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        if len(ip_bytes(parts[1])) == 4:
                            servers.append(parts[1])
                    except ValueError:
                        continue
    except OSError:
        pass
    return servers


class _Pending:
    def __init__(self, fwd: DnsForwarder, query: bytes, guest: tuple[bytes, int],
                 upstream: str) -> None:
        self.fwd = fwd
        self.guest = guest
        self.query = query
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC)
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        sock.connect((upstream, wire.PORT))
        sock.send(query)
        fwd.watch(self.fd, True, False, self)
        self.timer = fwd.stack.timers.call_at(fwd.stack.now + fwd.timeout, self._timeout)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            reply = sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.fwd.stack.counters["gwdns.upstream_error"] += 1
            self._fail()
            return
        if len(reply) < 12 or reply[:2] != self.query[:2]:
            self.fwd.stack.counters["gwdns.bad_reply"] += 1
            return
        self.fwd.stack.counters["gwdns.forwarded"] += 1
        self.fwd.reply(reply, self.guest)
        self.close()

    def _timeout(self) -> None:
        self.fwd.stack.counters["gwdns.timeout"] += 1
        self._fail()

    def _fail(self) -> None:
        try:
            txid, flags, questions = wire.parse_head(self.query)
            self.fwd.reply(wire.build(txid, wire.QR | wire.RA | (flags & wire.RD)
                                      | wire.SERVFAIL, questions), self.guest)
        except Malformed:
            pass
        self.close()

    def close(self) -> None:
        self.timer.cancel()
        if self.sock is not None:
            self.fwd.watch(self.fd, False, False, self)
            self.sock.close()
            self.sock = None
        self.fwd.pending.discard(self)


class DnsForwarder:
    max_pending = 256
    timeout = 5.0
    ttl = 60

    def __init__(self, stack: Stack, addr: bytes, watch: Watch,
                 upstreams: Sequence[str], host_records: dict[str, bytes]) -> None:
        self.stack = stack
        self.watch = watch
        self.upstreams = list(upstreams)
        self.records = {wire.canonical(k): v for k, v in host_records.items()}
        self.pending: set[_Pending] = set()
        self._next = 0
        udp = stack.udp
        if udp is None:
            raise ValueError("the DNS forwarder needs the stack's udp module")
        self.ep = udp.open(addr, wire.PORT)
        self.ep.on_readable = self._readable

    def close(self) -> None:
        for p in list(self.pending):
            p.close()
        self.ep.on_readable = None
        self.ep.close()

    def reply(self, data: bytes, guest: tuple[bytes, int]) -> None:
        self.ep.sendto(data, guest[0], guest[1])

    def _readable(self) -> None:
        counters = self.stack.counters
        while (item := self.ep.recv()) is not None:
            data, src = item
            try:
                txid, flags, questions = wire.parse_head(data)
            except Malformed:
                counters["gwdns.malformed"] += 1
                continue
            if flags & wire.QR or len(questions) != 1:
                counters["gwdns.not_a_query"] += 1
                continue
            q = questions[0]
            addr = self.records.get(wire.canonical(q.name))
            if addr is not None:
                answers = [wire.Record(q.name, wire.A, wire.CLASS_IN, self.ttl, addr)] \
                    if q.qtype == wire.A else []
                counters["gwdns.host_record"] += 1
                self.reply(wire.build(txid, wire.QR | wire.AA | wire.RA | (flags & wire.RD),
                                      questions, answers), src)
                continue
            if not self.upstreams or len(self.pending) >= self.max_pending:
                counters["gwdns.refused_busy" if self.upstreams else "gwdns.no_upstream"] += 1
                self.reply(wire.build(txid, wire.QR | wire.RA | (flags & wire.RD)
                                      | wire.SERVFAIL, questions), src)
                continue
            upstream = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                self.pending.add(_Pending(self, bytes(data), src, upstream))
            except OSError as exc:
                counters["gwdns.upstream_error"] += 1
                log.warning("DNS upstream %s: %s", upstream, exc)

    def describe(self) -> str:
        return (f"DNS forwarder to {', '.join(self.upstreams) or 'nobody'}"
                + (f", {len(self.records)} host records" if self.records else "")
                + f" on {ip_str(self.ep.local[0])}")
