"""TLS on stack sockets: ``ssl`` sees the connection state the stack has.

``SSLContext.wrap_socket(sock)`` takes over ``sock``'s file descriptor and asks
it whether it is connected (``getpeername``) to decide whether to shake hands
at once. A stack socket's descriptor is one end of a Unix socketpair, always
"connected" to the stack's end, so a listening socket (the ``http.server``
HTTPS recipe) or a client wrapped before ``connect()`` would start a handshake
nobody answers, and the wrapped socket's ``getpeername``, ``accept`` and
``connect`` would be those of the pair, not of the TCP connection.

``install()`` makes ``StackSSLSocket`` the class ``wrap_socket`` builds. For a
kernel socket it hands over to ``ssl.SSLSocket`` unchanged. For a stack socket
it builds an object that is both an ``ssl.SSLSocket`` and a stack socket that
took over the wrapped one's link: ``getpeername``/``getsockname`` are the
stack's (ENOTCONN until connected, so no early handshake), ``accept`` accepts
on the stack and wraps the new connection server-side, ``connect`` connects on
the stack and then shakes hands, as with a kernel socket.
"""

from __future__ import annotations

import ssl
import threading
import weakref
from typing import Any

from femtotcp.api import socket as fsock
from femtotcp.api.sock_base import _finalize, _RealSocket

_adopting = threading.local()     # the stack socket StackSSLSocket._create is wrapping
_lock = threading.Lock()


class _Adopter(fsock.socket):
    """The stack-socket half of StackSSLSocket: its ``__init__`` (reached from
    ``ssl.SSLSocket._create``) takes over the link of the socket being wrapped
    instead of making a new one."""

    __slots__ = ()

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, **_: Any) -> None:
        src: fsock.socket = _adopting.sock
        assert fileno == src.fileno()
        _RealSocket.__init__(self, fsock.AF_UNIX, src._stype if src._stype ==
                             fsock.SOCK_STREAM else fsock.SOCK_SEQPACKET, 0, fileno)
        self._net = src._net
        self._sfamily, self._stype, self._sproto = src._sfamily, src._stype, src._sproto
        self._link = src._link
        self._finalizer = weakref.finalize(self, _finalize, self._link)
        self._finalizer.atexit = False


class StackSSLSocket(ssl.SSLSocket, _Adopter):  # type: ignore[misc]  # both are sockets
    """What ``wrap_socket`` builds for a stack socket (see the module docstring)."""

    @classmethod
    def _create(cls, sock: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(sock, fsock.socket):
            return ssl.SSLSocket._create(  # type: ignore[attr-defined]  # a kernel socket
                sock, *args, **kwargs)
        link = sock._link
        handles = link.handles
        _adopting.sock = sock
        try:
            # ssl's own _create: calls _Adopter.__init__ with sock's fd, then
            # sock.detach() (the link stays), then asks getpeername.
            self = super()._create(sock, *args, **kwargs)  # type: ignore[misc]
        finally:
            _adopting.sock = None
        # The wrapped socket's handle is now this object's: closing it closes
        # the stack socket as closing the original would have.
        link.detached = False
        link.handles = handles
        link.owner_ref = weakref.ref(self)
        return self

    def dup(self) -> Any:
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")


def install() -> None:
    """Make ``wrap_socket`` build StackSSLSocket (kernel sockets are unaffected)."""
    with _lock:
        if ssl.SSLContext.sslsocket_class is ssl.SSLSocket:
            ssl.SSLContext.sslsocket_class = StackSSLSocket
