"""A stack and its runtime as programs see them: ``Network``.

``Network`` offers the socket module's helpers for one stack (``socket``,
``create_connection``, ``create_server``, ``getaddrinfo``, ``gethostbyname``...),
runs socket operations in the loop thread (``call``, through
``femtotcp.api.loop``), and keeps the links the loop thread serves. Which
network a thread's sockets are made on (``current_network``: scoped, then
process-wide) is decided here too.
"""

from __future__ import annotations

import functools
import select
import socket as _std
import threading
import time as _time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from femtotcp.api import loop
from femtotcp.api.sock_base import (
    _GLOBAL_DEFAULT_TIMEOUT,
    _SO_REUSEPORT,
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SOCK_CLOEXEC,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_RAW,
    SOCK_STREAM,
    SOL_SOCKET,
    gaierror,
    herror,
    scope_index,
)
from femtotcp.wire import ip_bytes, ip_str

if TYPE_CHECKING:
    from femtotcp.api.sock_base import _Link, _SocketBase
    from femtotcp.api.sock_tcp import _TcpLink
    from femtotcp.api.socket import StackSocket
    from femtotcp.runtime import Runtime
    from femtotcp.stack.stack import Stack

T = TypeVar("T")


def _no_resolver(stack: Any) -> gaierror:
    """A name the hosts tables do not hold, on a stack with no resolver loaded.
    A stack that could load one (the dns module is in this build, UDP is
    loaded) is a host whose DNS client has no server to ask (no ``--dns``,
    no lease's, no RA's): glibc then says EAI_AGAIN, "Temporary failure in
    name resolution", as it does when none answers. Without it, names come
    from the hosts tables alone (glibc's "hosts: files"): EAI_NONAME."""
    from femtotcp.stack import modules
    if getattr(stack, "udp", None) is not None and modules.available("dns"):
        return gaierror(_std.EAI_AGAIN, "Temporary failure in name resolution")
    return gaierror(_std.EAI_NONAME, "Name or service not known")


