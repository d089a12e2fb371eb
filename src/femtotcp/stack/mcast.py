"""Sockets' multicast memberships (RFC 3678's any-source API, as Linux has it).

A socket joins a group on an interface (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP,
MCAST_JOIN_GROUP); the interface becomes a member while at least one socket
holds the group (``Ipv4.join``/``Ipv6.join`` count the users, IGMP and MLD
report the interface's state). A group datagram reaches a socket bound to its
port and to the wildcard or the group when the socket joined the group on the
interface it came in by, or, without such a membership, when its
IP_MULTICAST_ALL (IPv4) or IPV6_MULTICAST_ALL (IPv6) is on (Linux's
ip_mc_sf_allow and inet6_mc_check). The errors are Linux's (checked by
tests/e2e/test_mcast_twin.py): a group not multicast EINVAL, no interface by
that index, address or route ENODEV, a second join EADDRINUSE, a leave
without a join EADDRNOTAVAIL, more than igmp_max_memberships (20) IPv4
groups ENOBUFS, more IPv6 ones than the socket's option memory holds ENOMEM.
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

ANY4 = b"\0\0\0\0"


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def is_group(addr: bytes) -> bool:
    """An IPv4 (224/4) or IPv6 (ff00::/8) multicast address."""
    return 224 <= addr[0] <= 239 if len(addr) == 4 else addr[0] == 0xFF


class Memberships:
    """One socket's groups: (group, ifindex) -> the interface address the
    program named (IPv4's imr_address, for a leave that names it; b"" else),
    and its IP_MULTICAST_ALL / IPV6_MULTICAST_ALL (Linux: 1 on an AF_INET
    socket, 0 for IPv4 on an AF_INET6 one; IPV6_MULTICAST_ALL 1)."""

    __slots__ = ("groups", "all4", "all6")

    def __init__(self, v6: bool = False) -> None:
        self.groups: dict[tuple[bytes, int], bytes] = {}
        self.all4 = not v6
        self.all6 = True

    def allows(self, group: bytes, ifindex: int) -> bool:
        """Whether a datagram to ``group`` that came in by ``ifindex`` is this
        socket's (ip_mc_sf_allow / inet6_mc_check without source filters)."""
        if (group, ifindex) in self.groups:
            return True
        return self.all4 if len(group) == 4 else self.all6

    def count(self, family_len: int) -> int:
        return sum(1 for g, _ in self.groups if len(g) == family_len)


def allows(ms: Memberships | None, group: bytes, ifindex: int, v6_socket: bool) -> bool:
    """``Memberships.allows`` for a socket that may have none (an endpoint the
    stack's services opened): Linux's defaults then."""
    if ms is None:
        return len(group) == 16 or not v6_socket
    return ms.allows(group, ifindex)


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


def _stack_join(stack: Stack, iface: Interface, group: bytes, joining: bool) -> None:
    ip = stack.ipv4 if len(group) == 4 else stack.ipv6
    if ip is None:
        raise _err(errno.ENODEV)
    if joining:
        ip.join(iface, group)
    else:
        ip.leave(iface, group)


def join(stack: Stack, ms: Memberships, group: bytes, ifindex: int = 0,
         addr: bytes = ANY4) -> None:
    """The socket joins ``group`` (ip_mc_join_group, ipv6_sock_mc_join)."""
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
    _stack_join(stack, iface, group, True)
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
    del ms.groups[key]
    iface = next((i for i in stack.interfaces if i.index == key[1]), None)
    if iface is not None:
        _stack_join(stack, iface, group, False)


def drop_all(stack: Stack, ms: Memberships) -> None:
    """The socket closed: every membership it held ends (ip_mc_drop_socket)."""
    groups = list(ms.groups)
    ms.groups.clear()
    for group, ifindex in groups:
        iface = next((i for i in stack.interfaces if i.index == ifindex), None)
        if iface is not None:
            try:
                _stack_join(stack, iface, group, False)
            except OSError:
                pass
