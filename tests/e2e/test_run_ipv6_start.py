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
import subprocess
import sys
from pathlib import Path

from netns import Netns, stop_process
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


def test_serve_says_it_serves_once_its_ipv6_address_is_usable(ns: Netns,
                                                             tmp_path: Path) -> None:
    """``serve --ipv6 ADDR/PREFIX`` prints its line once the address has passed
    DAD (``Host.settle``), so an attached program started right after it
    connects over IPv6 from that address, as a host's own programs would."""
    from test_attached import finish as finish_attached
    from test_ipv6_kernel import enable_ipv6
    from test_serve_ctl import TAP, start_serve

    enable_ipv6(ns)
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello over six\n")
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_AT_ONCE)
    control = str(tmp_path / "ctl.sock")
    serve, line = start_serve(ns, control, "--ipv6", f"{STACK6}/64")
    try:
        assert "tentative" not in line, line
        ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", TAP, "nodad")
        http = kernel_http_server(ns, www, 8007)
        try:
            prog = ns.popen(sys.executable, "-m", "femtotcp", "run", "--control", control,
                            str(script), f"http://[{KERNEL6}]:8007/hello.txt",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, _ = finish_attached(prog, 60)
        finally:
            http.kill()
            http.wait(10)
    finally:
        stop_process(serve)
    assert json.loads(out.strip().splitlines()[-1]) == {
        "status": 200, "body": "hello over six\n", "local": STACK6}
