"""Malformed and forged DHCP replies against the client.

The cases follow the public descriptions of the DHCP client bugs of URGENT/11
(VxWorks ipdhcpc, CVE-2019-12257: a heap overflow while parsing the options
of an OFFER/ACK), Ripple20 (Treck's DHCP option parsing reading past the
message), NAME:WRECK's FreeBSD dhclient (CVE-2020-7461: option 119's
compressed names walked without bounds), and RFC 2131/2132's rules: op,
xid, chaddr/hlen, magic cookie, message type, fixed option sizes, whole list
entries, option overload and a usable ``yiaddr``.

A demo server answers; a rewrite hook mangles its OFFER (or ACK). Every case
asserts: the reply is dropped with a named counter, no lease is bound, no
address or route appears on the interface, and nothing raised.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femtotcp.phy.memory import Switch
from femtotcp.runtime import SimLoop
from femtotcp.services import dhcp
from femtotcp.services.dhcp_server import DhcpServer
from femtotcp.stack.stack import Stack
from femtotcp.wire import dhcp as wire
from femtotcp.wire import ip_bytes

OPTIONS_AT = wire.MIN_LEN     # first option byte


class Net:
    def __init__(self) -> None:
        self.loop = SimLoop()
        self.switch = Switch(self.loop)
        self.server_stack = self._stack("server", 0x01, "192.0.2.1/24")
        self.server = DhcpServer(self.server_stack, self.server_stack.interfaces[0],
                                 "192.0.2.100", "192.0.2.110", router="192.0.2.1",
                                 dns=["192.0.2.1"], lease_time=120)
        self.client_stack = self._stack("client", 0x10, None)
        self.iface = self.client_stack.interfaces[0]
        self.client = dhcp.install(self.client_stack, self.iface)
        self.client.probe = False

    def _stack(self, name: str, n: int, ip: str | None) -> Stack:
        st = Stack(name, modules=["arp", "ipv4", "icmp4", "udp", "dns"])
        st.add_interface(self.switch.port(name), mac=f"02:00:00:00:00:{n:02x}", ipv4=ip)
        self.loop.add_stack(st)
        st.start()
        return st

    def assert_untouched(self) -> None:
        assert self.client.lease is None
        assert self.client.state in (dhcp.SELECTING, dhcp.REQUESTING)
        assert self.iface.ipv4 == []
        assert self.client_stack.routes.lookup(ip_bytes("203.0.113.1")) is None
        assert self.client_stack.resolver.current_servers() == []
        assert self.client_stack.counters["stack.internal_error"] == 0
        assert self.client_stack.counters["dhcp.bound"] == 0


def options_of(reply: bytes) -> list[tuple[int, bytes]]:
    """The server's options as (code, value) pairs, in order."""
    out = []
    i = OPTIONS_AT
    while reply[i] != wire.OPT_END:
        code, length = reply[i], reply[i + 1]
        out.append((code, reply[i + 2:i + 2 + length]))
        i += 2 + length
    return out


def with_options(reply: bytes, raw: bytes) -> bytes:
    return reply[:OPTIONS_AT] + raw


def replace_option(reply: bytes, code: int, value: bytes | None) -> bytes:
    """The reply with option ``code`` set to ``value`` (None removes it)."""
    opts = [(c, v) for c, v in options_of(reply) if c != code]
    if value is not None:
        opts.append((code, value))
    raw = b"".join(bytes([c, len(v)]) + v for c, v in opts) + b"\xff"
    return with_options(reply, raw)


def set_field(reply: bytes, offset: int, value: bytes) -> bytes:
    return reply[:offset] + value + reply[offset + len(value):]


def raw_opts(reply: bytes, tail: bytes) -> bytes:
    """Keep message type and server id, then ``tail`` verbatim (no END added)."""
    return with_options(reply, bytes([53, 1, reply_type(reply), 54, 4, 192, 0, 2, 1]) + tail)


def reply_type(reply: bytes) -> int:
    return dict(options_of(reply))[53][0]


Mangle = Callable[[bytes], bytes]

