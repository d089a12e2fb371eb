"""IPv4 record route and timestamp options in our answers (RFC 791 3.1, RFC
1122 3.2.2.6), as Linux returns them: checked against the kernel frame by
frame in tests/e2e/test_conformance.py (probes ``icmp_echo_record_route_*``,
``icmp_echo_timestamp_*``, ``udp_closed_port_record_route``) and with ping in
tests/e2e/test_foundation.py; pinned here on the virtual clock."""

from __future__ import annotations

from femtolan import SNIFF_IP, addr, echo_frame, fragment, ip_frame, mac, make_lan, udp_frame

from femtotcp.wire import icmp4, ipv4

RR3 = bytes([7, 15, 4]) + bytes(12) + b"\x00"        # room for three addresses


def test_echo_reply_records_the_route_in_and_out() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0), options=RR3))
    lan.run(1)
    (reply, _, _), = sniff.icmps(icmp4.ECHO_REPLY)
    assert reply.ip.options == bytes([7, 15, 12]) + addr(0) + addr(0) + bytes(4) + b"\x00"
    assert lan.stacks[0].counters["icmp4.echo_replied"] == 1


def test_echo_reply_without_room_for_its_timestamp_is_not_sent() -> None:
    """Room for our time on receipt, half a slot for the reply's: Linux sends nothing."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(echo_frame(SNIFF_IP, addr(0), dst_mac=mac(0),
                            options=bytes([68, 10, 5, 0]) + bytes(8)))
    lan.run(1)
    assert not sniff.icmps(icmp4.ECHO_REPLY)
    assert lan.stacks[0].counters["icmp4.options_not_echoable"] == 1


def test_reassembled_request_keeps_the_first_fragments_options() -> None:
    """Later fragments carry no record route (it is not copied, RFC 791 3.2): the
    datagram's options are the first fragment's, whichever fragment came last."""
    lan = make_lan(1)
    sniff = lan.sniffer()
    msg = icmp4.build_echo(icmp4.ECHO_REQUEST, 5, 1, bytes(range(256)) * 12)
    first = fragment(SNIFF_IP, addr(0), ipv4.PROTO_ICMP, msg, 0, 1400, dst_mac=mac(0),
                     options=RR3)
    rest = [fragment(SNIFF_IP, addr(0), ipv4.PROTO_ICMP, msg, off, 1400, dst_mac=mac(0))
            for off in range(1400, len(msg), 1400)]
    for frame in [*rest, first]:
        sniff.inject(frame)
    lan.run(1)
    replies = sniff.ip_frames(lambda f: f.ip.proto == ipv4.PROTO_ICMP and f.ip.src == addr(0))
    assert len(replies) >= 3                          # the reply is fragmented too
    head = [f for f in replies if f.ip.frag_offset == 0]
    tail = [f for f in replies if f.ip.frag_offset]
    assert head[0].ip.options == bytes([7, 15, 12]) + addr(0) + addr(0) + bytes(4) + b"\x00"
    # Its later fragments keep the header's length, the option replaced by NOPs.
    assert all(f.ip.options == b"\x01" * 15 + b"\x00" for f in tail)
    whole = b"".join(f.payload for f in sorted(replies, key=lambda f: f.ip.frag_offset))
    assert whole[8:] == msg[8:]


def test_port_unreachable_echoes_the_record_route() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    sniff.inject(udp_frame(SNIFF_IP, addr(0), 4000, 9999, b"q", dst_mac=mac(0),
                           options=bytes([7, 11, 4]) + bytes(8) + b"\x00"))
    lan.run(1)
    (err, _, quoted), = sniff.icmps(icmp4.DEST_UNREACHABLE, 3)
    assert err.ip.options == bytes([7, 11, 12]) + addr(0) + addr(0) + b"\x00"
    assert quoted[:1] == b"\x48"                      # the datagram quoted, options and all


def test_duplicate_record_route_is_a_parameter_problem_echoing_the_first() -> None:
    lan = make_lan(1)
    sniff = lan.sniffer()
    opts = bytes([7, 7, 4]) + bytes(4) + bytes([7, 7, 4]) + bytes(4) + bytes(2)
    sniff.inject(ip_frame(SNIFF_IP, addr(0), ipv4.PROTO_ICMP,
                          icmp4.build_echo(icmp4.ECHO_REQUEST, 1, 1, b"x"), dst_mac=mac(0),
                          options=opts))
    lan.run(1)
    (err, hdr, _), = sniff.icmps(icmp4.PARAMETER_PROBLEM, 0)
    assert hdr.rest >> 24 == 27                       # the second option's type octet
    assert err.ip.options == bytes([7, 7, 8]) + addr(0) + b"\x00"
    assert not sniff.icmps(icmp4.ECHO_REPLY)