class Network:
    """A stack and the runtime that drives it, as programs see them.

    Offers the module-level helpers of the ``socket`` module for this stack:
    ``socket``, ``create_connection``, ``create_server``, ``getaddrinfo``,
    ``gethostbyname``... ``hosts`` maps names to IPv4 addresses (text) and is
    consulted before the stack's DNS resolver (when it has one)."""

    def __init__(self, stack: Stack, runtime: Runtime,
                 hosts: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.runtime = runtime
        self.hosts: dict[str, str] = {"localhost": "127.0.0.1"}
        if hosts:
            self.hosts.update(hosts)
        self.read_etc_hosts = True
        #: Links the loop thread serves (loop thread only).
        self.links: set[_Link] = set()
        #: TCP ports bound but not yet listening or connected (loop thread only).
        self.reserved: dict[tuple[bytes, int], _TcpLink] = {}
        #: Seconds a name lookup may take (None: the resolver's own budget).
        self.resolve_timeout: float | None = None

    # -- running things in the loop thread ------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the loop thread and return its result (or raise):
        ``femtotcp.api.loop.call`` (directly when the loop is not running;
        OSError(ENETDOWN) when the loop thread stops before answering)."""
        return loop.call(self.runtime, fn, *args)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """``event.wait(timeout)`` that gives up (False) when the loop thread dies."""
        th = self.runtime.thread
        if timeout is not None:
            end = _time.monotonic() + timeout
        while True:
            step = 1.0 if timeout is None else min(1.0, max(0.0, end - _time.monotonic()))
            if event.wait(step):
                return True
            if timeout is not None and _time.monotonic() >= end:
                return False
            if th is not None and not th.is_alive():
                return event.is_set()

    def stack_closed(self) -> None:
        """The stack is shutting down (loop thread): every socket's pair end is
        closed, so program threads blocked on one wake up (EOF, EPIPE)."""
        for link in list(self.links):
            link.release()

    # -- the socket module's helpers ------------------------------------------------------
    def socket_class(self) -> type[StackSocket]:
        """The class of this network's sockets (``socket(..., network=self)``)."""
        from femtotcp.api.socket import StackSocket
        return StackSocket

    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM,
               proto: int = 0) -> StackSocket:
        return self.socket_class()(family, type, proto, network=self)

    def adopt(self, fd: int, family: int = -1) -> _SocketBase | None:
        """A socket object for ``fd`` when it is the program's end of a stack
        socket of this network (``socket.fromfd``, ``socket.socket(fileno=)``);
        else None (api/socket.py's ``adopt``)."""
        from femtotcp.api.socket import adopt
        return adopt(self, fd, family)

    def create_connection(self, address: tuple[str, int],
                          timeout: float | None | object = _GLOBAL_DEFAULT_TIMEOUT,
                          source_address: tuple[str, int] | None = None, *,
                          all_errors: bool = False) -> StackSocket:
        """``socket.create_connection`` over this stack."""
        host, port = address
        errors: list[OSError] = []
        for af, _kind, proto, _canon, sa in self.getaddrinfo(host, port, 0, SOCK_STREAM):
            sock = None
            try:
                sock = self.socket(af, SOCK_STREAM, proto)
                if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)  # type: ignore[arg-type]
                if source_address:
                    sock.bind(source_address)
                sock.connect(sa)
                return sock
            except OSError as exc:
                errors.append(exc)
                if sock is not None:
                    sock.close()
        if not errors:
            raise OSError("getaddrinfo returns an empty list")
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise errors[0]

    def create_server(self, address: tuple[str, int], *, family: int = AF_INET,
                      backlog: int | None = None, reuse_port: bool = False,
                      dualstack_ipv6: bool = False) -> StackSocket:
        """``socket.create_server`` over this stack (SO_REUSEADDR set, and for
        AF_INET6 IPV6_V6ONLY unless ``dualstack_ipv6``, as the stdlib does)."""
        if family not in (AF_INET, AF_INET6):
            raise ValueError("only AF_INET and AF_INET6 servers on this stack")
        if dualstack_ipv6 and family != AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
        sock = self.socket(family, SOCK_STREAM)
        try:
            sock.setsockopt(SOL_SOCKET, _std.SO_REUSEADDR, 1)
            if family == AF_INET6:
                sock.setsockopt(_std.IPPROTO_IPV6, _std.IPV6_V6ONLY, int(not dualstack_ipv6))
            if reuse_port and _SO_REUSEPORT >= 0:
                sock.setsockopt(SOL_SOCKET, _SO_REUSEPORT, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno,
                              f"{exc.strerror} (while attempting to bind on address "
                              f"{address!r})") from None
            if backlog is None:
                sock.listen()
            else:
                sock.listen(backlog)
            return sock
        except BaseException:
            sock.close()
            raise

    def getaddrinfo(self, host: str | bytes | None, port: str | bytes | int | None,
                    family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, Any, int, str, tuple[str, int]]]:
        """``socket.getaddrinfo`` as glibc answers it, for this stack: numeric
        addresses (IPv6 ones with a ``%ifname``/``%index`` scope, given back
        as the sockaddr's scope_id), the hosts tables, /etc/hosts and the
        stack's DNS resolver (A, and AAAA when the stack has IPv6), ordered by
        RFC 6724 (``_names``); AI_ADDRCONFIG, AI_V4MAPPED and AI_ALL as
        glibc's (``_family_for``)."""
        if family not in (0, AF_INET, AF_INET6):
            raise gaierror(_std.EAI_FAMILY, "ai_family not supported")
        portnum = _service_port(port, type, proto)
        if isinstance(host, bytes):
            host = host.decode("idna")
        family = self._family_for(family, flags)
        canonical = ""
        addrs: list[tuple[str, int]]
        literal = _literal(host) if isinstance(host, str) else None
        if host is None:
            if port is None:
                raise gaierror(_std.EAI_NONAME, "Name or service not known")
            passive = bool(flags & _std.AI_PASSIVE)
            any6, any4 = ("::", "0.0.0.0") if passive else ("::1", "127.0.0.1")
            if family == AF_INET6:
                addrs = [(any6, 0)]
            elif family == AF_INET or not self.has_ipv6():
                addrs = [(any4, 0)]
            else:   # glibc: the wildcards IPv4 first, the loopbacks IPv6 first
                addrs = [(any4, 0), (any6, 0)] if passive else [(any6, 0), (any4, 0)]
        elif literal is not None:
            text, suffix = literal
            mapped = text.startswith("::ffff:") and "." in text
            if ":" in text and not mapped and family == AF_INET:
                raise gaierror(_EAI_ADDRFAMILY, "Address family for hostname not supported")
            if mapped and family == AF_INET:
                text = text[len("::ffff:"):]
            elif ":" not in text and family == AF_INET6:
                if not flags & _AI_V4MAPPED:
                    raise gaierror(_EAI_ADDRFAMILY,
                                   "Address family for hostname not supported")
                text = "::ffff:" + text
            scope = 0 if suffix is None else scope_index(
                self, _std.inet_pton(AF_INET6, text), suffix)
            canonical, addrs = host, [(text, scope)]
        elif flags & _std.AI_NUMERICHOST or host.strip() in ("", "<broadcast>", "<any>"):
            # (glibc: no lookup; the socket module's special names are those of
            # gethostbyname and of addresses given to bind/connect, not its.)
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        else:
            canonical, names = self._names(host, family, flags)
            addrs = [(a, 0) for a in names]
        kinds: list[tuple[int, int]]
        if type == 0:
            kinds = [(SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP), (SOCK_RAW, 0)]
            if proto:
                kinds = [k for k in kinds if k[1] == proto]
        else:
            base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
            defaults: dict[int, int] = {SOCK_STREAM: IPPROTO_TCP, SOCK_DGRAM: IPPROTO_UDP}
            default = defaults.get(base, 0)
            kinds = [(base, proto or default)]
        out: list[tuple[Any, Any, int, str, tuple[str, int]]] = []
        # AI_CANONNAME: the name the CNAME chain ends at, on the first result (glibc).
        canon = canonical if flags & _std.AI_CANONNAME else ""
        for addr, scope in addrs:
            v6 = ":" in addr
            af = _AF_INET6_ENUM if v6 else _AF_INET_ENUM
            sa: Any = (addr, portnum, 0, scope) if v6 else (addr, portnum)
            for kind, pr in kinds:
                out.append((af, _kind_enum(kind), pr, canon, sa))
                canon = ""
        return out

    def _family_for(self, family: int, flags: int) -> int:
        """The family a lookup answers in, after AI_ADDRCONFIG as glibc
        applies it: only families the host has an address of (any but
        loopback, link-local IPv6 included); AF_UNSPEC narrows to the one
        family configured, and a family asked for but not configured finds
        nothing (EAI_NONAME). A program attached to a serve (no local stack)
        keeps the family."""
        stack = self.stack
        if stack is None or not flags & _AI_ADDRCONFIG:
            return family
        has4 = any(not a.tentative for i in stack.interfaces for a in i.ipv4)
        has6 = any(a.usable for i in stack.interfaces for a in i.ipv6)
        if family == 0 and has4 != has6:
            return AF_INET if has4 else AF_INET6
        if (family == AF_INET and not has4) or (family == AF_INET6 and not has6):
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        return family

    def _names(self, host: str, family: int, flags: int) -> tuple[str, list[str]]:
        """(canonical name, addresses as text) for a name: A records as ever,
        and AAAA records when the stack has IPv6 (AF_UNSPEC) or AF_INET6 is
        asked, ordered by RFC 6724's rules that matter for a host (rule 1 and
        6: a destination we have a source and a route for first, then IPv6
        before IPv4). AF_INET6 with AI_V4MAPPED falls back to v4-mapped IPv4
        answers, and with AI_ALL adds them after the IPv6 ones, as glibc's."""
        numeric = bool(flags & _std.AI_NUMERICHOST)
        stack = self.stack       # None for a program attached to a serve (api/remote.py)
        want6 = family == AF_INET6 or (family == 0 and self.has_ipv6())
        mapped = family == AF_INET6 and bool(flags & _AI_V4MAPPED)
        canonical = host
        addrs4: list[str] = []
        addrs6: list[str] = []
        error: gaierror | None = None
        if want6 and not numeric:
            try:
                canonical, addrs6 = self._dns6(host)
            except gaierror as exc:
                error = exc
        if family != AF_INET6 or (mapped and (not addrs6 or flags & _AI_ALL)):
            try:
                canonical4, _aliases, addrs4 = self._lookup(host, numeric_only=numeric)
            except gaierror as exc:
                error = error if addrs6 else exc
            else:
                canonical = canonical4 if not addrs6 or family != AF_INET6 else canonical
        if family == AF_INET6:
            addrs6 += ["::ffff:" + a for a in addrs4]
            addrs4 = []
        if not addrs4 and not addrs6:
            raise error or gaierror(getattr(_std, "EAI_NODATA", _std.EAI_NONAME),
                                    "No address associated with hostname")

        candidates = addrs6 + addrs4
        if len(candidates) < 2 or stack is None:
            return canonical, candidates

        def packed(text: str) -> bytes:
            raw = _std.inet_pton(AF_INET6, text) if ":" in text else _std.inet_aton(text)
            return raw[12:] if raw[:12] == bytes(10) + b"\xff\xff" else raw

        def reachable() -> list[bool]:     # in the loop thread: it reads the routes
            return [self.stack.source_address(packed(a)) is not None for a in candidates]
        usable = self.call(reachable) if not self.runtime.in_loop_thread() else reachable()
        order = sorted(range(len(candidates)),
                       key=lambda i: (not usable[i], ":" not in candidates[i]))
        ordered = [candidates[i] for i in order]
        return canonical, ordered

    def _dns6(self, name: str) -> tuple[str, list[str]]:
        """(canonical name, IPv6 addresses as text) from the stack's resolver:
        the name found (after the search list and any CNAME chain)."""
        from femtotcp.wire import dns as dns_wire
        names, addrs = self._dns_query(name.strip(), dns_wire.AAAA)
        return names[-1], addrs

    def gethostbyname(self, name: str) -> str:
        return self._resolve(name)[0]

    def has_ipv6(self) -> bool:
        """Whether the stack has the ipv6 module (an attached program's network
        asks its serve)."""
        return getattr(self.stack, "ipv6", None) is not None

    def has_dualstack_ipv6(self) -> bool:
        """``socket.has_dualstack_ipv6``: an AF_INET6 socket on this stack can
        take IPv4 too, which it can when the stack has IPv6 at all."""
        return self.has_ipv6()

    # -- interfaces by index (scope ids, RFC 4007) ------------------------------------------
    def if_nameindex(self) -> list[tuple[int, str]]:
        """``socket.if_nameindex`` for the stack: loopback is 1 ("lo"), as on
        Linux, then each interface by its index."""
        stack = self.stack
        ifaces = [(i.index, i.name) for i in stack.interfaces] if stack is not None else []
        return [(1, "lo"), *ifaces]

    def if_nametoindex(self, name: str) -> int:
        if not isinstance(name, str):
            raise TypeError(f"str expected, not {type(name).__name__}")
        for index, iname in self.if_nameindex():
            if iname == name:
                return index
        raise OSError("no interface with this name")

    def if_indextoname(self, index: int) -> str:
        if not isinstance(index, int):
            raise TypeError("an integer is required")
        if index < 0:
            raise OverflowError("index must be a non-negative integer")
        for i, name in self.if_nameindex():
            if i == index:
                return name
        raise OSError(6, "No such device or address")

    def gethostbyname_ex(self, name: str) -> tuple[str, list[str], list[str]]:
        """(canonical name, aliases, addresses) as glibc gives them: for a CNAME
        chain, the name it ends at first and the names that led there as aliases."""
        return self._lookup(name)

    def gethostbyaddr(self, addr: str) -> tuple[str, list[str], list[str]]:
        """Reverse lookup from the hosts tables (no reverse DNS)."""
        ip = self._resolve(addr)[0]
        for name, value in self.hosts.items():
            if value == ip:
                return name, [], [ip]
        for name, value in _etc_hosts().items():
            if value == ip and self.read_etc_hosts:
                return name, [], [ip]
        raise herror(1, "Unknown host")

    def getfqdn(self, name: str = "") -> str:
        """The name itself (or the host name): no reverse lookups over the stack."""
        name = name.strip()
        if not name or name in ("0.0.0.0", "::"):
            return _std.gethostname()
        return name

    def _resolve(self, host: str, numeric_only: bool = False) -> list[str]:
        """IPv4 addresses (text) for ``host``; ``socket.gaierror`` when there are none."""
        return self._lookup(host, numeric_only)[2]

    def _lookup(self, host: str,
                numeric_only: bool = False) -> tuple[str, list[str], list[str]]:
        """(canonical name, aliases, IPv4 addresses as text) for ``host``, from
        numeric forms, the hosts tables, then DNS; ``socket.gaierror`` if none."""
        if host in ("", "<any>"):      # (exactly: " " is a name to look up, as CPython's)
            return host, [], ["0.0.0.0"]
        if host == "<broadcast>":
            return host, [], ["255.255.255.255"]
        text = host.strip()
        packed = _parse_ipv4(text)
        if packed is not None:
            return text, [], [_std.inet_ntoa(packed)]
        if ":" in text:
            try:
                _std.inet_pton(AF_INET6, text)
            except OSError:
                pass
            else:
                raise gaierror(_std.EAI_ADDRFAMILY if hasattr(_std, "EAI_ADDRFAMILY")
                               else _std.EAI_FAMILY, "Address family for hostname not supported")
        if numeric_only:
            raise gaierror(_std.EAI_NONAME, "Name or service not known")
        lower = text.lower().rstrip(".")
        for table in (self.hosts, _etc_hosts() if self.read_etc_hosts else {}):
            for name, value in table.items():
                if name.lower() == lower:
                    return name, [], [value]
        # The name as asked, trailing dot included: an absolute name gets no
        # search list (glibc's res_search).
        names, addrs = self._dns(text)
        return names[-1], names[:-1], addrs

    def _dns(self, name: str) -> tuple[list[str], list[str]]:
        """(names, IPv4 addresses) from the stack's resolver (``_dns_query``)."""
        return self._dns_query(name, 1)

    def _dns_query(self, name: str, qtype: int) -> tuple[list[str], list[str]]:
        """(names, addresses) from the stack's resolver: IPv4 for ``qtype`` A
        (1), IPv6 for AAAA (28). The names are the one found (under a search
        domain, maybe: glibc's canonical name is the full name found), then
        the CNAME targets followed; the last is the canonical name, the others
        its aliases. A name found as asked keeps the case it was asked in."""
        stack = self.stack
        if getattr(stack, "resolver", None) is None:
            raise _no_resolver(stack)
        try:
            from femtotcp.api import resolve
            from femtotcp.wire import dns as dns_wire
        except ImportError:
            raise gaierror(_std.EAI_NONAME, "Name or service not known") from None
        if self.runtime.in_loop_thread():
            raise gaierror(_std.EAI_AGAIN, "name lookups cannot block the stack's own thread")
        result = resolve.resolve_blocking(self.runtime, stack, name, qtype,
                                          self.resolve_timeout)
        exc = resolve.gaierror_for(result)
        if exc is not None:
            raise exc
        want = 4 if qtype == dns_wire.A else 16
        addrs = [ip_str(a) for a in result.addresses if len(a) == want]
        if not addrs:
            raise gaierror(getattr(_std, "EAI_NODATA", _std.EAI_NONAME),
                           "No address associated with hostname")
        asked = name.strip().rstrip(".")
        found = result.name
        try:
            if dns_wire.canonical(asked) == found:
                found = asked
        except ValueError:
            pass
        return [found, *result.cname_chain], addrs

    # -- loop thread -------------------------------------------------------------------------
    def reap(self) -> None:
        """Release links whose program side is gone (closed or garbage-collected
        but not yet noticed): called before reporting EADDRINUSE."""
        for key, link in list(self.reserved.items()):
            if not link.owner_alive():
                del self.reserved[key]
        links = [lk for lk in self.links if lk.q is not None]
        if not links:
            return
        poller = select.poll()
        by_fd: dict[int, _Link] = {}
        for lk in links:
            fd = lk.q.fileno() if lk.q is not None else -1
            if fd >= 0:
                by_fd[fd] = lk
                poller.register(fd, select.POLLIN)
        for fd, ev in poller.poll(0):
            if ev & (select.POLLHUP | select.POLLERR):
                by_fd[fd].on_q()


