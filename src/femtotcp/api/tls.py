"""TLS on stack sockets: ``ssl`` sees the connection state the stack has.

``SSLContext.wrap_socket(sock)`` takes over ``sock``'s file descriptor and asks
it whether it is connected (``getpeername``) to decide whether to shake hands
at once. A stack socket's descriptor is one end of a Unix socketpair, always
"connected" to the stack's end, so a listening socket (the ``http.server``
HTTPS recipe) or a client wrapped before ``connect()`` would start a handshake
nobody answers, and the wrapped socket's ``getpeername``, ``setsockopt``,
``accept`` and ``connect`` would be those of the pair, not of the TCP
connection.

``install()`` makes ``StackSSLSocket`` the class ``wrap_socket`` builds. For a
kernel socket it hands over to ``ssl.SSLSocket`` unchanged. For a stack socket
(in-process, ``api/socket.py``, or attached, ``api/remote.py``) it builds an
object that is both an ``ssl.SSLSocket`` and a stack socket of the same class
that took over the wrapped one (its ``_take_over``): ``getpeername``/
``getsockname`` and options are the stack's (ENOTCONN until connected, so no
early handshake), ``accept`` accepts on the stack and wraps the new connection
server-side, ``connect`` connects on the stack and then shakes hands, as with a
kernel socket.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

_adopting = threading.local()     # the stack socket StackSSLSocket._create is wrapping
_lock = threading.Lock()
#: For each stack socket class, its SSLSocket (made on first use).
_classes: dict[type, type] = {}


class StackSSLSocket(ssl.SSLSocket):
    """What ``wrap_socket`` builds (see the module docstring): for a stack
    socket, an instance of the SSLSocket of its class (``_ssl_class``)."""

    @classmethod
    def _create(cls, sock: Any, *args: Any, **kwargs: Any) -> Any:
        base = getattr(type(sock), "_tls_base", None)
        if base is None:                    # a kernel socket
            return ssl.SSLSocket._create(  # type: ignore[attr-defined]
                sock, *args, **kwargs)
        kind = _ssl_class(base)
        handover = sock._tls_handover()
        _adopting.sock = sock
        try:
            # ssl's own _create: calls the class's __init__ with sock's fd (the
            # stack socket's _take_over), then sock.detach(), then getpeername.
            self = super(StackSSLSocket, kind)._create(  # type: ignore[misc]
                sock, *args, **kwargs)
        finally:
            _adopting.sock = None
        self._tls_taken(handover)
        return self

    def dup(self) -> Any:
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")


def _adopter_init(self: Any, family: int = -1, type: int = -1, proto: int = -1,
                  fileno: int | None = None, **_: Any) -> None:
    src = _adopting.sock
    assert fileno == src.fileno()
    self._take_over(src, fileno)


def _ssl_class(base: type) -> type:
    """The SSLSocket of the stack socket class ``base``."""
    with _lock:
        found = _classes.get(base)
        if found is None:
            adopter = type(f"_{base.__name__}Adopter", (base,),
                           {"__slots__": (), "__init__": _adopter_init,
                            "__module__": __name__})
            found = type("SSLSocket", (StackSSLSocket, adopter),     # (ssl's name, shown)
                         {"__module__": __name__, "__qualname__": f"SSLSocket[{base.__name__}]"})
            _classes[base] = found
        return found


def install() -> None:
    """Make ``wrap_socket`` build StackSSLSocket (kernel sockets are unaffected)."""
    with _lock:
        if ssl.SSLContext.sslsocket_class is ssl.SSLSocket:
            ssl.SSLContext.sslsocket_class = StackSSLSocket
