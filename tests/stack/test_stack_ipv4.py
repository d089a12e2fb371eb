"""IPv4 input and output, ICMP echo and errors, on stacks joined by a memory switch
with a virtual clock (RFC 791, RFC 792, RFC 1122 3.2)."""

from __future__ import annotations

import errno

import pytest
from femtolan import (
    BCAST_MAC,
    LIMITED_BCAST,
    SNIFF_IP,
    SNIFF_MAC,
    SUBNET_BCAST,
    addr,
    arp_frame,
    echo_frame,
    ip_frame,
    mac,
    make_lan,
    udp_frame,
)

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, icmp4, ip_bytes, ipv4, udp

ALL_HOSTS = ip_bytes("224.0.0.1")
ALL_HOSTS_MAC = bytes.fromhex("01005e000001")


# -- ping ------------------------------------------------------------------------

def test_ping_between_two_stacks() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    replies: list = []
    ep = a.icmp.ping(addr(1), replies.append, seq=5, payload=b"hello there")
    assert lan.run_until(lambda: bool(replies), 5)
    src, seq, payload, ttl = replies[0]
    assert (src, seq, payload, ttl) == (addr(1), 5, b"hello there", 64)
    assert b.counters["icmp4.echo_replied"] == 1
    ep.close()
    assert ep.ident not in a.icmp.echo


def test_echo_reply_mirrors_request() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), ident=0x1234, seq=99, data=b"abc" * 100,
                            dst_mac=mac(0)))
    lan.run(1)
    replies = sniff.icmps(icmp4.ECHO_REPLY)
    assert len(replies) == 1
    f, hdr, body = replies[0]
    assert (hdr.ident, hdr.seq, body) == (0x1234, 99, b"abc" * 100)
    assert (f.ip.src, f.ip.dst, f.eth.dst) == (addr(0), SNIFF_IP, SNIFF_MAC)


def test_ping_many_with_echo_endpoint() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    ep = a.icmp.open_echo()
    for seq in range(10):
        assert ep.send(addr(1), seq, b"p%d" % seq) == 0
    lan.run(1)
    got = []
    while (r := ep.recv()) is not None:
        got.append((r[1], r[2]))
    assert got == [(s, b"p%d" % s) for s in range(10)]


def test_echo_identifier_in_use() -> None:
    lan = make_lan(1)
    a = lan.stacks[0]
    a.icmp.open_echo(77)
    with pytest.raises(OSError) as e:
        a.icmp.open_echo(77)
    assert e.value.errno == errno.EADDRINUSE


def test_unmatched_echo_reply_counted() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1, icmp4.build_echo(icmp4.ECHO_REPLY, 5, 1),
                          dst_mac=mac(0)))
    lan.run(0)
    assert lan.stacks[0].counters["icmp4.echo_reply_unmatched"] == 1


@pytest.mark.parametrize(("dst", "dst_mac"), [
    (SUBNET_BCAST, BCAST_MAC),
    (LIMITED_BCAST, BCAST_MAC),
    (ALL_HOSTS, ALL_HOSTS_MAC),
])
def test_no_echo_reply_to_broadcast_or_multicast(dst: bytes, dst_mac: bytes) -> None:
    """Smurf: an echo request to a group address gets no answer."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(SNIFF_IP, dst, dst_mac=dst_mac))
    lan.run(2)
    assert sniff.frames == []
    assert stack.counters["icmp4.echo_to_group_ignored"] == 1
    assert stack.counters["icmp4.echo_replied"] == 0


def test_icmp_bad_checksum_dropped() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    msg = bytearray(icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"data"))
    msg[-1] ^= 1
    sniff.clear()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1, bytes(msg), dst_mac=mac(0)))
    lan.run(1)
    assert sniff.frames == []
    assert lan.stacks[0].counters["icmp4.bad_checksum"] == 1


def test_icmp_checksum_over_ip_payload_not_frame_padding() -> None:
    """An echo in a padded minimum frame: the checksum covers the IP payload only."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    frame = echo_frame(SNIFF_IP, addr(0), data=b"", dst_mac=mac(0))
    assert len(frame) < 60
    sniff.inject(frame + b"\xab" * (60 - len(frame)))
    lan.run(1)
    assert len(sniff.icmps(icmp4.ECHO_REPLY)) == 1


# -- errors we send ------------------------------------------------------------------

