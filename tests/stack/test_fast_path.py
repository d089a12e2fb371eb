"""The receive fast path (``Ipv4.fast_input``: TCP header prediction for an
existing connection, ICMP echo) decides exactly as the full path does.

Each scenario is played twice on identical stacks, once with the fast path and
once without it (``Stack.fast_receive = None``): the segments and ICMP messages
each stack sends, the bytes its connection receives, and every counter must be
the same. The scenarios mix what the fast path takes (in-order data; since
header prediction's refusals go to ``conn.input`` from there, out-of-order
data and a FIN too) with everything it must leave to the full path (bad
checksums, IP options, fragments, padding, broadcast, VLAN tags, our own
source).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from femtolan import Recorder, arp_frame, ip_frame, parse_ip

from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes, tcp
from femtotcp.wire import icmp4 as wire_icmp4
from femtotcp.wire.checksum import FOUR_PIECES, LONG_PIECE, PIECE, reference_checksum

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
BCAST_IP = ip_bytes("192.0.2.255")
PORT = 80
PEER_PORT = 40000




class World(NamedTuple):
    loop: SimLoop
    stack: Stack
    dev: Recorder
    conn: Any
    iss: int
    got: bytearray


def _world(fast: bool, timestamps: bool) -> World:
    loop = SimLoop()
    dev = Recorder()
    stack = Stack("fp", config=StackConfig(tcp=TcpConfig(timestamps=timestamps)))
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    if not fast:
        stack.fast_receive = None
    assert stack.tcp is not None
    stack.receive(iface, arp_frame(arp.REQUEST, PEER_MAC, PEER_IP, bytes(6), OUR_IP))
    lst = stack.tcp.listen(bytes(4), PORT)
    return establish(loop, stack, dev, lst, timestamps, _tcp_frame, _sent, 1460)


def establish(loop: SimLoop, stack: Stack, dev: Recorder, lst: Any, timestamps: bool,
              frame: Callable[..., bytes], sent: Callable[[Recorder], list[tuple[Any, ...]]],
              mss: int) -> World:
    """The peer's handshake with ``lst`` (its segments from ``frame(seq, ack,
    flags, payload, options)``, ours read by ``sent``), from sequence number
    5000; the connection's data is collected in ``World.got``."""
    iface = stack.interfaces[0]
    opts = tcp.build_options(mss=mss, ts=(1, 0)) if timestamps else b""
    stack.receive(iface, frame(5000, 0, tcp.SYN, b"", opts))
    loop.run(0)
    synack = next(s for s in sent(dev) if s[0] == "tcp")
    iss = synack[2]
    stack.receive(iface, frame(5001, iss + 1, tcp.ACK, b"", _ts(timestamps, 2)))
    loop.run(0)
    conn = lst.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    got = bytearray()

    def ev() -> None:
        while (d := conn.recv(1 << 20)):
            got.extend(d)
    conn.on_event = ev
    dev.sent.clear()
    return World(loop, stack, dev, conn, iss, got)


def feed(w: World, frames: list[bytes], csum_ok: bool,
         sent: Callable[[Recorder], list[tuple[Any, ...]]], out: list[Any]) -> None:
    """Hand ``frames`` to the stack (a device batch every three) and add what
    it sends to ``out``."""
    iface = w.stack.interfaces[0]
    for i, frame in enumerate(frames):
        w.stack.receive(iface, frame, None, csum_ok)
        if i % 3 == 2:
            w.loop.run(0)
        out.extend(sent(w.dev))


def _ts(timestamps: bool, val: int) -> bytes:
    return tcp.build_options(ts=(val, 0)) if timestamps else b""


def _tcp_frame(seq: int, ack: int, flags: int, payload: bytes, opts: bytes = b"", *,
               src: bytes = PEER_IP, dst_mac: bytes = OUR_MAC, ip_options: bytes = b"",
               flags_frag: int = 0, window: int = 65535, sport: int = PEER_PORT,
               dport: int = PORT) -> bytes:
    seg = tcp.build(src, OUR_IP, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags,
                    window, payload, opts)
    return ip_frame(src, OUR_IP, tcp.PROTO, seg, dst_mac=dst_mac, src_mac=PEER_MAC,
                    options=ip_options, flags_frag=flags_frag)


