"""What the two program-side socket classes share: the in-process
``femtotcp.api.socket.socket`` and the attached ``femtotcp.api.remote.RemoteSocket``.

Both are ``_SocketBase`` subclasses (``sock_base``) that differ in where the
stack is (a loop thread here, or a ``femtotcp serve``); the answers that do
not depend on it live here once: which link a (family, type, proto) makes,
the socket options' program-side half (their table is ``api/sockopts``), the
options a socket answers by itself, shutdown on P, datagram reads into a
buffer, and ``repr``. (An attached program imports this, not
``api/socket``, whose links it never needs.)
"""

from __future__ import annotations

import errno
import socket as _std
from collections.abc import Callable
from typing import Any

from femtotcp.api import sockopts
from femtotcp.api.sock_base import (
    AF_INET,
    AF_INET6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    _oserror,
    _RealSocket,
    _SocketBase,
)

IPPROTO_ICMPV6 = _std.IPPROTO_ICMPV6
_TIMEO = (getattr(_std, "SO_RCVTIMEO", -2), getattr(_std, "SO_SNDTIMEO", -2))
#: ``local_sockopt``'s answer for an option the stack must answer.
NOT_LOCAL = object()


def link_kind(family: int, kind: int, proto: int) -> str:
    """"tcp", "udp" or "ping" for a socket of this family, type (without flags)
    and proto; the errors ``socket()`` gives for a kind the stack does not make."""
    if family not in (AF_INET, AF_INET6):
        raise _oserror(errno.EAFNOSUPPORT, "only AF_INET and AF_INET6 on this stack")
    if kind == SOCK_STREAM:
        if proto not in (0, IPPROTO_TCP):
            raise _oserror(errno.EPROTONOSUPPORT)
        return "tcp"
    if kind == SOCK_DGRAM:
        if proto in (0, IPPROTO_UDP):
            return "udp"
        if (proto == IPPROTO_ICMP and family == AF_INET) or (
                proto == IPPROTO_ICMPV6 and family == AF_INET6):
            return "ping"
        raise _oserror(errno.EPROTONOSUPPORT)
    raise _oserror(errno.ESOCKTNOSUPPORT, "only SOCK_STREAM and SOCK_DGRAM")


def parse_opt(sock: _SocketBase, level: int, optname: int, value: Any) -> Any:
    """Program side: the value ``setsockopt(level, optname, value)`` keeps,
    checked as Linux checks it (``api/sockopts``)."""
    kind = link_kind(sock._sfamily, sock._stype, sock._sproto)
    return sockopts.parse(sock._sfamily, kind, level, optname, value)


_ON_P = (_std.SO_RCVLOWAT, _std.SO_OOBINLINE)


