"""``femtotcp run --dhcp PROGRAM`` and ``femtotcp run --ipv6 auto PROGRAM``
start the program once the host's address has come (``Host.settle``), as a
host's programs start once its network is up: a third-party program that
connects first thing (no waiting loop of its own) gets through from the
address dnsmasq leased or the one SLAAC formed from radvd's prefix, instead
of ENETUNREACH.

The TAP is made beforehand, as a user's persistent TAP (``ip tuntap add``),
so dnsmasq and radvd serve it before femtotcp opens it; the kernel side holds
192.0.2.1 and 2001:db8:2::1 and runs python's http.server. Addresses from
192.0.2.0/24 and 2001:db8::/32 only, inside the test's namespace.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netns import Netns, stop_process
from test_api_kernel import TAP, _env
from test_dnsmasq import start_dnsmasq, wait_for_port
from test_ipv6_kernel import RADVD_CONF, enable_ipv6
from test_ipv6_programs import finish, kernel_http_server
from test_run_ipv6_start import FETCH_AT_ONCE


def _persistent_tap(ns: Netns, *addresses: str) -> None:
    ns.ip("tuntap", "add", "dev", TAP, "mode", "tap")
    for address in addresses:
        ns.ip("addr", "add", address, "dev", TAP, *(["nodad"] if ":" in address else []))
    ns.ip("link", "set", TAP, "up")


def _run(ns: Netns, tmp_path: Path, url: str, *flags: str) -> dict[str, object]:
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_AT_ONCE)
    proc = ns.popen(sys.executable, "-m", "femtotcp", "run", "--tap", TAP, *flags,
                    str(script), url, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True, env=_env())
    try:
        return finish(proc, 90)
    finally:
        stop_process(proc)


def _www(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello once the network is up\n")
    return www


def test_run_dhcp_starts_the_program_once_leased(ns: Netns, tmp_path: Path,
                                                 require_program: Callable[[str], str]
                                                 ) -> None:
    require_program("dnsmasq")
    require_program("ss")
    _persistent_tap(ns, "192.0.2.1/24")
    _, log = start_dnsmasq(ns, tmp_path)
    wait_for_port(ns, 67)
    http = kernel_http_server(ns, _www(tmp_path), 8011)
    try:
        result = _run(ns, tmp_path, "http://192.0.2.1:8011/hello.txt", "--dhcp")
    finally:
        http.kill()
        http.wait(10)
    assert result["status"] == 200 and result["body"] == "hello once the network is up\n"
    local = ipaddress.ip_address(str(result["local"]))
    assert ipaddress.ip_address("192.0.2.100") <= local <= ipaddress.ip_address(
        "192.0.2.150"), (result, log.read_text()[-2000:])
    assert f"DHCPACK({TAP}) {local} " in log.read_text()     # dnsmasq leased it


def test_run_ipv6_auto_starts_the_program_once_slaac_is_done(
        ns: Netns, tmp_path: Path, require_program: Callable[[str], str]) -> None:
    require_program("radvd")
    require_program("ss")
    enable_ipv6(ns)
    ns.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    _persistent_tap(ns, "2001:db8:2::1/64")
    conf = tmp_path / "radvd.conf"
    conf.write_text(RADVD_CONF.replace("ftap0", TAP))
    radvd = ns.popen("radvd", "-n", "-C", str(conf), "-p", str(tmp_path / "radvd.pid"),
                     "-m", "stderr", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http = kernel_http_server(ns, _www(tmp_path), 8012)
    try:
        result = _run(ns, tmp_path, "http://[2001:db8:2::1]:8012/hello.txt", "--ipv6", "auto")
    finally:
        http.kill()
        http.wait(10)
        radvd.terminate()
        radvd.wait(5)
    assert result["status"] == 200 and result["body"] == "hello once the network is up\n"
    assert ipaddress.ip_address(str(result["local"])) in ipaddress.ip_network(
        "2001:db8:2::/64"), result


def test_serve_waiting_for_a_lease_answers_ctl_and_stops_at_once(
        ns: Netns, tmp_path: Path) -> None:
    """No DHCP server: serve waits for the lease (up to 30 s) before its line,
    but its control socket answers meanwhile (``ctl addr`` shows the DHCP
    client looking), and SIGTERM ends it at once, socket removed."""
    control = tmp_path / "ctl.sock"
    serve = ns.popen(sys.executable, "-m", "femtotcp", "serve", "--tap", TAP, "--dhcp",
                     "--control", str(control), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 20
        while not control.exists():
            assert serve.poll() is None and time.monotonic() < deadline, serve.communicate()
            time.sleep(0.05)
        ctl = ns.run(sys.executable, "-m", "femtotcp", "ctl", "--control", str(control),
                     "--json", "addr", check=False)
        assert ctl.returncode == 0, ctl.stderr
        (iface,) = json.loads(ctl.stdout)["result"]["interfaces"]
        assert iface["addresses"] == [] and iface["dhcp"]["state"] in ("INIT", "SELECTING")
        started = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=10)
        assert time.monotonic() - started < 5 and serve.returncode == 0
        assert "serving on" not in out and not control.exists()
    finally:
        stop_process(serve)
