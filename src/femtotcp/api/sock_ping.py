"""ICMP echo ("ping") sockets' loop-thread half: SOCK_DGRAM + IPPROTO_ICMP,
and for AF_INET6 SOCK_DGRAM + IPPROTO_ICMPV6."""

from __future__ import annotations

import errno
import socket as _std
from typing import Any

from femtotcp.api.sock_base import _IP_TTL, _KIND_DATA, _REC, IPPROTO_IP, IPPROTO_IPV6, _oserror
from femtotcp.api.sock_udp import _DgramLink


class _PingLink(_DgramLink):
    """SOCK_DGRAM + IPPROTO_ICMP: the program sends and receives ICMP echo
    messages; the identifier is the socket's (like Linux ping sockets)."""

    kind = "ping"

    def _icmp(self) -> Any:
        stack = self.net.stack
        icmp = stack.icmp6 if self.v6 else stack.icmp
        if icmp is None:
            raise _oserror(errno.EPROTONOSUPPORT,
                           f"the stack has no {'ICMPv6' if self.v6 else 'ICMP'} module")
        return icmp

    def bind(self, addr: bytes, ident: int) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        icmp = self._icmp()
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

    def sendto(self, data: bytes, dst: bytes, port: int) -> int:
        from femtotcp.wire import icmp4, icmp6
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
        err = self.ep.send(dst, seq, bytes(data[8:]), ttl=ttl)
        if err:
            raise _oserror(err)
        return len(data)

    def send(self, data: bytes) -> int:
        if self.remote is None:
            raise _oserror(errno.EDESTADDRREQ)
        return self.sendto(data, *self.remote)

    def connect(self, dst: bytes, port: int) -> None:
        self.ensure_bound()
        self.remote = (dst, 0)

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
        return _REC.pack(_KIND_DATA, len(src), 0, src) + msg

