"""Helpers for TCP tests: a raw peer that speaks TCP byte by byte (like
packetdrill) to a femtotcp stack on the in-memory LAN, and stack-to-stack
transfer drivers.

The raw peer is the LAN's sniffer port (192.0.2.254): it injects segments it
builds with ``femtotcp.wire.tcp.build`` and reads back, parsed, the segments
the stack sends it. Nothing here relies on the TCP implementation under test.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

_TESTS = Path(__file__).resolve().parents[2]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from femtolan import SNIFF_IP, Lan, addr, ip_frame, mac, make_lan, parse_ip  # noqa: E402

from femtotcp.proto.tcp.connection import TcpConnection  # noqa: E402
from femtotcp.wire import tcp  # noqa: E402

ANY = b"\x00\x00\x00\x00"
SYN, ACK, FIN, RST, PSH, URG = tcp.SYN, tcp.ACK, tcp.FIN, tcp.RST, tcp.PSH, tcp.URG
MASK = 0xFFFFFFFF


class Seg(NamedTuple):
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int
    opts: tcp.TcpOptions
    payload: bytes

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    def __repr__(self) -> str:
        return (f"Seg({tcp.flags_str(self.flags)} seq={self.seq} ack={self.ack} "
                f"win={self.window} len={len(self.payload)} {self.opts!r})")


class RawPeer:
    """The test's own end of a connection, at 192.0.2.254."""

    def __init__(self, lan: Lan, target: int = 0, port: int = 40000) -> None:
        self.lan = lan
        self.sniffer = lan.sniffer()
        self.stack = lan.stacks[target]
        self.addr = addr(target)
        self.mac = mac(target)
        self.ip = SNIFF_IP
        self.port = port
        self._seen = 0

    def send(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"",
             window: int = 65535, options: bytes = b"", dport: int = 80,
             sport: int | None = None, urgent: int = 0, run: bool = True,
             checksum_ok: bool = True) -> None:
        seg = bytearray(tcp.build(self.ip, self.addr, sport or self.port, dport, seq & MASK,
                                  ack & MASK, flags, window, payload, options, urgent))
        if not checksum_ok:
            seg[16] ^= 0xFF
        self.inject(bytes(seg))
        if run:
            self.lan.run(0)

    def inject(self, segment: bytes, src: bytes | None = None) -> None:
        self.sniffer.inject(ip_frame(src or self.ip, self.addr, 6, segment, dst_mac=self.mac))

    def received(self) -> list[Seg]:
        """TCP segments the stack sent to us since the last call (after letting the
        loop deliver what is in flight, without moving the clock)."""
        self.lan.run(0)
        out: list[Seg] = []
        frames = self.sniffer.frames
        for frame in frames[self._seen:]:
            f = parse_ip(frame)
            if f is None or f.ip.proto != 6 or f.ip.dst != self.ip:
                continue
            hdr, payload = tcp.parse(f.payload, f.ip.src, f.ip.dst)
            out.append(Seg(hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack, hdr.flags, hdr.window,
                           hdr.urgent, tcp.parse_options(hdr.options), bytes(payload)))
        self._seen = len(frames)
        return out

    def expect(self, flags: int | None = None) -> Seg:
        segs = self.received()
        assert len(segs) == 1, f"expected one segment, got {segs}"
        if flags is not None:
            assert segs[0].flags == flags, f"expected {tcp.flags_str(flags)}, got {segs[0]}"
        return segs[0]

    def nothing(self) -> None:
        segs = self.received()
        assert not segs, f"expected silence, got {segs}"


class Passive(NamedTuple):
    """A connection the stack accepted from the raw peer (no TCP options)."""
    conn: TcpConnection
    peer: RawPeer
    iss: int      # the stack's ISS
    irs: int      # the peer's ISS

    @property
    def snd(self) -> int:
        return (self.irs + 1) & MASK

    @property
    def rcv(self) -> int:
        return (self.iss + 1) & MASK


def lan_with_peer(port: int = 80, **kw: Any) -> tuple[Lan, RawPeer]:
    lan = make_lan(1, **kw)
    return lan, RawPeer(lan)


def open_passive(lan: Lan, peer: RawPeer, port: int = 80, irs: int = 1000,
                 options: bytes = b"", listener: Any = None) -> Passive:
    """Listen on ``port``, do the three-way handshake from the peer, accept."""
    stack = peer.stack
    lst = listener or stack.tcp.listen(ANY, port)
    peer.send(SYN, irs, options=options, dport=port)
    synack = peer.expect(SYN | ACK)
    assert synack.ack == irs + 1
    peer.send(ACK, irs + 1, synack.seq + 1, dport=port)
    conn = lst.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    peer.received()
    return Passive(conn, peer, synack.seq, irs)


def open_active(lan: Lan, peer: RawPeer, port: int = 80, irs: int = 5000,
                synack_options: bytes = b"", **conn_options: Any) -> Passive:
    """The stack connects to the peer; the peer answers the SYN."""
    conn = peer.stack.tcp.connect(peer.ip, port, **conn_options)
    lan.run(0)
    syn = peer.expect(SYN)
    peer.port = port
    peer.send(SYN | ACK, irs, syn.seq + 1, options=synack_options, sport=port,
              dport=syn.sport)
    assert conn.state == "ESTABLISHED"
    peer.received()
    return Passive(conn, peer, syn.seq, irs)


# -- stack to stack ---------------------------------------------------------------------

