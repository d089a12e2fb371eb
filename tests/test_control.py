"""The control server and ``femtotcp ctl`` client, without root.

Two real stacks on an in-memory wire, driven by a real-time Runtime; stack "a"
is the served host. Every command goes through the Unix socket exactly as
``femtotcp ctl`` sends it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from skippolicy import skip_or_fail

from femtotcp import control
from femtotcp.cli import build_parser
from femtotcp.control.render import render as render_reply
from femtotcp.host import Host
from femtotcp.phy.memory import Wire
from femtotcp.phy.pcap import PcapReader
from femtotcp.runtime import Runtime
from femtotcp.services.echo import start_udp_echo
from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, ip_bytes, mac_bytes

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


class FakeHost:
    """What ``Host`` offers the control server, on a memory wire (no TAP, no root)."""

    start_capture = Host.start_capture
    stop_capture = Host.stop_capture

    def __init__(self, runtime: Runtime, stack: Stack, device: Any) -> None:
        self.runtime = runtime
        self.stack = stack
        self.device = device
        self.services: list[Any] = []
        self.pcap: Any = None


@dataclass
class Lan:
    rt: Runtime
    a: Stack
    b: Stack
    host: FakeHost
    server: control.ControlServer
    path: str
    dir: str

    def ask(self, command: str, args: dict[str, Any] | None = None,
            progress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return control.request(self.path, command, args, timeout=10.0,
                               on_progress=progress.append if progress is not None else None)

    def ok(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self.ask(command, args)
        assert doc["ok"], doc
        assert doc["femtotcp_ctl"] == 1 and doc["command"] == command
        return dict(doc["result"])

    def b_pings_a(self, count: int = 1) -> None:
        got: list[Any] = []

        def go() -> None:
            ep = self.b.icmp.open_echo()
            ep.on_readable = lambda: got.extend(iter(ep.recv, None))
            for seq in range(count):
                ep.send(ip_bytes("192.0.2.2"), seq + 1, b"x" * 8)

        self.rt.call(go)
        wait_for(lambda: len(got) >= count)


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A short directory (AF_UNIX paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="ftctl")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lan(short_dir: str) -> Iterator[Lan]:
    rt = Runtime()
    wire = Wire(rt)
    a = Stack("a")
    a.add_interface(wire.a, mac=MAC_A, ipv4="192.0.2.2/24", name="mem0")
    b = Stack("b")
    b.add_interface(wire.b, mac=MAC_B, ipv4="192.0.2.1/24", name="mem1")
    rt.add_stack(a)
    rt.add_stack(b)
    rt.start()
    rt.call(a.start)
    rt.call(b.start)
    host = FakeHost(rt, a, wire.a)
    host.services.append(rt.call(start_udp_echo, a, 7))
    path = os.path.join(short_dir, "ctl.sock")
    assert control.check_free(path)
    server = control.ControlServer(host, path).start()
    try:
        yield Lan(rt, a, b, host, server, path, short_dir)
    finally:
        server.close()
        rt.call(host.stop_capture)
        rt.stop()
        rt.join(5)
        rt.close()


def raw_exchange(path: str, data: bytes, half_close: bool = True) -> dict[str, Any]:
    """Send raw bytes on the control socket and return the one reply document."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse early; its reply is still there to read
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0]
    doc = json.loads(line)
    assert isinstance(doc, dict)
    return doc


# -- the socket file and the one-serve-per-path rule ---------------------------------------
def test_socket_is_owner_only_and_removed_on_close(lan: Lan) -> None:
    st = os.stat(lan.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    lan.server.close()
    assert not os.path.exists(lan.path)
    lan.server.close()   # idempotent


def test_check_free_refuses_a_live_server(lan: Lan) -> None:
    with pytest.raises(OSError, match="already running") as exc:
        control.check_free(lan.path)
    # serve prints str(exc): the message alone, no "[Errno 98]".
    assert str(exc.value) == (f"another femtotcp serve is already running with control "
                              f"socket {lan.path}")
    with pytest.raises(OSError, match="already exists"):
        control.ControlServer(lan.host, lan.path).start()
    assert lan.ok("route")  # the first server is unharmed


def test_socket_mode_ignores_a_permissive_umask(lan: Lan, short_dir: str) -> None:
    path = os.path.join(short_dir, "open.sock")
    old = os.umask(0)
    try:
        server = control.ControlServer(lan.host, path).start()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        server.close()
    assert not os.path.exists(path)


def test_check_free_removes_a_stale_socket_and_makes_the_directory(short_dir: str) -> None:
    path = os.path.join(short_dir, "sub", "x.sock")
    assert control.check_free(path)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)          # bound, never listening: what a killed serve leaves
    s.close()
    assert os.path.exists(path)
    assert control.check_free(path)
    assert not os.path.exists(path)


