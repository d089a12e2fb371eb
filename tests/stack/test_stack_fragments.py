"""Fragmentation on output and bounded reassembly on input (RFC 791 3.2, RFC 815)."""

from __future__ import annotations

import pytest
from femtolan import (
    SNIFF_IP,
    SNIFF_MAC,
    addr,
    fragment,
    fragments,
    ip_frame,
    mac,
    make_lan,
    parse_ip,
)

from femtotcp.stack.config import StackConfig
from femtotcp.wire import icmp4, udp

PORT = 5000


def datagram(n: int, sport: int = 1234) -> bytes:
    """A UDP datagram (header included) of ``n`` payload bytes from the sniffer to host 0."""
    data = bytes(i & 0xFF for i in range(n))
    return udp.build(SNIFF_IP, addr(0), sport, PORT, data)


def setup(config: StackConfig | None = None):  # type: ignore[no-untyped-def]
    lan = make_lan(1, config=config)
    stack = lan.stacks[0]
    ep = stack.udp.open(port=PORT)
    sniff = lan.sniffer()
    sniff.clear()
    return lan, stack, ep, sniff


def frags(payload: bytes, size: int = 512, ident: int = 7, **kw) -> list[bytes]:  # type: ignore[no-untyped-def]
    return fragments(SNIFF_IP, addr(0), udp.PROTO, payload, size, ident=ident,
                     dst_mac=mac(0), **kw)


def received(ep) -> list[bytes]:  # type: ignore[no-untyped-def]
    out = []
    while (r := ep.recv()) is not None:
        out.append(r[0])
    return out


# -- both directions between two stacks -------------------------------------------

def test_5000_byte_datagram_fragmented_both_ways() -> None:
    lan = make_lan(2)
    a, b = lan.stacks
    sent_a = lan.capture(0)
    ea = a.udp.open(port=1111)
    eb = b.udp.open(port=2222)
    payload = bytes(range(256)) * 19 + b"tail" * 34          # 5000 bytes
    assert len(payload) == 5000
    assert ea.sendto(payload, addr(1), 2222) == 0
    assert lan.run_until(lambda: eb.readable, 5)
    data, src = eb.recv()
    assert data == payload and src == (addr(0), 1111)
    assert eb.sendto(data[::-1], *src) == 0
    assert lan.run_until(lambda: ea.readable, 5)
    assert ea.recv() == (payload[::-1], (addr(1), 2222))
    for s in (a, b):
        assert s.counters["ipv4.tx_fragments"] == 4
        assert s.counters["ipv4.reassembled"] == 1
        assert s.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}
    # The pieces on the wire: every one fits the MTU, all but the last carry MF
    # and a multiple of 8 bytes, and together they tile the datagram.
    pieces = [f for f in map(parse_ip, sent_a) if f is not None and f.ip.proto == 17]
    assert len(pieces) == 4
    offset = 0
    for k, f in enumerate(pieces):
        assert f.ip.total_len <= 1500
        assert f.ip.frag_offset == offset
        assert f.ip.more_fragments == (k < 3)
        if k < 3:
            assert len(f.payload) % 8 == 0
        offset += len(f.payload)
    assert offset == 5008


def test_small_mtu_link() -> None:
    lan = make_lan(2, mtu=576)
    a, b = lan.stacks
    eb = b.udp.open(port=9)
    a.udp.open().sendto(b"m" * 3000, addr(1), 9)
    assert lan.run_until(lambda: eb.readable, 5)
    assert eb.recv()[0] == b"m" * 3000
    assert a.counters["ipv4.tx_fragments"] == 6


def test_ping_with_large_payload_fragments() -> None:
    lan = make_lan(2)
    a, _ = lan.stacks
    replies: list = []
    a.icmp.ping(addr(1), replies.append, payload=b"P" * 4000)
    assert lan.run_until(lambda: bool(replies), 5)
    assert replies[0][2] == b"P" * 4000


