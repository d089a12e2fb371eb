"""The socket options, as Linux answers them: one table for every socket the
stack makes (the in-process ``api.socket``, the attached ``api.remote`` and
serve's ``control.sockets``).

Each option (``Opt``) has its level and name, the socket kinds it belongs to,
its value's kind and Linux's checks (``parse``: on the program's side, no
state needed), its default, and where its value lives: kept in the link's
``opts`` (and applied to the connection or endpoint where the stack has the
knob), or read from the live connection (TCP_MAXSEG, IP_MTU, TCP_INFO).

The checks, defaults and errors are the Linux kernel's, compared with it by
tests/e2e/test_sockopts_twin.py: an unknown level gives EOPNOTSUPP to
getsockopt and ENOPROTOOPT to setsockopt; an unknown option ENOPROTOOPT;
SO_SNDBUF/SO_RCVBUF double the value asked (capped, with Linux's minimums);
IP_TOS keeps the low byte (a TCP socket its ECN bits clear); IP_TTL -1 is the
default again; TCP's ranges (TCP_KEEPIDLE 1-32767, TCP_KEEPCNT 1-127, ...)
give EINVAL and leave the value as it was.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket as _std
import struct
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from femtotcp.api.sock_base import _LINGER

S = _std.SOL_SOCKET
IP = _std.IPPROTO_IP
TCP = _std.IPPROTO_TCP
IP6 = _std.IPPROTO_IPV6
IP_MTU_DISCOVER = getattr(_std, "IP_MTU_DISCOVER", 10)
IP_MTU = getattr(_std, "IP_MTU", 14)
IP_RECVERR = getattr(_std, "IP_RECVERR", 11)
TCP_INFO = getattr(_std, "TCP_INFO", 11)
TCP_CONGESTION = getattr(_std, "TCP_CONGESTION", 13)
SO_BINDTODEVICE = getattr(_std, "SO_BINDTODEVICE", 25)
TCP_WINDOW_CLAMP = getattr(_std, "TCP_WINDOW_CLAMP", 10)
TCP_LINGER2 = getattr(_std, "TCP_LINGER2", 8)
IP_MULTICAST_ALL = getattr(_std, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = getattr(_std, "IPV6_MULTICAST_ALL", 29)
MCAST_JOIN_GROUP = getattr(_std, "MCAST_JOIN_GROUP", 42)
MCAST_LEAVE_GROUP = getattr(_std, "MCAST_LEAVE_GROUP", 45)
IP_UNBLOCK_SOURCE = getattr(_std, "IP_UNBLOCK_SOURCE", 37)
IP_BLOCK_SOURCE = getattr(_std, "IP_BLOCK_SOURCE", 38)
IP_ADD_SOURCE_MEMBERSHIP = getattr(_std, "IP_ADD_SOURCE_MEMBERSHIP", 39)
IP_DROP_SOURCE_MEMBERSHIP = getattr(_std, "IP_DROP_SOURCE_MEMBERSHIP", 40)
MCAST_BLOCK_SOURCE = getattr(_std, "MCAST_BLOCK_SOURCE", 43)
MCAST_UNBLOCK_SOURCE = getattr(_std, "MCAST_UNBLOCK_SOURCE", 44)
MCAST_JOIN_SOURCE_GROUP = getattr(_std, "MCAST_JOIN_SOURCE_GROUP", 46)
MCAST_LEAVE_SOURCE_GROUP = getattr(_std, "MCAST_LEAVE_SOURCE_GROUP", 47)
#: The congestion control the stack runs (RFC 5681/6582 NewReno: Linux's "reno").
CONGESTION = b"reno"
TCP_CA_NAME_MAX = 16
#: net.core.wmem_max/rmem_max's counterpart: SO_SNDBUF/SO_RCVBUF's cap before doubling
#: (the stack's own receive-buffer ceiling, TcpConfig.rcvbuf_max, is Linux's 4 MiB).
BUF_MAX = 4 * 1024 * 1024
SNDBUF_MIN = 4608        # SOCK_MIN_SNDBUF
RCVBUF_MIN = 2304        # SOCK_MIN_RCVBUF
TCP_MSS_DEFAULT = 536
TCP_MIN_MSS = 88
MAX_TCP_WINDOW = 32767
TCP_FIN_TIMEOUT_MAX = 120
INT_MAX = 2**31 - 1

TCP_ONLY = frozenset({"tcp"})
DGRAM = frozenset({"udp", "ping"})
ALL = TCP_ONLY | DGRAM


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class Opt(NamedTuple):
    """One option. ``value``: "int" (checked by ``check``), "bool" (0/1),
    "linger" (struct linger), "bytes" (a name or a struct), "get" (read-only),
    "struct" (a struct ``decode`` checks and unpacks), "set" (a struct
    ``decode`` unpacks, and nothing getsockopt answers: a membership).
    ``default``: the value when the program set none (an int or bytes; a str
    names the stack's TcpConfig field that holds it; None: read live).
    ``check(v, kind)``: the value Linux keeps for ``v``, or raises EINVAL.
    ``minlen``: the shortest buffer setsockopt takes (IP's options take one byte)."""
    name: str
    kinds: frozenset[str]
    value: str
    default: Any = 0
    check: Callable[[int, str], int] | None = None
    minlen: int = 4
    decode: Callable[[bytes, str], Any] | None = None


def _range(lo: int, hi: int) -> Callable[[int, str], int]:
    def check(v: int, kind: str) -> int:
        if not lo <= v <= hi:
            raise _err(errno.EINVAL)
        return v
    return check


def _buf(minimum: int) -> Callable[[int, str], int]:
    def check(v: int, kind: str) -> int:
        v = BUF_MAX if v < 0 else min(v, BUF_MAX)     # (Linux compares as u32)
        return max(2 * v, minimum)
    return check


def _ttl(v: int, kind: str) -> int:
    if v != -1 and not 1 <= v <= 255:
        raise _err(errno.EINVAL)
    return v


def _tos(v: int, kind: str) -> int:
    v &= 0xFF
    return v & ~3 if kind == "tcp" else v        # TCP's ECN bits are the stack's


def _hops(v: int, kind: str) -> int:
    if not -1 <= v <= 255:
        raise _err(errno.EINVAL)
    return v


def _mcast_ttl(v: int, kind: str) -> int:
    if kind == "tcp":
        raise _err(errno.EINVAL)
    if v == -1:
        return 1
    if not 0 <= v <= 255:
        raise _err(errno.EINVAL)
    return v


def _mcast_hops(v: int, kind: str) -> int:
    if kind == "tcp":                     # read on a stream socket, never set
        raise _err(errno.ENOPROTOOPT)
    return _hops(v, kind)


def _tclass(v: int, kind: str) -> int:
    v = _hops(v, kind)
    return v & ~3 if kind == "tcp" and v > 0 else v


def _maxseg(v: int, kind: str) -> int:
    if v and not TCP_MIN_MSS <= v <= MAX_TCP_WINDOW:
        raise _err(errno.EINVAL)
    return v


def _linger2(v: int, kind: str) -> int:
    return -1 if v < 0 else min(v, TCP_FIN_TIMEOUT_MAX)


def _rcvlowat(v: int, kind: str) -> int:
    return INT_MAX if v < 0 else (v or 1)


def _window_clamp(v: int, kind: str) -> int:
    return v if v == 0 or v >= RCVBUF_MIN // 2 else RCVBUF_MIN // 2


def _nonneg(v: int, kind: str) -> int:
    if v < 0:
        raise _err(errno.EINVAL)
    return v


def _bool01(v: int, kind: str) -> int:
    if v not in (0, 1):
        raise _err(errno.EINVAL)
    return v


_MREQN = struct.Struct("=4s4si")
_MREQ6_INDEX = struct.Struct("=i")
ANY4 = bytes(4)
#: struct group_req (RFC 3678 5.2.1, Linux's layout on a 64-bit host): the
#: interface index, padding, a sockaddr_storage.
GROUP_REQ_SIZE = 8 + 128 if struct.calcsize("P") == 8 else 4 + 128


def _ip_mreq(raw: bytes, kind: str) -> tuple[bytes, bytes, int]:
    """IP_ADD/DROP_MEMBERSHIP: struct ip_mreq (group, interface address) or,
    from 12 bytes, ip_mreqn (group, address, index). A TCP socket: EPROTO,
    before the length (Linux's do_ip_setsockopt)."""
    if kind == "tcp":
        raise _err(errno.EPROTO)
    if len(raw) < 8:
        raise _err(errno.EINVAL)
    if len(raw) >= _MREQN.size:
        group, addr, index = _MREQN.unpack_from(raw)
        return group, addr, index
    return raw[:4], raw[4:8], 0


def _ipv6_mreq(raw: bytes, kind: str) -> tuple[bytes, bytes, int]:
    """IPV6_JOIN/LEAVE_GROUP: struct ipv6_mreq (group, interface index; 0: the
    route's). The length first, then EPROTO for TCP (ipv6_setsockopt)."""
    if len(raw) < 20:
        raise _err(errno.EINVAL)
    if kind == "tcp":
        raise _err(errno.EPROTO)
    return raw[:16], ANY4, _MREQ6_INDEX.unpack_from(raw, 16)[0]


def _group_req(family: int) -> Callable[[bytes, str], tuple[bytes, bytes, int]]:
    """MCAST_JOIN/LEAVE_GROUP: struct group_req (index, sockaddr of the group).
    Linux takes them on TCP sockets too; a group of the other family is
    EINVAL at IPv4's level, EADDRNOTAVAIL at IPv6's."""
    def decode(raw: bytes, kind: str) -> tuple[bytes, bytes, int]:
        if len(raw) < GROUP_REQ_SIZE:
            raise _err(errno.EINVAL)
        index = int.from_bytes(raw[:4], sys.byteorder)
        at = GROUP_REQ_SIZE - 128
        if int.from_bytes(raw[at:at + 2], sys.byteorder) != family:
            raise _err(errno.EINVAL if family == _std.AF_INET else errno.EADDRNOTAVAIL)
        if family == _std.AF_INET:
            return raw[at + 4:at + 8], ANY4, index
        return raw[at + 8:at + 24], ANY4, index
    return decode


def _ip_mreq_source(raw: bytes, kind: str) -> tuple[bytes, bytes, int, bytes]:
    """IP_ADD/DROP_SOURCE_MEMBERSHIP, IP_BLOCK/UNBLOCK_SOURCE: struct
    ip_mreq_source (group, interface address, source), exactly 12 bytes:
    (group, address, index 0, source)."""
    if len(raw) != 12:
        raise _err(errno.EINVAL)
    return raw[:4], raw[4:8], 0, raw[8:12]


def _group_source_req(raw: bytes, kind: str) -> tuple[bytes, bytes, int, bytes]:
    """MCAST_JOIN/LEAVE_SOURCE_GROUP, MCAST_BLOCK/UNBLOCK_SOURCE at IPv4's
    level: struct group_source_req (index, group and source sockaddrs, both
    AF_INET, else EADDRNOTAVAIL): (group, 0.0.0.0, index, source)."""
    if len(raw) < GROUP_REQ_SIZE + 128:
        raise _err(errno.EINVAL)
    at = GROUP_REQ_SIZE - 128
    families = (int.from_bytes(raw[at:at + 2], sys.byteorder),
                int.from_bytes(raw[at + 128:at + 130], sys.byteorder))
    if families != (_std.AF_INET, _std.AF_INET):
        raise _err(errno.EADDRNOTAVAIL)
    return (raw[at + 4:at + 8], ANY4, int.from_bytes(raw[:4], sys.byteorder),
            raw[at + 132:at + 136])


def _ip_mcast_if(raw: bytes, kind: str) -> tuple[bytes, int]:
    """IP_MULTICAST_IF: an in_addr, an ip_mreq (its address) or an ip_mreqn
    (address and index): (address, index). EINVAL on a TCP socket."""
    if kind == "tcp" or len(raw) < 4:
        raise _err(errno.EINVAL)
    if len(raw) >= _MREQN.size:
        _, addr, index = _MREQN.unpack_from(raw)
        return addr, index
    return (raw[4:8], 0) if len(raw) >= 8 else (raw[:4], 0)


def _ipv6_mcast_if(raw: bytes, kind: str) -> int:
    """IPV6_MULTICAST_IF: an interface index (0: the route's); a stream
    socket has none to set (ENOPROTOOPT, before the length)."""
    if kind == "tcp":
        raise _err(errno.ENOPROTOOPT)
    if len(raw) < 4:
        raise _err(errno.EINVAL)
    index: int = _MREQ6_INDEX.unpack_from(raw)[0]
    return index


#: (level, optname) -> Opt. Options answered by the socket itself (SO_TYPE,
#: SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, SO_RCVTIMEO, SO_SNDTIMEO) are
#: sock_common.local_sockopt's.
TABLE: dict[tuple[int, int], Opt] = {
    (S, _std.SO_REUSEADDR): Opt("SO_REUSEADDR", ALL, "bool"),
    (S, getattr(_std, "SO_REUSEPORT", 15)): Opt("SO_REUSEPORT", ALL, "bool"),
    (S, _std.SO_KEEPALIVE): Opt("SO_KEEPALIVE", ALL, "bool"),
    (S, _std.SO_BROADCAST): Opt("SO_BROADCAST", ALL, "bool"),
    (S, _std.SO_OOBINLINE): Opt("SO_OOBINLINE", ALL, "bool"),
    (S, _std.SO_DONTROUTE): Opt("SO_DONTROUTE", ALL, "bool"),
    (S, getattr(_std, "SO_PRIORITY", 12)): Opt("SO_PRIORITY", ALL, "int"),
    (S, getattr(_std, "SO_MARK", 36)): Opt("SO_MARK", ALL, "int"),
    (S, _std.SO_RCVLOWAT): Opt("SO_RCVLOWAT", ALL, "int", 1, _rcvlowat),
    (S, _std.SO_SNDLOWAT): Opt("SO_SNDLOWAT", ALL, "get", 1),
    (S, _std.SO_SNDBUF): Opt("SO_SNDBUF", ALL, "int", None, _buf(SNDBUF_MIN)),
    (S, _std.SO_RCVBUF): Opt("SO_RCVBUF", ALL, "int", None, _buf(RCVBUF_MIN)),
    (S, _std.SO_LINGER): Opt("SO_LINGER", ALL, "linger", (0, 0)),
    (S, _std.SO_ERROR): Opt("SO_ERROR", ALL, "get"),
    (S, SO_BINDTODEVICE): Opt("SO_BINDTODEVICE", ALL, "bytes", b""),
    (IP, _std.IP_TTL): Opt("IP_TTL", ALL, "int", -1, _ttl, 1),
    (IP, _std.IP_TOS): Opt("IP_TOS", ALL, "int", 0, _tos, 1),
    (IP, IP_MTU): Opt("IP_MTU", ALL, "get"),
    (IP, IP_MTU_DISCOVER): Opt("IP_MTU_DISCOVER", ALL, "int", 1, _range(0, 5), 1),
    (IP, IP_RECVERR): Opt("IP_RECVERR", ALL, "bool", 0, None, 1),
    (IP, _std.IP_MULTICAST_TTL): Opt("IP_MULTICAST_TTL", ALL, "int", 1, _mcast_ttl, 1),
    (IP, _std.IP_MULTICAST_LOOP): Opt("IP_MULTICAST_LOOP", ALL, "bool", 1, None, 1),
    (IP, _std.IP_OPTIONS): Opt("IP_OPTIONS", ALL, "bytes", b""),
    (IP, _std.IP_ADD_MEMBERSHIP): Opt("IP_ADD_MEMBERSHIP", ALL, "set", decode=_ip_mreq),
    (IP, _std.IP_DROP_MEMBERSHIP): Opt("IP_DROP_MEMBERSHIP", ALL, "set", decode=_ip_mreq),
    (IP, MCAST_JOIN_GROUP): Opt("MCAST_JOIN_GROUP", ALL, "set",
                                decode=_group_req(_std.AF_INET)),
    (IP, MCAST_LEAVE_GROUP): Opt("MCAST_LEAVE_GROUP", ALL, "set",
                                 decode=_group_req(_std.AF_INET)),
    (IP, IP_ADD_SOURCE_MEMBERSHIP): Opt("IP_ADD_SOURCE_MEMBERSHIP", ALL, "set",
                                        decode=_ip_mreq_source),
    (IP, IP_DROP_SOURCE_MEMBERSHIP): Opt("IP_DROP_SOURCE_MEMBERSHIP", ALL, "set",
                                         decode=_ip_mreq_source),
    (IP, IP_BLOCK_SOURCE): Opt("IP_BLOCK_SOURCE", ALL, "set", decode=_ip_mreq_source),
    (IP, IP_UNBLOCK_SOURCE): Opt("IP_UNBLOCK_SOURCE", ALL, "set", decode=_ip_mreq_source),
    (IP, MCAST_JOIN_SOURCE_GROUP): Opt("MCAST_JOIN_SOURCE_GROUP", ALL, "set",
                                       decode=_group_source_req),
    (IP, MCAST_LEAVE_SOURCE_GROUP): Opt("MCAST_LEAVE_SOURCE_GROUP", ALL, "set",
                                        decode=_group_source_req),
    (IP, MCAST_BLOCK_SOURCE): Opt("MCAST_BLOCK_SOURCE", ALL, "set", decode=_group_source_req),
    (IP, MCAST_UNBLOCK_SOURCE): Opt("MCAST_UNBLOCK_SOURCE", ALL, "set",
                                    decode=_group_source_req),
    (IP, _std.IP_MULTICAST_IF): Opt("IP_MULTICAST_IF", ALL, "struct", ANY4,
                                    decode=_ip_mcast_if),
    (IP, IP_MULTICAST_ALL): Opt("IP_MULTICAST_ALL", ALL, "int", None, _bool01, 1),
    (TCP, _std.TCP_NODELAY): Opt("TCP_NODELAY", TCP_ONLY, "bool"),
    (TCP, getattr(_std, "TCP_CORK", 3)): Opt("TCP_CORK", TCP_ONLY, "bool"),
    (TCP, _std.TCP_MAXSEG): Opt("TCP_MAXSEG", TCP_ONLY, "int", 0, _maxseg),
    (TCP, getattr(_std, "TCP_KEEPIDLE", 4)): Opt("TCP_KEEPIDLE", TCP_ONLY, "int", "keepalive_idle",
                                                  _range(1, 32767)),
    (TCP, getattr(_std, "TCP_KEEPINTVL", 5)): Opt("TCP_KEEPINTVL", TCP_ONLY, "int", "keepalive_interval",
                                                   _range(1, 32767)),
    (TCP, getattr(_std, "TCP_KEEPCNT", 6)): Opt("TCP_KEEPCNT", TCP_ONLY, "int", "keepalive_count",
                                                 _range(1, 127)),
    (TCP, getattr(_std, "TCP_SYNCNT", 7)): Opt("TCP_SYNCNT", TCP_ONLY, "int", "syn_retries",
                                               _range(1, 127)),
    (TCP, TCP_LINGER2): Opt("TCP_LINGER2", TCP_ONLY, "int", 0, _linger2),
    (TCP, getattr(_std, "TCP_DEFER_ACCEPT", 9)): Opt("TCP_DEFER_ACCEPT", TCP_ONLY, "int", 0,
                                                      _nonneg),
    (TCP, TCP_WINDOW_CLAMP): Opt("TCP_WINDOW_CLAMP", TCP_ONLY, "int", None,
                                                       _window_clamp),
    (TCP, TCP_INFO): Opt("TCP_INFO", TCP_ONLY, "get"),
    (TCP, getattr(_std, "TCP_QUICKACK", 12)): Opt("TCP_QUICKACK", TCP_ONLY, "bool", 1),
    (TCP, TCP_CONGESTION): Opt("TCP_CONGESTION", TCP_ONLY, "bytes", CONGESTION),
    (TCP, getattr(_std, "TCP_USER_TIMEOUT", 18)): Opt("TCP_USER_TIMEOUT", TCP_ONLY, "int", 0,
                                                       _nonneg),
    (TCP, getattr(_std, "TCP_FASTOPEN", 23)): Opt("TCP_FASTOPEN", TCP_ONLY, "int", 0, _nonneg),
    (TCP, getattr(_std, "TCP_NOTSENT_LOWAT", 25)): Opt("TCP_NOTSENT_LOWAT", TCP_ONLY, "int"),
    (IP6, _std.IPV6_V6ONLY): Opt("IPV6_V6ONLY", ALL, "bool"),
    (IP6, _std.IPV6_UNICAST_HOPS): Opt("IPV6_UNICAST_HOPS", ALL, "int", -1, _hops),
    (IP6, _std.IPV6_TCLASS): Opt("IPV6_TCLASS", ALL, "int", -1, _tclass),
    (IP6, _std.IPV6_MULTICAST_HOPS): Opt("IPV6_MULTICAST_HOPS", ALL, "int", -1, _mcast_hops),
    (IP6, _std.IPV6_MULTICAST_LOOP): Opt("IPV6_MULTICAST_LOOP", ALL, "int", 1, _bool01),
    (IP6, _std.IPV6_JOIN_GROUP): Opt("IPV6_JOIN_GROUP", ALL, "set", decode=_ipv6_mreq),
    (IP6, _std.IPV6_LEAVE_GROUP): Opt("IPV6_LEAVE_GROUP", ALL, "set", decode=_ipv6_mreq),
    (IP6, MCAST_JOIN_GROUP): Opt("MCAST_JOIN_GROUP", ALL, "set",
                                 decode=_group_req(_std.AF_INET6)),
    (IP6, MCAST_LEAVE_GROUP): Opt("MCAST_LEAVE_GROUP", ALL, "set",
                                  decode=_group_req(_std.AF_INET6)),
    (IP6, _std.IPV6_MULTICAST_IF): Opt("IPV6_MULTICAST_IF", ALL, "struct", 0,
                                        decode=_ipv6_mcast_if),
    (IP6, IPV6_MULTICAST_ALL): Opt("IPV6_MULTICAST_ALL", ALL, "bool", 1),
}
#: Memberships: (level, optname) -> True for a join, False for a leave.
JOINS = {(IP, _std.IP_ADD_MEMBERSHIP): True, (IP, _std.IP_DROP_MEMBERSHIP): False,
         (IP, MCAST_JOIN_GROUP): True, (IP, MCAST_LEAVE_GROUP): False,
         (IP6, _std.IPV6_JOIN_GROUP): True, (IP6, _std.IPV6_LEAVE_GROUP): False,
         (IP6, MCAST_JOIN_GROUP): True, (IP6, MCAST_LEAVE_GROUP): False}
#: Source filters (IPv4): (level, optname) -> (add, INCLUDE mode).
SOURCES = {(IP, IP_ADD_SOURCE_MEMBERSHIP): (True, True),
           (IP, IP_DROP_SOURCE_MEMBERSHIP): (False, True),
           (IP, IP_BLOCK_SOURCE): (True, False), (IP, IP_UNBLOCK_SOURCE): (False, False),
           (IP, MCAST_JOIN_SOURCE_GROUP): (True, True),
           (IP, MCAST_LEAVE_SOURCE_GROUP): (False, True),
           (IP, MCAST_BLOCK_SOURCE): (True, False), (IP, MCAST_UNBLOCK_SOURCE): (False, False)}
#: What the stack keeps when the program's value is -1 ("the default").
_DEFAULTED = {(IP, _std.IP_TTL), (IP6, _std.IPV6_UNICAST_HOPS), (IP6, _std.IPV6_TCLASS),
              (IP6, _std.IPV6_MULTICAST_HOPS)}
_LEVELS = {S, IP, TCP, IP6}
#: Options that exist for every socket but reject a set (Linux's ENOPROTOOPT).
_READ_ONLY = {(S, _std.SO_TYPE), (S, getattr(_std, "SO_DOMAIN", 39)),
              (S, getattr(_std, "SO_PROTOCOL", 38)), (S, getattr(_std, "SO_ACCEPTCONN", 30))}


def lookup(family: int, kind: str, level: int, optname: int, setting: bool) -> Opt:
    """The option, or Linux's error for a level or option this socket lacks:
    an unknown level (TCP's on a UDP socket, IPv6's on an AF_INET one) is
    EOPNOTSUPP to getsockopt and ENOPROTOOPT to setsockopt."""
    if level not in _LEVELS or (level == TCP and kind != "tcp") or (
            level == IP6 and family != _std.AF_INET6):
        raise _err(errno.ENOPROTOOPT if setting else errno.EOPNOTSUPP)
    opt = TABLE.get((level, optname))
    if opt is None or (setting and opt.value == "get") or (
            not setting and opt.value == "set"):
        raise _err(errno.ENOPROTOOPT)
    if kind not in opt.kinds:
        raise _err(errno.ENOPROTOOPT)
    return opt


def asks_stack(level: int, optname: int) -> bool:
    """Whether a set's checks need the stack's state (an interface, the
    socket's memberships): an attached socket asks serve at once."""
    opt = TABLE.get((level, optname))
    return opt is not None and opt.value in ("set", "struct")


def parse(family: int, kind: str, level: int, optname: int, value: Any) -> Any:
    """Program side: what ``setsockopt(level, optname, value)`` keeps, checked
    as Linux checks it (no state needed): an int, (onoff, seconds) for
    SO_LINGER, bytes for a name or buffer. Raises OSError with Linux's errno."""
    if (level, optname) in _READ_ONLY:
        raise _err(errno.ENOPROTOOPT)
    opt = lookup(family, kind, level, optname, True)
    if value is None:
        raise TypeError("setsockopt() value must be an int or a buffer")
    if opt.value in ("bytes", "set", "struct"):
        if isinstance(value, int | bool):
            raw = int(value).to_bytes(4, sys.byteorder, signed=True)
        else:
            raw = bytes(value)
        return raw if opt.decode is None else opt.decode(raw, kind)
    if isinstance(value, bool | int):
        raw = int(value).to_bytes(4, sys.byteorder, signed=True) if -2**31 <= value < 2**31 \
            else b""
        if not raw:
            raise OverflowError("signed integer is greater than maximum")
    else:
        raw = bytes(value)
    if opt.value == "linger":
        if len(raw) < _LINGER.size:
            raise _err(errno.EINVAL)
        return _LINGER.unpack_from(raw)
    if len(raw) < opt.minlen:
        raise _err(errno.EINVAL)
    val = int.from_bytes(raw[:4], sys.byteorder, signed=True) if len(raw) >= 4 else raw[0]
    if opt.value == "bool":
        return int(val != 0)
    if opt.check is not None:
        val = opt.check(val, kind)
    return val


def answer(value: int | bytes, buflen: int | None) -> Any:
    """Program side: getsockopt's return for the stack's answer (an int, or the
    option's bytes): an int without ``buflen`` (as the C call with an int-sized
    buffer), else at most ``buflen`` bytes."""
    if buflen is not None and not 0 < buflen <= 1024:
        raise OSError("getsockopt buflen out of range")      # (the stdlib's words)
    if isinstance(value, int):
        if buflen is None:
            return value
        return value.to_bytes(4, sys.byteorder, signed=True)[:buflen]
    if buflen is None:
        return int.from_bytes(value[:4].ljust(4, b"\0"), sys.byteorder, signed=True)
    return value[:buflen]


# -- the loop thread's half ------------------------------------------------------------------

def _name(val: bytes) -> bytes:
    return val.split(b"\0", 1)[0]


def store(link: Any, level: int, optname: int, val: Any) -> None:
    """Loop thread: keep a value ``parse`` checked and apply it where the stack
    has the knob (the state-dependent checks are here)."""
    key = (level, optname)
    tcp = link.kind == "tcp"
    if key == (TCP, TCP_CONGESTION):
        if _name(val) != CONGESTION:
            raise _err(errno.ENOENT)
        return
    if key == (S, SO_BINDTODEVICE):
        name = _name(val)
        if name and not any(iface.name.encode() == name
                            for iface in link.net.stack.interfaces):
            raise _err(errno.ENODEV)
        link.opts[key] = name
        return
    if key in JOINS or key in SOURCES:
        _membership(link, key, val)
        return
    if key == (IP, _std.IP_MULTICAST_IF):
        link.opts[key] = _mcast_if(link.net.stack, *val)
        return
    if key == (IP6, _std.IPV6_MULTICAST_IF):
        if val and not any(i.index == val for i in link.net.stack.interfaces):
            raise _err(errno.ENODEV)
        link.opts[key] = val
        return
    if key in ((IP, IP_MULTICAST_ALL), (IP6, IPV6_MULTICAST_ALL)):
        link.opts[key] = val
        ms = getattr(link, "mcast", None)
        if ms is not None:
            if key[0] == IP:
                ms.all4 = bool(val)
            else:
                ms.all6 = bool(val)
        return
    if key == (IP, _std.IP_OPTIONS):
        if val:                  # the stack sends no IP options
            raise _err(errno.EINVAL)
        return
    if key == (IP6, _std.IPV6_V6ONLY):
        if link.local is not None or getattr(link, "bound", None) is not None:
            raise _err(errno.EINVAL)
        link.opts[key] = bool(val)
        return
    if tcp and key == (TCP, TCP_WINDOW_CLAMP) and val == 0 and (
            link.conn is not None or link.listener is not None):
        raise _err(errno.EINVAL)
    if tcp:
        link.set_opt(level, optname, val)
        return
    link.opts[key] = val
    apply = getattr(link, "apply_opts", None)
    if apply is not None:
        apply()


def _membership(link: Any, key: tuple[int, int], val: tuple[Any, ...]) -> None:
    """A join or leave, or a source of one (``stack/mcast.py``, Linux's
    errors). IP_ADD_SOURCE_MEMBERSHIP and MCAST_JOIN_SOURCE_GROUP join in
    INCLUDE mode first when the socket has not joined (do_ip_setsockopt)."""
    from femtotcp.stack import mcast
    group, addr, index = val[:3]
    ms = getattr(link, "mcast", None)
    if ms is None:      # a stream socket's MCAST_JOIN_GROUP (Linux takes it)
        ms = link.mcast = mcast.Memberships(link.v6)
    stack = link.net.stack
    if key in JOINS:
        if JOINS[key]:
            mcast.join(stack, ms, group, index, addr)
        else:
            mcast.leave(stack, ms, group, index, addr)
        return
    add, include = SOURCES[key]
    if add and include:
        try:
            mcast.join(stack, ms, group, index, addr, include=True)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    mcast.source(stack, ms, add, include, group, addr, val[3], index)


def _mcast_if(stack: Any, addr: bytes, index: int) -> tuple[bytes, int]:
    """IP_MULTICAST_IF's (address, index) kept (do_ip_setsockopt): both 0
    resets it; an index, or an address of ours, names the interface, else
    EADDRNOTAVAIL."""
    if not index:
        if addr == ANY4:
            return ANY4, 0
        iface = stack.local_iface(addr) if stack.is_local(addr) and addr[0] != 127 else None
        if iface is None:
            raise _err(errno.EADDRNOTAVAIL)
        return addr, iface.index
    if not any(i.index == index for i in stack.interfaces):
        raise _err(errno.EADDRNOTAVAIL)
    return addr, index


def fetch(link: Any, family: int, level: int, optname: int) -> int | bytes:
    """Loop thread: getsockopt's answer (an int, or the option's bytes)."""
    kind = link.kind
    opt = lookup(family, kind, level, optname, False)
    key = (level, optname)
    if key == (S, _std.SO_ERROR):
        err: int = link.take_so_error()
        return err
    if key == (TCP, TCP_INFO):
        return tcp_info(link)
    conn = getattr(link, "conn", None)
    if key == (IP, IP_MTU):
        remote = link.remote if conn is None else conn.remote
        if remote is None or (kind == "tcp" and conn is None):
            raise _err(errno.ENOTCONN)
        return int(link.net.stack.route_mtu(remote[0]))
    if key == (TCP, _std.TCP_MAXSEG):      # the MSS in use; before one, what was set
        return int(conn.mss) if conn is not None else (
            link.opts.get(key) or TCP_MSS_DEFAULT)
    if key == (TCP, TCP_CONGESTION):
        return CONGESTION.ljust(TCP_CA_NAME_MAX, b"\0")
    val = link.opts.get(key)
    if key == (IP, _std.IP_MULTICAST_IF):
        return ANY4 if val is None else bytes(val[0])
    if key == (IP, IP_MULTICAST_ALL) and val is None:
        return 1 if family == _std.AF_INET else 0
    if key in ((S, _std.SO_SNDBUF), (S, _std.SO_RCVBUF)) and val is None:
        return current_buf(link, optname)
    if key == (TCP, TCP_WINDOW_CLAMP) and val is None:
        return 0 if conn is None else int(conn.rcvbuf)
    if val is None:
        val = opt.default
    if opt.value == "linger":
        return _LINGER.pack(int(val[0]), int(val[1]))
    if isinstance(val, bytes):
        return val
    if key in _DEFAULTED and val == -1:
        if key == (IP6, _std.IPV6_TCLASS):
            return 0
        return 1 if key == (IP6, _std.IPV6_MULTICAST_HOPS) else int(link.net.stack.config.ttl)
    if key == (TCP, TCP_LINGER2) and val == 0:
        return int(_tcp_cfg(link, "fin_timeout", 60.0))
    if isinstance(val, str):            # the stack's TCP config holds the default
        return int(_tcp_cfg(link, val, 0))
    return int(val)


def current_buf(link: Any, optname: int) -> int:
    """SO_RCVBUF/SO_SNDBUF nobody set: the size the stack uses now."""
    name = "rcvbuf" if optname == _std.SO_RCVBUF else "sndbuf"
    obj: Any = getattr(link, "conn", None) or getattr(link, "ep", None)
    if obj is None:
        if link.kind == "tcp":
            tcp = link.net.stack.tcp
            return int(getattr(getattr(tcp, "config", None), name, 0) or 0)
        if name == "rcvbuf":
            return int(getattr(link.net.stack.config, "udp_rcvbuf", 0) or 0)
        return 0
    return int(getattr(obj, name, 0) or 0)


def tcp_config(conn: Any, **changes: Any) -> None:
    """A connection's own copy of the TCP config with ``changes`` (TCP_SYNCNT's
    syn_retries, TCP_LINGER2's fin_timeout): the stack-wide one stays as it is."""
    conn.config = dataclasses.replace(conn.config, **changes)


# -- TCP_INFO ---------------------------------------------------------------------------------

#: struct tcp_info as Linux 6.18 lays it out (280 bytes); older kernels' structs
#: are prefixes of it, and a program reads the fields it knows.
_INFO = struct.Struct("=8B24I4Q6IQ3Q2I2Q6I2HI")
INFO_SIZE = 280
_STATES = {"ESTABLISHED": 1, "SYN_SENT": 2, "SYN_RECEIVED": 3, "FIN_WAIT_1": 4,
           "FIN_WAIT_2": 5, "TIME_WAIT": 6, "CLOSED": 7, "CLOSE_WAIT": 8, "LAST_ACK": 9,
           "LISTEN": 10, "CLOSING": 11}
_U32 = 0xFFFFFFFF


def tcp_info(link: Any) -> bytes:
    """TCP_INFO: the fields the connection knows (state, retransmits, backoff,
    options, window scales, rto, ato, MSSes, unacked, pmtu, rtt, rttvar,
    ssthresh, cwnd, advmss, reordering, rcv_space, bytes acked and received,
    segments out and in, notsent bytes, both windows), zeros for the rest;
    times in microseconds, ssthresh and cwnd in segments, as Linux."""
    conn = link.conn
    fields = [0] * 59
    if conn is None:
        listening = link.listener is not None
        fields[0] = 10 if listening else 7
        if not listening:
            fields[8] = int(_tcp_cfg(link, "rto_initial", 1.0) * 1e6)
            fields[10] = link.opts.get((TCP, _std.TCP_MAXSEG)) or TCP_MSS_DEFAULT
        fields[26] = _tcp_cfg(link, "initial_cwnd_segments", 10)
        return _INFO.pack(*fields).ljust(INFO_SIZE, b"\0")
    snd, rcv, opt = conn.snd, conn.rcv, conn.opt
    mss = max(1, int(opt.mss))
    rtt = snd.rtt
    cc = snd.cc
    flight = (snd.snd_nxt - snd.snd_una) & _U32
    fields[0] = _STATES.get(str(getattr(conn.state, "value", conn.state)), 7)
    fields[1] = 3 if snd.in_recovery else 0               # ca_state: TCP_CA_Recovery
    fields[2] = min(255, int(snd.retransmits))
    fields[4] = min(255, int(rtt.backoff))
    fields[5] = (1 if opt.ts_ok else 0) | (2 if opt.sack_ok else 0) | (
        4 if opt.snd_wscale or opt.rcv_wscale else 0)
    fields[6] = (int(opt.snd_wscale) & 15) | ((int(opt.rcv_wscale) & 15) << 4)
    fields[8] = int(rtt.rto * 1e6) & _U32                 # rto
    fields[9] = int(conn.config.delack * 1e6)             # ato
    fields[10] = mss                                      # snd_mss
    fields[11] = int(rcv.rcv_mss)                         # rcv_mss
    fields[12] = -(-flight // mss)                        # unacked (segments)
    fields[21] = int(conn.env.route_mtu(conn.remote[0]))  # pmtu
    fields[23] = int((rtt.srtt or 0.0) * 1e6) & _U32      # rtt
    fields[24] = int(rtt.rttvar * 1e6) & _U32             # rttvar
    fields[25] = min(INT_MAX, int(cc.ssthresh) // mss)    # snd_ssthresh
    fields[26] = int(cc.cwnd) // mss                      # snd_cwnd
    fields[27] = int(opt.adv_mss) - (12 if opt.ts_ok else 0)   # advmss
    fields[28] = int(conn.config.dupthresh)               # reordering
    fields[30] = int(rcv.space) & _U32                    # rcv_space (autotuning's)
    fields[34] = int(snd.bytes_acked)
    fields[35] = int(rcv.bytes_received)
    fields[36] = int(conn.segs_out) & _U32
    fields[37] = int(conn.segs_in) & _U32
    fields[38] = max(0, snd.snd_buf_seq + len(snd.snd_buf) - snd.snd_nxt)   # notsent_bytes
    fields[53] = int(snd.snd_wnd) & _U32                  # snd_wnd
    fields[54] = max(0, rcv.rcv_adv - rcv.rcv_nxt) & _U32  # rcv_wnd
    return _INFO.pack(*fields).ljust(INFO_SIZE, b"\0")


def _tcp_cfg(link: Any, name: str, default: Any) -> Any:
    return getattr(getattr(link.net.stack.tcp, "config", None), name, default)