def test_check_free_refuses_a_non_socket(short_dir: str) -> None:
    path = os.path.join(short_dir, "plain")
    with open(path, "w") as f:
        f.write("x")
    with pytest.raises(OSError, match="not a socket"):
        control.check_free(path)
    assert os.path.exists(path)


def test_check_free_refuses_a_path_too_long(short_dir: str) -> None:
    with pytest.raises(OSError, match="too long"):
        control.check_free(os.path.join(short_dir, "x" * 120))


def test_close_leaves_a_newer_servers_socket(lan: Lan) -> None:
    os.unlink(lan.path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(lan.path)
    try:
        lan.server.close()
        assert os.path.exists(lan.path)
    finally:
        other.close()


# -- the commands ----------------------------------------------------------------------------
def test_stats_counts_and_drops_by_reason(lan: Lan) -> None:
    lan.b_pings_a(2)
    # A frame for us with a broken IPv4 header checksum, and one with a bad version.
    good = bytearray(b"\x45\x00\x00\x14\x00\x01\x00\x00\x40\x11\x00\x00"
                     + ip_bytes("192.0.2.1") + ip_bytes("192.0.2.2"))
    bad_sum = ethernet.build(mac_bytes(MAC_A), mac_bytes(MAC_B), ethernet.ETH_IPV4,
                             bytes(good))
    bad_ver = ethernet.build(mac_bytes(MAC_A), mac_bytes(MAC_B), ethernet.ETH_IPV4,
                             b"\x65" + bytes(good[1:]))
    dev_b = lan.b.interfaces[0].device
    lan.rt.call(lambda: (dev_b.send(bad_sum), dev_b.send(bad_sum), dev_b.send(bad_ver)))
    wait_for(lambda: lan.a.counters["ipv4.bad_version"] >= 1)
    r = lan.ok("stats")
    assert r["counters"]["icmp4.echo_replied"] == 2
    assert r["counters"]["ipv4.bad_checksum"] == 2
    assert r["drops"]["ipv4.bad_checksum"] == 2
    assert r["drops"]["ipv4.bad_version"] == 1
    assert r["reassembly"] == {"datagrams": 0, "bytes": 0}
    assert r["udp"]["endpoints"] == 1
    assert r["devices"]["mem0"]["rx_frames"] >= 5
    assert "icmp4" in r["modules"]
    if lan.a.tcp is None:
        assert r["tcp"] is None
    else:
        assert set(r["tcp"]) >= {"listeners", "connections", "syn_queue", "accept_queue",
                                 "out_of_order_segments"}


def test_stats_shows_every_bounded_queue_with_its_cap(lan: Lan) -> None:
    """Each queue the design bounds is visible in ctl stats: how full, and its cap."""
    lan.b_pings_a(1)
    r = lan.ok("stats")
    q = r["queues"]
    cfg = lan.a.config
    assert q["stack.loopback"] == {"now": 0, "cap": cfg.local_queue_max}
    assert q["arp.cache"]["cap"] == cfg.arp_cache_max and q["arp.cache"]["now"] >= 1
    assert q["arp.pending_packets"]["cap"] == cfg.arp_pending_max
    assert q["arp.pending_bytes"]["cap"] == cfg.arp_pending_bytes
    assert q["ipv4.reassembly_datagrams"] == {"now": 0, "cap": cfg.reasm_max_datagrams}
    assert q["ipv4.reassembly_bytes"] == {"now": 0, "cap": cfg.reasm_max_bytes}
    assert q["udp.receive_datagrams"]["cap"] == cfg.udp_queue_max
    for name, v in q.items():
        assert 0 <= v["now"] <= v["cap"], name
    if lan.a.tcp is not None:
        tcfg = lan.a.tcp.config
        assert q["tcp.time_wait"]["cap"] == tcfg.max_time_wait
        assert {"tcp.syn_queue", "tcp.accept_queue", "tcp.out_of_order_segments",
                "tcp.out_of_order_bytes", "tcp.receive_buffer", "tcp.send_buffer"} <= set(q)
    text = render_reply("stats", r)
    assert "QUEUE" in text and "arp.cache" in text


def test_stats_reports_reassembly_in_progress(lan: Lan) -> None:
    # The first fragment of a datagram whose rest never comes.
    frag = bytearray(b"\x45\x00\x00\x24\x12\x34\x20\x00\x40\x11\x00\x00"
                     + ip_bytes("192.0.2.1") + ip_bytes("192.0.2.2") + b"u" * 16)
    from femtotcp.wire.checksum import checksum
    frag[10:12] = checksum(bytes(frag[:20])).to_bytes(2, "big")
    dev_b = lan.b.interfaces[0].device
    lan.rt.call(dev_b.send, ethernet.build(mac_bytes(MAC_A), mac_bytes(MAC_B),
                                           ethernet.ETH_IPV4, bytes(frag)))
    wait_for(lambda: lan.a.ipv4.reassembly.stats()["datagrams"] == 1)
    assert lan.ok("stats")["reassembly"] == {"datagrams": 1, "bytes": 16}


def test_neigh_holds_the_peer_after_it_pinged(lan: Lan) -> None:
    lan.b_pings_a()
    r = lan.ok("neigh")
    entries = [n for n in r["neighbours"] if n["address"] == "192.0.2.1"]
    assert len(entries) == 1
    assert entries[0]["mac"] == MAC_B
    assert entries[0]["state"] == "REACHABLE"
    assert entries[0]["interface"] == "mem0"


def test_route_and_addr(lan: Lan) -> None:
    lan.rt.call(lambda: lan.a.add_route("0.0.0.0/0", gateway="192.0.2.1"))
    routes = lan.ok("route")["routes"]
    assert {"destination": "192.0.2.0/24", "gateway": None, "interface": "mem0",
            "origin": "connected"} in routes
    assert {"destination": "0.0.0.0/0", "gateway": "192.0.2.1", "interface": "mem0",
            "origin": "static"} in routes
    ifaces = lan.ok("addr")["interfaces"]
    assert len(ifaces) == 1
    i = ifaces[0]
    assert (i["name"], i["mac"], i["mtu"], i["link"]) == ("mem0", MAC_A, 1500, "ethernet")
    assert i["addresses"] == [{"address": "192.0.2.2", "prefixlen": 24, "origin": "static",
                               "tentative": False, "broadcast": "192.0.2.255"}]
    assert i["dhcp"] is None


def test_route_shows_learned_path_mtus(lan: Lan) -> None:
    """A Fragmentation Needed about a datagram of a's lowers its path MTU to
    b: ``ctl route`` lists it with its expiry, as ``ip route get`` would."""
    from femtotcp.wire import ethernet, icmp4, ipv4, mac_bytes, udp

    def frag_needed() -> None:
        assert lan.a.udp is not None and lan.a.ipv4 is not None
        ep = lan.a.udp.open(port=5000)
        src, dst = ip_bytes("192.0.2.2"), ip_bytes("192.0.2.1")
        quoted = ipv4.build(src, dst, udp.PROTO, udp.build(src, dst, 5000, 7, bytes(64)))
        msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, 1280, quoted[:28])
        lan.a.receive(lan.a.interfaces[0], ethernet.build(
            mac_bytes(MAC_A), mac_bytes(MAC_B), ethernet.ETH_IPV4,
            ipv4.build(dst, src, ipv4.PROTO_ICMP, msg)))
        ep.close()

    assert lan.ok("route")["pmtu"] == []
    lan.rt.call(frag_needed)
    (entry,) = lan.ok("route")["pmtu"]
    assert (entry["destination"], entry["mtu"], entry["locked"]) == ("192.0.2.1", 1280, False)
    assert 0 < entry["expires"] <= 600
    rc, out, _ = run_ctl("--control", lan.path, "route")
    assert rc == 0 and "learned path MTUs:" in out and "192.0.2.1" in out and "1280" in out


