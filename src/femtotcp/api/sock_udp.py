"""UDP sockets' loop-thread half, and the datagram base it shares with ping.

Datagrams from the stack go to the program's end of a SOCK_SEQPACKET pair as
records (``_REC``: kind, source address, port or errno, then the payload);
sends go straight to the stack in the loop thread.
"""

from __future__ import annotations

import errno
import socket as _std
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from femtotcp.api.sock_base import (
    _IP_MTU_DISCOVER,
    _IP_TOS,
    _IP_TTL,
    _KIND_DATA,
    _KIND_DATA_SCOPED,
    _KIND_ERROR,
    _KIND_SEND,
    _REC,
    _SCOPE,
    _SO_REUSEPORT,
    IPPROTO_IP,
    IPPROTO_IPV6,
    SEND_BATCH,
    SOL_SOCKET,
    _Link,
    _oserror,
    this_host,
)
from femtotcp.stack.mcast import ANY4, Memberships, is_group
from femtotcp.wire.ipv6 import is_link_scope

#: The largest send record: a maximum-size datagram and its header.
_SEND_MAX = 65536 + 64

if TYPE_CHECKING:
    from femtotcp.api.network import Network
    from femtotcp.api.socket import socket
    from femtotcp.stack.interface import Interface


class _DgramLink(_Link):
    """Datagrams from the stack go to P as records; sends go straight to the stack."""

    kind = "dgram"

    def __init__(self, net: Network, q: _std.socket, owner: socket) -> None:
        super().__init__(net, q, owner)
        self.ep: Any = None
        self.held: bytes | None = None
        # The socket error is one value that SO_ERROR, recv and send each take
        # once, whichever comes first (Linux's sk_err). An error already sent to
        # P as a record (so that a blocked recv wakes) is listed in pipe_errors;
        # the first ``cancelled`` of them were taken by SO_ERROR or send, and the
        # program's recv skips their records. Both threads use err_lock.
        self.err_lock = threading.Lock()
        self.pipe_errors: deque[int] = deque()
        self.cancelled = 0
        #: The socket's multicast groups (``sockopts``' joins), freed at close
        #: (``_Link.release``).
        self.mcast = Memberships(self.v6)

    def take_pending_error(self) -> int:
        """Loop thread: take the socket error, wherever it waits (0 if none)."""
        ep = self.ep
        if ep is not None and getattr(ep, "error", None) is not None:
            return int(ep.take_error() or 0)
        with self.err_lock:
            if len(self.pipe_errors) > self.cancelled:
                self.cancelled += 1
                return self.pipe_errors[self.cancelled - 1]
        err, self.so_error = self.so_error, 0
        return err

    def take_so_error(self) -> int:
        return self.take_pending_error()

    def error_record_read(self) -> bool:
        """Program thread: an error record came out of P; True when SO_ERROR or
        send already took that error (the record is to be skipped)."""
        with self.err_lock:
            if self.pipe_errors:
                self.pipe_errors.popleft()
            if self.cancelled:
                self.cancelled -= 1
                return True
            return False

    def _next_record(self) -> bytes | None:
        """The next record for P, or None when the endpoint has nothing (subclasses)."""
        return None

    def bind(self, addr: bytes, port: int, scope: int = 0) -> tuple[bytes, int]:
        raise _oserror(errno.EOPNOTSUPP)

    def sendto(self, data: bytes, dst: bytes, port: int, scope: int = 0) -> int:
        raise _oserror(errno.EOPNOTSUPP)

    def send(self, data: bytes) -> int:
        raise _oserror(errno.EOPNOTSUPP)

    def connect(self, dst: bytes, port: int, scope: int = 0) -> None:
        raise _oserror(errno.EOPNOTSUPP)

    def record(self, src: bytes, port: int, dst: bytes | None, data: bytes,
               scope: int = 0) -> bytes:
        """The record of one datagram for P: a link-scope IPv6 source carries
        its scope id (``_KIND_DATA_SCOPED``): the interface of our address it
        came to, else ``scope``, else the socket's own, else the only
        interface there is."""
        if self.v6 and len(src) == 16 and is_link_scope(src):
            scope = ((self.local_scope(dst) if dst is not None else 0) or scope
                     or self.scope)
            ifaces = self.net.stack.interfaces
            if not scope and len(ifaces) == 1:
                scope = ifaces[0].index
            if scope:
                return (_REC.pack(_KIND_DATA_SCOPED, 16, port, src) + _SCOPE.pack(scope)
                        + data)
        return _REC.pack(_KIND_DATA, len(src), port, src) + data

    def pump(self) -> None:
        q = self.q
        if q is None or self.ep is None:
            return
        while True:
            rec = self.held
            if rec is None:
                rec = self._next_record()
                if rec is None:
                    break
            try:
                q.send(rec)
            except BlockingIOError:
                self.held = rec
                if self.watch is not None:
                    self.watch.set(True, True)
                return
            except OSError:
                self.close_all()
                return
            self.held = None
        if self.watch is not None:
            self.watch.set(True, False)

    def on_q(self) -> None:
        """Q is ready: writable again (pump), the program's end closed (EOF), or
        send records from an attached program (``send_record``)."""
        for _ in range(SEND_BATCH):
            if not self._take_record():
                return

    def on_q_ready(self) -> None:
        """One record per wake-up (epoll reports Q again while records wait):
        a lone datagram, a ping-pong's, costs no read that finds Q empty."""
        if self._take_record() and self.held is not None:
            self.pump()

    def _take_record(self) -> bool:
        """Read one record from Q and send it; False when there was none
        (Q woke for writing: held records go on), or Q is gone."""
        q = self.q
        if q is None:
            return False
        try:
            data = q.recv(_SEND_MAX, _std.MSG_DONTWAIT)
        except BlockingIOError:
            self.pump()
            return False
        except OSError:
            data = b""
        if not data:
            self.close_all()
            return False
        self.send_record(data)
        return True

    #: A send from the attached program's record (``send_record``), whose
    #: send(2) returned already: an error waiting for the socket (an ICMP
    #: error's) stays for its next read or SO_ERROR instead of failing, and
    #: so dropping, this datagram and, through the socket error that failure
    #: leaves, every one after it.
    in_record = False

    def send_record(self, rec: bytes) -> None:
        """A datagram the program wrote to P (``_KIND_SEND``; address length 0:
        to the connected peer). A send error becomes the socket error, which
        the next SO_ERROR reports, as an asynchronous error would."""
        if len(rec) < _REC.size:
            return
        kind, alen, port, addr = _REC.unpack_from(rec)
        if kind != _KIND_SEND or alen not in (0, 4, 16):
            return
        payload = rec[_REC.size:]
        self.in_record = True
        try:
            if alen:
                self.sendto(payload, addr[:alen], port)
            else:
                self.send(payload)
        except OSError as exc:
            self.so_error = exc.errno or errno.EIO
        finally:
            self.in_record = False

    def program_closed(self, abort: bool = False) -> None:
        self.close_all()

    def close_all(self) -> None:
        if self.ep is not None:
            self.ep.close()
        self.release()


