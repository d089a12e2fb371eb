"""IPv6 against the Linux kernel over TAP: ping -6 both ways (link-local,
global, 4000 bytes in fragments), NDP resolution both ways, SLAAC and the
default route from radvd, DAD against an address the kernel holds, and MLDv2
reports tshark decodes cleanly. Addresses from 2001:db8::/32 only, inside the
test's own namespace."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Netns, kernel_tap

from femtotcp.runtime import Runtime
from femtotcp.stack import Stack
from femtotcp.stack.modules import DEFAULT_MODULES
from femtotcp.wire import ip_bytes, ip_str, ipv6

STACK_MAC = "02:00:00:00:00:02"
KERNEL6 = "2001:db8:1::1"
STACK6 = ip_bytes("2001:db8:1::2")


def enable_ipv6(ns: Netns) -> None:
    for key in ("all", "default"):
        ns.run("sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=0")


@contextlib.contextmanager
def stack6(dev: Any, static: bytes | None = STACK6,
           pcap: Path | None = None) -> Iterator[tuple[Runtime, Stack]]:
    stack = Stack("v6", modules=list(DEFAULT_MODULES) + ["ipv6", "icmp6"])
    iface = stack.add_interface(dev, mac=STACK_MAC, ipv4="192.0.2.2/24")
    assert stack.ipv6 is not None
    if static is not None:
        stack.ipv6.add_address(iface, static, 64)
    writer = None
    if pcap is not None:
        from femtotcp.phy.pcap import PcapWriter
        writer = PcapWriter(str(pcap))
        writer.attach(dev)
    rt = Runtime()
    rt.add_stack(stack)
    rt.start()
    try:
        rt.call(stack.start)
        yield rt, stack
    finally:
        rt.stop()
        rt.join(5)
        rt.close()
        if writer is not None:
            writer.detach(dev)
            writer.close()


def ready(stack: Stack, addr: bytes) -> Callable[[], bool]:
    return lambda: addr in stack.local_addresses


def link_local(stack: Stack) -> bytes:
    return next(a.addr for a in stack.interfaces[0].ipv6 if ipv6.is_link_local(a.addr))


def kernel_link_local(ns: Netns, dev: str, timeout: float = 10.0) -> str:
    """The kernel's fe80:: address on ``dev``, once its own DAD is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.ip("-6", "-o", "addr", "show", "dev", dev, "scope", "link").stdout
        if "inet6" in out and "tentative" not in out:
            return out.split("inet6", 1)[1].split()[0].split("/")[0]
        time.sleep(0.1)
    raise AssertionError(f"no usable kernel link-local address on {dev}")


def stack_ping(rt: Runtime, stack: Stack, dst: bytes, size: int = 56,
               timeout: float = 10.0) -> list[Any]:
    replies: list[Any] = []
    payload = bytes(i & 0xFF for i in range(size))

    def start() -> Any:
        assert stack.icmp6 is not None
        return stack.icmp6.ping(dst, replies.append, payload=payload)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not replies:
        ep = rt.call(start)       # one request a second until a reply comes
        rt.wait_until(lambda: bool(replies), 1.0)
        rt.call(ep.close)
    return replies


def kernel_ping(ns: Netns, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return ns.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", *extra, target,
                  check=False)


def test_ping6_both_ways_and_ndp(ns: Netns, require_program: Callable[[str], str]) -> None:
    require_program("ping")
    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", f"{KERNEL6}/64")
    with stack6(dev) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
        ll_stack = rt.call(link_local, stack)
        assert rt.wait_until(ready(stack, ll_stack), 10)
        kernel_ll = kernel_link_local(ns, "ftap0")
        # Kernel -> stack: global, link-local, and 4000 bytes (fragments both ways).
        for target, extra in ((ip_str(STACK6), ()), (f"{ip_str(ll_stack)}%ftap0", ()),
                              (ip_str(STACK6), ("-s", "4000"))):
            res = kernel_ping(ns, target, *extra)
            assert res.returncode == 0, (target, res.stdout, res.stderr)
            assert " 0% packet loss" in res.stdout
        counters = rt.call(lambda: dict(stack.counters))
        assert counters["ipv6.reassembled"] >= 3 and counters["ipv6.tx_fragments"] >= 9
        # The kernel resolved us by NDP.
        neigh = ns.ip("-6", "neigh", "show", "dev", "ftap0").stdout.lower()
        assert STACK_MAC in neigh
        # Stack -> kernel: global, link-local, 4000 bytes.
        assert stack_ping(rt, stack, ip_bytes(KERNEL6))
        assert stack_ping(rt, stack, ip_bytes(kernel_ll))
        big = stack_ping(rt, stack, ip_bytes(KERNEL6), size=4000)
        assert big and len(big[0][2]) == 4000
        # And we resolved the kernel by NDP.
        assert stack.ipv6 is not None
        entries = rt.call(stack.ipv6.ndp.entries)
        kernel_mac = ns.ip("-o", "link", "show", "ftap0").stdout.split("link/ether")[1].split()[0]
        assert any(e["address"] == KERNEL6 and e["mac"] == kernel_mac for e in entries)
        assert counters.get("stack.internal_error", 0) == 0


