"""The core-loop seam: ``Stack.end_batch`` ends a device's read batch, with or
without a loop; wall-clock time is injected; devices state capabilities."""

from __future__ import annotations

from collections.abc import Callable

from femtolan import Recorder, arp_frame, ip_frame, parse_icmp, parse_ip

from femtotcp.core.device import DeviceCapabilities, Medium
from femtotcp.phy.faulty import FaultyDevice
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.interface import Interface
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, ip_bytes, mac_bytes, tcp
from femtotcp.wire import icmp4 as wire_icmp4

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR_IP = ip_bytes("192.0.2.2")
PEER_IP = ip_bytes("192.0.2.1")
MSS = 1000




def _segments(dev: Recorder) -> list[tcp.TcpHeader]:
    out = []
    for frame in dev.sent:
        f = parse_ip(frame)
        if f is not None and f.ip.proto == tcp.PROTO:
            out.append(tcp.parse(f.payload, f.ip.src, f.ip.dst)[0])
    dev.sent.clear()
    return out


class Peer:
    """A scripted TCP peer talking to one stack through raw frames."""

    def __init__(self, stack: Stack, iface: Interface, dev: Recorder,
                 end_batch: Callable[[], None]) -> None:
        self.stack, self.iface, self.dev, self.end_batch = stack, iface, dev, end_batch
        self.seq = 5000

    def send(self, flags: int, payload: bytes = b"", ack: int = 0, opts: bytes = b"") -> None:
        seg = tcp.build(PEER_IP, OUR_IP, 40000, 80, self.seq, ack, flags, 65535, payload, opts)
        self.stack.receive(self.iface, ip_frame(PEER_IP, OUR_IP, tcp.PROTO, seg,
                                                dst_mac=OUR_MAC, src_mac=PEER_MAC))
        self.seq += len(payload) + (1 if flags & tcp.SYN else 0)


def _run(with_loop: bool) -> tuple[list[tuple[int, int]], int]:
    """Handshake, then 48 data segments in batches of 8; the (flags, ack) of
    every segment the stack sent after the handshake, and the bytes the
    program read (its on_event runs at the end of each batch)."""
    now = [100.0]
    cfg = StackConfig(tcp=TcpConfig(quickack_segments=0))
    stack = Stack("batch", config=cfg, clock=lambda: now[0])
    dev = Recorder()
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    loop = SimLoop(start=now[0]) if with_loop else None
    if loop is not None:
        loop.add_stack(stack)
        end: Callable[[], None] = lambda: loop.run(0)  # noqa: E731
    else:
        end = stack.end_batch
    stack.receive(iface, arp_frame(arp.REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, OUR_IP))
    lst = stack.tcp.listen(b"\0\0\0\0", 80) if stack.tcp else None
    assert lst is not None
    peer = Peer(stack, iface, dev, end)
    peer.send(tcp.SYN, opts=tcp.build_options(mss=MSS))
    end()
    synack, = _segments(dev)
    peer.send(tcp.ACK, ack=synack.seq + 1)
    end()
    conn = lst.accept()
    assert conn is not None
    got = [0]

    def drain() -> None:
        while (data := conn.recv(1 << 16)):
            got[0] += len(data)

    conn.on_event = drain
    dev.sent.clear()
    for _ in range(6):
        for _ in range(8):
            peer.send(tcp.ACK, bytes(MSS), ack=synack.seq + 1)
        assert got[0] % (8 * MSS) == 0      # events wait for the end of the batch
        end()
    return [(s.flags, s.ack) for s in _segments(dev)], got[0]


def test_same_acks_and_events_with_and_without_a_loop() -> None:
    no_loop = _run(with_loop=False)
    looped = _run(with_loop=True)
    assert no_loop == looped
    sent, got = no_loop
    assert got == 48 * MSS
    # Coalesced: one ACK per batch of 8 full segments, not one per two segments.
    assert len(sent) == 6 and all(ack == sent[-1][1] - (5 - i) * 8 * MSS
                                  for i, (_, ack) in enumerate(sent))


def test_receive_defers_until_end_batch() -> None:
    stack = Stack("defer", config=StackConfig(tcp=TcpConfig(quickack_segments=0)),
                  clock=lambda: 1.0)
    dev = Recorder()
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    stack.receive(iface, arp_frame(arp.REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, OUR_IP))
    assert stack.tcp is not None
    lst = stack.tcp.listen(b"\0\0\0\0", 80)
    peer = Peer(stack, iface, dev, stack.end_batch)
    peer.send(tcp.SYN, opts=tcp.build_options(mss=MSS))
    synack, = _segments(dev)
    peer.send(tcp.ACK, ack=synack.seq + 1)
    assert lst.accept() is not None
    for _ in range(4):
        peer.send(tcp.ACK, bytes(MSS), ack=synack.seq + 1)
    assert _segments(dev) == []            # the ACK waits for the batch's end
    stack.end_batch()
    acks = _segments(dev)
    assert [a.ack for a in acks] == [peer.seq]


def test_icmp_timestamp_uses_the_injected_wall_clock() -> None:
    # 01:00:00.250 UT on some day: 3600250 ms since midnight.
    stack = Stack("ts", clock=lambda: 5.0, wall_clock=lambda: 86400 * 20000 + 3600.25)
    dev = Recorder()
    iface = stack.add_interface(dev, mac=OUR_MAC, ipv4="192.0.2.2/24")
    stack.receive(iface, arp_frame(arp.REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, OUR_IP))
    request = wire_icmp4.build(13, 0, 0x12340001, (1234).to_bytes(4, "big") + bytes(8))
    stack.receive(iface, ip_frame(PEER_IP, OUR_IP, 1, request, dst_mac=OUR_MAC,
                                  src_mac=PEER_MAC))
    replies = [r for r in map(parse_icmp, dev.sent) if r is not None]
    assert len(replies) == 1
    _, header, body = replies[0]
    assert header.type == 14
    assert [int.from_bytes(body[i:i + 4], "big") for i in (0, 4, 8)] == [1234, 3600250, 3600250]


def test_devices_state_their_capabilities() -> None:
    dev = Recorder()
    assert dev.capabilities == DeviceCapabilities(1500)
    dev.raw_ip = True
    dev.offload = True
    caps = dev.capabilities
    assert caps.medium is Medium.RAW_IP and caps.checksum_tx and caps.segmentation
    assert not caps.gro and not caps.checksum_rx
    # A wrapper that does not pass offload through switches it off.
    faulty = FaultyDevice(dev, SimLoop())
    assert not faulty.capabilities.segmentation and faulty.capabilities.medium is Medium.RAW_IP
    plain = Recorder()
    plain.send_offload(b"x" * 60, 1000, 34, 16, 54)
    assert plain.counters["tx_offload_unsupported"] == 1 and plain.sent == []
