"""Multicast memberships as a program sees them (tests/e2e/test_mcast_twin.py).

``go``: the option battery (joins, leaves, IP_MULTICAST_IF, *_MULTICAST_ALL,
the loops, MCAST_JOIN_GROUP, the per-socket limit, IPv4 source filters, on
UDP and TCP sockets of both families), then the receivers are set up and two datagrams are sent to
239.1.1.3:5402 (IP_MULTICAST_LOOP on, then off); the answer is ``ready``.
``collect``: what each receiver got, after the peer sent to its groups; the
answer is one JSON line {name: value}, a value being "ok", ``E<errno>``, an
option's value (bytes as hex), or a receiver's list of payloads.
"""

import json
import select
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

IP, IP6 = socket.IPPROTO_IP, socket.IPPROTO_IPV6
HOST = "192.0.2.2"
IP_MULTICAST_ALL, IPV6_MULTICAST_ALL = 49, 29
MCAST_JOIN_GROUP, MCAST_LEAVE_GROUP = 42, 45
UNBLOCK, BLOCK, ADD_SRC, DROP_SRC = 37, 38, 39, 40
MCAST_BLOCK, MCAST_UNBLOCK, MCAST_JOIN_SRC, MCAST_LEAVE_SRC = 43, 44, 46, 47
out: dict[str, Any] = {}


def res(tag: str, fn: Callable[[], Any]) -> None:
    try:
        value = fn()
        out[tag] = "ok" if value is None else (value.hex() if isinstance(value, bytes) else value)
    except OSError as exc:
        out[tag] = f"E{exc.errno}"


def mreq(group: str, addr: str = "0.0.0.0") -> bytes:
    return socket.inet_aton(group) + socket.inet_aton(addr)


def mreqn(group: str, addr: str, index: int) -> bytes:
    return mreq(group, addr) + struct.pack("@i", index)


def mreq6(group: str, index: int = 0) -> bytes:
    return socket.inet_pton(socket.AF_INET6, group) + struct.pack("@i", index)


def group_req(family: int, group: str, index: int = 0) -> bytes:
    if family == socket.AF_INET:
        sa = struct.pack("@H", family) + b"\0\0" + socket.inet_aton(group)
    else:
        sa = struct.pack("@H", family) + bytes(6) + socket.inet_pton(family, group)
    return struct.pack("@I", index) + bytes(4) + sa.ljust(128, b"\0")


