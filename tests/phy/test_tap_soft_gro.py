"""Software GRO behind a plain TAP (no vnet header) without the kernel: the
device is adopted on one end of a SEQPACKET socket pair (one datagram per
read, like a TAP fd) and the test writes MTU-sized segments of an established
connection into the other end, as the kernel would. The read batch reaches
the stack's batch entry and runs of segments are merged; a capture still sees
every frame as read, a bad checksum inside a run is still dropped and counted,
and a wrapper (FaultyDevice) gets the frames one by one, as before."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from femtotcp.phy.base import Device
from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.tap import TapDevice
from femtotcp.proto.tcp.connection import TcpConnection
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, ipv4, mac_bytes, tcp
from femtotcp.wire.checksum import checksum

PEER = ip_bytes("192.0.2.1")
US = ip_bytes("192.0.2.2")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_MAC = mac_bytes("02:00:00:00:00:02")
PORT = 9
MSS = 1448


@dataclass
class Rig:
    stack: Stack
    loop: SimLoop
    tap: TapDevice
    dev: Device                  # the tap, or the wrapper around it
    kernel: socket.socket        # the other end: what it sends, the tap reads
    conn: TcpConnection
    seq: int
    ack: int
    ts: int
    ident: int = 0

    def segment(self, payload: bytes, flags: int = tcp.ACK) -> bytes:
        """The next data segment, as Linux sends it (DF, the IP ID counting up)."""
        self.ident += 1
        t = tcp.build(PEER, US, 40000, PORT, self.seq & 0xFFFFFFFF, self.ack, flags, 0xFFFF,
                      payload, tcp.build_options(ts=(50, self.ts)))
        self.seq += len(payload)
        return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                              ipv4.build(PEER, US, 6, t, ident=self.ident, flags_frag=0x4000))

    def read(self) -> None:
        """What the loop does when the fd is readable: the batch, then its end."""
        self.dev.on_readable()
        self.loop.run(0)

    def received(self) -> bytes:
        out = b""
        while (d := self.conn.recv(1 << 20)):
            out += d
        return out


def _rig(wrap: bool) -> Rig:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tap = TapDevice.from_fd(os.dup(a.fileno()), "gro0", 1500, offload=False)
    a.close()
    loop = SimLoop()
    dev: Device = FaultyDevice(tap, loop, inbound=True, outbound=False) if wrap else tap
    stack = Stack("gro")
    stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop.add_stack(stack)
    assert stack.tcp is not None
    sent: list[bytes] = []
    tap.add_capture(lambda f, out: sent.append(f) if out else None)
    b.send(ethernet.build(ethernet.BROADCAST, PEER_MAC, ethernet.ETH_ARP,
                          arp.build(arp.REQUEST, PEER_MAC, PEER, bytes(6), US)))
    lst = stack.tcp.listen(bytes(4), PORT)
    syn = tcp.build(PEER, US, 40000, PORT, 1000, 0, tcp.SYN, 65535, b"",
                    tcp.build_options(mss=1460, wscale=7, sack_perm=True, ts=(50, 0)))
    b.send(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4, ipv4.build(PEER, US, 6, syn)))
    dev.on_readable()
    loop.run(0)
    synack = None
    for f in sent:
        _, body = ethernet.parse(f)
        if f[12:14] == b"\x08\x00" and body[9] == 6:
            seg, _ = tcp.parse(ipv4.parse(body)[1])
            if seg.flags & tcp.SYN:
                synack = seg
    assert synack is not None
    ts = tcp.parse_options(synack.options).ts_val or 0
    rig = Rig(stack, loop, tap, dev, b, None, 1001, synack.seq + 1, ts)  # type: ignore[arg-type]
    b.send(rig.segment(b""))
    rig.read()
    conn = lst.accept()
    assert conn is not None
    rig.conn = conn
    return rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = _rig(wrap=False)
    yield r
    r.tap.close()
    r.kernel.close()


def test_a_read_batch_is_merged_and_arrives_whole(rig: Rig) -> None:
    data = os.urandom(40 * MSS)
    frames = [rig.segment(data[i:i + MSS]) for i in range(0, len(data), MSS)]
    captured: list[bytes] = []
    rig.tap.add_capture(lambda f, out: captured.append(f) if not out else None)
    for f in frames:
        rig.kernel.send(f)
    rig.read()
    assert rig.received() == data
    c = rig.stack.counters
    # The first frame of the batch goes up at once; the 39 others as one run.
    assert c["gro.merged_frames"] == 1 and c["gro.merged_segments"] == 39
    assert c["tcp.bad_checksum"] == 0 and c["eth.oversize"] == 0
    assert rig.tap.counters["rx_frames"] == 40 + 3     # and ARP and the handshake
    assert captured == frames                           # a capture sees them as read


def test_a_bad_checksum_inside_a_run_is_dropped_and_counted(rig: Rig) -> None:
    data = os.urandom(10 * MSS)
    frames = [rig.segment(data[i:i + MSS]) for i in range(0, len(data), MSS)]
    bad = bytearray(frames[5])
    bad[-1] ^= 0xFF
    frames[5] = bytes(bad)
    for f in frames:
        rig.kernel.send(f)
    rig.read()
    c = rig.stack.counters
    assert c["tcp.bad_checksum"] == 1
    assert c["gro.merged_segments"] == 4 + 4        # 1-4 and 6-9 (0 went up alone)
    got = rig.received()
    assert got == data[:5 * MSS]                    # 6-9 wait out of order for the resend
    rig.seq = 1001 + 5 * MSS                        # the resend
    rig.kernel.send(rig.segment(data[5 * MSS:6 * MSS]))
    rig.read()
    assert rig.received() == data[5 * MSS:]


def test_a_wrapper_gets_the_frames_one_by_one() -> None:
    r = _rig(wrap=True)
    try:
        data = os.urandom(20 * MSS)
        for i in range(0, len(data), MSS):
            r.kernel.send(r.segment(data[i:i + MSS]))
        r.read()
        assert r.received() == data
        assert r.stack.counters["gro.merged_frames"] == 0
    finally:
        r.dev.close()
        r.kernel.close()


def test_a_hostile_batch_is_dropped_and_counted_as_before(rig: Rig) -> None:
    """Among good segments: a bad TCP checksum, a bad IP header checksum, a
    frame cut inside its TCP header, an IP length beyond the frame, an IP
    length short of it, and a run far beyond the window. Nothing raises, each
    is counted where the path without GRO counts it, and only the good data
    arrives, in order."""
    good = os.urandom(6 * MSS)
    frames = [rig.segment(good[i:i + MSS]) for i in range(0, 3 * MSS, MSS)]
    bad_tcp = bytearray(rig.segment(os.urandom(MSS)))
    bad_tcp[-3] ^= 0x10
    rig.seq -= MSS
    bad_ip = bytearray(rig.segment(os.urandom(MSS)))
    bad_ip[22] ^= 0x01                                  # TTL: the header checksum fails
    rig.seq -= MSS
    cut = rig.segment(os.urandom(MSS))[:14 + 20 + 10]
    rig.seq -= MSS
    long_ip = bytearray(rig.segment(os.urandom(MSS)))
    long_ip[16:18] = (len(long_ip) - 14 + 8).to_bytes(2, "big")   # 8 bytes beyond the frame
    long_ip[24:26] = b"\0\0"
    long_ip[24:26] = checksum(long_ip[14:34]).to_bytes(2, "big")
    rig.seq -= MSS
    frames += [bytes(bad_tcp), bytes(bad_ip), cut, bytes(long_ip)]
    frames += [rig.segment(good[i:i + MSS]) for i in range(3 * MSS, 6 * MSS, MSS)]
    rig.seq += 1 << 30                                  # far beyond the window
    frames += [rig.segment(os.urandom(MSS)) for _ in range(4)]
    for f in frames:
        rig.kernel.send(f)
    rig.read()
    c = rig.stack.counters
    assert c["stack.internal_error"] == 0
    assert c["tcp.bad_checksum"] == 1 and c["ipv4.bad_checksum"] == 1
    assert c["ipv4.truncated"] == 2                    # the cut frame and the long IP
    assert c["tcp.out_of_window"] == 1                 # the far run, merged: one segment
    assert rig.received() == good
    # 1-2 (0 went up alone), the good 3-5, and the far run.
    assert c["gro.merged_frames"] == 3 and c["gro.merged_segments"] == 2 + 3 + 4
