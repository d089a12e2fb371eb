"""``femtotcp demo --tap``: the demo against the kernel in its own throwaway namespace."""

from __future__ import annotations

import re
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
    # The stack's own ping of the kernel, from the stack's report: one reply line
    # per request, from the kernel's address (the kernel's ping lines, in the next
    # section, name the stack's address 192.0.2.2 instead).
    stack_ping = section(res.stdout, "femtotcp pings the kernel")
    replies = re.findall(r"^64 bytes from 192\.0\.2\.1: icmp_seq=(\d+) time=", stack_ping,
                         re.MULTILINE)
    assert replies == ["1", "2", "3"], stack_ping
    assert "FAILED" not in stack_ping
    kernel_ping = section(res.stdout, "the kernel pings femtotcp")
    assert "4008 bytes from 192.0.2.2" in kernel_ping    # ping -s 4000 from the kernel
    assert "socat got its datagram back" in res.stdout
    assert "all parts worked" in res.stdout
    assert len(read_pcap(str(pcap))) > 10
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                               text=True).stdout.split())
    assert not {n for n in after - before if n.startswith("femtotcp-demo")}


def section(report: str, title: str) -> str:
    """The lines of the demo's report section ``== TITLE...``, indentation removed."""
    parts = re.split(r"^== ", report, flags=re.MULTILINE)
    found = [p for p in parts if p.startswith(title)]
    assert len(found) == 1, f"no section {title!r} in:\n{report}"
    return "\n".join(line.strip() for line in found[0].splitlines()[1:])
