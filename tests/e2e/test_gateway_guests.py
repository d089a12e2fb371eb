"""Several kernel guests on one ``femtotcp gateway`` (``--tap`` twice, each TAP
in its own namespace; or ``--qemu-stream`` with ``--max-guests``): each gets
its own DHCP lease on the same --net (and SLAAC address on --net6), all reach
the host's server through the NAT, and they reach each other directly (ping,
TCP both families) through the gateway's switch. ``--qemu-dgram`` with
``--max-guests``: each QEMU's socket address is a guest likewise."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

from netns import Netns, netns, require_kernel, require_program
from test_gateway import (
    GATEWAY,
    NET,
    NET6,
    QEMU_PEER,
    SERVER,
    TAP,
    UDHCPC_SCRIPT,
    _http_server,
    _listening,
    _wait,
)


def _host_server(host: Netns, tmp: Path, size: int) -> bytes:
    """H's HTTP server on SERVER:8000 serving f.bin, ``size`` random bytes."""
    host.ip("addr", "add", f"{SERVER}/32", "dev", "lo")
    www = tmp / "www"
    www.mkdir()
    body = os.urandom(size)
    (www / "f.bin").write_bytes(body)
    _http_server(host, SERVER, www, 8000)
    return body


def _global6(ns: Netns) -> str:
    """The guest's SLAAC address on --net6 once DAD passed ("" before)."""
    out = ns.run("ip", "-6", "addr", "show", "dev", TAP, "scope", "global", check=False).stdout
    if "tentative" in out:
        return ""
    for w in out.split():
        if "/" in w and ":" in w:
            ip = ipaddress.ip_interface(w).ip
            if ip in ipaddress.ip_network(NET6):
                return str(ip)
    return ""


def test_two_guests_get_their_own_leases_and_reach_the_host_and_each_other(
        tmp_path: Path) -> None:
    require_kernel()
    for prog in ("busybox", "curl", "ping"):
        require_program(prog)
    with netns("gw2H") as host, netns("gw2A") as ga, netns("gw2B") as gb:
        etcs = [Path("/etc/netns") / g.name for g in (ga, gb)]
        try:
            for etc in etcs:
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "resolv.conf").write_text("")
            body = _host_server(host, tmp_path, 4 * 1024 * 1024)
            log = tmp_path / "gateway.log"
            src = str(Path(__file__).resolve().parents[2] / "src")
            proc = host.popen(
                sys.executable, "-m", "femtotcp", "gateway",
                "--tap", TAP, "--netns", f"/run/netns/{ga.name}",
                "--tap", TAP, "--netns", f"/run/netns/{gb.name}",
                "--net", NET, "--net6", NET6, "--dns-upstream", SERVER,
                stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                env=dict(os.environ, PYTHONPATH=src))

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"the gateway exited: {log.read_text()}")
                return "femtotcp: gateway on" in log.read_text()
            _wait(up, 20, "the gateway")
            script = tmp_path / "udhcpc.sh"
            script.write_text(UDHCPC_SCRIPT)
            script.chmod(0o755)
            leases = []
            for g in (ga, gb):
                g.run("busybox", "udhcpc", "-i", TAP, "-f", "-q", "-n", "-t", "5",
                      "-s", str(script), timeout=30)
                out = g.run("ip", "-4", "-o", "addr", "show", "dev", TAP).stdout
                leases.append(out.split("inet ")[1].split("/")[0])
            assert len(set(leases)) == 2
            assert all(ipaddress.ip_address(a) in ipaddress.ip_network(NET) for a in leases)
            # Both reach the host through the NAT.
            for g in (ga, gb):
                got = tmp_path / f"got-{g.name}.bin"
                g.run("curl", "-sS", "--fail", "-o", str(got), f"http://{SERVER}:8000/f.bin",
                      timeout=60)
                assert got.read_bytes() == body
            # And each other, directly: ping, and TCP from A to a server in B.
            assert "2 received" in ga.run("ping", "-c", "2", "-i", "0.2", "-W", "3", leases[1]).stdout
            assert "2 received" in gb.run("ping", "-c", "2", "-i", "0.2", "-W", "3", leases[0]).stdout
            gwww = tmp_path / "guest-www"
            gwww.mkdir()
            (gwww / "g.bin").write_bytes(body[:1000000])
            _http_server(gb, "::", gwww, 8080)
            got = tmp_path / "from-b.bin"
            ga.run("curl", "-sS", "--fail", "-o", str(got), f"http://{leases[1]}:8080/g.bin",
                   timeout=60)
            assert got.read_bytes() == body[:1000000]
            # IPv6: each its own SLAAC address on --net6; A reaches B over it.
            _wait(lambda: bool(_global6(ga)) and bool(_global6(gb)), 30,
                  "SLAAC addresses in both guests")
            a6, b6 = _global6(ga), _global6(gb)
            assert a6 != b6
            got.unlink()
            ga.run("curl", "-6", "-sS", "--fail", "-o", str(got), f"http://[{b6}]:8080/g.bin",
                   timeout=60)
            assert got.read_bytes() == body[:1000000]
            assert _listening(gb, "t", 8080)
        finally:
            for etc in etcs:
                shutil.rmtree(etc, ignore_errors=True)


