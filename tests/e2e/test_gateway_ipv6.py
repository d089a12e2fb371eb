"""``femtotcp gateway`` over IPv6, the kernel as the guest.

As tests/e2e/test_gateway.py: a "host" namespace H runs the gateway and the
servers, here on 2001:db8:2::1 (and 198.51.100.1 for dnsmasq, the upstream
resolver) on H's loopback; a "guest" namespace G holds the kernel side of the
gateway's TAP. The guest configures itself from the gateway's Router
Advertisements (SLAAC on --net6, default route via the gateway's link-local
address) and then reaches H's servers over IPv6 through the gateway's NAT:
TCP (curl, socat), UDP, ICMPv6 echo and DNS (AAAA) through the forwarder's
IPv6 address.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Netns, netns, require_kernel, require_program
from test_gateway import (
    NET6,
    SERVER,
    TAP,
    UDP_ECHO,
    Rig,
    _ctl,
    _ctl_text,
    _http_server,
    _listening,
    _start_gateway,
    _wait,
)

SERVER6 = "2001:db8:2::1"
NOWHERE6 = "2001:db8:3::1"          # no route in H
GATEWAY6 = "2001:db8:1::2"
DNS6 = "2001:db8:1::3"

#: A TCP echo server on IPv6 (socat's peer): echoes until the client's FIN.
TCP_ECHO6 = """
import socket, sys, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
def serve(c):
    while data := c.recv(65536):
        c.sendall(data)
    c.close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""


def _slaac_done(guest: Netns) -> bool:
    """The guest holds an address on --net6 and DAD passed."""
    out = guest.run("ip", "-6", "addr", "show", "dev", TAP, "scope", "global",
                    check=False).stdout
    return "tentative" not in out and any(
        ipaddress.ip_interface(w).ip in ipaddress.ip_network(NET6)
        for w in out.split() if "/" in w and ":" in w)


