"""``femtotcp gateway``: a bad flag or value gets one line naming it and exit 2,
before any device is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from femtotcp.cli import main
from femtotcp.gateway.gateway import Forward, GatewayOptions


@pytest.mark.parametrize("args, needle", [
    ([], "one guest attachment"),
    (["--tap", "t0", "--qemu-stream", "unix:/tmp/x"], "--tap and --qemu-stream"),
    (["--qemu-stream", "tcp:1.2.3.4:5"], "want unix:PATH"),
    (["--qemu-dgram", "unix:" + "x" * 200], "too long"),
    (["--qemu-dgram", "unix:/tmp/x", "--netns", "/run/netns/a"], "--netns goes with --tap"),
    (["--tap", "a/b"], "--tap"),
    (["--tap", "t0", "--net", "192.0.2.0"], "give a prefix"),
    (["--tap", "t0", "--net", "192.0.2.0/29"], "/27 or shorter"),
    (["--tap", "t0", "--net", "127.0.0.0/8"], "not a usable unicast network"),
    (["--tap", "t0", "--net", "192.0.2.300/24"], "192.0.2.300"),
    (["--tap", "t0", "--mtu", "70000"], "--mtu 70000"),
    (["--tap", "t0", "-t", "80"], "-t 80: want [ADDR:]HOSTPORT:GUESTPORT"),
    (["--tap", "t0", "-t", "8080:0"], "port 0 out of range"),
    (["--tap", "t0", "-u", "x:1:2"], "-u x:1:2"),
    (["--tap", "t0", "--host-record", "name"], "--host-record name: want NAME=ADDR"),
    (["--tap", "t0", "--host-record", "a=2001:db8::g"], "NAME=ADDR (IPv4 or IPv6)"),
    (["--tap", "t0", "--net6", "2001:db8::/48"], "--net6 2001:db8::/48: want an IPv6 /64"),
    (["--tap", "t0", "--net6", "192.0.2.0/64"], "want an IPv6 /64"),
    (["--tap", "t0", "--net6", "fe80::/64"], "not a usable unicast prefix"),
    (["--tap", "t0", "--dns-upstream", "nowhere"], "--dns-upstream nowhere"),
    (["--tap", "t0", "--max-flows", "0"], "--max-flows 0"),
    (["--tap", "t0", "--udp-timeout", "0"], "--udp-timeout 0"),
    (["--tap", "t0", "--connect-timeout", "-1"], "--connect-timeout -1"),
    (["--fd", "9999"], "--fd 9999: Bad file descriptor"),
    (["--fd", "9999", "--tap", "t0"], "--tap and --fd"),
    (["--tap", "a", "--tap", "b", "--netns", "x", "--netns", "y", "--netns", "z"],
     "--netns given 3 times for 2 --tap"),
    (["--tap", "a", "--tap", "a"], "the same TAP twice in one namespace"),
    (["--tap", "a", "--max-guests", "2"], "--max-guests goes with --qemu-stream"),
    (["--qemu-stream", "unix:/tmp/x", "--max-guests", "0"], "--max-guests 0: out of range"),
])
def test_bad_values_get_one_line_and_exit_2(args: list[str], needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("femtotcp gateway: error: ") and needle in err
    assert err.count("\n") == 1


def test_addresses_follow_qemus_layout_on_any_prefix() -> None:
    net, plen, gw, dns, first, last = GatewayOptions(tap="t0",
                                                     net="198.51.100.0/24").addresses()
    assert (net, plen, gw, dns, first) == (bytes([198, 51, 100, 0]), 24,
                                           bytes([198, 51, 100, 2]), bytes([198, 51, 100, 3]),
                                           bytes([198, 51, 100, 15]))
    assert last == bytes([198, 51, 100, 254])
    # A /27 still has room: leases .15 to .30 (.31 is the broadcast address).
    *_, first, last = GatewayOptions(tap="t0", net="192.0.2.32/27").addresses()
    assert (first, last) == (bytes([192, 0, 2, 47]), bytes([192, 0, 2, 62]))


def test_ipv6_addresses_mirror_the_ipv4_layout() -> None:
    prefix, gw, dns = GatewayOptions(tap="t0", net6="2001:db8:1:2::77/64").addresses6() \
        or (b"", b"", b"")
    assert prefix == bytes.fromhex("20010db8000100020000000000000000")
    assert gw == prefix[:15] + b"\x02" and dns == prefix[:15] + b"\x03"
    assert GatewayOptions(tap="t0", net6=None).addresses6() is None
    # The default is slirp4netns's ULA.
    assert GatewayOptions(tap="t0").addresses6() == (
        bytes.fromhex("fd00" + "00" * 14), bytes.fromhex("fd00" + "00" * 13 + "02"),
        bytes.fromhex("fd00" + "00" * 13 + "03"))


def test_a_forward_spec_with_and_without_an_address() -> None:
    assert Forward.parse("8080:80") == Forward("0.0.0.0", 8080, 80)
    assert Forward.parse("198.51.100.1:8080:80") == Forward("198.51.100.1", 8080, 80)


def test_no_ipv6_loads_no_ipv6_and_net6_loads_it(tmp_path: Path) -> None:
    from femtotcp.gateway.gateway import Gateway
    for net6, v6 in ((None, False), ("2001:db8:1::/64", True)):
        gw = Gateway(GatewayOptions(qemu_dgram=f"unix:{tmp_path}/g.sock", net="192.0.2.0/24",
                                    net6=net6, dns_upstream=["198.51.100.1"]))
        try:
            assert (gw.stack.ipv6 is not None) is v6 and (gw.ra is not None) is v6
            assert ("net6 2001:db8:1::/64" in gw.describe()) is v6
            assert ("2001:db8:1::3" in gw.dns.describe()) is v6
        finally:
            gw.close()


def test_the_gateway_captures_the_guest_side_and_stops(tmp_path: Path) -> None:
    import struct

    from femtotcp.gateway.gateway import Gateway
    pcap = tmp_path / "guest.pcap"
    gw = Gateway(GatewayOptions(qemu_dgram=f"unix:{tmp_path}/g.sock", net="192.0.2.0/24",
                                net6=None, dns_upstream=["198.51.100.1"], pcap=str(pcap)))
    try:
        assert gw.pcap is not None
        gw.stack.send_frame(gw.iface, b"\xff" * 6, 0x0806, bytes(28))
    finally:
        gw.close()
    assert gw.pcap is None
    data = pcap.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and linktype == 1      # Ethernet
    assert len(data) > 24 and data[24 + 16:24 + 22] == b"\xff" * 6
