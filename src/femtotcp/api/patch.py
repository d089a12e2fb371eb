"""Run unmodified programs over a stack by patching the ``socket`` module.

``patch(target)`` (target: a ``Host``, a ``(Stack, Runtime)`` pair or a
``Network``) makes the stack the process's network until the returned object
is stopped (it is a context manager). ``scoped(target)`` does the same for the
calling thread only, so two stacks in one process can each serve their own
side (the demo does this).

What changes: ``socket.socket`` becomes a dispatcher class. AF_INET stream and
datagram sockets (and ICMP ping sockets) are made on the stack, and AF_INET6
stream, UDP and ICMPv6 ping sockets (without the ipv6 module they reach IPv4
through v4-mapped addresses, as on a Linux host with no IPv6 address); AF_UNIX,
sockets made from a file descriptor (``socketpair``, ``fromfd``: asyncio's
self-pipe), and anything else the stack cannot do are the kernel's, as
before. ``isinstance(x, socket.socket)`` stays true for both kinds. The
dispatcher is a subclass of the network's socket class, and stack sockets
(made, accepted, duplicated) are instances of it: ``type(s) is
socket.socket`` holds (trio wraps nothing else) and the class's methods,
called unbound as trio calls them, are the stack socket's.
``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``
and ``getfqdn`` answer for the stack (numeric addresses, hosts tables, its
DNS resolver); ``has_dualstack_ipv6`` says whether the stack has IPv6, and
``if_nameindex``/``if_nametoindex``/``if_indextoname`` name the stack's
interfaces (their indexes are the scope ids of ``fe80::1%ftap0``). The stdlib's ``create_connection`` and ``create_server`` use
these names, so they go through the stack too, and with them http.client,
urllib, socketserver, http.server, smtplib and asyncio.

``ssl`` is imported before patching, so ``ssl.SSLSocket`` stays a subclass of
the real socket class; wrapping a stack socket works because TLS runs over
the socket's file descriptor, whose bytes the stack carries.
"""

from __future__ import annotations

import logging
import socket as _std
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from femtotcp.api import network as fsock  # (not api.socket: attached programs never load it)
from femtotcp.api.sock_base import SOCK_CLOEXEC, SOCK_NONBLOCK, _RealSocket

log = logging.getLogger("femtotcp.api.patch")

_NAMES = ("socket", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
          "getfqdn", "has_dualstack_ipv6", "if_nameindex", "if_nametoindex",
          "if_indextoname")
_originals: dict[str, Any] = {name: getattr(_std, name) for name in _NAMES}
if getattr(_std, "socket", None) is not _RealSocket:  # imported while patched
    _originals["socket"] = _RealSocket
_lock = threading.Lock()
_installed = [0]

_STACK_KINDS: dict[int, tuple[int, ...]] = {
    _std.SOCK_STREAM: (0, _std.IPPROTO_TCP),
    _std.SOCK_DGRAM: (0, _std.IPPROTO_UDP, _std.IPPROTO_ICMP, _std.IPPROTO_ICMPV6),
}


def _on_stack(family: int, type_: int, proto: int) -> bool:
    """True when the stack makes this kind of socket: AF_INET and AF_INET6
    stream, UDP and ping ones. A stack without IPv6 still makes AF_INET6 ones,
    as a Linux host whose links have no IPv6 address does: they reach IPv4
    through v4-mapped addresses, and an IPv6 destination is unreachable
    (ENETUNREACH), so no traffic leaves by the kernel's network."""
    if family == _std.AF_INET6:
        if proto == _std.IPPROTO_ICMP:
            return False
    elif family not in (-1, _std.AF_INET) or proto == _std.IPPROTO_ICMPV6:
        return False
    kind = _std.SOCK_STREAM if type_ == -1 else type_ & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    protos = _STACK_KINDS.get(kind)
    return protos is not None and (proto in (-1, *protos))


class _DispatchMeta(type):
    """``isinstance(s, socket.socket)`` holds for real and stack sockets alike
    (for the dispatcher itself; classes derived from it test as classes do)."""

    def __instancecheck__(cls, obj: object) -> bool:
        if "_dispatch_base" in cls.__dict__:
            return isinstance(obj, _RealSocket)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if "_dispatch_base" in cls.__dict__:
            return issubclass(sub, _RealSocket)
        return type.__subclasscheck__(cls, sub)


