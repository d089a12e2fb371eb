"""Multicast memberships as Linux gives them: one program (programs_mcast.py)
joins and leaves groups, sets the multicast options (errors and values), and
receives what the peer sends to its groups, on the kernel and under femtotcp
(in-process, and attached to a ``femtotcp serve``); the three transcripts are
compared, and the peer checks what the program sent to a group it joined.

What the program receives shows the delivery rules: a socket that joined;
one on the wildcard that did not, with IP_MULTICAST_ALL on (Linux's default)
and off; one bound to the group and one to another group; one that joined
and dropped; its own datagram looped back with IP_MULTICAST_LOOP on and not
with it off; IPv6 joined and left; IPv4 source filters: a socket that
joined the peer as its source and one that joined another source (the
interface's filter drops the peer's datagram), one that blocked the peer
and one that blocked another source. The battery covers the source options'
errors too (IP_ADD/DROP_SOURCE_MEMBERSHIP, IP_BLOCK/UNBLOCK_SOURCE,
MCAST_*_SOURCE*, the 10-source limit). AF_INET6 sockets that did and did
not join an IPv4 group (their IP_MULTICAST_ALL is 0)."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import twin

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "programs_mcast.py"
IPV6 = ("--ipv6", "2001:db8::2/64")
PEER6 = "2001:db8::1"


def _drive(t: twin.Twin) -> tuple[dict[str, Any], list[bytes]]:
    dev = "p0" if t.name == "linux" else twin.TAP
    t.peer_ns.ip("-6", "addr", "add", f"{PEER6}/64", "dev", dev, "nodad")
    with t.peer():
        index = socket.if_nametoindex(dev)
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("", 5402))
        listener.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton("239.1.1.3") + socket.inet_aton(twin.PEER))
        listener.settimeout(5)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(twin.PEER))
        tx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        tx6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    try:
        assert t.ask("go", timeout=120) == "ready"
        got = []
        for _ in range(2):
            try:
                got.append(listener.recv(2048))
            except TimeoutError:
                break
        tx.sendto(b"one", ("239.1.1.1", 5400))
        tx.sendto(b"two", ("239.1.1.2", 5401))
        for port, group in ((5403, "239.1.1.4"), (5404, "239.1.1.5"), (5405, "239.1.1.6"),
                            (5406, "239.1.1.7"), (5408, "239.1.1.10")):
            tx.sendto(f"src{port}".encode(), (group, port))
        tx6.sendto(b"six", ("ff15::1:1", 5410))
        tx6.sendto(b"gone6", ("ff15::1:2", 5411))
        answer: dict[str, Any] = json.loads(t.ask("collect", timeout=60))
        return answer, got
    finally:
        for s in (listener, tx, tx6):
            s.close()


def test_memberships_as_on_linux_in_process_and_attached() -> None:
    def kernel() -> tuple[dict[str, Any], list[bytes]]:
        with twin.on_kernel(PROGRAM) as k:
            return _drive(k)

    def femto(attached: bool) -> tuple[dict[str, Any], list[bytes]]:
        with twin.on_femtotcp(PROGRAM, attached=attached, stack_args=IPV6) as f:
            return _drive(f)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.submit(kernel), pool.submit(femto, False), pool.submit(femto, True)
        (linux, linux_sent), (inproc, inproc_sent), (attached, attached_sent) = (
            run.result() for run in runs)
    # The kernel's own run is the reference; what it shows is what is asserted.
    assert linux["rx.joined"] == linux["rx.all"] == linux["rx.bound_group"] == ["one"]
    assert linux["rx.not_all"] == linux["rx.other_group"] == linux["rx.dropped"] == []
    assert linux["rx.looped"] == ["loop-on"] and linux["rx.joined6"] == ["six"]
    assert linux["rx.left6"] == [] and linux["limit"] == [20, "E105"]
    assert linux["rx.source_peer"] == ["src5403"] and linux["rx.source_other"] == []
    assert linux["rx.blocked"] == [] and linux["rx.blocked_other"] == ["src5406"]
    assert linux["udp4.ssm.limit"] == [10, "E105"]
    # An AF_INET6 socket takes IPv4 groups it joined, and no others: its
    # IP_MULTICAST_ALL is 0 (Linux sets it on AF_INET sockets only).
    assert linux["rx.dual_joined"] == ["src5408"] and linux["rx.dual_not_joined"] == []
    assert linux["rx.all6"] == ["six"] and linux["rx.not_all6"] == []
    assert linux["rx.connected_elsewhere"] == []
    assert linux_sent == [b"loop-on", b"loop-off"]
    for name, ours, sent in (("in-process", inproc, inproc_sent),
                             ("attached", attached, attached_sent)):
        diff = {k: (ours.get(k, "missing"), v) for k, v in linux.items() if ours.get(k) != v}
        diff.update({k: (ours[k], "missing") for k in ours.keys() - linux.keys()})
        assert not diff, f"{name} differs from Linux (femtotcp, linux): {diff}"
        assert sent == linux_sent, name


