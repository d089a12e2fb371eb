"""Multicast groups against the Linux kernel over TAP, in a namespace of the
test's own (192.0.2.0/24, 2001:db8::/32, groups in 239/8 and ff15::/16):

- in-process: stack sockets join 239.5.5.5 (and 239.5.5.6 from one source)
  and ff15::5:5 and receive what
  kernel sockets send there; kernel sockets joined on the TAP receive what
  stack sockets send to 239.6.6.6 and ff15::6:6; a scapy IGMPv3 General Query
  is answered; tshark decodes every IGMPv3 and MLDv2 report the stack sent
  (joins, the query's answer, leaves) without error.
- attached: a ``femtotcp run --control`` program joins a group through
  ``femtotcp serve`` and is killed with SIGKILL; serve frees its socket and
  its group with it (``ctl addr`` shows no member, the kernel sees the
  IGMPv3 leave), and another program joins again; an attached program joins
  an IPv6 group and receives the kernel's datagram there, and sends to a
  group a kernel socket joined.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netns import Netns, entered, kernel_tap, stop_process
from test_ipv6_kernel import enable_ipv6, ready, stack6

from femtotcp.api.socket import network_for
from femtotcp.wire import ip_bytes

KERNEL, STACK = "192.0.2.1", "192.0.2.2"
KERNEL6, STACK6 = "2001:db8:1::1", "2001:db8:1::2"
TAP = "ftap0"
IP, IP6 = socket.IPPROTO_IP, socket.IPPROTO_IPV6


def mreq6(group: str, index: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, group) + struct.pack("@i", index)


def tshark(pcap: Path, display: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-Y", display, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


def test_groups_both_ways_reports_and_query(ns: Netns, require_program: Callable[[str], str],
                                           tmp_path: Path) -> None:
    require_program("tshark")
    from scapy.layers.igmp import IGMPv3_MQ
    from scapy.layers.inet import IP as ScapyIP
    from scapy.layers.l2 import Ether
    enable_ipv6(ns)
    dev = kernel_tap(ns, TAP, [f"{KERNEL}/24", f"{KERNEL6}/64"])
    pcap = tmp_path / "mcast.pcap"
    kindex = int(ns.run("cat", f"/sys/class/net/{TAP}/ifindex").stdout)
    with stack6(dev, pcap=pcap) as (rt, stack):       # (igmp is a default module)
        assert "igmp" in stack.modules
        assert rt.wait_until(ready(stack, ip_bytes(STACK6)), 10)
        net = network_for(stack, rt)
        index = stack.interfaces[0].index
        r4 = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r4.bind(("", 5500))
        r4.setsockopt(IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton("239.5.5.5") + socket.inet_aton(STACK))
        ssm = net.socket(socket.AF_INET, socket.SOCK_DGRAM)      # source-specific
        ssm.setsockopt(IP, 39, socket.inet_aton("239.5.5.6") + socket.inet_aton(STACK)
                       + socket.inet_aton(KERNEL))             # IP_ADD_SOURCE_MEMBERSHIP
        r6 = net.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        r6.bind(("::", 5501))
        r6.setsockopt(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::5:5", index))
        for s in (r4, r6):
            s.settimeout(10)
        with entered(ns):
            k4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            k4.setsockopt(IP, socket.IP_MULTICAST_IF, socket.inet_aton(KERNEL))
            k4.bind(("", 5600))
            k4.setsockopt(IP, socket.IP_ADD_MEMBERSHIP,
                          socket.inet_aton("239.6.6.6") + socket.inet_aton(KERNEL))
            k6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            k6.setsockopt(IP6, socket.IPV6_MULTICAST_IF, kindex)
            k6.bind(("::", 5601))
            k6.setsockopt(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::6:6", kindex))
        try:
            for s in (k4, k6):
                s.settimeout(10)
            # Kernel -> stack.
            k4.sendto(b"to-stack4", ("239.5.5.5", 5500))
            assert r4.recvfrom(2048) == (b"to-stack4", (KERNEL, k4.getsockname()[1]))
            k6.sendto(b"to-stack6", ("ff15::5:5", 5501))
            data, src = r6.recvfrom(2048)
            assert data == b"to-stack6" and src[1] == 5601
            # Stack -> kernel.
            t4 = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t4.setsockopt(IP, socket.IP_MULTICAST_IF, socket.inet_aton(STACK))
            t4.sendto(b"to-kernel4", ("239.6.6.6", 5600))
            assert k4.recvfrom(2048)[0] == b"to-kernel4"
            t6 = net.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            t6.setsockopt(IP6, socket.IPV6_MULTICAST_IF, index)
            t6.sendto(b"to-kernel6", ("ff15::6:6", 5601))
            data, src = k6.recvfrom(2048)
            assert data == b"to-kernel6" and src[0] == STACK6
            # A querier's General Query (scapy): answered within its Max Resp Time.
            before = rt.call(lambda: stack.counters["igmp.tx_report"])
            kmac = ns.run("cat", f"/sys/class/net/{TAP}/address").stdout.strip()
            query = bytes(Ether(dst="01:00:5e:00:00:01", src=kmac)
                          / ScapyIP(src=KERNEL, dst="224.0.0.1", ttl=1)
                          / IGMPv3_MQ(mrcode=10, qrv=2, qqic=125))
            with entered(ns):
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
                    raw.bind((TAP, 0))
                    raw.send(query)
            host = stack.modules["igmp"]
            assert rt.wait_until(lambda: stack.counters["igmp.query"] == 1, 5)
            # The answer is due within the query's Max Resp Time (1 s): sent once
            # the pending answer is gone.
            assert rt.wait_until(
                lambda: host.ifaces[stack.interfaces[0]].general is None, 5)
            assert rt.call(lambda: stack.counters["igmp.tx_report"]) > before
            for s in (r4, r6, t4, t6, ssm):
                s.close()               # closing leaves the groups
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and rt.call(
                    lambda: stack.counters["igmp.tx_report"]) < before + 3:
                time.sleep(0.1)
            time.sleep(1.5)             # the leaves' retransmission
        finally:
            k4.close()
            k6.close()
    igmp = [(t, a) for row in tshark(pcap, "igmp.type == 0x22 && ip.src == 192.0.2.2",
                                     "igmp.record_type", "igmp.maddr")
            for t, a in zip(row[0].split(","), row[1].split(","), strict=True)]
    assert ("4", "239.5.5.5") in igmp          # CHANGE_TO_EXCLUDE: the join
    assert ("2", "239.5.5.5") in igmp          # MODE_IS_EXCLUDE: the query's answer
    assert ("3", "239.5.5.5") in igmp          # CHANGE_TO_INCLUDE: the leave at close
    assert ("5", "239.5.5.6") in igmp          # ALLOW_NEW_SOURCES: the source join
    assert ("1", "239.5.5.6") in igmp          # MODE_IS_INCLUDE: its answer
    assert ("6", "239.5.5.6") in igmp          # BLOCK_OLD_SOURCES: its end at close
    assert not any(a == "224.0.0.1" for _, a in igmp)
    sources = tshark(pcap, "igmp.type == 0x22 && igmp.maddr == 239.5.5.6", "igmp.saddr")
    assert sources and all(row == [KERNEL] for row in sources)
    mld = tshark(pcap, "icmpv6.type == 143", "icmpv6.mldr.mar.record_type",
                 "icmpv6.mldr.mar.multicast_address")
    flat = [(t, a) for row in mld for t, a in zip(row[0].split(","), row[1].split(","),
                                                   strict=True)]
    assert ("4", "ff15::5:5") in flat and ("3", "ff15::5:5") in flat
    malformed = tshark(pcap, "_ws.malformed || _ws.expert.severity == error", "frame.number")
    assert malformed == []
    headers = tshark(pcap, "igmp.type == 0x22", "ip.ttl", "ip.opt.type", "ip.dst")
    assert all(h[0] == "1" and "148" in h[1] and h[2] == "224.0.0.22" for h in headers)


PROGRAM = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 5700))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.7.7.7") + socket.inet_aton("192.0.2.2"))
print("joined", flush=True)
print(s.recv(100).decode(), flush=True)
sys.stdin.readline()
"""


