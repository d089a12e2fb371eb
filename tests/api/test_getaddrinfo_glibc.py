"""getaddrinfo on numeric hosts against glibc's own (the oracle): families
AF_UNSPEC/AF_INET/AF_INET6, AI_V4MAPPED, AI_ALL, AI_PASSIVE and
AI_NUMERICHOST, with IPv4, IPv6, v4-mapped and scoped literals. Nothing here
depends on the machine's addresses (AI_ADDRCONFIG does: its oracle runs in
namespaces, tests/e2e/test_getaddrinfo_oracle.py). Scope names are ``lo`` and
numbers, which mean the same on the stack (loopback is index 1) as here."""

from __future__ import annotations

import itertools
import socket as std
from typing import Any

from femtotcp.api.socket import Network
from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack

HOSTS = ("2001:db8::1", "2001:DB8:0::1", "192.0.2.9", "::ffff:192.0.2.9", "fe80::1%lo",
         "fe80::1%1", "ff02::1%lo", "2001:db8::1%5", "fe80::1%nosuch", "::1%lo",
         "fe80::1%", "127.1", "0x7f.1", "::", "::1", "not a literal%lo")
FAMILIES = (0, std.AF_INET, std.AF_INET6)
FLAGS = (0, std.AI_V4MAPPED, std.AI_V4MAPPED | std.AI_ALL, std.AI_PASSIVE,
         std.AI_NUMERICHOST)


def answer(fn: Any, host: str, family: int, flags: int) -> object:
    try:
        return [(int(r[0]), tuple(r[4])) for r in fn(host, 80, family, std.SOCK_STREAM, 0,
                                                     flags)]
    except std.gaierror as exc:
        return exc.errno


def test_numeric_hosts_as_glibc() -> None:
    stack = Stack("g", modules=["arp", "ipv4", "udp", "tcp", "ipv6"],
                  config=StackConfig(ipv6_dad_transmits=0))
    net = Network(stack, Runtime())
    try:
        for host, family, flags in itertools.product(HOSTS, FAMILIES, FLAGS):
            if host.startswith("not") and not flags & std.AI_NUMERICHOST:
                continue       # a name: glibc would ask the machine's resolver
            want = answer(std.getaddrinfo, host, family, flags)
            assert answer(net.getaddrinfo, host, family, flags) == want, (host, family, flags)
    finally:
        net.runtime.close()


def test_special_names_are_not_getaddrinfos() -> None:
    """``""`` and ``"<broadcast>"`` are INADDR_ANY and INADDR_BROADCAST to
    ``gethostbyname`` and in addresses given to bind/connect (CPython's own
    rule), but getaddrinfo passes them to glibc, which knows no such names."""
    stack = Stack("g", modules=["arp", "ipv4", "udp", "tcp", "ipv6"],
                  config=StackConfig(ipv6_dad_transmits=0))
    net = Network(stack, Runtime())
    try:
        for host, family, flags in itertools.product(("", "<broadcast>", " "), FAMILIES,
                                                     FLAGS):
            want = answer(std.getaddrinfo, host, family, flags)
            assert answer(net.getaddrinfo, host, family, flags) == want, (host, family, flags)
        for host in ("", "<broadcast>"):
            assert net.gethostbyname(host) == std.gethostbyname(host)
    finally:
        net.runtime.close()