def test_port_unreachable() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 5555, 9999, b"anyone?", dst_mac=mac(0)))
    lan.run(1)
    errs = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE)
    assert len(errs) == 1
    f, hdr, body = errs[0]
    assert (f.ip.src, f.ip.dst) == (addr(0), SNIFF_IP)
    inner, inner_payload = ipv4.parse(body, verify_checksum=True)
    assert (inner.src, inner.dst, inner.proto) == (SNIFF_IP, addr(0), 17)
    assert int.from_bytes(body[20:22], "big") == 5555
    assert stack.counters["udp.no_port"] == 1


def test_protocol_unreachable() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 200, b"mystery protocol", dst_mac=mac(0)))
    lan.run(1)
    errs = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PROTO_UNREACHABLE)
    assert len(errs) == 1
    assert errs[0][2][9] == 200
    assert lan.stacks[0].counters["ipv4.unknown_protocol"] == 1


def test_error_quotes_at_most_576_bytes() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 1, 9999, b"x" * 1400, dst_mac=mac(0)))
    lan.run(1)
    (f, _, body), = sniff.icmps(icmp4.DEST_UNREACHABLE)
    assert 20 + 8 + len(body) <= 576 and f.ip.total_len <= 576
    assert len(body) >= 28


def test_errors_are_rate_limited() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    for i in range(50):
        sniff.inject(udp_frame(SNIFF_IP, addr(0), 1000 + i, 9999, b"x", dst_mac=mac(0)))
    lan.run(0)
    sent = len(sniff.icmps(icmp4.DEST_UNREACHABLE))
    assert 1 <= sent <= stack.config.icmp_burst_per_dest
    assert stack.counters["icmp4.error_rate_limited"] == 50 - sent
    # The bucket refills with time.
    lan.run(5)
    sniff.clear()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 1, 9999, b"x", dst_mac=mac(0)))
    lan.run(0)
    assert len(sniff.icmps(icmp4.DEST_UNREACHABLE)) == 1


def test_global_error_rate_limit_across_destinations() -> None:
    cfg = StackConfig(icmp_burst=10, icmp_rate=1.0)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    for i in range(40):
        src = bytes([192, 0, 2, 100 + i])
        sniff.inject(udp_frame(src, addr(0), 1, 9999, b"x", dst_mac=mac(0)))
    lan.run(0)
    assert stack.counters["icmp4.tx_error_3_3"] == 10


@pytest.mark.parametrize(("dst", "dst_mac"), [
    (SUBNET_BCAST, BCAST_MAC),
    (LIMITED_BCAST, BCAST_MAC),
    (ALL_HOSTS, ALL_HOSTS_MAC),
])
def test_no_port_unreachable_about_group_destinations(dst: bytes, dst_mac: bytes) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(udp_frame(SNIFF_IP, dst, 1, 9999, b"x", dst_mac=dst_mac))
    sniff.inject(ip_frame(SNIFF_IP, dst, 200, b"x", dst_mac=dst_mac))
    lan.run(1)
    assert sniff.frames == []
    assert stack.counters["udp.no_port"] == 1
    assert stack.counters["ipv4.unknown_protocol"] == 1


@pytest.mark.parametrize(("icmp_type", "answered"), [
    (icmp4.ECHO_REQUEST, True),
    (icmp4.DEST_UNREACHABLE, False),
    (icmp4.TIME_EXCEEDED, False),
])
def test_no_error_about_an_icmp_error(icmp_type: int, answered: bool) -> None:
    """RFC 1122 3.2.2: never an ICMP error about an ICMP error. The first fragment
    of a datagram that never completes is the one case where we would send one
    (time exceeded, code 1) about an ICMP message."""
    cfg = StackConfig(reasm_timeout=2)
    lan = make_lan(1, config=cfg)
    sniff = lan.sniffer()
    msg = icmp4.build(icmp_type, 0, 0, bytes(64))
    sniff.clear()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 1, msg[:32], flags_frag=ipv4.MF,
                          dst_mac=mac(0)))
    lan.run(5)
    errs = sniff.icmps(icmp4.TIME_EXCEEDED, 1)
    assert len(errs) == (1 if answered else 0)
    if not answered:
        assert lan.stacks[0].counters["icmp4.error_suppressed_icmp"] == 1