RADVD_CONF = """interface ftap0 {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    AdvLinkMTU 1400;
    prefix 2001:db8:2::/64 { AdvOnLink on; AdvAutonomous on; };
    RDNSS 2001:db8:2::53 { };
};
"""


def test_radvd_gives_slaac_address_and_default_route(
        ns: Netns, require_program: Callable[[str], str], tmp_path: Path) -> None:
    require_program("radvd")
    require_program("ping")
    enable_ipv6(ns)
    ns.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    dev = kernel_tap(ns, "ftap0", None)
    conf = tmp_path / "radvd.conf"
    conf.write_text(RADVD_CONF)
    with stack6(dev, static=None) as (rt, stack):
        kernel_ll = kernel_link_local(ns, "ftap0")
        radvd = ns.popen("radvd", "-n", "-C", str(conf), "-p", str(tmp_path / "radvd.pid"),
                         "-m", "stderr", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def slaac() -> bytes | None:
                return next((a.addr for a in stack.interfaces[0].ipv6
                             if a.origin == "slaac" and a.usable), None)

            assert rt.wait_until(lambda: slaac() is not None, 30), "no SLAAC address"
            addr = rt.call(slaac)
            assert addr is not None and addr[:8] == ip_bytes("2001:db8:2::")[:8]
            assert stack.ipv6 is not None
            route = rt.call(stack.ipv6.routes.lookup, ip_bytes("2001:db8:99::1"))
            assert route is not None and route.gateway == ip_bytes(kernel_ll)
            assert rt.call(stack.ipv6.path_mtu, ip_bytes("2001:db8:99::1"),
                           stack.interfaces[0]) == 1400
            assert ip_bytes("2001:db8:2::53") in rt.call(lambda: dict(stack.ipv6.ndp.dns_servers))
            # The kernel reaches the SLAAC address (on-link by radvd's prefix).
            ns.ip("-6", "addr", "add", "2001:db8:2::1/64", "dev", "ftap0", "nodad")
            res = kernel_ping(ns, ip_str(addr))
            assert res.returncode == 0, res.stdout + res.stderr
            # The stack reaches a kernel address off its prefixes via the default route.
            ns.ip("-6", "addr", "add", "2001:db8:9::1/128", "dev", "lo")
            assert stack_ping(rt, stack, ip_bytes("2001:db8:9::1"))
        finally:
            radvd.terminate()
            radvd.wait(5)


def test_dad_conflict_with_a_kernel_address(ns: Netns, caplog: pytest.LogCaptureFixture) -> None:
    enable_ipv6(ns)
    taken = ip_bytes("2001:db8:1::5")
    dev = kernel_tap(ns, "ftap0", [f"{KERNEL6}/64", "2001:db8:1::5/64"])
    caplog.set_level(logging.ERROR, "femtotcp.ipv6")
    with stack6(dev, static=taken) as (rt, stack):
        assert stack.ipv6 is not None
        entry = rt.call(lambda: stack.interfaces[0].ipv6[0])
        assert rt.wait_until(lambda: entry.state == "duplicate", 10)
        assert taken not in rt.call(lambda: set(stack.local_addresses))
    assert any("2001:db8:1::5" in r.getMessage() and "in use" in r.getMessage()
               for r in caplog.records)


def test_mldv2_reports_decode_cleanly(ns: Netns, require_program: Callable[[str], str],
                                      tmp_path: Path) -> None:
    require_program("tshark")
    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", f"{KERNEL6}/64")
    pcap = tmp_path / "mld.pcap"
    with stack6(dev, pcap=pcap) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmpv6.type == 143", "-T",
                          "fields", "-e", "icmpv6.mldr.mar.multicast_address",
                          "-e", "_ws.expert.severity"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    groups = " ".join(out.stdout.split())
    assert ip_str(ipv6.solicited_node(STACK6)) in groups
    malformed = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed"],
                               capture_output=True, text=True, timeout=60)
    assert malformed.stdout.strip() == ""


