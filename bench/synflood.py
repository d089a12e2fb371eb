"""``python -m bench.synflood``: ``femtotcp serve`` on a TAP under a full-rate SYN
flood from hping3 in the kernel's namespace (needs root, /dev/net/tun, hping3).

    python -m bench.synflood [--seconds S] [--connects N] [--rand-source]
                             [--tcp-mss MSS] [--profile FILE]

It starts ``femtotcp serve --tap ... --tcp-echo 7`` in a throw-away namespace
(the stack 192.0.2.2, the kernel 192.0.2.1), floods it with ``hping3 -S -p 7
--flood 192.0.2.2`` (from the kernel's own address, so every SYN-ACK earns a
kernel RST; ``--rand-source`` spoofs sources instead; ``--tcp-mss`` gives
every flood SYN an MSS option, as an attacker would who knows the TAP sheds
SYNs without options first), and while the flood runs:

- ``--connects`` kernel TCP connections to port 7, one every half second,
  each sending a line and waiting for its echo (timeout 10 s): the connect
  latency (SYN to established) and the echo's, or "failed";
- ping every 0.2 s (``ping -W 2``): RTTs and losses.

It prints the SYN rate hping3 offered (the kernel's TX counters on the TAP:
packets plus drops, i.e. what reached the TAP's queue or was lost there), the
frames the stack read per second of wall time and per CPU second of serve,
the SYN cookies it sent, the counters of the early SYN path and the queues,
and serve's RSS before, at the end of the flood and after it drained.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from femtotcp.phy import netns as nsmod

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
TAP = "ftsyn0"


def _ctl(control: str, *args: str, timeout: float = 20.0) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "femtotcp", "ctl", "--control", control,
                          "--json", *args], capture_output=True, text=True, timeout=timeout)
    doc = json.loads(res.stdout)
    if not doc.get("ok"):
        raise RuntimeError(f"ctl {args}: {res.stdout} {res.stderr}")
    return dict(doc["result"])


def _link_stats(ns: str) -> dict[str, int]:
    """The kernel's side of the TAP: what it sent towards the stack (tx) and
    what it lost because the stack's queue was full (tx dropped)."""
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", TAP],
                         capture_output=True, text=True, check=True).stdout
    st = json.loads(out)[0]["stats64"]
    return {"tx_packets": int(st["tx"]["packets"]), "tx_dropped": int(st["tx"]["dropped"]),
            "rx_packets": int(st["rx"]["packets"])}


def _proc_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _connect_once(ns: str, timeout: float) -> tuple[float | None, float | None, str]:
    """One kernel TCP connection to the echo port: (connect s, echo s, error)."""
    with nsmod.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.connect((STACK, 7))
        t1 = time.monotonic()
        s.sendall(b"hello through the flood\n")
        got = b""
        while len(got) < 24:
            chunk = s.recv(100)
            if not chunk:
                break
            got += chunk
        t2 = time.monotonic()
        if got != b"hello through the flood\n":
            return t1 - t0, None, f"echo {got!r}"
        return t1 - t0, t2 - t1, ""
    except OSError as exc:
        return None, None, type(exc).__name__
    finally:
        s.close()


