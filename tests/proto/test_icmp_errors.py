"""The ICMP error rules both families share (proto/ratelimit.ErrorRateLimit):
one global token bucket for ICMP and ICMPv6 errors, as Linux's
icmp_global_allow, beside per-destination buckets; errors to our own
addresses are never limited. Each family keeps its own rules about what may
earn an error at all (tests/stack/test_stack_ipv4.py, test_stack_ipv6.py)."""

from __future__ import annotations

import pytest

from femtotcp.phy.base import Device
from femtotcp.stack import Stack
from femtotcp.stack.config import StackConfig
from femtotcp.wire import ethernet, ip_bytes, ipv4, ipv6, mac_bytes, udp

OUR_MAC = mac_bytes("02:00:00:00:00:02")
PEER_MAC = mac_bytes("02:00:00:00:00:01")
OUR4 = ip_bytes("192.0.2.2")
OUR6 = ip_bytes("2001:db8::2")


class Null(Device):
    def __init__(self) -> None:
        super().__init__("null", 1500)

    def _transmit(self, frame: bytes) -> None:
        pass


def make(modules: list[str], burst: int = 3) -> Stack:
    # The global bucket binds (the per-destination ones are larger), and
    # nothing refills during the test.
    cfg = StackConfig(icmp_rate=1e-9, icmp_burst=burst, icmp_rate_per_dest=1e-9,
                      icmp_burst_per_dest=100, ipv6_dad=False)
    stack = Stack("icmp", modules=modules, config=cfg)
    iface = stack.add_interface(Null(), mac=OUR_MAC, ipv4="192.0.2.2/24")
    if stack.ipv6 is not None:
        stack.ipv6.add_address(iface, OUR6, 64)
    return stack


def closed_port4(stack: Stack, i: int) -> None:
    src = ip_bytes(f"192.0.2.{10 + i}")
    dgram = udp.build(src, OUR4, 1000, 9999, b"x")
    stack.receive(stack.interfaces[0], ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV4,
                                                      ipv4.build(src, OUR4, 17, dgram)))


def closed_port6(stack: Stack, i: int) -> None:
    src = ip_bytes(f"2001:db8::{10 + i:x}")
    dgram = udp.build(src, OUR6, 1000, 9999, b"x")
    stack.receive(stack.interfaces[0], ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETH_IPV6,
                                                      ipv6.build(src, OUR6, 17, dgram)))


@pytest.mark.parametrize("modules", [
    ["arp", "ipv4", "icmp4", "udp", "ipv6", "icmp6"],
    ["ipv6", "icmp6", "udp", "arp", "ipv4", "icmp4"],     # either loading order
])
def test_one_global_bucket_for_both_families(modules: list[str]) -> None:
    stack = make(modules)
    assert stack.icmp is not None and stack.icmp6 is not None
    assert stack.icmp.limit is stack.icmp6.limit
    closed_port4(stack, 0)
    closed_port4(stack, 1)
    for i in range(3):
        closed_port6(stack, i)
    c = stack.counters
    assert c["icmp4.tx_error_3_3"] == 2 and c["icmp6.tx_error_1_4"] == 1
    assert c["icmp6.error_rate_limited"] == 2
    closed_port4(stack, 2)
    assert c["icmp4.error_rate_limited"] == 1


def test_errors_to_our_own_addresses_are_never_limited() -> None:
    stack = make(["arp", "ipv4", "icmp4", "udp", "ipv6", "icmp6"], burst=0)
    assert stack.icmp is not None and stack.icmp6 is not None
    assert stack.icmp.limit.allow(OUR4) and stack.icmp6.limit.allow(OUR6)
    assert stack.icmp.limit.allow(ip_bytes("127.0.0.1"))
    assert not stack.icmp6.limit.allow(ip_bytes("2001:db8::99"))
    assert not stack.icmp.limit.allow(ip_bytes("192.0.2.99"))