def test_serve_ipv6_flags_and_ctl(ns: Netns, require_program: Callable[[str], str],
                                  tmp_path: Path) -> None:
    """``serve --ipv6 ADDR/PREFIX --ipv6 auto --gateway6``, seen through ``ctl``."""
    require_program("ping")
    import signal

    from test_serve_ctl import Served, start_serve

    enable_ipv6(ns)
    control = str(tmp_path / "ctl.sock")
    proc, line = start_serve(ns, control, "--ipv6", "2001:db8:1::2/64", "--ipv6", "auto",
                             "--gateway6", "fe80::1")
    try:
        assert "IPv6" in line
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", "ftap0", "nodad")
        served = Served(ns, proc, control, str(tmp_path), line)

        def addresses() -> list[dict[str, Any]]:
            return list(served.result("addr")["interfaces"][0]["ipv6"])

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(
                a["state"] == "preferred" for a in addresses()):
            time.sleep(0.2)
        addrs = {a["address"]: a for a in addresses()}
        assert addrs["2001:db8:1::2"]["state"] == "preferred"
        assert addrs["2001:db8:1::2"]["origin"] == "static"
        assert addrs["2001:db8:1::2"]["valid_lifetime"] is None
        assert any(a["origin"] == "link" and a["state"] == "preferred" for a in addrs.values())
        res = kernel_ping(ns, "2001:db8:1::2")
        assert res.returncode == 0, res.stdout + res.stderr
        ping = served.result("ping", KERNEL6, "-c", "2", "-i", "0.2")
        assert (ping["transmitted"], ping["received"]) == (2, 2)
        assert all(r["from"] == KERNEL6 for r in ping["replies"])
        neigh = served.result("neigh")["neighbours"]
        assert any(n["address"] == KERNEL6 and n["mac"] for n in neigh), neigh
        routes = served.result("route")["routes"]
        assert {"destination": "2001:db8:1::/64", "gateway": None, "interface": "ftap0",
                "origin": "connected"} in routes
        assert {"destination": "::/0", "gateway": "fe80::1", "interface": "ftap0",
                "origin": "static"} in routes
        stats = served.result("stats")
        assert stats["reassembly6"] == {"datagrams": 0, "bytes": 0}
        assert stats["counters"]["icmp6.echo_replied"] >= 3
        assert stats["counters"].get("stack.internal_error", 0) == 0
        table = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                                "addr"], capture_output=True, text=True, timeout=30)
        assert "inet6 2001:db8:1::2/64 static preferred" in table.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_tcp_and_udp_over_ipv6_with_the_kernel(ns: Netns) -> None:
    """TCP: the kernel sends 10 MB to the stack's echo on :: and reads them
    back byte-exact (its SYN also reaches the echo over IPv4, as ::ffff:...);
    UDP: a 3000-byte datagram (fragments both ways) through the stack's UDP
    echo; a closed UDP port refuses the kernel's connected socket."""
    import socket

    from netns import entered
    from stackrig import kernel_echo_roundtrip

    from femtotcp.services.echo import UdpEcho
    from femtotcp.services.tcp_echo import TcpEcho

    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", f"{KERNEL6}/64")
    ns.ip("addr", "add", "192.0.2.1/24", "dev", "ftap0")
    with stack6(dev) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
        any6 = bytes(16)
        rt.call(TcpEcho, stack, 7, any6)
        udp_echo = rt.call(UdpEcho, stack, 7, any6)
        sent, got, n = kernel_echo_roundtrip(ns, ip_str(STACK6), 10_000_000, 3)
        assert n == 10_000_000 and got == sent
        # The TAP offloads both ways: TCPV6 super-frames in (GRO) and out (TSO).
        assert dev.counters["rx_gso_frames"] > 0 and dev.counters["tx_gso_frames"] > 0
        sent4, got4, n4 = kernel_echo_roundtrip(ns, "192.0.2.2", 1_000_000, 4)
        assert n4 == 1_000_000 and got4 == sent4
        with entered(ns):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            refused = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        with sock, refused:
            sock.settimeout(5)
            payload = bytes(range(256)) * 12
            sock.sendto(payload, (ip_str(STACK6), 7))
            data, peer = sock.recvfrom(65536)
            assert data == payload and peer[0] == ip_str(STACK6)
            refused.settimeout(5)
            refused.connect((ip_str(STACK6), 9))
            refused.send(b"anyone?")
            with pytest.raises(ConnectionRefusedError):
                refused.recv(100)
        assert rt.call(lambda: udp_echo.echoed) == 1
        counters = rt.call(lambda: dict(stack.counters))
        assert counters.get("stack.internal_error", 0) == 0
        assert counters.get("tcp.bad_checksum", 0) == 0 and counters.get("udp.bad_checksum", 0) == 0


