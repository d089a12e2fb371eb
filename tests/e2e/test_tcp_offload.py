"""TCP against the kernel over a TAP with offload (vnet headers, TSO, GRO, partial
checksums), each test in its own namespace: transfers arrive byte-exact, the
stack really writes super-segments and takes the kernel's super-frames, and the
kernel finds nothing wrong with what it received."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Netns, add_netem, entered
from stackrig import chunks, kernel_echo_roundtrip, running_stack

from femtotcp.phy.pcap import PcapReader, PcapWriter
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime
from femtotcp.services import tcp_echo
from femtotcp.stack import Stack
from femtotcp.wire import ip_bytes

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"


@dataclass
class Rig:
    ns: Netns
    rt: Runtime
    stack: Stack
    tap: TapDevice

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.rt.call(fn, *args)

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        return (self.call(self.stack.counters.snapshot),
                self.call(lambda: dict(self.tap.counters)))

    def assert_healthy(self) -> None:
        stack, dev = self.counters()
        assert stack.get("stack.internal_error", 0) == 0, stack
        assert stack.get("tcp.bad_checksum", 0) == 0, stack
        assert stack.get("eth.oversize", 0) == 0, stack
        assert not [k for k in dev if k.startswith("rx_vnet") or k == "rx_oversize"
                    or k.startswith("tx_") and k not in ("tx_frames", "tx_gso_frames",
                                                          "tx_gso_segments")], dev


@pytest.fixture
def rig(ns: Netns) -> Iterator[Rig]:
    with entered(ns):
        tap = TapDevice("ftoff0", offload=True, gro=True)
    ns.devices.append(tap)
    ns.ip("addr", "add", f"{KERNEL}/24", "dev", tap.name)
    with running_stack(tap, "e2e-offload", f"{STACK}/24") as (rt, stack):
        yield Rig(ns, rt, stack, tap)


def _kernel_tcp_errors(ns: Netns) -> dict[str, int]:
    """The kernel's own receive-error counters (bad checksums and the like)."""
    text = ns.run("cat", "/proc/net/snmp").stdout.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(text[::2], text[1::2], strict=False):
        proto, _, keys = names.partition(":")
        vals = values.partition(":")[2].split()
        for k, v in zip(keys.split(), vals, strict=False):
            out[f"{proto}.{k}"] = int(v)
    return {k: out.get(k, 0) for k in ("Tcp.InErrs", "Tcp.InCsumErrors", "Ip.InHdrErrors",
                                       "Ip.InDiscards")}


def test_50mb_each_way_with_offload(rig: Rig) -> None:
    """50 MB from the kernel (as GRO super-frames with partial checksums) to the
    stack's echo and back (as TSO super-segments), byte-exact."""
    rig.call(tcp_echo.start, rig.stack, 7)
    started = time.monotonic()
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 50_000_000, 11, timeout=120)
    wall = time.monotonic() - started
    assert n == 50_000_000 and got == sent
    stack, dev = rig.counters()
    assert stack["tcp.tso_sent"] > 100 and dev["tx_gso_frames"] == stack["tcp.tso_sent"]
    assert dev["tx_gso_segments"] > 10 * dev["tx_gso_frames"]     # really batched
    assert dev["rx_gso_frames"] > 100                             # the kernel's TSO to us
    assert _kernel_tcp_errors(rig.ns) == {"Tcp.InErrs": 0, "Tcp.InCsumErrors": 0,
                                          "Ip.InHdrErrors": 0, "Ip.InDiscards": 0}
    print(f"50 MB each way (echo) over an offload TAP: {wall:.1f} s; "
          f"{dev['tx_gso_frames']} TSO writes of {dev['tx_gso_segments']} segments, "
          f"{dev['rx_gso_frames']} GRO frames read")
    rig.assert_healthy()


def test_tso_writes_without_gro(ns: Netns) -> None:
    """offload=True, gro=False: the kernel sends us only MTU-sized, complete
    frames (TUNSETOFFLOAD(0)) while our writes are still TSO super-segments."""
    with entered(ns):
        tap = TapDevice("ftoff1", offload=True, gro=False)
    ns.devices.append(tap)
    ns.ip("addr", "add", f"{KERNEL}/24", "dev", tap.name)
    assert tap.offload and not tap.gro
    stack = Stack("e2e-tso-only")
    stack.add_interface(tap, mac="02:00:00:00:00:02", ipv4=f"{STACK}/24")
    rt = Runtime()
    rt.add_stack(stack)
    rt.start()
    try:
        rt.call(stack.start)
        rig = Rig(ns, rt, stack, tap)
        rig.call(tcp_echo.start, stack, 7)
        sent, got, n = kernel_echo_roundtrip(ns, STACK, 20_000_000, 11, timeout=120)
        assert n == 20_000_000 and got == sent
        counters, dev = rig.counters()
        assert dev["tx_gso_frames"] > 50 and dev.get("rx_gso_frames", 0) == 0
        assert dev.get("rx_vnet_bad_gso", 0) == 0
        rig.assert_healthy()
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


