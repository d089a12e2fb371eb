"""IPv4 path MTU discovery for UDP (RFC 1191) as Linux does it: IP_MTU_DISCOVER
(WANT by default) decides DF and the size a datagram is measured against, a
Fragmentation Needed about a datagram from a port we hold lowers the path MTU
(never below 552, which then locks it and drops DF), a connected socket hears
EMSGSIZE. The DF bit against the kernel: tests/e2e/test_conformance.py
(``udp_echo``)."""

from __future__ import annotations

import errno

import pytest
from femtolan import Recorder
from test_stack_udp_template import MAC_A as PEER_MAC
from test_stack_udp_template import OUR_IP, OUR_MAC, PEER_IP, PORT, setup

from femtotcp.stack import Stack
from femtotcp.stack.ipv4 import (
    MIN_PMTU,
    PMTUDISC_DO,
    PMTUDISC_DONT,
    PMTUDISC_INTERFACE,
    PMTUDISC_PROBE,
)
from femtotcp.wire import ethernet, icmp4, ipv4, udp


def sent(dev: Recorder) -> list[ipv4.Ipv4Header]:
    out = []
    for frame in dev.sent:
        eth, body = ethernet.parse(frame)
        if eth.ethertype == ethernet.ETH_IPV4:
            out.append(ipv4.parse(body)[0])
    dev.sent.clear()
    return out


def frag_needed(stack: Stack, mtu: int, sport: int = 5000) -> None:
    """A router's Fragmentation Needed about a datagram we sent from ``sport``."""
    quoted = ipv4.build(OUR_IP, PEER_IP, udp.PROTO,
                        udp.build(OUR_IP, PEER_IP, sport, PORT, bytes(1400)), 64, 0, 1,
                        ipv4.DF)[:28]
    msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, mtu & 0xFFFF, quoted)
    stack.receive(stack.interfaces[0], ethernet.build(
        OUR_MAC, PEER_MAC, ethernet.ETH_IPV4, ipv4.build(PEER_IP, OUR_IP, 1, msg)))


def test_datagrams_carry_df_and_fragment_to_a_lowered_path_mtu() -> None:
    _, stack, dev, ep = setup()
    assert ep.sendto(bytes(1400), PEER_IP, PORT) == 0
    (whole,) = sent(dev)
    assert whole.flags_frag == ipv4.DF
    frag_needed(stack, 1200)
    assert stack.route_mtu(PEER_IP) == 1200
    assert stack.counters["ipv4.pmtu_lowered"] == 1
    assert ep.sendto(bytes(1400), PEER_IP, PORT) == 0
    pieces = sent(dev)
    assert len(pieces) == 2 and all(p.total_len <= 1200 for p in pieces)
    assert not any(p.flags_frag & ipv4.DF for p in pieces)
    assert ep.sendto(bytes(1000), PEER_IP, PORT) == 0        # fits: DF again
    assert [p.flags_frag for p in sent(dev)] == [ipv4.DF]
    assert ep.take_error() is None                          # not connected: no error


def test_a_connected_socket_hears_emsgsize() -> None:
    _, stack, _, ep = setup()
    ep.connect(PEER_IP, PORT)
    frag_needed(stack, 1200)
    assert ep.take_error() == errno.EMSGSIZE


def test_the_path_mtu_never_rises_and_ages_out() -> None:
    loop, stack, dev, ep = setup()
    frag_needed(stack, 1200)
    frag_needed(stack, 1400)
    assert stack.route_mtu(PEER_IP) == 1200
    loop.run(stack.config.pmtu_expires + 1)
    assert stack.route_mtu(PEER_IP) == 1500


def test_below_552_the_path_mtu_locks_and_df_goes() -> None:
    _, stack, dev, ep = setup()
    frag_needed(stack, 0)                                    # an RFC 792 router
    assert stack.route_mtu(PEER_IP) == MIN_PMTU
    assert ep.sendto(bytes(100), PEER_IP, PORT) == 0
    assert [p.flags_frag for p in sent(dev)] == [0]


def test_a_port_we_do_not_hold_changes_nothing() -> None:
    _, stack, _, _ = setup()
    frag_needed(stack, 1200, sport=5999)
    assert stack.route_mtu(PEER_IP) == 1500


@pytest.mark.parametrize(("mode", "size", "expect"), [
    (PMTUDISC_DONT, 1400, [0, 0]),              # fragments, no DF
    (PMTUDISC_DONT, 1000, [0]),
    (PMTUDISC_DO, 1400, errno.EMSGSIZE),        # over the path MTU
    (PMTUDISC_DO, 1000, [ipv4.DF]),
    (PMTUDISC_PROBE, 1400, [ipv4.DF]),          # the interface's MTU, DF always
    (PMTUDISC_PROBE, 1600, errno.EMSGSIZE),
    (PMTUDISC_INTERFACE, 1400, [0]),            # the interface's MTU, no DF
])
def test_ip_mtu_discover_modes(mode: int, size: int, expect: int | list[int]) -> None:
    _, stack, dev, ep = setup()
    frag_needed(stack, 1200)
    ep.set_pmtudisc(mode)
    err = ep.sendto(bytes(size), PEER_IP, PORT)
    if isinstance(expect, int):
        assert err == expect and not sent(dev)
    else:
        assert err == 0 and [p.flags_frag & ipv4.DF for p in sent(dev)] == expect


def test_interface_mode_ignores_fragmentation_needed() -> None:
    _, stack, _, ep = setup()
    ep.set_pmtudisc(PMTUDISC_INTERFACE)
    frag_needed(stack, 1200)
    assert stack.route_mtu(PEER_IP) == 1500


def test_the_frame_template_follows_the_path_mtu() -> None:
    """A template made before the path MTU fell is not used after it."""
    _, stack, dev, ep = setup()
    for _ in range(3):
        assert ep.sendto(bytes(1400), PEER_IP, PORT) == 0
    assert ep._template is not None
    assert [p.flags_frag for p in sent(dev)] == [ipv4.DF] * 3
    frag_needed(stack, 1200)
    assert ep.sendto(bytes(1400), PEER_IP, PORT) == 0
    assert len(sent(dev)) == 2


def test_forged_reports_for_many_destinations_stay_bounded() -> None:
    """Hostile input: a Fragmentation Needed quoting a datagram of ours to each
    of thousands of destinations keeps at most ``PMTU_MAX_ENTRIES`` of them."""
    from femtotcp.stack.ipv4 import PMTU_MAX_ENTRIES
    _, stack, _, _ = setup()
    stack.add_route("0.0.0.0/0", gateway=PEER_IP)
    assert stack.ipv4 is not None
    for i in range(PMTU_MAX_ENTRIES + 500):
        far = bytes((198, 51, i >> 8, i & 0xFF))
        inner = ipv4.build(OUR_IP, far, udp.PROTO, udp.build(OUR_IP, far, 5000, PORT, b"x"))
        msg = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, 600, inner[:28])
        stack.receive(stack.interfaces[0], ethernet.build(
            OUR_MAC, PEER_MAC, ethernet.ETH_IPV4, ipv4.build(PEER_IP, OUR_IP, 1, msg)))
    assert len(stack.ipv4.pmtu) == PMTU_MAX_ENTRIES
    assert stack.counters["ipv4.pmtu_lowered"] == PMTU_MAX_ENTRIES + 500