def _echo_frame(payload: bytes, *, dst: bytes = OUR_IP, tos: int = 0, code: int = 0,
                ip_options: bytes = b"", flags_frag: int = 0, dst_mac: bytes = OUR_MAC,
                bad: bool = False, rest: int = 0x1234_0001) -> bytes:
    msg = bytearray(wire_icmp4.build(wire_icmp4.ECHO_REQUEST, code, rest, payload))
    if bad:
        msg[2] ^= 0x01
    packet = ipv4.build(PEER_IP, dst, 1, bytes(msg), tos=tos, options=ip_options,
                        flags_frag=flags_frag, ident=7)
    return ethernet.build(dst_mac, PEER_MAC, ethernet.ETH_IPV4, packet)


def _spoil_tcp(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0x5A])


def _spoil_ip(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[14 + 10] ^= 0x10      # the IP header checksum
    return bytes(b)


def _sent(dev: Recorder) -> list[tuple[Any, ...]]:
    """What the stack sent, without what differs between two stacks by design
    (ISS-relative sequence numbers, no IP ident, no timestamp values)."""
    out: list[tuple[Any, ...]] = []
    for frame in dev.sent:
        f = parse_ip(frame)
        if f is None:
            out.append(("other", frame[12:14]))
            continue
        if f.ip.proto == tcp.PROTO:
            hdr, payload = tcp.parse(f.payload, f.ip.src, f.ip.dst)
            o = tcp.parse_options(hdr.options)
            out.append(("tcp", hdr.flags, hdr.seq, hdr.ack, hdr.window, bytes(payload),
                        o.ts_val is not None, o.sack_blocks))
        else:
            out.append(("ip", f.ip.proto, f.ip.tos, f.ip.dst, f.payload))
    dev.sent.clear()
    return out


def _play(fast: bool, timestamps: bool, csum_ok: bool) -> Outcome:
    w = _world(fast, timestamps)
    una = w.iss + 1
    seq = 5001
    tsv = [10]

    def ts() -> bytes:
        tsv[0] += 1
        return _ts(timestamps, tsv[0])

    def data(n: int, at: int | None = None, **kw: Any) -> bytes:
        return _tcp_frame(seq if at is None else at, una, tcp.ACK | tcp.PSH,
                          bytes((at or seq) % 251 for _ in range(n)), ts(), **kw)

    frames: list[bytes] = []
    # In order (the fast path), one with Ethernet padding after it.
    for _ in range(3):
        frames.append(data(700))
        seq += 700
    short = data(1)
    frames.append(short + b"\xee" * (60 - len(short)) if len(short) < 60 else short)
    seq += 1
    # Bad checksums: TCP (vouched-for frames keep it), and the IP header.
    frames.append(_spoil_tcp(data(300)))
    if csum_ok:
        seq += 300          # vouched for: the spoiled segment is taken, in order
    frames.append(_spoil_ip(data(300)))
    # IP options (a NOP, padded): the full path takes it.
    frames.append(data(200, ip_options=b"\x01\x00\x00\x00"))
    seq += 200
    # Not for the fast path: a fragment, broadcast MAC, a VLAN tag, our own
    # source, a truncated datagram.
    frames.append(data(100, flags_frag=ipv4.MF))
    frames.append(data(100, dst_mac=ethernet.BROADCAST))
    untagged = data(100)
    frames.append(untagged[:12] + b"\x81\x00\x00\x05" + untagged[12:])
    frames.append(data(100, src=OUR_IP))
    frames.append(data(100)[:-20])
    # Out of order, then the hole filled; a window change; a pure ACK.
    frames.append(data(500, at=seq + 400))
    frames.append(data(400))
    seq += 900
    frames.append(data(100, window=30000))
    seq += 100
    frames.append(_tcp_frame(seq, una, tcp.ACK, b"", ts()))
    # Echo requests: plain, odd length, TOS, code, bad checksum, to the
    # subnet broadcast, with IP options, a first fragment, too short.
    frames.append(_echo_frame(b"ping" * 14))
    frames.append(_echo_frame(b"odd"))
    frames.append(_echo_frame(b"", tos=0x10, code=3))
    frames.append(_echo_frame(b"x" * 20, bad=True))
    frames.append(_echo_frame(b"x" * 20, dst=BCAST_IP, dst_mac=ethernet.BROADCAST))
    frames.append(_echo_frame(b"x" * 20, dst=BCAST_IP))
    frames.append(_echo_frame(b"x" * 20, ip_options=b"\x01\x00\x00\x00"))
    frames.append(_echo_frame(b"x" * 40, flags_frag=ipv4.MF))
    frames.append(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                                 ipv4.build(PEER_IP, OUR_IP, 1, b"\x08\x00\xf7\xff")))
    # The peer closes.
    frames.append(_tcp_frame(seq, una, tcp.ACK | tcp.FIN, b"", ts()))
    sent: list[Any] = []
    feed(w, frames, csum_ok, _sent, sent)
    return finish(w, sent, _sent)


