"""Each protocol module left out in turn, on the virtual clock: the stack answers
as the RFCs say for a protocol it does not have (issue 15).

Every row runs the same probes against a stack of all modules but one (and what
needs it), and checks the missing module's answer; the full stack is the control:
there the same probe gets the protocol's own answer.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from femtolan import (
    SNIFF_IP,
    SNIFF_MAC,
    addr,
    arp_frame,
    echo_frame,
    ip_frame,
    mac,
    make_lan,
    udp_frame,
)

from femtotcp.api.socket import Network
from femtotcp.phy.base import Device
from femtotcp.runtime import Runtime, SimLoop
from femtotcp.size import without
from femtotcp.stack import modules as modreg
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, icmp4, ipv4, tcp, udp
from femtotcp.wire import dns as wire_dns

ALL = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]


def lan_without(module: str | None) -> tuple[Any, Stack, Any]:
    mods = ALL if module is None else without(ALL, module)
    lan = make_lan(0)
    stack = lan.add_stack(0, modules=mods)
    lan.run(0)
    sniff = lan.sniffer()
    sniff.clear()
    return lan, stack, sniff


def syn(dport: int = 80) -> bytes:
    seg = tcp.build(SNIFF_IP, addr(0), 40000, dport, 1000, 0, tcp.SYN, 65535, b"")
    return ip_frame(SNIFF_IP, addr(0), tcp.PROTO, seg, dst_mac=mac(0))


@pytest.mark.parametrize("module", [None, *ALL])
def test_tcp_syn(module: str | None) -> None:
    """Without tcp (or ipv4 under it): RFC 1122 3.2.2.1, ICMP protocol unreachable
    quoting the SYN; with tcp: a closed port's RST (RFC 9293 3.10.7.1)."""
    lan, stack, sniff = lan_without(module)
    sniff.inject(syn())
    lan.run(1)
    unreach = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PROTO_UNREACHABLE)
    tcp_out = sniff.ip_frames(lambda f: f.ip.proto == tcp.PROTO)
    if module == "tcp":
        assert stack.tcp is None
        assert len(unreach) == 1 and unreach[0][2][9] == tcp.PROTO   # quotes the SYN
        assert tcp_out == []
        assert stack.counters["ipv4.unknown_protocol"] == 1
    elif module == "ipv4":
        assert sniff.frames == [] and stack.counters["eth.unknown_ethertype"] == 1
    elif module == "icmp4":
        assert len(tcp_out) == 1                  # RST from tcp; no ICMP needed
    elif module == "arp":
        # The RST cannot find the sniffer's MAC: counted, nothing on the wire.
        assert tcp_out == [] and stack.counters["ipv4.no_arp_module"] >= 1
    else:
        assert unreach == [] and len(tcp_out) == 1
        assert tcp_out[0].payload[13] & tcp.RST


@pytest.mark.parametrize("module", [None, *ALL])
def test_udp_to_a_closed_port(module: str | None) -> None:
    """Without udp: no port unreachable (there are no ports); the datagram is
    counted, and answered as an unknown protocol (RFC 1122 3.2.2.1).
    With udp: port unreachable (RFC 1122 4.1.3.1)."""
    lan, stack, sniff = lan_without(module)
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 5000, 9999, b"anyone?", dst_mac=mac(0)))
    lan.run(1)
    port_unreach = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE)
    proto_unreach = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PROTO_UNREACHABLE)
    if module == "udp":
        assert stack.udp is None and port_unreach == []
        assert stack.counters["ipv4.unknown_protocol"] == 1
        assert len(proto_unreach) == 1 and proto_unreach[0][2][9] == udp.PROTO
    elif module in ("icmp4", "ipv4", "arp"):
        assert port_unreach == [] and proto_unreach == []    # no ICMP, or no way out
        if module == "icmp4":
            assert stack.counters["udp.no_port"] == 1      # counted, not answered
    else:
        assert len(port_unreach) == 1 and proto_unreach == []


@pytest.mark.parametrize("module", [None, *ALL])
def test_echo_request(module: str | None) -> None:
    """Without icmp4: no echo reply, the request counted (RFC 1122 3.2.2.6 is the
    ICMP module's duty); with it: the reply."""
    lan, stack, sniff = lan_without(module)
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0)))
    lan.run(1)
    replies = sniff.icmps(icmp4.ECHO_REPLY)
    if module == "icmp4":
        assert stack.icmp is None and replies == [] and sniff.frames == []
        assert stack.counters["ipv4.unknown_protocol"] == 1
    elif module in ("ipv4", "arp"):
        assert replies == []
    else:
        assert len(replies) == 1


