"""A hostile guest against the NAT: random and mutated frames to any address
never raise, never make the table grow past its limit, and leave no host
socket behind once the flows are closed.

The NAT opens real host sockets for what the guest sends, so everything runs
inside a fresh namespace that has only loopback: every destination is
unreachable from there and nothing leaves the machine. The guest side is an
in-memory switch on a virtual clock.
"""

from __future__ import annotations

import os
from typing import Any

from femtolan import SNIFF_IP, SNIFF_MAC, make_lan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netns import entered, netns, require_kernel

from femtotcp.gateway.flows import Limits
from femtotcp.gateway.nat import Nat
from femtotcp.wire import ethernet, icmp4, ipv4, tcp, udp

GATEWAY_MAC = bytes.fromhex("020000000001")
MAX_FLOWS = 32


def _frame(dst: bytes, proto: int, body: bytes) -> bytes:
    packet = ipv4.build(SNIFF_IP, dst, proto, body, 64, 0, 1, 0)
    return ethernet.build(GATEWAY_MAC, SNIFF_MAC, ethernet.ETH_IPV4, packet)


def _segment(dst: bytes, sport: int, dport: int, flags: int, data: bytes) -> bytes:
    return tcp.build(SNIFF_IP, dst, sport, dport, 1000, 0, flags, 65535, data)


packets = st.one_of(
    st.tuples(st.just(6), st.integers(1, 65535), st.integers(1, 65535),
              st.sampled_from([tcp.SYN, tcp.SYN | tcp.ACK, tcp.ACK, tcp.RST, tcp.FIN,
                               tcp.SYN | tcp.FIN, 0]), st.binary(max_size=64)),
    st.tuples(st.just(17), st.integers(1, 65535), st.integers(1, 65535), st.just(0),
              st.binary(max_size=64)),
    st.tuples(st.just(1), st.integers(0, 65535), st.integers(0, 65535),
              st.sampled_from([8, 0, 3, 11, 13, 42]), st.binary(max_size=64)),
)


def test_random_guest_traffic_never_breaks_the_nat() -> None:
    require_kernel()
    with netns("gwhost") as ns, entered(ns):
        lan = make_lan(1)
        stack = lan.stacks[0]
        watched: dict[int, Any] = {}

        def watch(fd: int, read: bool, write: bool, handler: Any) -> None:
            if read or write:
                watched[fd] = handler
            else:
                watched.pop(fd, None)

        nat = Nat(stack, lan.ifaces[0], watch, stack.interfaces[0].ipv4[0].addr,
                  Limits(max_flows=MAX_FLOWS, tcp_connect_timeout=1.0, udp_timeout=2.0,
                         icmp_timeout=2.0))
        sniffer = lan.sniffer()
        fds_before = len(os.listdir("/proc/self/fd"))

        @settings(max_examples=400, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.lists(packets, min_size=1, max_size=20),
               st.lists(st.integers(0, 255), min_size=4, max_size=4),
               st.integers(0, 40), st.integers(0, 255))
        def run(batch: list[tuple[int, int, int, int, bytes]], addr: list[int],
                cut: int, flip: int) -> None:
            dst = bytes(addr)
            for proto, a, b, c, data in batch:
                if proto == 6:
                    body = _segment(dst, a, b, c, data)
                elif proto == 17:
                    body = udp.build(SNIFF_IP, dst, a, b, data)
                else:
                    body = icmp4.build(c, 0, (a << 16) | b, data)
                frame = bytearray(_frame(dst, proto, body))
                if cut and flip:                    # mutate one byte past Ethernet
                    frame[14 + cut % (len(frame) - 14)] ^= flip
                sniffer.inject(bytes(frame))
            lan.run(0.5)
            # Host sockets answer (errors, refusals): let them speak, as the loop would.
            for handler in list(watched.values()):
                handler.on_readable()
            assert len(nat.table) <= MAX_FLOWS
            assert stack.counters["stack.internal_error"] == 0

        run()
        c = stack.counters
        assert c["nat.tcp_flows_opened"] > 0 and c["nat.udp_flows_opened"] > 0
        assert c["nat.tcp_unreachable"] > 0 and c["nat.icmp_unreachable_sent"] > 0
        lan.run(10.0)                    # every flow idles out
        assert len(nat.table) == 0
        nat.close()
        assert watched == {}
        assert len(os.listdir("/proc/self/fd")) <= fds_before
