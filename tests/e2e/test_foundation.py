"""The Foundation against the Linux kernel: ARP, ICMP echo both ways, IPv4
fragmentation both ways, UDP echo with socat, and a capture tshark can read.

Each test gets its own namespace with a TAP device; the kernel side is
192.0.2.1/24, the stack (driven by a real-time Runtime in its own thread) is
192.0.2.2/24.
"""

from __future__ import annotations

import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns import Netns, kernel_tap

from femtotcp.phy.pcap import PcapReader, PcapWriter
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime
from femtotcp.stack import Stack
from femtotcp.wire import Malformed, ethernet, icmp4, ip_bytes, ipv4, mac_bytes

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
STACK_MAC = "02:00:00:00:00:02"


@dataclass
class Rig:
    ns: Netns
    rt: Runtime
    stack: Stack
    tap: TapDevice
    writer: PcapWriter
    pcap: Path

    def kernel_mac(self) -> str:
        out = self.ns.ip("-o", "link", "show", self.tap.name).stdout
        return out.split("link/ether", 1)[1].split()[0].lower()

    def assert_healthy(self) -> None:
        counters = self.rt.call(self.stack.counters.snapshot)
        assert counters.get("stack.internal_error", 0) == 0, counters
        assert self.tap.counters["tx_error"] == 0, dict(self.tap.counters)
        assert self.tap.counters["tx_link_down"] == 0, dict(self.tap.counters)


@pytest.fixture
def rig(ns: Netns, tmp_path: Path) -> Iterator[Rig]:
    tap = kernel_tap(ns, "ftap0", f"{KERNEL}/24")
    pcap = tmp_path / "tap.pcap"
    writer = PcapWriter(pcap)
    writer.attach(tap)
    stack = Stack("e2e")
    stack.add_interface(tap, mac=STACK_MAC, ipv4=f"{STACK}/24")
    rt = Runtime()
    rt.add_stack(stack)
    rt.start()
    try:
        rt.call(stack.start)
        yield Rig(ns, rt, stack, tap, writer, pcap)
    finally:
        rt.stop()
        rt.join(5)
        writer.close()
        rt.close()


def frames(path: Path) -> list[bytes]:
    with PcapReader(path) as reader:
        return [f for _, f in reader]


def ipv4_of(frame: bytes) -> ipv4.Ipv4Header | None:
    try:
        eth, payload = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_IPV4:
            return None
        return ipv4.parse(payload)[0]
    except Malformed:
        return None


