"""Port forwards from IPv6 host addresses, on an in-memory LAN and a virtual
clock: the gateway learns the guest's IPv6 address (the prefix with its
link-local interface identifier from its Router Solicitation, then the last
global source it sends from), connects to it showing the IPv6 client as
itself (the gateway's ::2 with masquerade or for ::1), and an IPv6 forward
reaches the IPv4 lease from .2 when the gateway knows no IPv6 guest."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from femtolan import Lan

from femtotcp.gateway.gateway import Forward
from femtotcp.gateway.nat import Nat
from femtotcp.gateway.ra import RouterAdvertiser
from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.wire import icmp6 as wire_icmp6
from femtotcp.wire import ip_bytes
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire import ndp as wire_ndp
from femtotcp.wire import udp as wire_udp

PREFIX = ip_bytes("2001:db8:1::")
GW4 = ip_bytes("192.0.2.2")
LEASE = ip_bytes("192.0.2.15")
GW6 = ip_bytes("2001:db8:1::2")
DNS6 = ip_bytes("2001:db8:1::3")
CLIENT6 = "2001:db8:9::7"
MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]


def _lan(slaac: bool = True) -> tuple[Lan, Any, Any, Nat]:
    loop = SimLoop()
    lan = Lan(loop, Switch(loop))
    gcfg = StackConfig()
    gcfg.ipv6_autoconf = slaac
    guest = lan.add_stack(0, modules=MODULES, config=gcfg, start=False)
    cfg = StackConfig()
    cfg.ipv6_accept_ra = cfg.ipv6_autoconf = cfg.ipv6_dad = False
    cfg.ipv6_rtr_solicits = 0
    gw = lan.add_stack(1, modules=MODULES, config=cfg, start=False)
    gw.add_address(lan.ifaces[1], "192.0.2.2/24")
    gw.ipv6.add_address(lan.ifaces[1], GW6, 64)
    gw.ipv6.add_address(lan.ifaces[1], DNS6, 64)
    nat = Nat(gw, lan.ifaces[1], lambda fd, r, w, h: None, GW4, gateway_addr6=GW6)
    ra = RouterAdvertiser(gw, lan.ifaces[1], PREFIX, DNS6, rand=lambda lo, hi: hi)
    ra.on_solicit = nat.saw6
    gw.start()
    ra.start()
    return lan, guest, gw, nat


def _link_local(iface: Any) -> bytes:
    return next(a.addr for a in iface.ipv6 if wire_ipv6.is_link_local(a.addr))


def _solicit(lan: Lan, guest: Any) -> bytes:
    """The guest's Router Solicitation from its link-local address (as a
    Linux guest sends when its link comes up); returns that address."""
    lan.run(1.0)
    src = _link_local(lan.ifaces[0])
    rs = wire_ipv6.build(src, wire_ipv6.ALL_ROUTERS, 58,
                         wire_ndp.build_rs(src, lan.ifaces[0].mac), 255)
    guest.send_frame(lan.ifaces[0], wire_ipv6.multicast_mac(wire_ipv6.ALL_ROUTERS),
                     0x86DD, rs)
    lan.run(0.5)
    return src


def test_forward_specs_take_bracketed_ipv6_host_addresses() -> None:
    assert Forward.parse("[::]:8080:80") == Forward("::", 8080, 80)
    fw = Forward.parse("[2001:DB8::0001]:8080:80", "-u")
    assert fw == Forward("2001:db8::1", 8080, 80) and fw.v6
    assert fw.host() == "[2001:db8::1]:8080"
    assert Forward.parse("8080:80").host() == "0.0.0.0:8080"
    for bad in ("2001:db8::1:8080:80", "[192.0.2.1]:8080:80", "[::]8080:80", "[::]:8080",
                "[fe80::1%eth0]:8080:80", "[::]:8080:0", "[nope]:1:2"):
        with pytest.raises(ValueError, match="-t"):
            Forward.parse(bad)


def test_a_slaac_guest_is_reached_at_the_address_it_sends_from() -> None:
    lan, guest, gw, nat = _lan()
    guest.start()
    _solicit(lan, guest)
    assert lan.run_until(lambda: nat.seen6 is not None, 30)
    mine = [a.addr for a in lan.ifaces[0].ipv6 if a.addr[:8] == PREFIX[:8]]
    assert nat.guest6() in mine
    nat.close()


def test_the_guest_address_comes_from_its_solicitation_then_its_traffic() -> None:
    lan, guest, gw, nat = _lan(slaac=False)
    assert nat.guest6() is None
    guest.start()
    gw_iface = lan.ifaces[1]
    ll = _solicit(lan, guest)
    assert gw.counters["gwra.rx_rs"] == 1
    assert nat.seen6_ll == ll and nat.guest6() == PREFIX[:8] + ll[8:]
    # A datagram to the world from another address of the guest: that one now.
    other = ip_bytes("2001:db8:1::99")
    remote = ip_bytes("2001:db8:2::1")
    msg = wire_udp.build(other, remote, 5000, 7, b"x")
    guest.send_frame(lan.ifaces[0], gw_iface.mac, 0x86DD,
                     wire_ipv6.build(other, remote, wire_udp.PROTO, msg, 64))
    lan.run(0.5)
    assert nat.guest6() == other
    # An ICMPv6 message with a bad checksum from a new source teaches nothing.
    liar = ip_bytes("2001:db8:1::66")
    bad = bytearray(wire_icmp6.build_echo(liar, GW6, wire_icmp6.ECHO_REQUEST, 1, 1, b"x"))
    bad[2] ^= 0xFF
    guest.send_frame(lan.ifaces[0], gw_iface.mac, 0x86DD,
                     wire_ipv6.build(liar, GW6, 58, bytes(bad), 64))
    lan.run(0.5)
    assert gw.counters["icmp6.bad_checksum"] == 1 and nat.guest6() == other
    nat.close()


@pytest.mark.parametrize("client, masquerade, shown", [
    (CLIENT6, False, CLIENT6), (CLIENT6, True, "2001:db8:1::2"), ("::1", False, "2001:db8:1::2"),
])
def test_a_forwarded_ipv6_client_reaches_the_guests_ipv6_address(
        client: str, masquerade: bool, shown: str) -> None:
    lan, guest, gw, nat = _lan(slaac=False)
    guest.start()
    _solicit(lan, guest)
    target = nat.guest6()
    assert target is not None
    guest.ipv6.add_address(lan.ifaces[0], target, 64)
    lst = guest.tcp.listen(wire_ipv6.UNSPECIFIED, 80)
    a, b = socket.socketpair()
    try:
        nat.forward_tcp(a, (client, 40404), (target, 80), masquerade)
        assert lan.run_until(lambda: lst.readable, 10)
        conn = lst.accept()
        assert conn is not None and conn.local == (target, 80)
        assert conn.remote[0] == ip_bytes(shown)
        if not masquerade and client != "::1":
            assert conn.remote[1] == 40404
        assert gw.counters["nat.tcp_forwarded"] == 1
    finally:
        nat.close()
        b.close()


def test_an_ipv6_client_of_the_ipv4_lease_is_shown_as_the_gateway() -> None:
    lan, guest, gw, nat = _lan()
    guest.add_address(lan.ifaces[0], "192.0.2.15/24")
    guest.start()
    lst = guest.tcp.listen(bytes(4), 80)
    a, b = socket.socketpair()
    try:
        nat.forward_tcp(a, (CLIENT6, 40404), (LEASE, 80), False)
        assert lan.run_until(lambda: lst.readable, 10)
        conn = lst.accept()
        assert conn is not None and conn.remote[0] == GW4
    finally:
        nat.close()
        b.close()


def _free_port(family: socket.AddressFamily, kind: int) -> int:
    with socket.socket(family, kind) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("net6", ["2001:db8:1::/64", None])
def test_the_gateway_lists_ipv6_forwards_with_where_they_go_now(
        tmp_path: Path, net6: str | None) -> None:
    from femtotcp.gateway.gateway import Gateway, GatewayOptions
    tp = _free_port(socket.AF_INET6, socket.SOCK_STREAM)
    up = _free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    gw = Gateway(GatewayOptions(qemu_dgram=f"unix:{tmp_path}/g.sock", net="192.0.2.0/24",
                                net6=net6, dns_upstream=["198.51.100.1"],
                                tcp_forwards=[f"[::1]:{tp}:80"],
                                udp_forwards=[f"[::1]:{up}:53"]))
    try:
        # Nothing heard from the guest yet: the first lease.
        assert gw.forward_rows() == [
            {"proto": "tcp", "host": f"[::1]:{tp}", "guest": "192.0.2.15:80"},
            {"proto": "udp", "host": f"[::1]:{up}", "guest": "192.0.2.15:53"}]
        gw.nat.saw6(ip_bytes("2001:db8:1::5"))
        want = "[2001:db8:1::5]" if net6 else "192.0.2.15"
        assert [r["guest"] for r in gw.forward_rows()] == [f"{want}:80", f"{want}:53"]
        assert f"forward tcp [::1]:{tp} -> {want}:80" in gw.describe()
        with pytest.raises(ValueError, match="forwarded already"):
            gw.add_forward("tcp", f"[0:0::1]:{tp}:81")
        gw.remove_forward("udp", f"[::1]:{up}:53")
        with pytest.raises(KeyError, match=rf"\[::1\]:{up}"):
            gw.remove_forward("udp", f"[::1]:{up}:53")
    finally:
        gw.close()
