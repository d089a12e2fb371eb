"""The stub resolver asking a responder over IPv6 (UDP, and TCP after a
truncated answer), on the virtual clock with addresses from 2001:db8::/64."""

from __future__ import annotations

from femtolan import make_lan

from femtotcp.services import dns
from femtotcp.services.dns_server import DnsResponder
from femtotcp.wire import dns as wire
from femtotcp.wire import ip_bytes

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns", "ipv6", "icmp6"]
CLIENT6 = ip_bytes("2001:db8::10")
SERVER6 = ip_bytes("2001:db8::53")


def setup() -> tuple[object, dns.Resolver, DnsResponder]:
    lan = make_lan(2, modules=MODULES)
    client, server = lan.stacks
    for stack, addr in ((client, CLIENT6), (server, SERVER6)):
        assert stack.ipv6 is not None
        stack.ipv6.add_address(stack.interfaces[0], addr, 64)
    lan.run(3.0)
    responder = DnsResponder(server, zone="demo", addr=bytes(16))
    responder.add_address("www.demo", "192.0.2.80")
    responder.add_address("www.demo", "2001:db8::80")
    resolver = client.resolver
    assert resolver is not None
    resolver.set_servers(["2001:db8::53"])
    return lan, resolver, responder


def resolve(lan: object, resolver: dns.Resolver, name: str, qtype: int) -> dns.DnsResult:
    out: list[dns.DnsResult] = []
    resolver.resolve(name, qtype, out.append)
    assert lan.run_until(lambda: bool(out), 30)  # type: ignore[attr-defined]
    return out[0]


def test_a_and_aaaa_from_an_ipv6_server() -> None:
    lan, resolver, responder = setup()
    a = resolve(lan, resolver, "www.demo", wire.A)
    aaaa = resolve(lan, resolver, "www.demo", wire.AAAA)
    assert a.ok and a.addresses == [ip_bytes("192.0.2.80")]
    assert aaaa.ok and aaaa.addresses == [ip_bytes("2001:db8::80")]
    assert a.server == SERVER6 and responder.queries == 2


def test_truncated_answer_retried_over_tcp_to_an_ipv6_server() -> None:
    lan, resolver, responder = setup()
    for i in range(40):
        responder.add_address("many.demo", f"2001:db8::1:{i:x}")
    result = resolve(lan, resolver, "many.demo", wire.AAAA)
    assert result.ok and len(result.addresses) == 40 and result.source == "tcp"
    assert result.server == SERVER6
    assert responder.stack.counters["dnsd.truncated"] == 1


def inject_ra(lan: object, options: bytes) -> None:
    """A Router Advertisement (no default router) with ``options``."""
    from femtotcp.wire import ethernet, ipv6, ndp
    router_mac = b"\x02\0\0\0\0\xfe"
    router_ll = ip_bytes("fe80::fe")
    opts = ndp.opt_source_lladdr(router_mac) + options
    ra = ndp.build_ra(router_ll, ipv6.ALL_NODES, router_lifetime=0, options=opts)
    sniffer = lan.sniffer("router")  # type: ignore[attr-defined]
    sniffer.inject(ethernet.build(ipv6.multicast_mac(ipv6.ALL_NODES), router_mac,
                                  ethernet.ETH_IPV6,
                                  ipv6.build(router_ll, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, ra,
                                             255)))
    lan.run(0.1)  # type: ignore[attr-defined]


def test_rdnss_servers_from_router_advertisements_are_used_without_configured_ones() -> None:
    from femtotcp.wire import ndp
    lan, resolver, responder = setup()
    resolver.set_servers([])
    assert resolve(lan, resolver, "www.demo", wire.A).error == dns.NOSERVERS
    inject_ra(lan, ndp.opt_rdnss(600, [SERVER6]))
    assert resolver.current_servers() == [SERVER6]
    result = resolve(lan, resolver, "www.demo", wire.AAAA)
    assert result.ok and result.server == SERVER6
    lan.run(601)  # type: ignore[attr-defined]
    assert resolver.current_servers() == []