# -- ICMP echo ------------------------------------------------------------------
def test_kernel_pings_stack(rig: Rig, require_program: Callable[[str], str]) -> None:
    require_program("ping")
    res = rig.ns.run("ping", "-c", "5", "-i", "0.2", "-W", "2", STACK, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 packets transmitted, 5 received" in res.stdout, res.stdout
    assert rig.rt.call(lambda: rig.stack.counters["icmp4.echo_replied"]) >= 5
    # The kernel learned our MAC from ARP.
    neigh = rig.ns.ip("neigh", "show", STACK, "dev", rig.tap.name).stdout.lower()
    assert STACK_MAC in neigh, neigh
    rig.assert_healthy()


def test_kernel_pings_stack_recording_route_and_time(
        rig: Rig, require_program: Callable[[str], str]) -> None:
    """``ping -R`` and ``ping -T``: the reply carries the record route and
    timestamp options with the stack recorded on the way in and out (RFC 1122
    3.2.2.6), which ping prints as it does for a Linux host; a fragmented
    request's options are its first fragment's."""
    require_program("ping")
    for size in ("56", "3000"):
        res = rig.ns.run("ping", "-c", "1", "-W", "2", "-s", size, "-R", STACK, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        route = re.search(r"RR:\s+(.*?)\n\n", res.stdout, re.S)
        assert route is not None, res.stdout
        assert route.group(1).split() == [KERNEL, STACK, STACK, KERNEL], res.stdout
    res = rig.ns.run("ping", "-c", "1", "-W", "2", "-T", "tsandaddr", STACK, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    stamps = re.findall(r"^\s*(?:TS:)?\s+(\d+\.\d+\.\d+\.\d+)\s+\d+", res.stdout, re.M)
    assert stamps == [KERNEL, STACK, STACK, KERNEL], res.stdout
    rig.assert_healthy()


def test_stack_pings_kernel(rig: Rig) -> None:
    replies: list[tuple[bytes, int, bytes, int]] = []
    done = threading.Event()
    count = 5
    ep = rig.rt.call(rig.stack.icmp.open_echo)

    def readable() -> None:
        while (r := ep.recv()) is not None:
            replies.append(r)
        if len({r[1] for r in replies}) >= count:
            done.set()

    ep.on_readable = readable
    payloads = {seq: f"femtotcp seq {seq}".encode() * 4 for seq in range(1, count + 1)}
    for seq, payload in payloads.items():
        err = rig.rt.call(ep.send, ip_bytes(KERNEL), seq, payload)
        assert err == 0
    done.wait(10)  # all five were queued behind one ARP resolution
    rig.rt.call(ep.close)
    got = {seq: (src, payload, ttl) for src, seq, payload, ttl in replies}
    assert sorted(got) == sorted(payloads)
    for seq, (src, payload, ttl) in got.items():
        assert src == ip_bytes(KERNEL)
        assert payload == payloads[seq]
        assert ttl == 64
    entries = rig.rt.call(rig.stack.arp.entries)
    kernel_entry = [e for e in entries if e["address"] == KERNEL]
    assert kernel_entry and str(kernel_entry[0]["mac"]).lower() == rig.kernel_mac()
    rig.assert_healthy()


def test_fragmented_ping_both_ways(rig: Rig, require_program: Callable[[str], str]) -> None:
    require_program("ping")
    res = rig.ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "4000", STACK,
                     check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 packets transmitted, 3 received" in res.stdout, res.stdout
    assert "4008 bytes from" in res.stdout
    # Both directions were fragmented: look at the capture.
    ours, theirs = mac_bytes(STACK_MAC), mac_bytes(rig.kernel_mac())
    frag_out = frag_in = 0
    for f in frames(rig.pcap):
        h = ipv4_of(f)
        if h is None or not (h.more_fragments or h.frag_offset):
            continue
        assert h.total_len <= 1500
        if f[6:12] == ours:
            frag_out += 1
        elif f[6:12] == theirs:
            frag_in += 1
    assert frag_in >= 3 * 3 and frag_out >= 3 * 3  # 4028 bytes of IP: 3 fragments each
    rig.assert_healthy()


# -- UDP ----------------------------------------------------------------------------
def socat_roundtrip(ns: Netns, payloads: list[bytes], timeout: float = 10.0) -> bytes:
    """Send each payload as one datagram with socat and collect what comes back."""
    proc = ns.popen("socat", "-b", "65536", "-", f"UDP:{STACK}:7",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    want = sum(len(p) for p in payloads)
    got = b""
    deadline = time.monotonic() + timeout
    for p in payloads:
        proc.stdin.write(p)
        proc.stdin.flush()
        target = len(got) + len(p)
        while len(got) < target and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    break
                got += chunk
    proc.stdin.close()
    proc.kill()
    proc.wait(5)
    assert len(got) == want, f"socat got {len(got)} of {want} bytes back"
    return got


def test_udp_echo_with_socat(rig: Rig, require_program: Callable[[str], str]) -> None:
    require_program("socat")
    from femtotcp.services.echo import start_udp_echo

    echo = rig.rt.call(start_udp_echo, rig.stack, 7)
    small = b"hello from the kernel\n"
    big = bytes(range(256)) * 12  # 3072 bytes: fragmented both ways
    assert socat_roundtrip(rig.ns, [small, big]) == small + big
    assert rig.rt.call(lambda: echo.echoed) == 2
    rig.assert_healthy()


# -- the capture ---------------------------------------------------------------------
def test_tshark_reads_the_stack_capture(rig: Rig,
                                        require_program: Callable[[str], str]) -> None:
    tshark = require_program("tshark")
    require_program("ping")
    res = rig.ns.run("ping", "-c", "2", "-i", "0.2", "-W", "2", STACK, check=False)
    assert res.returncode == 0, res.stdout
    # Read the file while the stack still runs (the writer is still open).
    out = subprocess.run([tshark, "-r", str(rig.pcap), "-T", "fields", "-e", "eth.src",
                          "-e", "_ws.col.Protocol", "-e", "icmp.type", "-e", "arp.opcode"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    ours = STACK_MAC
    kernel = rig.kernel_mac()
    requests = [r for r in rows if r[0] == kernel and r[1] == "ICMP" and r[2] == "8"]
    replies = [r for r in rows if r[0] == ours and r[1] == "ICMP" and r[2] == "0"]
    arp_rows = [r for r in rows if r[1] == "ARP"]
    assert len(requests) == 2 and len(replies) == 2, rows
    assert arp_rows, rows
    assert any(r[0] == ours for r in arp_rows), rows  # our announcement or reply
    rig.assert_healthy()


def test_icmp_checksums_in_capture_are_valid(rig: Rig,
                                             require_program: Callable[[str], str]) -> None:
    """Every ICMP message the stack sent parses with its checksum verified."""
    require_program("ping")
    rig.ns.run("ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "1200", STACK)
    sent = [f for f in frames(rig.pcap) if f[6:12] == mac_bytes(STACK_MAC)]
    checked = 0
    for f in sent:
        _, payload = ethernet.parse(f)
        if f[12:14] != b"\x08\x00":
            continue
        h, body = ipv4.parse(payload)
        if h.proto == ipv4.PROTO_ICMP:
            icmp4.parse(body)
            checked += 1
    assert checked == 2


def test_udp_to_closed_port_is_refused(rig: Rig, require_program: Callable[[str], str]) -> None:
    """RFC 1122 4.1.3.1: port unreachable, which the kernel turns into ECONNREFUSED."""
    require_program("socat")
    res = rig.ns.run("sh", "-c", f"echo hi | socat -t 2 - UDP:{STACK}:9", check=False)
    assert res.returncode != 0
    assert "Connection refused" in res.stderr, res.stderr
    assert rig.rt.call(lambda: rig.stack.counters["udp.no_port"]) == 1
    rig.assert_healthy()
