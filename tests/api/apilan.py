"""Two (or three) stacks on an in-memory switch, driven by one real-time Runtime
in its own thread: what a program using femtotcp sockets sees, without root.

(A module of its own, not conftest: several test directories have a conftest,
and ``from conftest import ...`` would find whichever was imported first.)"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from femtotcp.api.socket import Network, network_for
from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import ip_bytes

IP_A = "192.0.2.1"
IP_B = "192.0.2.2"
IP_SILENT = "192.0.2.3"   # answers ARP, has no transports: TCP/UDP vanish there


@dataclass
class Lan:
    runtime: Runtime
    a: Stack
    b: Stack
    silent: Stack
    net_a: Network
    net_b: Network
    ip_a: str = IP_A
    ip_b: str = IP_B
    ip_silent: str = IP_SILENT
    extra: list[object] = field(default_factory=list)


@contextmanager
def make_lan() -> Iterator[Lan]:
    rt = Runtime()
    sw = Switch(rt)
    a = Stack("a")
    a.add_interface(sw.port("a"), mac="02:00:00:00:05:01", ipv4=f"{IP_A}/24")
    b = Stack("b")
    b.add_interface(sw.port("b"), mac="02:00:00:00:05:02", ipv4=f"{IP_B}/24")
    silent = Stack("silent", modules={"arp", "ipv4"})
    silent.add_interface(sw.port("s"), mac="02:00:00:00:05:03", ipv4=f"{IP_SILENT}/24")
    for st in (a, b, silent):
        rt.add_stack(st)
    rt.start()
    for st in (a, b, silent):
        rt.call(st.start)
    try:
        yield Lan(rt, a, b, silent, network_for(a, rt), network_for(b, rt))
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


#: One stack of ``dual_lan``: name, modules, MAC (None: random), IPv4 address
#: (a /24; None: none) and IPv6 address (a /64).
HostSpec = tuple[str, Sequence[str], str | None, str | None, str]


@contextmanager
def dual_lan(hosts: Sequence[HostSpec]) -> Iterator[list[Network]]:
    """Stacks with IPv4 and IPv6 addresses (DAD off) on one in-memory switch,
    started in one real-time Runtime; their Networks, in order."""
    rt = Runtime()
    sw = Switch(rt)
    stacks = []
    for name, modules, mac, v4, v6 in hosts:
        st = Stack(name, modules=list(modules), config=StackConfig(ipv6_dad_transmits=0))
        iface = st.add_interface(sw.port(name), mac=mac, ipv4=f"{v4}/24" if v4 else None)
        assert st.ipv6 is not None
        st.ipv6.add_address(iface, ip_bytes(v6), 64)
        rt.add_stack(st)
        stacks.append(st)
    rt.start()
    for st in stacks:
        rt.call(st.start)
    try:
        yield [network_for(st, rt) for st in stacks]
    finally:
        rt.stop()
        rt.join(5)
        rt.close()
