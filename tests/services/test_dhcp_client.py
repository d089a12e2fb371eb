"""The DHCP client against the demo server on an in-memory LAN (virtual time)."""

from __future__ import annotations

import pytest

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dhcp
from femtotcp.services.dhcp_server import DhcpServer, ServerLease
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, udp
from femtotcp.wire import dhcp as wire

MODULES = ["arp", "ipv4", "icmp4", "udp", "dns"]
SERVER = ip_bytes("192.0.2.1")
FIRST = ip_bytes("192.0.2.100")
CLIENT_MAC = bytes.fromhex("020000000010")


class Net:
    def __init__(self, lease_time: int = 120, probe: bool = True) -> None:
        self.loop = SimLoop()
        self.switch = Switch(self.loop)
        self.frames: list[tuple[float, bytes]] = []
        self.server_stack = self._stack("server", 0x01, "192.0.2.1/24")
        self.server = DhcpServer(self.server_stack, self.server_stack.interfaces[0],
                                 "192.0.2.100", "192.0.2.110", router="192.0.2.1",
                                 dns=["192.0.2.1", "192.0.2.2"], lease_time=lease_time,
                                 domain="demo", search=["demo", "lab.demo"])
        self.client_stack = self._stack("client", 0x10, None)
        self.iface = self.client_stack.interfaces[0]
        self.iface.device.add_capture(
            lambda f, out: self.frames.append((self.loop.now(), f)) if out else None)
        self.client = dhcp.install(self.client_stack, self.iface)
        self.client.probe = probe
        self.bound: list[dhcp.Lease] = []
        self.lost: list[dhcp.Lease] = []
        self.client.on_bound = self.bound.append
        self.client.on_lost = self.lost.append

    def _stack(self, name: str, n: int, ip: str | None) -> Stack:
        st = Stack(name, modules=MODULES)
        st.add_interface(self.switch.port(name), mac=f"02:00:00:00:00:{n:02x}", ipv4=ip)
        self.loop.add_stack(st)
        st.start()
        return st

    def bind(self, timeout: float = 60.0) -> dhcp.Lease:
        self.client.start()
        assert self.loop.run_until(lambda: self.client.state == dhcp.BOUND, timeout)
        assert self.client.lease is not None
        return self.client.lease

    def addresses(self) -> list[str]:
        return [str(a) for a in self.iface.ipv4]

    def dhcp_sent(self, mtype: int) -> list[tuple[float, wire.DhcpMessage, bytes]]:
        """(time, message, IP destination) of client messages of ``mtype`` seen on the wire."""
        out = []
        for t, frame in self.frames:
            try:
                eth, payload = ethernet.parse(frame)
                if eth.ethertype != ethernet.ETH_IPV4 or eth.src != CLIENT_MAC:
                    continue
                ip, data = ipv4.parse(payload)
                if ip.proto != udp.PROTO:
                    continue
                u, body = udp.parse(data)
                if u.dst_port != wire.SERVER_PORT:
                    continue
                msg = wire.parse(body)
            except Exception:  # noqa: BLE001 - other traffic
                continue
            if msg.message_type == mtype:
                out.append((t, msg, ip.dst))
        return out


def test_discover_offer_request_ack_applies_the_lease() -> None:
    net = Net()
    lease = net.bind()
    assert lease.address == FIRST and lease.prefixlen == 24 and lease.server == SERVER
    assert lease.router == SERVER and lease.dns == [SERVER, ip_bytes("192.0.2.2")]
    assert lease.domain == "demo" and lease.search == ["demo", "lab.demo"]
    assert lease.expiry is not None and lease.t1 is not None and lease.t2 is not None
    assert lease.t1 - lease.obtained == 60 and lease.t2 - lease.obtained == 105
    assert lease.expiry - lease.obtained == 120
    assert net.addresses() == ["192.0.2.100/24"]
    assert net.iface.ipv4[0].origin == "dhcp"
    route = net.client_stack.routes.lookup(ip_bytes("203.0.113.1"))
    assert route is not None and route.gateway == SERVER
    assert net.client_stack.resolver.current_servers() == [SERVER, ip_bytes("192.0.2.2")]
    assert list(net.client.history) == ["tx DISCOVER", "rx OFFER", "tx REQUEST", "rx ACK"]
    assert net.bound == [lease]
    assert net.server.leases[CLIENT_MAC].state == "bound"
    # The messages on the wire: broadcast, broadcast flag, our MAC, one xid.
    discover = net.dhcp_sent(wire.DISCOVER)[0]
    request = net.dhcp_sent(wire.REQUEST)[0]
    assert discover[2] == request[2] == b"\xff\xff\xff\xff"
    assert discover[1].flags & wire.FLAG_BROADCAST and discover[1].chaddr == CLIENT_MAC
    assert discover[1].xid == request[1].xid
    assert request[1].addr(wire.OPT_SERVER_ID) == SERVER
    assert request[1].addr(wire.OPT_REQUESTED_IP) == FIRST
    info = net.client.describe()
    assert info["state"] == "BOUND" and info["address"] == "192.0.2.100/24"
    # Before binding: ARP probes from 0.0.0.0; after: a gratuitous ARP announcement.
    arps = [arp.parse(f[14:]) for _, f in net.frames if f[12:14] == b"\x08\x06"]
    assert any(p.spa == b"\0\0\0\0" and p.tpa == FIRST for p in arps)
    assert arps[-1].spa == arps[-1].tpa == FIRST


