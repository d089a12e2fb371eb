"""The guest's DNS server: a forwarder on the gateway's DNS address.

Queries over UDP to the DNS address (IPv4, and IPv6 when the guest has it)
are answered from ``--host-record`` names (A and AAAA records) or passed to
the host's resolvers (``/etc/resolv.conf``, a loopback stub such as
127.0.0.53 included, IPv6 ones too, or ``--dns-upstream``) through a host UDP
socket, one per outstanding query; the reply goes back to the guest
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
    """The ``nameserver`` lines of ``path`` (none when it cannot be read); an
    IPv6 link-local one (with or without a ``%zone``) is skipped."""
    servers: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        packed = ip_bytes(parts[1])
                    except ValueError:
                        continue
                    if len(packed) == 4 or packed[:2] != b"\xfe\x80":
                        servers.append(parts[1])
    except OSError:
        pass
    return servers


class _Pending:
    def __init__(self, fwd: DnsForwarder, query: bytes, guest: tuple[bytes, int],
                 upstream: str) -> None:
        self.fwd = fwd
        self.guest = guest
        self.query = query
        sock = socket.socket(socket.AF_INET6 if ":" in upstream else socket.AF_INET,
                             socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
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
                 upstreams: Sequence[str], host_records: dict[str, list[bytes]],
                 addr6: bytes | None = None) -> None:
        """``host_records``: name -> addresses (4 bytes for A, 16 for AAAA);
        ``addr6``: our IPv6 DNS address, answered like ``addr``."""
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
        self.eps = [self.ep]
        if addr6 is not None:
            self.eps.append(udp.open(addr6, wire.PORT, v6only=True))
        for ep in self.eps:
            ep.on_readable = lambda ep=ep: self._readable(ep)

    def close(self) -> None:
        for p in list(self.pending):
            p.close()
        for ep in self.eps:
            ep.on_readable = None
            ep.close()

    def reply(self, data: bytes, guest: tuple[bytes, int]) -> None:
        """To the guest, from our DNS address of its family."""
        ep = self.eps[-1] if len(guest[0]) == 16 else self.eps[0]
        ep.sendto(data, guest[0], guest[1])

    def _readable(self, ep: Any) -> None:
        counters = self.stack.counters
        while (item := ep.recv()) is not None:
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
            addrs = self.records.get(wire.canonical(q.name))
            if addrs is not None:
                size = {wire.A: 4, wire.AAAA: 16}.get(q.qtype, 0)
                answers = [wire.Record(q.name, q.qtype, wire.CLASS_IN, self.ttl, a)
                           for a in addrs if len(a) == size]
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
                + " on " + " and ".join(ip_str(ep.local[0]) for ep in self.eps))
