"""The capabilities record a device states and the stack reads (phy/ and stack/ both use it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Medium(Enum):
    """What a device's frames are: Ethernet frames, or bare IP packets (TUN)."""

    ETHERNET = "ethernet"
    RAW_IP = "raw_ip"


@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    """What a device can do (as smoltcp's ``DeviceCapabilities``).

    ``checksum_tx``: it takes frames whose TCP checksum is partial (the
    pseudo-header sum) and completes it; ``segmentation``: it takes TSO
    super-segments cut at ``gso_size`` (both through ``send_offload``);
    ``checksum_rx``: it may vouch for received TCP/UDP checksums, frame by
    frame (a vnet-header TAP, for frames the kernel marked ``DATA_VALID`` or
    left partial); the stack then gives it a trusted receiver besides the
    plain one, and TCP/UDP skip verifying what arrives through it. Wrappers
    never have it: they receive from the device they wrap through its plain
    receiver. ``gro``: it may deliver super-frames larger than the MTU."""

    mtu: int
    medium: Medium = Medium.ETHERNET
    checksum_rx: bool = False
    checksum_tx: bool = False
    segmentation: bool = False
    gro: bool = False
