"""DHCP and DNS against dnsmasq, on the kernel side of a TAP in a test-made netns.

dnsmasq serves 192.0.2.100-150 with a two-minute lease (its minimum) but
tells clients T1 = 3 s and T2 = 5 s (options 58/59), so a renewal happens
within seconds; its lease file is read after each step. For DNS it
is authoritative for ``test`` (``--local=/test/``): ``--address``,
``--host-record`` and ``--cname`` names, NXDOMAIN for anything else in the
zone, and a name with 40 addresses that does not fit in 512 bytes, so the
UDP answer comes back with TC set. Its leases carry the domain name ``test``
(option 15) and the domain search list ``sub.test test`` (option 119).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Netns, kernel_tap

from femtotcp.api import resolve as api_resolve
from femtotcp.runtime import Runtime
from femtotcp.services import dhcp, dns
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import dns as wire
from femtotcp.wire import ip_bytes

KERNEL = "192.0.2.1"
STACK_MAC = "02:00:00:00:00:02"
MANY = 40


@dataclass
class Rig:
    ns: Netns
    rt: Runtime
    stack: Stack
    iface: Any
    leases: Path
    log: Path

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.rt.call(fn, *args)

    def lease_lines(self) -> list[list[str]]:
        """dnsmasq's lease file: expiry, MAC, IP, hostname, client id."""
        if not self.leases.exists():
            return []
        return [line.split() for line in self.leases.read_text().splitlines() if line.strip()]

    def wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; dnsmasq log:\n"
                             + self.log.read_text()[-3000:])

    def resolve(self, name: str, qtype: int = wire.A) -> dns.DnsResult:
        return api_resolve.resolve_blocking(self.rt, self.stack, name, qtype, timeout=15)


def start_dnsmasq(ns: Netns, tmp: Path) -> tuple[Path, Path]:
    hosts = tmp / "hosts"
    hosts.write_text("".join(f"198.51.100.{i} many.test\n" for i in range(1, MANY + 1)))
    leases = tmp / "dnsmasq.leases"
    log = tmp / "dnsmasq.log"
    ns.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=",
             "--interface=ftap0", "--bind-interfaces", "--no-resolv", "--no-hosts",
             f"--addn-hosts={hosts}", "--local=/test/", "--domain=test", "--local-ttl=30",
             "--address=/a.test/192.0.2.80",
             "--host-record=h.test,192.0.2.81,2001:db8::81",
             "--host-record=p.sub.test,192.0.2.82",
             "--cname=c.test,h.test", "--cname=cc.test,c.test",
             "--no-ping", "--dhcp-authoritative",
             "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m",
             f"--dhcp-leasefile={leases}",
             f"--dhcp-option=option:router,{KERNEL}",
             "--dhcp-option=option:T1,3", "--dhcp-option=option:T2,5",
             "--dhcp-option=option:domain-search,sub.test,test",
             "--log-dhcp", "--log-queries", "--log-facility=-",
             stdout=log.open("w"), stderr=subprocess.STDOUT)
    return leases, log


