"""A stub resolver (RFC 1035 7, RFC 1123 6.1.3) that trusts nothing it receives.

* Every query gets a fresh random transaction id and a fresh random source
  port from ``secrets`` (RFC 5452 9.2, 10).
* A reply is accepted only when it comes from the server we asked, from port
  53, with our txid, the QR bit set, opcode QUERY and exactly our question
  (RFC 5452 9.1); anything else is dropped and counted (``dns.bad_*``).
  Wire parsing follows RFC 9267 (see ``femtotcp.wire.dns``).
* Only records on the CNAME chain of the name we asked are used; the chain
  has a hop limit and may not revisit a name (RFC 1034 3.6.2, 5.3.3).
* Several servers, each tried in turn with a timeout, over several rounds
  (RFC 1035 7.2); SERVFAIL/REFUSED moves on to the next server at once.
* TC set: the same question again over TCP (RFC 7766 5, RFC 1035 4.2.2).
* A cache that honours TTLs (capped) and caches NXDOMAIN/NODATA for the
  SOA-derived negative TTL (RFC 2308 5), bounded in entries (LRU).
* A search list (resolv.conf's ``search``: the configured domains, those of
  DHCP leases, then the unexpired DNSSL domains of Router Advertisements,
  RFC 8106 5.2) applied as
  glibc's res_search does with ``ndots:1`` (``_Search``).

All of it runs in the stack's loop thread; ``resolve`` calls ``on_done``
later, never from inside ``resolve``. Waiting for an answer from another
thread, and turning it into ``socket.gaierror``, is the API's business
(``femtotcp.api.resolve``).
"""

from __future__ import annotations

import errno
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from femtotcp.core import rand
from femtotcp.stack.stack import need
from femtotcp.wire import Malformed, ip_bytes
from femtotcp.wire import dns as wire

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.proto.udp import UdpEndpoint
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.dns")

ANY4 = b"\x00\x00\x00\x00"
ANY6 = bytes(16)

# Error names a DnsResult carries (None means success).
NXDOMAIN = "NXDOMAIN"
SERVFAIL = "SERVFAIL"
TIMEOUT = "TIMEOUT"
NODATA = "NODATA"
REFUSED = "REFUSED"
BADNAME = "BADNAME"
FORMERR = "FORMERR"
NOTIMP = "NOTIMP"
NOSERVERS = "NOSERVERS"
CNAME_LOOP = "CNAME_LOOP"
TRUNCATED = "TRUNCATED"

_RCODE_ERRORS = {wire.SERVFAIL: SERVFAIL, wire.REFUSED: REFUSED, wire.FORMERR: FORMERR,
                 wire.NOTIMP: NOTIMP}


@dataclass(slots=True)
class DnsResult:
    """What a lookup found. ``addresses`` are packed (A: 4 bytes, AAAA: 16),
    ``names`` the PTR (or CNAME) targets, ``cname_chain`` the aliases
    followed, ``ttl`` the seconds the answer may be kept."""

    name: str
    qtype: int
    addresses: list[bytes] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    error: str | None = None
    cname_chain: list[str] = field(default_factory=list)
    ttl: int = 0
    server: bytes | None = None
    source: str = "dns"          # dns | tcp | cache | hosts | literal

    @property
    def ok(self) -> bool:
        return self.error is None

    def copy(self, **changes: Any) -> DnsResult:
        r = DnsResult(self.name, self.qtype, list(self.addresses), list(self.names),
                      self.error, list(self.cname_chain), self.ttl, self.server, self.source)
        for k, v in changes.items():
            setattr(r, k, v)
        return r


OnDone = Callable[[DnsResult], None]


class _Attempt:
    """One query to one server over UDP: its own port, txid and endpoint."""

    __slots__ = ("lookup", "server", "txid", "ep")

    def __init__(self, lookup: _Lookup, server: bytes, txid: int, ep: UdpEndpoint) -> None:
        self.lookup = lookup
        self.server = server
        self.txid = txid
        self.ep = ep

    def readable(self) -> None:
        ep = self.ep
        while (item := ep.recv()) is not None:
            if self.lookup.finished:
                return
            data, (src, sport) = item
            self.lookup.on_datagram(self, data, src, sport)

    def close(self) -> None:
        self.ep.on_readable = None
        self.ep.close()


