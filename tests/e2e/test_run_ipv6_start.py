"""``femtotcp run --ipv6 ADDR/PREFIX PROGRAM`` starts the program once the
static address has passed duplicate address detection, as a host's programs
start once its addresses are up: a third-party program that connects to an
IPv6 peer first thing (no waiting loop of its own) gets through, from that
address, instead of ENETUNREACH from a still-tentative interface.

The kernel side of the TAP (2001:db8:1::1, in the test's namespace) runs
python's http.server; addresses from 2001:db8::/32 and 192.0.2.0/24 only.
"""

from __future__ import annotations

import json
from pathlib import Path

from netns import Netns
from test_ipv6_programs import KERNEL6, STACK6, femtotcp_run6, finish, kernel_http_server

FETCH_AT_ONCE = """
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=20) as resp:
    local = resp.fp.raw._sock.getsockname()[0]
    print(json.dumps({"status": resp.status, "body": resp.read().decode(), "local": local}))
"""


def test_program_connects_over_ipv6_first_thing(ns: Netns, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello over six\n")
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_AT_ONCE)
    with femtotcp_run6(ns, str(script), f"http://[{KERNEL6}]:8006/hello.txt",
                       setup=lambda: kernel_http_server(ns, www, 8006).pid and None) as proc:
        result = finish(proc, 60)
    assert result == {"status": 200, "body": "hello over six\n", "local": STACK6}, \
        json.dumps(result)
