"""The DHCP and DNS part of ``femtotcp demo``: a new host, dave, joins the
memory LAN with no address, gets one from bob's DHCP server, and resolves
names through bob's DNS responder (both in services/, reusing wire/)."""

from __future__ import annotations

from typing import Any

from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import ip_str


def run(rt: Runtime, switch: Any, hosts: dict[str, Stack], report: Any, writer: Any) -> None:
    from femtotcp.api import resolve
    from femtotcp.services import dhcp
    from femtotcp.services.dhcp_server import DhcpServer
    from femtotcp.services.dns_server import DnsResponder
    from femtotcp.wire import dns as wire_dns

    bob = hosts["bob"]
    bob_ip = ip_str(bob.interfaces[0].primary_ipv4() or b"\0\0\0\0")

    def serve() -> tuple[DhcpServer, DnsResponder]:
        server = DhcpServer(bob, bob.interfaces[0], "192.0.2.100", "192.0.2.199",
                            dns=[bob_ip], lease_time=3600, domain="demo")
        zone = DnsResponder(bob, zone="demo")
        for name, st in hosts.items():
            addr = ip_str(st.interfaces[0].primary_ipv4() or b"\0\0\0\0")
            zone.add_address(f"{name}.demo", addr)
            zone.add_ptr(addr, f"{name}.demo")
        zone.add_cname("www.demo", "carol.demo")
        return server, zone

    server, zone = rt.call(serve)
    report.line(f"bob serves DHCP (192.0.2.100-199, lease 1 h) and DNS for 'demo' on {bob_ip}")

    # Short RFC 5227 timings: the ARP check of the offered address takes ~1 s.
    cfg = StackConfig(acd_probe_wait=0.2, acd_probe_min=0.2, acd_probe_max=0.3,
                      acd_announce_wait=0.5)
    dave = Stack("dave", modules=["arp", "ipv4", "icmp4", "udp", "tcp", "dns"], config=cfg)
    port = switch.port("dave")
    port.add_capture(lambda frame, out: writer.write(frame) if out else None)
    iface = dave.add_interface(port, mac="02:00:5e:00:00:28")
    rt.call(rt.add_stack, dave)
    hosts["dave"] = dave
    rt.call(dave.start)
    client = rt.call(dhcp.install, dave, iface)
    rt.call(client.start)
    if not rt.wait_until(lambda: client.state == dhcp.BOUND, 20):
        report.fail(f"dave got no lease (state {rt.call(lambda: client.state)})")
        return
    info = rt.call(client.describe)
    report.line(f"dave: {' -> '.join(rt.call(lambda: list(client.history)))}")
    dns_servers = info["dns"]
    assert isinstance(dns_servers, list)
    report.line(f"dave: {info['address']} from {info['server']}, dns {' '.join(dns_servers)}, "
                f"domain {info['domain']}, lease {info['lease_time']} s "
                f"(renew in {info['renew_in']} s)")

    def show(name: str, qtype: int) -> None:
        r = resolve.resolve_blocking(rt, dave, name, qtype, timeout=10)
        if r.error is not None:
            err = resolve.gaierror_for(r)
            report.line(f"resolve {name}: {r.error} -> socket.gaierror{err.args if err else ''}")
        elif r.names:
            report.line(f"resolve {name} PTR: {', '.join(r.names)}")
        else:
            chain = f" (via {' -> '.join(r.cname_chain)})" if r.cname_chain else ""
            report.line(f"resolve {name}: {', '.join(ip_str(a) for a in r.addresses)}{chain}, "
                        f"ttl {r.ttl} s, from {r.source}")

    show("www.demo", wire_dns.A)
    show("www.demo", wire_dns.A)
    show("192.0.2.10", wire_dns.PTR)
    show("nothing.demo", wire_dns.A)
    rt.call(client.release)
    if rt.wait_until(lambda: not server.leases, 5):
        report.line("dave released its lease on the way out; bob's lease table is empty")
    else:
        report.fail("bob still holds dave's lease after RELEASE")
    rt.call(server.close)
    rt.call(zone.close)
