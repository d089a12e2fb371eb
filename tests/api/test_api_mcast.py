"""Multicast groups for sockets between stacks in memory (real time, threads):
joins, leaves, delivery by membership and IP_MULTICAST_ALL, IP_MULTICAST_LOOP,
the memberships freed at close; IPv4 and IPv6."""

from __future__ import annotations

import socket as std

import pytest
from apilan import Lan

G = "239.1.2.3"


def mreq(group: str, addr: str = "0.0.0.0") -> bytes:
    return std.inet_aton(group) + std.inet_aton(addr)


def test_join_receive_leave(lan: Lan) -> None:
    a = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    b = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    with a, b:
        b.bind(("", 5353))
        b.setsockopt(std.IPPROTO_IP, std.IP_ADD_MEMBERSHIP, mreq(G, lan.ip_b))
        b.settimeout(5)
        a.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_IF, std.inet_aton(lan.ip_a))
        a.sendto(b"hello", (G, 5353))
        data, src = b.recvfrom(2048)
        assert data == b"hello" and src[0] == lan.ip_a
        b.setsockopt(std.IPPROTO_IP, std.IP_DROP_MEMBERSHIP, mreq(G, lan.ip_b))
        a.sendto(b"gone", (G, 5353))
        b.settimeout(0.3)
        with pytest.raises(TimeoutError):
            b.recvfrom(2048)


def test_multicast_if_address_is_the_source_and_loop_is_real(lan: Lan) -> None:
    """IP_MULTICAST_IF by a second address of the interface: an unbound
    socket's group datagrams leave from it (Linux's mc_addr); one bound to an
    address keeps its own. IP_MULTICAST_LOOP (on by default) delivers a copy
    to this host's member sockets, and not once turned off."""
    second = "192.0.2.11"
    lan.runtime.call(lambda: lan.a.add_address(lan.a.interfaces[0], f"{second}/24"))
    rx = lan.net_b.socket(std.AF_INET, std.SOCK_DGRAM)
    here = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    tx = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    bound = lan.net_a.socket(std.AF_INET, std.SOCK_DGRAM)
    with rx, here, tx, bound:
        rx.bind(("", 5454))
        rx.setsockopt(std.IPPROTO_IP, std.IP_ADD_MEMBERSHIP, mreq(G, lan.ip_b))
        here.bind(("", 5454))
        here.setsockopt(std.IPPROTO_IP, std.IP_ADD_MEMBERSHIP, mreq(G, lan.ip_a))
        for s in (rx, here):
            s.settimeout(5)
        tx.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_IF, std.inet_aton(second))
        assert tx.getsockopt(std.IPPROTO_IP, std.IP_MULTICAST_IF, 4) == std.inet_aton(second)
        tx.sendto(b"from-second", (G, 5454))
        assert rx.recvfrom(2048)[1][0] == second
        assert here.recvfrom(2048) == (b"from-second", (second, tx.getsockname()[1]))
        bound.bind((lan.ip_a, 0))
        bound.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_IF, std.inet_aton(second))
        bound.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_LOOP, 0)
        bound.sendto(b"from-bound", (G, 5454))
        assert rx.recvfrom(2048)[1][0] == lan.ip_a
        here.settimeout(0.3)
        with pytest.raises(TimeoutError):
            here.recvfrom(2048)
