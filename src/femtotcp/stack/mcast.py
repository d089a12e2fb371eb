"""Sockets' multicast memberships (RFC 3678's API, as Linux has it) and an
interface's filter state for a group (RFC 3376 3.2).

A socket joins a group on an interface (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP,
MCAST_JOIN_GROUP: any source, EXCLUDE {}; IPv4 also source-specific:
IP_ADD_SOURCE_MEMBERSHIP, INCLUDE {sources}, and IP_BLOCK_SOURCE on an
any-source membership, EXCLUDE {sources}); the interface is a member while at
least one socket holds the group (``Ipv4.join``/``Ipv6.join`` count the users;
IPv4's ``IfGroup`` also counts the sources, from which its filter mode and
source list follow), and IGMP and MLD report the interface's state. A group
datagram reaches a socket bound to its port and to the wildcard or the group
when the socket joined the group on the interface it came in by and its
filter passes the source, or, without such a membership, when its
IP_MULTICAST_ALL (IPv4) or IPV6_MULTICAST_ALL (IPv6) is on (Linux's
ip_mc_sf_allow and inet6_mc_check). The errors are Linux's (checked by
tests/e2e/test_mcast_twin.py): a group not multicast EINVAL, no interface by
that index, address or route ENODEV, a second join EADDRINUSE, a leave
without a join EADDRNOTAVAIL, more than igmp_max_memberships (20) IPv4
groups ENOBUFS, more IPv6 ones than the socket's option memory holds ENOMEM;
a source change without a join, or in the other filter mode, EINVAL, a
source twice or one not there EADDRNOTAVAIL, more than igmp_max_msf (10)
ENOBUFS.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

#: net.ipv4.igmp_max_memberships (Linux's default): IPv4 groups per socket.
MAX_GROUPS4 = 20
#: IPv6 groups per socket: what Linux 6.18's default optmem_max (128 KiB)
#: holds of its ipv6_mc_socklist entries; the next join is ENOMEM.
MAX_GROUPS6 = 2340
#: net.ipv4.igmp_max_msf: sources per socket and group.
MAX_SOURCES = 10

#: A filter state: (INCLUDE mode?, sources). A group nobody holds is INCLUDE {}.
State = tuple[bool, frozenset[bytes]]
NO_STATE: State = (True, frozenset())

ANY4 = b"\0\0\0\0"


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def is_group(addr: bytes) -> bool:
    """An IPv4 (224/4) or IPv6 (ff00::/8) multicast address."""
    return 224 <= addr[0] <= 239 if len(addr) == 4 else addr[0] == 0xFF


class IfGroup:
    """An interface's membership of one IPv4 group (Linux's ip_mc_list): the
    users holding it, how many of them are in EXCLUDE mode, and per source
    how many INCLUDE and EXCLUDE users list it. The interface's state is
    EXCLUDE of the sources every EXCLUDE user lists and no INCLUDE one does
    when any user excludes, else INCLUDE of every source an INCLUDE user
    lists (RFC 3376 3.2)."""

    __slots__ = ("users", "excl", "src_in", "src_ex")

    def __init__(self) -> None:
        self.users = 0
        self.excl = 0
        self.src_in: dict[bytes, int] = {}
        self.src_ex: dict[bytes, int] = {}

    def add_user(self, include: bool) -> None:
        self.users += 1
        self.excl += not include

    def del_user(self, include: bool, sources: tuple[bytes, ...]) -> None:
        self.del_sources(include, sources)
        self.users -= 1
        self.excl -= not include

    def add_sources(self, include: bool, sources: tuple[bytes, ...]) -> None:
        counts = self.src_in if include else self.src_ex
        for src in sources:
            counts[src] = counts.get(src, 0) + 1

    def del_sources(self, include: bool, sources: tuple[bytes, ...]) -> None:
        counts = self.src_in if include else self.src_ex
        for src in sources:
            n = counts.get(src, 0) - 1
            if n > 0:
                counts[src] = n
            else:
                counts.pop(src, None)

    def state(self) -> State:
        if self.excl:
            return False, frozenset(s for s, n in self.src_ex.items()
                                    if n == self.excl and s not in self.src_in)
        return True, frozenset(self.src_in)

    def accepts(self, src: bytes) -> bool:
        """Whether the interface takes a datagram from ``src`` (ip_check_mc_rcu)."""
        if src in self.src_in or src in self.src_ex:
            return src in self.src_in or self.src_ex.get(src, 0) != self.excl
        return self.excl != 0


class Memberships:
    """One socket's groups: (group, ifindex) -> the interface address the
    program named (IPv4's imr_address, for a leave that names it; b"" else);
    per group its filter: ``include`` holds the INCLUDE-mode ones (absent:
    EXCLUDE, any source), ``sources`` their source lists; and its
    IP_MULTICAST_ALL / IPV6_MULTICAST_ALL (Linux: 1 on an AF_INET socket, 0
    for IPv4 on an AF_INET6 one; IPV6_MULTICAST_ALL 1)."""

    __slots__ = ("groups", "include", "sources", "all4", "all6")

    def __init__(self, v6: bool = False) -> None:
        self.groups: dict[tuple[bytes, int], bytes] = {}
        self.include: set[tuple[bytes, int]] = set()
        self.sources: dict[tuple[bytes, int], list[bytes]] = {}
        self.all4 = not v6
        self.all6 = True

    def allows(self, group: bytes, ifindex: int, src: bytes) -> bool:
        """Whether a datagram to ``group`` from ``src`` that came in by
        ``ifindex`` is this socket's (ip_mc_sf_allow, inet6_mc_check)."""
        key = (group, ifindex)
        if key not in self.groups:
            return self.all4 if len(group) == 4 else self.all6
        listed = src in self.sources.get(key, ())
        return listed if key in self.include else not listed

    def count(self, family_len: int) -> int:
        return sum(1 for g, _ in self.groups if len(g) == family_len)


def allows(ms: Memberships | None, group: bytes, ifindex: int, src: bytes,
           v6_socket: bool) -> bool:
    """``Memberships.allows`` for a socket that may have none (an endpoint the
    stack's services opened): Linux's defaults then."""
    if ms is None:
        return len(group) == 16 or not v6_socket
    return ms.allows(group, ifindex, src)


def find_iface(stack: Stack, group: bytes, ifindex: int, addr: bytes = ANY4
               ) -> Interface | None:
    """The interface a membership is on (ip_mc_find_dev, ipv6_sock_mc_join):
    by index, else by one of its IPv4 addresses, else the route to the group."""
    if ifindex:
        return next((i for i in stack.interfaces if i.index == ifindex), None)
    if len(group) == 4:
        if addr != ANY4:
            return stack.local_iface(addr) if stack.is_local(addr) else None
        route = stack.routes.lookup(group)
        return route.iface if route is not None else None
    ipv6 = stack.ipv6
    return ipv6.route_iface(group) if ipv6 is not None else None


def join(stack: Stack, ms: Memberships, group: bytes, ifindex: int = 0,
         addr: bytes = ANY4, include: bool = False) -> None:
    """The socket joins ``group`` (ip_mc_join_group, ipv6_sock_mc_join): any
    source, or (``include``, IPv4) no source yet, as IP_ADD_SOURCE_MEMBERSHIP
    begins (ip_mc_join_group_ssm)."""
    if not is_group(group):
        raise _err(errno.EINVAL)
    iface = find_iface(stack, group, ifindex, addr)
    if iface is None:
        raise _err(errno.ENODEV)
    key = (group, iface.index)
    if key in ms.groups:
        raise _err(errno.EADDRINUSE)
    if len(group) == 4 and ms.count(4) >= MAX_GROUPS4:
        raise _err(errno.ENOBUFS)
    if len(group) == 16 and ms.count(16) >= MAX_GROUPS6:
        raise _err(errno.ENOMEM)
    if len(group) == 4 and stack.ipv4 is not None:
        stack.ipv4.join(iface, group, include)
        if include:
            ms.include.add(key)
    elif len(group) == 16 and stack.ipv6 is not None:
        stack.ipv6.join(iface, group)
    else:
        raise _err(errno.ENODEV)
    ms.groups[key] = addr if len(group) == 4 else b""


def leave(stack: Stack, ms: Memberships, group: bytes, ifindex: int = 0,
          addr: bytes = ANY4) -> None:
    """The socket leaves ``group`` (ip_mc_leave_group: by index if given,
    else by the address if given, else its first membership of the group;
    ipv6_sock_mc_drop: on the interface given, else its first of the group)."""
    if len(group) == 16 and not is_group(group):
        raise _err(errno.EINVAL)
    if len(group) == 4 and not ifindex and addr == ANY4 and find_iface(stack, group, 0) is None:
        raise _err(errno.ENODEV)
    key = next((k for k, a in ms.groups.items() if k[0] == group and (
        k[1] == ifindex if ifindex else addr == ANY4 or a == addr)), None)
    if key is None:
        raise _err(errno.EADDRNOTAVAIL)
    _drop(stack, ms, key)


def _drop(stack: Stack, ms: Memberships, key: tuple[bytes, int]) -> None:
    """End one of the socket's memberships, with its filter."""
    group, ifindex = key
    del ms.groups[key]
    include = key in ms.include
    ms.include.discard(key)
    sources = tuple(ms.sources.pop(key, ()))
    iface = next((i for i in stack.interfaces if i.index == ifindex), None)
    if iface is None:
        return
    if len(group) == 4 and stack.ipv4 is not None:
        stack.ipv4.leave(iface, group, include, sources)
    elif stack.ipv6 is not None:
        stack.ipv6.leave(iface, group)


def source(stack: Stack, ms: Memberships, add: bool, include: bool, group: bytes,
           addr: bytes, src: bytes, ifindex: int = 0) -> None:
    """A source of an IPv4 membership's filter added or removed (Linux's
    ip_mc_source): IP_ADD/DROP_SOURCE_MEMBERSHIP in INCLUDE mode (``include``),
    IP_BLOCK/UNBLOCK_SOURCE in EXCLUDE mode. The membership must exist; a
    filter that has had sources keeps its mode (else EINVAL), one that never
    had any takes the mode asked; dropping the last INCLUDE source leaves the
    group."""
    ipv4 = stack.ipv4
    if not is_group(group) or ipv4 is None:
        raise _err(errno.EINVAL)
    iface = find_iface(stack, group, ifindex, addr)
    if iface is None:
        raise _err(errno.ENODEV)
    key = (group, iface.index)
    if key not in ms.groups:
        raise _err(errno.EINVAL)                  # must have a prior join
    mode = key in ms.include
    listed = ms.sources.get(key)
    if listed is not None and mode != include:
        # A filter that has had sources keeps its mode, even emptied (as Linux:
        # only a membership that never had any switches).
        raise _err(errno.EINVAL)
    if mode != include:                           # an empty filter changes mode
        ipv4.switch(iface, group, include)
        if include:
            ms.include.add(key)
        else:
            ms.include.discard(key)
    if not add:
        if not listed or src not in listed:
            raise _err(errno.EADDRNOTAVAIL)
        if len(listed) == 1 and include:          # INCLUDE {}: the group is left
            _drop(stack, ms, key)
            return
        listed.remove(src)
        ipv4.change_sources(iface, group, include, (src,), False)
        return
    if listed is not None and len(listed) >= MAX_SOURCES:
        raise _err(errno.ENOBUFS)
    if listed is not None and src in listed:
        raise _err(errno.EADDRNOTAVAIL)
    ms.sources.setdefault(key, []).append(src)
    ipv4.change_sources(iface, group, include, (src,), True)


def drop_all(stack: Stack, ms: Memberships) -> None:
    """The socket closed: every membership it held ends (ip_mc_drop_socket)."""
    for key in list(ms.groups):
        _drop(stack, ms, key)