def _ctl(control: str, view: str) -> dict[str, Any]:
    import json
    res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                          "--json", view], capture_output=True, text=True, timeout=30)
    doc = json.loads(res.stdout)
    assert doc["ok"], res.stdout
    return dict(doc["result"])


def _members(control: str) -> list[dict[str, Any]]:
    return [g for g in _ctl(control, "addr")["interfaces"][0]["groups"]
            if g["address"] == "239.7.7.7"]


def test_attached_program_killed_frees_its_group(ns: Netns) -> None:
    from test_attached import line
    from test_serve_ctl import start_serve
    folder = tempfile.mkdtemp(prefix="ftmc")
    control = os.path.join(folder, "ctl.sock")
    serve, _ = start_serve(ns, control)
    prog_path = os.path.join(folder, "prog.py")
    Path(prog_path).write_text(PROGRAM)
    procs: list[subprocess.Popen[str]] = []
    try:
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        with entered(ns):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            raw.bind((TAP, 0))
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.setsockopt(IP, socket.IP_MULTICAST_IF, socket.inet_aton(KERNEL))
        raw.settimeout(0.2)
        for attempt in range(2):
            proc = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control,
                            prog_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            assert line(proc) == "joined"
            assert _members(control) == [{"address": "239.7.7.7", "users": 1,
                                          "mode": "exclude", "sources": []}]
            row = next(r for r in _ctl(control, "sockets")["sockets"]
                       if r["proto"] == "udp" and r["local_port"] == 5700)
            assert [g.split("%")[0] for g in row["groups"]] == ["239.7.7.7"]
            tx.sendto(f"hello{attempt}".encode(), ("239.7.7.7", 5700))
            assert line(proc) == f"hello{attempt}"
            while True:                 # what the TAP carried so far
                try:
                    raw.recv(4096)
                except TimeoutError:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            leave = False
            deadline = time.monotonic() + 10
            while not leave and time.monotonic() < deadline:
                try:
                    frame = raw.recv(4096)
                except TimeoutError:
                    continue
                ihl = (frame[14] & 15) * 4
                body = frame[14 + ihl:]
                # An IGMPv3 report whose first record is CHANGE_TO_INCLUDE {} for the group.
                leave = frame[23] == 2 and body[:1] == b"\x22" and body[8:9] == b"\x03" \
                    and body[12:16] == socket.inet_aton("239.7.7.7")
            assert leave, "no IGMPv3 leave after the program died"
            assert _members(control) == []
        raw.close()
        tx.close()
    finally:
        for p in procs:
            stop_process(p)
        stop_process(serve)
        shutil.rmtree(folder, ignore_errors=True)




