"""The IPv6 receive fast path (``Ipv6.fast_input``: TCP header prediction for
an existing connection, ICMPv6 echo) decides exactly as the full path does.

As ``test_fast_path.py`` for IPv4: each scenario is played on two identical
stacks, one with the fast path and one without (``Stack.fast_receive6 =
None``), and what each sends, what its connection receives and every counter
must be the same. The scenarios mix what the fast path takes with everything
it must leave to the full path: bad checksums, extension headers, fragments,
multicast, odd sources, tentative and duplicate addresses, truncation, a hop
limit of 0, VLAN tags, out-of-order data, echo requests of every kind.
"""

from __future__ import annotations

from typing import Any

import pytest
from femtolan import Recorder
from test_fast_path import (
    Outcome,
    World,
    establish,
    feed,
    finish,
    play_listener,
    same_on_both,
)

from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mac_bytes, ndp, tcp

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("2001:db8::2")
OTHER_IP = ip_bytes("2001:db8::3")       # ours too; tentative, then duplicate, in the play
PEER_IP = ip_bytes("2001:db8::1")
MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
PORT = 80
#: Sources the fast path leaves to the full one: ours, multicast, ::, ::1,
#: v4-mapped, v4-compatible (deprecated, RFC 4291 2.5.5.1: the full path decides).
ODD_SOURCES = (OUR_IP, ipv6.ALL_NODES, ipv6.UNSPECIFIED, ipv6.LOOPBACK,
               ipv6.v4_mapped(ip_bytes("192.0.2.1")), bytes(12) + ip_bytes("192.0.2.1"))
PEER_PORT = 40000


def _frame(payload: bytes, nh: int = tcp.PROTO, *, src: bytes = PEER_IP,
           dst: bytes = OUR_IP, dst_mac: bytes = OUR_MAC, hop: int = 64, tclass: int = 0,
           ext: bytes = b"") -> bytes:
    """``ext``: extension headers, the first byte of the last one already
    naming ``nh``; the fixed header then names the first (from ``ext_nh``)."""
    first = nh if not ext else ext[-1]
    body = ext[:-1] + payload if ext else payload
    return ethernet.build(dst_mac, PEER_MAC, ethernet.ETH_IPV6,
                          ipv6.build(src, dst, first, body, hop, tclass))


def _hbh(nh: int) -> bytes:
    """A Hop-by-Hop header (a PadN) naming ``nh``, plus its own type (0) last."""
    return ipv6ext.build_hop_by_hop(nh, []) + bytes((ipv6.PROTO_HOPOPTS,))


def _frag(nh: int, more: bool) -> bytes:
    return ipv6ext.build_fragment(nh, 0, more, 77) + bytes((ipv6.PROTO_FRAGMENT,))


def _tcp_frame(seq: int, ack: int, flags: int, payload: bytes, opts: bytes = b"", *,
               window: int = 65535, src: bytes = PEER_IP, dst: bytes = OUR_IP,
               sport: int = PEER_PORT, dport: int = PORT, **kw: Any) -> bytes:
    seg = tcp.build(src, dst, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags,
                    window, payload, opts)
    return _frame(seg, src=src, dst=dst, **kw)


def _echo_frame(payload: bytes, *, src: bytes = PEER_IP, dst: bytes = OUR_IP, code: int = 0,
                bad: bool = False, rest: int = 0x1234_0001, **kw: Any) -> bytes:
    msg = bytearray(icmp6.build(src, dst, icmp6.ECHO_REQUEST, code, rest, payload))
    if bad:
        msg[2] ^= 0x01
    return _frame(bytes(msg), ipv6.PROTO_ICMP6, src=src, dst=dst, **kw)


def _ts(timestamps: bool, val: int) -> bytes:
    return tcp.build_options(ts=(val, 0)) if timestamps else b""


def _world(fast: bool, timestamps: bool) -> World:
    loop = SimLoop()
    dev = Recorder()
    # No link-local address: it comes from a per-stack secret, and two stacks
    # must send the same bytes.
    stack = Stack("fp6", modules=MODULES, config=StackConfig(
        tcp=TcpConfig(timestamps=timestamps), ipv6_link_local=False))
    iface = stack.add_interface(dev, mac=OUR_MAC)
    assert stack.ipv6 is not None and stack.tcp is not None
    stack.ipv6.add_address(iface, OUR_IP, 64)
    loop.add_stack(stack)
    stack.start()
    loop.run(3.0)                   # DAD
    assert OUR_IP in stack.local_addresses
    if not fast:
        stack.fast_receive6 = None
    # The peer's solicitation: its MAC is known (STALE), our answer goes out.
    stack.receive(iface, _frame(ndp.build_ns(PEER_IP, ipv6.solicited_node(OUR_IP), OUR_IP,
                                             PEER_MAC), ipv6.PROTO_ICMP6,
                                dst=ipv6.solicited_node(OUR_IP),
                                dst_mac=ipv6.multicast_mac(ipv6.solicited_node(OUR_IP)),
                                hop=255))
    lst = stack.tcp.listen(bytes(16), PORT)
    return establish(loop, stack, dev, lst, timestamps, _tcp_frame, _sent, 1440)


