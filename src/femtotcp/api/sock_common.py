"""What the two program-side socket classes share: the in-process
``femtotcp.api.socket.socket`` and the attached ``femtotcp.api.remote.RemoteSocket``.

Both are ``_SocketBase`` subclasses (``sock_base``) that differ in where the
stack is (a loop thread here, or a ``femtotcp serve``); the answers that do
not depend on it live here once: which link a (family, type, proto) makes,
the socket options' values, the IPv6 options' checks and their loop-thread
half, the options a socket answers by itself, shutdown on P, datagram reads
into a buffer, and ``repr``. (An attached program imports this, not
``api/socket``, whose links it never needs.)
"""

from __future__ import annotations

import errno
import socket as _std
import sys
from collections.abc import Callable
from typing import Any, cast

from femtotcp.api.sock_base import (
    _IP_TOS,
    _IP_TTL,
    _IPPROTO_IPV6,
    _LINGER,
    _SO_REUSEPORT,
    _TCP_KEEPCNT,
    _TCP_KEEPIDLE,
    _TCP_KEEPINTVL,
    _TCP_USER_TIMEOUT,
    AF_INET,
    AF_INET6,
    IPPROTO_ICMP,
    IPPROTO_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    _Link,
    _oserror,
    _RealSocket,
    _SocketBase,
)

IPPROTO_ICMPV6 = _std.IPPROTO_ICMPV6
#: The IPv6 options the stack keeps (IPPROTO_IPV6 level).
IPV6_OPTS = frozenset({_std.IPV6_V6ONLY, _std.IPV6_UNICAST_HOPS, _std.IPV6_TCLASS})
_TIMEO = (getattr(_std, "SO_RCVTIMEO", -2), getattr(_std, "SO_SNDTIMEO", -2))
#: ``local_sockopt``'s answer for an option the stack must answer.
NOT_LOCAL = object()
#: The integer options the stack keeps (and applies where it can).
SOCKOPTS_INT = {
    (SOL_SOCKET, _std.SO_REUSEADDR), (SOL_SOCKET, _std.SO_KEEPALIVE),
    (SOL_SOCKET, _std.SO_RCVBUF), (SOL_SOCKET, _std.SO_SNDBUF),
    (SOL_SOCKET, _std.SO_BROADCAST), (SOL_SOCKET, _SO_REUSEPORT),
    (SOL_SOCKET, _std.SO_OOBINLINE), (SOL_SOCKET, getattr(_std, "SO_PRIORITY", -2)),
    (IPPROTO_TCP, _std.TCP_NODELAY), (IPPROTO_TCP, _TCP_KEEPIDLE),
    (IPPROTO_TCP, _TCP_KEEPINTVL), (IPPROTO_TCP, _TCP_KEEPCNT),
    (IPPROTO_TCP, _TCP_USER_TIMEOUT), (IPPROTO_TCP, getattr(_std, "TCP_QUICKACK", -2)),
    (IPPROTO_TCP, getattr(_std, "TCP_CORK", -2)), (IPPROTO_TCP, getattr(_std, "TCP_MAXSEG", -2)),
    (IPPROTO_IP, _IP_TTL), (IPPROTO_IP, _IP_TOS),
}


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


def option_value(level: int, optname: int, value: Any) -> Any:
    """What the stack keeps for ``setsockopt(level, optname, value)``: an int, or
    (onoff, seconds) for SO_LINGER; ENOPROTOOPT for options the stack lacks."""
    if level == SOL_SOCKET and optname == _std.SO_LINGER:
        if isinstance(value, int):
            raise _oserror(errno.EINVAL)
        onoff, secs = _LINGER.unpack(bytes(value)[:_LINGER.size])
        return (onoff, secs)
    if (level, optname) not in SOCKOPTS_INT:
        raise _oserror(errno.ENOPROTOOPT)
    if isinstance(value, int | bool):
        return int(value)
    if value is None:
        raise TypeError("setsockopt() value must be an int or a buffer")
    raw = bytes(value)
    return int.from_bytes(raw[:4], sys.byteorder) if raw else 0


# -- IPv6 options -----------------------------------------------------------------------------

def ipv6_option(family: int, optname: int, value: Any) -> int:
    """The value ``setsockopt(IPPROTO_IPV6, optname, value)`` sets: IPV6_V6ONLY
    (0/1), IPV6_UNICAST_HOPS and IPV6_TCLASS (-1 for the default, else 0-255);
    ENOPROTOOPT on an AF_INET socket or for another option, as Linux."""
    if family != AF_INET6 or optname not in IPV6_OPTS:
        raise _oserror(errno.ENOPROTOOPT)
    if isinstance(value, int | bool):
        val = int(value)
    elif value is None:
        raise TypeError("setsockopt() value must be an int or a buffer")
    else:
        val = int.from_bytes(bytes(value)[:4], sys.byteorder, signed=True)
    if optname != _std.IPV6_V6ONLY and not -1 <= val <= 255:
        raise _oserror(errno.EINVAL)
    return val


def set_ipv6_opt(link: _Link, optname: int, val: int) -> None:
    """Loop thread: keep an IPv6 option checked by ``ipv6_option``. IPV6_V6ONLY
    only before the socket has a port (Linux's inet_num check)."""
    key = (_IPPROTO_IPV6, optname)
    if optname == _std.IPV6_V6ONLY:
        if link.local is not None or getattr(link, "bound", None) is not None:
            raise _oserror(errno.EINVAL)
        link.opts[key] = bool(val)
        return
    if link.kind == "tcp":      # a _TcpLink: its connection's segments carry it too
        cast(Any, link).set_opt(_IPPROTO_IPV6, optname, val)
        return
    link.opts[key] = val
    apply = getattr(link, "apply_opts", None)
    if apply is not None:
        apply()


def get_ipv6_opt(link: _Link, optname: int) -> int:
    """An IPv6 option's value (the route's defaults where unset, as Linux)."""
    if optname == _std.IPV6_V6ONLY:
        return int(link.v6only)
    value = int(link.opts.get((_IPPROTO_IPV6, optname), -1))
    if value == -1:
        value = 64 if optname == _std.IPV6_UNICAST_HOPS else 0
    return value


# -- what the program's socket answers by itself ---------------------------------------------------

def local_sockopt(sock: _SocketBase, level: int, optname: int, buflen: int | None,
                  listening: Callable[[], bool]) -> Any:
    """``getsockopt`` answers that need no stack: the socket's type, domain and
    protocol, SO_ACCEPTCONN (``listening()``), and the timeouts P keeps itself;
    NOT_LOCAL for anything else."""
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
    if optname in _TIMEO:
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
    try:
        _RealSocket.shutdown(sock, how)
    except OSError:
        pass
    if mode == "connected":
        tell(how)
