"""DNS names that cost work out of proportion to their size (found while fuzzing).

Every name in a message may point into one long chain of pointers, or into one
127-label name. Each pointer goes strictly backwards (RFC 9267 2), so a walk
always ends, but before the fix each record walked the whole chain again: a
1500-byte reply took ~3 ms and a 64 KiB one (a reassembled UDP datagram)
~3 s, to the resolver and to the DNS responder alike. Now a name follows at
most 127 pointers (``dns.too_many_pointers``) and a message remembers the name
that starts at each offset already read, so every byte of it is walked about once.

These tests count the work (label reads, byte reads), never time it.
"""

from __future__ import annotations

import struct

import pytest

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, dhcp, dns, ethernet, ip_bytes, ipv4, udp

RR_TAIL = struct.Struct("!HHIH")


def _ptr(offset: int) -> bytes:
    return bytes([0xC0 | offset >> 8, offset & 0xFF])


def chain_message(total: int, chain: int | None = None, response: bool = True) -> bytes:
    """One record whose RDATA is a root label followed by a chain of pointers, each
    to the one before, then as many records as fit whose names point at the chain's end."""
    start = 12 + 1 + RR_TAIL.size          # the RDATA of the first record
    if chain is None:
        chain = (total - start) // 4
    rdata = bytearray(b"\x00")
    for k in range(chain):
        rdata += _ptr(start if k == 0 else start + 1 + 2 * (k - 1))
    last = start + 1 + 2 * (chain - 1)
    n = (total - start - len(rdata)) // 12
    body = b"".join(_ptr(last) + RR_TAIL.pack(99, 1, 0, 0) for _ in range(n))
    flags = 0x8180 if response else 0x0100
    return (struct.pack("!6H", 1, flags, 0, n + 1, 0, 0) + b"\x00"
            + RR_TAIL.pack(99, 1, 0, len(rdata)) + bytes(rdata) + body)


def label_message(total: int) -> bytes:
    """One 126-label name (253 bytes) in an RDATA, then records that all point at it."""
    name = b"\x01a" * 126 + b"\x00"
    start = 12 + 1 + RR_TAIL.size
    n = (total - start - len(name)) // 12
    body = b"".join(_ptr(start) + RR_TAIL.pack(99, 1, 0, 0) for _ in range(n))
    return (struct.pack("!6H", 1, 0x8180, 0, n + 1, 0, 0) + b"\x00"
            + RR_TAIL.pack(99, 1, 0, len(name)) + name + body)


def test_a_long_pointer_chain_is_dropped_and_named() -> None:
    with pytest.raises(Malformed, match="dns.too_many_pointers"):
        dns.parse(chain_message(1500))
    with pytest.raises(Malformed, match="dns.too_many_pointers"):
        dns.parse(chain_message(65000))


def test_the_fuzz_target_drops_the_chain() -> None:
    from fuzz.targets import TARGETS
    assert TARGETS["dns"].run(b"\x00" + chain_message(1500)) == "dns.too_many_pointers"


def test_127_pointers_still_parse() -> None:
    msg = dns.parse(chain_message(1500, chain=126))   # + the record's own pointer
    assert len(msg.answers) > 100 and all(rr.name == "" for rr in msg.answers)


class _CountingBytes:
    """A message that counts how often a byte of it is read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int | slice) -> int | bytes:
        self.reads += 1
        return self.data[i]


def test_names_sharing_a_chain_walk_it_once() -> None:
    raw = chain_message(1500, chain=120)
    first = 12 + 1 + RR_TAIL.size + 1 + 2 * 120      # the second record's name
    offsets = list(range(first, len(raw) - 11, 12))
    msg = _CountingBytes(raw)
    cache: dns.NameCache = {}
    for off in offsets:
        assert dns.read_name(msg, off, 12, cache) == ("", off + 2)
    # The chain (120 pointers, 2 reads each) once, then 2 reads per record.
    assert msg.reads <= 2 * 120 + 4 * len(offsets) + 8
    uncached = _CountingBytes(raw)
    for off in offsets:
        dns.read_name(uncached, off, 12)
    assert uncached.reads > 10 * msg.reads       # what every record cost before


def test_names_sharing_a_long_name_decode_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = dns._escape_label
    monkeypatch.setattr(dns, "_escape_label", lambda b: calls.append(1) or real(b))
    msg = dns.parse(label_message(1500))
    assert len(msg.answers) > 100
    assert all(rr.name == ".".join(["a"] * 126) for rr in msg.answers[1:])
    assert len(calls) == 126                     # each label escaped once, not once per record


def test_pointers_into_every_label_decode_each_label_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = b"\x01a" * 126 + b"\x00"
    start = 12 + 1 + RR_TAIL.size
    targets = [start + 2 * k for k in range(126)] * 2     # every label, twice
    body = b"".join(_ptr(t) + RR_TAIL.pack(99, 1, 0, 0) for t in targets)
    raw = (struct.pack("!6H", 1, 0x8180, 0, len(targets) + 1, 0, 0) + b"\x00"
           + RR_TAIL.pack(99, 1, 0, len(name)) + name + body)
    calls = []
    real = dns._escape_label
    monkeypatch.setattr(dns, "_escape_label", lambda b: calls.append(1) or real(b))
    msg = dns.parse(raw)
    assert [rr.name.count("a") for rr in msg.answers[1:]] == [126 - k for k in range(126)] * 2
    assert len(calls) == 126


def test_domain_search_shares_the_cache() -> None:
    # Option 119: many names, each pointing at one long name before them.
    long = b"\x01b" * 100 + b"\x00"
    value = long + b"\x01c" + _ptr(0) * 1
    value += b"".join(b"\x01d" + _ptr(0) for _ in range(50))
    names = dhcp.domain_search(value)
    assert len(names) == 52 and names[1] == "c." + ".".join(["b"] * 100)


def test_the_responder_drops_a_chain_query_and_counts_it() -> None:
    loop = SimLoop()
    switch = Switch(loop)
    st = Stack("ns", modules=["arp", "ipv4", "icmp4", "udp"])
    iface = st.add_interface(switch.port("ns"), mac="02:00:00:00:00:35", ipv4="192.0.2.53/24")
    loop.add_stack(st)
    st.start()
    DnsResponder(st, zone="demo")
    src, dst = ip_bytes("192.0.2.66"), ip_bytes("192.0.2.53")
    query = chain_message(9000, response=False)
    datagram = udp.build(src, dst, 4000, 53, query)
    # 9 KiB arrives as fragments, reassembled by the stack.
    for off in range(0, len(datagram), 1480):
        piece = datagram[off:off + 1480]
        more = ipv4.MF if off + len(piece) < len(datagram) else 0
        packet = ipv4.build(src, dst, udp.PROTO, piece, ident=9, flags_frag=more | off >> 3)
        st.receive(iface, ethernet.build(iface.mac, bytes.fromhex("020000000066"),
                                         ethernet.ETH_IPV4, packet))
    loop.run(duration=1)
    assert st.counters["ipv4.reassembled"] == 1
    assert st.counters["dns.too_many_pointers"] == 1
    assert st.counters.get("stack.internal_error", 0) == 0
