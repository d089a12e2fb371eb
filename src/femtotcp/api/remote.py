"""Attached programs: sockets that live in a running ``femtotcp serve``, used here by fd.

``femtotcp run --control PATH PROGRAM`` runs PROGRAM in its own process with the
socket module patched to a ``RemoteNetwork``. A socket is a Unix socket pair:
the program keeps one end "P" as the socket's fd; serve's loop thread pumps
the other end "Q" to and from the stack, exactly as for an in-process socket
(``api/sock_*``). Data therefore moves between the program and serve through
the kernel, never through a GIL the program shares with the stack; only
operations that need the stack are requests to serve's *socket service*
(``femtotcp.control.sockets``, a SOCK_SEQPACKET socket at
``service_path(control path)``).

The pair is made here, and Q goes to serve (SCM_RIGHTS) with the socket's first
request, written ``+op`` and carrying the socket's family, type and proto and
the options set so far, so ``socket()`` and ``setsockopt`` before it cost no
round trip. An accepted connection's pair is made
in serve as soon as the connection is ready, and its P comes on the listening
socket's own P with an ``ACCEPTED`` record, so ``accept`` is a read there
(with the socket's timeout; any process holding the listening fd may take
it), not a request. After its first
(binding) send, a UDP socket sends by writing records to P (``_KIND_SEND``),
without a request each.

The protocol, one request and one answer per SOCK_SEQPACKET message:

* request: ``_LEN`` (length of the JSON part), a JSON array ``[op, id, args...]``,
  then raw bytes (a datagram's payload for ``send``/``sendto``);
* answer: ``_LEN``, a JSON array ``[status, values...]`` (status 0: done;
  an errno: ``values[0]`` is the message; ``"gai"``: a ``socket.gaierror``;
  ``"timeout"``: ``TimeoutError``);
* compact: a TCP connect request (``connect``, or ``+connect`` without
  options) and a connect's answer [0, errno, state] are structs behind
  ``COMPACT`` in place of the length (``_CONNECT``, ``_CONNECTED``), which
  ``decode`` turns into the arrays above, so either side may send either form.

A socket's id is the inode of P (``os.fstat(fd).st_ino``), so any process holding
the fd (fork, ``os.dup``, ``pass_fds``, multiprocessing's reduction) can name
the socket to serve (``RemoteNetwork.adopt``). Serve frees a socket when every
copy of P is closed (the pair reports POLLHUP), which is what a process's death
or its last close does, as on Linux. The state serve answers with: the
socket's mode (TcpMode values, or ``dgram``), local and remote address, and
the scope id (RFC 4007) the socket is tied to. Addresses in requests carry
their scope id last (``bind``, ``connect``, ``uconnect``, ``sendto``).

Child processes attach too: ``attach_environment`` sets ``FEMTOTCP_ATTACH`` (the
service's path) and puts ``femtotcp/api/boot`` (a ``sitecustomize``) on
``PYTHONPATH``; a Python child runs ``attach_from_environment`` at start-up.
"""

from __future__ import annotations

import _socket
import errno
import json
import math
import os
import select
import socket as _std
import struct
import sys
import threading
import weakref
from typing import Any

from femtotcp.api import sockopts
from femtotcp.api.network import Network, _parse_ipv4
from femtotcp.api.sock_base import (
    _KIND_DATA,
    _KIND_DATA_SCOPED,
    _KIND_ERROR,
    _KIND_SEND,
    _NOT_HELD,
    _REC,
    _SCOPE,
    AF_INET,
    AF_INET6,
    AF_UNIX,
    BROADCAST4,
    DGRAM_MAX,
    DGRAM_PAIR_BUF,
    IPPROTO_ICMP,
    PAIR_BUF,
    SHUT_WR,
    SOCK_CLOEXEC,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    SOL_SOCKET,
    _oserror,
    _RealSocket,
    _SocketBase,
    gaierror,
    install_tls,
    tls_installed,
)
from femtotcp.api.sock_common import (
    IPPROTO_ICMPV6,
    NOT_LOCAL,
    dgram_into,
    inherit_on_p,
    link_kind,
    local_sockopt,
    parse_opt,
    send_error,
    set_on_p,
    set_timeo,
    shutdown_pair,
    sock_repr,
)
from femtotcp.wire import ip_bytes, ip_str

#: Environment variable naming the socket service a Python child attaches to.
ENV_ATTACH = "FEMTOTCP_ATTACH"
#: Where the child finds the femtotcp package when its own sys.path lacks it.
ENV_PATH = "FEMTOTCP_ATTACH_PYTHONPATH"
#: The socket service's path is the control socket's with this suffix.
SERVICE_SUFFIX = ".sockets"
#: Largest message either side sends (a 64 KiB datagram plus its request).
MAX_MESSAGE = 65536 + 4096
#: The most bytes one ``held`` answer carries (in hex, within MAX_MESSAGE).
HELD_MAX = 16384
#: SO_SNDBUF of serve's end of a stream pair (towards the program; Linux doubles it).
REMOTE_PAIR_BUF = 262144
#: Idle channels kept per process for reuse.
POOL_SIZE = 16

_LEN = struct.Struct("!H")
#: What an attached listening socket's P carries per connection ready to
#: accept, with that connection's own P (SCM_RIGHTS): its id, its local and
#: remote address (length, packed address, port), and its scope id (the
#: interface of a link-scope local address; 0 else).
ACCEPTED = struct.Struct("!QB16sHB16sHI")
#: The largest UDP payload over IPv4 (65535 - 20 - 8) and over IPv6 (65535 - 8).
_UDP_MAX = 65507
_UDP_MAX6 = 65527
_FD_SPACE = _std.CMSG_SPACE(struct.calcsize("i"))
#: ``recv_message``'s fd when one was sent but could not be received (EMFILE).
LOST_FD = -1

#: Modes a TCP socket reports (TcpMode values) and the datagram sockets' one.
IDLE, CONNECTING, CONNECTED, LISTENING, FAILED, DONE = (
    "idle", "connecting", "connected", "listening", "failed", "done")
