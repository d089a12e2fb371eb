"""DNS wire format: round trips, RFC 9267's rules one by one, scapy as oracle."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, dns

HDR = struct.Struct("!HHHHHH")


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x8180,
           txid: int = 0x1234) -> bytes:
    return HDR.pack(txid, flags, qd, an, ns, ar)


def q(name: bytes = b"\x03www\x07example\x03com\x00", qtype: int = dns.A) -> bytes:
    return name + struct.pack("!HH", qtype, 1)


def rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 60, rdlen: int | None = None) -> bytes:
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata) if rdlen is None else rdlen) + rdata


# -- names ---------------------------------------------------------------------

def test_read_plain_name() -> None:
    msg = header() + q()
    name, end = dns.read_name(msg, 12)
    assert name == "www.example.com"
    assert end == 12 + 17


def test_read_compressed_name_follows_backward_pointer() -> None:
    msg = header() + q() + b"\x04mail\xc0\x10"  # -> "example.com" at offset 16
    name, end = dns.read_name(msg, 12 + 21)
    assert name == "mail.example.com"
    assert end == len(msg)


def test_pointer_to_itself_is_rejected() -> None:
    msg = header() + q() + b"\xc0\x21"
    with pytest.raises(Malformed) as e:
        dns.read_name(msg, 0x21)
    assert e.value.reason == "dns.bad_pointer"


def test_forward_pointer_is_rejected() -> None:
    msg = header() + b"\xc0\x0e" + b"\x03abc\x00"
    with pytest.raises(Malformed, match="dns.bad_pointer"):
        dns.read_name(msg, 12)


def test_pointer_into_header_is_rejected() -> None:
    msg = header() + q() + b"\xc0\x02"
    with pytest.raises(Malformed, match="dns.bad_pointer"):
        dns.read_name(msg, len(msg) - 2)


def test_pointer_loop_between_two_names_is_rejected() -> None:
    # name A at 12: label then pointer to B (29); B: pointer to A. Whichever
    # way round, one of the two pointers goes forward or into its own run.
    msg = header() + b"\x01a\xc0\x10" + b"\xc0\x0c"
    with pytest.raises(Malformed, match="dns.bad_pointer"):
        dns.read_name(msg, 12)
    with pytest.raises(Malformed, match="dns.bad_pointer"):
        dns.read_name(msg, 16)


def test_pointer_back_into_the_same_run_is_rejected() -> None:
    # backward by position, but into the labels already walked: a loop
    msg = header() + b"\x01a\x01b\xc0\x0e"
    with pytest.raises(Malformed, match="dns.bad_pointer"):
        dns.read_name(msg, 12)


def test_pointer_chain_strictly_decreasing_is_accepted() -> None:
    msg = header() + b"\x03com\x00" + b"\x07example\xc0\x0c" + b"\x03www\xc0\x11"
    assert dns.read_name(msg, 12 + 5 + 10)[0] == "www.example.com"


def test_label_type_01_and_10_are_rejected() -> None:
    for first in (0x40, 0x80):
        msg = header() + bytes([first | 1]) + b"a\x00"
        with pytest.raises(Malformed, match="dns.bad_label_type"):
            dns.read_name(msg, 12)


def test_label_running_past_the_end_is_rejected() -> None:
    msg = header() + b"\x3fabc"
    with pytest.raises(Malformed, match="dns.truncated_name"):
        dns.read_name(msg, 12)


def test_missing_terminator_is_rejected() -> None:
    msg = header() + b"\x03www\x07example\x03com"
    with pytest.raises(Malformed, match="dns.truncated_name"):
        dns.read_name(msg, 12)


def test_half_pointer_at_end_is_rejected() -> None:
    msg = header() + b"\x03www\xc0"
    with pytest.raises(Malformed, match="dns.truncated_name"):
        dns.read_name(msg, 12)


def test_name_of_exactly_255_bytes_is_accepted_256_rejected() -> None:
    # 3 labels of 63 + one of 61: 3*64 + 62 + 1 = 255
    good = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(good) == 255
    name, _ = dns.read_name(header() + good, 12)
    assert len(dns.encode_name(name)) == 255
    bad = (b"\x3f" + b"a" * 63) * 3 + b"\x3e" + b"b" * 62 + b"\x00"
    with pytest.raises(Malformed, match="dns.bad_name_length"):
        dns.read_name(header() + bad, 12)


def test_name_too_long_through_pointers_is_rejected() -> None:
    # Each name is 64 bytes of label plus a pointer to the previous one:
    # short on the wire, over 255 once expanded.
    msg = bytearray(header() + b"\x3f" + b"a" * 63 + b"\x00")
    prev = 12
    for _ in range(4):
        here = len(msg)
        msg += b"\x3f" + b"b" * 63 + bytes([0xC0 | prev >> 8, prev & 0xFF])
        prev = here
    with pytest.raises(Malformed, match="dns.bad_name_length"):
        dns.read_name(bytes(msg), prev)


def test_escaping_dots_and_control_bytes() -> None:
    msg = header() + b"\x03a.b\x02\x00\xff\x00"
    name, _ = dns.read_name(msg, 12)
    assert name == "a\\.b.\\000\\255"
    assert dns.encode_name(name) == b"\x03a.b\x02\x00\xff\x00"


def test_encode_name_validates() -> None:
    assert dns.encode_name("") == b"\x00"
    assert dns.encode_name(".") == b"\x00"
    assert dns.encode_name("example.com.") == dns.encode_name("example.com")
    for bad in ("a..b", ".a", "a" * 64 + ".com", ".".join(["a" * 63] * 4), "a\\"):
        with pytest.raises(ValueError):
            dns.encode_name(bad)


def test_canonical_compare_is_ascii_case_insensitive() -> None:
    assert dns.names_equal("WWW.Example.COM.", "www.example.com")
    assert not dns.names_equal("a\\.b", "a.b")


# -- messages --------------------------------------------------------------------

def test_round_trip_with_compression() -> None:
    msg = dns.build(7, dns.QR | dns.RD | dns.RA, [dns.Question("www.example.com", dns.A)],
                    answers=[dns.Record("www.example.com", dns.CNAME, 1, 300, "host.example.com"),
                             dns.Record("host.example.com", dns.A, 1, 300, b"\xc0\x00\x02\x01"),
                             dns.Record("host.example.com", dns.AAAA, 1, 300,
                                        bytes.fromhex("20010db8" + "00" * 11 + "01"))],
                    authority=[dns.Record("example.com", dns.SOA, 1, 60,
                                          ("ns.example.com", "root.example.com", 1, 2, 3, 4, 5))])
    assert msg.count(b"example") == 1  # every later name is a pointer
    m = dns.parse(msg)
    assert m.txid == 7 and m.is_response and m.rcode == 0
    assert m.questions == [dns.Question("www.example.com", dns.A, 1)]
    assert [r.data for r in m.answers] == ["host.example.com", b"\xc0\x00\x02\x01",
                                           bytes.fromhex("20010db8" + "00" * 11 + "01")]
    assert m.authority[0].data == ("ns.example.com", "root.example.com", 1, 2, 3, 4, 5)


def test_query_matches_scapy(scapy: ModuleType) -> None:
    ours = dns.build_query(0xBEEF, "www.example.com", dns.AAAA)
    theirs = scapy.DNS(id=0xBEEF, rd=1, qd=scapy.DNSQR(qname="www.example.com", qtype="AAAA"))
    assert ours == bytes(theirs)


def test_parse_scapy_compressed_response(scapy: ModuleType) -> None:
    rr = scapy.DNSRR
    p = scapy.DNS(id=5, qr=1, rd=1, ra=1, qd=scapy.DNSQR(qname="www.example.com"),
                  an=[rr(rrname="www.example.com", type="CNAME", rdata="a.example.com", ttl=30),
                      rr(rrname="a.example.com", type="A", rdata="192.0.2.9", ttl=40)])
    m = dns.parse(bytes(scapy.dns_compress(p)))
    assert [(r.name, r.rtype, r.ttl, r.data) for r in m.answers] == [
        ("www.example.com", dns.CNAME, 30, "a.example.com"),
        ("a.example.com", dns.A, 40, b"\xc0\x00\x02\x09")]


def test_scapy_parses_what_we_build(scapy: ModuleType) -> None:
    msg = dns.build(9, dns.QR | dns.AA, [dns.Question("h.example", dns.PTR)],
                    answers=[dns.Record("h.example", dns.PTR, 1, 5, "target.example")])
    p = scapy.DNS(msg)
    assert p.id == 9 and p.qr == 1 and p.aa == 1
    assert p.an[0].rdata == b"target.example."


def test_counts_larger_than_data_are_rejected_before_parsing() -> None:
    msg = header(qd=1, an=0xFFFF) + q()
    with pytest.raises(Malformed, match="dns.bad_count"):
        dns.parse(msg)


def test_count_short_of_records_is_rejected() -> None:
    msg = header(qd=1, an=2) + q() + rr(b"\xc0\x0c", dns.A, b"\x01\x02\x03\x04") + b"\0" * 10
    with pytest.raises(Malformed):
        dns.parse(msg)


@pytest.mark.parametrize("rtype,length", [(dns.A, 3), (dns.A, 5), (dns.AAAA, 4), (dns.AAAA, 17)])
def test_address_rdlength_must_be_exact(rtype: int, length: int) -> None:
    msg = header(an=1) + q() + rr(b"\xc0\x0c", rtype, b"\x01" * length)
    with pytest.raises(Malformed, match="dns.bad_rdlength"):
        dns.parse(msg)


def test_rdlength_past_the_end_is_rejected() -> None:
    msg = header(an=1) + q() + rr(b"\xc0\x0c", dns.TXT, b"abc", rdlen=200)
    with pytest.raises(Malformed, match="dns.bad_rdlength"):
        dns.parse(msg)


def test_cname_name_must_end_at_rdlength() -> None:
    target = b"\x01a\x00"
    for rdlen in (2, 4):
        msg = header(an=1) + q() + rr(b"\xc0\x0c", dns.CNAME, target, rdlen=rdlen) + b"\0\0"
        with pytest.raises(Malformed):
            dns.parse(msg)


def test_cname_name_may_not_run_past_rdata() -> None:
    # RDLENGTH 2 covers "\x01a" only; the terminator sits outside.
    msg = header(an=1) + q() + b"\xc0\x0c" + struct.pack("!HHIH", dns.CNAME, 1, 1, 2) + b"\x01a\x00"
    with pytest.raises(Malformed, match="dns.truncated_name"):
        dns.parse(msg)


def test_ttl_with_top_bit_reads_as_zero() -> None:
    msg = header(an=1) + q() + rr(b"\xc0\x0c", dns.A, b"\x01\x02\x03\x04", ttl=0x80000001)
    assert dns.parse(msg).answers[0].ttl == 0


def test_short_header() -> None:
    with pytest.raises(Malformed, match="dns.truncated"):
        dns.parse(b"\x00" * 11)


def test_parse_head_ignores_cut_sections() -> None:
    msg = header(an=30, flags=0x8380) + q()
    txid, flags, qs = dns.parse_head(msg)
    assert flags & dns.TC and qs[0].name == "www.example.com"


def test_reverse_names() -> None:
    assert dns.reverse_name(b"\xc0\x00\x02\x01") == "1.2.0.192.in-addr.arpa"
    six = bytes.fromhex("20010db8000000000000000000000001")
    assert dns.reverse_name(six) == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa"


# -- properties ----------------------------------------------------------------------

label = st.binary(min_size=1, max_size=63)


@given(st.lists(label, max_size=6).filter(lambda ls: sum(len(x) + 1 for x in ls) < 255))
def test_any_valid_name_round_trips(labels: list[bytes]) -> None:
    wire = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    name, end = dns.read_name(header() + wire, 12)
    assert end == 12 + len(wire)
    assert dns.encode_name(name) == wire


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    try:
        dns.parse(data)
    except Malformed:
        pass


@settings(max_examples=400)
@given(st.data())
def test_mutated_responses_never_raise_anything_but_malformed(data: st.DataObject) -> None:
    base = bytearray(dns.build(1, 0x8180, [dns.Question("www.example.com", dns.A)],
                               answers=[dns.Record("www.example.com", dns.CNAME, 1, 9, "a.example.com"),
                                        dns.Record("a.example.com", dns.A, 1, 9, b"\1\2\3\4")]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    try:
        dns.parse(bytes(base[:cut]))
    except Malformed:
        pass
