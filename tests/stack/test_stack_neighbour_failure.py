"""A next hop that never answers, for both families, on the virtual clock: the
waiting packets are dropped and counted, and each is reported to the
transport that sent it through the one path ``Stack.local_error`` as a host
unreachable (Linux's neigh_invalidate -> dst_link_failure): a TCP connect
fails with EHOSTUNREACH once resolution gives up, a connected UDP endpoint
treats it as the soft error Linux's UDP does (tests/e2e/test_ipv6_kernel.py
checks both against the kernel)."""

from __future__ import annotations

import errno
from typing import Any

from femtolan import Lan, addr, make_lan

from femtotcp.stack.stack import Stack
from femtotcp.wire import ethernet, icmp6, ip_bytes, ipv6, ndp

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
NOBODY6 = ip_bytes("2001:db8::99")       # on-link, nobody holds it
NOBODY4 = addr(98)


def lan6(n: int = 1) -> Lan:
    lan = make_lan(n, modules=MODULES)
    for i, stack in enumerate(lan.stacks):
        assert stack.ipv6 is not None
        stack.ipv6.add_address(stack.interfaces[0], ip_bytes(f"2001:db8::{i + 1}"), 64)
    lan.run(3.0)     # DAD
    return lan


def solicitations_for(frames: list[bytes], target: bytes) -> int:
    count = 0
    for f in frames:
        eth, body = ethernet.parse(f)
        if eth.ethertype != ethernet.ETH_IPV6:
            continue
        h, payload = ipv6.parse(body)
        if h.next_header != ipv6.PROTO_ICMP6:
            continue
        hdr, rest = icmp6.parse(payload, h.src, h.dst)
        if hdr.type == ndp.NEIGHBOR_SOLICITATION and \
                ndp.parse(hdr, rest, h.src, h.dst, h.hop_limit).target == target:
            count += 1
    return count


def reported(stack: Stack, proto: int) -> list[tuple[int, int, int, int, int]]:
    """Record (source port, destination port, errno, type, code) of every failure
    reported to the transport ``proto`` over IPv6, before it decides what its
    sockets hear."""
    assert stack.ipv6 is not None
    seen: list[tuple[int, int, int, int, int]] = []
    handler = stack.ipv6.error_handlers[proto]

    def record(src: bytes, dst: bytes, inner: memoryview, err: int, icmp_type: int,
               icmp_code: int, mtu: int) -> None:
        seen.append((int.from_bytes(inner[0:2], "big"), int.from_bytes(inner[2:4], "big"),
                     err, icmp_type, icmp_code))
        handler(src, dst, inner, err, icmp_type, icmp_code, mtu)

    stack.ipv6.error_handlers[proto] = record
    return seen


def test_ipv6_connect_to_a_silent_on_link_address_fails_with_ehostunreach() -> None:
    lan = lan6()
    stack = lan.stacks[0]
    sent = lan.capture(0)
    assert stack.tcp is not None
    conn: Any = stack.tcp.connect(NOBODY6, 80)
    cfg = stack.config
    # Within the neighbour discovery timeout (three solicitations a second
    # apart), long before TCP would give up on its own.
    give_up = cfg.ndp_multicast_solicit * cfg.ndp_retrans + 0.5
    assert lan.run_until(lambda: conn.state == "CLOSED", give_up)
    assert conn.error == errno.EHOSTUNREACH
    assert solicitations_for(sent, NOBODY6) == cfg.ndp_multicast_solicit
    assert stack.counters["ndp.resolution_failed"] == 1
    assert stack.counters["ndp.pending_dropped"] >= 1    # the SYN (and any retransmission)
    assert stack.counters["tcp.icmp_errors"] == 1
    assert NOBODY6 not in {n for c in stack.ipv6.ndp.caches.values() for n in c}


def test_connected_udp_hears_the_failure_as_linux_does() -> None:
    """The failure reaches UDP as ICMPv6 address unreachable (EHOSTUNREACH),
    which Linux's UDP (no IPV6_RECVERR) does not pass to the socket: the
    endpoint stays usable and the error is counted as soft."""
    lan = lan6()
    stack = lan.stacks[0]
    assert stack.udp is not None
    ep = stack.udp.open(bytes(16), 0)
    ep.connect(NOBODY6, 9)
    seen = reported(stack, 17)
    assert ep.send(b"one") == 0
    assert ep.send(b"two") == 0
    lan.run(5)
    port = ep.local[1]
    unreach = (errno.EHOSTUNREACH, icmp6.DEST_UNREACHABLE, icmp6.ADDRESS_UNREACHABLE)
    assert seen == [(port, 9, *unreach), (port, 9, *unreach)]
    assert stack.counters["ndp.pending_dropped"] == 2
    assert stack.counters["udp.icmp_error_soft"] == 2
    assert ep.take_error() is None
    assert ep.send(b"three") == 0


def test_a_failed_fragmented_datagram_is_reported_once_to_its_sender() -> None:
    """Only the first fragment names its sender: a later one's data (here
    spelling the ports of another connected endpoint) are never read as ports."""
    lan = lan6()
    stack = lan.stacks[0]
    assert stack.udp is not None
    bystander = stack.udp.open(bytes(16), 40000)
    bystander.connect(NOBODY6, 1234)
    sender = stack.udp.open(bytes(16), 40001)
    sender.connect(NOBODY6, 1234)
    payload = bytearray(3000)
    for off in range(1448, 3000, 8):      # ports 40000 -> 1234 inside later fragments
        payload[off:off + 4] = (40000).to_bytes(2, "big") + (1234).to_bytes(2, "big")
    seen = reported(stack, 17)
    assert sender.send(bytes(payload)) == 0
    lan.run(5)
    assert stack.counters["ipv6.tx_fragments"] == 3
    assert stack.counters["ndp.pending_dropped"] == 3
    assert [s[:2] for s in seen] == [(40001, 1234)]


def test_ipv4_failure_takes_the_same_path() -> None:
    """ARP's failure is the same code: counted waiting packets, host unreachable
    (ICMP 3/1) to the sender."""
    lan = make_lan(1, modules=MODULES)
    stack = lan.stacks[0]
    assert stack.tcp is not None
    conn: Any = stack.tcp.connect(NOBODY4, 80)
    assert lan.run_until(lambda: conn.state == "CLOSED", 3.5)
    assert conn.error == errno.EHOSTUNREACH
    assert stack.counters["arp.resolution_failed"] == 1
    assert stack.counters["arp.pending_dropped"] >= 1


def test_a_full_neighbour_cache_reports_at_once() -> None:
    """No room for a new entry (every one waits on resolution): the packet is
    reported at once instead of being queued."""
    lan = make_lan(1, modules=MODULES)
    stack = lan.stacks[0]
    stack.config.arp_cache_max = 2
    assert stack.ipv6 is not None
    stack.ipv6.add_address(stack.interfaces[0], ip_bytes("2001:db8::1"), 64)
    lan.run(3.0)
    assert stack.udp is not None
    for host in (0x90, 0x91):
        stack.udp.open(bytes(16), 0).sendto(b"x", ip_bytes(f"2001:db8::{host:x}"), 9)
    assert stack.tcp is not None
    conn: Any = stack.tcp.connect(NOBODY6, 80)
    lan.run(0.1)
    assert stack.counters["ndp.cache_full"] >= 1
    assert conn.state == "CLOSED" and conn.error == errno.EHOSTUNREACH
