"""The gateway's Router Advertisements on an in-memory LAN and a virtual clock:
a femtotcp host (host 0, SLAAC on) learns the prefix, its default router and
its DNS server from the gateway stack (host 1), whose neighbour advertisements
say it is a router; solicitations are answered, at most one RA per 3 s; bad
solicitations and bad ICMPv6 echoes to the world are dropped and counted."""

from __future__ import annotations

from typing import Any

from femtolan import Lan

from femtotcp.gateway.ra import MIN_DELAY_BETWEEN_RAS, RouterAdvertiser
from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.wire import ip_bytes
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire import ndp as wire_ndp
from femtotcp.wire.icmp6 import parse as icmp6_parse

PREFIX = ip_bytes("2001:db8:1::")
GW6 = ip_bytes("2001:db8:1::2")
DNS6 = ip_bytes("2001:db8:1::3")
MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]


def _lan(guest_starts: bool = True) -> tuple[Lan, Any, Any, RouterAdvertiser]:
    loop = SimLoop()
    lan = Lan(loop, Switch(loop))
    guest = lan.add_stack(0, modules=MODULES, start=False)
    cfg = StackConfig()
    cfg.ipv6_accept_ra = cfg.ipv6_autoconf = cfg.ipv6_dad = False
    cfg.ipv6_rtr_solicits = 0
    gw = lan.add_stack(1, modules=MODULES, config=cfg, start=False)
    gw.ipv6.add_address(lan.ifaces[1], GW6, 64)
    gw.ipv6.add_address(lan.ifaces[1], DNS6, 64)
    ra = RouterAdvertiser(gw, lan.ifaces[1], PREFIX, DNS6, rand=lambda lo, hi: hi)
    gw.start()
    ra.start()
    if guest_starts:
        guest.start()
    return lan, guest, gw, ra


def _ras(frames: list[bytes]) -> list[wire_ndp.RouterAdvertisement]:
    out = []
    for frame in frames:
        if int.from_bytes(frame[12:14], "big") != 0x86DD:
            continue
        hdr, data = wire_ipv6.parse(memoryview(frame)[14:])
        if hdr.next_header == 58 and data[0] == wire_ndp.ROUTER_ADVERTISEMENT:
            icmp, body = icmp6_parse(data, hdr.src, hdr.dst)
            msg = wire_ndp.parse(icmp, body, hdr.src, hdr.dst, hdr.hop_limit)
            assert isinstance(msg, wire_ndp.RouterAdvertisement)
            assert wire_ipv6.is_link_local(hdr.src) and hdr.dst == wire_ipv6.ALL_NODES
            out.append(msg)
    return out


def test_the_guest_gets_an_address_in_the_prefix_a_default_router_and_dns() -> None:
    lan, guest, gw, ra = _lan(guest_starts=False)
    sent = lan.capture(1)
    lan.loop.run(duration=0)
    guest.start()
    iface = lan.ifaces[0]
    assert lan.run_until(lambda: any(a.usable and a.addr[:8] == PREFIX[:8]
                                     for a in iface.ipv6), 30)
    ndp = guest.ipv6.ndp
    gw_ll = next(a.addr for a in lan.ifaces[1].ipv6 if wire_ipv6.is_link_local(a.addr))
    assert list(ndp.routers) == [(iface, gw_ll)]
    assert list(ndp.dns_servers) == [DNS6]
    ra_msgs = _ras(sent)
    assert ra_msgs, "no RA went out"
    opts = ra_msgs[-1].options
    assert ra_msgs[-1].router_lifetime == 1800
    assert [(p.prefix, p.prefix_len, p.on_link, p.autonomous) for p in opts.prefixes] == \
        [(PREFIX, 64, True, True)]
    assert opts.mtu == lan.ifaces[1].mtu and opts.source_lladdr == lan.ifaces[1].mac
    # The guest reaches the gateway's global address; the gateway's NA says "router",
    # so the guest keeps it as its default router (RFC 4861 7.2.5).
    replies: list[Any] = []
    guest.icmp6.ping(GW6, replies.append)
    assert lan.run_until(lambda: bool(replies), 10)
    assert ndp.caches[iface][GW6].router
    assert list(ndp.routers) == [(iface, gw_ll)]


