"""The parser contract (issue 18) for every IPv6 parser in one place: whatever
the bytes, each entry point returns or raises ``Malformed`` with a reason of
its own module, never loops on a zero length, and allocates by no length or
count from the packet beyond the bytes present (tracemalloc's peak). The
fuzz targets (fuzz/targets6.py) check the same at scale; these run in
``make test``."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, icmp6, ip_bytes, ipv6, ipv6ext, mld, ndp
from femtotcp.wire.icmp6 import Icmp6Header

LL = ip_bytes("fe80::1")
SOLICITED = ipv6.solicited_node(ip_bytes("fe80::2"))

#: (name, call on arbitrary bytes, the reason prefixes it may use)
ENTRIES: list[tuple[str, Callable[[bytes], Any], tuple[str, ...]]] = [
    ("ipv6.parse", lambda b: ipv6.parse(b), ("ipv6.",)),
    ("ipv6.parse_quote", lambda b: ipv6.parse_quote(b), ("ipv6.",)),
    ("ipv6.check_addresses", lambda b: ipv6.check_addresses(b[:16].ljust(16, b"\1"),
                                                            b[16:32].ljust(16, b"\1")),
     ("ipv6.",)),
    *[(f"ipv6ext.walk({nh})", lambda b, nh=nh: ipv6ext.walk(nh, b), ("ipv6.",))
      for nh in (0, 43, 44, 60)],
    *[(f"ipv6ext.walk({nh}, first=False)",
       lambda b, nh=nh: ipv6ext.walk(nh, b, base=48, first=False), ("ipv6.",))
      for nh in (0, 44)],
    *[(f"ipv6ext.skip_chain({nh})", lambda b, nh=nh: ipv6ext.skip_chain(nh, b), ("ipv6.",))
      for nh in (0, 43, 44, 51, 60)],
    ("ipv6ext.read_options", lambda b: ipv6ext.read_options(b, True), ("ipv6.",)),
    ("icmp6.parse", lambda b: icmp6.parse(b, LL, LL), ("icmp6.",)),
    ("icmp6.parse_quote", lambda b: icmp6.parse_quote(b), ("icmp6.",)),
    ("icmp6.no_error_about", lambda b: icmp6.no_error_about(b[0] if b else 0, b[1:]), ()),
    ("ndp.parse_options", lambda b: ndp.parse_options(b), ("ndp.",)),
    *[(f"ndp.parse({t})", lambda b, t=t: ndp.parse(
        Icmp6Header(t, 0, int.from_bytes(b[:4], "big")), b[4:], LL, SOLICITED, 255), ("ndp.",))
      for t in (133, 134, 135, 136, 137)],
    *[(f"mld.parse({t})", lambda b, t=t: mld.parse(
        Icmp6Header(t, 0, int.from_bytes(b[:4], "big")), b[4:]), ("mld.",))
      for t in (130, 131, 132, 143)],
]
IDS = [e[0] for e in ENTRIES]


def _outcome(call: Callable[[bytes], Any], data: bytes, prefixes: tuple[str, ...]) -> None:
    try:
        call(data)
    except Malformed as exc:
        assert prefixes and exc.reason.startswith(prefixes), exc.reason


@pytest.mark.parametrize(("name", "call", "prefixes"), ENTRIES, ids=IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_parse_or_are_malformed(name: str, call: Callable[[bytes], Any],
                                          prefixes: tuple[str, ...], data: bytes) -> None:
    _outcome(call, data, prefixes)


@pytest.mark.parametrize(("name", "call", "prefixes"), ENTRIES, ids=IDS)
@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x01, 0x08])
def test_uniform_bytes_of_every_length_end(name: str, call: Callable[[bytes], Any],
                                           prefixes: tuple[str, ...], fill: int) -> None:
    """All zeros (every length and count field 0: a walk that did not advance
    would never end), all ones (every length and count at its largest), and
    small repeated values, at every length up to a jumbo Ethernet frame."""
    for n in range(0, 2100, 7):
        _outcome(call, bytes([fill]) * n, prefixes)


def _peak(call: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        try:
            call()
        except Malformed:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Lengths and counts that claim far more than the bytes present.
CLAIMS: list[tuple[str, Callable[[], Any]]] = [
    ("ipv6 payload length 65535", lambda: ipv6.parse(
        ipv6.header_only(LL, LL, 17, 0xFFFF) + bytes(8))),
    ("ext header length 255", lambda: ipv6ext.walk(60, bytes((17, 255)) + bytes(14))),
    ("options header length 255", lambda: ipv6ext.read_options(bytes((17, 255)) + bytes(6))),
    ("AH length 255", lambda: ipv6ext.skip_chain(51, bytes((17, 255)) + bytes(14))),
    ("option TLV length 255", lambda: ipv6ext.walk(60, bytes((17, 0, 0x3E, 255, 0, 0, 0, 0)))),
    ("ND option length 255", lambda: ndp.parse_options(bytes((25, 255)) + bytes(30))),
    ("RDNSS of 127 servers in 24 bytes", lambda: ndp.parse_options(
        bytes((25, 255, 0, 0, 0, 0, 0, 1)) + bytes(16))),
    ("DNSSL label 63 in 16 bytes", lambda: ndp.parse_options(
        bytes((31, 2, 0, 0, 0, 0, 0, 1, 63)) + b"a" * 7)),
    ("MLDv2 report of 65535 records", lambda: mld.parse(
        Icmp6Header(143, 0, 0xFFFF), bytes(20))),
    ("MLDv2 record of 65535 sources", lambda: mld.parse(
        Icmp6Header(143, 0, 1), bytes((1, 255, 255, 255)) + bytes(16))),
    ("MLDv2 query of 65535 sources", lambda: mld.parse(
        Icmp6Header(130, 0, 0), bytes(16) + bytes((0, 0, 255, 255)) + bytes(16))),
    ("quote of a chain claiming 2 KB", lambda: icmp6.parse_quote(
        ipv6.header_only(LL, LL, 60, 2048) + bytes((17, 255)) + bytes(6))),
]


@pytest.mark.parametrize("call", [c for _, c in CLAIMS], ids=[n for n, _ in CLAIMS])
def test_a_claimed_length_allocates_nothing_beyond_the_bytes(call: Callable[[], Any]) -> None:
    with pytest.raises(Malformed):
        call()
    assert _peak(call) < 8 * 1024


def test_a_quote_claiming_more_is_cut_to_the_bytes_present() -> None:
    """RFC 4443 2.4 c: a quote is cut, so its payload length may exceed it."""
    data = ipv6.header_only(LL, LL, 6, 0xFFFF) + bytes(8)
    hdr, rest = ipv6.parse_quote(data)
    assert hdr.payload_len == 0xFFFF and len(rest) == 8
    assert _peak(lambda: ipv6.parse_quote(data)) < 8 * 1024


def test_allocation_follows_the_bytes_present() -> None:
    """The largest honest counts cost in proportion to the message."""
    servers = [bytes(15) + bytes([i]) for i in range(127)]
    rdnss = ndp.opt_rdnss(600, servers)
    assert len(ndp.parse_options(rdnss).rdnss[0].servers) == 127
    assert _peak(lambda: ndp.parse_options(rdnss)) < 16 * len(rdnss)
    records = [mld.AddressRecord(mld.MODE_IS_INCLUDE, ip_bytes("ff02::fb"))] * 70
    report = mld.build_v2_report(LL, records)
    hdr, body = icmp6.parse(report, LL, ipv6.ALL_MLDV2_ROUTERS)
    assert len(mld.parse(hdr, body).records) == 70
    assert _peak(lambda: mld.parse(hdr, body)) < 16 * len(body)


def test_nd_options_of_length_zero_anywhere_end_the_walk() -> None:
    """RFC 4861 4.6: a length of 0 is invalid; the walk stops there, never
    loops, wherever it sits among valid options."""
    unit = bytes((200, 1)) + bytes(6)                 # an unknown option, skipped
    for before in range(0, 180):
        with pytest.raises(Malformed, match="ndp.bad_option_length"):
            ndp.parse_options(unit * before + bytes((200, 0)) + unit)
    assert ndp.parse_options(unit * 180).unknown == 180


def test_empty_mld_records_advance() -> None:
    """Records with no sources and no auxiliary data still take 20 bytes each."""
    body = (bytes((1, 0, 0, 0)) + ip_bytes("ff02::fb")) * 60
    assert len(mld.parse(Icmp6Header(143, 0, 60), body).records) == 60
    with pytest.raises(Malformed, match="mld.bad_record_count"):
        mld.parse(Icmp6Header(143, 0, 61), body)