def _pctl(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _fmt_ms(values: list[float]) -> str:
    if not values:
        return "none"
    ms = [v * 1000 for v in values]
    return (f"min {min(ms):.1f}  median {statistics.median(ms):.1f}  "
            f"p90 {_pctl(ms, 0.9):.1f}  max {max(ms):.1f} ms")


def run(seconds: float, connects: int, rand_source: bool, profile: str | None,
        serve_args: list[str], tcp_mss: int | None = None) -> dict[str, Any]:
    ns = f"ftsyn-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="ftsyn")
    control = os.path.join(tmp, "ctl.sock")
    nsmod.create(ns)
    procs: list[subprocess.Popen[Any]] = []
    try:
        pre = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
        serve = subprocess.Popen(
            ["ip", "netns", "exec", ns, *pre, "-m", "femtotcp", "serve", "--tap", TAP,
             "--ip", f"{STACK}/24", "--gateway", KERNEL, "--tcp-echo", "7",
             "--control", control, *serve_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(serve)
        assert serve.stdout is not None
        ready, _, _ = select.select([serve.stdout], [], [], 30)
        line = serve.stdout.readline() if ready else ""
        if not line.startswith("femtotcp: serving"):
            raise RuntimeError(f"serve did not start: {line!r}")
        threading.Thread(target=serve.stdout.read, daemon=True).start()
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{KERNEL}/24", "dev", TAP], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
                        STACK], check=True, capture_output=True)
        # serve's pid: the child of `ip netns exec` (exec'd in place).
        pid = serve.pid
        rss_before = _rss_kb(pid)
        before = _ctl(control, "stats")
        link0 = _link_stats(ns)
        cpu0 = _proc_cpu(pid)
        hargs = ["hping3", "-S", "-p", "7", "--flood", "-q"]
        if rand_source:
            hargs.append("--rand-source")
        if tcp_mss is not None:
            hargs += ["--tcp-mss", str(tcp_mss)]
        hping = subprocess.Popen(["ip", "netns", "exec", ns, *hargs, STACK],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(hping)
        t_start = time.monotonic()
        ping = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-i", "0.2", "-W", "2",
                                 "-c", str(max(1, int((seconds - 1) / 0.2))), STACK],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(ping)
        time.sleep(1.0)                          # the flood is at full rate
        results: list[tuple[float | None, float | None, str]] = []
        for _ in range(connects):
            results.append(_connect_once(ns, 10.0))
            time.sleep(0.5)
        while time.monotonic() - t_start < seconds:
            time.sleep(0.1)
        link1 = _link_stats(ns)
        cpu1 = _proc_cpu(pid)
        t_flood = time.monotonic() - t_start
        during = _ctl(control, "stats", timeout=60)
        rss_peak = _rss_kb(pid)
        hping.send_signal(signal.SIGINT)
        hout, _ = hping.communicate(timeout=20)
        pout, _ = ping.communicate(timeout=30)
        time.sleep(3.0)
        after = _ctl(control, "stats")
        rss_after = _rss_kb(pid)
        subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", STACK],
                       check=False, capture_output=True)
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        nsmod.delete(ns)
        shutil.rmtree(tmp, ignore_errors=True)

    offered = (link1["tx_packets"] + link1["tx_dropped"]) - (
        link0["tx_packets"] + link0["tx_dropped"])
    dev = TAP
    rx = during["devices"][dev].get("rx_frames", 0) - before["devices"][dev].get("rx_frames", 0)
    c0, c1 = before["counters"], during["counters"]

    def delta(name: str) -> int:
        return int(c1.get(name, 0)) - int(c0.get(name, 0))

    sent = re.search(r"(\d+) packets transmitted", hout or "")
    rtts = [float(m) / 1000 for m in re.findall(r"time=([\d.]+) ms", pout or "")]
    ping_sent = re.search(r"(\d+) packets transmitted, (\d+) received", pout or "")
    fig = {
        "seconds": t_flood,
        "hping_sent": int(sent.group(1)) if sent else None,
        "hping_extra": f"--tcp-mss {tcp_mss} " if tcp_mss is not None else "",
        "offered_per_s": offered / t_flood,
        "lost_in_tap_queue": link1["tx_dropped"] - link0["tx_dropped"],
        "read_per_s": rx / t_flood,
        "read_per_cpu_s": rx / max(1e-9, sum(cpu1) - sum(cpu0)),
        "serve_cpu_share": (sum(cpu1) - sum(cpu0)) / t_flood,
        "serve_sys_share": (cpu1[1] - cpu0[1]) / max(1e-9, sum(cpu1) - sum(cpu0)),
        "cookies_sent": delta("tcp.syncookies_sent"),
        "shed": {k: v for k, v in during["devices"][dev].items() if k.startswith("rx_shed")},
        "counters": {k: delta(k) for k in sorted(set(c1) | set(c0))
                     if k.startswith(("tcp.syn", "tcp.early", "tcp.cookie")) and delta(k)},
        "connects": results,
        "ping_rtts": rtts,
        "ping": ping_sent.groups() if ping_sent else None,
        "rss_kb": (rss_before, rss_peak, rss_after),
        "queues_during": {k: v for k, v in during["queues"].items() if v["now"]},
        "internal_errors": int(after["counters"].get("stack.internal_error", 0)),
    }
    return fig


def report(fig: dict[str, Any]) -> None:
    print(f"SYN flood: hping3 -S -p 7 --flood {fig['hping_extra']}{STACK} "
          f"for {fig['seconds']:.1f} s")
    print(f"  hping3 sent                 {fig['hping_sent']}")
    print(f"  offered to the TAP          {fig['offered_per_s']:,.0f} frames/s "
          f"({fig['lost_in_tap_queue']:,} lost in the TAP queue)")
    print(f"  read by the stack           {fig['read_per_s']:,.0f} frames/s "
          f"({fig['read_per_cpu_s']:,.0f} per CPU second; serve used "
          f"{fig['serve_cpu_share'] * 100:.0f} % of a core, "
          f"{fig['serve_sys_share'] * 100:.0f} % of it in the kernel)")
    print(f"  SYN cookies sent            {fig['cookies_sent']:,}")
    print(f"  SYN shedding (device)       {fig['shed'] or 'not engaged'}")
    for k, v in fig["counters"].items():
        print(f"    {k:38s} {v:,}")
    ok = [(c, e) for c, e, err in fig["connects"] if not err]
    lat = [c for c, _ in ok if c is not None]
    echo = [e for _, e in ok if e is not None]
    print(f"  kernel connects             {len(ok)}/{len(fig['connects'])} echoed; "
          f"within 1 s: {sum(1 for c in lat if c < 1.0)}")
    print(f"    connect latency           {_fmt_ms(lat)}")
    print(f"    echo latency              {_fmt_ms(echo)}")
    fails = [err for _, _, err in fig["connects"] if err]
    if fails:
        print(f"    failures                  {', '.join(fails)}")
    ping = fig["ping"]
    print(f"  ping                        {ping[1] if ping else '?'}/{ping[0] if ping else '?'}"
          f" answered; RTT {_fmt_ms(fig['ping_rtts'])}")
    b, p, a = fig["rss_kb"]
    print(f"  serve RSS                   before {b / 1024:.1f} MB, end of flood "
          f"{p / 1024:.1f} MB, after {a / 1024:.1f} MB")
    print(f"  queues not empty at the end {fig['queues_during'] or 'none'}")
    print(f"  stack.internal_error        {fig['internal_errors']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connects", type=int, default=10)
    ap.add_argument("--rand-source", action="store_true")
    ap.add_argument("--tcp-mss", type=int, help="flood SYNs with this MSS option")
    ap.add_argument("--profile", help="run serve under cProfile, stats to this file")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("serve_args", nargs="*", help="extra serve flags (after --)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("hping3") is None:
        print("needs root and hping3 (apt-get install hping3)", file=sys.stderr)
        return 2
    # The connects take 10 x 0.5 s plus their latency: the flood lasts at least that.
    seconds = max(args.seconds, 1.5 + args.connects * 0.6)
    fig = run(seconds, args.connects, args.rand_source, args.profile, args.serve_args,
              args.tcp_mss)
    report(fig)
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
