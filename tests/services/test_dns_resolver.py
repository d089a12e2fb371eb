"""The stub resolver against the demo responder on an in-memory LAN (virtual time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dns
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import dns as wire
from femtotcp.wire import ip_bytes

MODULES = ["arp", "ipv4", "icmp4", "udp", "dns"]
SERVER = ip_bytes("192.0.2.53")
SERVER2 = ip_bytes("192.0.2.54")
DEAD = ip_bytes("192.0.2.99")


class Net:
    """A client stack and one or two responder stacks on one switch."""

    def __init__(self, servers: int = 1, loop: Any = None, tcp: bool = False) -> None:
        self.loop = loop or SimLoop()
        self.switch = Switch(self.loop)
        extra = ["tcp"] if tcp else []
        self.client = self._stack("client", "192.0.2.10/24", 0x10, MODULES + extra)
        self.responders: list[DnsResponder] = []
        for i in range(servers):
            st = self._stack(f"ns{i}", f"192.0.2.{53 + i}/24", 0x53 + i, MODULES[:4] + extra)
            r = DnsResponder(st, zone="demo")
            r.add_address("www.demo", "192.0.2.80")
            r.add_address("www.demo", "2001:db8::80")
            r.add_cname("web.demo", "www.demo")
            r.add_cname("alias.demo", "web.demo")
            r.add_ptr("192.0.2.80", "www.demo")
            self.responders.append(r)
        self.resolver: dns.Resolver = self.client.resolver
        self.resolver.servers = [SERVER, SERVER2][:servers] or [SERVER]
        if isinstance(self.loop, SimLoop):
            self.loop.run(duration=0)

    def _stack(self, name: str, ip: str, n: int, modules: list[str]) -> Stack:
        st = Stack(name, modules=modules)
        st.add_interface(self.switch.port(name), mac=f"02:00:00:00:00:{n:02x}", ipv4=ip)
        self.loop.add_stack(st)
        st.start()
        return st

    def resolve(self, name: str, qtype: int = wire.A, timeout: float = 60.0) -> dns.DnsResult:
        out: list[dns.DnsResult] = []
        self.resolver.resolve(name, qtype, out.append)
        assert self.loop.run_until(lambda: bool(out), timeout), "no result"
        return out[0]


def test_a_aaaa_cname_ptr() -> None:
    net = Net()
    r = net.resolve("www.demo")
    assert r.error is None and r.addresses == [ip_bytes("192.0.2.80")] and r.ttl == 60
    assert r.server == SERVER
    r = net.resolve("www.demo", wire.AAAA)
    assert r.addresses == [ip_bytes("2001:db8::80")]
    r = net.resolve("alias.demo")
    assert r.addresses == [ip_bytes("192.0.2.80")]
    assert r.cname_chain == ["web.demo", "www.demo"]
    r = net.resolve("192.0.2.80", wire.PTR)
    assert r.names == ["www.demo"]
    r = net.resolve("80.2.0.192.in-addr.arpa", wire.PTR)
    assert r.names == ["www.demo"]


def test_nxdomain_nodata_and_badname_are_distinct() -> None:
    net = Net()
    assert net.resolve("nothing.demo").error == dns.NXDOMAIN
    assert net.resolve("web.demo", wire.PTR).error == dns.NODATA
    assert net.resolve("a..b").error == dns.BADNAME
    assert net.resolve("x" * 64 + ".demo").error == dns.BADNAME
    assert net.client.counters["dns.nxdomain"] == 1


def test_timeout_is_reported_after_every_server_and_round() -> None:
    net = Net()
    net.resolver.servers = [DEAD]
    start = net.loop.now()
    r = net.resolve("www.demo")
    assert r.error == dns.TIMEOUT
    took = net.loop.now() - start
    assert took == pytest.approx(dns.Resolver.timeout * dns.Resolver.attempts, abs=0.01)
    assert net.client.counters["dns.timeout"] == dns.Resolver.attempts


def test_failover_to_second_server() -> None:
    net = Net(servers=2)
    net.resolver.servers = [DEAD, SERVER2]
    r = net.resolve("www.demo")
    assert r.error is None and r.server == SERVER2
    assert net.responders[1].queries == 1


def test_servfail_moves_on_at_once_and_is_reported_when_all_fail() -> None:
    net = Net(servers=2)

    def servfail(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        return wire.build(q.txid, wire.QR | wire.RA | wire.SERVFAIL, q.questions)

    net.responders[0].override = servfail
    start = net.loop.now()
    r = net.resolve("www.demo")
    assert r.error is None and r.server == SERVER2
    assert net.loop.now() - start < dns.Resolver.timeout   # no waiting for a timeout
    net.responders[1].override = servfail
    r = net.resolve("web.demo")
    assert r.error == dns.SERVFAIL
    assert (net.responders[0].queries, net.responders[1].queries) == (2, 2)  # once each


def test_refused() -> None:
    net = Net()
    assert net.resolve("www.elsewhere.example").error == dns.REFUSED


def test_cache_honours_ttl() -> None:
    net = Net()
    r1 = net.resolve("www.demo")
    assert r1.source == "dns"
    net.loop.run(duration=30)
    r2 = net.resolve("www.demo")
    assert r2.source == "cache" and r2.addresses == r1.addresses and 0 < r2.ttl <= 30
    assert net.responders[0].queries == 1
    net.loop.run(duration=31)
    r3 = net.resolve("www.demo")
    assert r3.source == "dns" and net.responders[0].queries == 2


def test_negative_answers_are_cached_for_the_soa_minimum() -> None:
    net = Net()
    assert net.resolve("gone.demo").error == dns.NXDOMAIN
    r = net.resolve("GONE.demo.")
    assert r.error == dns.NXDOMAIN and r.source == "cache"
    assert net.responders[0].queries == 1


def test_cache_is_capped() -> None:
    net = Net()
    for i in range(20):
        net.responders[0].add_address(f"h{i}.demo", f"192.0.2.{100 + i}")
    net.resolver.cache_max = 8
    for i in range(20):
        assert net.resolve(f"h{i}.demo").error is None
    assert len(net.resolver.cache) == 8
    assert ("h19.demo", wire.A) in net.resolver.cache


def test_hosts_table_first_and_literals() -> None:
    net = Net()
    net.resolver.hosts["www.demo"] = [ip_bytes("198.51.100.1")]
    net.resolver.add_host("Printer.Lan", "198.51.100.7")
    r = net.resolve("WWW.demo")
    assert r.addresses == [ip_bytes("198.51.100.1")] and r.source == "hosts"
    assert net.resolve("printer.lan").addresses == [ip_bytes("198.51.100.7")]
    assert net.resolve("198.51.100.7", wire.PTR).names == ["printer.lan"]
    assert net.resolve("192.0.2.200").addresses == [ip_bytes("192.0.2.200")]
    assert net.resolve("192.0.2.200", wire.AAAA).error == dns.NODATA
    assert net.responders[0].queries == 0


def test_cname_loop_and_hop_limit() -> None:
    net = Net()
    r0 = net.responders[0]
    r0.add_cname("loop1.demo", "loop2.demo")
    r0.add_cname("loop2.demo", "loop1.demo")
    assert net.resolve("loop1.demo").error == dns.CNAME_LOOP
    for i in range(12):
        r0.add_cname(f"c{i}.demo", f"c{i + 1}.demo")
    r0.add_address("c12.demo", "192.0.2.12")
    assert net.resolve("c0.demo").error == dns.CNAME_LOOP     # 12 hops > 8
    assert net.resolve("c5.demo").addresses == [ip_bytes("192.0.2.12")]   # 7 hops


def test_chain_ending_at_an_alias_is_followed_with_a_new_query() -> None:
    net = Net()

    def partial(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        question = q.questions[0]
        flags = wire.QR | wire.RD | wire.RA
        if wire.canonical(question.name) == "start.demo":
            return wire.build(q.txid, flags, q.questions,
                              [wire.Record("start.demo", wire.CNAME, 1, 30, "end.demo")])
        return wire.build(q.txid, flags, q.questions,
                          [wire.Record("end.demo", wire.A, 1, 20, b"\xc0\x00\x02\x05")])

    net.responders[0].override = partial
    r = net.resolve("start.demo")
    assert r.addresses == [b"\xc0\x00\x02\x05"] and r.cname_chain == ["end.demo"]
    assert r.ttl == 20 and net.responders[0].queries == 2


def test_each_query_uses_a_fresh_random_port_and_txid() -> None:
    net = Net()
    seen: list[tuple[int, int]] = []
    real = net.responders[0]

    def record(q: wire.Message, src: tuple[bytes, int]) -> None:
        seen.append((q.txid, src[1]))
        return None   # stay silent: every try times out and a new one is sent

    real.override = record
    for i in range(4):
        net.resolve(f"n{i}.demo")
    assert len(seen) == 8
    assert len({txid for txid, _ in seen}) >= 7
    assert len({port for _, port in seen}) >= 7
    assert not net.client.udp.endpoints   # all closed again


def test_concurrent_identical_questions_share_one_query() -> None:
    net = Net()
    out: list[dns.DnsResult] = []
    for _ in range(5):
        net.resolver.resolve("www.demo", wire.A, out.append)
    net.loop.run_until(lambda: len(out) == 5, 10)
    assert len(out) == 5 and all(r.addresses == [ip_bytes("192.0.2.80")] for r in out)
    assert net.responders[0].queries == 1


def test_callback_never_runs_inside_resolve() -> None:
    net = Net()
    net.resolve("www.demo")            # cached now
    out: list[dns.DnsResult] = []
    net.resolver.resolve("www.demo", wire.A, out.append)
    assert out == []
    net.loop.run(duration=0)
    assert out and out[0].source == "cache"


def test_no_servers() -> None:
    net = Net()
    net.resolver.servers = []
    assert net.resolve("www.demo").error == dns.NOSERVERS


# -- TCP fallback, with a stand-in for stack.tcp (the API the TCP module offers) ----

class FakeConn:
    def __init__(self, tcp: FakeTcp, dst: bytes, port: int) -> None:
        self.tcp = tcp
        self.dst, self.port = dst, port
        self.on_event: Callable[..., None] | None = None
        self.state = "SYN_SENT"
        self.error: int | None = None
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.eof = False
        self.closed = False
        tcp.loop.call_at(tcp.loop.now() + 0.01, self._established)

    def _established(self) -> None:
        self.state = "ESTABLISHED"
        self._event()

    def _event(self) -> None:
        if self.on_event is not None:
            self.on_event(self)

    def send(self, data: bytes) -> int:
        if self.state != "ESTABLISHED":
            return 0
        self.outbox += data
        if len(self.outbox) >= 2 and len(self.outbox) >= 2 + int.from_bytes(self.outbox[:2], "big"):
            query = bytes(self.outbox[2:])
            reply = self.tcp.responder.answer(query, (b"\0" * 4, 0), max_size=65535)
            assert reply is not None
            self.tcp.replies += 1

            def arrive() -> None:
                self.inbox += len(reply).to_bytes(2, "big") + reply
                self._event()
            self.tcp.loop.call_at(self.tcp.loop.now() + 0.01, arrive)
        return len(data)

    def recv(self, n: int) -> bytes | None:
        if self.inbox:
            # hand the reply over in small pieces, as TCP may
            out = bytes(self.inbox[:min(n, 7)])
            del self.inbox[:len(out)]
            return out
        return b"" if self.eof else None

    def close(self) -> None:
        self.closed = True


class SilentConn(FakeConn):
    """Connects, but never takes the query (a peer with a zero window)."""

    def send(self, data: bytes) -> int:
        return 0


class FakeTcp:
    def __init__(self, loop: SimLoop, responder: DnsResponder) -> None:
        self.loop = loop
        self.responder = responder
        self.conns: list[FakeConn] = []
        self.replies = 0
        self.conn_class = FakeConn

    def connect(self, dst: bytes, port: int) -> FakeConn:
        conn = self.conn_class(self, dst, port)
        self.conns.append(conn)
        return conn


def test_truncated_answer_is_retried_over_tcp() -> None:
    net = Net()
    r0 = net.responders[0]
    for i in range(40):
        r0.add_address("many.demo", f"192.0.2.{100 + i}")
    net.client.tcp = FakeTcp(net.loop, r0)
    r = net.resolve("many.demo")
    assert r.error is None and len(r.addresses) == 40 and r.source == "tcp"
    assert net.client.counters["dns.tcp_fallback"] == 1
    assert net.client.counters["dnsd.truncated"] == 0 and r0.stack.counters["dnsd.truncated"] == 1
    conn = net.client.tcp.conns[0]
    assert (conn.dst, conn.port) == (SERVER, 53) and conn.closed


def test_truncated_answer_over_the_real_tcp() -> None:
    net = Net(tcp=True)
    r0 = net.responders[0]
    assert r0.listener is not None
    for i in range(60):
        r0.add_address("many.demo", f"192.0.2.{100 + i}")
    r = net.resolve("many.demo")
    assert r.error is None and r.source == "tcp" and len(r.addresses) == 60
    assert net.client.counters["dns.tcp_fallback"] == 1
    net.loop.run(duration=5)
    assert not r0.sessions            # the client closed, the responder followed
    assert net.client.counters["stack.internal_error"] == 0
    assert r0.stack.counters["stack.internal_error"] == 0


def test_tcp_failure_moves_to_the_next_server() -> None:
    net = Net(servers=2)
    for r0 in net.responders:
        for i in range(40):
            r0.add_address("many.demo", f"192.0.2.{100 + i}")
    tcp = FakeTcp(net.loop, net.responders[1])
    real_connect = tcp.connect

    def connect(dst: bytes, port: int) -> FakeConn:
        if dst == SERVER:
            raise ConnectionRefusedError(111, "refused")
        return real_connect(dst, port)

    tcp.connect = connect  # type: ignore[method-assign]
    net.client.tcp = tcp
    r = net.resolve("many.demo")
    assert r.error is None and r.server == SERVER2 and len(r.addresses) == 40
    assert net.client.counters["dns.tcp_failed"] == 1


def test_tcp_that_never_answers_times_out_as_truncated() -> None:
    net = Net()
    for i in range(40):
        net.responders[0].add_address("many.demo", f"192.0.2.{100 + i}")
    tcp = FakeTcp(net.loop, net.responders[0])
    tcp.conn_class = SilentConn
    net.client.tcp = tcp
    r = net.resolve("many.demo")
    assert r.error == dns.TRUNCATED
    assert net.client.counters["dns.tcp_timeout"] == dns.Resolver.attempts
    assert all(c.closed for c in tcp.conns)


def test_truncated_answer_without_tcp_reports_truncated() -> None:
    net = Net()
    for i in range(40):
        net.responders[0].add_address("many.demo", f"192.0.2.{100 + i}")
    assert net.client.tcp is None
    r = net.resolve("many.demo")
    # The responder cut everything but the question: nothing usable arrived.
    assert r.error == dns.TRUNCATED
    assert net.resolver.cache.get(("many.demo", wire.A)) is None   # not cached