class Transfer:
    """Both directions of one connection pumped from on_event callbacks."""

    def __init__(self, conn: TcpConnection, data: bytes, shut: bool = True) -> None:
        self.conn = conn
        self.shut = shut
        self.data = data
        self.sent = 0
        self.got = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        conn.on_event = self.event

    def event(self) -> None:
        conn = self.conn
        try:
            while self.sent < len(self.data):
                n = conn.send(memoryview(self.data)[self.sent:self.sent + 65536])
                if n == 0:
                    break
                self.sent += n
            if self.shut and self.sent >= len(self.data) and not conn.wr_shut:
                conn.shutdown(1)
            while True:
                d = conn.recv(1 << 20)
                if d is None:
                    break
                if d == b"":
                    self.eof = True
                    break
                self.got += d
        except OSError as exc:
            self.error = exc


def bulk(lan: Lan, ca: TcpConnection, cb: TcpConnection, size: int, timeout: float,
         seeds: tuple[int, int] = (11, 12)) -> tuple[bytes, bytes, Transfer, Transfer]:
    """``size`` random bytes each way over an established pair, both ends
    shutting down after; returns (up, down) and both Transfers."""
    up = random_bytes(size, seeds[0])
    down = random_bytes(size, seeds[1])
    t1, t2 = Transfer(ca, up), Transfer(cb, down)
    t1.event()
    t2.event()
    assert lan.run_until(lambda: t1.eof and t2.eof, timeout), (ca.info(), cb.info())
    assert t1.error is None and t2.error is None
    return up, down, t1, t2


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def connect_pair(lan: Lan, client: int = 1, server: int = 0, port: int = 5001,
                 **options: Any) -> tuple[TcpConnection, TcpConnection]:
    """An established connection between two stacks of the LAN."""
    s = lan.stacks[server]
    c = lan.stacks[client]
    lst = s.tcp.listen(ANY, port)
    for k, v in options.items():
        setattr(lst, k, v)
    conn = c.tcp.connect(addr(server), port, **options)
    assert lan.run_until(lambda: bool(lst.accept_queue), 60), "handshake did not finish"
    srv = lst.accept()
    assert srv is not None
    lst.close()
    return conn, srv


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def run_until(lan: Lan, pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    return lan.run_until(pred, timeout)


# -- links with chosen drops -----------------------------------------------------------

from femtotcp.phy.base import Device  # noqa: E402
from femtotcp.phy.memory import Switch  # noqa: E402
from femtotcp.runtime import SimLoop  # noqa: E402
from femtotcp.stack.stack import Stack  # noqa: E402

FramePredicate = Callable[[bytes], bool]


class FilterDevice(Device):
    """Wraps a device; frames for which ``drop_out``/``drop_in`` return True vanish."""

    def __init__(self, inner: Device, drop_out: FramePredicate | None = None,
                 drop_in: FramePredicate | None = None) -> None:
        super().__init__(inner.name + "+filter", inner.mtu)
        self.inner = inner
        self.drop_out = drop_out
        self.drop_in = drop_in
        self.dropped = 0
        inner.set_receiver(self._from_inner)

    def _from_inner(self, frame: bytes) -> None:
        if self.drop_in is not None and self.drop_in(frame):
            self.dropped += 1
            return
        self.deliver(frame)

    def _transmit(self, frame: bytes) -> None:
        if self.drop_out is not None and self.drop_out(frame):
            self.dropped += 1
            return
        self.inner.send(frame)


def tcp_of(frame: bytes) -> Seg | None:
    """The TCP segment in an Ethernet frame, or None."""
    f = parse_ip(frame)
    if f is None or f.ip.proto != 6:
        return None
    hdr, payload = tcp.parse(f.payload)
    return Seg(hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack, hdr.flags, hdr.window,
               hdr.urgent, tcp.parse_options(hdr.options), bytes(payload))


def filtered_lan(n: int = 2, latency: float = 0.0, mtu: int | None = None,
                 faults: dict[int, dict[str, Any]] | None = None) -> tuple[Lan, list[FilterDevice]]:
    """``n`` stacks on a switch with ``latency``; each port behind a FilterDevice
    (set its ``drop_out``/``drop_in`` later) and optionally a FaultyDevice."""
    loop = SimLoop()
    lan = Lan(loop, Switch(loop, latency=latency))
    filters = []
    for i in range(n):
        stack = Stack(name=f"h{i}")
        dev: Device = lan.switch.port(f"h{i}")
        if faults and i in faults:
            from femtotcp.phy.faulty import FaultyDevice
            dev = FaultyDevice(dev, loop, seed=1000 + i, **faults[i])
        filt = FilterDevice(dev)
        iface = stack.add_interface(filt, mac=mac(i), ipv4=f"192.0.2.{i + 1}/24", mtu=mtu)
        loop.add_stack(stack)
        stack.start()
        lan.stacks.append(stack)
        lan.ifaces.append(iface)
        lan.devices.append(filt)
        filters.append(filt)
    loop.run(duration=0)
    return lan, filters


def sent_log(lan: Lan, i: int) -> list[tuple[float, Seg]]:
    """(time, segment) for every TCP segment stack ``i`` hands its device."""
    log: list[tuple[float, Seg]] = []

    def cap(frame: bytes, outbound: bool) -> None:
        if outbound:
            s = tcp_of(frame)
            if s is not None:
                log.append((lan.loop.now(), s))

    lan.devices[i].add_capture(cap)
    return log