#: The characters of the inet_aton forms (decimal, octal, hex parts).
_IPV4_CHARS = "0123456789.xXabcdefABCDEF"


def _parse_ipv4(text: str) -> bytes | None:
    """Packed IPv4 for a numeric address (the inet_aton forms getaddrinfo takes)."""
    if not text or not text[0].isdigit() or text.lstrip(_IPV4_CHARS):
        return None
    try:
        return _std.inet_aton(text)
    except OSError:
        return None


_KIND_ENUMS: dict[int, Any] = {}


def _kind_enum(kind: int) -> Any:
    """``socket.SocketKind(kind)`` (the int when it is none), looked up once."""
    found = _KIND_ENUMS.get(kind)
    if found is None:
        try:
            found = _std.SocketKind(kind)
        except ValueError:
            found = kind
        if len(_KIND_ENUMS) < 64:
            _KIND_ENUMS[kind] = found
    return found


_AF_INET_ENUM = _std.AddressFamily(AF_INET)
_AF_INET6_ENUM = _std.AddressFamily(AF_INET6)


def _service_port(port: str | bytes | int | None, type_: int, proto: int) -> int:
    if port is None:
        return 0
    if isinstance(port, int):
        if not 0 <= port <= 65535:
            raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype")
        return port
    text = port.decode() if isinstance(port, bytes) else str(port)
    if text.isdigit():
        value = int(text)
        if value > 65535:
            raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype")
        return value
    proto_name = "udp" if (type_ & 0xF) == SOCK_DGRAM or proto == IPPROTO_UDP else "tcp"
    try:
        return _std.getservbyname(text, proto_name)
    except OSError:
        raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype") from None


