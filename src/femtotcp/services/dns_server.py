"""A small authoritative DNS responder (RFC 1035 4.3.2) for the demo network.

It serves a zone held in memory: A, AAAA, CNAME (followed within the zone,
RFC 1034 4.3.2 step 3a), PTR, and answers NXDOMAIN or NODATA with the zone's
SOA in the authority section (RFC 2308 3). A reply larger than 512 bytes is
sent truncated, with TC set and only the question (RFC 2181 9); when the
stack has TCP the same zone is served over TCP too (RFC 7766), where the
full answer fits. Queries are parsed with the same hardened ``wire.dns``;
malformed ones are counted and dropped, never answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.stack.stack import need
from femtotcp.wire import Malformed, ip_bytes
from femtotcp.wire import dns as wire

if TYPE_CHECKING:
    from femtotcp.proto.udp import UdpEndpoint
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.dns_server")

ANY4 = b"\x00\x00\x00\x00"


class DnsResponder:
    """``responder.add_address("www.demo", "192.0.2.10")``, ``add_cname``, ``add_ptr``."""

    max_sessions = 64

    def __init__(self, stack: Stack, zone: str = "demo", port: int = wire.PORT,
                 addr: bytes = ANY4, ttl: int = 60, tcp: bool = True) -> None:
        self.stack = stack
        self.zone = wire.canonical(zone)
        self.ttl = ttl
        self.records: dict[str, list[wire.Record]] = {}
        self.soa = wire.Record(self.zone, wire.SOA, wire.CLASS_IN, ttl,
                               ("ns." + self.zone, "hostmaster." + self.zone, 1, 3600, 600,
                                86400, ttl))
        #: Tests: build the raw reply yourself (query, source) -> bytes or None (silent).
        self.override: Callable[[wire.Message, tuple[bytes, int]], bytes | None] | None = None
        self.queries = 0
        self.ep: UdpEndpoint = need(stack.udp, "udp").open(addr, port)
        self.ep.on_readable = self._readable
        self.listener: Any = None
        self.sessions: set[_TcpSession] = set()
        if tcp and stack.tcp is not None:
            self.listener = stack.tcp.listen(addr, port)
            self.listener.on_event = self._accept

    # -- zone ----------------------------------------------------------------------------
    def add(self, name: str, rtype: int, data: object, ttl: int | None = None) -> None:
        key = wire.canonical(name)
        rr = wire.Record(key, rtype, wire.CLASS_IN, self.ttl if ttl is None else ttl, data)
        self.records.setdefault(key, []).append(rr)

    def add_address(self, name: str, address: str, ttl: int | None = None) -> None:
        packed = ip_bytes(address)
        self.add(name, wire.A if len(packed) == 4 else wire.AAAA, packed, ttl)

    def add_cname(self, name: str, target: str, ttl: int | None = None) -> None:
        self.add(name, wire.CNAME, wire.canonical(target), ttl)

    def add_ptr(self, address: str, name: str, ttl: int | None = None) -> None:
        self.add(wire.reverse_name(ip_bytes(address)), wire.PTR, wire.canonical(name), ttl)

    def close(self) -> None:
        self.ep.on_readable = None
        self.ep.close()
        if self.listener is not None:
            self.listener.on_event = None
            self.listener.close()
        for session in list(self.sessions):
            session.close()

    def _accept(self, *_args: object) -> None:
        while (conn := self.listener.accept()) is not None:
            if len(self.sessions) >= self.max_sessions:
                self.stack.counters["dnsd.tcp_too_many"] += 1
                conn.abort()
                continue
            session = _TcpSession(self, conn)
            self.sessions.add(session)
            session.on_event()

    # -- answering ----------------------------------------------------------------------
    def _readable(self) -> None:
        while (item := self.ep.recv_full()) is not None:
            data, src, dst = item
            if not self.stack.is_local(dst):
                self.stack.counters["dnsd.not_unicast"] += 1
                continue
            reply = self.answer(data, src)
            if reply is not None:
                self.ep.sendto(reply, src[0], src[1], src=dst)

    def answer(self, data: bytes, src: tuple[bytes, int] = (ANY4, 0),
               max_size: int = wire.MAX_UDP) -> bytes | None:
        """The reply to one query message, or None to stay silent. Over TCP
        pass ``max_size=65535`` (RFC 1035 4.2.2)."""
        counters = self.stack.counters
        try:
            query = wire.parse(data)
        except Malformed as exc:
            counters[exc.reason] += 1
            return None
        if query.is_response:
            counters["dnsd.bad_query"] += 1
            return None
        self.queries += 1
        if self.override is not None:
            return self.override(query, src)
        flags = wire.QR | wire.AA | (query.flags & wire.RD)
        if query.opcode != 0:
            return wire.build(query.txid, flags | wire.NOTIMP, query.questions)
        if len(query.questions) != 1:
            return wire.build(query.txid, flags | wire.FORMERR, query.questions)
        q = query.questions[0]
        answers, rcode = self.lookup(q.name, q.qtype)
        authority = [self.soa] if not answers or rcode == wire.NXDOMAIN else []
        if not answers and rcode == wire.NOERROR and not self._in_zone(q.name):
            return wire.build(query.txid, (flags & ~wire.AA) | wire.REFUSED, [q])
        reply = wire.build(query.txid, flags | rcode, [q], answers, authority)
        if len(reply) > max_size:
            counters["dnsd.truncated"] += 1
            reply = wire.build(query.txid, flags | wire.TC | rcode, [q])
        return reply

    def _in_zone(self, name: str) -> bool:
        canon = wire.canonical(name)
        return canon == self.zone or canon.endswith("." + self.zone) or canon in self.records

    def lookup(self, name: str, qtype: int) -> tuple[list[wire.Record], int]:
        """Answer records for (name, qtype) with CNAMEs followed, and the rcode."""
        answers: list[wire.Record] = []
        cur = wire.canonical(name)
        seen: set[str] = set()
        while cur not in seen and len(seen) < 8:
            seen.add(cur)
            rrs = self.records.get(cur)
            if rrs is None:
                if not answers and self._in_zone(cur):
                    return [], wire.NXDOMAIN
                if answers and self._in_zone(cur):
                    return answers, wire.NXDOMAIN   # RFC 6604: rcode of the last name
                return answers, wire.NOERROR
            hits = [r for r in rrs if r.rtype == qtype]
            if hits:
                return answers + hits, wire.NOERROR
            alias = next((r for r in rrs if r.rtype == wire.CNAME), None)
            if alias is None:
                return answers, wire.NOERROR
            answers.append(alias)
            cur = str(alias.data)
        return answers, wire.NOERROR


class _TcpSession:
    """One DNS-over-TCP client: length-prefixed queries in, answers out
    (RFC 1035 4.2.2). Input and output are bounded; errors end the session."""

    MAX_IN = 2 + 65535
    MAX_OUT = 4 * 65537

    def __init__(self, responder: DnsResponder, conn: Any) -> None:
        self.responder = responder
        self.conn = conn
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        conn.on_event = self.on_event

    def on_event(self, *_args: object) -> None:
        try:
            self._pump()
        except OSError:
            self.close()

    def _pump(self) -> None:
        conn = self.conn
        while len(self.inbuf) < self.MAX_IN and len(self.outbuf) < self.MAX_OUT:
            data = conn.recv(self.MAX_IN - len(self.inbuf))
            if data is None:
                break
            if data == b"":
                self.eof = True
                break
            self.inbuf += data
            self._answer_complete()
        self._flush()
        if self.eof and not self.outbuf:
            self.close()      # the client is done and has every answer

    def _answer_complete(self) -> None:
        buf = self.inbuf
        while len(buf) >= 2 and len(buf) >= 2 + ((buf[0] << 8) | buf[1]):
            size = (buf[0] << 8) | buf[1]
            query = bytes(buf[2:2 + size])
            del buf[:2 + size]
            reply = self.responder.answer(query, self.conn.remote, max_size=65535)
            if reply is not None:
                self.outbuf += len(reply).to_bytes(2, "big") + reply

    def _flush(self) -> None:
        if self.outbuf:
            n = self.conn.send(bytes(self.outbuf))
            if n:
                del self.outbuf[:n]

    def close(self) -> None:
        self.responder.sessions.discard(self)
        self.conn.on_event = None
        self.conn.close()