def test_addr_shows_a_dhcp_lease_with_its_times(lan: Lan) -> None:
    from femtotcp.services.dhcp import BOUND, DhcpClient, Lease

    def bind() -> None:
        client = DhcpClient(lan.a, lan.a.interfaces[0])
        now = lan.a.now
        client.lease = Lease(ip_bytes("192.0.2.50"), 24, ip_bytes("192.0.2.1"), 3600,
                             now - 10, now + 1790, now + 3140, now + 3590,
                             router=ip_bytes("192.0.2.1"), dns=[ip_bytes("192.0.2.1")])
        client.state = BOUND
        lan.host.services.append(client)

    lan.rt.call(bind)
    lease = lan.ok("addr")["interfaces"][0]["dhcp"]
    assert lease["state"] == "BOUND"
    assert lease["address"] == "192.0.2.50/24"
    assert (lease["server"], lease["router"], lease["dns"]) == (
        "192.0.2.1", "192.0.2.1", ["192.0.2.1"])
    assert lease["lease_time"] == 3600
    assert 1780 < lease["renew_in"] <= 1790
    assert 3130 < lease["rebind_in"] <= 3140
    assert 3580 < lease["expires_in"] <= 3590
    assert 10 <= lease["obtained_ago"] < 20
    rc, out, _ = run_ctl("--control", lan.path, "addr")
    assert rc == 0 and "dhcp BOUND: 192.0.2.50/24 from 192.0.2.1" in out