def set_on_p(sock: _SocketBase, level: int, optname: int, val: Any) -> None:
    """After a set the stack took: SO_RCVLOWAT and SO_OOBINLINE of a stream
    socket go on P as well, whose reads are the program's (a Unix stream
    socket honours both; the stack hands the peer's urgent byte to P with
    MSG_OOB)."""
    if level == SOL_SOCKET and optname in _ON_P and sock._stype == SOCK_STREAM:
        _RealSocket.setsockopt(sock, level, optname, val)
    elif level == SOL_SOCKET and optname == _std.SO_SNDBUF and sock._stype == SOCK_DGRAM:
        _RealSocket.setsockopt(sock, level, optname, val // 2)     # (Linux doubles it again)


def inherit_on_p(listener: _SocketBase, new: _SocketBase) -> None:
    """An accepted socket inherits its listener's SO_OOBINLINE, as on Linux
    (the flag is copied with the listening socket): on its P too."""
    if _RealSocket.getsockopt(listener, SOL_SOCKET, _std.SO_OOBINLINE):
        _RealSocket.setsockopt(new, SOL_SOCKET, _std.SO_OOBINLINE, 1)


# -- what the program's socket answers by itself ---------------------------------------------------

def local_sockopt(sock: _SocketBase, level: int, optname: int, buflen: int | None,
                  listening: Callable[[], bool]) -> Any:
    """``getsockopt`` answers that need no stack: the socket's type, domain and
    protocol, SO_ACCEPTCONN (``listening()``), and the timeouts and a datagram
    socket's send buffer, which P keeps itself; NOT_LOCAL for anything else."""
    if level != SOL_SOCKET:
        return NOT_LOCAL
    if optname == _std.SO_TYPE:
        return sock._opt_out(sock._stype, buflen)
    if optname == getattr(_std, "SO_DOMAIN", -2):
        return sock._opt_out(sock._sfamily, buflen)
    if optname == getattr(_std, "SO_PROTOCOL", -2):
        proto = sock._sproto or (IPPROTO_TCP if sock._stype == SOCK_STREAM else IPPROTO_UDP)
        return sock._opt_out(proto, buflen)
    if optname == getattr(_std, "SO_ACCEPTCONN", -2):
        return sock._opt_out(int(listening()), buflen)
    if optname in _TIMEO or (optname == _std.SO_SNDBUF and sock._stype == SOCK_DGRAM):
        # (a datagram socket's send buffer is P's: its datagrams wait there)
        if buflen is None:
            return _RealSocket.getsockopt(sock, level, optname)
        return _RealSocket.getsockopt(sock, level, optname, buflen)
    return NOT_LOCAL


def set_timeo(sock: _SocketBase, level: int, optname: int, value: Any) -> bool:
    """SO_RCVTIMEO/SO_SNDTIMEO are P's own (its blocking calls are the
    program's): set them there; True when ``optname`` was one of them."""
    if level == SOL_SOCKET and optname in _TIMEO:
        _RealSocket.setsockopt(sock, level, optname, value)
        return True
    return False


def dgram_into(buffer: Any, nbytes: int,
               recv: Callable[[int], tuple[bytes, Any]]) -> tuple[int, Any]:
    """``recv_into``/``recvfrom_into`` of a datagram socket through its
    ``recv(size) -> (data, address)``."""
    mv = memoryview(buffer).cast("B")
    data, addr = recv(nbytes or len(mv))
    mv[:len(data)] = data
    return len(data), addr


def sock_repr(sock: _SocketBase, local: Callable[[], Any], remote: Callable[[], Any]) -> str:
    """``repr`` as the stdlib's, with the stack socket's family, type and addresses."""
    closed = _RealSocket.fileno(sock) == -1
    s = (f"<{sock.__class__.__module__}.{sock.__class__.__qualname__}"
         f"{' [closed]' if closed else ''} fd={_RealSocket.fileno(sock)}, "
         f"family={sock.family!s}, type={sock.type!s}, proto={sock.proto}")
    if not closed:
        for name, get in (("laddr", local), ("raddr", remote)):
            try:
                addr = get()
            except OSError:
                break
            if addr is None:
                continue
            s += f", {name}={addr}"
    return s + ">"


def send_error(mode: str) -> int:
    """The errno of a send on a TCP socket in ``mode`` (a ``TcpMode`` value)
    that is not connected, as Linux's sk_stream_wait_connect: EPIPE when it
    was never connected, listens or failed; EAGAIN while it connects (a
    non-blocking connect under way)."""
    return errno.EAGAIN if mode == "connecting" else errno.EPIPE


def shutdown_pair(sock: _SocketBase, how: int, mode: str | None, has_peer: bool,
                  tell: Callable[[int], None]) -> None:
    """``shutdown(how)`` on P, for a TCP socket in ``mode`` (a ``TcpMode`` value)
    or a datagram socket (``mode`` None, ``has_peer``: connected); ``tell(how)``
    passes a connected TCP socket's shutdown on to its link."""
    if how not in (_std.SHUT_RD, _std.SHUT_WR, _std.SHUT_RDWR):
        raise _oserror(errno.EINVAL)
    reading = how in (_std.SHUT_RD, _std.SHUT_RDWR)
    if mode is None:
        if not has_peer:
            raise _oserror(errno.ENOTCONN)
        if reading:
            _RealSocket.shutdown(sock, _std.SHUT_RD)
        return
    if mode == "listening":
        if reading:
            _RealSocket.shutdown(sock, _std.SHUT_RD)
        return
    if mode not in ("connected", "done"):
        raise _oserror(errno.ENOTCONN)
    if mode == "connected" and reading:
        # The link learns of the reading side first: P shut both ways would
        # otherwise look, to the stack, like a closed one.
        tell(how)
    try:
        _RealSocket.shutdown(sock, how)
    except OSError:
        pass
    if mode == "connected" and not reading:
        tell(how)
