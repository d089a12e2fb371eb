"""AI_ADDRCONFIG as glibc applies it, with glibc as the oracle: a namespace is
given the addresses a stack has (IPv4 only, IPv6 only, an IPv6 link-local
address only, both), glibc's getaddrinfo answers a matrix of numeric hosts,
families and flags there, and the stack's getaddrinfo must answer the same.
(glibc counts every address but loopback, link-local IPv6 included; AF_UNSPEC
narrows to the one family configured; a family asked for but not configured
finds nothing.) Addresses from 192.0.2.0/24 and 2001:db8::/32, inside the
test's own namespaces."""

from __future__ import annotations

import json
import socket as std
import sys
import time

import pytest
from netns import Netns, netns, require_kernel

from femtotcp.api.socket import Network
from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import ip_bytes

HOSTS = [None, "2001:db8::1", "192.0.2.9", "::ffff:192.0.2.9", "fe80::1%1"]
FAMILIES = [0, int(std.AF_INET), int(std.AF_INET6)]
AC = int(std.AI_ADDRCONFIG)
FLAGS = [0, AC, AC | int(std.AI_V4MAPPED), AC | int(std.AI_V4MAPPED | std.AI_ALL),
         AC | int(std.AI_PASSIVE)]

QUERY = """
import json, socket, sys
out = []
for host, family, flags in json.loads(sys.argv[1]):
    try:
        out.append([[r[0], list(r[4])] for r in socket.getaddrinfo(
            host, 80, family, socket.SOCK_STREAM, 0, flags)])
    except socket.gaierror as exc:
        out.append(exc.errno)
print(json.dumps(out))
"""

#: name -> (the namespace's addresses on its veth, IPv6 enabled there)
CONFIGS = {
    "v4": (["192.0.2.1/24"], False),
    "v6": (["2001:db8::5/64"], True),
    "ll": ([], True),
    "both": (["192.0.2.1/24", "2001:db8::5/64"], True),
}


def _glibc(ns: Netns, addrs: list[str], v6: bool,
           questions: list[tuple[str | None, int, int]]) -> list[object]:
    ns.ip("link", "add", "gai0", "type", "veth", "peer", "name", "gai1")
    if not v6:
        for dev in ("gai0", "gai1"):
            ns.run("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
    else:
        ns.run("sysctl", "-qw", "net.ipv6.conf.gai0.disable_ipv6=0")
    for dev in ("gai0", "gai1"):
        ns.ip("link", "set", dev, "up")
    for addr in addrs:
        ns.ip("addr", "add", addr, "dev", "gai0", *(("nodad",) if ":" in addr else ()))
    deadline = time.monotonic() + 10
    while v6:       # the kernel's link-local address, DAD done
        out = ns.ip("-6", "-o", "addr", "show", "dev", "gai0", "scope", "link").stdout
        if "inet6" in out and "tentative" not in out:
            break
        assert time.monotonic() < deadline, "no link-local address on gai0"
        time.sleep(0.1)
    res = ns.run(sys.executable, "-c", QUERY, json.dumps(questions))
    answers: list[object] = json.loads(res.stdout)
    return answers


def _ours(addrs: list[str], v6: bool, questions: list[tuple[str | None, int, int]]
          ) -> list[object]:
    rt = Runtime()
    stack = Stack("g", modules=["arp", "ipv4", "udp", "tcp", "ipv6"],
                  config=StackConfig(ipv6_dad_transmits=0, ipv6_link_local=v6))
    iface = stack.add_interface(Switch(rt).port("gai0"))
    assert stack.ipv6 is not None
    for addr in addrs:
        if ":" in addr:
            stack.ipv6.add_address(iface, ip_bytes(addr.split("/")[0]), 64)
        else:
            stack.add_address(iface, addr)
    stack.start()
    net = Network(stack, rt)
    out: list[object] = []
    for host, family, flags in questions:
        try:
            out.append([[int(r[0]), list(r[4])] for r in net.getaddrinfo(
                host, 80, family, std.SOCK_STREAM, 0, flags)])
        except std.gaierror as exc:
            out.append(exc.errno)
    rt.close()
    return out


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_addrconfig_as_glibc(config: str) -> None:
    require_kernel()
    addrs, v6 = CONFIGS[config]
    questions = [(h, f, fl) for h in HOSTS for f in FAMILIES for fl in FLAGS]
    with netns("gai") as ns:
        want = _glibc(ns, addrs, v6, questions)
    got = _ours(addrs, v6, questions)
    wrong = [(q, g, w) for q, g, w in zip(questions, got, want, strict=True) if g != w]
    assert not wrong