class _QemuGuests:
    """A gateway in H on ``--qemu-KIND unix:PATH --max-guests 2``, and how a
    guest namespace joins it (a QEMU stand-in relaying its kernel TAP) and
    gets its DHCP lease."""

    def __init__(self, host: Netns, tmp: Path, kind: str) -> None:
        self.kind, self.tmp = kind, tmp
        self.path = tmp / f"{kind}.sock"
        log = tmp / "gateway.log"
        src = str(Path(__file__).resolve().parents[2] / "src")
        self.env = dict(os.environ, PYTHONPATH=src)
        self.gw = host.popen(sys.executable, "-m", "femtotcp", "gateway", f"--qemu-{kind}",
                             f"unix:{self.path}", "--max-guests", "2", "--net", NET,
                             "--net6", NET6, "--dns-upstream", SERVER, stdout=log.open("w"),
                             stderr=subprocess.STDOUT, text=True, env=self.env)
        _wait(lambda: "femtotcp: gateway on" in log.read_text() or self.gw.poll() is not None,
              20, "the gateway")
        assert self.gw.poll() is None, log.read_text()
        self.script = tmp / "udhcpc.sh"
        self.script.write_text(UDHCPC_SCRIPT.replace("/etc/resolv.conf", str(tmp / "r")))
        self.script.chmod(0o755)

    def relay(self, g: Netns, wait: bool = True) -> subprocess.Popen[bytes]:
        """The stand-in in ``g`` (a dgram one binds its own socket file)."""
        own = [str(self.tmp / f"{g.name}.qemu")] if self.kind == "dgram" else []
        proc: subprocess.Popen[bytes] = g.popen(
            sys.executable, "-c", QEMU_PEER, self.kind, str(self.path), TAP, *own,
            env=self.env)
        if wait:
            _wait(lambda: g.ip("link", "show", TAP, check=False).returncode == 0, 20,
                  "the relay's TAP")
        return proc

    def lease(self, g: Netns, check: bool = True, tries: int = 5) -> str:
        """``g``'s lease by busybox udhcpc ("" when none came and not ``check``),
        ``tries`` DISCOVERs 1 s apart."""
        res = g.run("busybox", "udhcpc", "-i", TAP, "-f", "-q", "-n", "-t", str(tries), "-T", "1",
                    "-s", str(self.script), timeout=30, check=check)
        if res.returncode != 0:
            return ""
        out = g.run("ip", "-4", "-o", "addr", "show", "dev", TAP).stdout
        return out.split("inet ")[1].split("/")[0]

    def stop(self) -> None:
        self.gw.terminate()
        self.gw.wait(10)
        assert not self.path.exists()