def test_no_error_about_non_first_fragment() -> None:
    cfg = StackConfig(reasm_timeout=2)
    lan = make_lan(1, config=cfg)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 17, b"x" * 64, flags_frag=8, dst_mac=mac(0)))
    lan.run(5)
    assert sniff.frames == []
    assert stack.counters["ipv4.reasm_timeout"] == 1


# -- what IPv4 input refuses ---------------------------------------------------------

def test_land_packet_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(addr(0), addr(0), dst_mac=mac(0)))
    sniff.inject(udp_frame(addr(0), addr(0), 9999, 9999, b"x", dst_mac=mac(0)))
    lan.run(2)
    assert stack.counters["ipv4.land"] == 2
    assert sniff.frames == []


@pytest.mark.parametrize("src", ["224.0.0.1", "239.255.255.250", "255.255.255.255",
                                 "192.0.2.255", "240.0.0.1"])
def test_group_or_broadcast_source_dropped(src: str) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(ip_bytes(src), addr(0), dst_mac=mac(0)))
    sniff.inject(udp_frame(ip_bytes(src), addr(0), 1, 9999, b"x", dst_mac=mac(0)))
    lan.run(2)
    assert stack.counters["ipv4.bad_source"] == 2
    assert sniff.frames == []


def test_zero_source_to_unicast_dropped() -> None:
    """RFC 1122 3.2.1.3: never answer to 0.0.0.0 (it must never be a destination),
    even when a default route would carry the answer away."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")
    ep = stack.udp.open(port=7)
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(b"\0\0\0\0", addr(0), dst_mac=mac(0)))
    sniff.inject(udp_frame(b"\0\0\0\0", addr(0), 68, 7, b"x", dst_mac=mac(0)))
    lan.run(2)
    assert stack.counters["ipv4.zero_source"] == 2
    assert ep.recv() is None
    assert sniff.ip_frames() == []


def test_zero_source_broadcast_accepted() -> None:
    """A host without an address broadcasts from 0.0.0.0 (DHCP discover)."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    ep = stack.udp.open(port=67)
    sniff = lan.sniffer()
    sniff.inject(udp_frame(b"\0\0\0\0", LIMITED_BCAST, 68, 67, b"discover",
                           dst_mac=BCAST_MAC))
    lan.run(0)
    assert ep.recv() == (b"discover", (b"\0\0\0\0", 68))


def test_loopback_source_from_the_wire_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(echo_frame(ip_bytes("127.0.0.1"), addr(0), dst_mac=mac(0)))
    lan.run(1)
    assert stack.counters["ipv4.martian_source"] == 1
    assert stack.counters["icmp4.echo_replied"] == 0


def test_not_for_us_dropped_no_forwarding() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(SNIFF_IP, ip_bytes("198.51.100.1"), dst_mac=mac(0)))
    lan.run(1)
    assert stack.counters["ipv4.not_for_us"] == 1
    assert sniff.frames == []


def test_no_address_takes_unicast_to_any_address_only_while_leasing() -> None:
    """An interface with no IPv4 address takes unicast to any address only while
    its DHCP client runs (RFC 2131 4.1: an offer may come before the address is
    known); an IPv6-only host's interface takes none and answers nothing."""
    from femtotcp.services import dhcp

    lan = make_lan(1)
    stack = lan.stacks[0]
    iface = stack.interfaces[0]
    stack.remove_address(iface, addr(0))
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(SNIFF_IP, ip_bytes("198.51.100.1"), dst_mac=mac(0)))
    lan.run(1)
    assert stack.counters["ipv4.not_for_us"] == 1
    assert stack.counters["icmp4.echo_replied"] == 0
    client = dhcp.install(stack, iface)
    client.start()
    sniff.inject(echo_frame(SNIFF_IP, ip_bytes("198.51.100.1"), dst_mac=mac(0)))
    lan.run(0.1)
    assert stack.counters["ipv4.not_for_us"] == 1
    assert stack.counters["icmp4.rx"] == 1
    client.stop()
    sniff.inject(echo_frame(SNIFF_IP, ip_bytes("198.51.100.1"), dst_mac=mac(0)))
    lan.run(0.1)
    assert stack.counters["ipv4.not_for_us"] == 2


def test_unicast_ip_in_broadcast_frame_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=BCAST_MAC))
    lan.run(1)
    assert stack.counters["ipv4.unicast_in_l2_broadcast"] == 1
    assert stack.counters["icmp4.echo_replied"] == 0


