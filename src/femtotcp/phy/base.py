"""What every device offers the stack and the loop.

A device moves whole Ethernet frames. Received frames go to the receiver the
stack installs (``set_receiver``); ``send`` hands one frame to the medium and
never raises for link trouble: failures are counted in ``counters``. Devices
backed by a file descriptor expose it through ``fileno()`` and read everything
that is ready (until EAGAIN) in ``on_readable()``; the loop selects on them.
Any device can be captured: ``add_capture(fn)`` calls ``fn(frame, outbound)``
for every frame in either direction (the pcap writer uses this).

What the core may use of a device (``femtotcp.stack.device.NetDevice`` says the
same from the stack's side, so that stack/ never imports phy/): ``send``,
``send_offload`` (the offload entry point), ``set_receiver``, and the
capabilities: the live flags ``mtu``, ``raw_ip``, ``offload``, ``gro`` and
``checksum_rx`` (read per frame, so they stay plain attributes) and
``capabilities``, the same as a ``DeviceCapabilities`` record. A wrapper either
passes offload through or leaves ``offload``/``gro`` False.

Checksums verified once: ``set_receiver(receiver, checked)`` takes a second,
trusted receiver, which the stack gives only to a device whose ``checksum_rx``
is True. Such a device hands a frame whose checksum it vouches for to
``deliver_checked``; every other frame, and every frame of a device without a
trusted receiver, goes through ``deliver`` and is verified by the stack. A
wrapper installs itself with ``set_receiver(fn)`` alone, so what it gets is
never vouched for, and its own ``checksum_rx`` stays False.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from femtotcp.core.counters import Counters
from femtotcp.core.device import DeviceCapabilities, Medium

Receiver = Callable[[bytes], None]
Capture = Callable[[bytes, bool], None]
#: ``(frames, trusted)``: one read batch of ``(frame, vouched)`` pairs; the
#: vouched flags count only when ``trusted`` (the device has a trusted receiver).
BatchReceiver = Callable[[list[tuple[bytes, int]], bool], None]

__all__ = ["BatchReceiver", "Capture", "Device", "DeviceCapabilities", "Medium", "Receiver"]


class Device(ABC):
    """Base class: receiver plumbing, captures and counters."""

    #: True for devices whose frames carry no Ethernet header (TUN): IP packets.
    raw_ip = False
    #: True when the device takes TSO super-segments and partial checksums
    #: (``send_offload``); see phy/tap.py.
    offload = False
    #: True when the device may deliver GRO super-frames larger than the MTU.
    gro = False
    #: True when the device may vouch for received TCP/UDP checksums
    #: (``deliver_checked``); never on a wrapper.
    checksum_rx = False

    def __init__(self, name: str, mtu: int = 1500) -> None:
        self.name = name
        self.mtu = mtu
        self.counters = Counters()
        self._receiver: Receiver | None = None
        self._checked: Receiver | None = None
        self._batch: BatchReceiver | None = None
        self._captures: list[Capture] = []

    @property
    def capabilities(self) -> DeviceCapabilities:
        """The device's capabilities now (offload can be switched off at run time)."""
        return DeviceCapabilities(self.mtu, Medium.RAW_IP if self.raw_ip else Medium.ETHERNET,
                                  self.checksum_rx, self.offload, self.offload, self.gro)

    def set_gro(self, on: bool) -> None:
        """Whether to deliver GRO super-frames. Only a device that can (a TAP
        with vnet headers) turns them on; any device can stop (raises OSError
        when it cannot; see ``TunTapDevice.set_gro``)."""
        if not on:
            self.gro = False

    def set_receiver(self, receiver: Receiver | None, checked: Receiver | None = None,
                     batch: BatchReceiver | None = None) -> None:
        """Where received frames go: ``receiver`` verifies everything; ``checked``,
        kept only when this device has ``checksum_rx``, takes the frames whose
        checksum the device vouches for (see the module doc); ``batch``, when
        given, takes a whole read batch at once (``deliver_batch``: the
        stack's software GRO). A wrapper installs ``receiver`` alone, so it
        gets every frame one by one, as read."""
        self._receiver = receiver
        self._checked = checked if self.checksum_rx and receiver is not None else None
        self._batch = batch if receiver is not None else None

    def add_capture(self, capture: Capture) -> None:
        self._captures.append(capture)

    def remove_capture(self, capture: Capture) -> None:
        if capture in self._captures:
            self._captures.remove(capture)

    def deliver(self, frame: bytes) -> None:
        """Pass one received frame up to the stack (subclasses call this)."""
        self.counters["rx_frames"] += 1
        if self._captures:
            for cap in self._captures:
                cap(frame, False)
        receiver = self._receiver
        if receiver is not None:
            receiver(frame)
        else:
            self.counters["rx_no_receiver"] += 1

    def deliver_checked(self, frame: bytes) -> None:
        """Pass up one frame whose TCP/UDP checksum this device vouches for: to
        the trusted receiver when there is one, else to ``deliver`` (so the
        frame must carry a complete checksum unless ``has_checked_receiver``)."""
        checked = self._checked
        if checked is None:
            self.deliver(frame)
            return
        self.counters["rx_frames"] += 1
        self.counters["rx_csum_trusted"] += 1
        if self._captures:
            for cap in self._captures:
                cap(frame, False)
        checked(frame)

    def deliver_batch(self, batch: list[tuple[bytes, int]]) -> None:
        """Pass up the frames of one read batch, ``(frame, vouched)`` each, in
        order: to the batch receiver when there is one (counted and captured
        frame by frame as ``deliver`` does: a capture sees the frames as
        read), else one by one through ``deliver_checked`` or ``deliver``."""
        receiver = self._batch
        if receiver is None:
            checked = self.deliver_checked
            deliver = self.deliver
            for frame, vouched in batch:
                if vouched:
                    checked(frame)
                else:
                    deliver(frame)
            return
        counters = self.counters
        counters["rx_frames"] += len(batch)
        trusted = self._checked is not None
        if trusted:
            vouched = sum(1 for _, v in batch if v)
            if vouched:
                counters["rx_csum_trusted"] += vouched
        if self._captures:
            for frame, _ in batch:
                for cap in self._captures:
                    cap(frame, False)
        receiver(batch, trusted)

    @property
    def has_checked_receiver(self) -> bool:
        """True when ``deliver_checked`` reaches the trusted receiver."""
        return self._checked is not None

    def send(self, frame: bytes) -> None:
        """Transmit one frame. Subclasses implement ``_transmit``."""
        self.counters["tx_frames"] += 1
        if self._captures:
            for cap in self._captures:
                cap(frame, True)
        self._transmit(frame)

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None:
        """Transmit one frame whose TCP checksum at ``csum_start + csum_offset`` is
        partial, cut into ``gso_size``-byte segments when ``gso_size`` is non-zero
        (only called when ``offload`` is True; a device without offload counts
        ``tx_offload_unsupported`` and drops it)."""
        self.counters["tx_offload_unsupported"] += 1

    @abstractmethod
    def _transmit(self, frame: bytes) -> None:
        """Put one frame on the medium; count failures, never raise."""

    def fileno(self) -> int:
        """The fd the loop waits on, or -1 for devices that push frames themselves."""
        return -1

    def on_readable(self) -> None:
        """Read every frame that is ready and ``deliver`` each (fd devices)."""

    def close(self) -> None:
        self._receiver = None
        self._checked = None
        self._batch = None
