"""TapDevice/TunDevice against the kernel, each test in its own namespace."""

from __future__ import annotations

import errno
import select
import subprocess
import time
from collections.abc import Callable

import pytest
from netns import Netns, entered, kernel_tap, kernel_tun

from femtotcp.phy.tap import TapDevice
from femtotcp.phy.tun import TunDevice
from femtotcp.wire import icmp4, ip_bytes, ipv4

pytestmark = pytest.mark.kernel


def read_until(dev: TapDevice | TunDevice, match: Callable[[bytes], bool],
               timeout: float = 10.0) -> bytes:
    seen: list[bytes] = []
    dev.set_receiver(seen.append)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([dev.fileno()], [], [], 0.2)[0]:
            dev.on_readable()
        for f in seen:
            if match(f):
                return f
        seen.clear()
    raise AssertionError(f"nothing matching on {dev.name} within {timeout}s")


def link_info(ns: Netns, name: str) -> str:
    return ns.ip("link", "show", name).stdout


def test_tap_is_created_in_the_namespace_with_mtu_and_up(ns: Netns) -> None:
    with entered(ns):
        dev = TapDevice("ftap7", mtu=1400)
    try:
        info = link_info(ns, "ftap7")
        assert "mtu 1400" in info and ",UP" in info
        assert dev.link_up and dev.ifindex > 0 and dev.mtu == 1400
        assert dev.fileno() >= 0 and not dev.raw_ip
        # not in our own namespace
        assert subprocess.run(["ip", "link", "show", "ftap7"],
                              capture_output=True).returncode != 0
        dev.set_mtu(9000)
        assert "mtu 9000" in link_info(ns, "ftap7")
    finally:
        dev.close()
    dev.close()  # idempotent
    assert dev.fileno() == -1
    # a non-persistent TAP disappears with its fd
    assert ns.ip("link", "show", "ftap7", check=False).returncode != 0


