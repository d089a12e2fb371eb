"""The VDE2 plug against a real vde_switch (and, through the switch's TAP, the kernel)."""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Netns, require_program

from femtotcp.phy.vde import VdeDevice
from femtotcp.wire import arp, ethernet, ip_bytes, mac_bytes

MAC_A = mac_bytes("02:00:00:00:00:0a")
MAC_B = mac_bytes("02:00:00:00:00:0b")


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_switch(directory: Path, *extra: str, ns: Netns | None = None
                 ) -> subprocess.Popen[bytes]:
    """vde_switch in the foreground; it runs until its stdin closes."""
    argv = [require_program("vde_switch"), "-s", str(directory), *extra]
    if ns is not None:
        proc: subprocess.Popen[bytes] = ns.popen(*argv, stdin=subprocess.PIPE,
                                                 stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    if not wait_for(lambda: (directory / "ctl").exists() or proc.poll() is not None):
        proc.kill()
        raise AssertionError("vde_switch did not create its control socket")
    assert proc.poll() is None, "vde_switch exited at start"
    return proc


def stop_switch(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # EOF on stdin: the switch cleans up and exits
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "sw"
    proc = start_switch(directory)
    try:
        yield directory
    finally:
        stop_switch(proc)


def read_until(dev: VdeDevice, match: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
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


def frame(dst: bytes, src: bytes, body: bytes) -> bytes:
    return ethernet.build(dst, src, 0x88B5, body)  # local experimental ethertype


def test_two_plugs_exchange_frames(switch: Path) -> None:
    a = VdeDevice(switch, name="a")
    b = VdeDevice(switch, name="b")
    try:
        assert a.peer_path != b.peer_path and a.fileno() >= 0
        a.send(frame(ethernet.BROADCAST, MAC_A, b"hello b"))
        got = read_until(b, lambda f: f.endswith(b"hello b"))
        assert got[6:12] == MAC_A
        # The switch learned A's MAC: a unicast reply goes straight back.
        b.send(frame(MAC_A, MAC_B, b"hello a" * 100))
        assert read_until(a, lambda f: f.endswith(b"hello a")).startswith(MAC_A)
        assert a.counters["tx_error"] == 0 and b.counters["rx_error"] == 0
    finally:
        a.close()
        b.close()
    a.close()  # idempotent
    assert a.fileno() == -1
    # our datagram sockets are removed from the switch's directory
    assert not [p for p in os.listdir(switch) if p.startswith(".ftcp")]


def test_requested_port(switch: Path) -> None:
    dev = VdeDevice(switch, port=5)
    try:
        assert dev.peer_path.split("/")[-1].startswith("005")
    finally:
        dev.close()


def test_no_switch(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no VDE switch.*vde_switch -s") as exc:
        VdeDevice(tmp_path / "nothing-here")
    assert exc.value.errno == errno.ENOENT
    stale = tmp_path / "stale"
    stale.mkdir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale / "ctl"))
    s.close()  # a socket file nobody listens on
    with pytest.raises(OSError, match="not running") as exc:
        VdeDevice(stale)
    assert exc.value.errno == errno.ECONNREFUSED


def test_switch_that_refuses(tmp_path: Path) -> None:
    """A control socket that accepts and hangs up is a refusal, not a hang."""
    directory = tmp_path / "fake"
    directory.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / "ctl"))
    listener.listen(1)
    def refuse() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.close()

    t = threading.Thread(target=refuse)
    t.start()
    try:
        with pytest.raises(OSError, match="refused"):
            VdeDevice(directory)
    finally:
        t.join(5)
        listener.close()
    assert not [p for p in os.listdir(directory) if p.startswith(".ftcp")]


def test_switch_going_away_is_counted(tmp_path: Path) -> None:
    directory = tmp_path / "sw"
    proc = start_switch(directory)
    dev = VdeDevice(directory)
    try:
        stop_switch(proc)
        for _ in range(3):
            dev.send(frame(ethernet.BROADCAST, MAC_A, b"anyone?"))  # never raises
        assert dev.counters["tx_link_down"] == 3
        dev.on_readable()  # nothing to read, nothing raised
    finally:
        dev.close()


def test_kernel_over_vde_switch_tap(ns: Netns, tmp_path: Path) -> None:
    """vde_switch in the namespace plugs a TAP into the kernel; we plug into
    the switch and the kernel answers our ARP request."""
    directory = tmp_path / "sw"
    proc = start_switch(directory, "-t", "vtap0", ns=ns)
    try:
        assert wait_for(lambda: ns.ip("link", "show", "vtap0", check=False).returncode == 0)
        ns.ip("addr", "add", "192.0.2.1/24", "dev", "vtap0")
        ns.ip("link", "set", "vtap0", "up")
        dev = VdeDevice(directory)
        ns.devices.append(dev)
        ours, our_ip = MAC_A, ip_bytes("192.0.2.2")
        kernel_ip = ip_bytes("192.0.2.1")
        request = ethernet.build(ethernet.BROADCAST, ours, ethernet.ETH_ARP,
                                 arp.build(arp.REQUEST, ours, our_ip, bytes(6), kernel_ip))

        def is_reply(f: bytes) -> bool:
            if f[0:6] != ours or f[12:14] != b"\x08\x06":
                return False
            pkt = arp.parse(f[14:])
            return pkt.op == arp.REPLY and pkt.spa == kernel_ip

        deadline = time.monotonic() + 10
        while True:  # the switch's port to the TAP may need a moment to come up
            dev.send(request)
            try:
                read_until(dev, is_reply, timeout=1.0)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
    finally:
        stop_switch(proc)


def test_stack_over_vde_answers_kernel_ping(ns: Netns, tmp_path: Path) -> None:
    """A whole stack on a VDE port: the kernel (behind the switch's TAP) pings it."""
    from femtotcp.runtime import Runtime
    from femtotcp.stack import Stack

    require_program("ping")
    directory = tmp_path / "sw"
    proc = start_switch(directory, "-t", "vtap0", ns=ns)
    rt = Runtime()
    try:
        assert wait_for(lambda: ns.ip("link", "show", "vtap0", check=False).returncode == 0)
        ns.ip("addr", "add", "192.0.2.1/24", "dev", "vtap0")
        ns.ip("link", "set", "vtap0", "up")
        dev = VdeDevice(directory)
        stack = Stack("vde")
        stack.add_interface(dev, mac="02:00:00:00:00:02", ipv4="192.0.2.2/24")
        rt.add_stack(stack)
        rt.start()
        rt.call(stack.start)
        res = ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "3 received" in res.stdout
        assert rt.call(lambda: stack.counters["stack.internal_error"]) == 0
    finally:
        rt.stop()
        rt.join(5)
        rt.close()
        stop_switch(proc)