def test_addr_shows_a_dhcp_client_without_a_lease(lan: Lan) -> None:
    from femtotcp.services.dhcp import DhcpClient
    lan.host.services.append(lan.rt.call(DhcpClient, lan.a, lan.a.interfaces[0]))
    dhcp = lan.ok("addr")["interfaces"][0]["dhcp"]
    assert dhcp["state"] == "STOPPED" and "address" not in dhcp


def test_sockets_lists_udp_endpoints(lan: Lan) -> None:
    def open_connected() -> None:
        ep = lan.a.udp.open(port=5000)
        ep.connect(ip_bytes("192.0.2.1"), 53)
    lan.rt.call(open_connected)
    rows = lan.ok("sockets")["sockets"]
    udp = {r["local_port"]: r for r in rows if r["proto"] == "udp"}
    assert udp[7] == {"proto": "udp", "state": "UNCONN", "local_address": "0.0.0.0",
                      "local_port": 7, "peer_address": None, "peer_port": None,
                      "recv_q": 0, "send_q": 0, "queued_datagrams": 0}
    assert udp[5000]["state"] == "ESTABLISHED"
    assert (udp[5000]["peer_address"], udp[5000]["peer_port"]) == ("192.0.2.1", 53)


class FakeListener:
    def __init__(self) -> None:
        self.local = (b"\0\0\0\0", 7)
        self.backlog = 128
        self.syn_queue = {("k1",): object(), ("k2",): object()}
        self.accept_queue = [object()]


class FakeConn:
    def __init__(self, local: tuple[bytes, int], remote: tuple[bytes, int],
                 info: dict[str, Any]) -> None:
        self.local = local
        self.remote = remote
        self._info = info

    def info(self) -> dict[str, Any]:
        return self._info


class FakeTcp:
    """The shape of proto/tcp's Tcp as the control server reads it."""

    def listeners(self) -> list[FakeListener]:
        return [FakeListener()]

    def connections(self) -> list[FakeConn]:
        me = ip_bytes("192.0.2.2")
        peer = ip_bytes("192.0.2.1")
        return [FakeConn((me, 7), (peer, 40000),
                         {"state": "ESTABLISHED", "rtt": 0.0125, "rttvar": 0.005, "rto": 0.2,
                          "cwnd": 14600, "ssthresh": None, "mss": 1460, "rcv_queue": 3,
                          "snd_queue": 5, "ooo_blocks": 4, "ooo_bytes": 5840,
                          "retransmits": 1, "error": "ECONNRESET"}),
                FakeConn((me, 7), (peer, 40001), {"state": "TIME_WAIT", "rtt": None})]


def test_sockets_and_stats_read_tcp_through_info(lan: Lan) -> None:
    real = lan.a.tcp
    lan.a.tcp = FakeTcp()
    try:
        rows = [r for r in lan.ok("sockets")["sockets"] if r["proto"] == "tcp"]
        stats = lan.ok("stats")["tcp"]
    finally:
        lan.a.tcp = real
    listen, est, tw = rows
    assert (listen["state"], listen["local_address"], listen["local_port"]) == (
        "LISTEN", "0.0.0.0", 7)
    assert (listen["syn_queue"], listen["accept_queue"], listen["recv_q"]) == (2, 1, 1)
    assert est["state"] == "ESTABLISHED"
    assert (est["local_address"], est["local_port"]) == ("192.0.2.2", 7)
    assert (est["peer_address"], est["peer_port"]) == ("192.0.2.1", 40000)
    assert (est["rtt_ms"], est["rttvar_ms"], est["rto_ms"]) == (12.5, 5.0, 200.0)
    assert (est["cwnd"], est["ssthresh"], est["mss"]) == (14600, None, 1460)
    assert (est["recv_q"], est["send_q"], est["out_of_order_segments"]) == (3, 5, 4)
    assert (est["retransmits"], est["error"]) == (1, "ECONNRESET")
    assert tw["state"] == "TIME-WAIT" and tw["rtt_ms"] is None and tw["recv_q"] == 0
    assert stats == {"listeners": 1, "connections": 2, "syn_queue": 2, "accept_queue": 1,
                     "out_of_order_segments": 4, "out_of_order_bytes": 5840,
                     "states": {"ESTABLISHED": 1, "TIME-WAIT": 1}}