def test_largest_udp_datagram() -> None:
    """65507 bytes is 45 fragments, all queued behind the first ARP resolution."""
    lan = make_lan(2)
    a, b = lan.stacks
    eb = b.udp.open(port=9)
    assert a.udp.open().sendto(b"L" * 65507, addr(1), 9) == 0
    assert lan.run_until(lambda: eb.readable, 5)
    assert len(eb.recv()[0]) == 65507
    assert a.udp.open().sendto(b"L" * 65508, addr(1), 9) != 0


# -- reassembly from crafted fragments ---------------------------------------------

@pytest.mark.parametrize("order", ["forward", "reverse", "interleaved"])
def test_reassembly_any_order(order: str) -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(3000)
    pieces = frags(dg)
    if order == "reverse":
        pieces.reverse()
    elif order == "interleaved":
        pieces = pieces[::2] + pieces[1::2]
    for p in pieces:
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == [dg[8:]]
    assert stack.counters["ipv4.reassembled"] == 1


def test_exact_duplicates_tolerated() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    for p in frags(dg):
        sniff.inject(p)
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == [dg[8:]]
    assert stack.counters["ipv4.frag_duplicate"] >= 3
    assert stack.counters["ipv4.frag_overlap"] == 0


def test_duplicate_after_completion_is_not_a_second_datagram() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(1000)
    pieces = frags(dg)
    for p in pieces:
        sniff.inject(p)
    lan.run(0)
    sniff.inject(pieces[0])
    lan.run(0)
    assert received(ep) == [dg[8:]]
    assert stack.ipv4.reassembly.stats()["datagrams"] == 1     # a new, partial one


@pytest.mark.parametrize("held", [
    [(0, 1024)],                       # inside one fragment
    [(0, 512), (512, 512)],            # across two fragments that abut
    [(0, 512), (512, 256), (768, 256)],
])
def test_fragment_inside_held_data_is_ignored(held: list[tuple[int, int]]) -> None:
    """A duplicate or subset of data already held is dropped alone and the datagram
    still completes (Linux since FragmentSmack: duplicates ignored, overlaps fatal)."""
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    src, dst = SNIFF_IP, addr(0)
    for off, size in held:
        sniff.inject(fragment(src, dst, 17, dg, off, size, more=True, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, 256, 512, more=True, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, 1024, len(dg) - 1024, more=False, dst_mac=mac(0)))
    lan.run(0)
    assert received(ep) == [dg[8:]]
    assert stack.counters["ipv4.frag_duplicate"] == 1
    assert stack.counters["ipv4.frag_overlap"] == 0


def test_fragment_across_a_hole_discards_the_datagram() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    src, dst = SNIFF_IP, addr(0)
    sniff.inject(fragment(src, dst, 17, dg, 0, 256, more=True, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, 512, 256, more=True, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, 128, 512, more=True, dst_mac=mac(0)))
    for p in frags(dg):
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == []
    assert stack.counters["ipv4.frag_overlap"] == 1


@pytest.mark.parametrize(("first", "second"), [
    ((0, 512), (256, 512)),     # overlaps the tail
    ((512, 512), (256, 512)),   # overlaps the head
    ((256, 256), (0, 1024)),    # covers
    ((0, 256), (0, 512)),       # starts alike, runs past
])
def test_overlapping_fragments_discard_the_datagram(first: tuple[int, int],
                                                     second: tuple[int, int]) -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    src, dst = SNIFF_IP, addr(0)
    sniff.inject(fragment(src, dst, 17, dg, first[0], first[1], more=True, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, second[0], second[1], more=True, dst_mac=mac(0)))
    # Then every piece, cleanly: the datagram must still never be delivered.
    for p in frags(dg):
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == []
    assert stack.counters["ipv4.frag_overlap"] == 1
    assert stack.counters["ipv4.frag_after_overlap"] >= 1
    assert stack.ipv4.reassembly.stats()["bytes"] == 0
    lan.run(stack.config.reasm_timeout + 1)
    assert stack.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}
    # A dead datagram sends no time exceeded.
    assert sniff.icmps(icmp4.TIME_EXCEEDED) == []