DGRAM = "dgram"
#: Every mode, as a compact answer numbers them.
MODES = (IDLE, CONNECTING, CONNECTED, LISTENING, FAILED, DONE, DGRAM)


def service_path(control_path: str) -> str:
    """The socket service beside the control socket ``control_path``."""
    return os.path.abspath(control_path) + SERVICE_SUFFIX


# -- the messages ---------------------------------------------------------------------------

#: One encoder and decoder for every message (``json.dumps`` with arguments
#: builds a new encoder per call).
_json_out = json.JSONEncoder(separators=(",", ":")).encode
_json_in = json.JSONDecoder().decode


#: ``_LEN``'s value that marks a *compact* message: a struct instead of JSON,
#: for the hottest request, a TCP connect (``connect``, or ``+connect``, a
#: socket's first request, without options set before it), and for its
#: answer when it is done (``connected_answer``). A JSON part is always shorter.
COMPACT = 0xFFFF
COMPACT_MARK = _LEN.pack(COMPACT)
_C_CONNECT, _C_CONNECTED = 1, 2
#: A compact connect: marker, kind (_C_CONNECT), whether it is the socket's first
#: request (``+connect``: its family, type and proto count), socket id, family,
#: type, proto, destination (length, packed), port, filler, timeout (-1: none),
#: scope id.
_CONNECT = struct.Struct("!HBBQHHHB16sHIdI")
#: A compact connect answer: marker, kind (_C_CONNECTED), the connect's errno
#: (0: connected, or EINPROGRESS...), the mode (index in MODES), local and remote
#: address (length, packed, port; length 0: none), scope id.
_CONNECTED = struct.Struct("!HBiBB16sHB16sHI")


def encode(doc: list[Any], tail: bytes = b"") -> list[bytes]:
    """One message as buffers for ``sendmsg`` (compact for a connect request
    that fits, JSON otherwise)."""
    if doc[0] in ("connect", "+connect") and not tail:
        compact = _compact_connect(doc)
        if compact is not None:
            return [compact]
    body = _json_out(doc).encode()
    if len(body) >= COMPACT or len(body) + len(tail) + _LEN.size > MAX_MESSAGE:
        raise _oserror(errno.EMSGSIZE)
    return [_LEN.pack(len(body)), body, tail]


def _compact_connect(doc: list[Any]) -> bytes | None:
    """A connect request as a compact message; None when it does not fit one
    (options to carry, values out of range: it goes as JSON)."""
    try:
        if doc[0] == "+connect":
            _op, sid, family, kind, proto, opts, ip, port, filler, tmo, *scope = doc
            if opts:
                return None
            first = 1
        else:
            _op, sid, ip, port, filler, tmo, *scope = doc
            family = kind = proto = first = 0
        addr = ip_bytes(ip)
        return _CONNECT.pack(COMPACT, _C_CONNECT, first, sid, family, kind, proto, len(addr),
                             addr, port, filler, float(tmo), scope[0] if scope else 0)
    except (ValueError, TypeError, struct.error):
        return None


def connected_answer(err: int, mode: str, local: tuple[bytes, int] | None,
                     peer: tuple[bytes, int] | None, scope: int) -> bytes:
    """serve's answer to a connect that is done (or under way: EINPROGRESS):
    [0, err, [mode, local, remote, scope]] as a compact message."""
    laddr, lport = local if local is not None else (b"", 0)
    raddr, rport = peer if peer is not None else (b"", 0)
    return _CONNECTED.pack(COMPACT, _C_CONNECTED, err, MODES.index(mode), len(laddr), laddr,
                           lport, len(raddr), raddr, rport, scope)


def _addr_doc(alen: int, addr: bytes, port: int) -> list[Any] | None:
    if alen == 0:
        return None
    if alen not in (4, 16):
        raise ValueError("bad address length")
    return [ip_str(addr[:alen]), port]


def decode_connect(msg: bytes) -> tuple[bool, int, int, int, int, bytes, int, int, float, int]:
    """A compact connect request: (first, socket id, family, type, proto,
    packed destination, port, filler, timeout, scope id); ValueError when
    ``msg`` is no well-formed one."""
    if len(msg) != _CONNECT.size or msg[2] != _C_CONNECT or msg[:2] != COMPACT_MARK:
        raise ValueError("bad compact message")
    (_m, _k, first, sid, family, stype, proto, alen, addr, port, filler, tmo,
     scope) = _CONNECT.unpack(msg)
    if alen not in (4, 16):
        raise ValueError("bad address length")
    if not math.isfinite(tmo):
        raise ValueError("bad timeout")
    return bool(first), sid, family, stype, proto, addr[:alen], port, filler, tmo, scope


def _decode_compact(msg: bytes) -> list[Any]:
    """The JSON array a compact message stands for (ValueError when malformed)."""
    kind = msg[2] if len(msg) > 2 else -1
    if kind == _C_CONNECT:
        first, sid, family, stype, proto, dst, port, filler, tmo, scope = decode_connect(msg)
        if first:
            return ["+connect", sid, family, stype, proto, [], ip_str(dst), port, filler, tmo,
                    scope]
        return ["connect", sid, ip_str(dst), port, filler, tmo, scope]
    if kind == _C_CONNECTED and len(msg) == _CONNECTED.size:
        (_m, _k, err, mode, llen, laddr, lport, rlen, raddr, rport,
         scope) = _CONNECTED.unpack(msg)
        if mode >= len(MODES):
            raise ValueError("bad mode")
        return [0, err, [MODES[mode], _addr_doc(llen, laddr, lport),
                         _addr_doc(rlen, raddr, rport), scope]]
    raise ValueError("bad compact message")


def decode(msg: bytes) -> tuple[list[Any], bytes]:
    """(JSON array, raw tail) of one message; ValueError when malformed. A
    compact message gives the array it stands for (no tail)."""
    if len(msg) < _LEN.size:
        raise ValueError("short message")
    (n,) = _LEN.unpack_from(msg)
    if n == COMPACT:
        return _decode_compact(msg), b""
    if _LEN.size + n > len(msg):
        raise ValueError("bad length")
    doc = _json_in(msg[_LEN.size:_LEN.size + n].decode())
    if not isinstance(doc, list) or not doc:
        raise ValueError("not a request array")
    return doc, msg[_LEN.size + n:]