def test_tap_created_down(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", None, up=False)
    assert not dev.link_up
    dev.send(b"\xff" * 60)
    assert dev.counters["tx_link_down"] == 1


def test_name_errors_are_clear(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", None)
    with entered(ns):
        with pytest.raises(OSError, match="name is taken") as exc:
            TapDevice("ftap0")
        assert exc.value.errno == errno.EBUSY
        with pytest.raises(OSError, match="another type"):
            TapDevice("lo")
        with pytest.raises(OSError, match="another type"):
            TunDevice("ftap0")
        with pytest.raises(OSError, match="too long"):
            TapDevice("x" * 16)
        with pytest.raises(OSError, match="invalid interface name"):
            TapDevice("a/b")
        with pytest.raises(ValueError, match="mtu"):
            TapDevice("ftap1", mtu=20)
        # a kernel-chosen name
        auto = TapDevice("fta%d")
        assert auto.name.startswith("fta") and auto.name[3:].isdigit()
        auto.close()
    assert dev.link_up  # the failed attempts did not disturb the first device


def test_missing_tun_node_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import femtotcp.phy.tap as tap

    monkeypatch.setattr(tap, "TUN_PATH", "/nonexistent/net/tun")
    with pytest.raises(OSError, match="does not exist.*modprobe tun") as exc:
        TapDevice("ftap0")
    assert exc.value.errno == errno.ENOENT


def test_deleted_interface_stops_reading_without_spinning(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    ns.ip("link", "del", "ftap0")
    dev.on_readable()
    assert dev.counters["rx_detached"] == 1
    # the fd no longer reports readable, so a select loop would not spin
    assert select.select([dev.fileno()], [], [], 0)[0] == []
    dev.send(b"\xff" * 60)
    assert dev.counters["tx_detached"] == 1
    dev.close()


def test_tap_reads_are_batched(ns: Netns) -> None:
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    dev.max_batch = 2
    got: list[bytes] = []
    dev.set_receiver(got.append)
    # Several ARP requests queue in the TAP while nobody reads.
    for i in range(5):
        ns.run("ping", "-c", "1", "-W", "0.2", f"192.0.2.{50 + i}", check=False)
    dev.on_readable()
    assert len(got) == 2  # one batch, bounded
    while select.select([dev.fileno()], [], [], 0)[0]:
        dev.on_readable()
    assert len(got) >= 5


def test_tun_carries_bare_ip_both_ways(ns: Netns) -> None:
    dev = kernel_tun(ns, "ftun0", "192.0.2.1/24")
    assert dev.raw_ip
    # Kernel -> TUN: a ping to the peer side of the subnet arrives as a bare IPv4 packet.
    ns.popen("ping", "-c", "3", "-i", "0.3", "192.0.2.2",
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pkt = read_until(dev, lambda p: p[0] >> 4 == 4 and p[9] == ipv4.PROTO_ICMP)
    header, payload = ipv4.parse(pkt)
    assert header.src == ip_bytes("192.0.2.1") and header.dst == ip_bytes("192.0.2.2")
    assert icmp4.parse(payload)[0].type == icmp4.ECHO_REQUEST
    # TUN -> kernel: our echo request to the kernel's address gets a reply.
    request = ipv4.build(ip_bytes("192.0.2.2"), ip_bytes("192.0.2.1"), ipv4.PROTO_ICMP,
                         icmp4.build_echo(icmp4.ECHO_REQUEST, 0x4242, 1, b"tun!"))
    dev.send(request)

    def is_reply(p: bytes) -> bool:
        try:
            h, body = ipv4.parse(p)
            icmp, data = icmp4.parse(body)
        except Exception:  # noqa: BLE001
            return False
        return icmp.type == icmp4.ECHO_REPLY and icmp.ident == 0x4242 and bytes(data) == b"tun!"

    read_until(dev, is_reply)
    assert dev.counters["tx_error"] == 0


def test_tap_hands_the_first_frame_over_before_reading_the_rest(ns: Netns) -> None:
    """A lone frame is answered before the read that finds the queue empty;
    a burst's other frames are all read before any of them is delivered."""
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    queued_at_delivery: list[bool] = []

    def receiver(frame: bytes) -> None:
        queued_at_delivery.append(bool(select.select([dev.fileno()], [], [], 0)[0]))

    dev.set_receiver(receiver)
    for i in range(4):
        ns.run("ping", "-c", "1", "-W", "0.2", f"192.0.2.{60 + i}", check=False)
    assert select.select([dev.fileno()], [], [], 0)[0]
    dev.on_readable()
    assert len(queued_at_delivery) >= 4
    # the first while the others still waited in the kernel; the rest after
    # the batch had emptied the queue
    assert queued_at_delivery[0] is True
    assert not any(queued_at_delivery[1:])
    assert dev.counters["rx_frames"] == len(queued_at_delivery)


def test_plain_tap_sees_a_capture_or_receiver_changed_within_a_batch(ns: Netns) -> None:
    """A plain TAP hands frames to the receiver without ``deliver``'s call
    while nobody captures; a capture added, or the receiver removed, by a
    frame's handling holds for the rest of the same read batch, and every
    frame is counted once."""
    with entered(ns):
        dev = TapDevice("ftap0", offload=False)
    ns.devices.append(dev)
    ns.ip("addr", "add", "192.0.2.1/24", "dev", "ftap0")
    got: list[bytes] = []
    captured: list[bytes] = []

    def receiver(frame: bytes) -> None:
        got.append(frame)
        if len(got) == 2:
            dev.add_capture(lambda f, out: captured.append(f))
        elif len(got) == 3:
            dev.set_receiver(None)

    dev.set_receiver(receiver)
    for i in range(6):
        ns.run("ping", "-c", "1", "-W", "0.2", f"192.0.2.{70 + i}", check=False)
    frames = 0
    while select.select([dev.fileno()], [], [], 0)[0]:
        dev.on_readable()
        frames = dev.counters["rx_frames"]
    assert frames >= 6
    assert len(got) == 3                               # none after the receiver went
    assert captured[0] == got[2]                       # the capture saw the third on
    assert len(captured) == frames - 2
    assert dev.counters["rx_no_receiver"] == frames - 3