def wait_for_port(ns: Netns, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.run("ss", "-lnu", check=False).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise AssertionError(f"dnsmasq is not listening on UDP {port}")


def make_rig(ns: Netns, tmp: Path, ipv4: str | None, tcp: bool = False,
             dns_server: str | None = None) -> Iterator[Rig]:
    tap = kernel_tap(ns, "ftap0", f"{KERNEL}/24")
    leases, log = start_dnsmasq(ns, tmp)
    wait_for_port(ns, 53)
    wait_for_port(ns, 67)
    # Short RFC 5227 timings keep the DHCP client's ARP check to about a second.
    cfg = StackConfig(acd_probe_wait=0.2, acd_probe_min=0.2, acd_probe_max=0.3,
                      acd_announce_wait=0.5)
    mods = ["arp", "ipv4", "icmp4", "udp", "dns"] + (["tcp"] if tcp else [])
    stack = Stack("e2e", modules=mods, config=cfg)
    iface = stack.add_interface(tap, mac=STACK_MAC, ipv4=ipv4)
    rt = Runtime()
    rt.add_stack(stack)
    rt.start()
    try:
        rt.call(stack.start)
        if dns_server is not None:
            rt.call(stack.resolver.set_servers, [dns_server])
        yield Rig(ns, rt, stack, iface, leases, log)
        counters = rt.call(stack.counters.snapshot)
        assert counters.get("stack.internal_error", 0) == 0, counters
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


@pytest.fixture
def dhcp_rig(ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> Iterator[Rig]:
    require_program("dnsmasq")
    require_program("ss")
    require_program("ping")
    yield from make_rig(ns, tmp_path, None)


@pytest.fixture
def dns_rig(ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> Iterator[Rig]:
    require_program("dnsmasq")
    require_program("ss")
    yield from make_rig(ns, tmp_path, "192.0.2.2/24", tcp=True, dns_server=KERNEL)


def test_lease_renew_release_against_dnsmasq(dhcp_rig: Rig) -> None:
    rig = dhcp_rig
    client: dhcp.DhcpClient = rig.call(dhcp.install, rig.stack, rig.iface)
    rig.call(client.start)
    rig.wait(lambda: rig.call(lambda: client.state) == dhcp.BOUND, 15, "a lease")
    lease = rig.call(lambda: client.lease)
    addr = socket.inet_ntoa(lease.address)
    # The lease is applied to the interface: address, mask, router, DNS server.
    assert rig.call(lambda: [str(a) for a in rig.iface.ipv4]) == [f"{addr}/24"]
    assert lease.router == ip_bytes(KERNEL) and lease.dns == [ip_bytes(KERNEL)]
    assert rig.call(lambda: rig.stack.resolver.current_servers()) == [ip_bytes(KERNEL)]
    assert lease.lease_time == 120
    # dnsmasq's T1/T2 (the times are floats on the stack's clock: allow rounding)
    assert lease.t1 - lease.obtained <= 3 + 1e-6 and lease.t2 - lease.obtained <= 5 + 1e-6
    # dnsmasq's lease file names us.
    rig.wait(lambda: any(line[1] == STACK_MAC for line in rig.lease_lines()), 5, "lease file")
    first = next(line for line in rig.lease_lines() if line[1] == STACK_MAC)
    assert first[2] == addr
    # The kernel reaches the address the stack was given.
    rig.ns.run("ping", "-c", "1", "-W", "2", addr)
    # Renewal at T1: a unicast REQUEST, and dnsmasq moves the expiry on.
    rig.wait(lambda: rig.call(lambda: "rx ACK" in list(client.history)[5:]
                              and client.state == dhcp.BOUND), 20, "the renewal's ACK")
    assert list(rig.call(lambda: client.history))[4] == "tx REQUEST"
    rig.wait(lambda: any(line[1] == STACK_MAC and int(line[0]) > int(first[0])
                         for line in rig.lease_lines()), 5, "renewed lease in the lease file")
    assert rig.call(lambda: client.lease.address) == lease.address
    # dnsmasq's own log tells the same story (it may write it a moment later).
    rig.wait(lambda: "DHCPDISCOVER(ftap0)" in (log := rig.log.read_text())
             and f"DHCPOFFER(ftap0) {addr}" in log
             and log.count(f"DHCPACK(ftap0) {addr} 02:00:00:00:00:02") >= 2, 5, "dnsmasq's log")
    # Clean exit: closing the stack releases the lease; dnsmasq forgets it.
    rig.call(rig.stack.close)
    rig.wait(lambda: not any(line[1] == STACK_MAC for line in rig.lease_lines()), 5,
             "the release to empty the lease file")
    rig.wait(lambda: f"DHCPRELEASE(ftap0) {addr} 02:00:00:00:00:02" in rig.log.read_text(), 5,
             "the release in dnsmasq's log")
    assert rig.call(lambda: client.state) == dhcp.STOPPED


def test_names_dnsmasq_serves(dns_rig: Rig) -> None:
    rig = dns_rig
    r = rig.resolve("a.test")
    assert r.error is None and r.addresses == [ip_bytes("192.0.2.80")] and r.ttl == 30
    r = rig.resolve("h.test", wire.AAAA)
    assert r.addresses == [ip_bytes("2001:db8::81")]
    r = rig.resolve("cc.test")
    assert r.addresses == [ip_bytes("192.0.2.81")] and r.cname_chain == ["c.test", "h.test"]
    # Cached now (dnsmasq's --local-ttl=30): answered without a query.
    sent = rig.call(lambda: rig.stack.counters["dns.tx_query"])
    assert rig.resolve("CC.test").source == "cache"
    assert rig.call(lambda: rig.stack.counters["dns.tx_query"]) == sent
    counters = rig.call(rig.stack.counters.snapshot)
    assert not {k: v for k, v in counters.items() if k.startswith("dns.bad")}


def test_nxdomain_reaches_the_program_as_gaierror(dns_rig: Rig) -> None:
    rig = dns_rig
    r = rig.resolve("nothing.test")
    assert r.error == dns.NXDOMAIN
    with pytest.raises(socket.gaierror) as exc:
        err = api_resolve.gaierror_for(r)
        assert err is not None
        raise err
    assert exc.value.errno == socket.EAI_NONAME
    assert rig.resolve("h.test", wire.PTR).error in (dns.NODATA, dns.NXDOMAIN)
    # The same through the sockets API a program uses (api/socket.py's getaddrinfo).
    from femtotcp.api.socket import network_for
    net = network_for(rig.stack, rig.rt)
    with pytest.raises(socket.gaierror) as exc:
        net.getaddrinfo("nothing-either.test", 80)
    assert exc.value.errno == socket.EAI_NONAME
    assert net.gethostbyname("c.test") == "192.0.2.81"


def test_truncated_answer_is_retried_over_tcp(dns_rig: Rig) -> None:
    rig = dns_rig
    assert rig.call(lambda: rig.stack.tcp) is not None
    r = rig.resolve("many.test")
    assert r.error is None and r.source == "tcp"
    assert sorted(r.addresses) == sorted(ip_bytes(f"198.51.100.{i}") for i in range(1, MANY + 1))
    counters = rig.call(rig.stack.counters.snapshot)
    assert counters.get("dns.rx_truncated", 0) >= 1 and counters.get("dns.tcp_fallback") == 1
    assert counters.get("tcp.active_opens", 0) == 1


def test_lease_search_list_resolves_dotless_names(dhcp_rig: Rig) -> None:
    """dnsmasq's domain search option becomes the resolver's search list for
    the lease: a dotless name resolves under it (AI_CANONNAME: the full name
    found), an absolute one does not; the release takes the list away."""
    from femtotcp.api.socket import network_for
    rig = dhcp_rig
    client: dhcp.DhcpClient = rig.call(dhcp.install, rig.stack, rig.iface)
    rig.call(client.start)
    rig.wait(lambda: rig.call(lambda: client.state) == dhcp.BOUND, 15, "a lease")
    lease = rig.call(lambda: client.lease)
    assert lease.domain == "test" and lease.search == ["sub.test", "test"]
    assert rig.call(rig.stack.resolver.current_search) == ["sub.test", "test"]
    net = network_for(rig.stack, rig.rt)
    found = net.getaddrinfo("h", 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                            socket.AI_CANONNAME)
    assert found[0][3] == "h.test" and found[0][4] == ("192.0.2.81", 80)
    found = net.getaddrinfo("p", 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                            socket.AI_CANONNAME)
    assert found[0][3] == "p.sub.test" and found[0][4] == ("192.0.2.82", 80)
    assert net.gethostbyname_ex("c") == ("h.test", ["c.test"], ["192.0.2.81"])
    with pytest.raises(socket.gaierror):
        net.getaddrinfo("h.", 80, socket.AF_INET)
    rig.wait(lambda: "query[A] h.sub.test" in rig.log.read_text(), 5, "the search in the log")
    rig.call(client.release)        # (the address and list go after a grace second)
    rig.wait(lambda: rig.call(rig.stack.resolver.current_search) == [], 5,
             "the release to empty the search list")