def recv_message(sock: _std.socket, recvmsg: Any = None, size: int = MAX_MESSAGE,
                 flags: int = 0) -> tuple[bytes, int | None]:
    """One message and the fd it carries (if any); b"" when the peer hung up.
    ``recvmsg``: the method to call (default ``sock.recvmsg``). ``LOST_FD``
    (-1) when an fd came but the kernel could not give it to us (MSG_CTRUNC:
    this process is at its limit of open files)."""
    if recvmsg is None:
        msg, anc, mflags, _addr = sock.recvmsg(size, _FD_SPACE, flags)
    else:
        msg, anc, mflags, _addr = recvmsg(sock, size, _FD_SPACE, flags)
    fd: int | None = None
    for level, kind, data in anc:
        if level == SOL_SOCKET and kind == _std.SCM_RIGHTS and len(data) >= 4:
            fd = int.from_bytes(data[:4], sys.byteorder, signed=True)
            for i in range(4, len(data) - 3, 4):       # (more than one: closed)
                os.close(int.from_bytes(data[i:i + 4], sys.byteorder, signed=True))
    if fd is None and mflags & _std.MSG_CTRUNC:
        fd = LOST_FD
    return msg, fd


# -- the program's side: channels to serve ------------------------------------------------------

class _Channel:
    """One SOCK_SEQPACKET connection to the socket service (one request at a time)."""

    def __init__(self, path: str) -> None:
        sock = _RealSocket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise _oserror(errno.ENETDOWN, f"no femtotcp serve answers at {path}: "
                           f"{exc.strerror}") from None
        self.sock = sock

    def ask(self, doc: list[Any], tail: bytes,
            give: int | None = None) -> tuple[list[Any], bytes, int | None]:
        try:
            if give is None:
                self.sock.sendmsg(encode(doc, tail))
            else:
                _std.send_fds(self.sock, encode(doc, tail), [give])
            msg, fd = recv_message(self.sock)
        except (BrokenPipeError, ConnectionResetError):
            msg, fd = b"", None
        if not msg:
            raise _oserror(errno.ECONNRESET, "femtotcp serve is gone")
        ans, rest = decode(msg)
        return ans, rest, fd

    def close(self) -> None:
        self.sock.close()


def check_kind(family: int, kind: int, proto: int) -> None:
    """The errors ``socket()`` gives for a kind the stack does not make."""
    link_kind(family, kind, proto)


def tune_pair(p: _socket.socket, q: _socket.socket, pair_kind: int) -> None:
    """The buffer sizes of an attached socket's pair: as ``femtotcp.api.socket``,
    but more room towards the program (serve's loop thread then fills it in
    fewer, larger writes, each waking the program once)."""
    if pair_kind == SOCK_STREAM:
        p.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, PAIR_BUF)
        q.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, REMOTE_PAIR_BUF)
    else:
        q.setsockopt(SOL_SOCKET, _std.SO_SNDBUF, DGRAM_PAIR_BUF)


_networks: weakref.WeakSet[RemoteNetwork] = weakref.WeakSet()
#: Sockets whose end of the pair serve does not have yet.
_pending: weakref.WeakSet[RemoteSocket] = weakref.WeakSet()


def _before_fork() -> None:
    """Both processes may use a socket after fork: serve must have it first."""
    for sock in list(_pending):
        try:
            sock._register()
        except OSError:
            pass


def _after_fork() -> None:
    """A forked child must not share its parent's channels (answers would cross),
    nor wait on a lock some other thread of the parent held at the fork."""
    for net in list(_networks):
        net._lock = threading.Lock()
        net.forget_channels()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork)


def _register_kept(keep: Any) -> None:
    """Before a spawn: serve must have every stack socket whose fd the child
    inherits (``pass_fds``), even one never used here yet."""
    if not _pending:
        return
    try:
        fds = {int(fd) for fd in keep}
    except (TypeError, ValueError):
        fds = None
    for sock in list(_pending):
        try:
            if fds is None or _RealSocket.fileno(sock) in fds:
                sock._register()
        except OSError:
            pass


def _spawn_hook(fork_exec: Any) -> Any:
    """``_posixsubprocess.fork_exec`` (subprocess, multiprocessing's spawn),
    which runs no ``register_at_fork`` hooks, with ``_register_kept`` first."""
    if getattr(fork_exec, "_femtotcp", False):
        return fork_exec

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if len(args) > 3:
            _register_kept(args[3])          # fds_to_keep
        return fork_exec(*args, **kwargs)

    hooked._femtotcp = True  # type: ignore[attr-defined]
    return hooked


def install_spawn_hook() -> None:
    """Make processes spawned from here find the stack sockets they inherit."""
    try:
        import _posixsubprocess
        import subprocess
    except ImportError:
        return
    _posixsubprocess.fork_exec = _spawn_hook(_posixsubprocess.fork_exec)
    if getattr(subprocess, "_fork_exec", None) is not None:
        subprocess._fork_exec = _spawn_hook(subprocess._fork_exec)  # type: ignore[attr-defined]