def test_stack_sends_to_kernel_listener_with_tso(rig: Rig) -> None:
    """The stack connects and sends 20 MB; the kernel hashes what it got."""
    with entered(rig.ns):
        lst = socket.create_server((KERNEL, 5001))
    result: dict[str, Any] = {}

    def server() -> None:
        conn, _ = lst.accept()
        h = hashlib.sha256()
        n = 0
        while (d := conn.recv(1 << 20)):
            h.update(d)
            n += len(d)
        result["n"], result["sha"] = n, h.hexdigest()
        conn.close()

    th = threading.Thread(target=server, daemon=True)
    th.start()
    data = chunks(20_000_000, 5)
    sent = hashlib.sha256()
    state: dict[str, Any] = {"pending": b""}
    done = threading.Event()

    def pump() -> None:
        conn = state["conn"]
        while True:
            if not state["pending"]:
                chunk = next(data, None)
                if chunk is None:
                    if not conn.wr_shut:
                        conn.shutdown(socket.SHUT_WR)
                        done.set()
                    return
                sent.update(chunk)
                state["pending"] = chunk
            if conn.state != "ESTABLISHED":
                return
            n = conn.send(state["pending"])
            if n == 0:
                return
            state["pending"] = state["pending"][n:]

    def start() -> None:
        conn = rig.stack.tcp.connect(ip_bytes(KERNEL), 5001)
        state["conn"] = conn
        conn.on_event = pump

    rig.call(start)
    assert done.wait(60)
    th.join(60)
    lst.close()
    assert result["n"] == 20_000_000 and result["sha"] == sent.hexdigest()
    stack, dev = rig.counters()
    assert dev["tx_gso_frames"] > 50
    rig.assert_healthy()


def _impair_inbound(rig: Rig) -> None:
    """Loop thread: 3% loss, 5% reordering and 1 ms delay on the frames the
    kernel sends (super-frames included), by a FaultyDevice between the TAP and
    the stack that passes the TAP's offload through (TSO writes go straight to
    the TAP)."""
    from femtotcp.phy.faulty import FaultyDevice

    class OffloadFaulty(FaultyDevice):
        offload = True
        gro = True

        def send_offload(self, *args: Any) -> None:
            self.inner.send_offload(*args)    # type: ignore[attr-defined]

    iface = rig.stack.interfaces[0]
    faulty = OffloadFaulty(rig.tap, rig.rt, loss=0.03, reorder=0.05, delay=0.001, seed=51,
                           outbound=False)
    faulty.set_receiver(lambda frame, _i=iface: rig.stack.receive(_i, frame))
    iface.device = faulty


def test_offload_through_netem(rig: Rig) -> None:
    """Loss and reordering on the kernel's side (whole super-frames lost, as
    netem drops GSO packets whole): 10 MB each way still byte-exact, recovered
    per MSS. A kernel without netem skips this (fails under CI=true); the
    FaultyDevice test below runs everywhere."""
    add_netem(rig.ns, rig.tap.name, "loss", "3%", "reorder", "5%", "delay", "1ms")
    _impaired_offload_echo(rig)


def test_offload_through_faulty_device(rig: Rig) -> None:
    """The same impairment on what the kernel sends (super-frames included), by
    a FaultyDevice that passes the TAP's offload through."""
    rig.call(_impair_inbound, rig)
    _impaired_offload_echo(rig)


def _impaired_offload_echo(rig: Rig) -> None:
    rig.call(tcp_echo.start, rig.stack, 7)
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 10_000_000, 11, timeout=180)
    assert n == 10_000_000 and got == sent
    stack, dev = rig.counters()
    assert stack.get("tcp.ooo_segments", 0) > 0
    assert dev["tx_gso_frames"] > 0
    rig.assert_healthy()


def test_pcap_of_tso_writes_holds_the_super_frames(rig: Rig, tmp_path: Path) -> None:
    """A capture records each TSO write once, as the super-frame written."""
    path = tmp_path / "tso.pcap"
    writer = PcapWriter(str(path))
    rig.call(writer.attach, rig.tap)
    rig.call(tcp_echo.start, rig.stack, 7)
    sent, got, n = kernel_echo_roundtrip(rig.ns, STACK, 2_000_000, 11, timeout=60)
    assert n == 2_000_000 and got == sent
    rig.call(writer.detach, rig.tap)
    writer.close()
    _, dev = rig.counters()
    with PcapReader(str(path)) as reader:
        sizes = [len(frame) for _, frame in reader]
    assert max(sizes) > 1514                  # super-frames, not cut into MTU pieces
    assert len([s for s in sizes if s > 1514]) >= dev["tx_gso_frames"]
