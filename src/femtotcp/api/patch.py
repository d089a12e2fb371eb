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
before. ``isinstance(x, socket.socket)`` stays true for both kinds.
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

import socket as _std
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from femtotcp.api import network as fsock  # (not api.socket: attached programs never load it)
from femtotcp.api.sock_base import SOCK_CLOEXEC, SOCK_NONBLOCK, _RealSocket

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
    """``isinstance(s, socket.socket)`` holds for real and stack sockets alike."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _RealSocket)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _RealSocket)


class socket(_RealSocket, metaclass=_DispatchMeta):  # noqa: N801 - the stdlib's name
    """Stands in for ``socket.socket`` while patched: makes a stack socket or a
    real one. Classes derived from it while patched make real sockets."""

    def __new__(cls, family: int = -1, type: int = -1, proto: int = -1,
                fileno: int | None = None) -> Any:
        if cls is socket:
            net = fsock.current_network()
            if net is not None and fileno is None:
                if _on_stack(family, type, proto):
                    return net.socket(family, type, proto)
            adopt = getattr(net, "adopt", None)
            if adopt is not None and fileno is not None:
                # An attached program's stack socket handed over by fd (fork,
                # pass_fds, multiprocessing): the same stack socket again.
                found = adopt(fileno, family)
                if found is not None:
                    return found
            return _RealSocket(family, type, proto, fileno)
        real_new: Any = _RealSocket.__new__
        return real_new(cls, family, type, proto, fileno)


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


def install() -> None:
    """Put the dispatchers into the socket module (counted; see ``uninstall``)."""
    try:
        import ssl  # noqa: F401 - SSLSocket must subclass the real socket class
    except ImportError:
        pass
    with _lock:
        _installed[0] += 1
        if _installed[0] == 1:
            for name, value in _replacements.items():
                setattr(_std, name, value)


def uninstall() -> None:
    with _lock:
        if _installed[0] <= 0:
            return
        _installed[0] -= 1
        if _installed[0] == 0:
            for name, value in _originals.items():
                setattr(_std, name, value)


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
            install()
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
    install()
    fsock.push_scoped(net)
    try:
        yield net
    finally:
        fsock.pop_scoped(net)
        uninstall()


__all__ = ["Patch", "patch", "scoped", "install", "uninstall", "installed", "network_of"]