@pytest.fixture(scope="module")
def rig6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_kernel()
    for prog in ("curl", "dnsmasq", "ping", "ss", "socat"):
        require_program(prog)
    tmp = tmp_path_factory.mktemp("gateway6")
    with netns("gw6H") as host, netns("gw6G") as guest:
        etc = Path("/etc/netns") / guest.name
        etc.mkdir(parents=True, exist_ok=True)
        try:
            (etc / "resolv.conf").write_text(f"nameserver {DNS6}\n")
            host.ip("addr", "add", f"{SERVER}/32", "dev", "lo")
            host.ip("addr", "add", f"{SERVER6}/128", "dev", "lo")
            host.run("sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
            www = tmp / "www"
            www.mkdir()
            (www / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
            host.popen(sys.executable, "-m", "http.server", "-b", SERVER6, "-d", str(www),
                       "8000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            host.popen(sys.executable, "-c", UDP_ECHO.replace("AF_INET,", "AF_INET6,"),
                       SERVER6, "7777")
            host.popen(sys.executable, "-c", TCP_ECHO6, SERVER6, "9100")
            host.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=",
                       f"--listen-address={SERVER}", "--bind-interfaces", "--no-resolv",
                       "--no-hosts", f"--address=/files6.test/{SERVER6}",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait(lambda: _listening(host, "t", 8000) and _listening(host, "u", 53)
                  and _listening(host, "u", 7777) and _listening(host, "t", 9100), 15,
                  "the host's servers")
            proc, log = _start_gateway(host, guest, tmp, "--host-record",
                                       f"pinned6.test={SERVER6}", "-t", "[::]:8090:80",
                                       "-u", "[::]:5390:7090", "--control",
                                       str(tmp / "ctl.sock"), name="gateway6")
            guest.ip("link", "set", TAP, "up")
            _wait(lambda: _slaac_done(guest), 30, "a SLAAC address on the guest's TAP")
            yield Rig(host, guest, proc, tmp, log)
        finally:
            shutil.rmtree(etc, ignore_errors=True)


def test_the_guest_configures_itself_from_the_router_advertisements(rig6: Rig) -> None:
    out = rig6.g("ip", "-6", "addr", "show", "dev", TAP, "scope", "global")
    addrs = [ipaddress.ip_interface(w) for w in out.split() if "/" in w and ":" in w]
    assert [a.network for a in addrs] == [ipaddress.ip_network(NET6)]
    route = rig6.g("ip", "-6", "route", "show", "default")
    assert route.startswith("default via fe80::") and f"dev {TAP} proto ra" in route
    # The router's address is the gateway's link-local one.
    router = route.split()[2]
    assert router in rig6.g("ip", "-6", "neigh", "show", "dev", TAP) or \
        "1 received" in rig6.g("ping", "-6", "-c", "1", "-W", "3", f"{router}%{TAP}")
    assert "net6 2001:db8:1::/64" in rig6.gateway_log()


def test_curl_over_ipv6_is_byte_exact_by_address_and_by_name(rig6: Rig) -> None:
    want = (rig6.tmp / "www" / "big.bin").read_bytes()
    for url in (f"http://[{SERVER6}]:8000/big.bin", "http://files6.test:8000/big.bin",
                "http://pinned6.test:8000/big.bin"):
        out = rig6.tmp / "got.bin"
        rig6.g("curl", "-6", "-sS", "--fail", "-o", str(out), url, timeout=120)
        got = out.read_bytes()
        assert len(got) == len(want) and got == want, url
        out.unlink()


def test_dns_answers_aaaa_over_ipv6(rig6: Rig) -> None:
    out = rig6.g(sys.executable, "-c", (
        "import socket\n"
        "for name in ('files6.test', 'pinned6.test'):\n"
        "    print(sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET6)}))\n"))
    assert out.split("\n")[:2] == [f"['{SERVER6}']"] * 2


def test_socat_tcp6_round_trip_is_byte_exact(rig6: Rig) -> None:
    data = os.urandom(2 * 1024 * 1024)
    res = rig6.guest.run("socat", "-t", "10", "-", f"TCP6:[{SERVER6}]:9100", input=data,
                         text=False, timeout=60)
    assert res.stdout == data


def test_udp6_echo_through_the_gateway(rig6: Rig) -> None:
    out = rig6.g(sys.executable, "-c", (
        "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);"
        f"s.settimeout(5); s.sendto(b'x' * 3000, ('{SERVER6}', 7777));"
        "d, a = s.recvfrom(65535); print(len(d), d == b'x' * 3000, a[:2])"))
    assert out.split() == ["3000", "True", f"('{SERVER6}',", "7777)"]
    res = rig6.guest.run("socat", "-t", "5", "-", f"UDP6:[{SERVER6}]:7777",
                         input=b"hello over udp6\n", text=False, timeout=30)
    assert res.stdout == b"hello over udp6\n"


def test_a_refused_udp6_port_is_refused_in_the_guest(rig6: Rig) -> None:
    out = rig6.g(sys.executable, "-c", (
        "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);"
        f"s.settimeout(5); s.connect(('{SERVER6}', 7778)); s.send(b'x')\n"
        "try: s.recv(10)\n"
        "except ConnectionRefusedError: print('refused')\n"))
    assert out.strip() == "refused"


def test_ping6_through_the_gateway_and_to_the_gateway(rig6: Rig) -> None:
    assert "2 received" in rig6.g("ping", "-6", "-c", "2", "-W", "3", SERVER6, timeout=20)
    assert "1 received" in rig6.g("ping", "-6", "-c", "1", "-W", "3", GATEWAY6, timeout=20)


def test_refused_and_unreachable_ipv6_destinations(rig6: Rig) -> None:
    res = rig6.guest.run("curl", "-6", "-sS", "-v", "--connect-timeout", "10",
                         f"http://[{SERVER6}]:8001/", check=False, timeout=30)
    assert res.returncode == 7 and "Connection refused" in res.stderr
    res = rig6.guest.run("curl", "-6", "-sS", "-v", "--connect-timeout", "10",
                         f"http://[{NOWHERE6}]:80/", check=False, timeout=30)
    assert res.returncode == 7
    assert "Network is unreachable" in res.stderr or "No route to host" in res.stderr
    # The gateway's own address does not reach the host's ::1 without the flag.
    res = rig6.guest.run("curl", "-6", "-sS", "-v", "--connect-timeout", "10",
                         f"http://[{GATEWAY6}]:8000/", check=False, timeout=30)
    assert res.returncode == 7 and "Connection refused" in res.stderr


def test_ctl_flows_shows_ipv6_flows(rig6: Rig) -> None:
    holder = rig6.guest.popen(sys.executable, "-c", (
        f"import socket, time; c = socket.create_connection(('{SERVER6}', 9100));"
        "c.sendall(b'hello'); c.recv(5); a = c.getsockname(); print(a[0], a[1], flush=True);"
        "time.sleep(60)"), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        addr, port = holder.stdout.readline().split()
        guest = f"[{addr}]:{port}"
        doc = _ctl(rig6, "flows")
        rows = [r for r in doc["result"]["flows"] if r["guest"] == guest]
        assert [(r["proto"], r["remote"], r["state"], r["bytes_out"], r["bytes_in"])
                for r in rows] == [("tcp", f"[{SERVER6}]:9100", "established", 5, 5)]
        lines = [line.split()[:6] for line in _ctl_text(rig6, "flows").splitlines()]
        assert ["tcp", guest, f"[{SERVER6}]:9100", "established", "5", "5"] in lines
    finally:
        holder.terminate()
        holder.wait(5)


def _guest_global(rig6: Rig) -> str:
    out = rig6.g("ip", "-6", "addr", "show", "dev", TAP, "scope", "global")
    return next(str(ipaddress.ip_interface(w).ip) for w in out.split()
                if "/" in w and ":" in w)


def test_ipv6_port_forwards_reach_the_guests_ipv6_address_from_the_real_client(
        rig6: Rig) -> None:
    www = rig6.tmp / "guest-www6"
    www.mkdir(exist_ok=True)
    (www / "hello.txt").write_text("from the guest over IPv6\n")
    log = rig6.tmp / "guest-http6.log"
    proc = _http_server(rig6.guest, "::", www, 80, log)
    guest6 = _guest_global(rig6)
    try:
        # -t [::]:8090:80 from the command line, and one added at run time.
        doc = _ctl(rig6, "forward", "add", f"[{SERVER6}]:8091:80")
        assert doc["ok"], doc
        rows = doc["result"]["forwards"]
        assert {"proto": "tcp", "host": "[::]:8090", "guest": f"[{guest6}]:80"} in rows
        assert {"proto": "tcp", "host": f"[{SERVER6}]:8091", "guest": f"[{guest6}]:80"} \
            in rows
        for port in (8090, 8091):
            out = rig6.h("curl", "-6", "-sS", "--fail", f"http://[{SERVER6}]:{port}/hello.txt")
            assert out == "from the guest over IPv6\n"
        _wait(lambda: log.read_text().count("GET /hello.txt") == 2, 5, "the guest's log")
        # The guest saw H's own IPv6 address, not the gateway's ::2.
        clients = [x.split()[0] for x in log.read_text().splitlines() if "GET /hello" in x]
        assert clients == [SERVER6, SERVER6]
        # An IPv4 client of the same port is not taken by the IPv6 forward.
        res = rig6.host.run("curl", "-4", "-sS", f"http://{SERVER}:8090/hello.txt",
                            check=False)
        assert res.returncode == 7
        assert _ctl(rig6, "forward", "del", f"[{SERVER6}]:8091:80")["ok"]
        res = rig6.host.run("curl", "-6", "-sS", f"http://[{SERVER6}]:8091/hello.txt",
                            check=False)
        assert res.returncode == 7
    finally:
        proc.terminate()
        proc.wait(5)


def test_an_ipv6_udp_forward_carries_both_ways_with_the_real_client(rig6: Rig) -> None:
    seen = rig6.tmp / "udp6-peers"
    echo = UDP_ECHO.replace("AF_INET,", "AF_INET6,").replace(
        "s.sendto(data, peer)", "s.sendto(data, peer); open(sys.argv[3], 'a').write(peer[0])")
    proc = rig6.guest.popen(sys.executable, "-c", echo, "::", "7090", str(seen))
    try:
        _wait(lambda: _listening(rig6.guest, "u", 7090), 15, "the guest's UDP echo")
        out = rig6.h(sys.executable, "-c", (
            "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);"
            f"s.bind(('{SERVER6}', 0)); s.settimeout(5);"
            f"s.sendto(b'over the v6 forward', ('{SERVER6}', 5390));"
            "print(s.recvfrom(100)[0].decode())"))
        assert out.strip() == "over the v6 forward"
        assert seen.read_text() == SERVER6
    finally:
        proc.terminate()
        proc.wait(5)


def test_the_gateway_ipv6_address_reaches_host_loopback_when_allowed(tmp_path: Path) -> None:
    """With --allow-host-loopback, ::2 is the host's ::1 (and what ::1 answers
    comes back from ::2), for TCP and UDP."""
    require_kernel()
    require_program("curl")
    with netns("gw6lH") as host, netns("gw6lG") as guest:
        (tmp_path / "lo.txt").write_text("host loopback six\n")
        host.popen(sys.executable, "-m", "http.server", "-b", "::1", "-d", str(tmp_path),
                   "8000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host.popen(sys.executable, "-c", UDP_ECHO.replace("AF_INET,", "AF_INET6,"), "::1",
                   "7777")
        _wait(lambda: _listening(host, "t", 8000) and _listening(host, "u", 7777), 15,
              "the host's loopback servers")
        _start_gateway(host, guest, tmp_path, "--allow-host-loopback", name="loopback6")
        guest.ip("link", "set", TAP, "up")
        _wait(lambda: _slaac_done(guest), 30, "a SLAAC address on the guest's TAP")
        out = guest.run("curl", "-6", "-sS", "--fail", f"http://[{GATEWAY6}]:8000/lo.txt").stdout
        assert out == "host loopback six\n"
        out = guest.run(sys.executable, "-c", (
            "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);"
            f"s.settimeout(5); s.sendto(b'ping', ('{GATEWAY6}', 7777));"
            "d, a = s.recvfrom(100); print(d.decode(), a[0], a[1])")).stdout
        assert out.split() == ["ping", GATEWAY6, "7777"]
