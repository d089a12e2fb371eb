"""The gateway with a lossy, reordering guest link: the guest's TCP (the kernel's)
and the gateway's stack recover, and a download stays byte-exact.

The gateway runs in this process (its loop thread started inside the "host"
namespace, so its host sockets live there) on a FaultyDevice wrapped around
the TAP it made in the "guest" namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from netns import entered, netns, require_kernel, require_program

from femtotcp.gateway.gateway import Gateway, GatewayOptions
from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.tap import TapDevice
from femtotcp.runtime import Runtime

SERVER = "198.51.100.1"


def test_a_download_through_loss_and_reordering_is_byte_exact(tmp_path: Path) -> None:
    require_kernel()
    require_program("curl")
    with netns("gwfH") as host, netns("gwfG") as guest:
        host.ip("addr", "add", f"{SERVER}/32", "dev", "lo")
        body = os.urandom(8 * 1024 * 1024)
        (tmp_path / "f.bin").write_bytes(body)
        host.popen(sys.executable, "-m", "http.server", "-b", SERVER, "-d", str(tmp_path),
                   "8000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with entered(guest):
            tap = TapDevice("gw0", offload=False)
        rt = Runtime()
        faulty = FaultyDevice(tap, rt, loss=0.02, reorder=0.05, duplicate=0.01, seed=7)
        opts = GatewayOptions(tap="gw0", net="192.0.2.0/24", net6="2001:db8:1::/64",
                              dns_upstream=[SERVER],
                              offload=False)
        with entered(host):
            gw = Gateway(opts, runtime=rt, device=faulty)
            rt.start()              # the loop thread (and its sockets) live in H
        try:
            gw.start()
            guest.ip("addr", "add", "192.0.2.15/24", "dev", "gw0")
            guest.ip("route", "add", "default", "via", "192.0.2.2")
            deadline = time.monotonic() + 10
            while "8000" not in host.run("ss", "-lnt").stdout:
                assert time.monotonic() < deadline, "the host's server did not start"
                time.sleep(0.05)
            out = tmp_path / "got.bin"
            guest.run("curl", "-sS", "--fail", "-o", str(out),
                      f"http://{SERVER}:8000/f.bin", timeout=120)
            assert out.read_bytes() == body
            counters = rt.call(lambda: dict(faulty.counters))
            # The link really lost and reordered frames both ways.
            assert sum(v for k, v in counters.items() if "lost" in k or "drop" in k) > 0, \
                counters
            assert sum(v for k, v in counters.items() if "reorder" in k) > 0, counters
        finally:
            gw.close()