class RemoteNetwork(Network):
    """The network of an attached program: a ``femtotcp serve`` reached at
    ``path`` (its socket service). Name lookups: numeric forms and the hosts
    tables here, DNS through serve's resolver."""

    def __init__(self, path: str, hosts: dict[str, str] | None = None) -> None:
        super().__init__(None, None, hosts)  # type: ignore[arg-type]
        self.path = path
        self._idle: list[_Channel] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._info: list[Any] | None = None
        _networks.add(self)

    def _serve_info(self) -> list[Any] | None:
        """What serve tells once (``info``): whether its stack has IPv6, and
        its interfaces by index; None when serve does not answer."""
        if self._info is None:
            try:
                self._info = self.values("info", 0)
            except OSError:
                return None
        return self._info

    def has_ipv6(self) -> bool:
        """Whether serve's stack has IPv6 (asked once): AF_INET6 sockets are
        then the stack's, as in-process (``femtotcp.api.patch``)."""
        info = self._serve_info()
        return bool(info[0]) if info else False

    def if_nameindex(self) -> list[tuple[int, str]]:
        """``socket.if_nameindex`` for serve's stack (asked once, with
        ``has_ipv6``): loopback is 1 ("lo"), then its interfaces by index.
        ``if_nametoindex``/``if_indextoname`` (and so ``%ifname`` scopes)
        read it."""
        info = self._serve_info()
        if not info or len(info) < 2:
            return super().if_nameindex()
        return [(int(index), str(name)) for index, name in info[1]]

    # -- requests -------------------------------------------------------------------------
    def forget_channels(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._pid = os.getpid()
        for ch in idle:
            ch.close()

    def ask(self, *doc: Any, tail: bytes = b"",
            give: int | None = None) -> tuple[list[Any], bytes, int | None]:
        """Send one request (with the fd ``give``) and return (values, raw tail,
        fd); raises the answer's error."""
        if self._pid != os.getpid():
            self.forget_channels()
        with self._lock:
            ch = self._idle.pop() if self._idle else None
        if ch is None:
            ch = _Channel(self.path)
        try:
            ans, rest, fd = ch.ask(list(doc), tail, give)
        except BaseException:
            ch.close()            # an answer may still be on its way: never reuse
            raise
        with self._lock:
            if len(self._idle) < POOL_SIZE and self._pid == os.getpid():
                self._idle.append(ch)
                ch = None
        if ch is not None:
            ch.close()
        status = ans[0]
        if fd == LOST_FD:
            raise _oserror(errno.EMFILE)
        if status == 0:
            return ans[1:], rest, fd
        if fd is not None:
            os.close(fd)
        if status == "gai":
            raise gaierror(int(ans[1]), str(ans[2]))
        if status == "timeout":
            raise TimeoutError("timed out")
        err = int(status)
        raise OSError(err, str(ans[1]) if len(ans) > 1 and ans[1] else os.strerror(err))

    def values(self, *doc: Any, tail: bytes = b"") -> list[Any]:
        return self.ask(*doc, tail=tail)[0]

    # -- the socket module's helpers ------------------------------------------------------
    def socket_class(self) -> type[RemoteSocket]:  # type: ignore[override]
        return RemoteSocket

    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM,  # type: ignore[override]
               proto: int = 0) -> RemoteSocket:
        return RemoteSocket(family, type, proto, network=self)

    def adopt(self, fd: int, family: int = -1) -> RemoteSocket | None:
        """A socket object for ``fd`` when it is the program's end of a stack
        socket (handed over by fork, ``pass_fds``, SCM_RIGHTS...); else None."""
        if family not in (-1, AF_INET, AF_INET6):
            return None
        try:
            st = os.fstat(fd)
            probe = _RealSocket(fileno=fd)
        except OSError:
            return None
        try:
            if probe.family != AF_UNIX:
                return None
        finally:
            probe.detach()
        try:
            found = self.values("lookup", int(st.st_ino))
        except OSError:
            return None
        if not found or found[0] is None:
            return None
        sfamily, kind, proto, state = found
        return RemoteSocket._adopt(self, fd, int(st.st_ino), sfamily, kind, proto, state)

    def _dns(self, name: str) -> tuple[list[str], list[str]]:
        chain, addrs = self.values("dns", 0, name)
        return list(chain), list(addrs)

    def _names(self, host: str, family: int, flags: int) -> tuple[str, list[str]]:
        """A name's addresses for ``getaddrinfo``: this program's hosts table
        here; the rest in serve, which has the stack (/etc/hosts, A and AAAA
        records, AI_ADDRCONFIG and RFC 6724's order, as in-process)."""
        lower = host.strip().lower().rstrip(".")
        if (family == AF_INET or _parse_ipv4(lower) is not None
                or any(name.lower() == lower for name in self.hosts)
                or (family != AF_INET6 and not self.has_ipv6())):
            return super()._names(host, family, flags)      # no AAAA asked: as before
        canonical, addrs = self.values("names", 0, host, int(family), int(flags))
        return str(canonical), [str(a) for a in addrs]


