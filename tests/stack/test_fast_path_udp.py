"""The IPv4 fast path's UDP handler (``Udp.fast_input4``) decides exactly as
the full path does: the same datagrams delivered to the same endpoints, the
same ICMP errors sent, the same counters, for datagrams it takes (to a bound
port, wildcard or not, a connected endpoint's peer) and for those it must
leave (bad checksums and lengths, no endpoint, a connected endpoint's
stranger, the gateway's catch-all, IP options, fragments, broadcast), with
and without the device vouching for the checksum."""

from __future__ import annotations

from typing import Any

import pytest
from femtolan import Recorder, arp_frame, ip_frame, parse_ip

from femtotcp.runtime import SimLoop
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes, udp

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
OTHER_IP = ip_bytes("192.0.2.9")
BCAST_IP = ip_bytes("192.0.2.255")


def _frame(dport: int, payload: bytes, *, src: bytes = PEER_IP, sport: int = 4000,
           dst: bytes = OUR_IP, dst_mac: bytes = OUR_MAC, spoil: bool = False,
           zero: bool = False, length: int | None = None, cut: int = 0,
           **kw: Any) -> bytes:
    seg = bytearray(udp.build(src, dst, sport, dport, payload))
    if zero:
        seg[6:8] = b"\0\0"
    if spoil:
        seg[-1] ^= 0x55 if payload else 0
        seg[6] ^= 0 if payload else 0x01
    if length is not None:
        seg[4:6] = length.to_bytes(2, "big")
    body = bytes(seg[:len(seg) - cut])
    return ip_frame(src, dst, udp.PROTO, body, dst_mac=dst_mac, src_mac=PEER_MAC, **kw)


def _play(fast: bool, csum_ok: bool, catch_all: bool) -> tuple[Any, ...]:
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("fpu")
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    if not fast:
        stack.fast_receive = None
    assert stack.udp is not None
    stack.receive(iface, arp_frame(arp.REQUEST, PEER_MAC, PEER_IP, bytes(6), OUR_IP))
    got: dict[str, list[Any]] = {}
    eps = {"specific": stack.udp.open(OUR_IP, 5000), "wild": stack.udp.open(bytes(4), 5001),
           "connected": stack.udp.open(bytes(4), 5002)}
    eps["connected"].connect(PEER_IP, 4000)
    for name, ep in eps.items():
        got[name] = []
        ep.on_readable = (lambda n, e: lambda: got[n].extend(iter(e.recv_full, None)))(
            name, ep)
    caught: list[Any] = []
    if catch_all:
        def hook(header: Any, u: Any, payload: Any) -> bool:
            caught.append((header.dst, u.dst_port, bytes(payload)))
            return u.dst_port == 6000
        stack.udp.catch_all = hook
    dev.sent.clear()
    frames = [
        _frame(5000, b"to the specific endpoint"),
        _frame(5001, b"to the wildcard"),
        _frame(5001, b"odd"),
        _frame(5001, b""),
        _frame(5001, b"no checksum", zero=True),
        _frame(5002, b"from the peer"),
        _frame(5002, b"from a stranger", sport=4001),
        _frame(5000, b"spoiled", spoil=True),
        _frame(5000, b"", spoil=True),
        _frame(5001, b"length past the end", length=40),
        _frame(5001, b"length under the header", length=7),
        _frame(5001, b"shorter length: the rest is padding", length=14, zero=True),
        _frame(5001, b"truncated", cut=20),
        _frame(6000, b"no endpoint: the catch-all's, or port unreachable"),
        _frame(6001, b"no endpoint"),
        _frame(5001, b"with an IP option", options=b"\x01\x00\x00\x00"),
        _frame(5001, b"a first fragment", flags_frag=ipv4.MF),
        _frame(5001, b"broadcast", dst=BCAST_IP, dst_mac=ethernet.BROADCAST),
        _frame(5001, b"to another host", dst=OTHER_IP),
    ]
    padded = _frame(5001, b"p")
    frames.append(padded + b"\xee" * (60 - len(padded)))
    for i, frame in enumerate(frames):
        stack.receive(iface, frame, None, csum_ok)
        if i % 3 == 2:
            loop.run(0)
    loop.run(0)
    # What was sent, without the IP ident (each stack's own by design).
    sent = [(f.ip.proto, f.ip.tos, f.ip.dst, f.payload) if (f := parse_ip(x)) else x[12:14]
            for x in dev.sent]
    return sent, got, caught, dict(stack.counters.snapshot())


@pytest.mark.parametrize("catch_all", [False, True])
@pytest.mark.parametrize("csum_ok", [False, True])
def test_udp_fast_path_decides_as_the_full_path(csum_ok: bool, catch_all: bool) -> None:
    fast = _play(True, csum_ok, catch_all)
    full = _play(False, csum_ok, catch_all)
    assert fast[0] == full[0]
    assert fast[1] == full[1]
    assert fast[2] == full[2]
    assert fast[3] == full[3]
    sent, got, _caught, counters = fast
    # The scenario reached what it meant to.
    assert [d[0] for d in got["specific"]][:1] == [b"to the specific endpoint"]
    assert b"to the wildcard" in [d[0] for d in got["wild"]]
    assert [d[0] for d in got["connected"]] == [b"from the peer"]
    assert counters["udp.not_from_peer"] == 1
    assert counters.get("udp.bad_checksum", 0) == (0 if csum_ok else 2)
    assert counters["udp.no_port"] == (1 if catch_all else 2)
    assert sent, "port unreachable went out"


def test_the_fast_path_takes_a_plain_datagram() -> None:
    """The handler is installed and used: a datagram to a bound port is
    delivered with the IPv4 fast path alone (the full path is not run)."""
    stack = Stack("fpu1")
    iface = stack.add_interface(Recorder(), mac=OUR_MAC, ipv4="192.0.2.2/24")
    assert stack.udp is not None and stack.fast_receive is not None
    ep = stack.udp.open(bytes(4), 5001)
    full = stack.ip_protocols[udp.PROTO]
    stack.ip_protocols[udp.PROTO] = lambda *a: None     # a wrapper: it sees everything
    frame = _frame(5001, b"fast")
    assert stack.fast_receive(iface, frame, False) == 0
    stack.ip_protocols[udp.PROTO] = full
    assert stack.fast_receive(iface, frame, False) == 1
    assert ep.recv() == (b"fast", (PEER_IP, 4000))