Outcome = tuple[list[Any], bytes, dict[str, int]]


def finish(w: World, sent: list[Any], read: Callable[[Recorder], list[tuple[Any, ...]]]
           ) -> Outcome:
    """After the peer's FIN: everything the stack sent (TCP sequence numbers
    relative to its ISS, so two stacks compare), the data its connection
    received, and its counters."""
    w.loop.run(0)
    sent.extend(read(w.dev))
    rel = [(s[0], s[1], (s[2] - w.iss) & 0xFFFFFFFF, *s[3:]) if s[0] == "tcp" else s
           for s in sent]
    assert w.conn.state == "CLOSE_WAIT"
    return rel, bytes(w.got), dict(w.stack.counters.snapshot())


def same_on_both(play: Callable[[bool], Outcome]) -> Outcome:
    """``play(fast)`` with the fast path and without: the same outcome."""
    fast = play(True)
    full = play(False)
    assert fast[0] == full[0]
    assert fast[1] == full[1]
    assert fast[2] == full[2]
    return fast


@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("csum_ok", [False, True])
def test_fast_path_decides_as_the_full_path(timestamps: bool, csum_ok: bool) -> None:
    fast = same_on_both(lambda f: _play(f, timestamps, csum_ok))
    counters = {k: 0 for k in ("tcp.bad_checksum",)} | fast[2]
    # The scenario reached what it meant to: drops counted, echoes answered.
    assert counters["ipv4.bad_checksum"] == 1
    assert counters["tcp.bad_checksum"] == (0 if csum_ok else 1)
    assert counters["icmp4.bad_checksum"] == 1
    assert counters["icmp4.echo_replied"] == 4
    assert counters["ipv4.land"] == 1
    replies = [s for s in fast[0] if s[0] == "ip" and s[1] == 1]
    assert [wire_icmp4.parse(s[4])[0].type for s in replies] == [0] * 4
    assert replies[2][2] == 0x10        # the TOS of the request comes back


#: TCP segment lengths (32-byte header with timestamps) around where
#: ``wire.checksum.sum_value`` changes its way: one piece, four (MTU sizes,
#: odd and even), then pieces of LONG_PIECE with the last one short and
#: odd, whole, and 44 MSS-sized segments in one.
LONG = (PIECE, PIECE + 1, 1479, 1480, FOUR_PIECES, FOUR_PIECES + 1, 2 * LONG_PIECE,
        2 * LONG_PIECE + 1, 9001, 9000, 32 + 44 * 1448, 33 + 44 * 1448)


def _ref_tcp_frame(seq: int, ack: int, payload: bytes, tsval: int) -> bytes:
    """A data segment whose checksum is the plain word loop's
    (``reference_checksum``), not the stack's own code's."""
    seg = bytearray(tcp.build(PEER_IP, OUR_IP, PEER_PORT, PORT, seq & 0xFFFFFFFF,
                              ack & 0xFFFFFFFF, tcp.ACK, 65535, payload, _ts(True, tsval)))
    seg[16:18] = b"\0\0"
    pseudo = PEER_IP + OUR_IP + bytes((0, tcp.PROTO)) + len(seg).to_bytes(2, "big")
    seg[16:18] = reference_checksum(pseudo + bytes(seg)).to_bytes(2, "big")
    return ip_frame(PEER_IP, OUR_IP, tcp.PROTO, bytes(seg), dst_mac=OUR_MAC, src_mac=PEER_MAC)


def _play_lengths(fast: bool) -> Outcome:
    """Segments of every length ``sum_value`` treats its own way (``LONG``),
    up to a GRO device's super-frames, whose checksum the stack verifies,
    good and spoiled."""
    w = _world(fast, True)
    w.dev.gro = True
    una = w.iss + 1
    seq = 5001
    frames: list[bytes] = []
    for i, n in enumerate(LONG):
        payload = bytes((seq + k) % 253 for k in range(n - 32))
        frame = _ref_tcp_frame(seq, una, payload, 10 + i)
        if i % 3 == 1:
            frames.append(_spoil_tcp(frame))        # dropped, then sent again
        frames.append(frame)
        seq += n - 32
    frames.append(_tcp_frame(seq, una, tcp.ACK | tcp.FIN, b"", _ts(True, 99)))
    sent: list[Any] = []
    feed(w, frames, False, _sent, sent)
    return finish(w, sent, _sent)