def test_stack_connects_to_a_kernel_listener_over_ipv6(ns: Netns) -> None:
    """A program's AF_INET6 socket on the stack sends 5 MB to a kernel
    listener on [::]; the kernel answers with the SHA-256 of what it got."""
    import hashlib
    import random
    import socket
    import threading

    from netns import entered

    from femtotcp.api.socket import network_for

    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", f"{KERNEL6}/64")
    with entered(ns):
        lst = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lst.bind(("::", 0))
    lst.listen()
    lst.settimeout(30)
    port = lst.getsockname()[1]
    got: list[str] = []

    def serve() -> None:
        conn, _ = lst.accept()
        with conn:
            h = hashlib.sha256()
            while data := conn.recv(65536):
                h.update(data)
            got.append(h.hexdigest())
            conn.sendall(got[0].encode())
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    payload = random.Random(6).randbytes(5_000_000)
    with lst, stack6(dev) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
        net = network_for(stack, rt)
        with net.create_connection((KERNEL6, port), timeout=30) as sock:
            assert sock.getpeername() == (KERNEL6, port, 0, 0)
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(100):
                answer += chunk
        th.join(30)
        assert got == [hashlib.sha256(payload).hexdigest()]
        assert answer.decode() == got[0]
        counters = rt.call(stack.counters.snapshot)
        assert counters.get("stack.internal_error", 0) == 0
        # The TAP offloads: the stack's sends went out as TCPV6 super-segments.
        assert counters.get("ipv6.tx_tso", 0) > 0 and counters.get("tcp.tso_sent", 0) > 0


def test_unanswered_neighbour_discovery_reaches_sockets_as_on_linux(ns: Netns) -> None:
    """Nobody holds 2001:db8:1::99 on the link: the stack's neighbour
    discovery gives up and the program's TCP connect fails with EHOSTUNREACH,
    as the kernel's own does for the same address; a connected UDP socket hears
    nothing of it on either (Linux's UDP takes address unreachable as soft).
    The UDP sockets send to another absent address (::98), so that the four
    resolutions run at once, not one after the other."""
    import errno
    import socket
    import threading

    from netns import entered

    from femtotcp.api.socket import network_for

    nobody = ("2001:db8:1::99", 9)
    nobody_udp = ("2001:db8:1::98", 9)
    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", f"{KERNEL6}/64")
    with stack6(dev) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
        net = network_for(stack, rt)
        with entered(ns):
            kernel_udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            kernel_tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        ours_udp = net.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        ours_tcp = net.socket(socket.AF_INET6, socket.SOCK_STREAM)
        with kernel_udp, kernel_tcp, ours_udp, ours_tcp:
            for s in (kernel_udp, ours_udp):
                s.connect(nobody_udp)
                assert s.send(b"anyone?") == 7
            results: dict[str, int | None] = {}

            def connect(name: str, s: socket.socket) -> None:
                s.settimeout(30)     # neighbour discovery gives up well before
                try:
                    s.connect(nobody)
                    results[name] = None
                except OSError as exc:
                    results[name] = exc.errno
            connects = [threading.Thread(target=connect, args=pair)
                        for pair in (("kernel", kernel_tcp), ("stack", ours_tcp))]
            for t in connects:
                t.start()
            for t in connects:
                t.join(60)
            assert results == {"kernel": errno.EHOSTUNREACH, "stack": errno.EHOSTUNREACH}
            # Both UDP sockets sent before the connects began: their resolutions,
            # started first, have failed too.
            for s in (kernel_udp, ours_udp):
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                assert s.send(b"still there?") == 12
        counters = rt.call(stack.counters.snapshot)
        assert counters["ndp.resolution_failed"] >= 2
        assert counters["ndp.pending_dropped"] >= 2
        assert counters.get("udp.icmp_error_soft", 0) >= 1
        assert counters.get("stack.internal_error", 0) == 0


