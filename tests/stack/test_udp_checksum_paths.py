"""UDP's checksum verification on both receive paths (``Udp.fast_input4`` and
``Udp.input``) against the plain word loop (``reference_checksum``): any size
(short datagrams are read at once, longer ones in pieces), any spoiled bytes
of the checksum field or the data: a datagram is delivered exactly when the
loop finds its checksum good (or it carries none), and each other one is
dropped and counted as ``udp.bad_checksum``."""

from __future__ import annotations

from femtolan import Recorder
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.stack import Stack
from femtotcp.wire import ethernet, ip_bytes, ipv4, mac_bytes, udp
from femtotcp.wire.checksum import reference_checksum

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")


@settings(max_examples=400)
@given(payload=st.binary(max_size=1472),
       spoils=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), max_size=2),
       fast=st.booleans())
def test_delivered_exactly_when_the_reference_loop_says_good(
        payload: bytes, spoils: list[tuple[int, int]], fast: bool) -> None:
    stack = Stack("csum", modules={"ipv4", "arp", "udp", "icmp4"})
    iface = stack.add_interface(Recorder(), mac=OUR_MAC, ipv4="192.0.2.2/24")
    if not fast:
        stack.fast_receive = None
    assert stack.udp is not None
    ep = stack.udp.open(bytes(4), 5001)
    dgram = bytearray(udp.build(PEER_IP, OUR_IP, 4000, 5001, payload))
    # Spoiled bytes: the checksum field's or the data's (never the ports or length).
    for where, mask in spoils:
        dgram[6 + where % (len(dgram) - 6)] ^= mask
    pseudo = PEER_IP + OUR_IP + bytes((0, udp.PROTO)) + len(dgram).to_bytes(2, "big")
    good = dgram[6:8] == b"\0\0" or reference_checksum(pseudo + bytes(dgram)) == 0
    frame = ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4, ipv4.build(
        PEER_IP, OUR_IP, udp.PROTO, bytes(dgram)))
    if fast:
        # The fast path alone takes a good one and leaves a bad one untouched.
        assert stack.fast_receive is not None
        assert stack.fast_receive(iface, frame, False) == (1 if good else 0)
        assert ep.recv() == ((bytes(dgram[8:]), (PEER_IP, 4000)) if good else None)
    stack.receive(iface, frame, 0.0)
    got = ep.recv()
    if good:
        assert got == (bytes(dgram[8:]), (PEER_IP, 4000))
        assert stack.counters.get("udp.bad_checksum", 0) == 0
    else:
        assert got is None
        assert stack.counters["udp.bad_checksum"] == 1
