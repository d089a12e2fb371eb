"""GRO reads on a real TAP: on by default with offload, switched off at run time
by ``set_gro(False)`` (TUNSETOFFLOAD(0)), and by a FaultyDevice that injects
inbound faults (decided by the inner device's capabilities). The kernel's view
of the TAP is read with ``ethtool -k``: TUN_F_CSUM and TUN_F_TSO4 are the TAP's
tx-checksumming and tcp-segmentation-offload."""

from __future__ import annotations

import pytest
from netns import Netns, entered
from skippolicy import require_program

from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import SimLoop

pytestmark = pytest.mark.kernel


def kernel_offloads(ns: Netns, name: str) -> tuple[bool, bool]:
    """(tx-checksumming, tcp-segmentation-offload) as the kernel has them for ``name``."""
    out = ns.run(require_program("ethtool"), "-k", name).stdout
    feats = dict(line.strip().split(": ", 1) for line in out.splitlines()[1:]
                 if ": " in line)
    return (feats["tx-checksumming"].startswith("on"),
            feats["tcp-segmentation-offload"].startswith("on"))


def test_offload_tap_reads_gro_by_default_and_can_stop(ns: Netns) -> None:
    with entered(ns):
        dev = TapDevice("ftgro0")
    try:
        assert dev.offload and dev.gro and dev.checksum_rx
        caps = dev.capabilities
        assert caps.gro and caps.checksum_rx and caps.segmentation
        assert kernel_offloads(ns, "ftgro0") == (True, True)
        dev.set_gro(False)
        assert not dev.gro and not dev.capabilities.gro
        assert kernel_offloads(ns, "ftgro0") == (False, False)
        assert dev.counters["rx_gro_off"] == 1
        dev.set_gro(True)
        assert dev.gro and kernel_offloads(ns, "ftgro0") == (True, True)
        assert dev.offload and dev.checksum_rx           # writes keep their offload
    finally:
        dev.close()


def test_gro_needs_vnet_headers(ns: Netns) -> None:
    with entered(ns):
        plain = TapDevice("ftgro1", offload=False)
        nogro = TapDevice("ftgro2", gro=False)
    try:
        plain.set_gro(True)
        assert not plain.gro and not plain.checksum_rx
        assert not nogro.gro and nogro.checksum_rx
        assert kernel_offloads(ns, "ftgro2") == (False, False)
    finally:
        plain.close()
        nogro.close()


@pytest.mark.parametrize("inbound", [True, False])
def test_faulty_device_turns_gro_off_for_inbound_faults(ns: Netns, inbound: bool) -> None:
    """Faults are per frame as a link sees them: a wrapper that injects them on
    what the TAP delivers asks for MTU-sized frames; one that only touches
    what is sent lets super-frames pass through."""
    with entered(ns):
        dev = TapDevice("ftgro3")
    try:
        faulty = FaultyDevice(dev, SimLoop(), loss=0.1, inbound=inbound)
        assert dev.gro == (not inbound) and faulty.gro == dev.gro
        assert faulty.capabilities.gro == dev.gro and not faulty.capabilities.checksum_rx
        assert kernel_offloads(ns, "ftgro3") == ((not inbound),) * 2
    finally:
        dev.close()
