"""tshark as a second oracle for the IPv6 builders: every message the stack
will send is decoded without a malformed flag or a warning, with a good ICMPv6
checksum and the fields we wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

from netns import require_program

from femtotcp.phy.pcap import PcapWriter
from femtotcp.wire import ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mac_bytes, mld, ndp, udp

HOST = ip_bytes("fe80::2")
ROUTER = ip_bytes("fe80::1")
GLOBAL = ip_bytes("2001:db8::2")
PEER = ip_bytes("2001:db8::1")
MAC = mac_bytes("02:00:00:00:00:02")
RMAC = mac_bytes("02:00:00:00:00:01")
PI_WARN = 0x00600000
FIELDS = ["frame.protocols", "_ws.malformed", "_ws.expert.severity", "icmpv6.checksum.status",
          "icmpv6.type", "icmpv6.code", "icmpv6.mldr.nb_mcast_records",
          "icmpv6.mldr.mar.multicast_address", "icmpv6.opt.prefix", "icmpv6.opt.mtu",
          "icmpv6.opt.rdnss", "icmpv6.opt.dnssl", "icmpv6.nd.ns.target_address",
          "icmpv6.nd.na.target_address", "icmpv6.opt.linkaddr", "ipv6.fraghdr.ident",
          "udp.checksum.status", "ipv6.routing.type"]


def _frame(pkt: bytes) -> bytes:
    hdr, _ = ipv6.parse(pkt)
    dst = ipv6.multicast_mac(hdr.dst) if ipv6.is_multicast(hdr.dst) else RMAC
    return ethernet.build(dst, MAC, ethernet.ETH_IPV6, pkt)


def _nd(src: bytes, dst: bytes, msg: bytes) -> bytes:
    return ipv6.build(src, dst, ipv6.PROTO_ICMP6, msg, hop_limit=255)


def _packets() -> list[bytes]:
    sol = ipv6.solicited_node(GLOBAL)
    ra_opts = (ndp.opt_source_lladdr(RMAC) + ndp.opt_mtu(1500)
               + ndp.opt_prefix(ip_bytes("2001:db8:1::"), 64, 86400, 14400)
               + ndp.opt_rdnss(600, [ip_bytes("2001:db8::53")])
               + ndp.opt_dnssl(600, ["example.com"]))
    invoking = ipv6.build(PEER, GLOBAL, 17, udp.build(PEER, GLOBAL, 4000, 9, b"x" * 2000))
    seg = udp.build(GLOBAL, PEER, 5000, 7, b"payload!")
    chain = (ipv6ext.build_hop_by_hop(60, [ipv6ext.router_alert(0)])
             + ipv6ext.build_dest_options(43, [(0x1E, b"abc")])
             + ipv6ext.build_routing(44, 0, 0, bytes(4) + PEER)
             + ipv6ext.build_fragment(17, 0, False, 0x1234))
    return [
        mld.build_v2_report_packet(HOST, [mld.AddressRecord(mld.CHANGE_TO_EXCLUDE, sol)]),
        mld.packet(ROUTER, ipv6.ALL_NODES, mld.build_query(ROUTER, ipv6.ALL_NODES, 10000)),
        _nd(HOST, ipv6.ALL_ROUTERS, ndp.build_rs(HOST, MAC)),
        _nd(ROUTER, ipv6.ALL_NODES, ndp.build_ra(ROUTER, ipv6.ALL_NODES, options=ra_opts)),
        _nd(ipv6.UNSPECIFIED, sol, ndp.build_ns(ipv6.UNSPECIFIED, sol, GLOBAL,
                                                nonce=b"\x01\x02\x03\x04\x05\x06")),
        _nd(HOST, sol, ndp.build_ns(HOST, sol, GLOBAL, MAC)),
        _nd(GLOBAL, HOST, ndp.build_na(GLOBAL, HOST, GLOBAL, solicited=True,
                                       target_lladdr=MAC)),
        _nd(ROUTER, HOST, ndp.build_redirect(ROUTER, HOST, ip_bytes("fe80::99"), PEER, RMAC,
                                             invoking)),
        ipv6.build(GLOBAL, PEER, 58, icmp6.build_echo(GLOBAL, PEER, 128, 7, 1, b"ping" * 10)),
        ipv6.build(GLOBAL, PEER, 58, icmp6.build_dest_unreachable(GLOBAL, PEER, 4, invoking)),
        ipv6.build(GLOBAL, PEER, 58, icmp6.build_packet_too_big(GLOBAL, PEER, 1280, invoking)),
        ipv6.build(GLOBAL, PEER, 58, icmp6.build_time_exceeded(GLOBAL, PEER, 1, invoking)),
        ipv6.build(GLOBAL, PEER, 58, icmp6.build_param_problem(GLOBAL, PEER, 2, 42, invoking)),
        ipv6.build(GLOBAL, PEER, 0, chain + seg),
    ]


def test_tshark_decodes_every_ipv6_message(tmp_path: Path) -> None:
    tshark = require_program("tshark")
    path = tmp_path / "ipv6.pcap"
    packets = _packets()
    with PcapWriter(path) as w:
        for i, pkt in enumerate(packets):
            w.write(_frame(pkt), ts=float(i))
    cmd = [tshark, "-n", "-r", str(path), "-o", "udp.check_checksum:TRUE", "-T", "fields",
           "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = [dict(zip(FIELDS, line.split("|"), strict=True))
            for line in res.stdout.splitlines() if line.strip()]
    assert len(rows) == len(packets)
    for row in rows:
        assert row["_ws.malformed"] == "", row
        assert all(int(s) < PI_WARN for s in row["_ws.expert.severity"].split(",") if s), row
    icmp = [r for r in rows if "icmpv6" in r["frame.protocols"]]
    assert len(icmp) == len(packets) - 1
    # The quoted packets carry ICMPv6 checksum fields of their own: the first is ours.
    assert all(r["icmpv6.checksum.status"].split(",")[0] == "1" for r in icmp), icmp
    report, query, rs, ra, dad, ns, na, redirect, echo, unreach, ptb, te, pp, chained = rows
    assert "ipv6.hopopts" in report["frame.protocols"]
    assert (report["icmpv6.type"], report["icmpv6.mldr.nb_mcast_records"]) == ("143", "1")
    assert report["icmpv6.mldr.mar.multicast_address"] == "ff02::1:ff00:2"
    assert query["icmpv6.type"] == "130"
    assert (rs["icmpv6.type"], rs["icmpv6.opt.linkaddr"]) == ("133", "02:00:00:00:00:02")
    assert ra["icmpv6.type"] == "134"
    assert (ra["icmpv6.opt.prefix"], ra["icmpv6.opt.mtu"]) == ("2001:db8:1::", "1500")
    assert ra["icmpv6.opt.rdnss"] == "2001:db8::53"
    assert ra["icmpv6.opt.dnssl"] == "example.com"
    assert (dad["icmpv6.type"], dad["icmpv6.nd.ns.target_address"]) == ("135", "2001:db8::2")
    assert ns["icmpv6.opt.linkaddr"] == "02:00:00:00:00:02"
    assert (na["icmpv6.type"], na["icmpv6.nd.na.target_address"]) == ("136", "2001:db8::2")
    assert redirect["icmpv6.type"] == "137"
    assert echo["icmpv6.type"] == "128"
    assert [r["icmpv6.type"].split(",")[0] for r in (unreach, ptb, te, pp)] == ["1", "2", "3",
                                                                               "4"]
    assert chained["ipv6.fraghdr.ident"] == "0x00001234"
    assert chained["ipv6.routing.type"] == "0"
    assert chained["udp.checksum.status"] == "1"