def test_renews_at_t1_by_unicast() -> None:
    net = Net()
    lease = net.bind()
    assert lease.t1 is not None
    net.loop.run(until=lease.t1 + 1)
    renewals = net.dhcp_sent(wire.REQUEST)[1:]
    assert len(renewals) == 1
    _, msg, dst = renewals[0]
    assert dst == SERVER and msg.ciaddr == FIRST
    assert wire.OPT_SERVER_ID not in msg.options and wire.OPT_REQUESTED_IP not in msg.options
    assert net.client.state == dhcp.BOUND
    renewed = net.client.lease
    assert renewed is not None and renewed.expiry is not None and lease.expiry is not None
    assert renewed.expiry > lease.expiry
    assert net.addresses() == ["192.0.2.100/24"]
    # Many lease times later, still bound, still the same address.
    net.loop.run(duration=1000)
    assert net.client.state == dhcp.BOUND and net.addresses() == ["192.0.2.100/24"]


def test_rebinds_at_t2_by_broadcast_when_the_server_is_silent() -> None:
    net = Net()
    lease = net.bind()
    leases = net.server.leases
    net.server.close()
    assert lease.t2 is not None
    net.loop.run(until=lease.t2 + 0.5)
    assert net.client.state == dhcp.REBINDING
    unicast = [m for _, m, dst in net.dhcp_sent(wire.REQUEST)[1:] if dst == SERVER]
    assert unicast, "renewal was tried first"
    # A server comes back (same lease database): the broadcast REQUEST is answered.
    server2 = DhcpServer(net.server_stack, net.server_stack.interfaces[0], "192.0.2.100",
                         "192.0.2.110", router="192.0.2.1", lease_time=120)
    server2.leases = leases
    assert net.loop.run_until(lambda: net.client.state == dhcp.BOUND, 30)
    rebind = net.dhcp_sent(wire.REQUEST)[-1]
    assert rebind[2] == b"\xff\xff\xff\xff" and rebind[1].ciaddr == FIRST
    assert net.addresses() == ["192.0.2.100/24"]


def test_expiry_removes_address_route_and_dns_and_starts_over() -> None:
    net = Net()
    lease = net.bind()
    net.server.close()
    assert lease.expiry is not None
    net.loop.run(until=lease.expiry + 0.1)
    assert net.lost == [lease]
    assert net.addresses() == []
    assert net.client_stack.routes.lookup(ip_bytes("203.0.113.1")) is None
    assert net.client_stack.resolver.current_servers() == []
    assert net.client.lease is None
    assert net.client.state == dhcp.SELECTING
    assert net.client_stack.counters["dhcp.expired"] == 1


def test_nak_on_renewal_unbinds() -> None:
    net = Net()
    lease = net.bind()
    # The server's database now says we hold another address.
    net.server.leases[CLIENT_MAC] = ServerLease(CLIENT_MAC, ip_bytes("192.0.2.105"), 1e9, "bound")
    assert lease.t1 is not None
    net.loop.run(until=lease.t1 + 0.5)
    assert net.client_stack.counters["dhcp.nak"] == 1
    assert net.lost == [lease]
    assert net.loop.run_until(lambda: net.client.state == dhcp.BOUND, 60)
    assert net.addresses() == ["192.0.2.105/24"]


def test_declines_an_address_another_host_answers_arp_for() -> None:
    net = Net()
    squatter = net._stack("squatter", 0x66, "192.0.2.100/24")
    assert squatter.is_local(FIRST)
    net.bind(timeout=120)
    declines = net.dhcp_sent(wire.DECLINE)
    assert len(declines) == 1
    _, msg, dst = declines[0]
    assert msg.addr(wire.OPT_REQUESTED_IP) == FIRST and msg.addr(wire.OPT_SERVER_ID) == SERVER
    assert net.client_stack.counters["dhcp.declined"] == 1
    assert FIRST in net.server.declined
    # RFC 2131 3.1.5: at least ten seconds before starting over.
    discovers = net.dhcp_sent(wire.DISCOVER)
    assert discovers[-1][0] - declines[0][0] >= 10
    assert net.addresses() == ["192.0.2.101/24"]


def test_release_on_clean_exit() -> None:
    net = Net()
    net.bind()
    net.client_stack.close()                       # runs the release hook
    net.loop.run(duration=5)
    releases = net.dhcp_sent(wire.RELEASE)
    assert len(releases) == 1
    _, msg, dst = releases[0]
    assert dst == SERVER and msg.ciaddr == FIRST and msg.addr(wire.OPT_SERVER_ID) == SERVER
    assert CLIENT_MAC not in net.server.leases
    assert net.addresses() == [] and net.client.state == dhcp.STOPPED
    assert net.client.lease is None