def test_segments_of_every_length_are_verified_alike() -> None:
    fast = same_on_both(_play_lengths)
    assert fast[2]["tcp.bad_checksum"] == 4
    assert len(fast[1]) == sum(n - 32 for n in LONG)


def test_echo_reply_is_what_the_full_path_builds() -> None:
    """Byte for byte, checksum included, for payloads whose reply checksum
    lands on the edge cases (0 and 0xFFFF) as well as ordinary ones."""
    cases = [(code, rest, p) for code in (0, 1) for rest in (0x1234_0001, 0, 0xFFFF_0000)
             for p in (b"", b"\x00", b"a", b"abc" * 7, bytes(64), b"\xf7\xff", b"\x08\x00")]
    want = [wire_icmp4.build(wire_icmp4.ECHO_REPLY, code, rest, p) for code, rest, p in cases]
    # Among them: an all-zero reply (checksum 0xFFFF) and a non-zero one whose
    # words sum to 0xFFFF (checksum 0).
    assert {m[2:4] for m in want} >= {b"\xff\xff", b"\x00\x00"}
    for fast in (True, False):
        w = _world(fast, False)
        iface = w.stack.interfaces[0]
        for code, rest, p in cases:
            w.stack.receive(iface, _echo_frame(p, code=code, rest=rest))
        assert [s[4] for s in _sent(w.dev) if s[0] == "ip"] == want


def test_segment_from_our_own_address_is_land_on_both_paths() -> None:
    """A frame from the wire claiming our own address as its source is dropped
    (ipv4.land) even when its 4-tuple names a live connection: one to ourselves."""
    for fast in (True, False):
        w = _world(fast, False)
        stack, iface = w.stack, w.stack.interfaces[0]
        assert stack.tcp is not None
        lst = stack.tcp.listen(OUR_IP, 8080)
        client = stack.tcp.connect(OUR_IP, 8080)
        w.loop.run(0.1)
        server = lst.accept()
        assert server is not None and client.state == "ESTABLISHED"
        # Exactly what the server predicts next from the client (the window it
        # knows included), so only the source check stands in the way.
        window = server.snd.snd_wnd >> server.opt.snd_wscale
        seg = tcp.build(OUR_IP, OUR_IP, client.local[1], 8080, server.rcv_nxt & 0xFFFFFFFF,
                        server.snd_una & 0xFFFFFFFF, tcp.ACK, window, b"spoofed")
        before = server.rcv_nxt
        stack.receive(iface, ip_frame(OUR_IP, OUR_IP, tcp.PROTO, seg, dst_mac=OUR_MAC,
                                      src_mac=PEER_MAC))
        assert stack.counters["ipv4.land"] == 1
        assert server.rcv_nxt == before


def test_a_wrapped_protocol_handler_sees_every_datagram() -> None:
    """Whoever wraps a protocol's entry in ``ip_protocols`` (the gateway does
    for ICMP) gets every datagram of it: the fast path steps aside."""
    w = _world(True, False)
    stack, iface = w.stack, w.stack.interfaces[0]
    seen: list[int] = []
    for proto in (1, tcp.PROTO):
        inner = stack.ip_protocols[proto]

        def spy(*args: Any, _inner: Any = inner, _proto: int = proto) -> None:
            seen.append(_proto)
            _inner(*args)
        stack.ip_protocols[proto] = spy
    stack.receive(iface, _echo_frame(b"hello"))
    stack.receive(iface, _tcp_frame(5001, w.iss + 1, tcp.ACK | tcp.PSH, b"data"))
    w.loop.run(0)
    assert seen == [1, tcp.PROTO]
    assert bytes(w.got) == b"data"
    assert [s[1] for s in _sent(w.dev) if s[0] == "ip"] == [1]   # the echo was answered


