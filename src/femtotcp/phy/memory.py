"""In-memory links: a point-to-point wire and a learning switch.

Delivery always goes through the loop (``call_soon``/``call_at``), never as a
direct call, so one stack's output never re-enters another stack's input in the
middle of processing. Both the virtual-time simulation and the real-time
runtime run these links.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from femtotcp.phy.base import Device

if TYPE_CHECKING:
    from femtotcp.core.loop import Loop

BROADCAST_BIT = 0x01


class MemoryDevice(Device):
    """One end of a memory link (a wire end or a switch port)."""

    def __init__(self, name: str, link: _Link, mtu: int = 1500) -> None:
        super().__init__(name, mtu)
        self._link = link
        self.up = True

    def _transmit(self, frame: bytes) -> None:
        if not self.up:
            self.counters["tx_link_down"] += 1
            return
        self._link.transmit(self, bytes(frame))

    def close(self) -> None:
        super().close()
        self.up = False


class _Link(ABC):
    def __init__(self, loop: Loop, latency: float) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        self.loop = loop
        self.latency = latency

    @abstractmethod
    def transmit(self, sender: MemoryDevice, frame: bytes) -> None:
        """Carry ``frame`` from ``sender`` to the other end(s)."""

    def _schedule(self, dev: MemoryDevice, frame: bytes) -> None:
        if not dev.up:
            return

        def arrive() -> None:
            if dev.up:
                dev.deliver(frame)

        if self.latency:
            self.loop.call_at(self.loop.now() + self.latency, arrive)
        else:
            self.loop.call_soon(arrive)


class Wire(_Link):
    """A point-to-point cable: ``wire.a`` and ``wire.b`` are its two ends."""

    def __init__(self, loop: Loop, latency: float = 0.0, mtu: int = 1500,
                 names: tuple[str, str] = ("wire-a", "wire-b")) -> None:
        super().__init__(loop, latency)
        self.a = MemoryDevice(names[0], self, mtu)
        self.b = MemoryDevice(names[1], self, mtu)

    def transmit(self, sender: MemoryDevice, frame: bytes) -> None:
        self._schedule(self.b if sender is self.a else self.a, frame)


class Switch(_Link):
    """A learning Ethernet switch: floods unknown and group destinations,
    forwards known unicast to the port the source MAC was last seen on.
    The MAC table is bounded (oldest entry evicted)."""

    MAX_MACS = 4096

    def __init__(self, loop: Loop, latency: float = 0.0, mtu: int = 1500) -> None:
        super().__init__(loop, latency)
        self.ports: list[MemoryDevice] = []
        self.mtu = mtu
        self.table: dict[bytes, MemoryDevice] = {}

    def port(self, name: str | None = None) -> MemoryDevice:
        dev = MemoryDevice(name or f"sw{len(self.ports)}", self, self.mtu)
        self.ports.append(dev)
        return dev

    def transmit(self, sender: MemoryDevice, frame: bytes) -> None:
        if len(frame) < 14:
            return
        src = frame[6:12]
        if not src[0] & BROADCAST_BIT:
            table = self.table
            if table.get(src) is not sender:
                table.pop(src, None)
                if len(table) >= self.MAX_MACS:
                    del table[next(iter(table))]
                table[src] = sender
        dst = frame[0:6]
        if not dst[0] & BROADCAST_BIT:
            out = self.table.get(dst)
            if out is not None:
                if out is not sender:
                    self._schedule(out, frame)
                return
        for port in self.ports:
            if port is not sender:
                self._schedule(port, frame)
