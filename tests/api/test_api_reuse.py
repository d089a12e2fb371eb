"""Sharing an address and port as Linux lets sockets (two stacks in memory):

- UDP with SO_REUSEADDR on every socket: each binds; unicast goes to the last
  bound, a broadcast to all of them; without it on one: EADDRINUSE;
- UDP and TCP with SO_REUSEPORT on every socket: each binds (TCP: listens);
  datagrams and connections spread over them by their source, the same
  source always to the same socket; one without it: EADDRINUSE;
- closing one sharer leaves the others serving; ``ctl sockets`` lists all.
"""

from __future__ import annotations

import errno
import select
import socket as std

import pytest
from apilan import Lan

from femtotcp.api import socket as fsock
from femtotcp.control.gather import _udp_rows


def _udp(lan: Lan, opt: int | None, net: str = "b") -> fsock.socket:
    s = (lan.net_b if net == "b" else lan.net_a).socket(std.AF_INET, std.SOCK_DGRAM)
    s.settimeout(5)
    if opt is not None:
        s.setsockopt(std.SOL_SOCKET, opt, 1)
    return s


def test_udp_reuseaddr_shares_a_port(lan: Lan) -> None:
    first, second = _udp(lan, std.SO_REUSEADDR), _udp(lan, std.SO_REUSEADDR)
    with first, second, _udp(lan, None, "a") as sender:
        first.bind(("", 5300))
        second.bind(("", 5300))
        with _udp(lan, None) as plain, pytest.raises(OSError) as exc:
            plain.bind(("", 5300))
        assert exc.value.errno == errno.EADDRINUSE
        sender.sendto(b"unicast", (lan.ip_b, 5300))
        assert second.recv(100) == b"unicast"          # the last bound, as Linux
        sender.setsockopt(std.SOL_SOCKET, std.SO_BROADCAST, 1)
        sender.sendto(b"to all", ("192.0.2.255", 5300))
        assert first.recv(100) == b"to all" and second.recv(100) == b"to all"
        rows = [r for r in lan.net_b.call(lambda: _udp_rows(lan.b))
                if r["local_port"] == 5300]
        assert len(rows) == 2
        second.close()
        sender.sendto(b"after", (lan.ip_b, 5300))
        assert first.recv(100) == b"after"


def test_udp_reuseport_spreads_by_source(lan: Lan) -> None:
    group = [_udp(lan, std.SO_REUSEPORT) for _ in range(3)]
    senders = [_udp(lan, None, "a") for _ in range(12)]
    try:
        for s in group:
            s.bind(("", 5301))
        with _udp(lan, std.SO_REUSEADDR) as other, pytest.raises(OSError) as exc:
            other.bind(("", 5301))
        assert exc.value.errno == errno.EADDRINUSE
        owner: dict[int, int] = {}
        for rounds in range(2):
            for i, sender in enumerate(senders):
                sender.sendto(b"%d" % i, (lan.ip_b, 5301))
                ready = select.select(group, [], [], 5)[0]
                assert len(ready) == 1
                k = group.index(ready[0])
                assert group[k].recv(100) == b"%d" % i
                if rounds:
                    assert owner[i] == k               # the same source, the same socket
                owner[i] = k
        assert len(set(owner.values())) > 1            # spread over the group
    finally:
        for s in group + senders:
            s.close()


def test_tcp_reuseport_listeners_share_connections(lan: Lan) -> None:
    listeners = []
    for _ in range(2):
        lst = lan.net_b.socket(std.AF_INET, std.SOCK_STREAM)
        lst.setsockopt(std.SOL_SOCKET, std.SO_REUSEPORT, 1)
        lst.bind(("", 8600))
        lst.listen()
        listeners.append(lst)
    try:
        plain = lan.net_b.socket(std.AF_INET, std.SOCK_STREAM)
        with plain, pytest.raises(OSError) as exc:
            plain.bind(("", 8600))
        assert exc.value.errno == errno.EADDRINUSE
        served = [0, 0]
        for i in range(16):
            with lan.net_a.create_connection((lan.ip_b, 8600), timeout=5) as cli:
                cli.sendall(b"conn %d" % i)
                ready = select.select(listeners, [], [], 5)[0]
                assert len(ready) == 1
                conn, _ = ready[0].accept()
                with conn:
                    conn.settimeout(5)
                    assert conn.recv(100) == b"conn %d" % i
                served[listeners.index(ready[0])] += 1
        assert sum(served) == 16 and all(served)       # each took some
        listeners.pop().close()
        with lan.net_a.create_connection((lan.ip_b, 8600), timeout=5) as cli:
            conn, _ = listeners[0].accept()
            conn.close()
    finally:
        for lst in listeners:
            lst.close()


def test_datagrams_to_a_group_leave_with_the_multicast_ttl(lan: Lan) -> None:
    """A datagram to a multicast group goes with TTL 1 (Linux's default
    IP_MULTICAST_TTL: it stays on the link), or the TTL IP_MULTICAST_TTL sets;
    unicast keeps IP_TTL's."""
    seen: list[tuple[bytes, int]] = []

    def capture(frame: bytes, outbound: bool) -> None:
        if outbound and frame[12:14] == b"\x08\x00" and frame[23] == 17:
            seen.append((frame[30:34], frame[22]))      # destination, TTL

    lan.a.interfaces[0].device.add_capture(capture)
    # A route for the groups (as Linux, no route to a group is ENETUNREACH).
    lan.net_a.call(lambda: lan.a.add_route("224.0.0.0/4", iface=lan.a.interfaces[0]))
    with _udp(lan, None, "a") as s:
        s.sendto(b"m", ("224.0.0.251", 5353))
        s.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_TTL, 4)
        s.sendto(b"m", ("224.0.0.251", 5353))
        s.setsockopt(std.IPPROTO_IP, std.IP_TTL, 9)
        s.sendto(b"u", (lan.ip_b, 9))
    lan.net_a.call(lambda: None)
    group = std.inet_aton("224.0.0.251")
    assert [ttl for dst, ttl in seen if dst == group] == [1, 4]
    assert [ttl for dst, ttl in seen if dst == std.inet_aton(lan.ip_b)] == [9]


@pytest.mark.parametrize("old_reuses", [False, True])
def test_a_restarted_server_binds_beside_its_old_connections_as_on_linux(
        lan: Lan, old_reuses: bool) -> None:
    """A server's accepted connection outlives its listener. A new listener
    with SO_REUSEADDR binds the port only when the old listener had it too
    (its connections inherit it, Linux's sk_reuse): else EADDRINUSE."""
    old = lan.net_b.socket(std.AF_INET, std.SOCK_STREAM)
    if old_reuses:
        old.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    old.bind(("", 8610))
    old.listen()
    cli = lan.net_a.create_connection((lan.ip_b, 8610), timeout=5)
    conn, _ = old.accept()
    old.close()
    new = lan.net_b.socket(std.AF_INET, std.SOCK_STREAM)
    new.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    try:
        if old_reuses:
            new.bind(("", 8610))
            new.listen()
        else:
            with pytest.raises(OSError) as exc:
                new.bind(("", 8610))
            assert exc.value.errno == errno.EADDRINUSE
    finally:
        for s in (new, conn, cli):
            s.close()