def _sent(dev: Recorder) -> list[tuple[Any, ...]]:
    """What the stack sent, without what differs between two stacks by design:
    ISS-relative sequence numbers (made so by ``_play``), no timestamp values,
    no flow label of a connection (random per connection, RFC 6437), no
    content of neighbour discovery and MLD messages (nonces)."""
    out: list[tuple[Any, ...]] = []
    for frame in dev.sent:
        try:
            eth, body = ethernet.parse(frame)
            h, payload = ipv6.parse(body)
        except Malformed:
            out.append(("other", frame[12:14]))
            continue
        if h.next_header == tcp.PROTO:
            hdr, data = tcp.parse(payload, h.src, h.dst)
            o = tcp.parse_options(hdr.options)
            out.append(("tcp", hdr.flags, hdr.seq, hdr.ack, hdr.window, bytes(data),
                        o.ts_val is not None, o.sack_blocks, h.hop_limit, h.traffic_class,
                        h.src, h.dst, eth.dst))
            continue
        upper, offset = ipv6ext.skip_chain(h.next_header, payload)
        kind = payload[offset] if upper == ipv6.PROTO_ICMP6 else -1
        if kind in (icmp6.ECHO_REQUEST, icmp6.ECHO_REPLY):
            out.append(("ip6", h.next_header, h.hop_limit, h.traffic_class, h.flow_label,
                        h.src, h.dst, eth.dst, bytes(payload)))
        elif 0 <= kind < 128:
            # An error: its quote holds the ISS-based acknowledgment; the
            # message up to the quoted IPv6 header, and the quote's length.
            out.append(("ip6", h.next_header, h.hop_limit, h.traffic_class, h.flow_label,
                        h.src, h.dst, eth.dst, bytes(payload[:48]), len(payload)))
        else:
            out.append(("ip6", h.next_header, upper, kind, h.src, h.dst))
    dev.sent.clear()
    return out


