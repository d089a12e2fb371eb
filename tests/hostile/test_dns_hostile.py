"""Malformed and spoofed DNS replies against the resolver.

The cases follow the public descriptions of the bug classes behind NAME:WRECK
(FreeBSD, IPnet, Nucleus NET, NetX), AMNESIA:33's DNS bugs (picoTCP's
CVE-2020-24338 name decompression writing past its buffer, CVE-2020-24339
compression pointers not bounded by the message, CVE-2020-24340 answer counts
not checked against the data), Ripple20's DNS bug (Treck, CVE-2020-11901:
RDLENGTH and label lengths trusted) and the anti-patterns listed in RFC 9267
(sections 2-6). Each reply carries the right txid and question and comes
from the right server and port, so only the malformation can reject it.

Every case asserts: the reply is dropped and a named counter says why, the
lookup does not succeed, nothing is cached, and no exception escaped
(``stack.internal_error`` stays 0).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dns
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import dns as wire
from femtotcp.wire import ip_bytes

SERVER = ip_bytes("192.0.2.53")
ATTACKER = ip_bytes("192.0.2.66")
NAME = "www.demo"
QNAME = b"\x03www\x04demo\x00"                  # at offset 12 in every reply
QUESTION = QNAME + struct.pack("!HH", wire.A, 1)
FLAGS = wire.QR | wire.RD | wire.RA
A_TAIL = struct.Struct("!HHIH")


class Net:
    def __init__(self) -> None:
        self.loop = SimLoop()
        self.switch = Switch(self.loop)
        self.client = self._stack("client", "192.0.2.10/24", 0x10,
                                  ["arp", "ipv4", "icmp4", "udp", "dns"])
        self.server_stack = self._stack("ns", "192.0.2.53/24", 0x53, ["arp", "ipv4", "udp"])
        self.attacker = self._stack("evil", "192.0.2.66/24", 0x66, ["arp", "ipv4", "udp"])
        self.responder = DnsResponder(self.server_stack, zone="demo")
        self.resolver: dns.Resolver = self.client.resolver
        self.resolver.servers = [SERVER]
        self.loop.run(duration=0)

    def _stack(self, name: str, ip: str, n: int, modules: list[str]) -> Stack:
        st = Stack(name, modules=modules)
        st.add_interface(self.switch.port(name), mac=f"02:00:00:00:00:{n:02x}", ipv4=ip)
        self.loop.add_stack(st)
        st.start()
        return st

    def resolve(self, name: str = NAME, qtype: int = wire.A) -> dns.DnsResult:
        out: list[dns.DnsResult] = []
        self.resolver.resolve(name, qtype, out.append)
        assert self.loop.run_until(lambda: bool(out), 60)
        return out[0]


def head(txid: int, an: int = 0, ns: int = 0, ar: int = 0, flags: int = FLAGS, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", txid, flags, qd, an, ns, ar)


def a_rr(owner: bytes = b"\xc0\x0c", rdata: bytes = b"\xc0\x00\x02\x50", rtype: int = wire.A,
         rdlen: int | None = None, ttl: int = 300) -> bytes:
    return owner + A_TAIL.pack(rtype, 1, ttl, len(rdata) if rdlen is None else rdlen) + rdata


Builder = Callable[[int], bytes]


def _long_name_reply(txid: int) -> bytes:
    """Four 64-byte label runs, each pointing at the one before, hidden in the
    RDATA of an unknown-type record; the next record's owner points at the last
    run: 14 bytes on the wire, 266 once expanded (CVE-2020-24338's overflow)."""
    msg = bytearray(head(txid, 2) + QUESTION)
    rdata = bytearray()
    start = len(msg) + 12
    prev = 12
    for i in range(4):
        here = start + len(rdata)
        rdata += b"\x3f" + bytes([0x61 + i]) * 63 + bytes([0xC0 | prev >> 8, prev & 0xFF])
        prev = here
    msg += a_rr(rtype=99, rdata=bytes(rdata))
    msg += a_rr(owner=bytes([0xC0 | prev >> 8, prev & 0xFF]))
    return bytes(msg)

# name -> (reply builder taking the txid, expected drop counter)
CASES: dict[str, tuple[Builder, str]] = {
    # RFC 9267 2 / CVE-2020-24339 / NAME:WRECK: pointers.
    "pointer_to_itself": (lambda t: head(t, 1) + QUESTION + a_rr(b"\xc0\x21"), "dns.bad_pointer"),
    "pointer_beyond_message": (lambda t: head(t, 1) + QUESTION + a_rr(b"\xc3\xff"),
                               "dns.bad_pointer"),
    "pointer_forward_in_message": (lambda t: head(t, 1) + QUESTION + a_rr(b"\xc0\x23") + b"\x01x\x00",
                                   "dns.bad_pointer"),
    "pointer_into_header": (lambda t: head(t, 1) + QUESTION + a_rr(b"\xc0\x04"), "dns.bad_pointer"),
    "pointer_loop_between_labels": (
        lambda t: head(t, 1) + QUESTION + a_rr(b"\x01a\xc0\x21"), "dns.bad_pointer"),
    "pointer_in_question": (lambda t: head(t) + b"\xc0\x0c" + struct.pack("!HH", 1, 1),
                            "dns.bad_pointer"),
    # RFC 9267 3 / CVE-2020-24338 / CVE-2020-11901: label and name lengths.
    "label_type_0x40": (lambda t: head(t, 1) + QUESTION + a_rr(b"\x41a\x00"), "dns.bad_label_type"),
    "label_type_0x80": (lambda t: head(t, 1) + QUESTION + a_rr(b"\x81a\x00"), "dns.bad_label_type"),
    "label_past_end": (lambda t: head(t, 1) + QUESTION + b"\x3fabc", "dns.truncated_name"),
    "name_over_255_by_pointers": (lambda t: _long_name_reply(t), "dns.bad_name_length"),
    # RFC 9267 4: the terminator.
    "no_terminator": (lambda t: head(t, 1) + QUESTION + b"\x03www\x04demo", "dns.truncated_name"),
    "no_terminator_in_question": (lambda t: head(t) + b"\x03www\x04demo", "dns.truncated_name"),
    # RFC 9267 5 / CVE-2020-11901: RDLENGTH.
    "rdlength_past_end": (lambda t: head(t, 1) + QUESTION + a_rr(rdata=b"\1\2\3\4", rdlen=400),
                          "dns.bad_rdlength"),
    "a_rdlength_3": (lambda t: head(t, 1) + QUESTION + a_rr(rdata=b"\1\2\3"), "dns.bad_rdlength"),
    "a_rdlength_255": (lambda t: head(t, 1) + QUESTION + a_rr(rdata=b"\1" * 255), "dns.bad_rdlength"),
    "aaaa_rdlength_4": (lambda t: head(t, 1) + QUESTION + a_rr(rtype=wire.AAAA, rdata=b"\1" * 4),
                        "dns.bad_rdlength"),
    "cname_longer_than_rdlength": (
        lambda t: head(t, 1) + QUESTION + a_rr(rtype=wire.CNAME, rdata=b"\x03abc\x00", rdlen=3)
        + b"\0" * 8, "dns.truncated_name"),
    "cname_shorter_than_rdlength": (
        lambda t: head(t, 1) + QUESTION + a_rr(rtype=wire.CNAME, rdata=b"\x01a\x00", rdlen=6)
        + b"\0" * 8, "dns.bad_rdlength"),
    "rr_fixed_part_cut": (lambda t: head(t, 1) + QUESTION + b"\xc0\x0c\x00\x01\x00" + b"\0" * 6,
                          "dns.truncated"),
    # RFC 9267 6 / CVE-2020-24340: counts.
    "ancount_one_too_many": (lambda t: head(t, 2) + QUESTION + a_rr() + b"\0" * 4, "dns.truncated"),
    "ancount_far_too_many": (lambda t: head(t, 3) + QUESTION + a_rr(), "dns.bad_count"),
    "ancount_65535": (lambda t: head(t, 0xFFFF) + QUESTION + a_rr(), "dns.bad_count"),
    "arcount_65535": (lambda t: head(t, 1, 0, 0xFFFF) + QUESTION + a_rr(), "dns.bad_count"),
    "qdcount_0": (lambda t: head(t, 1, qd=0) + a_rr(QNAME), "dns.bad_question"),
    "qdcount_2": (lambda t: head(t, 0, qd=2) + QUESTION + QUESTION, "dns.bad_question"),
    "header_only": (lambda t: head(t, 0, qd=0), "dns.bad_question"),
    "short_header": (lambda t: head(t)[:11], "dns.truncated"),
    # RFC 5452 9.1: the reply must be ours.
    "wrong_txid": (lambda t: head(t ^ 0x5A5A, 1) + QUESTION + a_rr(), "dns.bad_txid"),
    "qr_clear": (lambda t: head(t, 1, flags=wire.RD) + QUESTION + a_rr(), "dns.bad_qr"),
    "opcode_status": (lambda t: head(t, 1, flags=FLAGS | (2 << 11)) + QUESTION + a_rr(),
                      "dns.bad_opcode"),
    "other_question_name": (lambda t: head(t, 1) + b"\x03www\x04evil\x00\x00\x01\x00\x01" + a_rr(),
                            "dns.bad_question"),
    "other_question_type": (lambda t: head(t, 1) + QNAME + b"\x00\x1c\x00\x01" + a_rr(),
                            "dns.bad_question"),
    "other_question_class": (lambda t: head(t, 1) + QNAME + b"\x00\x01\x00\x03" + a_rr(),
                             "dns.bad_question"),
}


def _silent_server_then(net: Net, reply: Callable[[int], bytes]) -> list[bytes]:
    sent: list[bytes] = []

    def override(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        data = reply(q.txid)
        sent.append(data)
        return data

    net.responder.override = override
    return sent


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_reply_is_dropped_and_counted(case: str) -> None:
    build, counter = CASES[case]
    net = Net()
    sent = _silent_server_then(net, build)
    result = net.resolve()
    assert sent, "the hostile server was asked"
    assert result.error == dns.TIMEOUT
    assert result.addresses == [] and result.names == []
    assert net.client.counters[counter] >= len(sent), net.client.counters.snapshot()
    assert net.resolver.cache == {}
    assert net.client.counters["stack.internal_error"] == 0


def test_reply_from_another_address_is_dropped() -> None:
    net = Net()
    evil = net.attacker.udp.open(ip_bytes("192.0.2.66"), 53)

    def spoof(q: wire.Message, src: tuple[bytes, int]) -> None:
        evil.sendto(head(q.txid, 1) + QUESTION + a_rr(), src[0], src[1])
        return None

    net.responder.override = spoof
    result = net.resolve()
    assert result.error == dns.TIMEOUT
    assert net.client.counters["dns.bad_source"] == dns.Resolver.attempts
    assert net.resolver.cache == {}


def test_reply_from_another_port_is_dropped() -> None:
    net = Net()
    side = net.server_stack.udp.open(SERVER, 5353)

    def other_port(q: wire.Message, src: tuple[bytes, int]) -> None:
        side.sendto(head(q.txid, 1) + QUESTION + a_rr(), src[0], src[1])
        return None

    net.responder.override = other_port
    assert net.resolve().error == dns.TIMEOUT
    assert net.client.counters["dns.bad_source"] == dns.Resolver.attempts


def test_spoofed_reply_does_not_stop_the_real_one() -> None:
    """An attacker racing the server (its address forged, the txid guessed
    wrong) loses: the real answer, arriving later, still wins."""
    net = Net()
    net.responder.add_address(NAME, "192.0.2.80")
    evil = net.attacker.udp.open(ip_bytes("0.0.0.0"), 53)

    def race(q: wire.Message, src: tuple[bytes, int]) -> None:
        evil.sendto(head(q.txid ^ 1, 1) + QUESTION + a_rr(rdata=b"\xc6\x33\x64\x01"),
                    src[0], src[1], src=SERVER)
        real = wire.build(q.txid, FLAGS | wire.AA, q.questions,
                          [wire.Record(NAME, wire.A, 1, 60, b"\xc0\x00\x02\x50")])
        net.loop.call_at(net.loop.now() + 0.5,
                         lambda: net.responder.ep.sendto(real, src[0], src[1], src=SERVER))
        return None

    net.responder.override = race
    result = net.resolve()
    assert result.addresses == [ip_bytes("192.0.2.80")]
    assert net.client.counters["dns.bad_txid"] == 1


def test_records_for_other_names_are_not_used_or_cached() -> None:
    """Cache poisoning by piggy-backed records (RFC 5452 6): only the chain of
    the question counts."""
    net = Net()

    def poison(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        return wire.build(q.txid, FLAGS, q.questions, answers=[
            wire.Record("bank.example", wire.A, 1, 9999, b"\xc6\x33\x64\x01"),
            wire.Record(NAME, wire.A, 1, 60, b"\xc0\x00\x02\x50")],
            additional=[wire.Record("other.demo", wire.A, 1, 9999, b"\xc6\x33\x64\x02")])

    net.responder.override = poison
    result = net.resolve()
    assert result.addresses == [ip_bytes("192.0.2.80")]
    assert set(net.resolver.cache) == {(NAME, wire.A)}


def test_cname_pointing_back_to_the_question_is_a_loop() -> None:
    net = Net()

    def loop(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        return wire.build(q.txid, FLAGS, q.questions, answers=[
            wire.Record(NAME, wire.CNAME, 1, 60, "b.demo"),
            wire.Record("b.demo", wire.CNAME, 1, 60, NAME)])

    net.responder.override = loop
    assert net.resolve().error == dns.CNAME_LOOP
    assert net.resolver.cache == {}


def test_cname_chain_spread_over_queries_is_bounded() -> None:
    """A server that answers every name with a CNAME to a fresh name."""
    net = Net()
    count = [0]

    def endless(q: wire.Message, src: tuple[bytes, int]) -> bytes:
        count[0] += 1
        return wire.build(q.txid, FLAGS, q.questions, answers=[
            wire.Record(q.questions[0].name, wire.CNAME, 1, 60, f"n{count[0]}.demo")])

    net.responder.override = endless
    assert net.resolve().error == dns.CNAME_LOOP
    assert count[0] == dns.Resolver.max_cname_hops + 1


# -- hypothesis: nothing a server sends makes the resolver raise or hang -------------

def _pending_attempt(net: Net) -> tuple[dns._Lookup, dns._Attempt]:
    lookup = next(iter(net.resolver.lookups.values()))
    return lookup, lookup.attempts[-1]


def _base_reply(txid: int) -> bytearray:
    return bytearray(wire.build(txid, FLAGS, [wire.Question(NAME, wire.A)], answers=[
        wire.Record(NAME, wire.CNAME, 1, 60, "web.demo"),
        wire.Record("web.demo", wire.A, 1, 60, b"\xc0\x00\x02\x50"),
        wire.Record("web.demo", wire.AAAA, 1, 60, b"\x20\x01\x0d\xb8" + b"\0" * 12)],
        authority=[wire.Record("demo", wire.SOA, 1, 60, ("ns.demo", "h.demo", 1, 2, 3, 4, 5))]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_replies_never_raise(data: st.DataObject) -> None:
    net = Net()
    net.responder.override = lambda q, src: None
    out: list[dns.DnsResult] = []
    net.resolver.resolve(NAME, wire.A, out.append)
    net.loop.run(duration=0.01)
    lookup, attempt = _pending_attempt(net)
    reply = _base_reply(attempt.txid)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(2, len(reply) - 1))      # keep the txid
        reply[i] = data.draw(st.integers(0, 255))
    reply = reply[:data.draw(st.integers(0, len(reply)))]
    lookup.on_datagram(attempt, bytes(reply), SERVER, 53)
    net.loop.run_until(lambda: bool(out), 30)
    assert out
    assert net.client.counters["stack.internal_error"] == 0


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_random_replies_never_raise(body: bytes) -> None:
    net = Net()
    net.responder.override = lambda q, src: None
    out: list[dns.DnsResult] = []
    net.resolver.resolve(NAME, wire.A, out.append)
    net.loop.run(duration=0.01)
    lookup, attempt = _pending_attempt(net)
    # Right txid and question, then anything at all.
    lookup.on_datagram(attempt, head(attempt.txid, 1) + QUESTION + body, SERVER, 53)
    lookup.on_datagram(attempt, body, SERVER, 53)
    net.loop.run_until(lambda: bool(out), 30)
    assert out and net.client.counters["stack.internal_error"] == 0
