"""What the stack may use of a device, said from the stack's side.

``femtotcp.phy.base.Device`` implements it; the stack never imports phy/ (see
docs/architecture.md). ``mtu``, ``raw_ip``, ``offload``, ``gro`` and
``checksum_rx`` are the capabilities the per-packet path reads (a vnet-header TAP may switch
``offload`` off at run time); ``capabilities`` is the same as one record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from femtotcp.core.device import DeviceCapabilities


class NetDevice(Protocol):
    name: str
    mtu: int
    #: Frames carry no Ethernet header (TUN): bare IP packets.
    raw_ip: bool
    #: ``send_offload`` takes partial checksums and TSO super-segments.
    offload: bool
    #: Received frames may be GRO super-frames larger than the MTU.
    gro: bool
    #: The device may vouch for received TCP/UDP checksums: only then does the
    #: stack give it a trusted receiver (``set_receiver``'s second argument).
    checksum_rx: bool

    @property
    def capabilities(self) -> DeviceCapabilities: ...

    def set_receiver(self, receiver: Callable[[bytes], None] | None,
                     checked: Callable[[bytes], None] | None = None) -> None: ...

    def send(self, frame: bytes) -> None: ...

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None: ...