def test_frame_for_another_mac_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=bytes.fromhex("020000000099")))
    lan.run(1)
    assert stack.counters["eth.not_for_us"] >= 1
    assert stack.counters["icmp4.echo_replied"] == 0


@pytest.mark.parametrize(("mutate", "counter"), [
    (lambda p: bytes([0x65]) + p[1:], "ipv4.bad_version"),
    (lambda p: bytes([0x44]) + p[1:], "ipv4.bad_ihl"),
    (lambda p: p[:10] + bytes([p[10] ^ 1]) + p[11:], "ipv4.bad_checksum"),
    (lambda p: p[:19], "ipv4.truncated"),
    (lambda p: p[:-1], "ipv4.truncated"),
])
def test_malformed_ipv4_counted(mutate, counter: str) -> None:  # type: ignore[no-untyped-def]
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    frame = echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0))
    sniff.clear()
    sniff.inject(frame[:14] + mutate(frame[14:]))
    lan.run(1)
    assert stack.counters[counter] == 1
    assert sniff.frames == []


def test_tagged_frame_dropped_without_vlan() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    frame = echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0))
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    sniff.clear()
    sniff.inject(tagged)
    lan.run(1)
    assert stack.counters["eth.vlan_not_configured"] == 1
    assert sniff.frames == []


def test_tagged_frame_accepted_on_vlan_interface() -> None:
    loop = SimLoop()
    sw = Switch(loop)
    stack = Stack("v")
    stack.add_interface(sw.port(), mac=mac(0), ipv4="192.0.2.1/24", vlan=5)
    loop.add_stack(stack)
    stack.start()
    port = sw.port()
    got: list[bytes] = []
    port.set_receiver(got.append)
    frame = echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0))
    port.send(frame[:12] + b"\x81\x00\x00\x05" + frame[12:])
    # The reply needs ARP for the sniffer: answer it, tagged.
    loop.run(duration=0)
    reply = arp_frame(arp.REPLY, SNIFF_MAC, SNIFF_IP, mac(0), addr(0), eth_dst=mac(0))
    port.send(reply[:12] + b"\x81\x00\x00\x05" + reply[12:])
    loop.run(duration=1)
    echo = [f for f in got if f[12:14] == b"\x81\x00" and f[16:18] == b"\x08\x00"]
    assert echo and all(f[14:16] == b"\x00\x05" for f in got)
    assert stack.counters["icmp4.echo_replied"] == 1
    port.send(frame)                               # untagged on a VLAN interface
    loop.run(duration=1)
    assert stack.counters["eth.untagged_on_vlan"] >= 1


@pytest.mark.parametrize("length", [0, 1, 13])
def test_runt_frames_counted(length: int) -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    lan.ifaces[0].device.deliver(b"\x02" * length)
    assert stack.counters["eth.runt"] == 1


def test_frame_larger_than_mtu_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    big = udp_frame(SNIFF_IP, addr(0), 1, 9999, b"x" * 1500, dst_mac=mac(0))
    assert len(big) > 1500 + 18
    lan.ifaces[0].device.deliver(big)
    assert stack.counters["eth.oversize"] == 1
    assert stack.counters["ipv4.rx"] == 0
    full = udp_frame(SNIFF_IP, addr(0), 1, 9999, b"x" * 1472, dst_mac=mac(0))
    lan.ifaces[0].device.deliver(full)
    assert stack.counters["ipv4.rx"] == 1


def test_8023_frame_counted() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    lan.ifaces[0].device.deliver(mac(0) + SNIFF_MAC + b"\x00\x2e" + b"\xaa" * 46)
    assert stack.counters["eth.8023_length_frame"] == 1


# -- loopback -----------------------------------------------------------------------

def test_ping_own_address() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    sniff.clear()
    replies: list = []
    stack.icmp.ping(addr(0), replies.append)
    assert lan.run_until(lambda: bool(replies), 1)
    assert replies[0][0] == addr(0)
    assert sniff.frames == []                # nothing left the host
    assert stack.counters["ipv4.tx_loopback"] == 2


def test_udp_to_own_address_and_fragment_sized() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    rx = stack.udp.open(port=4000)
    tx = stack.udp.open()
    assert tx.sendto(b"z" * 5000, addr(0), 4000) == 0
    assert lan.run_until(lambda: rx.readable, 1)
    data, (src, sport) = rx.recv()
    assert data == b"z" * 5000 and src == addr(0) and sport == tx.local[1]