def _play(fast: bool, timestamps: bool, csum_ok: bool) -> Outcome:
    w = _world(fast, timestamps)
    stack, iface = w.stack, w.stack.interfaces[0]
    assert stack.ipv6 is not None
    una = w.iss + 1
    seq = 5001
    tsv = [10]

    def ts() -> bytes:
        tsv[0] += 1
        return _ts(timestamps, tsv[0])

    def data(n: int, at: int | None = None, **kw: Any) -> bytes:
        return _tcp_frame(seq if at is None else at, una, tcp.ACK | tcp.PSH,
                          bytes((at or seq) % 251 for _ in range(n)), ts(), **kw)

    def play(frames: list[bytes]) -> None:
        feed(w, frames, csum_ok, _sent, sent)
        frames.clear()

    sent: list[Any] = []
    frames: list[bytes] = []
    # In order (the fast path), one with trailing padding, one with a traffic class.
    for _ in range(3):
        frames.append(data(700))
        seq += 700
    frames.append(data(1) + b"\xee" * 7)
    seq += 1
    frames.append(data(50, tclass=0xB8))
    seq += 50
    # A bad TCP checksum (a vouched-for frame keeps it).
    frames.append(data(300)[:-1] + b"\x5a")
    if csum_ok:
        seq += 300          # vouched for: the spoiled segment is taken, in order
    # Extension headers before TCP: Hop-by-Hop, an atomic fragment (whole on
    # its own, RFC 6946) and a first fragment that never completes.
    frames.append(data(200, ext=_hbh(tcp.PROTO)))
    seq += 200
    frames.append(data(200, ext=_frag(tcp.PROTO, False)))
    seq += 200
    frames.append(data(100, ext=_frag(tcp.PROTO, True)))
    # Not for the fast path: hop limit 0, a multicast MAC, a VLAN tag, odd
    # sources (ours, multicast, ::, loopback, v4-mapped), a multicast
    # destination, a truncated packet, a wrong IP version, a runt.
    frames.append(data(100, hop=0))
    seq += 100          # a host takes it (the hop limit is a router's business)
    frames.append(data(100, dst_mac=ipv6.multicast_mac(ipv6.ALL_NODES)))
    untagged = data(100)
    frames.append(untagged[:12] + b"\x81\x00\x00\x05" + untagged[12:])
    for src in ODD_SOURCES:
        frames.append(data(100, src=src))
    frames.append(data(100, dst=ipv6.ALL_NODES))
    frames.append(data(100)[:-20])
    wrong = bytearray(data(100))
    wrong[14] = 0x40
    frames.append(bytes(wrong))
    frames.append(data(100)[:60])
    # Out of order, then the hole filled; a window change; a pure ACK.
    frames.append(data(500, at=seq + 400))
    frames.append(data(400))
    seq += 900
    frames.append(data(100, window=30000))
    seq += 100
    frames.append(_tcp_frame(seq, una, tcp.ACK, b"", ts()))
    # Echo requests: plain, odd length, traffic class, code, bad checksum, to
    # all-nodes, with a Hop-by-Hop header, a first fragment, too short, with
    # hop limit 0, to an address not ours.
    frames.append(_echo_frame(b"ping" * 14))
    frames.append(_echo_frame(b"odd"))
    frames.append(_echo_frame(b"", tclass=0x10, code=3))
    frames.append(_echo_frame(b"x" * 20, bad=True))
    frames.append(_echo_frame(b"x" * 20, dst=ipv6.ALL_NODES,
                              dst_mac=ipv6.multicast_mac(ipv6.ALL_NODES)))
    frames.append(_echo_frame(b"x" * 20, ext=_hbh(ipv6.PROTO_ICMP6)))
    frames.append(_echo_frame(b"x" * 40, ext=_frag(ipv6.PROTO_ICMP6, True)))
    frames.append(_frame(b"\x80\x00\x7f\xff", ipv6.PROTO_ICMP6))
    frames.append(_echo_frame(b"hop0", hop=0))
    frames.append(_echo_frame(b"x", dst=ip_bytes("2001:db8::99")))
    for src in ODD_SOURCES:
        frames.append(_echo_frame(b"odd source", src=src))
    play(frames)
    # OUR_IP tentative again (removed and re-added: DAD runs), then duplicate:
    # the connection's segments and echo requests to it are not ours.
    stack.ipv6.remove_address(iface, OUR_IP)
    entry = stack.ipv6.add_address(iface, OUR_IP, 64)
    assert entry.state == "tentative" and OUR_IP not in stack.local_addresses
    frames += [data(100), _echo_frame(b"tentative")]
    play(frames)
    stack.ipv6.address_duplicate(iface, entry)
    frames += [data(100), _echo_frame(b"duplicate")]
    play(frames)
    # Usable again: the stream goes on; the peer closes.
    entry = stack.ipv6.add_address(iface, OUR_IP, 64)
    stack.ipv6.ndp.cancel_dad(iface, entry)
    stack.ipv6.address_ready(iface, entry)
    frames += [data(100), _echo_frame(b"back")]
    seq += 100
    frames.append(_tcp_frame(seq, una, tcp.ACK | tcp.FIN, b"", ts()))
    play(frames)
    return finish(w, sent, _sent)


@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("csum_ok", [False, True])
def test_fast_path6_decides_as_the_full_path(timestamps: bool, csum_ok: bool) -> None:
    fast = same_on_both(lambda f: _play(f, timestamps, csum_ok))
    counters = {k: 0 for k in ("tcp.bad_checksum",)} | fast[2]
    # A first fragment not a multiple of 8 bytes long earns a Parameter
    # Problem (RFC 8200 4.5): with timestamps, 140 bytes.
    errors = [s for s in fast[0] if s[0] == "ip6" and len(s) == 10]
    assert [e[8][:2] for e in errors] == ([b"\x04\x00"] if timestamps else [])
    # The scenario reached what it meant to: drops counted, echoes answered.
    assert counters["tcp.bad_checksum"] == (0 if csum_ok else 1)
    assert counters["icmp6.bad_checksum"] == 1
    assert counters["icmp6.truncated"] == 1
    for name in ("ipv6.land", "ipv6.multicast_source", "ipv6.loopback_address",
                 "ipv6.v4_mapped_address"):
        assert counters[name] == 2, name         # a segment and an echo request each
    assert counters["ipv6.not_for_us"] == 5      # tentative, duplicate, not ours
    assert counters["ipv6.atomic_fragment"] == 1
    assert counters["ipv6.bad_version"] == 1
    replies = [s for s in fast[0] if s[0] == "ip6" and s[1] == ipv6.PROTO_ICMP6
               and len(s) > 6 and s[8][0] == icmp6.ECHO_REPLY]
    # plain, odd, tclass, all-nodes, Hop-by-Hop, hop limit 0, back. From ::
    # neither the segment nor the echo is answered (Linux); from a
    # v4-compatible address both are, but there is no route back, and an echo
    # not sent is not counted as answered.
    assert len(replies) == 7 and counters["icmp6.echo_replied"] == 7
    assert counters["ipv6.tcp_from_unspecified"] == 1
    assert counters["icmp6.echo_from_unspecified"] == 1
    assert counters.get("ipv6.tx_martian", 0) == 0 and counters["ipv6.no_route"] == 2
    assert replies[2][3] == 0x10        # the traffic class of the request comes back
    assert replies[3][5] == OUR_IP      # to all-nodes: from the address source selection picks