RADVD_DNSSL_CONF = """interface ftap0 {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix 2001:db8:2::/64 { AdvOnLink on; AdvAutonomous on; };
    RDNSS 2001:db8:2::53 { };
    DNSSL lab.test { };
};
"""


def test_radvd_dnssl_is_the_resolvers_search_list(
        ns: Netns, require_program: Callable[[str], str], tmp_path: Path) -> None:
    """radvd's RDNSS and DNSSL options: a name without dots resolves under the
    advertised domain from dnsmasq (which holds printer.lab.test only), through
    the resolver and through the socket API's getaddrinfo."""
    import socket

    from femtotcp.api.resolve import resolve_blocking
    from femtotcp.api.socket import network_for
    from femtotcp.wire import dns as dns_wire

    require_program("radvd")
    require_program("dnsmasq")
    enable_ipv6(ns)
    ns.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    dev = kernel_tap(ns, "ftap0", None)
    ns.ip("-6", "addr", "add", "2001:db8:2::53/64", "dev", "ftap0", "nodad")
    conf = tmp_path / "radvd.conf"
    conf.write_text(RADVD_DNSSL_CONF)
    log = tmp_path / "dnsmasq.log"
    ns.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=",
             "--listen-address=2001:db8:2::53", "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--local=/test/",
             "--host-record=printer.lab.test,2001:db8:2::9,192.0.2.9",
             "--log-queries", "--log-facility=-", stdout=log.open("w"),
             stderr=subprocess.STDOUT)
    with stack6(dev, static=None) as (rt, stack):
        rt.call(stack.load_module, "dns")
        radvd = ns.popen("radvd", "-n", "-C", str(conf), "-p", str(tmp_path / "radvd.pid"),
                         "-m", "stderr", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            resolver = stack.resolver
            assert resolver is not None
            assert rt.wait_until(lambda: resolver.current_search() == ["lab.test"]
                                 and bool(resolver.current_servers()), 30), "no DNSSL"
            assert rt.wait_until(lambda: any(a.origin == "slaac" and a.usable
                                             for a in stack.interfaces[0].ipv6), 30)
            found = resolve_blocking(rt, stack, "printer", dns_wire.AAAA, timeout=15)
            assert found.ok, (found, log.read_text()[-2000:])
            assert found.addresses == [ip_bytes("2001:db8:2::9")]
            assert found.name == "printer.lab.test"
            assert found.server == ip_bytes("2001:db8:2::53")
            net = network_for(stack, rt)
            infos = net.getaddrinfo("printer", 80, socket.AF_INET6, socket.SOCK_STREAM)
            assert {i[4][0] for i in infos} == {"2001:db8:2::9"}
            assert "query[AAAA] printer.lab.test" in log.read_text()
        finally:
            radvd.terminate()
            radvd.wait(5)


_ECHO_BOTH = r"""
import socket, sys
host = sys.argv[1]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
c = socket.create_connection((host, 7), timeout=10)
c.sendall(b"over tcp")
tcp = c.recv(64)
u = socket.socket(family, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"over udp", (host, 7))
udp, src = u.recvfrom(64)
print(tcp.decode(), udp.decode(), src[0], sep="|")
"""


def _serve(ns: Netns, control: str, *flags: str) -> subprocess.Popen[str]:
    from test_serve_ctl import STACK_MAC as MAC
    from test_serve_ctl import TAP
    proc: subprocess.Popen[str] = ns.popen(
        sys.executable, "-m", "femtotcp", "serve", "--tap", TAP, "--mac", MAC, "--control",
        control, "--tcp-echo", "7", "--udp-echo", "7", *flags, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("femtotcp: serving on"):
        proc.kill()
        pytest.fail(f"serve did not start: {line!r} {proc.communicate(timeout=10)}")
    return proc


def test_ipv6_only_serve(ns: Netns, require_program: Callable[[str], str],
                         tmp_path: Path) -> None:
    """``serve --ipv6 ADDR/PREFIX`` with no IPv4 address: an IPv6-only host.
    Its echo services answer over IPv6; IPv4 to it finds nobody (ARP is not
    answered, and a frame sent straight to its MAC for any IPv4 address is not
    taken as its own, as it was while a DHCP client waits for a lease)."""
    require_program("ping")
    from netns import stop_process
    from test_serve_ctl import KERNEL, TAP
    from test_serve_ctl import STACK_MAC as MAC

    enable_ipv6(ns)
    proc = _serve(ns, str(tmp_path / "ctl.sock"), "--ipv6", "2001:db8:1::2/64")
    try:
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        res = kernel_ping(ns, "2001:db8:1::2")
        assert res.returncode == 0, res.stdout + res.stderr
        out = ns.run(sys.executable, "-c", _ECHO_BOTH, "2001:db8:1::2").stdout.strip()
        assert out == "over tcp|over udp|2001:db8:1::2"
        assert ns.run("ping", "-c", "1", "-W", "1", "192.0.2.2", check=False).returncode != 0
        ns.ip("neigh", "replace", "192.0.2.9", "lladdr", MAC, "dev", TAP, "nud", "permanent")
        probe = ns.run(sys.executable, "-c", "import socket\ntry:\n"
                       "    socket.create_connection(('192.0.2.9', 7), timeout=2)\n"
                       "except TimeoutError:\n    print('silent')\n"
                       "except OSError as e:\n    print(e.errno)\n", check=False)
        assert probe.stdout.strip() == "silent", probe.stdout + probe.stderr
    finally:
        stop_process(proc)


def test_serve_services_answer_both_families(ns: Netns, tmp_path: Path) -> None:
    """With IPv4 and IPv6, ``--tcp-echo``/``--udp-echo`` listen on ``::`` (dual
    stack), so they answer over both families, each from the address asked."""
    from netns import stop_process
    from test_serve_ctl import KERNEL, STACK, TAP

    enable_ipv6(ns)
    proc = _serve(ns, str(tmp_path / "ctl.sock"), "--ip", f"{STACK}/24", "--ipv6",
                  "2001:db8:1::2/64")
    try:
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        ready = ns.run("ping", "-6", "-c", "1", "-w", "10", "2001:db8:1::2", check=False)
        assert ready.returncode == 0, ready.stdout    # our DAD is over
        for host in (STACK, "2001:db8:1::2"):
            out = ns.run(sys.executable, "-c", _ECHO_BOTH, host).stdout.strip()
            assert out == f"over tcp|over udp|{host}"
    finally:
        stop_process(proc)


def test_mldv1_querier_on_a_linux_bridge(ns: Netns, require_program: Callable[[str], str],
                                         tmp_path: Path) -> None:
    """A Linux bridge as an MLDv1 querier (``mcast_mld_version 1``): serve's
    stack answers its queries with MLDv1 Reports (RFC 3810 8.2.1) and no
    MLDv2 report after them, and the bridge's snooping learns our group."""
    require_program("tshark")
    from netns import stop_process
    from test_serve_ctl import TAP

    enable_ipv6(ns)
    ns.ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier",
          "1", "mcast_mld_version", "1", "mcast_startup_query_interval", "100",
          "mcast_query_interval", "200", "mcast_query_response_interval", "100")
    ns.ip("link", "set", "br0", "up")
    proc = _serve(ns, str(tmp_path / "ctl.sock"), "--ipv6", "2001:db8:1::2/64")
    pcap = tmp_path / "mld1.pcap"
    try:
        ns.ip("link", "set", TAP, "master", "br0")
        ns.ip("link", "set", TAP, "up")
        ns.run("tshark", "-i", "br0", "-f", "ip6", "-a", "duration:8", "-w", str(pcap),
               timeout=60)
        groups = ns.run("bridge", "mdb", "show").stdout
    finally:
        stop_process(proc)
    rows = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmpv6.type >= 130 && "
                           "icmpv6.type <= 143", "-T", "fields", "-e", "frame.time_relative",
                           "-e", "ipv6.src", "-e", "icmpv6.type",
                           "-e", "icmpv6.mld.multicast_address"],
                          capture_output=True, text=True, timeout=60).stdout
    seen = [(float(t), src, kind, group) for t, src, kind, group in
            (line.split("\t") for line in rows.splitlines() if line.strip())]
    queries = [t for t, src, kind, _ in seen if kind == "130" and src.startswith("fe80:")]
    assert queries, rows
    solicited = "ff02::1:ff00:2"          # of 2001:db8:1::2
    reports = [(t, src) for t, src, kind, group in seen
               if kind == "131" and group == solicited and t > queries[0]]
    assert reports, rows
    ours = reports[0][1]
    assert not [t for t, src, kind, _ in seen if kind == "143" and src == ours
                and t > queries[0]], rows
    assert f"port {TAP} grp {solicited}" in groups, groups
    malformed = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed"],
                               capture_output=True, text=True, timeout=60)
    assert malformed.stdout.strip() == ""