@pytest.mark.parametrize("module", [None, *ALL])
def test_arp_request(module: str | None) -> None:
    """Without arp: ARP is an unknown ethertype (no reply); with it: a reply
    (RFC 826), even without ipv4 above it."""
    lan, stack, sniff = lan_without(module)
    sniff.inject(arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, bytes(6), addr(0)))
    lan.run(1)
    replies = [a for _, a in sniff.arps() if a.op == arp.REPLY and a.spa == addr(0)]
    if module == "arp":
        assert stack.arp is None and replies == []
        assert stack.counters["eth.unknown_ethertype"] == 1
    else:
        assert len(replies) == 1


class RawLink(Device):
    """One end of an in-memory point-to-point link carrying bare IP packets (a TUN
    pair): no Ethernet, so no ARP."""

    raw_ip = True

    def __init__(self, name: str, loop: SimLoop) -> None:
        super().__init__(name, 1500)
        self.loop = loop
        self.peer: RawLink | None = None

    def _transmit(self, frame: bytes) -> None:
        peer = self.peer
        if peer is not None:
            data = bytes(frame)
            self.loop.call_soon(lambda: peer.deliver(data))


def test_without_arp_a_tun_link_carries_ping_and_tcp() -> None:
    """'Without arp: TUN only' - two stacks with no ARP talk over a raw-IP link."""
    loop = SimLoop()
    a, b = RawLink("a", loop), RawLink("b", loop)
    a.peer, b.peer = b, a
    mods = without(ALL, "arp")
    sa, sb = Stack("a", modules=mods), Stack("b", modules=mods)
    sa.add_interface(a, ipv4="198.51.100.1/24")
    sb.add_interface(b, ipv4="198.51.100.2/24")
    for st in (sa, sb):
        loop.add_stack(st)
        st.start()
    assert sa.arp is None and sb.arp is None
    replies: list[Any] = []
    sa.icmp.ping(bytes([198, 51, 100, 2]), replies.append)
    assert loop.run_until(lambda: bool(replies), 5)
    lst = sb.tcp.listen(bytes(4), 7)
    conn = sa.tcp.connect(bytes([198, 51, 100, 2]), 7)
    assert loop.run_until(lambda: conn.state == "ESTABLISHED" and lst.readable, 5)
    peer = lst.accept()
    assert peer is not None
    conn.send(b"over tun")
    assert loop.run_until(lambda: peer.readable, 5)
    assert peer.recv(100) == b"over tun"


def test_without_arp_ethernet_output_is_counted_not_sent() -> None:
    lan, stack, sniff = lan_without("arp")
    ep = stack.udp.open(bytes(4), 5353)
    ep.sendto(b"x", SNIFF_IP, 9)
    lan.run(1)
    assert sniff.frames == [] and stack.counters["ipv4.no_arp_module"] >= 1


@pytest.mark.parametrize("module", [None, "dns", "udp"])
def test_names_without_dns(module: str | None) -> None:
    """Without dns: names resolve from numeric addresses and the hosts table only,
    and a lookup puts nothing on the wire; with dns the resolver asks its server.
    Another name finds no server to ask: EAI_AGAIN while the stack could load
    the dns module (a Linux host with no name server says so), EAI_NONAME
    when it cannot (no UDP: the hosts table is all there is)."""
    lan, stack, sniff = lan_without(module)
    net = Network(stack, Runtime(), hosts={"printer.lan": "192.0.2.77"})
    net.read_etc_hosts = False
    assert net.gethostbyname("198.51.100.9") == "198.51.100.9"
    assert net.gethostbyname("printer.lan") == "192.0.2.77"
    if module is not None:
        assert stack.resolver is None
        with pytest.raises(OSError) as info:
            net.gethostbyname("www.example.test")
        want = socket.EAI_AGAIN if module == "dns" else socket.EAI_NONAME
        assert info.value.errno == want, info.value
        lan.run(5)
        assert sniff.ip_frames() == []
    else:
        assert modreg.available("dns") and stack.resolver is not None
        stack.resolver.servers = [SNIFF_IP]
        done: list[Any] = []
        stack.resolver.resolve("www.example.test", wire_dns.A, done.append)
        lan.run(0.5)
        queries = sniff.ip_frames(lambda f: f.ip.proto == ipv4.PROTO_UDP)
        assert queries and queries[0].payload[2:4] == (53).to_bytes(2, "big")