def battery(tag: str, s: socket.socket, v6: bool) -> None:
    set_ = s.setsockopt
    res(f"{tag}.add", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP, mreq("239.2.0.1", HOST)))
    res(f"{tag}.add_again", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP, mreq("239.2.0.1", HOST)))
    res(f"{tag}.add_mreqn_same", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                              mreqn("239.2.0.1", HOST, 0)))
    res(f"{tag}.drop", lambda: set_(IP, socket.IP_DROP_MEMBERSHIP, mreq("239.2.0.1", HOST)))
    res(f"{tag}.drop_again", lambda: set_(IP, socket.IP_DROP_MEMBERSHIP,
                                          mreq("239.2.0.1", HOST)))
    res(f"{tag}.add_unicast", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP, mreq("10.0.0.1", HOST)))
    res(f"{tag}.add_short", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                         mreq("239.2.0.2", HOST)[:7]))
    res(f"{tag}.add_9", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                     mreq("239.2.0.2", HOST) + b"\0"))
    res(f"{tag}.drop_by_group", lambda: set_(IP, socket.IP_DROP_MEMBERSHIP, mreq("239.2.0.2")))
    res(f"{tag}.add_int", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP, 5))
    res(f"{tag}.add_bad_index", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                             mreqn("239.2.0.3", "0.0.0.0", 99)))
    res(f"{tag}.add_bad_addr", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                            mreq("239.2.0.3", "10.9.9.9")))
    res(f"{tag}.add_no_route", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP, mreq("239.2.0.3")))
    res(f"{tag}.drop_no_route", lambda: set_(IP, socket.IP_DROP_MEMBERSHIP, mreq("239.2.0.3")))
    res(f"{tag}.add_all_hosts", lambda: set_(IP, socket.IP_ADD_MEMBERSHIP,
                                             mreq("224.0.0.1", HOST)))
    res(f"{tag}.get_add", lambda: s.getsockopt(IP, socket.IP_ADD_MEMBERSHIP, 8))
    res(f"{tag}.mcif", lambda: s.getsockopt(IP, socket.IP_MULTICAST_IF))
    res(f"{tag}.mcif4", lambda: s.getsockopt(IP, socket.IP_MULTICAST_IF, 4))
    res(f"{tag}.mcif_set", lambda: set_(IP, socket.IP_MULTICAST_IF, socket.inet_aton(HOST)))
    res(f"{tag}.mcif_get", lambda: s.getsockopt(IP, socket.IP_MULTICAST_IF, 12))
    res(f"{tag}.mcif_mreq", lambda: set_(IP, socket.IP_MULTICAST_IF, mreq("0.0.0.0", HOST)))
    res(f"{tag}.mcif_get2", lambda: s.getsockopt(IP, socket.IP_MULTICAST_IF, 4))
    res(f"{tag}.mcif_bad_addr", lambda: set_(IP, socket.IP_MULTICAST_IF,
                                             socket.inet_aton("10.9.9.9")))
    res(f"{tag}.mcif_bad_index", lambda: set_(IP, socket.IP_MULTICAST_IF,
                                              mreqn("0.0.0.0", "0.0.0.0", 99)))
    res(f"{tag}.mcif_short", lambda: set_(IP, socket.IP_MULTICAST_IF, b"\0\0\0"))
    res(f"{tag}.mcif_int", lambda: set_(IP, socket.IP_MULTICAST_IF, 1))
    res(f"{tag}.mcif_any", lambda: set_(IP, socket.IP_MULTICAST_IF, bytes(4)))
    res(f"{tag}.mcif_get3", lambda: s.getsockopt(IP, socket.IP_MULTICAST_IF))
    res(f"{tag}.mcall", lambda: s.getsockopt(IP, IP_MULTICAST_ALL))
    res(f"{tag}.mcall_0", lambda: set_(IP, IP_MULTICAST_ALL, 0))
    res(f"{tag}.mcall_get", lambda: s.getsockopt(IP, IP_MULTICAST_ALL))
    res(f"{tag}.mcall_5", lambda: set_(IP, IP_MULTICAST_ALL, 5))
    res(f"{tag}.mcall_byte", lambda: set_(IP, IP_MULTICAST_ALL, b"\1"))
    res(f"{tag}.mcall_get2", lambda: s.getsockopt(IP, IP_MULTICAST_ALL))
    res(f"{tag}.loop_5", lambda: set_(IP, socket.IP_MULTICAST_LOOP, 5))
    res(f"{tag}.loop_get", lambda: s.getsockopt(IP, socket.IP_MULTICAST_LOOP))
    res(f"{tag}.mcast_join4", lambda: set_(IP, MCAST_JOIN_GROUP,
                                           group_req(socket.AF_INET, "239.2.0.4")))
    res(f"{tag}.mcast_join4_v6", lambda: set_(IP, MCAST_JOIN_GROUP,
                                              group_req(socket.AF_INET6, "ff15::9")))
    res(f"{tag}.mcast_join4_short", lambda: set_(IP, MCAST_JOIN_GROUP,
                                                 group_req(socket.AF_INET, "239.2.0.4")[:100]))
    if not v6:
        return
    res(f"{tag}.join6", lambda: set_(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::2:1")))
    res(f"{tag}.join6_again", lambda: set_(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::2:1")))
    res(f"{tag}.leave6", lambda: set_(IP6, socket.IPV6_LEAVE_GROUP, mreq6("ff15::2:1")))
    res(f"{tag}.leave6_again", lambda: set_(IP6, socket.IPV6_LEAVE_GROUP, mreq6("ff15::2:1")))
    res(f"{tag}.join6_unicast", lambda: set_(IP6, socket.IPV6_JOIN_GROUP,
                                             mreq6("2001:db8::7")))
    res(f"{tag}.join6_short", lambda: set_(IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::2:2")[:19]))
    res(f"{tag}.join6_long", lambda: set_(IP6, socket.IPV6_JOIN_GROUP,
                                          mreq6("ff15::2:2") + b"\0"))
    res(f"{tag}.join6_bad_index", lambda: set_(IP6, socket.IPV6_JOIN_GROUP,
                                               mreq6("ff15::2:3", 99)))
    res(f"{tag}.join6_int", lambda: set_(IP6, socket.IPV6_JOIN_GROUP, 1))
    res(f"{tag}.get_join6", lambda: s.getsockopt(IP6, socket.IPV6_JOIN_GROUP))
    res(f"{tag}.mcif6", lambda: s.getsockopt(IP6, socket.IPV6_MULTICAST_IF))
    res(f"{tag}.mcif6_99", lambda: set_(IP6, socket.IPV6_MULTICAST_IF, 99))
    res(f"{tag}.mcif6_neg", lambda: set_(IP6, socket.IPV6_MULTICAST_IF, -1))
    res(f"{tag}.mcif6_short", lambda: set_(IP6, socket.IPV6_MULTICAST_IF, b"\1\0\0"))
    res(f"{tag}.mcif6_0", lambda: set_(IP6, socket.IPV6_MULTICAST_IF, 0))
    res(f"{tag}.mcall6", lambda: s.getsockopt(IP6, IPV6_MULTICAST_ALL))
    res(f"{tag}.mcall6_5", lambda: set_(IP6, IPV6_MULTICAST_ALL, 5))
    res(f"{tag}.mcall6_get", lambda: s.getsockopt(IP6, IPV6_MULTICAST_ALL))
    res(f"{tag}.mcall6_byte", lambda: set_(IP6, IPV6_MULTICAST_ALL, b"\0"))
    res(f"{tag}.loop6_5", lambda: set_(IP6, socket.IPV6_MULTICAST_LOOP, 5))
    res(f"{tag}.mcast_join6", lambda: set_(IP6, MCAST_JOIN_GROUP,
                                           group_req(socket.AF_INET6, "ff15::2:4")))
    res(f"{tag}.mcast_join6_again", lambda: set_(IP6, MCAST_JOIN_GROUP,
                                                 group_req(socket.AF_INET6, "ff15::2:4")))
    res(f"{tag}.mcast_leave6", lambda: set_(IP6, MCAST_LEAVE_GROUP,
                                            group_req(socket.AF_INET6, "ff15::2:4")))
    res(f"{tag}.mcast_join6_v4", lambda: set_(IP6, MCAST_JOIN_GROUP,
                                              group_req(socket.AF_INET, "239.2.0.5")))


def msrc(group: str, src: str, addr: str = HOST) -> bytes:
    return socket.inet_aton(group) + socket.inet_aton(addr) + socket.inet_aton(src)


def group_source_req(group: str, src: str, index: int = 0, fam: int = socket.AF_INET) -> bytes:
    return group_req(socket.AF_INET, group, index) + group_req(fam, src)[8:]


def ssm(tag: str, s: socket.socket) -> None:
    """Source filters (RFC 3678), the kernel's rules for each."""
    set_ = s.setsockopt
    G = "239.4.0.1"
    steps: list[tuple[str, int, bytes]] = [
        ("add", ADD_SRC, msrc(G, "192.0.2.9")), ("add_again", ADD_SRC, msrc(G, "192.0.2.9")),
        ("add2", ADD_SRC, msrc(G, "192.0.2.10")),
        ("asm_on_include", socket.IP_ADD_MEMBERSHIP, mreq(G, HOST)),
        ("block_on_include", BLOCK, msrc(G, "192.0.2.11")),
        ("unblock_on_include", UNBLOCK, msrc(G, "192.0.2.9")),
        ("drop_absent", DROP_SRC, msrc(G, "192.0.2.99")),
        ("drop", DROP_SRC, msrc(G, "192.0.2.9")), ("drop_last", DROP_SRC, msrc(G, "192.0.2.10")),
        ("left", socket.IP_DROP_MEMBERSHIP, mreq(G, HOST)),
        ("short", ADD_SRC, msrc(G, "192.0.2.9")[:11]),
        ("long", ADD_SRC, msrc(G, "192.0.2.9") + b"\0"),
        ("unicast", ADD_SRC, msrc("10.1.1.1", "192.0.2.9")),
        ("bad_addr", ADD_SRC, msrc(G, "192.0.2.9", "10.9.9.9")),
        ("block_no_member", BLOCK, msrc("239.4.0.2", "192.0.2.9")),
        ("asm", socket.IP_ADD_MEMBERSHIP, mreq("239.4.0.2", HOST)),
        ("block", BLOCK, msrc("239.4.0.2", "192.0.2.9")),
        ("block_again", BLOCK, msrc("239.4.0.2", "192.0.2.9")),
        ("add_on_exclude", ADD_SRC, msrc("239.4.0.2", "192.0.2.10")),
        ("unblock", UNBLOCK, msrc("239.4.0.2", "192.0.2.9")),
        ("unblock_again", UNBLOCK, msrc("239.4.0.2", "192.0.2.9")),
        ("add_after_unblock", ADD_SRC, msrc("239.4.0.2", "192.0.2.10")),
        ("mjoin", MCAST_JOIN_SRC, group_source_req("239.4.0.3", "192.0.2.9")),
        ("mjoin_v6src", MCAST_JOIN_SRC, group_source_req("239.4.0.3", "::1", 0,
                                                          socket.AF_INET6)),
        ("mjoin_short", MCAST_JOIN_SRC, group_source_req("239.4.0.3", "192.0.2.9")[:200]),
        ("mleave", MCAST_LEAVE_SRC, group_source_req("239.4.0.3", "192.0.2.9")),
        ("mleave_again", MCAST_LEAVE_SRC, group_source_req("239.4.0.3", "192.0.2.9")),
        ("mblock_no_member", MCAST_BLOCK, group_source_req("239.4.0.4", "192.0.2.9")),
        ("munblock_no_member", MCAST_UNBLOCK, group_source_req("239.4.0.4", "192.0.2.9")),
    ]
    for name, opt, value in steps:
        res(f"{tag}.ssm.{name}", lambda opt=opt, value=value: set_(IP, opt, value))
    for i in range(12):
        try:
            set_(IP, ADD_SRC, msrc("239.4.0.5", f"192.0.2.{i + 1}"))
        except OSError as exc:
            out[f"{tag}.ssm.limit"] = [i, f"E{exc.errno}"]
            break


def limit() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(25):
            try:
                s.setsockopt(IP, socket.IP_ADD_MEMBERSHIP, mreq(f"239.3.0.{i}", HOST))
            except OSError as exc:
                out["limit"] = [i, f"E{exc.errno}"]
                return
        out["limit"] = "none"


def receiver(fam: int, addr: str, port: int, *opts: tuple[int, int, Any]) -> socket.socket:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for level, opt, value in opts:
        s.setsockopt(level, opt, value)
    s.bind((addr, port))
    return s


def main() -> None:
    sys.stdin.readline()                                # go
    for tag, fam, kind in (("udp4", socket.AF_INET, socket.SOCK_DGRAM),
                           ("tcp4", socket.AF_INET, socket.SOCK_STREAM),
                           ("udp6", socket.AF_INET6, socket.SOCK_DGRAM),
                           ("tcp6", socket.AF_INET6, socket.SOCK_STREAM)):
        with socket.socket(fam, kind) as s:
            battery(tag, s, fam == socket.AF_INET6)
    limit()
    for tag, fam, kind in (("udp4", socket.AF_INET, socket.SOCK_DGRAM),
                           ("tcp4", socket.AF_INET, socket.SOCK_STREAM),
                           ("udp6", socket.AF_INET6, socket.SOCK_DGRAM)):
        with socket.socket(fam, kind) as s:
            ssm(tag, s)
    join = (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.1", HOST))
    rx = {
        "joined": receiver(socket.AF_INET, "", 5400, join),
        "all": receiver(socket.AF_INET, "", 5400),
        "not_all": receiver(socket.AF_INET, "", 5400, (IP, IP_MULTICAST_ALL, 0)),
        "bound_group": receiver(socket.AF_INET, "239.1.1.1", 5400),
        "other_group": receiver(socket.AF_INET, "239.1.1.9", 5400),
        "dropped": receiver(socket.AF_INET, "", 5401,
                            (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.2", HOST)),
                            (IP, socket.IP_DROP_MEMBERSHIP, mreq("239.1.1.2", HOST))),
        "looped": receiver(socket.AF_INET, "", 5402,
                           (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.3", HOST))),
        "source_peer": receiver(socket.AF_INET, "", 5403,
                                (IP, ADD_SRC, msrc("239.1.1.4", "192.0.2.1"))),
        "source_other": receiver(socket.AF_INET, "", 5404,
                                 (IP, ADD_SRC, msrc("239.1.1.5", "192.0.2.99"))),
        "blocked": receiver(socket.AF_INET, "", 5405,
                            (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.6", HOST)),
                            (IP, BLOCK, msrc("239.1.1.6", "192.0.2.1"))),
        "blocked_other": receiver(socket.AF_INET, "", 5406,
                                  (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.7", HOST)),
                                  (IP, BLOCK, msrc("239.1.1.7", "192.0.2.99"))),
        "dual_joined": receiver(socket.AF_INET6, "::", 5408,
                                (IP, socket.IP_ADD_MEMBERSHIP, mreq("239.1.1.10", HOST))),
        "dual_not_joined": receiver(socket.AF_INET6, "::", 5408),
        "joined6": receiver(socket.AF_INET6, "::", 5410,
                            (IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::1:1"))),
        "all6": receiver(socket.AF_INET6, "::", 5410),
        "not_all6": receiver(socket.AF_INET6, "::", 5410, (IP6, IPV6_MULTICAST_ALL, 0)),
        "left6": receiver(socket.AF_INET6, "::", 5411,
                          (IP6, socket.IPV6_JOIN_GROUP, mreq6("ff15::1:2")),
                          (IP6, socket.IPV6_LEAVE_GROUP, mreq6("ff15::1:2"))),
    }
    rx["connected_elsewhere"] = receiver(socket.AF_INET, "", 5400, join)
    rx["connected_elsewhere"].connect(("192.0.2.99", 9))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.setsockopt(IP, socket.IP_MULTICAST_IF, socket.inet_aton(HOST))
        tx.sendto(b"loop-on", ("239.1.1.3", 5402))
        tx.setsockopt(IP, socket.IP_MULTICAST_LOOP, 0)
        tx.sendto(b"loop-off", ("239.1.1.3", 5402))
    print("ready", flush=True)
    sys.stdin.readline()                                # collect
    got: dict[str, list[str]] = {name: [] for name in rx}
    by_sock = {s: name for name, s in rx.items()}
    while True:
        ready = select.select(list(by_sock), [], [], 1.5)[0]
        if not ready:
            break
        for s in ready:
            got[by_sock[s]].append(s.recv(2048).decode())
    for name, payloads in got.items():
        out[f"rx.{name}"] = sorted(payloads)
    for s in rx.values():
        s.close()
    print(json.dumps(out), flush=True)


main()