# name -> (mangler, expected drop counter)
CASES: dict[str, tuple[Mangle, str]] = {
    # URGENT/11 CVE-2019-12257 / Ripple20: option lengths against the buffer.
    "option_length_past_end": (lambda r: raw_opts(r, b"\x03\xfe\xc0\x00"), "dhcp.bad_option_length"),
    "option_code_is_last_byte": (lambda r: raw_opts(r, b"\x03")[:OPTIONS_AT + 10],
                                 "dhcp.bad_option_length"),
    "option_length_is_last_byte": (lambda r: raw_opts(r, b"\x06\x08\xc0")[:OPTIONS_AT + 11],
                                   "dhcp.bad_option_length"),
    # RFC 2132 9.3 overload.
    "overload_file_option_overruns_file": (
        lambda r: set_field(replace_option(r, 52, b"\x01"), 108, b"\x06\xff\xc0\x00\x02\x01"),
        "dhcp.bad_option_length"),
    "overload_sname_option_overruns_sname": (
        lambda r: set_field(replace_option(r, 52, b"\x02"), 44 + 60, b"\x03\x08\xc0\x00"),
        "dhcp.bad_option_length"),
    "overload_value_out_of_range": (lambda r: replace_option(r, 52, b"\x04"), "dhcp.bad_overload"),
    "overload_wrong_size": (lambda r: replace_option(r, 52, b"\x01\x01"), "dhcp.bad_option_length"),
    # CVE-2020-7461 (NAME:WRECK, FreeBSD dhclient): option 119.
    "search_pointer_to_itself": (lambda r: replace_option(r, 119, b"\xc0\x00"),
                                 "dhcp.bad_domain_search"),
    "search_pointer_forward": (lambda r: replace_option(r, 119, b"\x01a\xc0\x08\x00"),
                               "dhcp.bad_domain_search"),
    "search_pointer_loop": (lambda r: replace_option(r, 119, b"\x01a\x00\x01b\xc0\x03"),
                            "dhcp.bad_domain_search"),
    "search_label_past_end": (lambda r: replace_option(r, 119, b"\x3fabc"),
                              "dhcp.bad_domain_search"),
    "search_no_terminator": (lambda r: replace_option(r, 119, b"\x03abc"), "dhcp.bad_domain_search"),
    "search_label_type_0x40": (lambda r: replace_option(r, 119, b"\x41a\x00"),
                               "dhcp.bad_domain_search"),
    # Fixed sizes and whole entries (RFC 2132).
    "subnet_mask_3_bytes": (lambda r: replace_option(r, 1, b"\xff\xff\xff"), "dhcp.bad_option_length"),
    "subnet_mask_noncontiguous": (lambda r: replace_option(r, 1, b"\xff\x00\xff\x00"),
                                  "dhcp.bad_subnet_mask"),
    "lease_time_2_bytes": (lambda r: replace_option(r, 51, b"\x00\x78"), "dhcp.bad_option_length"),
    "server_id_2_bytes": (lambda r: replace_option(r, 54, b"\xc0\x00"), "dhcp.bad_option_length"),
    "message_type_empty": (lambda r: replace_option(r, 53, b""), "dhcp.bad_option_length"),
    "message_type_2_bytes": (lambda r: replace_option(r, 53, b"\x02\x02"), "dhcp.bad_option_length"),
    "t1_5_bytes": (lambda r: replace_option(r, 58, b"\0\0\0\x10\0"), "dhcp.bad_option_length"),
    "router_6_bytes": (lambda r: replace_option(r, 3, b"\xc0\x00\x02\x01\xc0\x00"),
                       "dhcp.bad_option_length"),
    "dns_empty": (lambda r: replace_option(r, 6, b""), "dhcp.bad_option_length"),
    "dns_3_bytes": (lambda r: replace_option(r, 6, b"\x01\x02\x03"), "dhcp.bad_option_length"),
    # The BOOTP header.
    "bad_magic_cookie": (lambda r: set_field(r, 236, b"\x63\x82\x53\x64"), "dhcp.bad_cookie"),
    "truncated_before_cookie": (lambda r: r[:238], "dhcp.truncated"),
    "op_bootrequest": (lambda r: set_field(r, 0, b"\x01"), "dhcp.bad_op"),
    "op_3": (lambda r: set_field(r, 0, b"\x03"), "dhcp.bad_op"),
    "hlen_17": (lambda r: set_field(r, 2, b"\x11"), "dhcp.bad_hlen"),
    "hlen_16": (lambda r: set_field(r, 2, b"\x10"), "dhcp.bad_hlen"),
    "htype_ieee802": (lambda r: set_field(r, 1, b"\x06"), "dhcp.bad_hlen"),
    "wrong_xid": (lambda r: set_field(r, 4, bytes(b ^ 0xFF for b in r[4:8])), "dhcp.bad_xid"),
    "wrong_chaddr": (lambda r: set_field(r, 28, b"\x02\x00\x00\x00\x00\x11"), "dhcp.bad_chaddr"),
    # yiaddr must be a usable host address.
    "yiaddr_zero": (lambda r: set_field(r, 16, b"\0\0\0\0"), "dhcp.bad_yiaddr"),
    "yiaddr_broadcast": (lambda r: set_field(r, 16, b"\xff\xff\xff\xff"), "dhcp.bad_yiaddr"),
    "yiaddr_multicast": (lambda r: set_field(r, 16, b"\xe0\x00\x00\x01"), "dhcp.bad_yiaddr"),
    "yiaddr_class_e": (lambda r: set_field(r, 16, b"\xf0\x00\x00\x01"), "dhcp.bad_yiaddr"),
    "yiaddr_loopback": (lambda r: set_field(r, 16, b"\x7f\x00\x00\x01"), "dhcp.bad_yiaddr"),
    "yiaddr_this_network": (lambda r: set_field(r, 16, b"\x00\x00\x00\x05"), "dhcp.bad_yiaddr"),
    "yiaddr_subnet_broadcast": (lambda r: set_field(r, 16, b"\xc0\x00\x02\xff"), "dhcp.bad_yiaddr"),
    "yiaddr_subnet_network": (lambda r: set_field(r, 16, b"\xc0\x00\x02\x00"), "dhcp.bad_yiaddr"),
    # Required options and message types.
    "no_message_type": (lambda r: replace_option(r, 53, None), "dhcp.no_message_type"),
    "message_type_9": (lambda r: replace_option(r, 53, b"\x09"), "dhcp.bad_message_type"),
    "no_server_id": (lambda r: replace_option(r, 54, None), "dhcp.no_server_id"),
    "server_id_zero": (lambda r: replace_option(r, 54, b"\0\0\0\0"), "dhcp.bad_server_id"),
    "server_id_broadcast": (lambda r: replace_option(r, 54, b"\xff\xff\xff\xff"),
                            "dhcp.bad_server_id"),
    "no_lease_time": (lambda r: replace_option(r, 51, None), "dhcp.no_lease_time"),
}