def test_output_without_route() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    ep = stack.udp.open()
    assert ep.sendto(b"x", ip_bytes("198.51.100.1"), 9) == errno.ENETUNREACH
    assert stack.ip_output(ip_bytes("198.51.100.1"), 17, b"x") == errno.ENETUNREACH


def test_zero_destination_never_leaves() -> None:
    """RFC 1122 3.2.1.3: 0.0.0.0 is never a destination, even with a default route."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")
    sniff = lan.sniffer()
    sniff.clear()
    assert stack.udp.open().sendto(b"x", ip_bytes("0.0.0.0"), 9) == errno.ENETUNREACH
    assert stack.ip_output(ip_bytes("0.0.0.0"), 253, b"x") == errno.ENETUNREACH
    lan.run(1)
    assert sniff.ip_frames() == []
    assert stack.counters["ipv4.tx_martian"] == 2


@pytest.mark.parametrize("dst", ["127.0.0.1", "127.1.2.3"])
def test_loopback_is_delivered_locally_and_never_leaves(dst: str) -> None:
    """127/8 is the host's loopback (as on Linux): delivered to our own sockets,
    never put on a wire, not even with a default route; a closed loopback port
    answers port unreachable to the sender."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")
    sniff = lan.sniffer()
    sniff.clear()
    server = stack.udp.open(b"\0\0\0\0", 7000)
    client = stack.udp.open()
    assert client.sendto(b"over loopback", ip_bytes(dst), 7000) == 0
    lan.run(1)
    got = server.recv()
    assert got is not None and got[0] == b"over loopback" and got[1][0] == ip_bytes(dst)
    client.connect(ip_bytes(dst), 7001)
    assert client.send(b"closed") == 0
    lan.run(1)
    assert client.error == errno.ECONNREFUSED
    assert sniff.ip_frames() == []


def test_loopback_source_cannot_leave() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    ep = stack.udp.open(ip_bytes("127.0.0.1"), 0)
    assert ep.sendto(b"x", ip_bytes("192.0.2.77"), 9) == errno.EINVAL


def test_loopback_destination_from_the_wire_dropped() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    stack.udp.open(b"\0\0\0\0", 7000)
    sniff.inject(udp_frame(SNIFF_IP, ip_bytes("127.0.0.1"), 5000, 7000, b"x",
                           dst_mac=stack.interfaces[0].mac))
    lan.run(1)
    assert stack.counters["ipv4.martian_destination"] == 1
    assert stack.counters["udp.rx"] == 0


def test_default_route_through_gateway() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")
    assert stack.source_address(ip_bytes("198.51.100.7")) == addr(0)
    ep = stack.udp.open()
    assert ep.sendto(b"via gw", ip_bytes("198.51.100.7"), 9) == 0
    lan.run(1)
    out = sniff.ip_frames(lambda f: f.ip.proto == 17)
    assert len(out) == 1
    assert out[0].eth.dst == SNIFF_MAC and out[0].ip.dst == ip_bytes("198.51.100.7")


@pytest.mark.parametrize("gateway", ["198.51.100.1", ip_bytes("198.51.100.1")])
def test_gateway_off_link_refused_with_readable_message(gateway: str | bytes) -> None:
    lan = make_lan(1)
    with pytest.raises(ValueError, match=r"^gateway 198\.51\.100\.1 is not on a connected"):
        lan.stacks[0].add_route("0.0.0.0/0", gateway=gateway)


def test_df_too_big_is_emsgsize() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    assert a.ip_output(addr(1), 17, b"x" * 2000, df=True) == errno.EMSGSIZE
    assert a.route_mtu(addr(1)) == 1500


def test_ip_output_sets_ttl_tos_df() -> None:
    lan = make_lan(1)
    stack = lan.stacks[0]
    sniff = lan.sniffer()
    assert stack.ip_output(SNIFF_IP, 253, b"raw", ttl=3, tos=0x10, df=True) == 0
    lan.run(1)
    (f,) = sniff.ip_frames(lambda f: f.ip.proto == 253)
    assert (f.ip.ttl, f.ip.tos, f.ip.dont_fragment, f.payload) == (3, 0x10, True, b"raw")