def test_fast_path6_takes_the_common_case() -> None:
    """In-order data and echo requests do go the fast way (the stand-in
    handlers run), and a stack without the fast path still answers."""
    w = _world(True, False)
    stack, iface = w.stack, w.stack.interfaces[0]
    assert stack.ipv6 is not None and stack.fast_receive6 == stack.ipv6.fast_input
    taken: list[int] = []
    for nh, (handler, full) in list(stack.ipv6.fast_protocols.items()):
        def spy(*args: Any, _h: Any = handler, _nh: int = nh) -> int:
            done: int = _h(*args)
            taken.append(_nh * 10 + done)
            return done
        stack.ipv6.fast_protocols[nh] = (spy, full)
    stack.receive(iface, _tcp_frame(5001, w.iss + 1, tcp.ACK | tcp.PSH, b"data"))
    stack.receive(iface, _echo_frame(b"hello"))
    w.loop.run(0)
    assert taken == [tcp.PROTO * 10 + 1, ipv6.PROTO_ICMP6 * 10 + 1]
    assert bytes(w.got) == b"data"


def test_echo6_reply_is_what_the_full_path_builds() -> None:
    """Byte for byte, checksum included, for messages whose reply checksum
    lands on 0 as well as on ordinary values."""
    cases = [(code, rest, p) for code in (0, 1, 0xFF) for rest in (0x1234_0001, 0, 0xFFFF_0000)
             for p in (b"", b"\x00", b"a", b"abc" * 7, bytes(64), b"\xf7\xff", b"\x80\x00")]
    # A payload that makes the reply's checksum 0 (its words sum to 0xFFFF).
    base = icmp6.build(OUR_IP, PEER_IP, icmp6.ECHO_REPLY, 0, 0, b"\x00\x00")
    fill = base[2:4]
    cases.append((0, 0, fill))
    want = [icmp6.build(OUR_IP, PEER_IP, icmp6.ECHO_REPLY, 0, rest, p) for _, rest, p in cases]
    assert b"\x00\x00" in {m[2:4] for m in want}
    for fast in (True, False):
        w = _world(fast, False)
        iface = w.stack.interfaces[0]
        for code, rest, p in cases:
            w.stack.receive(iface, _echo_frame(p, code=code, rest=rest))
        assert [s[8] for s in _sent(w.dev) if s[0] == "ip6"] == want


def test_a_wrapped_next_header_handler_sees_every_packet() -> None:
    """Whoever wraps an entry of ``Ipv6.protocols`` (the gateway does for
    ICMPv6) gets every packet of it: the fast path steps aside."""
    w = _world(True, False)
    stack, iface = w.stack, w.stack.interfaces[0]
    assert stack.ipv6 is not None
    seen: list[int] = []
    for nh in (ipv6.PROTO_ICMP6, tcp.PROTO):
        inner = stack.ipv6.protocols[nh]

        def spy(*args: Any, _inner: Any = inner, _nh: int = nh) -> None:
            seen.append(_nh)
            _inner(*args)
        stack.ipv6.protocols[nh] = spy
    stack.receive(iface, _echo_frame(b"hello"))
    stack.receive(iface, _tcp_frame(5001, w.iss + 1, tcp.ACK | tcp.PSH, b"data"))
    w.loop.run(0)
    assert seen == [ipv6.PROTO_ICMP6, tcp.PROTO]
    assert bytes(w.got) == b"data"
    assert [s[1] for s in _sent(w.dev) if s[0] == "ip6"] == [ipv6.PROTO_ICMP6]


@pytest.mark.parametrize("cookies", [False, True])
def test_segments_for_a_listener6_decide_as_the_full_path(cookies: bool) -> None:
    """IPv6 segments for no connection: the fast path to a listener on ``::``
    and the full one (a Hop-by-Hop header, no listener) decide alike."""
    def play(fast: bool) -> tuple[list[Any], dict[str, int], list[Any]]:
        w = _world(fast, True)
        if cookies:
            assert w.stack.tcp is not None
            w.stack.tcp.config.max_syn_backlog = 0
        return play_listener(w, _tcp_frame, _sent, ext=_hbh(tcp.PROTO))
    fast = play(True)
    assert fast == play(False)
    sent, counters, conns = fast
    assert [c[:2] for c in conns][:2] == [(41001, "ESTABLISHED"), (41002, "ESTABLISHED")]
    assert counters["tcp.no_socket"] == 2 and counters["tcp.listen_bad_ack"] == 3
    assert counters.get("tcp.syncookies_accepted", 0) == (2 if cookies else 0)
