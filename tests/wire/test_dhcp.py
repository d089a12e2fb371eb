"""DHCP wire format: options, overload, domain search, lengths; scapy as oracle."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.wire import Malformed, dhcp

MAC = bytes.fromhex("020000000001")


def offer(**kw: object) -> bytes:
    opts = kw.pop("options", [(dhcp.OPT_MESSAGE_TYPE, b"\x02"),
                              (dhcp.OPT_SERVER_ID, b"\xc0\x00\x02\x01"),
                              (dhcp.OPT_LEASE_TIME, dhcp.u32(120))])
    return dhcp.build(dhcp.BOOTREPLY, 0x1234, MAC, opts, yiaddr=b"\xc0\x00\x02\x32", **kw)  # type: ignore[arg-type]


def test_round_trip() -> None:
    m = dhcp.parse(offer())
    assert m.op == dhcp.BOOTREPLY and m.xid == 0x1234 and m.chaddr == MAC
    assert m.message_type == dhcp.OFFER
    assert m.addr(dhcp.OPT_SERVER_ID) == b"\xc0\x00\x02\x01"
    assert m.u32(dhcp.OPT_LEASE_TIME) == 120
    assert len(offer()) == 300


def test_scapy_builds_we_parse(scapy: ModuleType) -> None:
    p = scapy.BOOTP(op=2, xid=0x99, chaddr=MAC, yiaddr="192.0.2.50") / scapy.DHCP(options=[
        ("message-type", "ack"), ("server_id", "192.0.2.1"), ("lease_time", 120),
        ("subnet_mask", "255.255.255.0"), ("router", "192.0.2.1"),
        ("name_server", "192.0.2.1", "192.0.2.2"), ("renewal_time", 60),
        ("rebinding_time", 100), "end"])
    m = dhcp.parse(bytes(p))
    assert m.message_type == dhcp.ACK
    assert m.yiaddr == b"\xc0\x00\x02\x32"
    assert m.addresses(dhcp.OPT_DNS) == [b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02"]
    assert dhcp.mask_to_prefix(m.options[dhcp.OPT_SUBNET_MASK]) == 24
    assert m.u32(dhcp.OPT_T1) == 60 and m.u32(dhcp.OPT_T2) == 100


def test_we_build_scapy_parses(scapy: ModuleType) -> None:
    msg = dhcp.build(dhcp.BOOTREQUEST, 0xABCDEF01, MAC,
                     [(dhcp.OPT_MESSAGE_TYPE, b"\x03"), (dhcp.OPT_REQUESTED_IP, b"\xc0\x00\x02\x32"),
                      (dhcp.OPT_PARAM_REQUEST, bytes([1, 3, 6]))], flags=dhcp.FLAG_BROADCAST)
    p = scapy.BOOTP(msg)
    assert p.xid == 0xABCDEF01 and p.flags == 0x8000 and p.chaddr[:6] == MAC
    opts = dict(o for o in p[scapy.DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 3
    assert opts["requested_addr"] == "192.0.2.50"


def test_overload_file_then_sname() -> None:
    file_opts = bytes([dhcp.OPT_ROUTER, 4, 192, 0, 2, 1, dhcp.OPT_END])
    sname_opts = bytes([dhcp.OPT_DNS, 4, 192, 0, 2, 53, dhcp.OPT_END])
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC,
                     [(dhcp.OPT_MESSAGE_TYPE, b"\x05"), (dhcp.OPT_OVERLOAD, b"\x03")],
                     file=file_opts, sname=sname_opts)
    m = dhcp.parse(msg)
    assert m.addresses(dhcp.OPT_ROUTER) == [b"\xc0\x00\x02\x01"]
    assert m.addresses(dhcp.OPT_DNS) == [b"\xc0\x00\x02\x35"]
    assert m.file == b"" and m.sname == b""


def test_overload_inside_overloaded_field_is_ignored() -> None:
    file_opts = bytes([dhcp.OPT_OVERLOAD, 1, 3, dhcp.OPT_END])
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC,
                     [(dhcp.OPT_MESSAGE_TYPE, b"\x05"), (dhcp.OPT_OVERLOAD, b"\x01")],
                     file=file_opts, sname=bytes([dhcp.OPT_DNS, 200]))
    m = dhcp.parse(msg)  # sname is not walked: only file was overloaded
    assert m.options[dhcp.OPT_OVERLOAD] == b"\x01"
    assert dhcp.OPT_DNS not in m.options


def test_overload_option_in_file_cannot_overrun() -> None:
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC,
                     [(dhcp.OPT_MESSAGE_TYPE, b"\x05"), (dhcp.OPT_OVERLOAD, b"\x01")],
                     file=b"\x03\xff")  # router option claiming 255 bytes in a 128-byte field
    with pytest.raises(Malformed, match="dhcp.bad_option_length"):
        dhcp.parse(msg)


def test_bad_overload_value() -> None:
    with pytest.raises(Malformed, match="dhcp.bad_overload"):
        dhcp.parse(offer(options=[(dhcp.OPT_MESSAGE_TYPE, b"\x02"), (dhcp.OPT_OVERLOAD, b"\x07")]))


def test_split_options_are_concatenated() -> None:
    raw = bytes([dhcp.OPT_MESSAGE_TYPE, 1, 5, dhcp.OPT_DNS, 4, 1, 1, 1, 1,
                 dhcp.OPT_DNS, 4, 2, 2, 2, 2, dhcp.OPT_END])
    m = dhcp.parse(dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=raw))
    assert m.addresses(dhcp.OPT_DNS) == [b"\1\1\1\1", b"\2\2\2\2"]


def test_long_option_value_is_split_on_build() -> None:
    value = bytes(range(256)) * 2
    m = dhcp.parse(dhcp.build(dhcp.BOOTREPLY, 1, MAC, [(200, value)]))
    assert m.options[200] == value


@pytest.mark.parametrize("code,length", [
    (dhcp.OPT_SUBNET_MASK, 3), (dhcp.OPT_LEASE_TIME, 2), (dhcp.OPT_SERVER_ID, 5),
    (dhcp.OPT_MESSAGE_TYPE, 0), (dhcp.OPT_MESSAGE_TYPE, 2), (dhcp.OPT_T1, 8)])
def test_fixed_size_options_checked(code: int, length: int) -> None:
    raw = bytes([code, length]) + b"\x05" * length + b"\xff"
    with pytest.raises(Malformed, match="dhcp.bad_option_length"):
        dhcp.parse(dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=raw))


@pytest.mark.parametrize("length", [0, 3, 5, 7])
def test_address_lists_hold_whole_entries(length: int) -> None:
    raw = bytes([dhcp.OPT_DNS, length]) + b"\x01" * length + b"\xff"
    with pytest.raises(Malformed, match="dhcp.bad_option_length"):
        dhcp.parse(dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=raw))


def test_option_length_past_end() -> None:
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=b"\x35\x01\x05\x0f\xf0abc")
    with pytest.raises(Malformed, match="dhcp.bad_option_length"):
        dhcp.parse(msg[:dhcp.MIN_LEN + 8])


def test_option_code_as_last_byte() -> None:
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=b"\x35\x01\x05\x06")
    with pytest.raises(Malformed, match="dhcp.bad_option_length"):
        dhcp.parse(msg[:dhcp.MIN_LEN + 4])


def test_bad_cookie_op_hlen_truncation() -> None:
    good = bytearray(offer())
    bad = bytearray(good)
    bad[236] = 0
    with pytest.raises(Malformed, match="dhcp.bad_cookie"):
        dhcp.parse(bytes(bad))
    bad = bytearray(good)
    bad[0] = 3
    with pytest.raises(Malformed, match="dhcp.bad_op"):
        dhcp.parse(bytes(bad))
    bad = bytearray(good)
    bad[2] = 17
    with pytest.raises(Malformed, match="dhcp.bad_hlen"):
        dhcp.parse(bytes(bad))
    with pytest.raises(Malformed, match="dhcp.truncated"):
        dhcp.parse(bytes(good[:239]))


def test_non_contiguous_mask_rejected() -> None:
    with pytest.raises(Malformed, match="dhcp.bad_subnet_mask"):
        dhcp.parse(offer(options=[(dhcp.OPT_SUBNET_MASK, b"\xff\x00\xff\x00")]))


def test_message_type_out_of_range() -> None:
    with pytest.raises(Malformed, match="dhcp.bad_message_type"):
        dhcp.parse(offer(options=[(dhcp.OPT_MESSAGE_TYPE, b"\x09")]))


# -- domain search (119, RFC 3397) ----------------------------------------------

def test_domain_search_rfc3397_example() -> None:
    # RFC 3397 section 2's example: eng.apple.com and marketing.apple.com
    value = (b"\x03eng\x05apple\x03com\x00" + b"\x09marketing\xc0\x04")
    assert dhcp.domain_search(value) == ["eng.apple.com", "marketing.apple.com"]
    assert dhcp.encode_domain_search(["eng.apple.com", "marketing.apple.com"]) == value


def test_domain_search_forward_or_self_pointer_rejected() -> None:
    for value in (b"\xc0\x00", b"\x01a\xc0\x00", b"\xc0\x05\x00\x01b\x00", b"\x01a\x00\xc0\x02"):
        with pytest.raises(Malformed, match="dhcp.bad_domain_search"):
            dhcp.domain_search(value)


def test_domain_search_split_over_two_options_is_joined() -> None:
    value = dhcp.encode_domain_search(["a" * 60 + ".example", "b" * 60 + ".example",
                                       "c" * 60 + ".example", "d" * 60 + ".example",
                                       "e" * 60 + ".example"])
    assert len(value) > 255
    m = dhcp.parse(dhcp.build(dhcp.BOOTREPLY, 1, MAC, [(dhcp.OPT_DOMAIN_SEARCH, value)]))
    assert len(dhcp.domain_search(m.options[dhcp.OPT_DOMAIN_SEARCH])) == 5


def test_bad_domain_search_rejects_message() -> None:
    with pytest.raises(Malformed, match="dhcp.bad_domain_search"):
        dhcp.parse(offer(options=[(dhcp.OPT_DOMAIN_SEARCH, b"\x05abc")]))


def test_text_option_is_sanitised() -> None:
    assert dhcp.text(b"host\x07name\x00junk") == "host?name"


# -- properties ----------------------------------------------------------------

@settings(max_examples=400)
@given(st.binary(max_size=700))
def test_random_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    try:
        dhcp.parse(data)
    except Malformed:
        pass


@settings(max_examples=400)
@given(st.binary(max_size=400), st.binary(max_size=128), st.binary(max_size=64),
       st.sampled_from([0, 1, 2, 3]))
def test_random_options_never_raise_anything_but_malformed(
        opts: bytes, file: bytes, sname: bytes, overload: int) -> None:
    head = bytes([dhcp.OPT_OVERLOAD, 1, overload]) if overload else b""
    msg = dhcp.build(dhcp.BOOTREPLY, 1, MAC, [], raw_options=head + opts, file=file, sname=sname)
    try:
        dhcp.parse(msg)
    except Malformed:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_domain_search_never_raises_anything_but_malformed(value: bytes) -> None:
    try:
        dhcp.domain_search(value)
    except Malformed:
        pass