def _play_exchange(fast: bool, timestamps: bool, answer: bool) -> Outcome:
    """Request and response: our side sends, the peer's data acknowledges it
    (the fast path takes data that also ACKs new data), with one such ACK
    beyond what was sent (the full path: a challenge ACK), one partial ACK,
    and, with ``answer``, the program answering at once from its event."""
    w = _world(fast, timestamps)
    una = w.iss + 1
    seq = 5001
    tsv = [10]
    sent: list[Any] = []
    iface = w.stack.interfaces[0]
    if answer:
        collect = w.conn.on_event

        def reply() -> None:
            before = len(w.got)
            assert collect is not None
            collect()
            if len(w.got) > before:
                w.conn.send(b"r" * 20)
        w.conn.on_event = reply
    for i in range(6):
        if not answer or i == 0:
            w.conn.send(b"q" * 50)
        w.loop.run(0)
        sent.extend(_sent(w.dev))
        tsv[0] += 1
        acked = min(una + 50, w.iss + 1 + (w.conn.snd.snd_max - w.conn.snd.iss - 1))
        if i == 4:
            acked = una + 10            # part of what was sent
        payload = bytes([i]) * (30 + i)
        if i == 2:                      # first with an ACK beyond SND.MAX: dropped
            w.stack.receive(iface, _tcp_frame(seq, una + 5000, tcp.ACK | tcp.PSH, payload,
                                              _ts(timestamps, tsv[0])))
            w.loop.run(0)
            sent.extend(_sent(w.dev))
        w.stack.receive(iface, _tcp_frame(seq, acked, tcp.ACK | tcp.PSH, payload,
                                          _ts(timestamps, tsv[0])))
        w.loop.run(0)
        sent.extend(_sent(w.dev))
        seq += 30 + i
        una = acked
    w.loop.run(1.0)         # delayed ACKs, retransmissions of what was left unacked
    sent.extend(_sent(w.dev))
    w.stack.receive(iface, _tcp_frame(seq, w.conn.snd.snd_max & 0xFFFFFFFF,
                                      tcp.ACK | tcp.FIN, b"", _ts(timestamps, tsv[0] + 1)))
    return finish(w, sent, _sent)


