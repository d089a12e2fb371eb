"""``femtotcp demo --tap``: the demo against the kernel in its own throwaway namespace."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from netns import require_kernel

from femtotcp.phy.pcap import read_pcap


def test_demo_tap_runs_and_cleans_up(tmp_path: Path,
                                     require_program: Callable[[str], str]) -> None:
    require_kernel()
    require_program("ping")
    require_program("socat")
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                text=True).stdout.split())
    pcap = tmp_path / "demo.pcap"
    res = subprocess.run([sys.executable, "-m", "femtotcp", "demo", "--tap", "--pcap",
                          str(pcap)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "icmp_seq=3" in res.stdout                    # the stack pinged the kernel
    assert "4008 bytes from 192.0.2.2" in res.stdout     # ping -s 4000 from the kernel
    assert "socat got its datagram back" in res.stdout
    assert "all parts worked" in res.stdout
    assert len(read_pcap(str(pcap))) > 10
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                               text=True).stdout.split())
    assert not {n for n in after - before if n.startswith("femtotcp-demo")}