class _TcpAttempt:
    """The same question over TCP after a truncated UDP reply (RFC 7766):
    each message carries a two-byte length prefix (RFC 1035 4.2.2)."""

    MAX_REPLY = 2 + 65535

    def __init__(self, lookup: _Lookup, server: bytes) -> None:
        self.lookup = lookup
        self.server = server
        self.txid = rand.randbits(16)
        query = wire.build_query(self.txid, lookup.current, lookup.qtype)
        self.out = len(query).to_bytes(2, "big") + query
        self.sent = 0
        self.buf = bytearray()
        self.done = False
        self.conn: Any = need(lookup.resolver.stack.tcp, "tcp").connect(
            server, wire.PORT)
        self.conn.on_event = self.on_event
        self.on_event()

    def on_event(self, *_args: Any) -> None:
        """Any connection event: push the query, pull the reply, notice errors."""
        if self.done:
            return
        try:
            self._pump()
        except OSError as exc:     # reset, refused, not connected yet and refusing
            log.debug("DNS over TCP to %s: %s", self.server.hex(), exc)
            self.fail()

    def _pump(self) -> None:
        conn = self.conn
        if self.sent < len(self.out):
            n = conn.send(self.out[self.sent:])
            if isinstance(n, int) and n > 0:
                self.sent += n
        while len(self.buf) < self.MAX_REPLY:
            data = conn.recv(self.MAX_REPLY - len(self.buf))
            if data is None:
                break
            if data == b"":
                self._complete(eof=True)
                return
            self.buf += data
            if self._complete(eof=False):
                return
        if getattr(conn, "error", None):
            self.fail()

    def _complete(self, eof: bool) -> bool:
        buf = self.buf
        if len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) >= 2 + size:
                self.done = True
                self.close()
                self.lookup.on_tcp_reply(self, bytes(buf[2:2 + size]))
                return True
        if eof:
            self.lookup.resolver.stack.counters["dns.tcp_short_reply"] += 1
            self.fail()
            return True
        return False

    def fail(self) -> None:
        if self.done:
            return
        self.done = True
        self.close()
        self.lookup.on_tcp_failed(self)

    def close(self) -> None:
        try:
            self.conn.on_event = None
            self.conn.close()
        except Exception:   # a connection already torn down is fine
            log.debug("closing DNS TCP connection failed", exc_info=True)


