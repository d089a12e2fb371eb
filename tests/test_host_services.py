"""serve's services (--udp-echo, --tcp-echo, --discard, --chargen) listen on
every address of the stack's families: with IPv6 loaded, a dual-stack ``::``
(test_conformance6's udp_echo and tcp_syn_open see them answer over IPv6)."""

from __future__ import annotations

import pytest

from femtotcp.host import Host, HostOptions
from femtotcp.stack.stack import Stack


@pytest.mark.parametrize(("modules", "anywhere"), [
    (["arp", "ipv4", "icmp4", "udp", "tcp"], bytes(4)),
    (["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"], bytes(16)),
])
def test_services_listen_on_every_address(modules: list[str], anywhere: bytes) -> None:
    host = Host.__new__(Host)      # the services part alone: no device, no runtime
    host.opts = HostOptions(udp_echo=[7], tcp_echo=[7], discard=[9], chargen=[19])
    host.stack = Stack("h", modules=modules)
    host.services = []
    host._start_services()
    assert host.stack.udp is not None and host.stack.tcp is not None
    assert (anywhere, 7) in host.stack.udp.endpoints
    assert sorted(lst.local for lst in host.stack.tcp.listeners()) == \
        [(anywhere, 7), (anywhere, 9), (anywhere, 19)]