_etc_hosts_cache: list[dict[str, str]] = []


def _etc_hosts() -> dict[str, str]:
    """IPv4 entries of /etc/hosts (read once)."""
    if not _etc_hosts_cache:
        table: dict[str, str] = {}
        try:
            with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split("#", 1)[0].split()
                    if len(fields) < 2:
                        continue
                    try:
                        if len(ip_bytes(fields[0])) != 4:
                            continue
                    except ValueError:
                        continue
                    for name in fields[1:]:
                        table.setdefault(name, fields[0])
        except OSError:
            pass
        _etc_hosts_cache.append(table)
    return _etc_hosts_cache[0]


_networks: weakref.WeakKeyDictionary[Any, Network] = weakref.WeakKeyDictionary()
_default: list[Network] = []
_scoped = threading.local()


_EAI_ADDRFAMILY: int = getattr(_std, "EAI_ADDRFAMILY", _std.EAI_FAMILY)
_AI_ADDRCONFIG: int = getattr(_std, "AI_ADDRCONFIG", 0)
_AI_V4MAPPED: int = getattr(_std, "AI_V4MAPPED", 0)
_AI_ALL: int = getattr(_std, "AI_ALL", 0)


@functools.lru_cache(maxsize=256)
def _literal(text: str) -> tuple[str, str | None] | None:
    """(canonical text, the ``%scope`` suffix or None) of a numeric address
    getaddrinfo takes (the inet_aton forms of IPv4; IPv6 with an optional
    scope), or None for a name. Cached: a program asks for the same few
    addresses again and again (a connection each)."""
    packed4 = _parse_ipv4(text)
    if packed4 is not None:
        return _std.inet_ntoa(packed4), None
    if ":" not in text:
        return None
    addr, sep, suffix = text.strip().partition("%")
    try:
        packed = _std.inet_pton(AF_INET6, addr)
    except OSError:
        return None
    return _std.inet_ntop(AF_INET6, packed), suffix if sep else None