def _dispatch_new(cls: Any, family: int = -1, type: int = -1, proto: int = -1,
                  fileno: int | None = None) -> Any:
    """``socket.socket(...)`` while patched: a stack socket when the stack makes
    that kind, else the kernel's. With a network's own socket class as the
    dispatcher's base, the stack socket is an instance of ``cls`` itself (so
    ``type(s) is socket.socket``, which trio checks, and classes derived
    from ``socket.socket`` while patched go over the stack too), made by
    ``_dispatch_init``; anything else is not, and ``__init__`` is skipped."""
    base = _base_of(cls)
    net = fsock.current_network()
    if net is not None and fileno is None:
        if _on_stack(family, type, proto):
            if base is not _RealSocket and net.socket_class() is base:
                return base.__new__(cls)
            return net.socket(family, type, proto)
    adopt = getattr(net, "adopt", None)
    if adopt is not None and fileno is not None:
        # An attached program's stack socket handed over by fd (fork,
        # pass_fds, multiprocessing): the same stack socket again.
        found = adopt(fileno, family)
        if found is not None:
            return _presented(found)
    if base is _RealSocket and cls is not _dispatchers[_RealSocket]:
        real_new: Any = _RealSocket.__new__
        return real_new(cls, family, type, proto, fileno)   # (a derived class: real)
    return _RealSocket(family, type, proto, fileno)


def _dispatch_init(self: Any, family: int = -1, type: int = -1, proto: int = -1,
                   fileno: int | None = None) -> None:
    base = _base_of(self.__class__)
    if base is _RealSocket:
        _RealSocket.__init__(self, family, type, proto, fileno)   # (a derived class: real)
    elif _RealSocket.fileno(self) == -1:         # made by _dispatch_new: not yet a socket
        base.__init__(self, family, type, proto, network=fsock.current_network())


def _dispatch_accept(self: Any) -> Any:
    new, address = _base_of(self.__class__).accept(self)
    return _presented(new), address


def _dispatch_dup(self: Any) -> Any:
    return _presented(_base_of(self.__class__).dup(self))


def _base_of(cls: Any) -> Any:
    for klass in cls.__mro__:
        base = klass.__dict__.get("_dispatch_base")
        if base is not None:
            return base
    return _RealSocket


def _presented(sock: Any) -> Any:
    """A stack socket made by the stack (accepted, duplicated, adopted) as an
    instance of the installed dispatcher, as the stdlib's are of socket.socket."""
    dispatcher = _std.socket
    if sock.__class__ is _base_of(dispatcher) and "_dispatch_base" in getattr(
            dispatcher, "__dict__", {}):
        sock.__class__ = dispatcher
    return sock


#: The dispatcher class for each base: the network's socket class, or the real one.
_dispatchers: dict[type, type] = {}


def _dispatcher(base: type) -> type:
    """``socket.socket`` while patched for a network whose sockets are ``base``."""
    found = _dispatchers.get(base)
    if found is None:
        body: dict[str, Any] = {
            "__module__": __name__ if base is _RealSocket else base.__module__,
            "__qualname__": "socket",
            "__doc__": "Stands in for ``socket.socket`` while patched: makes a stack "
                       "socket or a real one.",
            "_dispatch_base": base, "__new__": _dispatch_new, "__init__": _dispatch_init}
        if base is not _RealSocket:
            body.update(__slots__=(), accept=_dispatch_accept, dup=_dispatch_dup)
        found = _DispatchMeta("socket", (base,), body)
        _dispatchers[base] = found
    return found


#: The generic dispatcher (stack sockets of their own class; derived classes real).
socket = _dispatcher(_RealSocket)


