"""Several guests on one gateway: a learning Ethernet switch in front of the stack.

With more than one guest device (``--tap`` given several times) the gateway's
stack sees one device, ``GuestSwitch``, and the guests one shared link, as if
each were plugged into a switch whose other port is the gateway. Each guest
gets its own DHCP lease on ``--net`` and reaches the others directly (ARP and
neighbour discovery between them work as on any LAN); the gateway's NAT,
DHCP, DNS and Router Advertisements serve all of them.

The switch learns which port each source MAC sits behind (``MAX_MACS``
entries; the oldest is forgotten first) and sends a unicast frame only there;
broadcast, multicast and unknown unicast go to every other port. Frames to
the stack's own MAC (learned from what it sends) go to the stack only;
broadcast and multicast go to it too. The ports are plain devices (no
offload): a frame one guest sent is whole and checksummed, so it can go to
another guest as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

from femtotcp.phy.base import Device

MAX_MACS = 4096


class GuestSwitch(Device):
    """One device for the stack, ``ports`` (fd devices the loop reads) for the guests."""

    def __init__(self, ports: Sequence[Device], mtu: int = 1500) -> None:
        if not ports:
            raise ValueError("a switch needs at least one port")
        super().__init__("+".join(p.name for p in ports), mtu)
        self.ports = list(ports)
        #: Source MAC -> the port it was last seen on (bounded, least recent first).
        self.macs: OrderedDict[bytes, Device] = OrderedDict()
        #: The stack's own MACs (the sources of what it sends).
        self.own: set[bytes] = set()
        for port in self.ports:
            port.set_receiver(partial(self._from_port, port))

    def _learn(self, mac: bytes, port: Device) -> None:
        macs = self.macs
        if macs.get(mac) is port:
            macs.move_to_end(mac)
            return
        if mac[0] & 1 or mac in self.own:
            self.counters["switch.bad_source"] += 1    # a group or our own MAC as source
            return
        macs[mac] = port
        macs.move_to_end(mac)
        if len(macs) > MAX_MACS:
            macs.popitem(last=False)
            self.counters["switch.mac_table_full"] += 1

    def _from_port(self, port: Device, frame: bytes) -> None:
        """A frame one guest sent: to its port, to every other port, to the stack."""
        if len(frame) < 14:
            self.counters["switch.runt"] += 1
            return
        dst = frame[0:6]
        self._learn(frame[6:12], port)
        if dst in self.own:
            self.deliver(frame)
            return
        if not dst[0] & 1:
            out = self.macs.get(dst)
            if out is port:
                self.counters["switch.same_port"] += 1
                return
            if out is not None:
                self.counters["switch.forwarded"] += 1
                out.send(frame)
                return
        self.counters["switch.flooded"] += 1
        for other in self.ports:
            if other is not port:
                other.send(frame)
        if dst[0] & 1:
            self.deliver(frame)

    def _transmit(self, frame: bytes) -> None:
        """A frame of the stack: to the port its destination sits behind, else all."""
        if len(frame) < 14:
            return
        self.own.add(frame[6:12])
        dst = frame[0:6]
        out = None if dst[0] & 1 else self.macs.get(dst)
        if out is not None:
            out.send(frame)
            return
        for port in self.ports:
            port.send(frame)

    def close(self) -> None:
        for port in self.ports:
            port.close()
        super().close()
