"""IPv4/ICMP rules found by the differential run against Linux
(tests/e2e/test_conformance.py), pinned here on the virtual clock."""

from __future__ import annotations

import pytest
from femtolan import BCAST_MAC, SNIFF_IP, SUBNET_BCAST, addr, ip_frame, mac, make_lan

from femtotcp.wire import icmp4, ipv4


@pytest.mark.parametrize(("options", "pointer"), [
    (bytes([0x07, 0x00, 0x04, 0x00]), 20),              # length 0
    (bytes([0x07, 0x01, 0x04, 0x00]), 20),              # length 1
    (bytes([0x07, 0x27, 0x04, 0x00]), 20),              # past the header
    (bytes([0x01, 0x07, 0x07, 0x02, 0, 0, 0, 0]), 23),  # record route, pointer 2
])
def test_bad_option_gets_parameter_problem(options: bytes, pointer: int) -> None:
    """RFC 1122 3.2.2.5: Parameter Problem, code 0, pointer at the bad octet (Linux's)."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), ipv4.PROTO_ICMP,
                          icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"x"),
                          dst_mac=mac(0), options=options))
    lan.run(1)
    errs = sniff.icmps(icmp4.PARAMETER_PROBLEM, 0)
    assert len(errs) == 1
    assert errs[0][1].rest >> 24 == pointer
    assert not sniff.icmps(icmp4.ECHO_REPLY)


def test_no_parameter_problem_about_broadcast() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, SUBNET_BCAST, ipv4.PROTO_ICMP,
                          icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"x"),
                          dst_mac=BCAST_MAC, options=bytes([0x07, 0x00, 0x04, 0x00])))
    lan.run(1)
    assert not sniff.icmps(icmp4.PARAMETER_PROBLEM)


def test_timestamp_request_answered() -> None:
    """RFC 792: the reply copies the originate timestamp and carries ours."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    body = (123456).to_bytes(4, "big") + bytes(8)
    sniff.inject(ip_frame(SNIFF_IP, addr(0), ipv4.PROTO_ICMP,
                          icmp4.build(13, 0, (7 << 16) | 9, body), dst_mac=mac(0)))
    lan.run(1)
    replies = sniff.icmps(14, 0)
    assert len(replies) == 1
    _, hdr, payload = replies[0]
    assert hdr.rest == (7 << 16) | 9
    assert len(payload) == 12 and payload[:4] == body[:4]


def test_timestamp_request_to_broadcast_ignored() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, SUBNET_BCAST, ipv4.PROTO_ICMP,
                          icmp4.build(13, 0, 0, bytes(12)), dst_mac=BCAST_MAC))
    lan.run(1)
    assert not sniff.icmps(14)


def test_echo_reply_keeps_the_code() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(ip_frame(SNIFF_IP, addr(0), ipv4.PROTO_ICMP,
                          icmp4.build(icmp4.ECHO_REQUEST, 3, 0x10001, b"abc"), dst_mac=mac(0)))
    lan.run(1)
    assert len(sniff.icmps(icmp4.ECHO_REPLY, 3)) == 1


def test_reassembly_timeout_quotes_the_first_fragment() -> None:
    """RFC 1812 4.3.2.3 (as Linux): the time-exceeded error carries the first fragment."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    data = icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, bytes(100))
    sniff.inject(ip_frame(SNIFF_IP, addr(0), ipv4.PROTO_ICMP, data[:64], dst_mac=mac(0),
                          flags_frag=0x2000))
    lan.run(40)
    errs = sniff.icmps(icmp4.TIME_EXCEEDED, 1)
    assert len(errs) == 1
    assert len(errs[0][2]) == 20 + 64