class _Lookup:
    """One question, followed along its CNAME chain, across servers."""

    def __init__(self, resolver: Resolver, name: str, qtype: int) -> None:
        self.resolver = resolver
        self.name = name            # canonical, as asked
        self.qtype = qtype
        self.current = name         # the name on the wire right now
        self.callbacks: list[OnDone] = []
        self.chain: list[str] = []
        self.seen = {name}
        self.ttl = resolver.max_ttl
        self.attempts: list[_Attempt] = []
        self.tcp: _TcpAttempt | None = None
        self.plan: list[bytes] = []
        self.failed_servers: set[bytes] = set()
        self.last_error: str | None = None
        self.timer: Timer | None = None
        self.finished = False

    # -- sending -----------------------------------------------------------------
    def start(self) -> None:
        servers = self.resolver.current_servers()
        self.plan = servers * self.resolver.attempts
        self.failed_servers = set()
        self.last_error = None
        self._next()

    def _next(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.plan:
            server = self.plan.pop(0)
            if server in self.failed_servers:
                continue
            if self._send(server):
                self.timer = self.resolver.stack.timers.call_later(
                    self.resolver.timeout, self._timeout)
                return
        self.finish_error(self.last_error or TIMEOUT)

    def _send(self, server: bytes) -> bool:
        resolver = self.resolver
        stack = resolver.stack
        ep = resolver.open_endpoint(len(server))
        if ep is None:
            self.last_error = self.last_error or SERVFAIL
            return False
        txid = rand.randbits(16)
        attempt = _Attempt(self, server, txid, ep)
        ep.on_readable = attempt.readable
        err = ep.sendto(wire.build_query(txid, self.current, self.qtype), server, wire.PORT)
        if err:
            stack.counters["dns.tx_error"] += 1
            log.debug("query to %s failed: %s", server.hex(), errno.errorcode.get(err, err))
            attempt.close()
            return False
        stack.counters["dns.tx_query"] += 1
        self.attempts.append(attempt)
        return True

    def _timeout(self) -> None:
        self.timer = None
        self.resolver.stack.counters["dns.timeout"] += 1
        self._next()

    # -- receiving ---------------------------------------------------------------
    def _check_head(self, data: bytes, txid: int) -> bool:
        """RFC 5452 9.1: txid, QR, opcode and the question must all be ours."""
        counters = self.resolver.stack.counters
        try:
            rtxid, flags, questions = wire.parse_head(data)
        except Malformed as exc:
            counters[exc.reason] += 1
            return False
        if rtxid != txid:
            counters["dns.bad_txid"] += 1
            return False
        if not flags & wire.QR:
            counters["dns.bad_qr"] += 1
            return False
        if flags & wire.OPCODE_MASK:
            counters["dns.bad_opcode"] += 1
            return False
        if (len(questions) != 1 or questions[0].qtype != self.qtype
                or questions[0].qclass != wire.CLASS_IN
                or not _same(questions[0].name, self.current)):
            counters["dns.bad_question"] += 1
            return False
        return True

    def on_datagram(self, attempt: _Attempt, data: bytes, src: bytes, sport: int) -> None:
        counters = self.resolver.stack.counters
        counters["dns.rx"] += 1
        if src != attempt.server or sport != wire.PORT:
            counters["dns.bad_source"] += 1
            return
        if not self._check_head(data, attempt.txid):
            return
        if data[2] & (wire.TC >> 8):
            counters["dns.rx_truncated"] += 1
            self._truncated(attempt.server, data)
            return
        try:
            msg = wire.parse(data)
        except Malformed as exc:
            counters[exc.reason] += 1
            return
        self.on_message(msg, attempt.server, "dns")

    def _truncated(self, server: bytes, data: bytes) -> None:
        stack = self.resolver.stack
        if self.tcp is not None:
            return   # already asking over TCP
        if stack.tcp is None:
            # No TCP in this build: use what arrived if it parses (RFC 2181 9).
            try:
                msg = wire.parse(data)
            except Malformed as exc:
                stack.counters[exc.reason] += 1
                self.last_error = TRUNCATED
                return
            self.on_message(msg, server, "dns", truncated=True)
            return
        stack.counters["dns.tcp_fallback"] += 1
        if self.timer is not None:
            self.timer.cancel()
        # TCP gets its own budget: handshake plus reply.
        self.timer = stack.timers.call_later(self.resolver.tcp_timeout, self._tcp_timeout)
        try:
            self.tcp = _TcpAttempt(self, server)
        except OSError as exc:
            log.debug("DNS over TCP to %s failed: %s", server.hex(), exc)
            stack.counters["dns.tcp_failed"] += 1
            self.tcp = None
            self.last_error = TRUNCATED
            self._next()

    def _tcp_timeout(self) -> None:
        self.timer = None
        tcp, self.tcp = self.tcp, None
        self.resolver.stack.counters["dns.tcp_timeout"] += 1
        self.last_error = TRUNCATED
        if tcp is not None:
            tcp.done = True
            tcp.close()
        self._next()

    def on_tcp_reply(self, tcp: _TcpAttempt, data: bytes) -> None:
        if tcp is not self.tcp or self.finished:
            return
        self.tcp = None
        if not self._check_head(data, tcp.txid):
            self._next()
            return
        try:
            msg = wire.parse(data)
        except Malformed as exc:
            self.resolver.stack.counters[exc.reason] += 1
            self._next()
            return
        self.on_message(msg, tcp.server, "tcp")

    def on_tcp_failed(self, tcp: _TcpAttempt) -> None:
        if tcp is not self.tcp or self.finished:
            return
        self.tcp = None
        self.resolver.stack.counters["dns.tcp_failed"] += 1
        self.last_error = TRUNCATED
        self._next()

    def on_message(self, msg: wire.Message, server: bytes, source: str,
                   truncated: bool = False) -> None:
        """A validated reply to the current question."""
        resolver = self.resolver
        counters = resolver.stack.counters
        rcode = msg.rcode
        if rcode in _RCODE_ERRORS:
            counters["dns.rcode_" + _RCODE_ERRORS[rcode].lower()] += 1
            self.last_error = _RCODE_ERRORS[rcode]
            self.failed_servers.add(server)
            self._close_attempts()
            self._next()
            return
        if rcode not in (wire.NOERROR, wire.NXDOMAIN):
            counters["dns.bad_rcode"] += 1
            self.last_error = SERVFAIL
            self.failed_servers.add(server)
            self._close_attempts()
            self._next()
            return
        cur = self.current
        found: list[object] = []
        ttl = self.ttl
        restart = False
        while True:
            hits = [r for r in msg.answers
                    if r.rclass == wire.CLASS_IN and r.rtype == self.qtype and _same(r.name, cur)]
            if hits:
                found = [r.data for r in hits]
                ttl = min([ttl] + [r.ttl for r in hits])
                break
            alias = next((r for r in msg.answers if r.rclass == wire.CLASS_IN
                          and r.rtype == wire.CNAME and _same(r.name, cur)), None)
            if alias is None:
                break
            target = wire.canonical(str(alias.data))
            if target in self.seen or len(self.chain) >= resolver.max_cname_hops:
                counters["dns.cname_loop"] += 1
                self.finish_error(CNAME_LOOP)
                return
            self.seen.add(target)
            self.chain.append(target)
            ttl = min(ttl, alias.ttl)
            cur = target
            restart = True
        self.ttl = ttl
        if found:
            self.finish_ok(found, server, source, cacheable=not truncated)
            return
        if truncated:
            # Cut short and no TCP to ask again: nothing trustworthy to report.
            self.finish_error(TRUNCATED)
            return
        negative_ttl = _negative_ttl(msg, resolver.max_negative_ttl)
        if rcode == wire.NXDOMAIN:
            counters["dns.nxdomain"] += 1
            self.finish_error(NXDOMAIN, negative_ttl)
            return
        if restart and cur != self.current:
            # The answer ended at an alias: ask for the target (RFC 1034 5.3.3).
            self.current = cur
            self._close_attempts()
            self.start()
            return
        self.finish_error(NODATA, negative_ttl)

    # -- finishing ----------------------------------------------------------------
    def _close_attempts(self) -> None:
        for a in self.attempts:
            a.close()
        self.attempts = []
        if self.tcp is not None:
            self.tcp.done = True
            self.tcp.close()
            self.tcp = None

    def _end(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._close_attempts()
        self.resolver.lookups.pop((self.name, self.qtype), None)

    def finish_ok(self, found: list[object], server: bytes, source: str,
                  cacheable: bool = True) -> None:
        self._end()
        result = DnsResult(self.name, self.qtype, cname_chain=list(self.chain),
                           ttl=max(0, self.ttl), server=server, source=source)
        for item in found:
            if isinstance(item, bytes):
                if item not in result.addresses:
                    result.addresses.append(item)
            elif isinstance(item, str):
                if item not in result.names:
                    result.names.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
                result.names.append(item[1])     # MX: the exchange
        if cacheable:
            self.resolver.cache_put(result)
        self.resolver.deliver(self.callbacks, result)

    def finish_error(self, error: str, negative_ttl: int | None = None) -> None:
        self._end()
        result = DnsResult(self.name, self.qtype, error=error, cname_chain=list(self.chain),
                           ttl=negative_ttl or 0)
        if negative_ttl:
            self.resolver.cache_put(result)
        self.resolver.deliver(self.callbacks, result)


def _same(a: str, b: str) -> bool:
    try:
        return wire.canonical(a) == wire.canonical(b)
    except ValueError:
        return False


def _negative_ttl(msg: wire.Message, cap: int) -> int | None:
    """RFC 2308 5: min(SOA TTL, SOA MINIMUM) from the authority section."""
    for r in msg.authority:
        if r.rtype == wire.SOA and r.rclass == wire.CLASS_IN and isinstance(r.data, tuple):
            return min(r.ttl, int(r.data[6]), cap)
    return None


class _Search:
    """One name asked through the search list, as glibc's res_search: each
    candidate name in turn (``Resolver.candidates``) until one has an answer.
    NXDOMAIN, NODATA and SERVFAIL move on to the next; any other failure
    (a timeout, REFUSED, no servers) ends the search, except for the name
    tried as it is first, whose failure is remembered. When nothing answers,
    the error is that first failure, else NODATA if any name had no data,
    else SERVFAIL if a server failed, else the last one's."""

    __slots__ = ("resolver", "name", "qtype", "names", "on_done", "as_is_first", "saved",
                 "nodata", "servfail", "asked")

    def __init__(self, resolver: Resolver, name: str, qtype: int, names: list[str],
                 as_is_first: bool, on_done: OnDone) -> None:
        self.resolver = resolver
        self.name = name
        self.qtype = qtype
        self.names = names
        self.on_done = on_done
        self.as_is_first = as_is_first
        self.saved: str | None = None
        self.nodata = False
        self.servfail = False
        self.asked = 0

    def step(self) -> None:
        self.asked += 1
        self.resolver.query(self.names[self.asked - 1], self.qtype, self.answer)

    def answer(self, result: DnsResult) -> None:
        if result.error is None and (result.addresses or result.names):
            self.resolver.stack.counters["dns.search_found"] += 1
            self.on_done(result)
            return
        error = result.error or NODATA
        first = self.asked == 1 and self.as_is_first
        if first:
            self.saved = error
        if error == NODATA:
            self.nodata = True
        elif error == SERVFAIL:
            self.servfail = True
        elif error != NXDOMAIN and not first:
            self.on_done(DnsResult(self.name, self.qtype, error=error))
            return
        if self.asked < len(self.names):
            self.step()
            return
        final = self.saved or (NODATA if self.nodata else SERVFAIL if self.servfail
                               else error)
        self.on_done(DnsResult(self.name, self.qtype, error=final))


class Resolver:
    """The stub resolver of one stack (``stack.resolver``)."""

    timeout = 2.0              # seconds per try (RES_TIMEOUT is 5 in glibc; LAN here)
    attempts = 2               # rounds over all servers (RES_DFLRETRY)
    tcp_timeout = 5.0
    max_cname_hops = 8
    cache_max = 512
    max_ttl = 86400            # RFC 8767 4 suggests capping at 7 days; one day here
    max_negative_ttl = 900     # RFC 2308 5 suggests 1-3 hours at most; 15 min here
    max_lookups = 256          # concurrent questions in flight
    ndots = 1                  # resolv.conf's default: a name with a dot is tried as is first
    max_search = 6             # search domains used (glibc's MAXDNSRCH)
    max_servers = 3            # servers used (glibc's MAXNS)

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        #: Configured servers (``--dns``), asked first.
        self.servers: list[bytes] = []
        #: Servers of DHCP leases by interface name, for a lease's lifetime
        #: (``set_lease_servers``), after the configured ones.
        self.lease_servers: dict[str, list[bytes]] = {}
        #: Configured search domains, asked before those of Router Advertisements.
        self.search: list[str] = []
        #: Search domains of DHCP leases by interface name, for a lease's
        #: lifetime (``set_lease_search``), after the configured ones.
        self.lease_search: dict[str, list[str]] = {}
        #: name -> addresses (packed bytes or text); consulted before DNS.
        self.hosts: dict[str, list[bytes | str]] = {}
        self.cache: OrderedDict[tuple[str, int], tuple[float, DnsResult]] = OrderedDict()
        self.lookups: dict[tuple[str, int], _Lookup] = {}

    # -- API ---------------------------------------------------------------------
    def resolve(self, name: str, qtype: int, on_done: OnDone) -> None:
        """Look ``name`` up; ``on_done(DnsResult)`` runs later in the loop thread.
        For PTR, ``name`` may also be an address ("192.0.2.1")."""
        counters = self.stack.counters
        counters["dns.lookups"] += 1
        immediate = self._local_answer(name, qtype)
        if immediate is not None:
            self.deliver([on_done], immediate)
            return
        try:
            if qtype == wire.PTR and _is_literal(name):
                name = wire.reverse_name(ip_bytes(name.strip()))
            canon = wire.canonical(name.strip())
            if not canon:
                raise ValueError("empty name")
        except ValueError:
            self.deliver([on_done], DnsResult(name, qtype, error=BADNAME))
            return
        if qtype != wire.PTR:
            names = self.candidates(name, canon)
            if len(names) > 1:
                _Search(self, canon, qtype, names, canon.count(".") >= self.ndots,
                        lambda result: self.deliver([on_done], result)).step()
                return
        self.query(canon, qtype, on_done)

    def query(self, canon: str, qtype: int, on_done: OnDone) -> None:
        """Ask DNS for exactly ``canon`` (no search list): from the cache, by
        joining the same question in flight, or by a new lookup."""
        counters = self.stack.counters
        key = (canon, qtype)
        cached = self.cache_get(key)
        if cached is not None:
            counters["dns.cache_hit"] += 1
            self.deliver([on_done], cached)
            return
        running = self.lookups.get(key)
        if running is not None:
            running.callbacks.append(on_done)
            return
        if not self.current_servers():
            self.deliver([on_done], DnsResult(canon, qtype, error=NOSERVERS))
            return
        if len(self.lookups) >= self.max_lookups:
            counters["dns.drop_too_many_lookups"] += 1
            self.deliver([on_done], DnsResult(canon, qtype, error=SERVFAIL))
            return
        lookup = _Lookup(self, canon, qtype)
        lookup.callbacks.append(on_done)
        self.lookups[key] = lookup
        lookup.start()

    def set_servers(self, servers: list[bytes | str]) -> None:
        out: list[bytes] = []
        for s in servers:
            addr = ip_bytes(s) if isinstance(s, str) else bytes(s)
            if len(addr) not in (4, 16):
                raise ValueError(f"a DNS server is an IPv4 or IPv6 address, not {s!r}")
            if addr not in out:
                out.append(addr)
        self.servers = out

    def set_lease_servers(self, iface: str, servers: list[bytes]) -> None:
        """The DNS servers a DHCP lease on ``iface`` brings (none: the lease
        ended). They are asked after the configured ones, as a resolv.conf
        that lists static servers before those a DHCP client adds."""
        if servers:
            self.lease_servers[iface] = list(servers)
        else:
            self.lease_servers.pop(iface, None)

    def set_lease_search(self, iface: str, domains: list[str]) -> None:
        """The search domains a DHCP lease on ``iface`` brings (none: the
        lease ended), as dhclient's resolv.conf would have them: the domain
        search option (119, RFC 3397), else the domain name (15)."""
        if domains:
            self.lease_search[iface] = list(domains)
        else:
            self.lease_search.pop(iface, None)

    def current_search(self) -> list[str]:
        """The search list: the configured domains, those of DHCP leases, then
        the unexpired DNSSL domains of Router Advertisements (RFC 8106 5.2: a
        lifetime ends their use), without repeats, at most ``max_search``."""
        out: list[str] = []
        domains = list(self.search)
        for leased in self.lease_search.values():
            domains += leased
        ipv6 = self.stack.ipv6
        if ipv6 is not None:
            now = self.stack.now
            domains += [d for d, until in ipv6.ndp.dns_domains.items() if until > now]
        for domain in domains:
            try:
                canon = wire.canonical(domain)
            except ValueError:
                continue
            if canon and canon not in out:
                out.append(canon)
        return out[:self.max_search]

    def candidates(self, name: str, canon: str) -> list[str]:
        """The names a lookup of ``name`` (``canon`` its canonical form) asks,
        in order, as glibc's res_search: an absolute name (a trailing dot) only
        as it is; one with at least ``ndots`` dots as it is, then under each
        search domain; one with fewer under each search domain, then as it is.
        A candidate too long to be a name is left out."""
        if name.strip().endswith("."):
            return [canon]
        searched: list[str] = []
        for domain in self.current_search():
            try:
                searched.append(wire.canonical(f"{canon}.{domain}"))
            except ValueError:
                continue
        if canon.count(".") >= self.ndots:
            return [canon, *searched]
        return [*searched, canon]

    def current_servers(self) -> list[bytes]:
        """The servers to ask, in order, without repeats: the configured ones
        (``--dns``), those of DHCP leases, then the unexpired RDNSS servers
        of Router Advertisements (RFC 8106 5.3.1: a lifetime ends their use);
        at most ``max_servers``, as glibc reads at most three from resolv.conf."""
        return [server for server, _source in self.describe_servers()]

    def describe_servers(self) -> list[tuple[bytes, str]]:
        """``current_servers`` with where each came from: ``configured``,
        ``dhcp:IFACE`` or ``ra``."""
        out: list[tuple[bytes, str]] = []
        seen: set[bytes] = set()

        def add(servers: Iterable[bytes], source: str) -> None:
            for server in servers:
                if server not in seen:
                    seen.add(server)
                    out.append((server, source))

        add(self.servers, "configured")
        for iface, leased in self.lease_servers.items():
            add(leased, f"dhcp:{iface}")
        ipv6 = self.stack.ipv6
        if ipv6 is not None:
            now = self.stack.now
            add([s for s, until in ipv6.ndp.dns_servers.items() if until > now], "ra")
        return out[:self.max_servers]

    def add_host(self, name: str, *addresses: bytes | str) -> None:
        self.hosts.setdefault(wire.canonical(name), []).extend(addresses)

    def flush(self) -> None:
        self.cache.clear()

    def close(self) -> None:
        for lookup in list(self.lookups.values()):
            lookup.finish_error(TIMEOUT)

    # -- internals ----------------------------------------------------------------
    def _local_answer(self, name: str, qtype: int) -> DnsResult | None:
        """Literal addresses and the hosts table (RFC 952 HOSTS.TXT's successor)."""
        text = name.strip()
        if _is_literal(text) and qtype in (wire.A, wire.AAAA):
            addr = ip_bytes(text)
            want = 4 if qtype == wire.A else 16
            if len(addr) != want:
                return DnsResult(text, qtype, error=NODATA, source="literal")
            return DnsResult(text, qtype, addresses=[addr], source="literal")
        if not self.hosts:
            return None
        try:
            canon = wire.canonical(text)
        except ValueError:
            return None
        if qtype in (wire.A, wire.AAAA):
            want = 4 if qtype == wire.A else 16
            for key, values in self.hosts.items():
                if _same(key, canon):
                    addrs = [a for a in (_to_bytes(v) for v in values) if len(a) == want]
                    if addrs:
                        return DnsResult(canon, qtype, addresses=addrs, source="hosts")
            return None
        if qtype == wire.PTR:
            names = []
            for key, values in self.hosts.items():
                for v in values:
                    addr = _to_bytes(v)
                    if len(addr) in (4, 16) and (
                            addr == _to_bytes(text) or _same(wire.reverse_name(addr), canon)):
                        names.append(wire.canonical(key))
                        break
            if names:
                return DnsResult(canon, qtype, names=names, source="hosts")
        return None

    def open_endpoint(self, addr_len: int = 4) -> UdpEndpoint | None:
        """A UDP endpoint on a fresh random port (RFC 5452 10, RFC 6056), on the
        wildcard of the server's family (``addr_len`` 4 or 16)."""
        udp = need(self.stack.udp, "udp")
        any_addr = ANY4 if addr_len == 4 else ANY6
        cfg = self.stack.config
        span = cfg.ephemeral_high - cfg.ephemeral_low + 1
        for _ in range(8):
            port = cfg.ephemeral_low + rand.randbelow(span)
            try:
                ep: UdpEndpoint = udp.open(any_addr, port, v6only=True)
                return ep
            except OSError:
                continue
        try:
            ep = udp.open(any_addr, 0, v6only=True)
            return ep
        except OSError:
            self.stack.counters["dns.no_port"] += 1
            return None

    def deliver(self, callbacks: list[OnDone], result: DnsResult) -> None:
        """Run callbacks on the next poll, never inside the caller's frame."""
        def run() -> None:
            for cb in callbacks:
                try:
                    cb(result.copy())
                except Exception:
                    log.exception("DNS callback failed")
        self.stack.timers.call_later(0.0, run)

    def cache_get(self, key: tuple[str, int]) -> DnsResult | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        expires, result = entry
        now = self.stack.now
        if expires <= now:
            del self.cache[key]
            return None
        self.cache.move_to_end(key)
        return result.copy(ttl=int(expires - now), source="cache")

    def cache_put(self, result: DnsResult) -> None:
        ttl = min(result.ttl, self.max_ttl if result.error is None else self.max_negative_ttl)
        if ttl <= 0:
            return
        key = (result.name, result.qtype)
        cache = self.cache
        if key not in cache and len(cache) >= self.cache_max:
            now = self.stack.now
            for k in [k for k, (exp, _) in cache.items() if exp <= now]:
                del cache[k]
            while len(cache) >= self.cache_max:
                cache.popitem(last=False)
        cache[key] = (self.stack.now + ttl, result.copy())
        cache.move_to_end(key)


def _is_literal(text: str) -> bool:
    try:
        ip_bytes(text.strip())
        return True
    except ValueError:
        return False


def _to_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            return ip_bytes(value)
        except ValueError:
            return b""
    return bytes(value)


def install(stack: Stack) -> Resolver:
    resolver = Resolver(stack)
    stack.resolver = resolver
    stack.on_close(resolver.close)
    return resolver