def test_sockets_shows_a_real_tcp_connection(lan: Lan) -> None:
    if lan.a.tcp is None:
        skip_or_fail("TCP is not in this build", "tcp")
    from femtotcp.services import tcp_echo
    got = bytearray()

    def setup() -> Any:
        lan.host.services.append(tcp_echo.start(lan.a, 7))
        conn = lan.b.tcp.connect(ip_bytes("192.0.2.2"), 7)

        def event() -> None:
            while (data := conn.recv()):
                got.extend(data)

        conn.on_event = event
        conn.send(b"hello")
        return conn

    conn = lan.rt.call(setup)
    wait_for(lambda: bytes(got) == b"hello")
    sport = conn.local[1]
    rows = [r for r in lan.ok("sockets")["sockets"] if r["proto"] == "tcp"]
    listen = [r for r in rows if r["state"] == "LISTEN"]
    assert [(r["local_address"], r["local_port"]) for r in listen] == [("0.0.0.0", 7)]
    assert listen[0]["backlog"] > 0 and listen[0]["accept_queue"] == 0
    est = [r for r in rows if r["state"] == "ESTABLISHED"]
    assert len(est) == 1
    e = est[0]
    assert (e["local_address"], e["local_port"]) == ("192.0.2.2", 7)
    assert (e["peer_address"], e["peer_port"]) == ("192.0.2.1", sport)
    assert e["rto_ms"] >= 200 and e["rtt_ms"] is not None and e["cwnd"] > 0
    assert 0 < e["mss"] <= 1460 and e["send_q"] == 0 and e["recv_q"] == 0
    stats = lan.ok("stats")["tcp"]
    assert stats["listeners"] == 1 and stats["states"] == {"ESTABLISHED": 1}
    lan.rt.call(conn.close)


def test_ping_from_the_stack(lan: Lan) -> None:
    progress: list[dict[str, Any]] = []
    doc = lan.ask("ping", {"host": "192.0.2.1", "count": 3, "interval": 0.05}, progress)
    assert doc["ok"], doc
    r = doc["result"]
    assert (r["transmitted"], r["received"], r["duplicates"], r["loss_percent"]) == (
        3, 3, 0, 0.0)
    assert [p["seq"] for p in progress] == [1, 2, 3]
    assert all(p["from"] == "192.0.2.1" and p["bytes"] == 64 and p["payload_ok"]
               for p in progress)
    assert r["replies"] == progress
    rtt = r["rtt_ms"]
    assert 0 <= rtt["min"] <= rtt["avg"] <= rtt["max"]
    assert lan.b.counters["icmp4.echo_replied"] == 3
    assert not lan.a.icmp.echo     # the endpoint was closed


def test_ping_counts_loss(lan: Lan) -> None:
    r = lan.ok("ping", {"host": "192.0.2.99", "count": 2, "interval": 0.05, "wait": 0.2})
    assert (r["transmitted"], r["received"], r["loss_percent"]) == (2, 0, 100.0)
    assert r["rtt_ms"] is None


def test_ping_reports_send_errors(lan: Lan) -> None:
    r = lan.ok("ping", {"host": "198.51.100.1", "count": 1, "wait": 0.1})
    assert r["received"] == 0 and r["errors"] == 1
    assert r["send_errors"][0]["seq"] == 1 and r["send_errors"][0]["error"]


def test_resolve_without_a_resolver_is_a_clear_error(lan: Lan) -> None:
    doc = lan.ask("resolve", {"name": "example.test"})
    assert not doc["ok"]
    assert doc["error"]["code"] == "unavailable"
    assert "--dns" in doc["error"]["message"]
    doc = lan.ask("ping", {"host": "example.test", "count": 1})
    assert doc["error"]["code"] == "unavailable"