def _dispatch(name: str) -> Any:
    original = _originals[name]

    def call(*args: Any, **kwargs: Any) -> Any:
        net = fsock.current_network()
        if net is None:
            return original(*args, **kwargs)
        return getattr(net, name)(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = name
    call.__doc__ = original.__doc__
    return call


_replacements: dict[str, Any] = {"socket": socket}
for _name in _NAMES[1:]:
    _replacements[_name] = _dispatch(_name)


class _WatchedSocketModule(types.ModuleType):
    """The socket module's class while patched: a program that puts a class of
    its own in ``socket.socket`` (gevent's and eventlet's monkey patching,
    whose sockets are built on the C ``_socket.socket``) takes its sockets
    from the kernel from then on; that is said once, as a warning, when it
    happens."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (name == "socket" and _installed[0] and value is not _originals["socket"]
                and value not in _dispatchers.values() and not _replaced):
            _replaced.append(value)
            log.warning("socket.socket was replaced by %s.%s (monkey patching): sockets "
                        "made through it are the kernel's, not the stack's",
                        getattr(value, "__module__", "?"), getattr(value, "__qualname__", "?"))
        super().__setattr__(name, value)


_replaced: list[Any] = []   # what replaced socket.socket while patched (warned once)


def install(network: Any = None) -> None:
    """Put the dispatchers into the socket module (counted; see ``uninstall``).
    With ``network``, ``socket.socket`` is the dispatcher whose stack sockets
    are instances of it (``_dispatcher(network.socket_class())``)."""
    try:
        import ssl  # noqa: F401 - SSLSocket must subclass the real socket class
    except ImportError:
        pass
    socket_class = getattr(network, "socket_class", None)
    with _lock:
        _installed[0] += 1
        if _installed[0] == 1:
            for name, value in _replacements.items():
                setattr(_std, name, value)
            if socket_class is not None:
                _std.socket = _dispatcher(socket_class())  # type: ignore[misc, assignment]
            if type(_std) is types.ModuleType:
                _std.__class__ = _WatchedSocketModule


def uninstall() -> None:
    with _lock:
        if _installed[0] <= 0:
            return
        _installed[0] -= 1
        if _installed[0] == 0:
            if type(_std) is _WatchedSocketModule:
                _std.__class__ = types.ModuleType  # type: ignore[assignment]
            for name, value in _originals.items():
                setattr(_std, name, value)


def unpatch_forked_child() -> None:
    """In a forked child whose in-process networks were taken away: when no
    network is left for sockets to be made on, the socket module is the
    kernel's again."""
    if _installed[0] > 0 and fsock.current_network() is None:
        _installed[0] = 1
        uninstall()


def installed() -> bool:
    return _installed[0] > 0


def network_of(target: Any, runtime: Any = None) -> fsock.Network:
    """A Network from a Host, a (Stack, Runtime) pair, a Stack and a Runtime, or a Network."""
    if isinstance(target, fsock.Network):
        return target
    if isinstance(target, tuple) and len(target) == 2:
        return fsock.network_for(target[0], target[1])
    if runtime is not None:
        return fsock.network_for(target, runtime)
    stack = getattr(target, "stack", None)
    rt = getattr(target, "runtime", None)
    if stack is not None and rt is not None:
        return fsock.network_for(stack, rt)
    raise TypeError("patch() wants a Host, a (Stack, Runtime) pair or a Network")


class Patch:
    """An active process-wide patch; ``stop()`` (or leaving ``with``) undoes it."""

    def __init__(self, network: fsock.Network) -> None:
        self.network = network
        self.active = False

    def start(self) -> Patch:
        if not self.active:
            install(self.network)
            fsock.set_default(self.network)
            self.active = True
        return self

    def stop(self) -> None:
        if self.active:
            self.active = False
            fsock.remove_default(self.network)
            uninstall()

    unpatch = stop

    def __enter__(self) -> Patch:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def patch(target: Any, runtime: Any = None) -> Patch:
    """Make ``target``'s stack the network of every thread (until ``stop()``)."""
    return Patch(network_of(target, runtime)).start()


@contextmanager
def scoped(target: Any, runtime: Any = None) -> Iterator[fsock.Network]:
    """Make ``target``'s stack the network of the calling thread only."""
    net = network_of(target, runtime)
    install(net)
    fsock.push_scoped(net)
    try:
        yield net
    finally:
        fsock.pop_scoped(net)
        uninstall()


__all__ = ["Patch", "patch", "scoped", "install", "uninstall", "installed", "network_of"]
