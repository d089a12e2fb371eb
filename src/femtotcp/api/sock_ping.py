"""ICMP echo ("ping") sockets' loop-thread half: SOCK_DGRAM + IPPROTO_ICMP,
and for AF_INET6 SOCK_DGRAM + IPPROTO_ICMPV6."""

from __future__ import annotations

import errno
import socket as _std
from typing import TYPE_CHECKING, Any

from femtotcp.api.sock_base import _IP_TTL, IPPROTO_IP, IPPROTO_IPV6, _oserror
from femtotcp.api.sock_udp import _DgramLink

if TYPE_CHECKING:
    from femtotcp.api.network import Network
    from femtotcp.api.socket import socket

#: Link-scope destinations a ping socket remembers the interface of.
_SENT_SCOPES = 64


class _PingLink(_DgramLink):
    """SOCK_DGRAM + IPPROTO_ICMP: the program sends and receives ICMP echo
    messages; the identifier is the socket's (like Linux ping sockets)."""

    kind = "ping"

    def __init__(self, net: Network, q: _std.socket, owner: socket) -> None:
        super().__init__(net, q, owner)
        #: The interface each link-scope destination was last pinged through:
        #: the scope of its replies (bounded: cleared when full).
        self.sent_scope: dict[bytes, int] = {}

    def _icmp(self) -> Any:
        stack = self.net.stack
        icmp = stack.icmp6 if self.v6 else stack.icmp
        if icmp is None:
            raise _oserror(errno.EPROTONOSUPPORT,
                           f"the stack has no {'ICMPv6' if self.v6 else 'ICMP'} module")
        return icmp

    def bind(self, addr: bytes, ident: int, scope: int = 0) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        icmp = self._icmp()
        self.bind_scope(addr, scope)
        if addr != self.any_addr and not self.net.stack.is_local(addr):
            raise _oserror(errno.EADDRNOTAVAIL)
        ep = icmp.open_echo(ident or None)
        ep.on_readable = self.guard(self.pump)
        self.ep = ep
        self.local = (addr, ep.ident)
        self.register()
        if self.watch is not None:
            self.watch.set(True, False)
        return self.local

    def ensure_bound(self) -> None:
        if self.ep is None:
            self.bind(self.any_addr, 0)

    def sendto(self, data: bytes, dst: bytes, port: int, scope: int = 0) -> int:
        from femtotcp.wire import icmp4, icmp6
        # Linux's ping sockets want a scope for every link-scope destination.
        iface = self.dst_iface(dst, scope, connect=False, required=True)
        self.ensure_bound()
        request = icmp6.ECHO_REQUEST if self.v6 else icmp4.ECHO_REQUEST
        if len(data) < icmp4.HEADER_LEN or data[0] != request or data[1] != 0:
            raise _oserror(errno.EINVAL, "only ICMP echo requests can be sent")
        if self.v6 and len(dst) != 16:
            raise _oserror(errno.EINVAL, "an ICMPv6 echo needs an IPv6 address")
        seq = int.from_bytes(data[6:8], "big")
        if self.v6:
            hops = self.opts.get((IPPROTO_IPV6, _std.IPV6_UNICAST_HOPS), -1)
            ttl = None if hops == -1 else hops
        else:
            ttl = self.opts.get((IPPROTO_IP, _IP_TTL))
        src = None if self.local is None or self.local[0] == self.any_addr else self.local[0]
        if iface is not None:
            ipv6 = self.net.stack.ipv6
            src = src or (ipv6.source_for(iface, dst) if ipv6 is not None else None)
            if src is None:
                raise _oserror(errno.EADDRNOTAVAIL, f"no IPv6 address on {iface.name}")
            if len(self.sent_scope) >= _SENT_SCOPES:
                self.sent_scope.clear()
            self.sent_scope[dst] = iface.index
        err = self.ep.send(dst, seq, bytes(data[8:]), ttl=ttl, src=src)
        if err:
            raise _oserror(err)
        return len(data)

    def send(self, data: bytes) -> int:
        if self.remote is None:
            raise _oserror(errno.EDESTADDRREQ)
        return self.sendto(data, *self.remote)

    def connect(self, dst: bytes, port: int, scope: int = 0) -> None:
        iface = self.dst_iface(dst, scope, connect=True)
        self.ensure_bound()
        self.remote = (dst, 0)
        if iface is not None:
            self.scope = iface.index

    def _next_record(self) -> bytes | None:
        from femtotcp.wire import icmp4
        while True:
            item = self.ep.recv()
            if item is None:
                return None
            src, seq, payload, _ttl = item
            if self.remote is None or src == self.remote[0]:
                break
        msg: bytes
        if self.v6:
            # The reply as received, less its checksum (the stack verified it).
            msg = bytes((129, 0, 0, 0)) + self.ep.ident.to_bytes(2, "big") \
                + seq.to_bytes(2, "big") + payload
        else:
            msg = icmp4.build_echo(icmp4.ECHO_REPLY, self.ep.ident, seq, payload)
        return self.record(src, 0, None, msg, self.sent_scope.get(src, 0))