OFFER_ONLY = {"message_type_9"}


def _mangle_at(net: Net, stage: int, mangle: Mangle) -> list[bytes]:
    sent: list[bytes] = []

    def rewrite(reply: bytes, request: wire.DhcpMessage) -> bytes:
        if reply_type(reply) == stage:
            reply = mangle(reply)
            sent.append(reply)
        return reply

    net.server.rewrite = rewrite
    return sent


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_offer_is_dropped_and_counted(case: str) -> None:
    mangle, counter = CASES[case]
    net = Net()
    sent = _mangle_at(net, wire.OFFER, mangle)
    net.client.start()
    net.loop.run(duration=30)
    assert len(sent) >= 2, "the server kept offering"
    assert net.client_stack.counters[counter] >= len(sent), net.client_stack.counters.snapshot()
    assert net.client.state == dhcp.SELECTING
    net.assert_untouched()


@pytest.mark.parametrize("case", sorted(set(CASES) - OFFER_ONLY))
def test_malformed_ack_is_dropped_and_counted(case: str) -> None:
    mangle, counter = CASES[case]
    net = Net()
    sent = _mangle_at(net, wire.ACK, mangle)
    net.client.start()
    net.loop.run(duration=10)
    assert sent, "an ACK was sent"
    assert net.client_stack.counters[counter] >= len(sent), net.client_stack.counters.snapshot()
    net.assert_untouched()


def test_ack_while_selecting_is_ignored() -> None:
    net = Net()
    net.server.rewrite = lambda r, q: replace_option(r, 53, b"\x05") if reply_type(r) == 2 else r
    net.client.start()
    net.loop.run(duration=10)
    assert net.client_stack.counters["dhcp.bad_message_type_for_state"] >= 1
    net.assert_untouched()


def test_reply_from_wrong_source_port_is_dropped() -> None:
    net = Net()
    net.server.close()
    rogue = net.server_stack.udp.open(ip_bytes("0.0.0.0"), 6767)
    net.client.start()
    net.loop.run(duration=2)
    offer = wire.build(wire.BOOTREPLY, net.client.xid, net.iface.mac,
                       [(53, b"\x02"), (54, ip_bytes("192.0.2.1")), (51, wire.u32(60))],
                       yiaddr=ip_bytes("192.0.2.100"))
    rogue.sendto(offer, b"\xff\xff\xff\xff", 68, iface=net.server_stack.interfaces[0])
    net.loop.run(duration=1)
    assert net.client_stack.counters["dhcp.bad_source_port"] == 1
    net.assert_untouched()