class RemoteSocket(_SocketBase):
    """``socket.socket`` for an attached program: P here, the stack socket in serve."""

    __slots__ = ("_net", "_id", "_sfamily", "_stype", "_sproto", "_mode", "_local", "_remote",
                 "_scope", "_q", "_opts", "_to", "_from", "_rd_held")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, *, network: RemoteNetwork | None = None) -> None:
        if network is None:
            from femtotcp.api.network import current_network
            cur = current_network()
            if not isinstance(cur, RemoteNetwork):
                raise _oserror(errno.ENETDOWN, "no attached femtotcp serve")
            network = cur
        if fileno is not None:
            raise ValueError("use RemoteNetwork.adopt to wrap a file descriptor")
        family = AF_INET if family in (-1, None) else int(family)
        type_ = SOCK_STREAM if type in (-1, None) else int(type)
        proto = 0 if proto in (-1, None) else int(proto)
        kind = type_ & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        link_kind(family, kind, proto)
        pair_kind = SOCK_STREAM if kind == SOCK_STREAM else SOCK_SEQPACKET
        # The pair is made here; serve gets its end with the first request that
        # needs the stack (``_ask``), so making a socket costs no round trip.
        # (``_socket``'s pair: bare socket objects, without the two getsockname
        # calls ``socket.socketpair`` makes to wrap them.)
        p, q = _socket.socketpair(AF_UNIX, pair_kind | SOCK_CLOEXEC)
        try:
            tune_pair(p, q, pair_kind)
            _RealSocket.__init__(self, AF_UNIX, pair_kind, 0, p.detach())
        except BaseException:
            p.close()
            q.close()
            raise
        self._q: _socket.socket | None = q
        self._setup(network, os.fstat(self.fileno()).st_ino, family, kind, proto,
                    [IDLE if kind == SOCK_STREAM else DGRAM, None, None])
        _pending.add(self)
        if type_ & SOCK_NONBLOCK:
            self.setblocking(False)

    @classmethod
    def _adopt(cls, net: RemoteNetwork, fd: int, sid: int, family: int, kind: int,
               proto: int, state: list[Any]) -> RemoteSocket:
        new = cls.__new__(cls)
        pair_kind = SOCK_STREAM if kind == SOCK_STREAM else SOCK_SEQPACKET
        try:
            _RealSocket.__init__(new, AF_UNIX, pair_kind, 0, fd)
        except BaseException:
            os.close(fd)
            raise
        new._q = None
        new._setup(net, sid, family, kind, proto, state)
        return new

    def _setup(self, net: RemoteNetwork, sid: int, family: int, kind: int, proto: int,
               state: list[Any]) -> None:
        if kind == SOCK_STREAM and not tls_installed:
            install_tls()
        self._net = net
        self._id = sid
        self._sfamily, self._stype, self._sproto = family, kind, proto
        #: Options set before serve had the socket: they go with its first request.
        self._opts: list[list[Any]] = []
        #: The last address a datagram went to as a record (``sendto``) and that
        #: record's header and payload limit: the next datagram to the same
        #: numeric address reuses them. None until then.
        self._to: tuple[tuple[Any, ...], bytes, int] | None = None
        #: The last datagram source read (its record's address bytes) and that
        #: address as this socket's family shows it (``recvfrom``).
        self._from: tuple[bytes, Any] | None = None
        #: SHUT_RD done: at EOF on P, what serve's connection received since
        #: then is read by request (``_held``), as Linux goes on receiving.
        self._rd_held = False
        self._state(state)

    def _state(self, state: list[Any]) -> None:
        """[mode, local, remote, scope id] as serve answers (``state_of``): the
        scope is the interface the socket is tied to (``_Link.scope``), shown
        with link-scope addresses as Linux's getsockname/getpeername do."""
        self._mode = str(state[0])
        self._scope = int(state[3]) if len(state) > 3 else 0
        self._local = self._shown(state[1])
        self._remote = self._shown(state[2])

    def _shown(self, addr: Any) -> Any:
        """An address serve sends ([text, port]) as this socket's family shows it."""
        if addr is None:
            return None
        if self._sfamily == AF_INET:
            # serve's text is ip_str's already: _fmt would give it back as is.
            return (str(addr[0]), int(addr[1]))
        return self._fmt(ip_bytes(str(addr[0])), int(addr[1]), self._scope)

    def _ask(self, op: str, *args: Any, tail: bytes = b"") -> tuple[list[Any], int | None]:
        """One request about this socket; the first one hands serve its end of
        the pair (``+op``: the socket's kind, then the request, fd attached)."""
        q = self._q
        if q is None:
            values, _rest, fd = self._net.ask(op, self._id, *args, tail=tail)
            return values, fd
        self._q = None
        _pending.discard(self)
        opts, self._opts = self._opts, []
        try:
            values, _rest, fd = self._net.ask(
                "+" + op, self._id, self._sfamily, self._stype, self._sproto, opts, *args,
                tail=tail, give=q.fileno())
        finally:
            q.close()
        return values, fd

    def _values(self, op: str, *args: Any, tail: bytes = b"") -> list[Any]:
        return self._ask(op, *args, tail=tail)[0]

    def _refresh(self) -> None:
        self._state(self._values("state")[0])

    def _take_over(self, src: RemoteSocket, fileno: int) -> None:
        """Become ``src`` (whose fd is ``fileno``): what ``wrap_socket`` wraps
        (api/tls.py). Serve knows the socket by its pair, which stays."""
        _RealSocket.__init__(self, AF_UNIX, SOCK_STREAM if src._stype == SOCK_STREAM
                             else SOCK_SEQPACKET, 0, fileno)
        self._q, src._q = src._q, None
        if self._q is not None:
            _pending.discard(src)
            _pending.add(self)
        self._setup(src._net, src._id, src._sfamily, src._stype, src._sproto,
                    [src._mode, None, None, src._scope])
        self._local, self._remote, self._opts = src._local, src._remote, src._opts
        self._connect_unreported = getattr(src, "_connect_unreported", False)

    def _tls_handover(self) -> Any:
        return None

    def _tls_taken(self, _handover: Any) -> None:
        pass

    def _real_close(self, _ss: Any = _RealSocket) -> None:
        q = self._q
        if q is not None:
            self._q = None
            _pending.discard(self)
            q.close()
        _ss._real_close(self)

    # -- identity ----------------------------------------------------------------------------
    @property
    def network(self) -> RemoteNetwork:
        return self._net

    def __reduce_ex__(self, protocol: Any) -> Any:
        """multiprocessing hands sockets to other processes by fd (its
        ``reduction`` registers only the exact ``socket.socket`` class): the
        same for ours, whose fd names the same stack socket in every process."""
        reduction = sys.modules.get("multiprocessing.reduction")
        if reduction is None:
            return self.__getstate__()
        dup_fd = reduction.DupFd
        self._register()
        return _rebuild_socket, (dup_fd(self.fileno()), self._sfamily, self._stype,
                                 self._sproto)

    def dup(self) -> RemoteSocket:
        """A second handle on the same stack socket (like dup(2))."""
        self._register()
        new = RemoteSocket._adopt(self._net, os.dup(self.fileno()), self._id, self._sfamily,
                                  self._stype, self._sproto,
                                  [self._mode, self._local, self._remote, self._scope])
        new.settimeout(self.gettimeout())
        return new

    def detach(self) -> int:
        """Hand P's fd over (serve gets the socket first, so that whoever wraps the
        fd again, here or in another process, finds it)."""
        self._register()
        return _RealSocket.detach(self)

    def set_inheritable(self, inheritable: bool) -> None:
        """An inheritable fd may reach a child by exec: serve must have the socket."""
        if inheritable:
            self._register()
        _RealSocket.set_inheritable(self, inheritable)

    def _register(self) -> None:
        """Make sure serve has this socket (before its fd goes to another process)."""
        if self._q is not None and _RealSocket.fileno(self) != -1:
            self._refresh()

    # -- addresses ---------------------------------------------------------------------------
    def getsockname(self) -> Any:
        self._check_open()
        # Cached once known, except while TCP's own address may still change.
        if self._q is None and (self._local is None or self._mode in (IDLE, CONNECTING)):
            self._refresh()
        return self._local or self._fmt(None, 0)

    def getpeername(self) -> Any:
        self._check_open()
        # Another process holding the fd may have connected it since.
        if self._mode == CONNECTING or (self._mode == IDLE and self._q is None):
            self._refresh()
        if self._remote is None or self._mode not in (CONNECTED, DONE, DGRAM):
            raise _oserror(errno.ENOTCONN)
        return self._remote

    # -- bind / listen / accept / connect ------------------------------------------------------
    def bind(self, address: Any) -> None:
        self._check_open()
        packed, port, scope = self._addr_scoped(address, "bind")
        self._state(self._values("bind", ip_str(packed), port, scope)[0])

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._stype != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        self._state(self._values("listen", int(backlog))[0])

    def _accept(self) -> tuple[int, Any]:
        raise _oserror(errno.EOPNOTSUPP)

    def accept(self) -> tuple[RemoteSocket, Any]:
        if self._mode != LISTENING:
            self._check_open()
            raise _oserror(errno.EINVAL if self._stype == SOCK_STREAM else errno.EOPNOTSUPP)
        # serve hands each connection over whole: a record and the connection's
        # P on ours, read here with the socket's own timeout (no request).
        while True:
            msg, fd = recv_message(self, _RealSocket.recvmsg, ACCEPTED.size)
            if not msg:
                if fd is not None and fd >= 0:
                    os.close(fd)
                raise _oserror(errno.EINVAL, "the listening socket was closed")
            if fd == LOST_FD:
                # At our limit of open files: the connection's P could not be
                # taken, and with it the connection goes (serve frees it).
                raise _oserror(errno.EMFILE)
            if fd is not None and len(msg) == ACCEPTED.size:
                break
            if fd is not None:                 # (never sent so: skipped)
                os.close(fd)
        sid, llen, laddr, lport, rlen, raddr, rport, scope = ACCEPTED.unpack(msg)
        state = [CONNECTED, [ip_str(laddr[:llen]), lport], [ip_str(raddr[:rlen]), rport],
                 scope]
        new = RemoteSocket._adopt(self._net, fd, sid, self._sfamily, SOCK_STREAM,
                                  self._sproto, state)
        inherit_on_p(self, new)
        if _std.getdefaulttimeout() is None and self.gettimeout():
            new.setblocking(True)
        return new, new._remote or self._fmt(None, 0)

    def _connect_failed(self) -> bool:
        if self._mode == CONNECTING:
            self._refresh()
        return self._mode == FAILED

    def _renew(self) -> None:
        """A connect again after one that failed: a new pair in place of the
        spent one (``_fresh_pair``); serve gets its end with the connect, under
        the same socket id, and gives the new link the options the freed one
        had (``SocketService.adopt``)."""
        q = self._fresh_pair(lambda p, q: tune_pair(p, q, SOCK_STREAM))
        self._q = q
        _pending.add(self)
        self._state([IDLE, None, None, 0])

    def _connect(self, address: Any, raise_errors: bool) -> int:
        self._check_open()
        packed, port, scope = self._addr_scoped(address, "connect")
        ip = ip_str(packed)
        if self._stype == SOCK_STREAM and self._mode == FAILED and self._q is None:
            self._renew()
        if self._stype == SOCK_DGRAM:
            self._state(self._values("uconnect", ip, port, scope)[0])
            return 0
        if port == 0:
            if raise_errors:
                raise _oserror(errno.ECONNREFUSED)
            return errno.ECONNREFUSED
        tmo = self.gettimeout()
        filler = self._fill() if tmo == 0 and self._mode == IDLE else 0
        err, state = self._values("connect", ip, port, filler,
                                  -1.0 if tmo is None else float(tmo), scope)
        self._state(state)
        return int(err)

    # -- data ----------------------------------------------------------------------------------
    def _pending_error(self, exc: OSError | None = None) -> OSError | None:
        """The error to report instead of EOF/EPIPE on P (serve gone: ECONNRESET)."""
        try:
            err, state = self._values("err")
        except OSError as gone:
            if gone.errno == errno.EBADF:
                return exc
            return _oserror(errno.ECONNRESET, "femtotcp serve is gone")
        self._state(state)
        if err:
            return _oserror(int(err))
        if self._mode in (IDLE, LISTENING, CONNECTING, FAILED):
            return _oserror(send_error(self._mode))
        return exc

    def _eof_error(self) -> OSError | None:
        """The error to report at EOF on P, if any. A FIN from the peer leaves
        serve's end of the pair open (shut for writing): P is not hung up, and
        EOF is all, with no request. A reset, serve gone, or a connection done
        both ways closes serve's end (P hung up): serve says which."""
        poller = select.poll()
        poller.register(_RealSocket.fileno(self), 0)
        for _fd, events in poller.poll(0):
            if events & (select.POLLHUP | select.POLLERR):
                return self._pending_error()
        return None

    def _ready_for_data(self) -> None:
        if self._mode == CONNECTING or (self._mode == IDLE and self._q is None):
            self._refresh()
        if self._mode in (IDLE, LISTENING, CONNECTING):
            self._check_open()
            raise _oserror(errno.ENOTCONN)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._stype == SOCK_DGRAM:
            return self._recv_dgram(bufsize, flags)[0]
        if self._mode != CONNECTED:
            self._ready_for_data()
        data = _RealSocket.recv(self, bufsize, flags)
        if not data and bufsize:
            if self._rd_held and not flags & _NOT_HELD:
                data = self._held(bufsize)
                if data:
                    return data
            exc = self._eof_error()
            if exc is not None:
                raise exc
        return data

    def _held(self, n: int) -> bytes:
        """What the connection received since SHUT_RD (``_TcpLink.take_held``),
        up to ``n`` bytes and at most what one answer carries; b"" when none
        (or serve has let the socket go)."""
        try:
            return bytes.fromhex(self._values("held", min(n, HELD_MAX))[0])
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return b""
            raise

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._stype == SOCK_DGRAM:
            return dgram_into(buffer, nbytes, lambda n: self._recv_dgram(n, flags))[0]
        if self._mode != CONNECTED:
            self._ready_for_data()
        n = _RealSocket.recv_into(self, buffer, nbytes, flags)
        if n == 0 and (size := nbytes or len(memoryview(buffer))):
            if self._rd_held and not flags & _NOT_HELD:
                data = self._held(size)
                if data:
                    memoryview(buffer).cast("B")[:len(data)] = data
                    return len(data)
            exc = self._eof_error()
            if exc is not None:
                raise exc
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if self._stype == SOCK_DGRAM:
            return self._recv_dgram(bufsize, flags)
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        if self._stype == SOCK_DGRAM:
            return dgram_into(buffer, nbytes, lambda n: self._recv_dgram(n, flags))
        return self.recv_into(buffer, nbytes, flags), None

    def _recv_dgram(self, bufsize: int, flags: int) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if flags & _std.MSG_TRUNC:
            # The datagram's real length, as Linux returns it: the whole of it.
            flags &= ~_std.MSG_TRUNC
            bufsize = DGRAM_MAX
        while True:
            rec = _RealSocket.recv(self, bufsize + _REC.size + _SCOPE.size, flags)
            if len(rec) >= _REC.size and rec[0] == _KIND_DATA:
                # A datagram: its source is most often the last one's (a reply).
                raw = rec[1:_REC.size]
                seen = self._from
                if seen is not None and seen[0] == raw:
                    return rec[_REC.size:_REC.size + bufsize], seen[1]
                alen, port = raw[0], (raw[1] << 8) | raw[2]
                addr = self._fmt(raw[3:3 + alen], port)
                self._from = (raw, addr)
                return rec[_REC.size:_REC.size + bufsize], addr
            if len(rec) < _REC.size:
                if not rec:
                    exc = self._pending_error()
                    if exc is not None and exc.errno == errno.ECONNRESET:
                        raise exc
                return b"", None
            kind, alen, port, addr = _REC.unpack_from(rec)
            if kind == _KIND_DATA_SCOPED and len(rec) >= _REC.size + _SCOPE.size:
                start = _REC.size + _SCOPE.size      # a link-scope source: its scope id
                return (rec[start:start + bufsize],
                        self._fmt(addr[:alen], port, _SCOPE.unpack_from(rec, _REC.size)[0]))
            if kind != _KIND_ERROR:
                break
            if flags & _std.MSG_PEEK:
                raise _oserror(port)
            skip = self._values("errrec")[0]
            if not skip:
                raise _oserror(port)
        return rec[_REC.size:_REC.size + bufsize], self._fmt(addr[:alen], port)

    def _records(self) -> bool:
        """Whether datagrams go to serve as records on P (``_KIND_SEND``),
        without a round trip each: only once serve has the socket bound;
        ping sockets go by request (serve checks them)."""
        return (self._q is None and self._local is not None
                and self._sproto not in (IPPROTO_ICMP, IPPROTO_ICMPV6))

    def _write_now(self, data: Any) -> int:
        """As much of ``data`` as P takes now, by one write(2): a socket with a
        timeout would poll before its send(2), and P mostly has room. 0 when
        P is full and the socket has a timeout (its own send then waits);
        BlockingIOError for a non-blocking socket, as send gives."""
        try:
            return os.write(_RealSocket.fileno(self), data)
        except BlockingIOError:
            if not self.gettimeout():
                raise
            return 0

    def _write_record(self, rec: bytes) -> None:
        """One record to P (a SOCK_SEQPACKET write is whole or nothing)."""
        if not self._write_now(rec):
            _RealSocket.send(self, rec)

    def send(self, data: Any, flags: int = 0) -> int:
        if flags & _std.MSG_OOB:
            return self._send_urgent(data)
        if self._stype == SOCK_DGRAM:
            self._check_open()
            if self._records():
                # A datagram to the connected peer: a record without an address.
                if self._remote is None:
                    raise _oserror(errno.EDESTADDRREQ)
                rec = _CONNECTED_SEND + data
                if len(rec) - _REC.size > _UDP_MAX:
                    raise _oserror(errno.EMSGSIZE)
                self._write_record(rec)
                return len(rec) - _REC.size
            return int(self._values("send", tail=_payload(data))[0])
        if self._mode != CONNECTED:
            self._not_connected()
        try:
            if not flags:
                sent = self._write_now(data)
                if sent:
                    return sent
            return _RealSocket.send(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._send_error(exc) from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        if flags & _std.MSG_OOB:
            self._send_urgent(data)
            return
        if self._stype == SOCK_DGRAM:
            self.send(data)
            return
        if self._mode != CONNECTED:
            self._not_connected()
        try:
            if not flags and data.__class__ in (bytes, bytearray):
                # One write(2) where P takes it all (the common case), the
                # socket's own sendall for the rest.
                sent = self._write_now(data)
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
            _RealSocket.sendall(self, data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._send_error(exc) from None

    def _not_connected(self) -> None:
        self._check_open()
        if self._mode == CONNECTING:
            self._refresh()
            if self._mode == CONNECTED:
                return
        raise self._send_error(None)

    def _send_error(self, exc: OSError | None) -> OSError:
        """What a failed send raises: the connection's error, else the socket
        error (taken: Linux's send reports sk_err), else ``exc`` or EPIPE."""
        err = self._pending_error(exc)
        if err is not exc:
            assert err is not None
            return err
        if self._mode in (DONE, FAILED):
            so_error = int(self._values("soerr")[0])
            if so_error:
                return _oserror(so_error)
        return exc if exc is not None else _oserror(errno.EPIPE)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        address = flags_or_addr if addr is None else addr
        if addr is not None and flags_or_addr & _std.MSG_OOB:
            return self._send_urgent(data)     # (TCP: the address is not used)
        if self._stype == SOCK_DGRAM:
            self._check_open()
            to = self._to
            if to is not None and address == to[0] and address[1].__class__ is int:
                # The last record's address again (a numeric one: no lookup that
                # could answer differently now): its header as it was.
                head, limit = to[1], to[2]
            else:
                packed, port, scope = self._addr_scoped(address, "sendto")
                # Records carry no scope id (a scoped datagram is a request), and
                # broadcasts are checked in serve.
                if scope or packed == BROADCAST4 or not self._records():
                    sent, state = self._values("sendto", ip_str(packed), port, scope,
                                               tail=_payload(data))
                    self._state(state)
                    return int(sent)
                head = _REC.pack(_KIND_SEND, len(packed), port, packed)
                limit = _UDP_MAX6 if len(packed) == 16 else _UDP_MAX
                if (address.__class__ is tuple and address[0].__class__ is str
                        and address[1].__class__ is int and _numeric(address[0], packed)):
                    self._to = (address, head, limit)
            rec = head + data
            if len(rec) - _REC.size > limit:
                raise _oserror(errno.EMSGSIZE)
            self._write_record(rec)
            return len(rec) - _REC.size
        return self.send(data)      # (TCP: the address is not used, as on Linux)

    def _urgent(self, payload: bytes) -> None:
        if self._mode != CONNECTED:
            self._not_connected()
        self._values("urg", tail=payload)

    def shutdown(self, how: int) -> None:
        self._check_open()
        stream = self._stype == SOCK_STREAM
        if stream and self._mode == CONNECTING:
            self._refresh()

        def tell(h: int) -> None:
            # SHUT_WR needs no request: serve's pump reads the EOF on its end of
            # the pair and sends the FIN (socketserver shuts every connection so).
            if h != SHUT_WR:
                try:
                    self._values("shut", h)
                    self._rd_held = True
                except OSError as exc:
                    # P shut both ways reads, to serve, as the program gone:
                    # serve may have freed the socket already, which is what
                    # was asked (recv gives EOF and send EPIPE from P now).
                    if exc.errno != errno.EBADF or h != _std.SHUT_RDWR:
                        raise

        shutdown_pair(self, how, self._mode if stream else None, self._remote is not None, tell)

    # -- options ---------------------------------------------------------------------------------
    def setsockopt(self, level: int, optname: int, value: Any,
                   optlen: int | None = None) -> None:
        self._check_open()
        if set_timeo(self, level, optname, value):
            return
        val = parse_opt(self, level, optname, value)        # Linux's errors, here and now
        # What the program gave goes to serve, which checks it again (bytes as hex).
        wire = int(value) if isinstance(value, int) else bytes(value).hex()
        if self._q is not None and not isinstance(val, bytes) and \
                not sockopts.asks_stack(level, optname):
            # serve does not have the socket yet: the option goes with its first
            # request (a socket's options are set before it connects: no round trip).
            # A name (TCP_CONGESTION, SO_BINDTODEVICE), a membership or a
            # multicast interface is serve's to check: it asks.
            self._opts.append([level, optname, wire])
        else:
            self._values("setopt", level, optname, wire)
        set_on_p(self, level, optname, val)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        self._check_open()
        if level == SOL_SOCKET and optname == _std.SO_ERROR:
            return self._opt_out(self._values("soerr")[0], buflen)
        local = local_sockopt(self, level, optname, buflen, lambda: self._mode == LISTENING)
        if local is not NOT_LOCAL:
            return local
        value = self._values("getopt", level, optname)[0]
        return sockopts.answer(bytes.fromhex(value) if isinstance(value, str) else int(value),
                               buflen)

    def __repr__(self) -> str:
        return sock_repr(self, lambda: self._local, lambda: self._remote)


RemoteSocket._tls_base = RemoteSocket

#: The record header of a datagram to the connected peer (no address).
_CONNECTED_SEND = _REC.pack(_KIND_SEND, 0, 0, b"")


def _payload(data: Any) -> bytes:
    """A datagram's bytes: any bytes-like object (an int or a str is the
    TypeError the stdlib gives, not a buffer of that many zeros)."""
    return bytes(memoryview(data))


def _numeric(host: str, packed: bytes) -> bool:
    """Whether ``host`` is the numeric form of ``packed`` (no name, whose
    lookup may answer differently the next time)."""
    return ip_str(packed) == host


def _rebuild_socket(df: Any, family: int, kind: int, proto: int) -> Any:
    """The receiving side of ``RemoteSocket.__reduce_ex__`` (an attached process
    gets the stack socket back, through the patched ``socket.socket``)."""
    return _std.socket(family, kind, proto, fileno=df.detach())


# -- attaching (this process and its children) ---------------------------------------------------

def boot_dir() -> str:
    """The directory whose ``sitecustomize`` attaches a Python child."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")


def attach_environment(path: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Set (in ``env``, default ``os.environ``) what makes Python children attach
    to the socket service at ``path``; returns that mapping."""
    target = os.environ if env is None else env
    target[ENV_ATTACH] = path
    import femtotcp
    target[ENV_PATH] = os.path.dirname(os.path.dirname(os.path.abspath(femtotcp.__file__)))
    parts = [p for p in target.get("PYTHONPATH", "").split(os.pathsep) if p]
    if boot_dir() not in parts:
        target["PYTHONPATH"] = os.pathsep.join([boot_dir(), *parts])
    return target  # type: ignore[return-value]


def attach_from_environment() -> Any:
    """Patch this process onto the serve named by ``FEMTOTCP_ATTACH`` (the
    ``sitecustomize`` hook calls this); None when the variable is unset."""
    path = os.environ.get(ENV_ATTACH)
    if not path:
        return None
    from femtotcp.api.patch import Patch
    install_spawn_hook()
    return Patch(RemoteNetwork(path)).start()


__all__ = ["ENV_ATTACH", "RemoteNetwork", "RemoteSocket", "attach_environment",
           "attach_from_environment", "service_path"]
