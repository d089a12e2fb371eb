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
