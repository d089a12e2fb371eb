"""TCP segmentation offload on the virtual clock: stacks whose devices take TSO
writes, with the super-segments either delivered whole (GRO) or cut into
MSS-sized segments here in the test (what the kernel does when it forwards a
GSO packet): transfers arrive byte-exact, with and without loss, and the
accounting (segments out, retransmissions, FIN) stays per MSS."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[2]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from femtolan import Lan, mac  # noqa: E402
from tcp_harness import Transfer, connect_pair, digest, random_bytes  # noqa: E402

from femtotcp.phy.base import Device  # noqa: E402
from femtotcp.phy.memory import Switch  # noqa: E402
from femtotcp.phy.tap import build_vnet, parse_vnet  # noqa: E402
from femtotcp.proto.tcp.config import TcpConfig  # noqa: E402
from femtotcp.runtime import SimLoop  # noqa: E402
from femtotcp.stack import Stack  # noqa: E402
from femtotcp.stack.config import StackConfig  # noqa: E402
from femtotcp.wire import ethernet, ipv4, tcp  # noqa: E402
from femtotcp.wire.checksum import checksum, ones_sum  # noqa: E402

_TCP = struct.Struct("!HHIIHHHH")


def software_gso(frame: bytes, gso_size: int, csum_start: int) -> list[bytes]:
    """Cut a TCP/IPv4 super-frame into ``gso_size`` segments the way Linux's
    tcp_gso_segment does: header copied, SEQ advanced, FIN and PSH on the last
    piece only, IP ID incremented, checksums computed."""
    eth_len = csum_start - 20
    ip_hdr = bytearray(frame[eth_len:csum_start])
    src, dst = bytes(ip_hdr[12:16]), bytes(ip_hdr[16:20])
    th = frame[csum_start:]
    hlen = (th[12] >> 4) * 4
    header, payload = bytearray(th[:hlen]), th[hlen:]
    seq = _TCP.unpack_from(header)[2]
    ident = ip_hdr[4] << 8 | ip_hdr[5]
    out = []
    for i, off in enumerate(range(0, len(payload), gso_size)):
        piece = payload[off:off + gso_size]
        last = off + gso_size >= len(payload)
        h = bytearray(header)
        h[4:8] = ((seq + off) & 0xFFFFFFFF).to_bytes(4, "big")
        if not last:
            h[13] &= ~(tcp.FIN | tcp.PSH) & 0xFF
        h[16:18] = b"\0\0"
        seg = bytes(h) + piece
        csum = checksum(seg, ones_sum(src + dst) + 6 + len(seg))
        seg = seg[:16] + csum.to_bytes(2, "big") + seg[18:]
        iph = bytearray(ip_hdr)
        iph[2:4] = (20 + len(seg)).to_bytes(2, "big")
        iph[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
        iph[10:12] = b"\0\0"
        iph[10:12] = checksum(bytes(iph)).to_bytes(2, "big")
        out.append(frame[:eth_len] + bytes(iph) + seg)
    return out


class OffloadPort(Device):
    """A switch port that takes TSO writes. ``mode`` "gro" hands the peer the
    super-frame (completed checksum), "segment" cuts it first. ``drop`` may
    drop any frame (super-frames included) on the way out."""

    offload = True
    gro = True

    def __init__(self, inner: Device, mode: str) -> None:
        super().__init__(inner.name + "+tso", inner.mtu)
        self.inner = inner
        self.mode = mode
        self.super_frames: list[bytes] = []
        self.drop: Callable[[bytes], bool] | None = None
        inner.set_receiver(self.deliver)

    def _transmit(self, frame: bytes) -> None:
        if self.drop is not None and self.drop(frame):
            return
        assert len(frame) <= self.mtu + 14
        self.inner.send(frame)

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None:
        self.counters["tx_frames"] += 1
        self.counters["tx_gso_frames" if gso_size else "tx_csum_frames"] += 1
        self.super_frames.append(frame)
        if self.drop is not None and self.drop(frame):
            return
        # What the kernel reads: the vnet header, then the frame.
        got = parse_vnet(build_vnet(1 if gso_size else 0, gso_size, csum_start, csum_offset,
                                    hdr_len) + frame)
        assert not isinstance(got, str), got
        whole = got[1]
        if self.mode == "gro" or not gso_size:
            self.inner.send(whole)
            return
        for piece in software_gso(whole, gso_size, csum_start):
            assert len(piece) <= self.mtu + 14
            self.inner.send(piece)


def offload_lan(modes: tuple[str, str], config: StackConfig | None = None) -> Lan:
    loop = SimLoop()
    lan = Lan(loop, Switch(loop, latency=0.0005))
    for i, mode in enumerate(modes):
        stack = Stack(name=f"h{i}", config=config or StackConfig())
        port = lan.switch.port(f"h{i}")
        dev: Device = OffloadPort(port, mode) if mode != "none" else port
        iface = stack.add_interface(dev, mac=mac(i), ipv4=f"192.0.2.{i + 1}/24")
        loop.add_stack(stack)
        stack.start()
        lan.stacks.append(stack)
        lan.ifaces.append(iface)
        lan.devices.append(dev)
    loop.run(duration=0)
    return lan


def transfer(lan: Lan, nbytes: int, seed: int, **options: Any) -> tuple[Any, Any]:
    """Client (1) -> server (0) ``nbytes`` and the same back, byte-exact."""
    client, server = connect_pair(lan, **options)
    up = random_bytes(nbytes, seed)
    down = random_bytes(nbytes, seed + 1)
    a = Transfer(client, up)
    b = Transfer(server, down)
    a.event()
    b.event()
    assert lan.run_until(lambda: a.eof and b.eof, 600)
    assert a.error is None and b.error is None
    assert digest(b.got) == digest(up) and digest(a.got) == digest(down)
    return client, server


def tso_segments(dev: OffloadPort) -> list[tcp.TcpHeader]:
    out = []
    for frame in dev.super_frames:
        _, body = ethernet.parse(frame)
        ip, seg = ipv4.parse(body)
        out.append(tcp.parse(seg)[0])
        assert ip.flags_frag & ipv4.DF
    return out


@pytest.mark.parametrize("mode", ["gro", "segment"])
def test_bulk_both_ways_byte_exact(mode: str) -> None:
    lan = offload_lan((mode, mode))
    client, server = transfer(lan, 3_000_000, 1)
    for i, conn in ((1, client), (0, server)):
        stack = lan.stacks[i]
        dev = lan.devices[i]
        assert isinstance(dev, OffloadPort)
        assert stack.counters["tcp.tso_sent"] == dev.counters["tx_gso_frames"] > 10
        assert stack.counters["stack.internal_error"] == 0
        # Accounting per MSS: every MSS of data counted as a segment sent.
        assert conn.segs_out >= 3_000_000 // conn.mss
        for hdr in tso_segments(dev):
            assert not hdr.flags & (tcp.FIN | tcp.SYN | tcp.RST)
            assert hdr.options[:4] == b"\x01\x01\x08\x0a"      # the timestamp, as per MSS
    if mode == "segment":
        # The receivers saw only MSS-sized segments: nothing oversize anywhere.
        for stack in lan.stacks:
            assert stack.counters["eth.oversize"] == 0


def test_super_segments_are_full_mss_multiples() -> None:
    lan = offload_lan(("gro", "gro"))
    client, _ = transfer(lan, 1_000_000, 2)
    dev = lan.devices[1]
    assert isinstance(dev, OffloadPort)
    for frame in dev.super_frames:
        payload = len(frame) - 14 - 20 - 32
        assert payload % client.mss == 0 and payload >= 2 * client.mss
        assert len(frame) - 14 <= 65535


def test_without_timestamps_plain_headers() -> None:
    lan = offload_lan(("segment", "segment"))
    for stack in lan.stacks:
        stack.tcp.config = TcpConfig(timestamps=False)
    transfer(lan, 1_000_000, 3)
    dev = lan.devices[1]
    assert isinstance(dev, OffloadPort)
    hdrs = tso_segments(dev)
    assert hdrs and all(h.header_len == 20 for h in hdrs)


def test_peer_without_offload_gets_mss_segments() -> None:
    """Only the sender's device offloads; the segmenting port feeds a plain peer."""
    lan = offload_lan(("none", "segment"))
    transfer(lan, 1_000_000, 4)
    assert lan.stacks[1].counters["tcp.tso_sent"] > 0
    assert lan.stacks[0].counters["tcp.tso_sent"] == 0
    assert lan.stacks[0].counters["eth.oversize"] == 0


@pytest.mark.parametrize("mode", ["gro", "segment"])
def test_lost_super_segments_are_recovered_per_mss(mode: str) -> None:
    lan = offload_lan((mode, mode))
    dev = lan.devices[1]
    assert isinstance(dev, OffloadPort)
    count = [0]

    def drop(frame: bytes) -> bool:
        count[0] += 1
        return count[0] % 37 == 0          # every 37th write, super-frames included

    dev.drop = drop
    client, _ = transfer(lan, 2_000_000, 5)
    assert client.retransmits > 0
    assert lan.stacks[1].counters["tcp.tso_sent"] > 0
    assert lan.stacks[1].counters["stack.internal_error"] == 0
