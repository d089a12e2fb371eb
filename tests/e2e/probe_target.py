"""femtotcp as the conformance probes' target (probe.py): the stack ``femtotcp
serve`` builds (``Host`` from the same command-line flags) with one setting serve
has no flag for, the reassembly time (IPv4's and IPv6's), which probe.py and
probe6.py give Linux too (``net.ipv4.ipfrag_time``, ``net.ipv6.ip6frag_time``),
so the reassembly-timeout probes wait seconds, not the default 30 s (60 s) on both. Runs until SIGTERM or SIGINT.

    python probe_target.py REASM_SECONDS SERVE-FLAGS...
"""

from __future__ import annotations

import signal
import sys
import threading

from femtotcp.cli import build_parser, host_options
from femtotcp.host import Host
from femtotcp.stack.config import StackConfig


def main(argv: list[str]) -> int:
    config = StackConfig(reasm_timeout=float(argv[0]), ipv6_reasm_timeout=float(argv[0]))
    host = Host(host_options(build_parser().parse_args(["serve", *argv[1:]])), config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    host.start()
    try:
        while not stop.wait(0.5):
            thread = host.runtime.thread
            if thread is not None and not thread.is_alive():
                print("probe_target: the stack thread died", file=sys.stderr)
                return 1
    finally:
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