def test_init_reboot_keeps_a_known_address() -> None:
    net = Net()
    net.bind()
    net.client.stop()
    net.client_stack.remove_address(net.iface, FIRST)
    net.client.lease = None
    net.frames.clear()
    net.client.start(requested=FIRST)
    assert net.loop.run_until(lambda: net.client.state == dhcp.BOUND, 30)
    assert net.dhcp_sent(wire.DISCOVER) == []
    req = net.dhcp_sent(wire.REQUEST)[0][1]
    assert req.addr(wire.OPT_REQUESTED_IP) == FIRST and wire.OPT_SERVER_ID not in req.options
    assert net.addresses() == ["192.0.2.100/24"]


def test_init_reboot_unknown_to_the_server_falls_back_to_discover() -> None:
    net = Net()
    net.client.start(requested=ip_bytes("192.0.2.105"))
    assert net.loop.run_until(lambda: net.client.state == dhcp.BOUND, 200)
    assert len(net.dhcp_sent(wire.REQUEST)) >= dhcp.DhcpClient.request_retries
    assert net.dhcp_sent(wire.DISCOVER)


def test_discover_backs_off_exponentially_with_jitter() -> None:
    net = Net()
    net.server.close()
    net.client.start()
    net.loop.run(duration=250)
    times = [t for t, _, _ in net.dhcp_sent(wire.DISCOVER)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 5
    for gap, want in zip(gaps, [4, 8, 16, 32, 64, 64], strict=False):
        assert want - 1 <= gap <= want + 1
    assert len({d[1].xid for d in net.dhcp_sent(wire.DISCOVER)}) == 1


@pytest.mark.parametrize("lease_time", [0, 3, 0xFFFFFFFF])
def test_odd_lease_times(lease_time: int) -> None:
    net = Net(lease_time=lease_time)
    lease = net.bind()
    if lease_time == 0xFFFFFFFF:
        assert lease.expiry is None and lease.t1 is None
        net.loop.run(duration=100000)
        assert net.client.state == dhcp.BOUND
    else:
        assert lease.lease_time == dhcp.DhcpClient.min_lease
        net.loop.run(duration=100)
        # renewals happen, but not in a storm
        assert len(net.dhcp_sent(wire.REQUEST)) <= 1 + 100 // 5 + 1


def test_lease_search_list_feeds_the_resolver_for_the_lease_lifetime() -> None:
    """The domain search option (119) becomes the resolver's search list while
    the lease lasts, after configured domains, and a dotless name resolves
    under it; expiry takes it away."""
    from femtotcp.services import dns
    from femtotcp.services.dns_server import DnsResponder
    from femtotcp.wire import dns as dns_wire

    net = Net()
    responder = DnsResponder(net.server_stack, zone="demo")
    responder.add_address("printer.lab.demo", "192.0.2.42")
    resolver = net.client_stack.resolver
    lease = net.bind()
    assert resolver.current_search() == ["demo", "lab.demo"]
    results: list[object] = []
    resolver.resolve("printer", dns_wire.A, results.append)
    assert net.loop.run_until(lambda: bool(results), 30)
    found = results[0]
    assert isinstance(found, dns.DnsResult) and found.name == "printer.lab.demo"
    assert found.addresses == [ip_bytes("192.0.2.42")]
    # Absolute: no search list.
    results.clear()
    resolver.resolve("printer.", dns_wire.A, results.append)
    assert net.loop.run_until(lambda: bool(results), 30)
    assert isinstance(results[0], dns.DnsResult) and not results[0].addresses
    resolver.search = ["configured.example"]
    assert resolver.current_search() == ["configured.example", "demo", "lab.demo"]
    net.server.close()
    assert lease.expiry is not None
    net.loop.run(until=lease.expiry + 0.1)
    assert resolver.current_search() == ["configured.example"]
    assert resolver.lease_search == {}


def test_lease_domain_name_is_the_search_list_without_option_119() -> None:
    """No domain search option: the domain name (15) is the search list, as
    dhclient's resolv.conf; a release takes it away."""
    net = Net()
    net.server.search = []
    resolver = net.client_stack.resolver
    lease = net.bind()
    assert lease.search == [] and lease.domain == "demo"
    assert resolver.current_search() == ["demo"]
    net.client_stack.close()                       # runs the release hook
    net.loop.run(duration=5)
    assert net.dhcp_sent(wire.RELEASE) and resolver.current_search() == []


def test_renewal_with_a_new_search_list_replaces_the_old_one() -> None:
    net = Net()
    lease = net.bind()
    resolver = net.client_stack.resolver
    assert resolver.current_search() == ["demo", "lab.demo"]
    net.server.search = ["other.demo"]
    assert lease.t1 is not None
    net.loop.run(until=lease.t1 + 1)
    assert net.client.state == dhcp.BOUND and net.client.lease is not lease
    assert resolver.current_search() == ["other.demo"]