@pytest.fixture
def dns_lan(lan: Lan) -> Lan:
    """Stack b answers DNS for the zone "demo"; stack a asks it."""
    from femtotcp.services.dns_server import DnsResponder

    def setup() -> None:
        responder = DnsResponder(lan.b, zone="demo")
        responder.add_address("peer.demo", "192.0.2.1")
        responder.add_cname("alias.demo", "peer.demo")
        responder.add_address("both.demo", "192.0.2.1")
        responder.add_address("both.demo", "2001:db8::1")
        responder.add_address("six.demo", "2001:db8::6")
        lan.a.load_module("dns")
        lan.a.resolver.servers = [ip_bytes("192.0.2.1")]

    lan.rt.call(setup)
    return lan


def test_resolve_through_the_stack(dns_lan: Lan) -> None:
    r = dns_lan.ok("resolve", {"name": "alias.demo"})
    assert r["name"] == "alias.demo" and r["addresses"] == ["192.0.2.1"]
    assert r["server"] == "192.0.2.1" and r["source"] == "dns"
    assert r["ttl"] > 0
    rc, out, _ = run_ctl("--control", dns_lan.path, "resolve", "peer.demo")
    assert rc == 0 and out.splitlines()[0].split() == ["peer.demo", "192.0.2.1"]


def test_dns_shows_servers_with_their_source_and_the_search_list(dns_lan: Lan) -> None:
    def lease() -> None:
        resolver = dns_lan.a.resolver
        resolver.set_lease_servers("eth0", [ip_bytes("192.0.2.9"), ip_bytes("192.0.2.1")])
        resolver.set_lease_search("eth0", ["lab.demo"])
        resolver.search = ["demo"]

    dns_lan.rt.call(lease)
    r = dns_lan.ok("dns")
    assert r["servers"] == [{"address": "192.0.2.1", "source": "configured"},
                            {"address": "192.0.2.9", "source": "dhcp:eth0"}]
    assert r["search"] == ["demo", "lab.demo"] and r["ndots"] == 1
    rc, out, _ = run_ctl("--control", dns_lan.path, "dns")
    assert rc == 0 and out.splitlines() == [
        "servers: 192.0.2.1 (configured), 192.0.2.9 (dhcp:eth0)", "search: demo lab.demo"]


def test_resolve_prints_a_and_aaaa(dns_lan: Lan) -> None:
    r = dns_lan.ok("resolve", {"name": "both.demo"})
    assert r["addresses"] == ["192.0.2.1", "2001:db8::1"]
    rc, out, _ = run_ctl("--control", dns_lan.path, "resolve", "six.demo")
    assert rc == 0 and out.splitlines()[0].split() == ["six.demo", "2001:db8::6"]


def test_resolve_failure_names_the_error(dns_lan: Lan) -> None:
    doc = dns_lan.ask("resolve", {"name": "missing.demo"})
    assert doc["error"]["code"] == "resolve_failed"
    assert doc["error"]["dns_error"] == "NXDOMAIN"
    assert "missing.demo" in doc["error"]["message"]
    rc, out, err = run_ctl("--control", dns_lan.path, "resolve", "missing.demo")
    assert rc == 1 and "no such name (NXDOMAIN)" in err


def test_ping_by_name(dns_lan: Lan) -> None:
    r = dns_lan.ok("ping", {"host": "peer.demo", "count": 1})
    assert (r["host"], r["address"], r["received"]) == ("peer.demo", "192.0.2.1", 1)


def test_capture_start_and_stop(lan: Lan) -> None:
    path = os.path.join(lan.dir, "cap.pcap")
    r = lan.ok("capture", {"action": "start", "path": path})
    assert r == {"capturing": True, "path": path, "packets": 0}
    lan.b_pings_a(2)
    r = lan.ok("capture", {"action": "stop"})
    assert r["capturing"] is False and r["path"] == path and r["packets"] >= 4
    with PcapReader(path) as reader:
        frames = list(reader)
    assert len(frames) == r["packets"]
    assert lan.ok("capture", {"action": "stop"}) == {"capturing": False, "path": None,
                                                      "packets": 0}


def test_capture_refuses_bad_paths(lan: Lan) -> None:
    doc = lan.ask("capture", {"action": "start", "path": "relative.pcap"})
    assert doc["error"]["code"] == "bad_request"
    doc = lan.ask("capture", {"action": "start", "path": "/nonexistent-dir/x.pcap"})
    assert doc["error"]["code"] == "failed"
    assert "/nonexistent-dir/x.pcap" in doc["error"]["message"]
    doc = lan.ask("capture", {"action": "pause"})
    assert doc["error"]["code"] == "bad_request"