# -- independence --------------------------------------------------------------------

def test_two_stacks_in_one_process_are_independent() -> None:
    """Two LANs with identical addresses in one process: no shared state."""
    lan1 = make_lan(2)
    lan2 = make_lan(2)
    r1: list = []
    r2: list = []
    lan1.stacks[0].icmp.ping(addr(1), r1.append)
    assert lan1.run_until(lambda: bool(r1), 5)
    assert lan2.stacks[0].counters["icmp4.rx"] == 0
    assert lan2.stacks[0].arp.caches.get(lan2.ifaces[0], {}).get(addr(1)) is None
    lan2.stacks[0].icmp.ping(addr(1), r2.append)
    assert lan2.run_until(lambda: bool(r2), 5)
    assert lan1.stacks[1].counters["icmp4.echo_replied"] == 1
    assert lan2.stacks[1].counters["icmp4.echo_replied"] == 1


def test_three_stacks_on_one_switch() -> None:
    lan = make_lan(3)
    got: dict[int, list] = {0: [], 1: [], 2: []}
    for i, s in enumerate(lan.stacks):
        s.icmp.ping(addr((i + 1) % 3), got[i].append)
    assert lan.run_until(lambda: all(got.values()), 5)
    assert [got[i][0][0] for i in range(3)] == [addr(1), addr(2), addr(0)]


# -- modules -------------------------------------------------------------------------

def test_stack_without_udp_drops_udp_with_protocol_unreachable() -> None:
    lan = make_lan(0)
    stack = lan.add_stack(0, modules={"arp", "ipv4", "icmp4"})
    lan.run(0)
    assert stack.udp is None and "udp" not in stack.modules
    sniff = lan.sniffer()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 1, 7, b"echo?", dst_mac=mac(0)))
    lan.run(1)
    assert stack.counters["ipv4.unknown_protocol"] == 1
    errs = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PROTO_UNREACHABLE)
    assert len(errs) == 1 and errs[0][2][9] == udp.PROTO


def test_stack_without_icmp_drops_icmp_silently() -> None:
    lan = make_lan(0)
    stack = lan.add_stack(0, modules={"arp", "ipv4", "udp"})
    lan.run(0)
    sniff = lan.sniffer()
    sniff.clear()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0)))
    lan.run(1)
    assert stack.counters["ipv4.unknown_protocol"] == 1
    assert sniff.frames == []


def test_stack_without_arp_counts_arp_as_unknown() -> None:
    lan = make_lan(0)
    stack = lan.add_stack(0, modules={"ipv4", "icmp4"})
    lan.ifaces[0].device.deliver(arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, bytes(6), addr(0)))
    assert stack.counters["eth.unknown_ethertype"] == 1


def test_unknown_module_rejected() -> None:
    with pytest.raises(ValueError, match="unknown module"):
        Stack(modules={"ipv4", "carrier-pigeon"})


def test_module_dependencies_checked() -> None:
    with pytest.raises(ValueError, match="needs ipv4"):
        Stack(modules={"udp"})


def test_ip_ids_are_per_destination() -> None:
    """Traffic to one host does not move the IP IDs another host sees, so the
    stack cannot serve as an idle-scan relay (RFC 7739 5.3)."""
    lan = make_lan(1)
    stack = lan.stacks[0]
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")
    sniff = lan.sniffer()
    ep = stack.udp.open()
    a = ip_bytes("198.51.100.1")

    def bucket(dst: bytes) -> int:
        return hash((stack.ipv4._ident_key, dst, 17)) & 2047

    # Another destination in another bucket (2048 buckets: a collision is possible).
    b = next(ip_bytes(f"198.51.100.{i}") for i in range(2, 250)
             if bucket(ip_bytes(f"198.51.100.{i}")) != bucket(a))
    assert ep.sendto(b"first", a, 9) == 0
    lan.run(1)
    for _ in range(50):
        ep.sendto(b"other", b, 9)
    ep.sendto(b"second", a, 9)
    lan.run(1)
    ids = [f.ip.ident for f in sniff.ip_frames(lambda f: f.ip.dst == a)]
    assert len(ids) == 2 and ids[1] == (ids[0] + 1) & 0xFFFF
    other = [f.ip.ident for f in sniff.ip_frames(lambda f: f.ip.dst == b)]
    assert len(other) == 50 and len(set(other)) == 50
