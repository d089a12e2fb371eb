"""The protocol modules a stack can load, and what each needs.

Nothing here imports a module at top level: a build without TCP never imports
``femtotcp.proto.tcp``. Each module exposes ``install(stack) -> object``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

#: name -> (python module, modules it needs)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "arp": ("femtotcp.stack.arp", ()),
    "ipv4": ("femtotcp.stack.ipv4", ()),
    "icmp4": ("femtotcp.proto.icmp4", ("ipv4",)),
    "udp": ("femtotcp.proto.udp", ("ipv4",)),
    "tcp": ("femtotcp.proto.tcp", ("ipv4",)),
    "dns": ("femtotcp.services.dns", ("udp",)),
    "ipv6": ("femtotcp.stack.ipv6", ()),          # with neighbour discovery (stack/ndp.py)
    "icmp6": ("femtotcp.proto.icmp6", ("ipv6",)),
    "igmp": ("femtotcp.stack.igmp", ("ipv4",)),   # sockets' IPv4 groups reported
}

DEFAULT_MODULES = ("arp", "ipv4", "icmp4", "igmp", "udp", "tcp")

#: Services and faces a build can leave out (not loaded into a Stack; used by
#: the CLI and the host): name -> (python modules, modules it needs).
EXTRAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dhcp": (("femtotcp.services.dhcp",), ("udp",)),
    "dhcp_server": (("femtotcp.services.dhcp_server",), ("udp",)),
    "dns_server": (("femtotcp.services.dns_server",), ("udp",)),
    "ctl": (("femtotcp.control",), ()),
    "pcap": (("femtotcp.phy.pcap",), ()),
    "run": (("femtotcp.api", "femtotcp.api.socket", "femtotcp.api.patch",
             "femtotcp.api.run", "femtotcp.api.aio"), ()),
    "gateway": (("femtotcp.gateway", "femtotcp.gateway.cli", "femtotcp.gateway.gateway",
                 "femtotcp.gateway.nat", "femtotcp.gateway.flows",
                 "femtotcp.gateway.dns_forward", "femtotcp.gateway.counters",
                 "femtotcp.gateway.ra", "femtotcp.gateway.switch",
                 "femtotcp.phy.qemu", "femtotcp.phy.netns"),
                ("arp", "icmp4", "udp", "tcp", "icmp6", "dhcp_server", "pcap")),
    "demo": (("femtotcp.demo", "femtotcp.demo_dhcp_dns", "femtotcp.api.demo_http",
              "femtotcp.phy.netns"),
             ("arp", "icmp4", "tcp", "dns", "dhcp", "dhcp_server", "dns_server", "pcap",
              "run")),
}


def available(name: str) -> bool:
    """True when the module's code is present in this build."""
    if name in MODULES:
        targets: tuple[str, ...] = (MODULES[name][0],)
    elif name in EXTRAS:
        targets = EXTRAS[name][0]
    else:
        return False
    for target in targets:
        try:
            spec = importlib.util.find_spec(target)
        except ModuleNotFoundError:
            return False
        # A directory without __init__.py is a namespace package, not a module.
        if spec is None or spec.origin is None:
            return False
    return True


def present() -> list[str]:
    """Every protocol module, service and face whose code this build holds."""
    return [n for n in (*MODULES, *EXTRAS) if available(n)]


def resolve(names: Iterable[str] | None) -> list[str]:
    """Order ``names`` so dependencies come first; ValueError names what is wrong."""
    if names is None:
        wanted = [n for n in DEFAULT_MODULES if available(n)]
    else:
        wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        unknown = [n for n in wanted if n not in MODULES]
        if unknown:
            raise ValueError(f"unknown module(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(MODULES))}")
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        for dep in MODULES[name][1]:
            if dep not in wanted:
                raise ValueError(f"module {name} needs {dep}, which is not in the list")
            visit(dep, chain + (name,))
        order.append(name)

    for n in wanted:
        visit(n, ())
    return order


def load(name: str) -> object:
    return importlib.import_module(MODULES[name][0])