# -- hostile requests ----------------------------------------------------------------------------
@pytest.mark.parametrize("data, code", [
    (b"\x00\xff garbage \xfe\n", "bad_request"),
    (b"not json at all\n", "bad_request"),
    (b"[1, 2, 3]\n", "bad_request"),
    (b"{}\n", "bad_request"),
    (b'{"command": 5}\n', "bad_request"),
    (b'{"command": "reboot"}\n', "unknown_command"),
    (b'{"command": "stats", "version": 2}\n', "bad_request"),
    (b'{"command": "stats", "args": []}\n', "bad_request"),
    (b'{"command": "stats", "args": {"x": 1}}\n', "bad_request"),
    (b'{"command": "ping", "args": {"host": "192.0.2.1", "count": "3"}}\n', "bad_request"),
    (b'{"command": "ping", "args": {"host": "192.0.2.1", "count": true}}\n', "bad_request"),
    (b'{"command": "ping", "args": {"host": "192.0.2.1", "count": 0}}\n', "bad_request"),
    (b'{"command": "ping", "args": {"host": "192.0.2.1", "interval": NaN}}\n',
     "bad_request"),
    (b'{"command": "ping", "args": {"host": ""}}\n', "bad_request"),
    (b'{"command": "ping", "args": {"host": "192.0.2.1", "count": 100000, '
     b'"interval": 60}}\n', "bad_request"),
    (b"[" * 50000 + b"\n", "bad_request"),
    (b"\n", "bad_request"),
    (b"x" * (control.MAX_REQUEST + 10), "too_large"),
    (b"x" * (control.MAX_REQUEST * 4) + b"\n", "too_large"),
])
def test_garbage_gets_an_error_and_the_stack_goes_on(lan: Lan, data: bytes, code: str) -> None:
    doc = raw_exchange(lan.path, data)
    assert doc["ok"] is False
    assert doc["femtotcp_ctl"] == 1
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    lan.b_pings_a()
    assert lan.ok("stats")["counters"]["icmp4.echo_replied"] == 1


def test_request_without_newline_is_read_at_eof(lan: Lan) -> None:
    doc = raw_exchange(lan.path, b'{"command": "route"}')
    assert doc["ok"] and doc["command"] == "route"


def test_an_empty_connection_gets_no_reply(lan: Lan) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(lan.path)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    assert lan.ok("route")


