"""The command line: bad input gets one clear line and exit 2; demo and size run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from femtotcp.cli import main
from femtotcp.phy.pcap import read_pcap


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "femtotcp", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["serve", "--tap", "t0", "--ip", "192.0.2.300/24"], "192.0.2.300"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/40"], "prefix length"),
    (["serve", "--tap", "t0"], "--ip ADDR/PREFIX or --dhcp"),
    (["serve", "--ip", "192.0.2.2/24"], "--tap NAME"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--mtu", "20"], "MTU 20"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--mtu", "abc"], "not a number"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--mac", "01:00:00:00:00:01"],
     "multicast MAC"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--mac", "zz"], "MAC"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--gateway", "198.51.100.1"],
     "not inside"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--udp-echo", "70000"], "70000"),
    (["serve", "--tap", "a-name-that-is-too-long", "--ip", "192.0.2.2/24"],
     "interface name"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--modules", "ipv4,bogus"], "bogus"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--modules", "arp,ipv4",
      "--udp-echo", "7"], "udp module"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--modules", "arp,udp"], "needs ipv4"),
    (["serve", "--tap", "t0", "--ip", "127.0.0.1/8"], "unicast"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--ipv6", "bogus"], "--ipv6 bogus"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--ipv6", "2001:db8::1"],
     "prefix length"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--ipv6", "ff02::1/64"], "unicast"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--gateway6", "fe80::1"],
     "needs --ipv6"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--ipv6", "auto", "--no-ipv6"],
     "--no-ipv6"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--ipv6", "auto",
      "--modules", "arp,ipv4"], "ipv6 module"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--tcp-rst-limit", "fast"],
     "RST limit 'fast'"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--tcp-rst-limit", "0/10"],
     "rate must be above 0"),
    (["serve", "--bogus-flag"], "bogus-flag"),
    (["nonsense"], "nonsense"),
])
def test_bad_flags_get_one_line_and_exit_2(args: list[str], needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        code = main(args)
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "error" in lines[0]


def test_demo_runs_without_root_and_writes_a_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcap"
    res = run_cli("demo", "--pcap", str(pcap))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "icmp_seq=5" in out
    assert "UDP echo of 5000 bytes" in out
    assert "SHA-256 matches" in out                 # TCP transfer
    assert "-> 200" in out and "byte-exact" in out  # http.server + urllib
    assert "rx ACK" in out and "NXDOMAIN" in out    # DHCP lease, DNS answers
    assert "all parts worked" in out
    frames = read_pcap(str(pcap))
    assert len(frames) > 10
    # ARP frames (ethertype 0x0806) and IPv4 (0x0800) are in the capture.
    types = {f[12:14] for _, f in frames}
    assert b"\x08\x06" in types and b"\x08\x00" in types


def test_version() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and "femtotcp" in res.stdout


def test_run_gives_everything_after_the_module_to_the_program(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from femtotcp.api import run as api_run
    seen: dict[str, object] = {}

    def fake(opts: object, module: str | None, argv: list[str]) -> int:
        seen.update(opts=opts, module=module, argv=argv)
        return 7

    monkeypatch.setattr(api_run, "run_program", fake)
    code = main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "-m", "http.server",
                 "--bind", "192.0.2.2", "--directory", "/tmp", "8000"])
    assert code == 7
    assert seen["module"] == "http.server"
    assert seen["argv"] == ["--bind", "192.0.2.2", "--directory", "/tmp", "8000"]
    code = main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "script.py", "--verbose"])
    assert seen["module"] is None and seen["argv"] == ["script.py", "--verbose"]


def test_tcp_rst_limit_reaches_the_tcp_config() -> None:
    from femtotcp.cli import build_parser, host_options

    args = build_parser().parse_args(["serve", "--tap", "t0", "--ip", "192.0.2.2/24",
                                      "--tcp-rst-limit", "500/50"])
    assert host_options(args).tcp_rst_limit == (500.0, 50)
    args = build_parser().parse_args(["serve", "--tap", "t0", "--ip", "192.0.2.2/24"])
    assert host_options(args).tcp_rst_limit is None