def network_for(stack: Stack, runtime: Runtime) -> Network:
    """The one Network for ``stack`` (created on first use)."""
    net = _networks.get(stack)
    if net is None or net.runtime is not runtime:
        net = Network(stack, runtime)
        _networks[stack] = net
        stack.on_close(net.stack_closed)
    return net


def current_network() -> Network | None:
    """The network sockets are made on in this thread: the innermost ``scoped``
    one, else the process-wide one set by ``femtotcp.api.patch.patch``."""
    stack_: list[Network] | None = getattr(_scoped, "stack", None)
    if stack_:
        return stack_[-1]
    return _default[-1] if _default else None


def push_scoped(net: Network) -> None:
    st: list[Network] | None = getattr(_scoped, "stack", None)
    if st is None:
        st = []
        _scoped.stack = st
    st.append(net)


def pop_scoped(net: Network) -> None:
    st: list[Network] | None = getattr(_scoped, "stack", None)
    if st and net in st:
        idx = len(st) - 1 - st[::-1].index(net)
        del st[idx]


def set_default(net: Network | None) -> None:
    """Make ``net`` the process-wide network (None pops the last one)."""
    if net is None:
        if _default:
            _default.pop()
    else:
        _default.append(net)


def remove_default(net: Network) -> None:
    if net in _default:
        idx = len(_default) - 1 - _default[::-1].index(net)
        del _default[idx]
