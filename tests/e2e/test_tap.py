"""Raw TAP against the kernel, without the stack: frames both ways, link flaps."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Callable

from netns import Netns, kernel_tap

from femtotcp.phy.tap import TapDevice
from femtotcp.wire import arp, ethernet, ip_bytes, mac_bytes

OUR_MAC = mac_bytes("02:00:00:00:00:02")
OUR_IP = ip_bytes("192.0.2.2")
KERNEL_IP = ip_bytes("192.0.2.1")


def wait_frame(dev: TapDevice, match: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Read from the TAP until a frame satisfies ``match`` (or fail after ``timeout``)."""
    seen: list[bytes] = []
    dev.set_receiver(seen.append)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([dev.fileno()], [], [], 0.2)
        if ready:
            dev.on_readable()
        for frame in seen:
            if match(frame):
                return frame
        seen.clear()
    raise AssertionError(f"no matching frame on {dev.name} within {timeout}s")


def parse_arp(frame: bytes) -> arp.ArpPacket | None:
    try:
        eth, payload = ethernet.parse(frame)
        if eth.ethertype != ethernet.ETH_ARP:
            return None
        return arp.parse(payload)
    except Exception:  # noqa: BLE001 - anything unparsable is "not ARP"
        return None


def arp_request_frame(target: bytes) -> bytes:
    payload = arp.build(arp.REQUEST, OUR_MAC, OUR_IP, b"\0" * 6, target)
    return ethernet.build(ethernet.BROADCAST, OUR_MAC, ethernet.ETH_ARP, payload)


def is_reply_to_us(frame: bytes) -> bool:
    pkt = parse_arp(frame)
    return (pkt is not None and pkt.op == arp.REPLY and pkt.spa == KERNEL_IP
            and pkt.tpa == OUR_IP and pkt.tha == OUR_MAC and frame[0:6] == OUR_MAC)


def test_kernel_arp_request_reaches_tap(ns: Netns, require_program: Callable[[str], str]) -> None:
    require_program("ping")
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    ping = ns.popen("ping", "-c", "3", "-i", "0.5", "-W", "1", "192.0.2.99",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # expected to fail
    frame = wait_frame(dev, lambda f: (p := parse_arp(f)) is not None
                       and p.op == arp.REQUEST and p.tpa == ip_bytes("192.0.2.99"))
    pkt = parse_arp(frame)
    assert pkt is not None and pkt.spa == KERNEL_IP
    assert frame[0:6] == ethernet.BROADCAST
    ping.kill()


def test_frame_written_to_tap_reaches_kernel(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    dev.send(arp_request_frame(KERNEL_IP))
    reply = wait_frame(dev, is_reply_to_us)
    pkt = parse_arp(reply)
    assert pkt is not None and pkt.sha == reply[6:12]
    # The kernel learned our address from the request.
    neigh = ns.ip("neigh", "show", "192.0.2.2", "dev", dev.name).stdout
    assert "02:00:00:00:00:02" in neigh.lower()
    assert dev.counters["tx_link_down"] == 0 and dev.counters["tx_error"] == 0


def test_link_down_then_up(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    dev.send(arp_request_frame(KERNEL_IP))
    wait_frame(dev, is_reply_to_us)

    ns.ip("link", "set", dev.name, "down")
    assert not dev.link_up
    for _ in range(3):
        dev.send(arp_request_frame(KERNEL_IP))  # must not raise
    assert dev.counters["tx_link_down"] == 3
    assert dev.counters["tx_frames"] == 4

    ns.ip("link", "set", dev.name, "up")
    assert dev.link_up
    # An address on a downed link keeps its configuration (IPv4); traffic resumes.
    ns.ip("neigh", "flush", "dev", dev.name)
    dev.send(arp_request_frame(KERNEL_IP))
    wait_frame(dev, is_reply_to_us)
    assert dev.counters["tx_link_down"] == 3


def test_our_own_link_control(ns: Netns) -> None:
    """The device's own set_link works from outside the namespace (ioctl socket
    created inside it at construction)."""
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    dev.set_link(False)
    assert not dev.link_up
    flags = ns.ip("link", "show", dev.name).stdout.split("<", 1)[1].split(">", 1)[0]
    assert "UP" not in flags.split(",")
    dev.send(arp_request_frame(KERNEL_IP))
    assert dev.counters["tx_link_down"] == 1
    dev.set_link(True)
    dev.send(arp_request_frame(KERNEL_IP))
    wait_frame(dev, is_reply_to_us)
