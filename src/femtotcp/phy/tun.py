"""Linux TUN devices: bare IP packets between the stack and the kernel.

Same machinery and robustness as ``TapDevice`` (see ``femtotcp.phy.tap``), but
opened with ``IFF_TUN | IFF_NO_PI``: every read/write is one IPv4 or IPv6
packet with no link-layer header, so ``raw_ip`` is True and the stack skips
Ethernet and ARP/NDP on this interface.
"""

from __future__ import annotations

from femtotcp.phy.tap import IFF_TUN, TunTapDevice


class TunDevice(TunTapDevice):
    """A TUN interface (point-to-point, IP packets only)."""

    raw_ip = True
    kind_flag = IFF_TUN
    kind_name = "TUN"
    overhead = 0

    def __init__(self, name: str = "ftun0", mtu: int = 1500, up: bool = True,
                 max_batch: int = 128) -> None:
        super().__init__(name, mtu, up, max_batch)
