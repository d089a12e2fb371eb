"""What the stack may use of a device, said from the stack's side.

``femtotcp.phy.base.Device`` implements it; the stack never imports phy/ (see
docs/architecture.md). ``mtu``, ``raw_ip``, ``offload``, ``gro`` and
``checksum_rx`` are the capabilities the per-packet path reads (a vnet-header TAP may switch
``offload`` off at run time); ``capabilities`` is the same as one record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from femtotcp.core.device import DeviceCapabilities

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface


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
                     checked: Callable[[bytes], None] | None = None,
                     batch: Callable[[list[tuple[bytes, int]], bool], None] | None = None
                     ) -> None: ...

    def send(self, frame: bytes) -> None: ...

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None: ...


class OffloadPath(NamedTuple):
    """A resolved way to a destination through an offload device
    (``Ipv4.offload_path``, ``Ipv6.offload_path``)."""

    iface: Interface
    device: NetDevice
    eth: bytes            # the Ethernet header (with the 802.1Q tag if any)
    csum_start: int       # offset of the TCP header in the frame
    max_payload: int      # the (path) MTU minus the IP header