def test_a_silent_client_times_out(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control.protocol, "REQUEST_TIMEOUT", 0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(lan.path)
        s.sendall(b'{"command": ')
        doc = json.loads(s.recv(65536).split(b"\n")[0])
    assert doc["error"]["code"] == "timeout"


def test_too_many_clients_get_busy(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control.protocol, "MAX_CLIENTS", 1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hog:
        hog.connect(lan.path)
        wait_for(lambda: len(lan.server._conns) == 1)
        doc = raw_exchange(lan.path, b'{"command": "route"}\n')
        assert doc["error"]["code"] == "busy"
    wait_for(lambda: not lan.server._conns)
    assert lan.ok("route")


def test_a_stuck_loop_gives_an_error_not_a_hang(lan: Lan,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control.protocol, "STACK_TIMEOUT", 0.3)
    release = threading.Event()
    lan.rt.call_soon_threadsafe(lambda: release.wait(5))
    try:
        doc = lan.ask("stats")
    finally:
        release.set()
    assert doc["error"]["code"] == "stack_unresponsive"
    assert lan.ok("route")


def test_concurrent_requests(lan: Lan) -> None:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker() -> None:
        doc = lan.ask("stats")
        with lock:
            results.append(doc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and all(d["ok"] for d in results)


def test_close_ends_a_running_ping(lan: Lan) -> None:
    out: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: out.append(lan.ask(
        "ping", {"host": "192.0.2.1", "count": 100, "interval": 0.2})))
    t.start()
    wait_for(lambda: bool(lan.a.icmp.echo))
    lan.server.close()
    t.join(10)
    assert not t.is_alive()
    assert out and out[0]["error"]["code"] == "shutting_down"
    wait_for(lambda: not lan.a.icmp.echo)


# -- the ctl client ---------------------------------------------------------------------------
def run_ctl(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["ctl", *argv])
    out, err = io.StringIO(), io.StringIO()
    rc = control.ctl_main(args, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_ctl_json_and_tables(lan: Lan) -> None:
    lan.b_pings_a()
    rc, out, _ = run_ctl("--control", lan.path, "--json", "neigh")
    assert rc == 0
    doc = json.loads(out)
    assert doc["ok"] and doc["result"]["neighbours"][0]["mac"] == MAC_B
    # --json and --control may also come after the command.
    rc, out, _ = run_ctl("neigh", "--json", "--control", lan.path)
    assert rc == 0 and json.loads(out)["command"] == "neigh"
    rc, out, _ = run_ctl("--control", lan.path, "neigh")
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["ADDRESS", "MAC", "STATE"]
    assert MAC_B in out
    rc, out, _ = run_ctl("--control", lan.path, "route")
    assert rc == 0 and "192.0.2.0/24" in out and "connected" in out
    rc, out, _ = run_ctl("--control", lan.path, "addr")
    assert rc == 0 and "inet 192.0.2.2/24 brd 192.0.2.255 static" in out
    rc, out, _ = run_ctl("--control", lan.path, "sockets")
    assert rc == 0 and "udp" in out and "*:7" in out
    rc, out, _ = run_ctl("--control", lan.path, "stats")
    assert rc == 0 and "icmp4.echo_replied" in out and "reassembly: 0 datagrams" in out


def test_ctl_ping_prints_like_ping(lan: Lan) -> None:
    rc, out, _ = run_ctl("--control", lan.path, "ping", "192.0.2.1", "-c", "2", "-i", "0.05")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=")
    assert "2 packets transmitted, 2 received, 0% packet loss" in out
    assert "rtt min/avg/max/mdev" in out
    rc, out, _ = run_ctl("--control", lan.path, "ping", "192.0.2.99", "-c", "1", "-W", "0.1")
    assert rc == 1 and "100% packet loss" in out


def test_ctl_capture(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lan.dir)
    rc, out, _ = run_ctl("--control", lan.path, "capture", "start", "rel.pcap")
    assert rc == 0 and out == f"capturing to {os.path.join(lan.dir, 'rel.pcap')}\n"
    rc, out, _ = run_ctl("--control", lan.path, "capture", "stop")
    assert rc == 0 and out.startswith("capture stopped: ")
    assert os.path.getsize(os.path.join(lan.dir, "rel.pcap")) >= 24


def test_ctl_error_reply_exits_1(lan: Lan) -> None:
    rc, out, err = run_ctl("--control", lan.path, "resolve", "example.test")
    assert rc == 1 and out == "" and err.startswith("femtotcp ctl: error: no resolver")
    rc, out, err = run_ctl("--control", lan.path, "--json", "resolve", "example.test")
    assert rc == 1 and json.loads(out)["error"]["code"] == "unavailable"


def test_ctl_without_a_server(short_dir: str) -> None:
    path = os.path.join(short_dir, "none.sock")
    rc, out, err = run_ctl("--control", path, "stats")
    assert rc == 1 and "no control socket at" in err and "femtotcp serve" in err
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    rc, out, err = run_ctl("--control", path, "stats")
    assert rc == 1 and "nothing answers" in err
    rc, out, err = run_ctl("--control", path, "--json", "stats")
    assert rc == 1 and json.loads(out)["error"]["code"] == "no_server"


def test_default_control_path(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control.protocol, "CONTROL_DIR", short_dir)
    with pytest.raises(control.ControlError, match="no control socket in .*--control"):
        control.default_control_path()
    socks = []
    for name in ("a.sock", "b.sock"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.path.join(short_dir, name))
        socks.append(s)
        with open(os.path.join(short_dir, name + ".txt"), "w"):
            pass    # a non-socket is not counted
    try:
        with pytest.raises(control.ControlError, match=r"several .*a\.sock, b\.sock.*--control"):
            control.default_control_path()
        os.unlink(os.path.join(short_dir, "b.sock"))
        assert control.default_control_path() == os.path.join(short_dir, "a.sock")
        rc, out, err = run_ctl("--json", "stats")
        assert rc == 1 and json.loads(out)["error"]["code"] == "no_server"
    finally:
        for s in socks:
            s.close()
    with pytest.raises(control.ControlError, match="no control socket"):
        control.default_control_path(os.path.join(short_dir, "missing"))


def test_ctl_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ctl"], ["ctl", "frobnicate"], ["ctl", "ping"], ["ctl", "ping", "h", "-c", "0"],
                 ["ctl", "capture"], ["ctl", "capture", "start"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err


def test_every_reply_is_plain_json(lan: Lan) -> None:
    lan.b_pings_a()
    for cmd in ("stats", "addr", "route", "neigh", "sockets", "dns"):
        doc = lan.ask(cmd)
        assert json.loads(json.dumps(doc)) == doc
        assert list(doc) == ["femtotcp_ctl", "ok", "command", "result"]