def test_inconsistent_last_fragments_discard() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    src, dst = SNIFF_IP, addr(0)
    sniff.inject(fragment(src, dst, 17, dg, 1024, 984, more=False, dst_mac=mac(0)))
    sniff.inject(fragment(src, dst, 17, dg, 1024, 512, more=False, dst_mac=mac(0)))
    for p in frags(dg):
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == []
    assert stack.counters["ipv4.frag_inconsistent_length"] == 1


def test_fragment_beyond_the_end_discards() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(2000)
    src, dst = SNIFF_IP, addr(0)
    pieces = frags(dg)
    sniff.inject(pieces[-1])
    sniff.inject(fragment(src, dst, 17, dg + bytes(4000), 2048, 512, more=True,
                          dst_mac=mac(0)))
    lan.run(0)
    assert stack.counters["ipv4.frag_inconsistent_length"] == 1


def test_non_final_fragment_must_be_multiple_of_8() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(100)
    sniff.inject(fragment(SNIFF_IP, addr(0), 17, dg, 0, 50, more=True, dst_mac=mac(0)))
    lan.run(0)
    assert stack.counters["ipv4.frag_bad_length"] == 1
    assert stack.ipv4.reassembly.stats()["datagrams"] == 0


@pytest.mark.parametrize(("offset", "size"), [(65512, 16), (65528, 8), (65000, 1000)])
def test_datagram_over_65535_rejected(offset: int, size: int) -> None:
    lan, stack, ep, sniff = setup()
    big = bytes(offset + size)
    sniff.inject(fragment(SNIFF_IP, addr(0), 17, big, offset, size, more=False,
                          dst_mac=mac(0)))
    lan.run(0)
    assert stack.counters["ipv4.frag_too_big"] == 1
    assert stack.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}


def test_datagram_over_65535_with_first_fragment_options_rejected() -> None:
    """A 60-byte first header and 20-byte later ones: 65515 bytes of data would make
    a 65575-byte datagram."""
    lan, stack, ep, sniff = setup()
    data = bytes(65515)
    opts = b"\x01" * 40
    pieces = [fragment(SNIFF_IP, addr(0), 17, data, 0, 1400, more=True, options=opts,
                       dst_mac=mac(0))]
    pieces += [fragment(SNIFF_IP, addr(0), 17, data, off, 1480, dst_mac=mac(0))
               for off in range(1400, len(data), 1480)]
    for p in pieces:
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == []
    assert stack.counters["ipv4.frag_too_big"] == 1
    assert stack.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}


def test_largest_legal_offset_accepted() -> None:
    """The last byte of a 65535-byte datagram (20-byte header) is fine."""
    lan, stack, ep, sniff = setup()
    big = bytes(65515)
    sniff.inject(fragment(SNIFF_IP, addr(0), 17, big, 65512, 3, more=False, dst_mac=mac(0)))
    lan.run(0)
    assert stack.counters["ipv4.frag_too_big"] == 0
    assert stack.ipv4.reassembly.stats() == {"datagrams": 1, "bytes": 3}


def test_reassembly_table_is_capped() -> None:
    cfg = StackConfig(reasm_max_datagrams=8)
    lan, stack, ep, sniff = setup(cfg)
    dg = datagram(1000)
    for ident in range(20):
        sniff.inject(frags(dg, ident=ident)[0])
    lan.run(0)
    assert stack.ipv4.reassembly.stats()["datagrams"] == 8
    assert stack.counters["ipv4.reasm_table_full"] == 12
    # Completing one of the held datagrams still works.
    for p in frags(dg, ident=3)[1:]:
        sniff.inject(p)
    lan.run(0)
    assert received(ep) == [dg[8:]]


def test_reassembly_bytes_are_capped() -> None:
    cfg = StackConfig(reasm_max_bytes=4096)
    lan, stack, ep, sniff = setup(cfg)
    dg = datagram(4000)
    for ident in range(10):
        for p in frags(dg, ident=ident)[:-1]:
            sniff.inject(p)
    lan.run(0)
    assert stack.ipv4.reassembly.stats()["bytes"] <= 4096
    assert stack.counters["ipv4.reasm_memory_full"] > 0