def test_solicitations_are_answered_at_most_once_per_three_seconds() -> None:
    lan, guest, gw, ra = _lan()
    lan.run(1.0)
    sent = lan.capture(1)
    src = next(a.addr for a in lan.ifaces[0].ipv6 if wire_ipv6.is_link_local(a.addr))
    rs = wire_ipv6.build(src, wire_ipv6.ALL_ROUTERS, 58,
                         wire_ndp.build_rs(src, lan.ifaces[0].mac), 255)
    start = gw.counters["gwra.tx_ra"]
    for _ in range(3):
        guest.send_frame(lan.ifaces[0], wire_ipv6.multicast_mac(wire_ipv6.ALL_ROUTERS),
                         0x86DD, rs)
    lan.run(0.5)
    assert gw.counters["gwra.rx_rs"] == 3
    assert gw.counters["gwra.tx_ra"] - start <= 1
    lan.run(MIN_DELAY_BETWEEN_RAS)
    assert 1 <= gw.counters["gwra.tx_ra"] - start <= 2 and len(_ras(sent)) >= 1


def test_unsolicited_advertisements_keep_coming() -> None:
    lan, guest, gw, ra = _lan()
    lan.run(3 * 16.0 + 1)
    assert gw.counters["gwra.tx_ra"] >= 3
    ra.close()
    before = gw.counters["gwra.tx_ra"]
    lan.run(700.0)
    assert gw.counters["gwra.tx_ra"] == before


def test_a_forwarded_or_corrupt_solicitation_is_dropped_and_counted() -> None:
    lan, guest, gw, ra = _lan()
    lan.run(1.0)
    src = next(a.addr for a in lan.ifaces[0].ipv6 if wire_ipv6.is_link_local(a.addr))
    mac = wire_ipv6.multicast_mac(wire_ipv6.ALL_ROUTERS)
    rs = wire_ndp.build_rs(src, lan.ifaces[0].mac)
    start = gw.counters["gwra.tx_ra"]
    # Hop limit 64: it crossed a router, so it is not from our link (RFC 4861 6.1.1).
    guest.send_frame(lan.ifaces[0], mac, 0x86DD,
                     wire_ipv6.build(src, wire_ipv6.ALL_ROUTERS, 58, rs, 64))
    bad = bytearray(rs)
    bad[2] ^= 0xFF                                  # the checksum
    guest.send_frame(lan.ifaces[0], mac, 0x86DD,
                     wire_ipv6.build(src, wire_ipv6.ALL_ROUTERS, 58, bytes(bad), 255))
    lan.run(MIN_DELAY_BETWEEN_RAS + 1)
    assert gw.counters["ndp.bad_hop_limit"] == 1 and gw.counters["icmp6.bad_checksum"] == 1
    assert gw.counters["gwra.rx_rs"] == 0 and gw.counters["gwra.tx_ra"] == start


def test_an_ipv6_echo_to_the_world_with_a_bad_checksum_opens_no_flow() -> None:
    from femtotcp.gateway.nat import Nat
    from femtotcp.wire import icmp6 as wire_icmp6
    lan, guest, gw, ra = _lan()
    watched: list[int] = []
    nat = Nat(gw, lan.ifaces[1], lambda fd, r, w, h: watched.append(fd), ip_bytes("192.0.2.2"),
              gateway_addr6=GW6)
    lan.run(1.0)
    src = next(a.addr for a in lan.ifaces[0].ipv6 if wire_ipv6.is_link_local(a.addr))
    remote = ip_bytes("2001:db8:2::1")
    echo = bytearray(wire_icmp6.build_echo(src, remote, wire_icmp6.ECHO_REQUEST, 7, 1, b"x"))
    echo[2] ^= 0xFF
    gw_mac = lan.ifaces[1].mac
    guest.send_frame(lan.ifaces[0], gw_mac, 0x86DD,
                     wire_ipv6.build(src, remote, 58, bytes(echo), 64))
    lan.run(0.5)
    assert gw.counters["icmp6.bad_checksum"] == 1
    assert len(nat.table) == 0 and watched == []
    nat.close()