@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("answer", [False, True])
def test_data_that_acknowledges_data_is_taken_as_the_full_path_takes_it(
        timestamps: bool, answer: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from femtotcp.proto.tcp.connection import TcpConnection
    full_inputs: list[int] = []
    original = TcpConnection._full_input

    def counting(self: TcpConnection, *args: Any) -> bool:
        segment, hlen = args[4], args[5]
        full_inputs.append(len(segment) - hlen)
        return original(self, *args)

    monkeypatch.setattr(TcpConnection, "_full_input", counting)
    fast = same_on_both(lambda f: _play_exchange(f, timestamps, answer))
    assert fast[1] == b"".join(bytes([i]) * (30 + i) for i in range(6))
    assert fast[2]["tcp.ack_unsent_data"] == 1
    full_inputs.clear()
    _play_exchange(True, timestamps, answer)
    # Only the handshake's last ACK, the unacceptable ACK and the FIN went to
    # the full path.
    assert full_inputs == [0, 32, 0]


def play_listener(w: World, frame: Callable[..., bytes],
                  sent: Callable[[Recorder], list[tuple[Any, ...]]],
                  **ip_odd: Any) -> tuple[list[Any], dict[str, int], list[Any]]:
    """Segments for no connection, to the listener on ``PORT`` (opening
    handshakes, cookie ones when the SYN queue is full, and every kind of
    segment LISTEN refuses) and to a port without one. ``frame(seq, ack,
    flags, payload, opts, sport=, dport=, **kw)`` builds the peer's segment;
    ``ip_odd`` is a keyword that sends it the full path's way (IP options, an
    extension header). The stack's ISN and cookie secrets are fixed, so two
    stacks send the same sequence numbers. Returns what the stack sent, its
    counters, and the connections it holds (state and both sequence spaces)."""
    from femtotcp.proto.tcp.isn import IsnGenerator, SynCookies
    stack, iface = w.stack, w.stack.interfaces[0]
    tcpl = stack.tcp
    assert tcpl is not None
    tcpl.isn = IsnGenerator(b"i" * 32)
    tcpl.cookies = SynCookies(b"c" * 32)
    out: list[Any] = []
    syn_opts = tcp.build_options(mss=1400, wscale=7, sack_perm=True, ts=(77, 0))

    def rx(f: bytes, csum_ok: bool = False) -> list[Any]:
        stack.receive(iface, f, None, csum_ok)
        w.loop.run(0)
        got = sent(w.dev)
        out.extend(got)
        return got

    def handshake(sport: int, **kw: Any) -> None:
        got = rx(frame(9000, 0, tcp.SYN, b"", syn_opts, sport=sport, **kw))
        synacks = [g for g in got if g[0] == "tcp" and g[1] == tcp.SYN | tcp.ACK]
        if synacks:
            rx(frame(9001, synacks[0][2] + 1, tcp.ACK, b"", tcp.build_options(ts=(78, 1)),
                     sport=sport, **kw))
            # and one with a wrong acknowledgment: LISTEN resets it (no cookie)
            rx(frame(9001, synacks[0][2] + 7, tcp.ACK, b"", b"", sport=sport + 500, **kw))

    handshake(41001)
    handshake(41002, **ip_odd)
    rx(_spoiled(frame(9000, 0, tcp.SYN, b"", syn_opts, sport=41003)))
    rx(_spoiled(frame(9000, 0, tcp.SYN, b"", syn_opts, sport=41004)), csum_ok=True)
    rx(frame(9000, 0, tcp.SYN | tcp.FIN, b"", b"", sport=41005))
    rx(frame(9000, 12345, tcp.ACK, b"", b"", sport=41006))
    rx(frame(9000, 12345, tcp.RST, b"", b"", sport=41007))
    rx(frame(9000, 0, tcp.RST | tcp.ACK, b"", b"", sport=41008))
    rx(frame(9000, 0, 0, b"", b"", sport=41009))
    rx(frame(9000, 0, tcp.PSH, b"text", b"", sport=41010))
    rx(frame(9000, 0, tcp.SYN, b"text on a SYN", syn_opts, sport=41011))
    rx(frame(9000, 0, tcp.SYN, b"", b"\x02\x01\x01\x01", sport=41012))   # bad option
    rx(frame(9000, 0, tcp.SYN | tcp.URG | tcp.ECE | tcp.CWR, b"", b"", sport=41013))
    rx(frame(9000, 0, tcp.SYN, b"", syn_opts, sport=41014, dport=PORT + 1))   # no listener
    rx(frame(9000, 0, tcp.ACK, b"", b"", sport=41015, dport=PORT + 1))
    rx(frame(9000, 0, tcp.SYN, b"", syn_opts, sport=41001))     # the connection's now
    conns = sorted((c.remote[1], c.state_name, c.snd_una, c.rcv_nxt)
                   for c in tcpl.connections() if c.remote[1] != PEER_PORT)
    return out, dict(stack.counters.snapshot()), conns


def _spoiled(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[-1] ^= 0x5A if len(b) > 60 else 0
    b[-3] ^= 0x21               # in the TCP header's options or payload
    return bytes(b)


@pytest.mark.parametrize("cookies", [False, True])
def test_segments_for_a_listener_decide_as_the_full_path(cookies: bool) -> None:
    """A segment for no connection takes the fast path to a listener (SYNs,
    the ACK of a cookie handshake) and the full path elsewhere: the same
    answers, counters and connections either way."""
    def play(fast: bool) -> tuple[list[Any], dict[str, int], list[Any]]:
        w = _world(fast, True)
        if cookies:
            assert w.stack.tcp is not None
            w.stack.tcp.config.max_syn_backlog = 0
        return play_listener(w, _tcp_frame, _sent, ip_options=b"\x01\x00\x00\x00")
    fast = play(True)
    full = play(False)
    assert fast == full
    sent, counters, conns = fast
    # The scenario reached what it meant to.
    assert [c[:2] for c in conns] == [(41001, "ESTABLISHED"), (41002, "ESTABLISHED")] + (
        [] if cookies else [(41004, "SYN_RECEIVED"), (41011, "SYN_RECEIVED"),
                            (41012, "SYN_RECEIVED"), (41013, "SYN_RECEIVED")])
    assert counters["tcp.bad_checksum"] == 1
    assert counters["tcp.syn_fin_dropped"] == 1
    assert counters["tcp.listen_no_syn"] == 2
    assert counters.get("tcp.syncookies_accepted", 0) == (2 if cookies else 0)
    assert counters["tcp.no_socket"] == 2
    assert counters["tcp.listen_bad_ack"] == 3
    assert counters.get("tcp.syn_data_dropped", 0) == (0 if cookies else len(b"text on a SYN"))