PROGRAM6 = """
import socket, struct, sys
IP6 = socket.IPPROTO_IPV6
r = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r.bind(("::", 5800))
r.setsockopt(IP6, socket.IPV6_JOIN_GROUP,
             socket.inet_pton(socket.AF_INET6, "ff15::7:7") + struct.pack("@i", 0))
print("joined", flush=True)
print(r.recv(100).decode(), flush=True)
sys.stdin.readline()          # (one line out per line in: no two lines in the pipe at once)
t = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
t.sendto(b"from-attached6", ("ff15::8:8", 5801))
print("sent", flush=True)
sys.stdin.readline()
"""


def test_attached_ipv6_groups_both_ways(ns: Netns) -> None:
    """An attached program (``femtotcp run --control``; its sockets in serve)
    joins an IPv6 group on the route's interface and receives what the
    kernel sends there, and sends to a group a kernel socket joined."""
    from test_attached import line
    from test_serve_ctl import start_serve
    enable_ipv6(ns)
    folder = tempfile.mkdtemp(prefix="ftmc6")
    control = os.path.join(folder, "ctl.sock")
    serve, _ = start_serve(ns, control, "--ipv6", f"{STACK6}/64")
    prog_path = os.path.join(folder, "prog6.py")
    Path(prog_path).write_text(PROGRAM6)
    proc = None
    try:
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        kindex = int(ns.run("cat", f"/sys/class/net/{TAP}/ifindex").stdout)
        with entered(ns):
            k6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            k6.setsockopt(IP6, socket.IPV6_MULTICAST_IF, kindex)
            k6.bind(("::", 5801))
            k6.setsockopt(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::8:8", kindex))
        k6.settimeout(10)
        deadline = time.monotonic() + 10           # serve's DAD on its address first
        while time.monotonic() < deadline and not any(
                a["address"] == STACK6 and a["state"] == "preferred"
                for a in _ctl(control, "addr")["interfaces"][0]["ipv6"]):
            time.sleep(0.2)
        proc = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control,
                        prog_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
        assert line(proc) == "joined"
        groups = [g["address"] for g in _ctl(control, "addr")["interfaces"][0]["groups"]]
        assert "ff15::7:7" in groups
        k6.sendto(b"to-attached6", ("ff15::7:7", 5800))
        assert line(proc) == "to-attached6"
        assert proc.stdin is not None
        proc.stdin.write("send\n")
        proc.stdin.flush()
        assert line(proc) == "sent"
        data, src = k6.recvfrom(2048)
        assert data == b"from-attached6" and src[0] == STACK6
        k6.close()
    finally:
        if proc is not None:
            stop_process(proc)
        stop_process(serve)
        shutil.rmtree(folder, ignore_errors=True)


_JOIN_AND_HOLD = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 5800))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.8.8.8") + socket.inet_aton(sys.argv[1]))
print("joined", flush=True)
sys.stdin.readline()
"""


def test_a_linux_bridge_querier_learns_our_group(ns: Netns,
                                                 require_program: Callable[[str], str],
                                                 tmp_path: Path) -> None:
    """A Linux bridge with snooping and its own querier, IGMPv3 then IGMPv2
    (``mcast_igmp_version``): an attached program's group is answered to its
    queries in the querier's version (IGMPv3 reports, type 0x22, then IGMPv2
    Membership Reports, type 0x16, once a v2 query is heard: RFC 3376 7.2.1),
    and the bridge's table learns the group on the TAP's port, so it forwards
    the group's traffic there."""
    require_program("tshark")
    from test_attached import line
    from test_ipv6_kernel import _serve

    ns.ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier",
          "1", "mcast_igmp_version", "3", "mcast_startup_query_interval", "100",
          "mcast_query_interval", "200", "mcast_query_response_interval", "100")
    ns.ip("addr", "add", f"{KERNEL}/24", "dev", "br0")
    ns.ip("link", "set", "br0", "up")
    control = str(tmp_path / "ctl.sock")
    serve = _serve(ns, control, "--ip", f"{STACK}/24")
    prog: subprocess.Popen[str] | None = None
    try:
        ns.ip("link", "set", TAP, "master", "br0")
        ns.ip("link", "set", TAP, "up")
        prog = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control, "-c",
                        _JOIN_AND_HOLD, STACK, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
        assert line(prog) == "joined"
        for version, report in (("3", "0x22"), ("2", "0x16")):
            ns.ip("link", "set", "br0", "type", "bridge", "mcast_igmp_version", version)
            pcap = tmp_path / f"igmp{version}.pcap"
            ns.run("tshark", "-i", "br0", "-f", "igmp", "-a", "duration:5", "-w", str(pcap),
                   timeout=60)
            rows = tshark(pcap, "igmp", "frame.time_relative", "ip.src", "igmp.type")
            queries = [float(t) for t, _, kind in rows if kind == "0x11"]
            assert queries, rows
            ours = [kind for t, src, kind in rows if src == STACK and float(t) > queries[0]]
            assert ours and set(ours) == {report}, (version, rows)
            assert f"port {TAP} grp 239.8.8.8" in ns.run("bridge", "mdb", "show").stdout
        assert tshark(pcap, "_ws.malformed", "frame.number") == []
    finally:
        if prog is not None:
            stop_process(prog)
        stop_process(serve)
