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


def test_rdnss_servers_from_router_advertisements_are_used_without_configured_ones() -> None:
    from femtotcp.wire import ethernet, ipv6, ndp
    lan, resolver, responder = setup()
    resolver.set_servers([])
    assert resolve(lan, resolver, "www.demo", wire.A).error == dns.NOSERVERS
    router_mac = b"\x02\0\0\0\0\xfe"
    router_ll = ip_bytes("fe80::fe")
    opts = ndp.opt_source_lladdr(router_mac) + ndp.opt_rdnss(600, [SERVER6])
    ra = ndp.build_ra(router_ll, ipv6.ALL_NODES, router_lifetime=0, options=opts)
    sniffer = lan.sniffer("router")  # type: ignore[attr-defined]
    sniffer.inject(ethernet.build(ipv6.multicast_mac(ipv6.ALL_NODES), router_mac,
                                  ethernet.ETH_IPV6,
                                  ipv6.build(router_ll, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, ra,
                                             255)))
    lan.run(0.1)  # type: ignore[attr-defined]
    assert resolver.current_servers() == [SERVER6]
    result = resolve(lan, resolver, "www.demo", wire.AAAA)
    assert result.ok and result.server == SERVER6
    lan.run(601)  # type: ignore[attr-defined]
    assert resolver.current_servers() == []