def _two_guests_fetch_and_ping(q: _QemuGuests, ga: Netns, gb: Netns,
                               body: bytes) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    relays = [q.relay(ga), q.relay(gb)]
    leases = [q.lease(ga), q.lease(gb)]
    assert len(set(leases)) == 2
    for g in (ga, gb):
        got = q.tmp / f"got-{g.name}.bin"
        g.run("curl", "-sS", "--fail", "-o", str(got), f"http://{SERVER}:8000/f.bin",
              timeout=60)
        assert got.read_bytes() == body
    assert "2 received" in ga.run("ping", "-c", "2", "-i", "0.2", "-W", "3", leases[1]).stdout
    return relays, leases


def test_several_qemu_connections_are_several_guests(tmp_path: Path) -> None:
    """--qemu-stream with --max-guests 2: two QEMU stand-ins (each relaying a
    kernel TAP in its own namespace) are two guests with their own leases that
    reach the host and each other; a third connection is closed at once, and
    takes the place of one that went."""
    require_kernel()
    for prog in ("busybox", "curl", "ping"):
        require_program(prog)
    with netns("gwqH") as host, netns("gwqA") as ga, netns("gwqB") as gb, \
            netns("gwqC") as gc:
        body = _host_server(host, tmp_path, 2 * 1024 * 1024)
        q = _QemuGuests(host, tmp_path, "stream")
        relays, leases = _two_guests_fetch_and_ping(q, ga, gb, body)
        # A third QEMU is one too many: the gateway closes it, the relay exits.
        third = q.relay(gc, wait=False)
        assert third.wait(20) == 0
        # Once B's QEMU goes, C takes its place (tried again should C's connection
        # come before the gateway saw B's close).
        relays[1].terminate()
        relays[1].wait(10)
        for _ in range(5):
            proc = q.relay(gc)
            if q.lease(gc, check=False) and proc.poll() is None:
                break
            proc.kill()
            proc.wait(10)
        else:
            raise AssertionError("the third guest never got a lease")
        assert "1 received" in gc.run("ping", "-c", "1", "-W", "3", leases[0]).stdout
        assert "1 received" in ga.run("ping", "-c", "1", "-W", "3", GATEWAY).stdout
        q.stop()


def test_several_qemu_dgram_peers_are_several_guests(tmp_path: Path) -> None:
    """--qemu-dgram with --max-guests 2: two QEMU stand-ins (each its own bound
    socket, relaying a kernel TAP in its own namespace) are two guests with
    their own leases that reach the host and each other; a third gets nothing
    while both live, and takes the place of one whose QEMU went."""
    require_kernel()
    for prog in ("busybox", "curl", "ping"):
        require_program(prog)
    with netns("gwdH") as host, netns("gwdA") as ga, netns("gwdB") as gb, \
            netns("gwdC") as gc:
        body = _host_server(host, tmp_path, 2 * 1024 * 1024)
        q = _QemuGuests(host, tmp_path, "dgram")
        relays, leases = _two_guests_fetch_and_ping(q, ga, gb, body)
        # A third QEMU is one too many while both live: its guest gets no lease
        # (a gateway that took it would answer the first DISCOVER at once).
        third = q.relay(gc)
        assert q.lease(gc, check=False, tries=2) == ""
        # B's QEMU goes (its socket file stays): C takes its place.
        relays[1].terminate()
        relays[1].wait(10)
        assert q.lease(gc) not in ("", leases[0])
        assert "1 received" in gc.run("ping", "-c", "1", "-W", "3", leases[0]).stdout
        got = tmp_path / "got-c.bin"
        gc.run("curl", "-sS", "--fail", "-o", str(got), f"http://{SERVER}:8000/f.bin",
               timeout=60)
        assert got.read_bytes() == body
        for proc in (relays[0], third):
            proc.terminate()
            proc.wait(10)
        q.stop()
