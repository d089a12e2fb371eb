"""The tiny zipapp, alone in an empty directory, run by the system ``python3 -I``
(no venv, no site-packages), against the kernel over a TAP in a test-made netns:
ping, a TCP echo of 1 MB byte-exact, and a DNS lookup through dnsmasq (issue 15).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Netns, skip_or_fail, stop_process
from stackrig import kernel_echo_roundtrip

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
TAP = "ftap0"
TINY = "arp,ipv4,icmp4,udp,tcp,dns,run"
#: The interpreter a machine has without femtotcp: never this venv's.
SYSTEM_PATH = "/usr/bin:/bin"


def system_python() -> str:
    path = shutil.which("python3", path=SYSTEM_PATH)
    if path is None:
        skip_or_fail("no system python3 in /usr/bin or /bin")
    out = subprocess.run([path, "-I", "-c", "import sys; print(sys.version_info >= (3, 11))"],
                         capture_output=True, text=True)
    if out.stdout.strip() != "True":
        skip_or_fail(f"{path} is older than Python 3.11")
    return path


@pytest.fixture(scope="module", params=["source", "solid"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``femtotcp build`` of the tiny set (stripped source files, or ``--solid``: one
    LZMA stream), copied alone into an empty directory."""
    work = tmp_path_factory.mktemp("tinybuild")
    built = work / "femtotcp-tiny.pyz"
    extra = ["--solid"] if request.param == "solid" else []
    res = subprocess.run([sys.executable, "-m", "femtotcp", "build", "--modules", TINY,
                          "-o", str(built), *extra], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    empty = tmp_path_factory.mktemp("empty")
    shutil.copy(built, empty / built.name)
    assert [p.name for p in empty.iterdir()] == [built.name]
    return empty / built.name


def start(ns: Netns, pyz: Path, *args: str) -> subprocess.Popen[str]:
    """``python3 -I tiny.pyz ARGS`` in ``ns``, from the zipapp's own directory,
    with an environment that names nothing of femtotcp's."""
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    return ns.popen(system_python(), "-I", str(pyz), *args, cwd=str(pyz.parent), env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    stop_process(proc)
    if proc.stderr is None or proc.stderr.closed:
        return ""
    return proc.stderr.read()


def wait_for_tap(ns: Netns, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ns.ip("link", "show", TAP, check=False).returncode == 0:
            return
        if proc.poll() is not None:
            pytest.fail(f"the zipapp exited: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    pytest.fail("the zipapp did not create its TAP")


@pytest.fixture
def served(ns: Netns, tiny: Path, require_program: Callable[[str], str]) -> Iterator[Netns]:
    require_program("ping")
    proc = start(ns, tiny, "serve", "--tap", TAP, "--ip", f"{STACK}/24", "--tcp-echo", "7",
                 "--udp-echo", "7")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if "serving on" not in line:
            pytest.fail(f"serve did not start: {line!r} {stop(proc)}")
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        yield ns
        assert proc.poll() is None, stop(proc)
    finally:
        err = stop(proc)
    assert "Traceback" not in err, err


def test_tiny_zipapp_holds_no_left_out_module(tiny: Path) -> None:
    import lzma
    import marshal
    import zipfile
    zf = zipfile.ZipFile(tiny)
    names = set(zf.namelist())
    if "femtotcp/modules.xz" in names:
        table = marshal.loads(lzma.decompress(zf.read("femtotcp/modules.xz")))
        names |= {f"femtotcp/{rel}" for rel, _, _ in table.values()}
    assert "femtotcp/proto/tcp/connection.py" in names
    for absent in ("femtotcp/control.py", "femtotcp/services/dhcp.py",
                   "femtotcp/phy/pcap.py", "femtotcp/demo.py", "femtotcp/size.py",
                   "femtotcp/build.py"):
        assert absent not in names


def test_ping_and_tcp_echo_1mb(served: Netns) -> None:
    ns = served
    ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", STACK)
    sent, got, total = kernel_echo_roundtrip(ns, STACK, 1 << 20, seed=15)
    assert total == 1 << 20
    assert got == sent


SCRIPT = """
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        print("answer", socket.gethostbyname(sys.argv[1]), flush=True)
        break
    except socket.gaierror as exc:
        if time.monotonic() > deadline:
            print("failed", exc, flush=True)
            raise SystemExit(1)
        time.sleep(0.2)
try:
    socket.gethostbyname("nonexistent.test")
except socket.gaierror as exc:
    print("nxdomain", exc.errno == socket.EAI_NONAME, flush=True)
"""


def test_dns_lookup_through_dnsmasq(ns: Netns, tiny: Path, tmp_path: Path,
                                    require_program: Callable[[str], str]) -> None:
    require_program("dnsmasq")
    script = tmp_path / "lookup.py"
    script.write_text(SCRIPT)
    proc = start(ns, tiny, "run", "--tap", TAP, "--ip", f"{STACK}/24", "--dns", KERNEL,
                 str(script), "a.test")
    try:
        wait_for_tap(ns, proc)
        ns.ip("addr", "add", f"{KERNEL}/24", "dev", TAP)
        log = tmp_path / "dnsmasq.log"
        ns.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=",
                 f"--interface={TAP}", "--bind-interfaces", "--no-resolv", "--no-hosts",
                 "--local=/test/", "--address=/a.test/192.0.2.80", "--log-queries",
                 "--log-facility=-", stdout=log.open("w"), stderr=subprocess.STDOUT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, (out, err, log.read_text() if log.exists() else "")
    assert "answer 192.0.2.80" in out
    assert "nxdomain True" in out
    assert "a.test" in log.read_text()          # the query went through dnsmasq


def test_flags_name_the_missing_module(tiny: Path) -> None:
    """Run by the same system python: a flag whose module was left out says so."""
    for args, needle in (
            (["serve", "--tap", TAP, "--dhcp"], "--dhcp needs the dhcp module; this build "
             "has: arp, ipv4, icmp4, udp, tcp, dns, run"),
            (["serve", "--tap", TAP, "--ip", f"{STACK}/24", "--pcap", "x"],
             "--pcap needs the pcap module"),
            (["ctl", "stats"], "ctl needs the ctl module"),
            (["demo"], "demo needs the demo module")):
        res = subprocess.run([system_python(), "-I", str(tiny), *args], capture_output=True,
                             text=True, cwd=str(tiny.parent), timeout=60,
                             env={"PATH": SYSTEM_PATH})
        assert res.returncode == 2, res.stderr
        assert needle in res.stderr
        assert os.listdir(tiny.parent) == [tiny.name]      # and it wrote nothing
