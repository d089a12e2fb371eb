"""Hostile input: random and mutated frames fed to a stack never raise, never make
it emit a malformed frame, and never grow its state past the configured caps.

Mutations start from valid ARP, IPv4, ICMP, UDP and fragment frames aimed at the
stack, then flip, overwrite, insert, delete, truncate and extend bytes; half the
time the IPv4/UDP/ICMP checksums are fixed afterwards, so the damage reaches the
layers behind the checksums instead of dying at the first one.
"""

from __future__ import annotations

import random

from femtolan import (
    BCAST_MAC,
    LIMITED_BCAST,
    SNIFF_IP,
    SNIFF_MAC,
    SUBNET_BCAST,
    Lan,
    addr,
    arp_frame,
    echo_frame,
    fragments,
    ip_frame,
    mac,
    make_lan,
    udp_frame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femtotcp.services.echo import start_udp_echo
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, arp, ethernet, icmp4, ipv4, udp
from femtotcp.wire.checksum import checksum, pseudo_header_sum

US = addr(0)
US_MAC = mac(0)
OTHER = addr(5)
OTHER_MAC = mac(5)
ECHO_PORT = 7
OPEN_PORT = 5000


def corpus() -> list[bytes]:
    """Valid frames of every kind the stack handles, aimed at host 0."""
    d = dict(dst_mac=US_MAC)
    big = udp.build(SNIFF_IP, US, 1234, OPEN_PORT, bytes(range(256)) * 8)
    ours = ipv4.build(US, SNIFF_IP, 17, udp.build(US, SNIFF_IP, OPEN_PORT, 9, b"q" * 8))
    frames = [
        arp_frame(arp.REQUEST, SNIFF_MAC, SNIFF_IP, bytes(6), US),
        arp_frame(arp.REPLY, SNIFF_MAC, SNIFF_IP, US_MAC, US, eth_dst=US_MAC),
        arp_frame(arp.REQUEST, OTHER_MAC, OTHER, bytes(6), OTHER),          # gratuitous
        arp_frame(arp.REQUEST, OTHER_MAC, bytes(4), bytes(6), US),          # probe
        arp_frame(arp.REQUEST, OTHER_MAC, US, bytes(6), US),                # conflict
        echo_frame(SNIFF_IP, US, data=b"hello" * 10, **d),
        echo_frame(SNIFF_IP, SUBNET_BCAST, dst_mac=BCAST_MAC),
        echo_frame(bytes(4), US, **d),
        udp_frame(bytes(4), LIMITED_BCAST, 68, ECHO_PORT, b"from nowhere", dst_mac=BCAST_MAC),
        ip_frame(SNIFF_IP, US, 1, icmp4.build_echo(icmp4.ECHO_REPLY, 1, 1, b"r"), **d),
        ip_frame(SNIFF_IP, US, 1, icmp4.build(icmp4.DEST_UNREACHABLE, 3, 0, ours[:28]), **d),
        ip_frame(SNIFF_IP, US, 1, icmp4.build(icmp4.DEST_UNREACHABLE, 4, 576, ours[:28]), **d),
        ip_frame(SNIFF_IP, US, 1, icmp4.build(icmp4.TIME_EXCEEDED, 0, 0, ours), **d),
        ip_frame(SNIFF_IP, US, 1, icmp4.build(icmp4.REDIRECT, 1, 0, ours[:28]), **d),
        udp_frame(SNIFF_IP, US, 1000, ECHO_PORT, b"echo me", **d),
        udp_frame(SNIFF_IP, US, 1000, OPEN_PORT, b"data", **d),
        udp_frame(SNIFF_IP, US, 1000, 9999, b"closed", **d),
        udp_frame(SNIFF_IP, LIMITED_BCAST, 68, 67, b"dhcp?", dst_mac=BCAST_MAC),
        udp_frame(SNIFF_IP, SUBNET_BCAST, 1, ECHO_PORT, b"b", dst_mac=BCAST_MAC),
        ip_frame(SNIFF_IP, US, 200, b"unknown protocol", **d),
        ip_frame(SNIFF_IP, US, 17, udp.build(SNIFF_IP, US, 1, OPEN_PORT, b"opt"),
                 options=b"\x94\x04\x00\x00", **d),
        ip_frame(SNIFF_IP, US, 17, udp.build(SNIFF_IP, US, 1, OPEN_PORT, b"rr"),
                 options=b"\x07\x07\x04" + bytes(4) + b"\x00", **d),
    ]
    frames += fragments(SNIFF_IP, US, 17, big, 512, ident=77, **d)
    frames += fragments(SNIFF_IP, US, 1, icmp4.build_echo(8, 3, 3, b"F" * 1500), 1480,
                        ident=78, **d)
    plain = echo_frame(SNIFF_IP, US, **d)
    frames.append(plain[:12] + b"\x81\x00\x00\x05" + plain[12:])           # 802.1Q
    frames.append(US_MAC + SNIFF_MAC + b"\x00\x2e" + b"\xaa\xaa\x03" + bytes(43))  # 802.3
    frames.append(ethernet.build(US_MAC, SNIFF_MAC, ethernet.ETH_RARP, bytes(28)))
    return frames


CORPUS = corpus()
INTERESTING = [0, 1, 2, 4, 5, 7, 8, 0x0F, 0x10, 0x20, 0x3F, 0x40, 0x45, 0x7F, 0x80, 0xFE, 0xFF]


def fix_checksums(frame: bytearray) -> None:
    """Recompute the IPv4 header, UDP and ICMP checksums over whatever is there."""
    off = 14
    if len(frame) >= 18 and frame[12:14] == b"\x81\x00":
        off = 18
    if len(frame) < off + 20 or frame[off - 2:off] != b"\x08\x00":
        return
    ihl = (frame[off] & 0x0F) * 4
    if ihl < 20 or len(frame) < off + ihl:
        return
    frame[off + 10:off + 12] = b"\0\0"
    frame[off + 10:off + 12] = checksum(frame[off:off + ihl]).to_bytes(2, "big")
    if int.from_bytes(frame[off + 6:off + 8], "big") & 0x3FFF:
        return                                   # a fragment: upper checksums span pieces
    end = min(len(frame), off + int.from_bytes(frame[off + 2:off + 4], "big"))
    start = off + ihl
    if end <= start:
        return
    proto = frame[off + 9]
    src, dst = bytes(frame[off + 12:off + 16]), bytes(frame[off + 16:off + 20])
    if proto == 17 and end - start >= 8:
        ulen = int.from_bytes(frame[start + 4:start + 6], "big")
        if 8 <= ulen <= end - start:
            frame[start + 6:start + 8] = b"\0\0"
            c = checksum(frame[start:start + ulen], pseudo_header_sum(src, dst, 17, ulen))
            frame[start + 6:start + 8] = (c or 0xFFFF).to_bytes(2, "big")
    elif proto == 1 and end - start >= 4:
        frame[start + 2:start + 4] = b"\0\0"
        frame[start + 2:start + 4] = checksum(frame[start:end]).to_bytes(2, "big")


def mutate(rng: random.Random, frame: bytes, rounds: int) -> bytes:
    out = bytearray(frame)
    for _ in range(rounds):
        op = rng.randrange(7)
        n = len(out)
        if op == 0 and n:                                   # flip a bit
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                                 # an interesting byte
            out[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2 and n > 1:                             # an interesting 16-bit field
            i = rng.randrange(n - 1)
            value = rng.choice([0, 1, 7, 8, 20, 28, 0x5DC, 0x7FFF, 0xFFFF, n, n - 14, n - 34])
            out[i:i + 2] = (value & 0xFFFF).to_bytes(2, "big")
        elif op == 3:                                       # truncate
            del out[rng.randrange(n + 1):]
        elif op == 4:                                       # extend
            out += rng.randbytes(rng.randrange(1, 64))
        elif op == 5 and n:                                 # insert
            i = rng.randrange(n)
            out[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 6 and n:                                 # delete
            i = rng.randrange(n)
            del out[i:i + rng.randrange(1, 9)]
    if rng.random() < 0.5:
        fix_checksums(out)
    return bytes(out)


def new_host(config: StackConfig | None = None) -> tuple[Lan, Stack, list[bytes]]:
    lan = make_lan(1, config=config)
    stack = lan.stacks[0]
    stack.add_route("0.0.0.0/0", gateway="192.0.2.254")   # answers to anyone can leave
    start_udp_echo(stack, ECHO_PORT)
    stack.udp.open(port=OPEN_PORT)
    connected = stack.udp.open()
    connected.connect(SNIFF_IP, 9)
    stack.icmp.open_echo(1)
    sent = lan.capture(0)
    lan.sniffer()                 # answers ARP so replies leave the pending queue
    lan.run(0)
    return lan, stack, sent


def check_output(stack: Stack, sent: list[bytes]) -> None:
    """Whatever the stack sends is well formed, from its own MAC and address."""
    for frame in sent:
        eth, body = ethernet.parse(frame)
        assert eth.src == US_MAC and not eth.dst == bytes(6)
        if eth.ethertype == ethernet.ETH_ARP:
            pkt = arp.parse(body)
            assert pkt.sha == US_MAC
            continue
        assert eth.ethertype == ethernet.ETH_IPV4
        hdr, payload = ipv4.parse(body)
        assert hdr.total_len <= 1500
        assert hdr.src == US
        assert hdr.dst != bytes(4)                # RFC 1122 3.2.1.3: never sent to 0.0.0.0
        if hdr.flags_frag & 0x3FFF:
            continue
        if hdr.proto == 17:
            udp.parse(payload, hdr.src, hdr.dst)
        elif hdr.proto == 1:
            msg, _ = icmp4.parse(payload)
            if msg.type in icmp4.ERROR_TYPES:
                # Errors only ever go to a unicast host.
                assert hdr.dst[0] < 224 and hdr.dst not in (LIMITED_BCAST, SUBNET_BCAST)
                assert eth.dst != BCAST_MAC


def check_bounds(stack: Stack) -> None:
    cfg = stack.config
    for cache in stack.arp.caches.values():
        assert len(cache) <= cfg.arp_cache_max
        for n in cache.values():
            assert len(n.pending) <= cfg.arp_pending_max
            assert n.pending_bytes <= max(cfg.arp_pending_bytes, 65535)
    stats = stack.ipv4.reassembly.stats()
    assert stats["datagrams"] <= cfg.reasm_max_datagrams
    assert stats["bytes"] <= cfg.reasm_max_bytes
    assert stats["bytes"] == sum(dg.size for dg in stack.ipv4.reassembly.datagrams.values())
    for dg in stack.ipv4.reassembly.datagrams.values():
        assert len(dg.pieces) <= cfg.reasm_max_fragments
    for ep in stack.udp.endpoints.values():
        assert len(ep.queue) <= cfg.udp_queue_max
        assert ep.queued_bytes <= ep.rcvbuf
    for ep in stack.icmp.echo.values():
        assert len(ep.queue) <= ep.queue_max
    assert len(stack.udp.endpoints) == 3 and len(stack.icmp.echo) == 1
    assert len(stack.icmp.limit.per_dest.buckets) <= stack.icmp.limit.per_dest.max_keys
    assert len(stack._local) <= 1024
    live = len(stack.timers)
    assert live <= 8 + sum(len(c) for c in stack.arp.caches.values()) + stats["datagrams"] \
        + len(stack.arp.probers) + 4
    assert stack.timers.heap_size() <= 2 * live + 600
    assert len(stack.counters) < 400


# -- hypothesis: a handful of frames per example, any content --------------------------

frame_choice = st.sampled_from(CORPUS)
mutated = st.builds(lambda f, seed, rounds: mutate(random.Random(seed), f, rounds),
                    frame_choice, st.integers(0, 2**32), st.integers(0, 6))
headed = st.builds(                         # a plausible Ethernet header, random rest
    lambda dst, et, rest: dst + SNIFF_MAC + et + rest,
    st.sampled_from([US_MAC, BCAST_MAC, bytes.fromhex("01005e000001"), OTHER_MAC]),
    st.sampled_from([b"\x08\x00", b"\x08\x06", b"\x81\x00", b"\x86\xdd", b"\x80\x35",
                     b"\x00\x40"]),
    st.binary(max_size=120))
ip_headed = st.builds(                      # a valid IPv4 header, random payload
    lambda proto, flags, payload: ip_frame(SNIFF_IP, US, proto, payload, dst_mac=US_MAC,
                                           flags_frag=flags),
    st.sampled_from([1, 17, 6, 200]), st.sampled_from([0, ipv4.MF, ipv4.MF | 1, 2, ipv4.DF]),
    st.binary(max_size=100))
any_frame = st.one_of(mutated, headed, ip_headed, st.binary(max_size=80))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(any_frame, min_size=1, max_size=25), st.floats(0, 5))
def test_random_and_mutated_frames_never_raise(frames: list[bytes], gap: float) -> None:
    lan, stack, sent = new_host()
    dev = lan.ifaces[0].device
    for f in frames:
        dev.deliver(f)              # straight into stack.receive: an escape would raise here
        lan.run(gap / len(frames))
    lan.run(stack.config.reasm_timeout + 5)      # every timer that input started
    assert stack.counters["stack.internal_error"] == 0
    check_output(stack, sent)
    check_bounds(stack)


# -- long runs: thousands of frames into one stack, with tight caps --------------------

TIGHT = StackConfig(arp_cache_max=32, arp_pending_max=8, arp_pending_bytes=8000,
                    reasm_max_datagrams=8, reasm_max_bytes=16384, reasm_max_fragments=16,
                    udp_queue_max=16, udp_rcvbuf=8192, reasm_timeout=5)


def state_builders(rng: random.Random) -> bytes:
    """Valid frames that each try to create state: new neighbours, new partial
    datagrams, queued datagrams, replies to unknown hosts."""
    k = rng.randrange(6)
    src = bytes([192, 0, 2, rng.randrange(2, 250)])
    smac = bytes([2, 0, 0, 9, rng.randrange(256), rng.randrange(256)])
    if k == 0:
        return arp_frame(arp.REQUEST, smac, src, bytes(6), US)
    if k == 1:
        payload = rng.randbytes(rng.randrange(16, 3000))
        pieces = fragments(src, US, 17, payload, 8 * rng.randrange(1, 100),
                           ident=rng.randrange(65536), dst_mac=US_MAC, src_mac=smac)
        return rng.choice(pieces)
    if k == 2:
        return udp_frame(src, US, rng.randrange(1, 65536), OPEN_PORT,
                         rng.randbytes(rng.randrange(0, 1400)), dst_mac=US_MAC, src_mac=smac)
    if k == 3:
        return echo_frame(src, US, data=rng.randbytes(rng.randrange(0, 200)),
                          dst_mac=US_MAC, src_mac=smac)
    if k == 4:
        return udp_frame(src, US, 1, rng.randrange(1, 65536), b"x", dst_mac=US_MAC,
                         src_mac=smac)
    return rng.choice(CORPUS)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_thousands_of_frames_stay_within_caps(seed: int) -> None:
    rng = random.Random(seed)
    lan, stack, sent = new_host(TIGHT)
    dev = lan.ifaces[0].device
    for i in range(3000):
        frame = state_builders(rng)
        if rng.random() < 0.5:
            frame = mutate(rng, frame, rng.randrange(1, 5))
        dev.deliver(frame)
        if i % 50 == 0:
            lan.run(rng.random() * 0.5)
            check_bounds(stack)
    check_bounds(stack)
    assert stack.counters["stack.internal_error"] == 0
    lan.run(60)
    check_bounds(stack)
    # With the input gone, the timers drain the per-packet state.
    assert stack.ipv4.reassembly.stats() == {"datagrams": 0, "bytes": 0}
    check_output(stack, sent)


def test_default_caps_hold_under_a_flood() -> None:
    """The real defaults: a flood of new neighbours and partial datagrams."""
    rng = random.Random(1234)
    lan, stack, sent = new_host()
    dev = lan.ifaces[0].device
    cfg = stack.config
    for i in range(4000):
        a = bytes([198, 51, 100, i % 250 + 1]) if i % 2 else bytes([192, 0, 2, i % 250 + 2])
        smac = bytes([2, 0, 0, 8, i >> 8 & 0xFF, i & 0xFF])
        if i % 2:
            frame = fragments(a, US, 17, rng.randbytes(2000), 1024, ident=i & 0xFFFF,
                              dst_mac=US_MAC, src_mac=smac)[0]
        else:
            frame = arp_frame(arp.REQUEST, smac, bytes([10, i >> 8 & 0xFF, i & 0xFF, 1]),
                              bytes(6), US)
        dev.deliver(frame)
    assert stack.ipv4.reassembly.stats()["datagrams"] == cfg.reasm_max_datagrams
    assert stack.counters["ipv4.reasm_table_full"] > 0
    check_bounds(stack)
    assert stack.counters["stack.internal_error"] == 0


def test_mutation_corpus_reaches_deep_layers() -> None:
    """The mutator is worth something only if mutated frames get past the checksums:
    count the drop reasons a few thousand of them produce."""
    rng = random.Random(99)
    lan, stack, _ = new_host()
    dev = lan.ifaces[0].device
    for _ in range(3000):
        dev.deliver(mutate(rng, rng.choice(CORPUS), rng.randrange(1, 4)))
    lan.run(40)
    reasons = {k for k, v in stack.counters.items() if v}
    for layer in ("eth.", "arp.", "ipv4.", "icmp4.", "udp."):
        assert any(r.startswith(layer) and ("bad" in r or "truncated" in r or "runt" in r)
                   for r in reasons), layer
    assert stack.counters["stack.internal_error"] == 0


def test_corpus_frames_are_valid() -> None:
    """Unmutated, every corpus frame parses at its own layer (the mutator starts
    from good frames, not from garbage)."""
    for f in CORPUS:
        try:
            eth, body = ethernet.parse(f, 5 if f[12:14] == b"\x81\x00" else None)
        except Malformed as e:
            assert e.reason in ("eth.8023_length_frame",)
            continue
        if eth.ethertype == ethernet.ETH_ARP:
            arp.parse(body)
        elif eth.ethertype == ethernet.ETH_IPV4:
            ipv4.parse(body)
