"""ICMP echo ("ping") sockets' loop-thread half: SOCK_DGRAM + IPPROTO_ICMP."""

from __future__ import annotations

import errno

from femtotcp.api.sock_base import _IP_TTL, _KIND_DATA, _REC, ANY4, IPPROTO_IP, _oserror
from femtotcp.api.sock_udp import _DgramLink


class _PingLink(_DgramLink):
    """SOCK_DGRAM + IPPROTO_ICMP: the program sends and receives ICMP echo
    messages; the identifier is the socket's (like Linux ping sockets)."""

    kind = "ping"

    def bind(self, addr: bytes, ident: int) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        if self.net.stack.icmp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no ICMP module")
        if addr != ANY4 and not self.net.stack.is_local(addr):
            raise _oserror(errno.EADDRNOTAVAIL)
        ep = self.net.stack.icmp.open_echo(ident or None)
        ep.on_readable = self.guard(self.pump)
        self.ep = ep
        self.local = (addr, ep.ident)
        self.register()
        if self.watch is not None:
            self.watch.set(True, False)
        return self.local

    def ensure_bound(self) -> None:
        if self.ep is None:
            self.bind(ANY4, 0)

    def sendto(self, data: bytes, dst: bytes, port: int) -> int:
        from femtotcp.wire import icmp4
        self.ensure_bound()
        if len(data) < icmp4.HEADER_LEN or data[0] != icmp4.ECHO_REQUEST or data[1] != 0:
            raise _oserror(errno.EINVAL, "only ICMP echo requests can be sent")
        seq = int.from_bytes(data[6:8], "big")
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
        msg = icmp4.build_echo(icmp4.ECHO_REPLY, self.ep.ident, seq, payload)
        return _REC.pack(_KIND_DATA, len(src), 0, src) + msg