class _UdpLink(_DgramLink):
    kind = "udp"

    def bind(self, addr: bytes, port: int, scope: int = 0) -> tuple[bytes, int]:
        if self.ep is not None:
            raise _oserror(errno.EINVAL, "already bound")
        if self.net.stack.udp is None:
            raise _oserror(errno.EPROTONOSUPPORT, "the stack has no UDP module")
        self.refuse_mapped(addr, errno.EINVAL)
        self.bind_scope(addr, scope)
        udp = self.net.stack.udp
        reuse = (bool(self.opts.get((SOL_SOCKET, _std.SO_REUSEADDR))),
                 bool(self.opts.get((SOL_SOCKET, _SO_REUSEPORT))))
        try:
            ep = udp.open(addr, port, self.v6only, *reuse)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            self.net.reap()     # a socket closed by the garbage collector, not yet noticed
            ep = udp.open(addr, port, self.v6only, *reuse)
        ep.on_readable = self.guard(self.pump)
        ep.take = self.take
        ep.mcast = self.mcast
        self.ep = ep
        self.apply_opts()
        self.local = ep.local
        self.register()
        if self.watch is not None:
            self.watch.set(True, False)
        local: tuple[bytes, int] = (ep.local[0], ep.local[1])
        return local

    def ensure_bound(self) -> None:
        if self.ep is None:
            self.bind(self.any_addr, 0)

    def apply_opts(self) -> None:
        ep = self.ep
        if ep is None:
            return
        for (level, opt), value in self.opts.items():
            if level == IPPROTO_IP and opt == _IP_TTL:
                ep.ttl = None if value == -1 else value     # -1: the stack's again
            elif level == IPPROTO_IP and opt == _IP_TOS:
                ep.tos = value
            elif level == IPPROTO_IP and opt == _IP_MTU_DISCOVER:
                ep.set_pmtudisc(value)
            elif level == IPPROTO_IPV6 and opt == _std.IPV6_UNICAST_HOPS:
                ep.ttl = None if value == -1 else value
            elif level == IPPROTO_IPV6 and opt == _std.IPV6_TCLASS:
                ep.tos = 0 if value == -1 else value
            elif (level, opt) in ((IPPROTO_IP, _std.IP_MULTICAST_TTL),
                                  (IPPROTO_IPV6, _std.IPV6_MULTICAST_HOPS)):
                ep.mcast_ttl = 1 if value == -1 else value
            elif (level, opt) == ((IPPROTO_IPV6, _std.IPV6_MULTICAST_LOOP) if self.v6
                                  else (IPPROTO_IP, _std.IP_MULTICAST_LOOP)):
                ep.mcast_loop = bool(value)
            elif level == SOL_SOCKET and opt == _std.SO_RCVBUF:
                ep.rcvbuf = value

    def sendto(self, data: bytes, dst: bytes, port: int, scope: int = 0) -> int:
        self.refuse_mapped(dst, errno.ENETUNREACH)
        iface = self.dst_iface(dst, scope, connect=False)
        src = None
        if iface is None and is_group(dst):
            iface, src = self.mcast_iface(len(dst))
        self.ensure_bound()
        ep = self.ep
        dst = this_host(dst, ep.local[0])
        self._check_broadcast(dst)
        if ep.remote is not None and not self.in_record:
            err = self.take_pending_error()
            if err:
                raise _oserror(err)
        if src is not None and ep.local[0] != ANY4:
            src = None                  # a bound socket's own address goes first
        err = ep.sendto(data, dst, port, src, iface)
        if err:
            raise _oserror(err)
        return len(data)

    def send(self, data: bytes) -> int:
        if self.ep is None or self.ep.remote is None:
            raise _oserror(errno.EDESTADDRREQ)
        return self.sendto(data, *self.ep.remote)

    def mcast_iface(self, family_len: int) -> tuple[Interface | None, bytes | None]:
        """The interface IP_MULTICAST_IF / IPV6_MULTICAST_IF names for group
        datagrams (None: the route's), and the address IP_MULTICAST_IF named,
        an unbound socket's source then (Linux's inet->mc_addr)."""
        addr = None
        if family_len == 4:
            chosen = self.opts.get((IPPROTO_IP, _std.IP_MULTICAST_IF))
            index = chosen[1] if chosen is not None else 0
            addr = chosen[0] if chosen is not None and chosen[0] != ANY4 else None
        else:
            index = self.opts.get((IPPROTO_IPV6, _std.IPV6_MULTICAST_IF)) or 0
        if not index:
            return None, None
        return next((i for i in self.net.stack.interfaces if i.index == index), None), addr

    def _check_broadcast(self, dst: bytes) -> None:
        """EACCES for a broadcast destination (the limited one or a directed
        one of our subnets) without SO_BROADCAST, as Linux."""
        if (dst in self.net.stack.broadcast_addresses
                and not self.opts.get((SOL_SOCKET, _std.SO_BROADCAST))):
            raise _oserror(errno.EACCES)

    def connect(self, dst: bytes, port: int, scope: int = 0) -> None:
        self.refuse_mapped(dst, errno.ENETUNREACH)
        iface = self.dst_iface(dst, scope, connect=True)
        self.ensure_bound()
        dst = this_host(dst, self.ep.local[0])
        self._check_broadcast(dst)
        self.ep.connect(dst, port)
        self.remote = (dst, port)
        self.local = self.ep.sockname
        if iface is not None:
            self.scope = iface.index
            ipv6 = self.net.stack.ipv6
            src = ipv6.source_address(dst, iface) if ipv6 is not None else None
            if self.ep.local[0] == self.any_addr and src is not None:
                self.local = (src, self.local[1])

    def pump(self) -> None:
        """``_DgramLink.pump``, with the common case first: IPv4 datagrams
        queued and no record held back go to P one record each, here. (With
        no record held, Q's watch is for reading only: a pump that emptied
        the queue left it so.)"""
        q, ep = self.q, self.ep
        if q is None or ep is None:
            return
        if self.held is None and not self.v6:
            queue = ep.queue
            while queue:
                data, (src, sport), _dst = queue[0]
                try:
                    q.send(_REC.pack(_KIND_DATA, len(src), sport, src) + data)
                except OSError:
                    break             # (P full, or gone: the full pump says which)
                queue.popleft()
                ep.queued_bytes -= len(data)
            else:
                if ep.error is None:
                    return
        super().pump()

    def take(self, data: bytes, src: tuple[bytes, int]) -> bool:
        """The endpoint's ``take``: an IPv4 datagram written to Q at once as
        its record, when no record is held back (else, or when Q is full,
        False: the endpoint queues it and ``pump`` goes on as ever)."""
        q = self.q
        if q is None or self.held is not None or self.v6:
            return False
        addr, port = src
        try:
            q.send(_REC.pack(_KIND_DATA, len(addr), port, addr) + data)
        except OSError:
            return False
        return True

    def _next_record(self) -> bytes | None:
        ep = self.ep
        item = ep.recv_full()
        if item is None:
            if ep.error is None:
                return None
            err = ep.take_error()
            if not err:
                return None
            with self.err_lock:
                self.pipe_errors.append(err)
            return _REC.pack(_KIND_ERROR, 0, err, b"")
        data, (src, sport), dst = item
        return self.record(src, sport, dst, data)