def test_fragments_per_datagram_are_capped() -> None:
    cfg = StackConfig(reasm_max_fragments=16)
    lan, stack, ep, sniff = setup(cfg)
    dg = datagram(4000)
    for p in frags(dg, size=8)[:40]:
        sniff.inject(p)
    lan.run(0)
    assert stack.counters["ipv4.reasm_too_many_fragments"] >= 1
    assert stack.ipv4.reassembly.stats()["bytes"] <= 16 * 8


def test_timeout_sends_time_exceeded_and_frees() -> None:
    cfg = StackConfig(reasm_timeout=10)
    lan, stack, ep, sniff = setup(cfg)
    dg = datagram(2000)
    pieces = frags(dg)
    for p in pieces[:-1]:
        sniff.inject(p)
    lan.run(9)
    assert stack.ipv4.reassembly.stats()["datagrams"] == 1
    assert sniff.icmps(icmp4.TIME_EXCEEDED) == []
    lan.run(2)
    assert stack.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}
    assert stack.counters["ipv4.reasm_timeout"] == 1
    errs = sniff.icmps(icmp4.TIME_EXCEEDED, 1)
    assert len(errs) == 1
    f, _, body = errs[0]
    assert f.ip.dst == SNIFF_IP and f.ip.src == addr(0)
    # The quote is the first fragment's header and the first 8 bytes of its data.
    assert body[:20] == pieces[0][14:34]
    assert body[20:28] == dg[:8]
    # The late last fragment starts a new datagram; nothing is delivered.
    sniff.inject(pieces[-1])
    lan.run(0)
    assert received(ep) == []


def test_timeout_without_first_fragment_is_silent() -> None:
    cfg = StackConfig(reasm_timeout=10)
    lan, stack, ep, sniff = setup(cfg)
    for p in frags(datagram(2000))[1:]:
        sniff.inject(p)
    lan.run(20)
    assert stack.counters["ipv4.reasm_timeout"] == 1
    assert sniff.icmps(icmp4.TIME_EXCEEDED) == []


def test_fragments_of_different_datagrams_kept_apart() -> None:
    lan, stack, ep, sniff = setup()
    d1, d2 = datagram(1500, sport=1), datagram(1500, sport=2)
    p1, p2 = frags(d1, ident=1), frags(d2, ident=2)
    for x, y in zip(p1, p2, strict=True):
        sniff.inject(x)
        sniff.inject(y)
    lan.run(0)
    assert sorted(received(ep)) == sorted([d1[8:], d2[8:]])


def test_port_unreachable_for_reassembled_datagram() -> None:
    lan, stack, ep, sniff = setup()
    ep.close()
    for p in frags(datagram(2000)):
        sniff.inject(p)
    lan.run(1)
    errs = sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PORT_UNREACHABLE)
    assert len(errs) == 1


def test_protocol_unreachable_for_reassembled_datagram() -> None:
    lan, stack, ep, sniff = setup()
    for p in fragments(SNIFF_IP, addr(0), 200, bytes(1500), 512, dst_mac=mac(0)):
        sniff.inject(p)
    lan.run(1)
    assert len(sniff.icmps(icmp4.DEST_UNREACHABLE, icmp4.PROTO_UNREACHABLE)) == 1


def test_fragmented_echo_request_answered() -> None:
    lan, stack, ep, sniff = setup()
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, 9, 1, b"E" * 3000)
    for p in fragments(SNIFF_IP, addr(0), 1, msg, 1480, dst_mac=mac(0)):
        sniff.inject(p)
    lan.run(1)
    replies = [f for f in sniff.ip_frames(lambda f: f.ip.proto == 1)]
    assert len(replies) == 3
    assert sum(len(f.payload) for f in replies) == len(msg)
    assert all(f.eth.dst == SNIFF_MAC for f in replies)


def test_unfragmented_datagram_with_ip_options_delivered() -> None:
    lan, stack, ep, sniff = setup()
    dg = datagram(10)
    sniff.inject(ip_frame(SNIFF_IP, addr(0), 17, dg, options=b"\x94\x04\x00\x00",
                          dst_mac=mac(0)))
    lan.run(0)
    assert received(ep) == [dg[8:]]
