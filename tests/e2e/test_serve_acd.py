"""``femtotcp serve --acd`` against the kernel: RFC 5227 probing refuses an
address the kernel already holds, and takes a free one."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from netns import Netns, stop_process

TAP = "ftap0"


def persistent_tap(ns: Netns) -> None:
    """A TAP that exists before serve starts, so the kernel can hold addresses first."""
    ns.ip("tuntap", "add", "dev", TAP, "mode", "tap")
    ns.ip("link", "set", TAP, "up")


def test_acd_refuses_an_address_the_kernel_holds(ns: Netns, tmp_path: Path) -> None:
    persistent_tap(ns)
    ns.ip("addr", "add", "192.0.2.2/24", "dev", TAP)
    kernel_mac = ns.ip("-br", "link", "show", TAP).stdout.split()[2].lower()
    res = ns.run(sys.executable, "-m", "femtotcp", "serve", "--tap", TAP, "--ip",
                 "192.0.2.2/24", "--acd", "--control", str(tmp_path / "c.sock"),
                 check=False, timeout=30)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last == f"femtotcp serve: error: address 192.0.2.2 is already in use by {kernel_mac}"


def test_acd_takes_a_free_address_and_answers_on_it(
        ns: Netns, require_program: Callable[[str], str], tmp_path: Path) -> None:
    require_program("ping")
    persistent_tap(ns)
    ns.ip("addr", "add", "192.0.2.1/24", "dev", TAP)
    proc = ns.popen(sys.executable, "-m", "femtotcp", "serve", "--tap", TAP, "--ip",
                    "192.0.2.2/24", "--mac", "02:00:00:00:00:02", "--acd",
                    "--control", str(tmp_path / "c.sock"),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # Probing takes up to PROBE_WAIT + 2 * PROBE_MAX + ANNOUNCE_WAIT = 7 s.
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("femtotcp: serving on"), (line, proc.poll())
        ns.run("ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.2")
        neigh = ns.ip("neigh", "show", "192.0.2.2", "dev", TAP).stdout
        assert "02:00:00:00:00:02" in neigh
    finally:
        stop_process(proc)
