"""Two (or three) stacks on an in-memory switch, driven by one real-time Runtime
in its own thread: what a program using femtotcp sockets sees, without root.

(A module of its own, not conftest: several test directories have a conftest,
and ``from conftest import ...`` would find whichever was imported first.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from femtotcp.api.socket import Network, network_for
from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.stack.stack import Stack

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
