"""The command line: bad input gets one clear line and exit 2; demo and size run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from femtotcp.cli import build_parser, main
from femtotcp.phy.pcap import read_pcap


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "femtotcp", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["serve", "--tap", "t0", "--ip", "192.0.2.300/24"], "192.0.2.300"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/40"], "prefix length"),
    (["serve", "--tap", "t0"], "--ip ADDR/PREFIX, --dhcp or --ipv6"),
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
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--busy-poll", "-5"],
     "busy poll -5 us out of range"),
    (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--busy-poll", "soon"],
     "not a number of microseconds: 'soon'"),
    (["gateway", "--tap", "t0", "--busy-poll", "2000000"], "busy poll 2000000 us out of range"),
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

    def fake(opts: object, module: str | None, argv: list[str],
             command: str | None = None) -> int:
        seen.update(opts=opts, module=module, argv=argv, command=command)
        return 7

    monkeypatch.setattr(api_run, "run_program", fake)
    code = main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "-m", "http.server",
                 "--bind", "192.0.2.2", "--directory", "/tmp", "8000"])
    assert code == 7
    assert seen["module"] == "http.server"
    assert seen["argv"] == ["--bind", "192.0.2.2", "--directory", "/tmp", "8000"]
    code = main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "script.py", "--verbose"])
    assert seen["module"] is None and seen["argv"] == ["script.py", "--verbose"]
    code = main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "-c", "print(1)", "a", "-v"])
    assert (seen["module"], seen["command"], seen["argv"]) == (None, "print(1)", ["a", "-v"])
    assert main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "-c", "y", "-m", "x"]) == 2


def test_tcp_rst_limit_reaches_the_tcp_config() -> None:
    from femtotcp.cli import build_parser, host_options

    args = build_parser().parse_args(["serve", "--tap", "t0", "--ip", "192.0.2.2/24",
                                      "--tcp-rst-limit", "500/50"])
    assert host_options(args).tcp_rst_limit == (500.0, 50)
    args = build_parser().parse_args(["serve", "--tap", "t0", "--ip", "192.0.2.2/24"])
    assert host_options(args).tcp_rst_limit is None


def test_busy_poll_defaults_to_on_for_serve_and_off_in_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """serve (the stack's own process) polls up to 200 us by default; a stack
    in the program's process does not poll unless asked (it would take the
    GIL from the program); the flag reaches the loop in seconds."""
    from femtotcp import host as hostmod
    from femtotcp.api import run as api_run
    from femtotcp.cli import host_options
    seen: list[float] = []

    class Stop(Exception):
        pass

    class Loop:
        """Host's Runtime: what the real Host hands it, then no further."""

        def __init__(self, busy_poll: float = 0.0) -> None:
            seen.append(busy_poll)
            raise Stop

    monkeypatch.setattr(hostmod, "Runtime", Loop)
    for argv in (["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--control", ""],
                 ["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--control", "",
                  "--busy-poll", "0"],
                 ["serve", "--tap", "t0", "--ip", "192.0.2.2/24", "--control", "",
                  "--busy-poll", "50"]):
        with pytest.raises(Stop):
            main(argv)
    assert seen == [200e-6, 0.0, 50e-6]
    ran: dict[str, object] = {}
    monkeypatch.setattr(api_run, "run_program",
                        lambda opts, module, argv, command=None: ran.update(opts=opts) or 0)
    main(["run", "--tap", "t0", "--ip", "192.0.2.2/24", "x.py"])
    assert ran["opts"].busy_poll is None      # Host makes that 0: off
    args = build_parser().parse_args(["run", "--tap", "t0", "--ip", "192.0.2.2/24",
                                      "--busy-poll", "30", "x.py"])
    assert host_options(args).busy_poll == 30.0
    with pytest.raises(ValueError, match="--busy-poll -1: out of range"):
        hostmod.HostOptions(tap="t0", ip="192.0.2.2/24", busy_poll=-1).validate()


def test_gateway_busy_poll_reaches_its_loop() -> None:
    from femtotcp.gateway import cli as gateway_cli
    args = build_parser().parse_args(["gateway", "--tap", "g0", "--net", "192.0.2.0/24"])
    assert gateway_cli.options(args).busy_poll == 200.0
    args = build_parser().parse_args(["gateway", "--tap", "g0", "--net", "192.0.2.0/24",
                                      "--busy-poll", "0"])
    assert gateway_cli.options(args).busy_poll == 0.0


def test_the_parser_loads_no_stack_gateway_or_control_server() -> None:
    """``femtotcp run --control`` and ``ctl`` start without loading the stack,
    the gateway or the control server (a program's start-up, and each Python
    child's, pays for every module the CLI imports before it knows the command)."""
    code = ("import sys\nfrom femtotcp.cli import build_parser\n"
            "build_parser().parse_args(['run', '--control', '/x', 'p.py'])\n"
            "heavy = ('femtotcp.stack.stack', 'femtotcp.gateway.gateway', "
            "'femtotcp.control.server', 'femtotcp.control.commands', 'femtotcp.proto.tcp')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_an_ipv6_address_alone_makes_an_ipv6_only_host() -> None:
    from femtotcp import host as hostmod
    hostmod.HostOptions(tap="t0", ipv6=["2001:db8::2/64"]).validate()
    hostmod.HostOptions(tap="t0", ipv6=["auto"]).validate()
    with pytest.raises(ValueError, match=r"an address is needed: --ip ADDR/PREFIX, --dhcp "
                                         r"or --ipv6"):
        hostmod.HostOptions(tap="t0").validate()
