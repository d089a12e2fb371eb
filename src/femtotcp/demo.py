"""``femtotcp demo``: the stack at work, with a readable report.

The memory demo builds a LAN of stacks on an in-memory switch, driven by the
real-time Runtime (so the RTTs and throughput are real), and needs no root.
``--tap`` does the same against the Linux kernel in a throwaway namespace.
Each part the build has modules for is shown; every frame goes to a pcap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.stack.stack import Stack, need
from femtotcp.wire import ip_bytes, ip_str, mac_str


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def section(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def line(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def fail(self, text: str) -> None:
        self.failures += 1
        print(f"   FAILED: {text}", flush=True)


def _ping(rt: Runtime, stack: Stack, dst: bytes, count: int, report: Report,
          size: int = 56, timeout: float = 1.0) -> list[float]:
    """Ping from ``stack``; prints and returns RTTs in milliseconds."""
    rtts: list[float] = []
    ep = rt.call(need(stack.icmp, "icmp4").open_echo)
    got = threading.Event()
    replies: dict[int, float] = {}

    def readable() -> None:
        while (r := ep.recv()) is not None:
            replies[r[1]] = time.perf_counter()
            got.set()

    ep.on_readable = readable
    try:
        for seq in range(1, count + 1):
            got.clear()
            sent = time.perf_counter()
            payload = bytes(i & 0xFF for i in range(size))
            rt.call(ep.send, dst, seq, payload)
            deadline = sent + timeout
            while seq not in replies and time.perf_counter() < deadline:
                got.wait(deadline - time.perf_counter())
                got.clear()
            if seq in replies:
                rtt = (replies[seq] - sent) * 1000
                rtts.append(rtt)
                report.line(f"{size + 8} bytes from {ip_str(dst)}: icmp_seq={seq} "
                            f"time={rtt:.3f} ms")
            else:
                report.fail(f"no reply to icmp_seq={seq}")
    finally:
        rt.call(ep.close)
    return rtts


def _udp_exchange(rt: Runtime, client: Stack, server: Stack, report: Report) -> None:
    from femtotcp.services.echo import start_udp_echo
    echo = rt.call(start_udp_echo, server, 7)
    ep = rt.call(need(client.udp, "udp").open)
    got = threading.Event()
    ep.on_readable = got.set
    dst = server.interfaces[0].primary_ipv4()
    assert dst is not None
    for size in (13, 5000):
        msg = (b"hello, femtotcp" * 400)[:size]
        got.clear()
        rt.call(ep.sendto, msg, dst, 7)
        got.wait(2.0)
        reply = rt.call(ep.recv)
        if reply and reply[0] == msg:
            note = " (fragmented both ways)" if size > 1472 else ""
            report.line(f"UDP echo of {size} bytes from {ip_str(reply[1][0])}:"
                        f"{reply[1][1]} came back intact{note}")
        else:
            report.fail(f"UDP echo of {size} bytes did not come back")
    rt.call(ep.close)
    rt.call(echo.close)


def _tcp_transfer(rt: Runtime, client: Stack, server: Stack, report: Report,
                  nbytes: int = 4 * 1024 * 1024) -> None:
    """Send ``nbytes`` over TCP to a sink on ``server`` and time it."""
    dst = server.interfaces[0].primary_ipv4()
    assert dst is not None
    digest = hashlib.sha256()
    done = threading.Event()
    state: dict[str, Any] = {}

    def on_listener() -> None:
        conn = lst.accept()
        if conn is None:
            return
        state["server"] = conn

        def on_data() -> None:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    done.set()
                    return
                if not chunk:
                    if chunk == b"":
                        conn.close()
                        done.set()
                    return
                state["n"] = state.get("n", 0) + len(chunk)
                digest.update(chunk)

        conn.on_event = on_data
        on_data()

    lst = rt.call(need(server.tcp, "tcp").listen, dst, 9000, 16)
    lst.on_event = on_listener
    payload = os.urandom(nbytes)
    start = time.perf_counter()
    conn = rt.call(need(client.tcp, "tcp").connect, dst, 9000)
    sent = [0]

    def pump() -> None:
        while sent[0] < nbytes:
            n = conn.send(memoryview(payload)[sent[0]:sent[0] + 65536])
            if not n:
                break
            sent[0] += n
        if sent[0] >= nbytes and not state.get("closed"):
            state["closed"] = True
            conn.close()

    def on_client_event() -> None:
        if conn.error:
            done.set()
            return
        pump()

    def begin() -> None:
        conn.on_event = on_client_event
        pump()

    rt.call(begin)
    done.wait(120)
    elapsed = time.perf_counter() - start
    ok = state.get("n") == nbytes and digest.digest() == hashlib.sha256(payload).digest()
    if ok:
        report.line(f"TCP: {nbytes / 1e6:.1f} MB sent in {elapsed:.2f} s = "
                    f"{nbytes / elapsed / 1e6:.1f} MB/s, SHA-256 matches")
    else:
        report.fail(f"TCP transfer incomplete: {state.get('n', 0)} of {nbytes} bytes")
    rt.call(lst.close)


def _optional(report: Report, title: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except ImportError as exc:
        report.line(f"({title} is not in this build: {exc.name})")


def run_memory(pcap_path: str) -> int:
    report = Report()
    rt = Runtime()
    switch = Switch(rt)
    from femtotcp.phy.pcap import PcapWriter  # (a face of its own: local import)
    writer = PcapWriter(pcap_path)
    hosts: dict[str, Stack] = {}
    plan = [("alice", "02:00:5e:00:00:0a", "192.0.2.10/24"),
            ("bob", "02:00:5e:00:00:14", "192.0.2.20/24"),
            ("carol", "02:00:5e:00:00:1e", "192.0.2.30/24")]
    for name, mac, addr in plan:
        st = Stack(name)
        port = switch.port(name)
        port.add_capture(lambda frame, out: writer.write(frame) if out else None)
        st.add_interface(port, mac=mac, ipv4=addr)
        rt.add_stack(st)
        hosts[name] = st
    rt.start()
    try:
        report.section("A LAN of three stacks on an in-memory switch")
        for name, st in hosts.items():
            report.line(f"{name:6} {st.interfaces[0].describe()}")
            rt.call(st.start)
        alice, bob, carol = hosts["alice"], hosts["bob"], hosts["carol"]

        report.section("ARP: alice resolves bob")
        rtts = _ping(rt, alice, ip_bytes("192.0.2.20"), 1, report)
        for e in rt.call(need(alice.arp, "arp").entries):
            report.line(f"alice's neighbour cache: {e['address']} is at {e['mac']} "
                        f"({e['state']})")
        if not rtts:
            report.fail("ARP resolution / first ping failed")

        report.section("ping: alice -> carol, 5 echo requests")
        rtts = _ping(rt, alice, ip_bytes("192.0.2.30"), 5, report)
        if rtts:
            report.line(f"rtt min/avg/max = {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/"
                        f"{max(rtts):.3f} ms")

        report.section("UDP: alice <-> bob's echo service (RFC 862)")
        _udp_exchange(rt, alice, bob, report)

        if alice.tcp is not None:
            report.section("TCP: alice sends 4 MB to carol")
            _tcp_transfer(rt, alice, carol, report)

        try:
            from femtotcp.api import demo_http
        except ImportError:
            demo_http = None  # type: ignore[assignment]
        if demo_http is not None and alice.tcp is not None:
            report.section("HTTP: http.server on bob, urllib on alice")
            result = demo_http.serve_and_fetch(rt, bob, alice, 1024 * 1024)
            if result.get("status") == 200 and result.get("ok"):
                report.line(f"GET {result.get('url', '/')} -> 200, {result['bytes']} bytes in "
                            f"{result['seconds']:.2f} s ({result['MB/s']:.1f} MB/s), "
                            "byte-exact")
            else:
                report.fail(f"HTTP fetch failed: {result}")

        try:
            from femtotcp import demo_dhcp_dns
        except ImportError:
            demo_dhcp_dns = None  # type: ignore[assignment]
        if demo_dhcp_dns is not None:
            report.section("DHCP and DNS: dave joins the LAN and resolves a name")
            demo_dhcp_dns.run(rt, switch, hosts, report, writer)

        report.section("Counters")
        for name, st in hosts.items():
            c = rt.call(st.counters.snapshot)
            drops = rt.call(st.counters.drops)
            report.line(f"{name}: {c.get('ipv4.rx', 0)} IPv4 in, {c.get('ipv4.tx', 0)} out, "
                        f"{c.get('arp.rx', 0)} ARP in; drops: {drops or 'none'}")
    finally:
        rt.stop()
        rt.join(5)
        writer.close()
        rt.close()
    report.section("Capture")
    report.line(f"{writer.packets} frames written to {pcap_path} (open it with wireshark "
                f"or `tshark -r {pcap_path}`)")
    print(f"\nfemtotcp demo: {'all parts worked' if not report.failures else 'FAILURES: ' + str(report.failures)}")
    return 0 if not report.failures else 1


def run_tap(pcap_path: str) -> int:
    """The demo against the Linux kernel, in a throwaway network namespace."""
    from femtotcp.phy import netns
    from femtotcp.phy.tap import TapDevice
    if os.geteuid() != 0:
        print("femtotcp demo --tap: error: needs root (network namespaces and /dev/net/tun)")
        return 2
    for prog in ("ip", "ping"):
        if shutil.which(prog) is None:
            print(f"femtotcp demo --tap: error: {prog} is not installed")
            return 2
    report = Report()
    ns = f"femtotcp-demo-{uuid.uuid4().hex[:8]}"
    netns.create(ns)
    rt = Runtime()
    from femtotcp.phy.pcap import PcapWriter  # (a face of its own: local import)
    writer = PcapWriter(pcap_path)
    try:
        with netns.entered(ns):
            tap = TapDevice("ftap0")
        st = Stack("femtotcp")
        iface = st.add_interface(tap, mac="02:00:5e:00:00:02", ipv4="192.0.2.2/24")
        writer.attach(tap)
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "ftap0"],
                       check=True)
        rt.add_stack(st)
        rt.start()
        rt.call(st.start)
        report.section("The Linux kernel (in namespace " + ns + ") and femtotcp over TAP")
        report.line(f"femtotcp {iface.describe()}")
        report.line("kernel   ftap0 192.0.2.1/24")
        report.section("femtotcp pings the kernel")
        _ping(rt, st, ip_bytes("192.0.2.1"), 3, report)
        for e in rt.call(need(st.arp, "arp").entries):
            report.line(f"neighbour cache: {e['address']} is at {e['mac']} ({e['state']})")
        report.section("the kernel pings femtotcp (ping -c 3, then ping -s 4000)")
        for args in (["-c", "3"], ["-c", "2", "-s", "4000"]):
            out = subprocess.run(["ip", "netns", "exec", ns, "ping", "-W", "2", "-i", "0.2",
                                  *args, "192.0.2.2"], capture_output=True, text=True)
            for ln in out.stdout.splitlines():
                if "bytes from" in ln or "rtt" in ln or "packet loss" in ln:
                    report.line(ln)
            if out.returncode != 0:
                report.fail(f"kernel ping {' '.join(args)} failed")
        if shutil.which("socat"):
            report.section("UDP: the kernel's socat <-> femtotcp's echo service")
            from femtotcp.services.echo import start_udp_echo
            rt.call(start_udp_echo, st, 7)
            out = subprocess.run(["ip", "netns", "exec", ns, "socat", "-T", "2", "-",
                                  "UDP:192.0.2.2:7"], input="hello from the kernel\n",
                                 capture_output=True, text=True, timeout=10)
            if out.stdout == "hello from the kernel\n":
                report.line("socat got its datagram back: 'hello from the kernel'")
            else:
                report.fail(f"socat UDP echo: got {out.stdout!r}")
    finally:
        rt.stop()
        rt.join(5)
        writer.close()
        rt.close()
        netns.delete(ns)
    report.section("Capture")
    report.line(f"{writer.packets} frames written to {pcap_path}")
    print(f"\nfemtotcp demo --tap: {'all parts worked' if not report.failures else 'FAILURES: ' + str(report.failures)}")
    return 0 if not report.failures else 1


__all__ = ["run_memory", "run_tap", "mac_str"]