def test_offer_from_one_server_ack_from_another_is_dropped() -> None:
    net = Net()

    def forge(reply: bytes, request: wire.DhcpMessage) -> bytes:
        if reply_type(reply) == wire.ACK:
            return replace_option(reply, 54, ip_bytes("192.0.2.77"))
        return reply

    net.server.rewrite = forge
    net.client.start()
    net.loop.run(duration=10)
    assert net.client_stack.counters["dhcp.bad_server_id"] >= 1
    net.assert_untouched()


def test_ack_for_another_address_than_offered_is_dropped() -> None:
    net = Net()
    net.server.rewrite = lambda r, q: set_field(r, 16, ip_bytes("192.0.2.107")) \
        if reply_type(r) == wire.ACK else r
    net.client.start()
    net.loop.run(duration=10)
    assert net.client_stack.counters["dhcp.bad_yiaddr"] >= 1
    net.assert_untouched()


def test_overload_inside_file_does_not_recurse() -> None:
    """An overload option inside the overloaded field is ignored, not followed:
    the walk ends, and the message is otherwise valid."""
    net = Net()

    def nested(reply: bytes, request: wire.DhcpMessage) -> bytes:
        reply = replace_option(reply, 52, b"\x03")
        reply = set_field(reply, 108, b"\x34\x01\x03\xff")   # file: overload again
        return set_field(reply, 44, b"\x34\x01\x03\xff")     # sname: and again

    net.server.rewrite = nested
    net.client.start()
    assert net.loop.run_until(lambda: net.client.state == dhcp.BOUND, 30)


# -- hypothesis: nothing a server sends makes the client raise or hang ----------------

def _selecting_client() -> tuple[Net, bytes]:
    net = Net()
    net.server.close()
    net.client.start()
    net.loop.run(duration=2)
    offer = wire.build(wire.BOOTREPLY, net.client.xid, net.iface.mac,
                       [(53, b"\x02"), (54, ip_bytes("192.0.2.1")), (51, wire.u32(60)),
                        (1, b"\xff\xff\xff\x00"), (3, ip_bytes("192.0.2.1")),
                        (6, ip_bytes("192.0.2.1") * 2), (52, b"\x03"),
                        (119, wire.encode_domain_search(["demo", "lab.demo"]))],
                       yiaddr=ip_bytes("192.0.2.100"), file=b"\x0f\x04demo\xff",
                       sname=b"\x0c\x04host\xff")
    return net, offer


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_offers_never_raise(data: st.DataObject) -> None:
    net, offer = _selecting_client()
    msg = bytearray(offer)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.sampled_from([0, 1, 2, 16, 17, 18, 19, 44, 45, 108, 109, 236]
                                      + list(range(240, 300))))
        msg[i] = data.draw(st.integers(0, 255))
    msg = msg[:data.draw(st.integers(0, len(msg)))]
    net.client.input(bytes(msg))
    net.loop.run(duration=5)
    assert net.client_stack.counters["stack.internal_error"] == 0
    if net.client.state == dhcp.REQUESTING:
        assert net.client.offer is not None and dhcp.usable_unicast(net.client.offer.yiaddr)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=128), st.binary(max_size=64))
def test_random_options_never_raise(opts: bytes, file: bytes, sname: bytes) -> None:
    net, offer = _selecting_client()
    msg = bytearray(offer[:OPTIONS_AT]) + bytes([52, 1, 3]) + opts
    msg[108:108 + len(file)] = file
    msg[44:44 + len(sname)] = sname
    net.client.input(bytes(msg))
    net.loop.run(duration=5)
    assert net.client_stack.counters["stack.internal_error"] == 0
    assert net.iface.ipv4 == []


def test_option_parse_bounds_are_exact() -> None:
    """A length that reaches exactly the end of the options is fine; one more is not."""
    net, offer = _selecting_client()
    base = offer[:OPTIONS_AT] + bytes([53, 1, 2, 54, 4, 192, 0, 2, 1, 51, 4, 0, 0, 0, 60])
    ok = base + bytes([200, 3]) + b"abc"
    assert wire.parse(ok).options[200] == b"abc"
    with pytest.raises(wire.Malformed):
        wire.parse(base + bytes([200, 4]) + b"abc")
