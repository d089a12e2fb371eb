"""A listening endpoint: the SYN queue and the accept queue (RFC 9293 3.10.1, LISTEN).

Half-open connections wait in the SYN queue (bounded by the stack-wide
``max_syn_backlog``; once it is full, SYN cookies answer instead, so a SYN
flood costs no memory). Connections whose handshake completed wait in the
accept queue (bounded by ``backlog``); while it is full, new SYNs and final
ACKs are dropped, as Linux does, and the peers retransmit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from femtotcp.proto.tcp.connection import TcpConnection
    from femtotcp.proto.tcp.layer import Tcp

#: Connection options a listener hands down to the connections it accepts.
INHERITED = ("nodelay", "keepalive", "keepalive_idle", "keepalive_interval",
             "keepalive_count", "linger", "user_timeout", "maxseg", "rcvbuf", "sndbuf",
             "hop_limit", "tclass", "ttl", "tos", "reuse")

#: Their values on a listener where none was set: a constant, or the name of
#: the ``TcpConfig`` field that holds it (read at use time; this is on the
#: cookie path, once per SYN, so it builds nothing).
_DEFAULTS: dict[str, Any] = {
    "nodelay": False, "keepalive": False, "keepalive_idle": "keepalive_idle",
    "keepalive_interval": "keepalive_interval", "keepalive_count": "keepalive_count",
    "linger": None, "user_timeout": 0.0, "maxseg": 0, "rcvbuf": "rcvbuf",
    "sndbuf": "sndbuf", "hop_limit": None, "tclass": 0, "ttl": None, "tos": 0,
    "reuse": False}


class _Inherited:
    """A listener option: kept in ``listener.options`` once set, else its default."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.default = _DEFAULTS[name]

    def __get__(self, obj: TcpListener | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        options = obj.options
        if self.name in options:
            return options[self.name]
        if isinstance(self.default, str):          # a TcpConfig field
            return getattr(obj.tcp.config, self.default)
        return self.default

    def __set__(self, obj: TcpListener, value: Any) -> None:
        obj.options[self.name] = value


class TcpListener:
    """``accept()`` returns established connections (or None); ``on_event`` is
    called (loop thread) when the accept queue grows. Options set on the
    listener (see ``INHERITED``) apply to the connections it creates."""

    def __init__(self, tcp: Tcp, addr: bytes, port: int, backlog: int,
                 v6only: bool = False) -> None:
        self.tcp = tcp
        self.local = (addr, port)
        #: IPV6_V6ONLY: a listener on ``::`` without it takes IPv4 connections
        #: too (Linux's default, net.ipv6.bindv6only=0); they stay IPv4 here
        #: (4-byte addresses), the socket API shows them as ::ffff:a.b.c.d.
        self.v6only = v6only
        #: SO_REUSEPORT: the (address, port) may be shared with other such
        #: listeners, new connections spread among them (``Tcp.listen``).
        self.reuse_port = False
        self.backlog = max(1, backlog)
        self.syn_queue: dict[tuple[bytes, int, bytes, int], TcpConnection] = {}
        self.accept_queue: deque[TcpConnection] = deque()
        self.on_event: Callable[[], None] | None = None
        self.closed = False
        self.cookie_time = -1e18     # when we last answered with a SYN cookie
        self.pressure_time = -1e18   # when its SYN queue was last found full
        self.options: dict[str, Any] = {}
        self.state = "LISTEN"

    def __repr__(self) -> str:
        from femtotcp.wire import ip_str
        return f"<TcpListener {ip_str(self.local[0])}:{self.local[1]}>"

    # Options set like attributes (inherited by accepted connections): the
    # descriptors below keep them in ``options``; where none was set, the
    # default. Plain attributes stay plain (cookie_time is set once per SYN
    # under a flood).
    nodelay: bool
    keepalive: bool
    keepalive_idle: float
    keepalive_interval: float
    keepalive_count: int
    linger: int | None
    user_timeout: float
    maxseg: int
    rcvbuf: int
    sndbuf: int
    hop_limit: int | None     # IPV6_UNICAST_HOPS (None: the route's)
    tclass: int               # IPV6_TCLASS
    ttl: int | None           # IP_TTL of IPv4 connections (None: the stack's)
    tos: int                  # IP_TOS of IPv4 connections
    reuse: bool               # SO_REUSEADDR (accepted connections have it too, as Linux's)

    def apply_options(self, conn: TcpConnection) -> None:
        for name, value in self.options.items():
            setattr(conn, name, value)

    # -- program API -------------------------------------------------------------
    @property
    def readable(self) -> bool:
        return bool(self.accept_queue) or self.closed

    def accept(self) -> TcpConnection | None:
        """The next established connection, or None."""
        queue = self.accept_queue
        if not queue:
            return None
        conn = queue.popleft()
        self.tcp.counters["tcp.accept_queue"] -= 1
        conn.listener = None
        return conn

    def accept_full(self) -> bool:
        return len(self.accept_queue) >= self.backlog

    def close(self) -> None:
        """Stop listening: queued connections are reset, half-open ones dropped
        (as Linux's inet_csk_listen_stop)."""
        if self.closed:
            return
        self.closed = True
        self.on_event = None
        counters = self.tcp.counters
        while self.accept_queue:
            conn = self.accept_queue.popleft()
            counters["tcp.accept_queue"] -= 1
            conn.listener = None
            conn.abort()
        for conn in list(self.syn_queue.values()):
            conn._destroy()
        self.syn_queue.clear()
        self.tcp._remove_listener(self)

    # -- from the connections --------------------------------------------------------
    def _on_established(self, conn: TcpConnection) -> None:
        if self.syn_queue.pop(conn.key, None) is not None:
            self.tcp.counters["tcp.syn_queue"] -= 1
        self.accept_queue.append(conn)
        self.tcp.counters["tcp.accept_queue"] += 1

    def _forget(self, conn: TcpConnection) -> None:
        """A half-open connection went away. (An established one stays in the
        accept queue even if reset: accept() returns it and the program sees
        the error, as on Linux.)"""
        if self.syn_queue.pop(conn.key, None) is not None:
            self.tcp.counters["tcp.syn_queue"] -= 1

    def _notify(self) -> None:
        cb = self.on_event
        if cb is not None:
            cb()


for _name in INHERITED:
    setattr(TcpListener, _name, _Inherited(_name))