def test_servers_are_configured_then_dhcp_then_ra_at_most_three() -> None:
    """A lease's servers come after ``--dns`` (a DHCP lease no longer replaces
    them), RDNSS servers after both, without repeats and, as glibc's MAXNS,
    at most three; a lease that ends takes its servers along."""
    from femtotcp.wire import ndp
    lan, resolver, responder = setup()
    configured, leased, leased2 = (ip_bytes("192.0.2.53"), ip_bytes("192.0.2.54"),
                                   ip_bytes("192.0.2.55"))
    resolver.set_servers(["192.0.2.53"])
    inject_ra(lan, ndp.opt_rdnss(600, [SERVER6]))
    assert resolver.describe_servers() == [(configured, "configured"), (SERVER6, "ra")]
    resolver.set_lease_servers("eth0", [leased, configured])
    assert resolver.describe_servers() == [(configured, "configured"), (leased, "dhcp:eth0"),
                                           (SERVER6, "ra")]
    resolver.set_lease_servers("eth0", [leased, leased2])
    assert resolver.current_servers() == [configured, leased, leased2]
    resolver.set_lease_servers("eth0", [])
    assert resolver.current_servers() == [configured, SERVER6]


def asked(responder: DnsResponder) -> list[str]:
    """The names the responder was asked, in order."""
    names: list[str] = []
    answer = responder.answer

    def record(data: bytes, src: tuple[bytes, int] = (bytes(4), 0),
               max_size: int = wire.MAX_UDP) -> bytes | None:
        names.append(wire.canonical(wire.parse(data).questions[0].name))
        return answer(data, src, max_size)

    responder.answer = record  # type: ignore[method-assign]
    return names


def test_dnssl_domains_become_the_search_list_for_their_lifetime() -> None:
    """RFC 8106 5.2: a name without dots is asked under each DNSSL domain
    first, then as it is (glibc's res_search with ndots:1), until the
    option's lifetime ends."""
    from femtotcp.wire import ndp
    lan, resolver, responder = setup()
    resolver.set_servers([])
    responder.add_address("printer.demo", "2001:db8::9")
    inject_ra(lan, ndp.opt_rdnss(600, [SERVER6]) + ndp.opt_dnssl(300, ["Lab.demo", "demo."]))
    assert resolver.current_search() == ["lab.demo", "demo"]
    names = asked(responder)
    found = resolve(lan, resolver, "printer", wire.AAAA)
    assert found.ok and found.addresses == [ip_bytes("2001:db8::9")]
    assert found.name == "printer.demo"            # the name it was found under
    assert names == ["printer.lab.demo", "printer.demo"]
    lan.run(301)  # type: ignore[attr-defined]
    assert resolver.current_search() == []
    names.clear()
    gone = resolve(lan, resolver, "printer", wire.AAAA)
    assert not gone.ok and names == ["printer"]


def test_search_order_and_errors_as_glibc() -> None:
    """With ``ndots:1`` a dotted name is asked as it is first, an absolute one
    only as it is; when nothing answers, the failure of a name asked as it is
    first is the answer; a refusal (not a name's absence) ends the search."""
    lan, resolver, responder = setup()
    responder.add_address("printer.demo", "192.0.2.9")      # A only
    responder.add_address("host.sub.demo", "2001:db8::7")
    resolver.search = ["demo", "lab.demo"]
    names = asked(responder)
    assert resolve(lan, resolver, "host.sub", wire.AAAA).name == "host.sub.demo"
    assert names == ["host.sub", "host.sub.demo"]           # as it is first: refused
    names.clear()
    absolute = resolve(lan, resolver, "printer.", wire.A)
    assert absolute.error == dns.REFUSED and names == ["printer"]
    names.clear()
    nodata = resolve(lan, resolver, "printer", wire.AAAA)
    # printer.demo has no AAAA, printer.lab.demo does not exist, "printer"
    # alone is refused: that ends it, glibc's TRY_AGAIN.
    assert names == ["printer.demo", "printer.lab.demo", "printer"]
    assert nodata.error == dns.REFUSED and nodata.name == "printer"
    names.clear()
    first = resolve(lan, resolver, "x.nowhere", wire.AAAA)
    assert names == ["x.nowhere", "x.nowhere.demo", "x.nowhere.lab.demo"]
    assert first.error == dns.REFUSED              # as it is, asked first
    names.clear()
    resolver.flush()
    responder.add_address("gone.demo", "192.0.2.8")
    only = resolve(lan, resolver, "gone.sub.demo", wire.AAAA)
    assert names == ["gone.sub.demo", "gone.sub.demo.demo", "gone.sub.demo.lab.demo"]
    assert only.error == dns.NXDOMAIN
    names.clear()
    mixed = resolve(lan, resolver, "gone.demo", wire.AAAA)
    assert mixed.error == dns.NODATA and names[0] == "gone.demo"
