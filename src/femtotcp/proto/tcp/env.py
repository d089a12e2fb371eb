"""What a TCP connection needs from its surroundings, as one narrow interface.

A ``TcpConnection`` talks to nothing but its ``TcpEnv``: segments go out
through ``output`` (and ``output_offload`` for TSO), time and timers come from
``timers``, named events go to ``counters``, tunables from ``config``, ISNs and
timestamp offsets from ``isn``; work for the end of a receive batch (ACK and
event coalescing) goes to ``defer``. ``StackEnv`` fulfils it for a real stack (one
per ``Tcp`` layer); a unit test fulfils it with a list of sent segments and a
virtual clock (tests/proto/tcp/test_connection_unit.py), so a connection can be
driven without a ``Stack``: segments in, segments out, a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from femtotcp.core.counters import Counters
    from femtotcp.proto.tcp.config import TcpConfig
    from femtotcp.proto.tcp.connection import TcpConnection
    from femtotcp.proto.tcp.layer import Tcp
    from femtotcp.stack.ipv6 import Ipv6


class TimerHandle(Protocol):
    when: float

    def cancel(self) -> None: ...


class TimerSource(Protocol):
    """The clock and the timer heap (``femtotcp.core.timers.Timers``)."""

    now: float

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class IsnSource(Protocol):
    """RFC 6528 ISNs and timestamp offsets (``femtotcp.proto.tcp.isn.IsnGenerator``)."""

    def isn(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int: ...

    def ts_offset(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int: ...


class TcpEnv(Protocol):
    """Everything a connection uses of the world around it."""

    @property
    def config(self) -> TcpConfig: ...

    @property
    def counters(self) -> Counters: ...

    @property
    def timers(self) -> TimerSource: ...

    @property
    def isn(self) -> IsnSource: ...

    #: Connections in TIME_WAIT (bounded by ``config.max_time_wait``).
    time_wait_count: int

    def defer(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` at the end of the current receive batch (TCP's ACK
        and event coalescing); False when no batch is running: the caller then
        does the work at once."""

    def challenge_ack_allowed(self, now: float) -> bool:
        """The stack-wide RFC 5961 7 limit on challenge ACKs."""

    def output(self, src: bytes, dst: bytes, segment: bytes) -> int:
        """Send one segment (DF set unless the IPv4 path MTU is locked);
        returns 0 or an errno to remember."""

    def offload_path(self, src: bytes, dst: bytes) -> Any:
        """A TSO path to dst when its device segments for us; None otherwise."""

    def output_offload(self, path: Any, src: bytes, dst: bytes, segment: bytes, mss: int,
                       hlen: int) -> None:
        """Send one TSO super-segment (its checksum left partial)."""

    def route_mtu(self, dst: bytes) -> int: ...

    def forget(self, conn: TcpConnection) -> None:
        """The connection entered CLOSED: drop it from demultiplexing."""

    def ooo_changed(self) -> None:
        """A connection's out-of-order queue changed (for the gauges)."""

    def adopt_time_wait(self, conn: TcpConnection, deadline: float) -> TcpConnection | None:
        """``conn``, closed by the program, is in TIME_WAIT (or FIN_WAIT_2, its
        state says which) until ``deadline``: the record that takes its place
        (``timewait.TimeWait``), or None when the connection keeps the state
        itself (its own timer)."""

    def requeue_time_wait(self, record: TcpConnection) -> None:
        """A record's deadline moved earlier (FIN_WAIT_2's fin_timeout
        became TIME-WAIT's 2 MSL): expire it by the new one."""


class StackEnv:
    """``TcpEnv`` over a stack's ``Tcp`` layer."""

    __slots__ = ("_tcp", "counters", "timers")

    def __init__(self, tcp: Tcp) -> None:
        self._tcp = tcp
        # The stack's, never replaced: plain attributes (read for every new
        # connection); the config and the ISN generator may be, so they are read live.
        self.counters: Counters = tcp.counters
        self.timers: TimerSource = tcp.stack.timers

    @property
    def config(self) -> TcpConfig:
        return self._tcp.config

    @property
    def isn(self) -> IsnSource:
        return self._tcp.isn

    @property
    def time_wait_count(self) -> int:
        return self._tcp.time_wait_count

    @time_wait_count.setter
    def time_wait_count(self, n: int) -> None:
        self._tcp.time_wait_count = n

    def defer(self, callback: Callable[[], None]) -> bool:
        # Queued on the layer's list, which Stack.end_batch drains: every driver
        # of the stack (the loops after a device's read batch, poll) ends a
        # batch with it, with or without a loop attached.
        self._tcp.defer(callback)
        return True

    def challenge_ack_allowed(self, now: float) -> bool:
        return self._tcp.challenge_bucket.take(now)

    def output(self, src: bytes, dst: bytes, segment: bytes) -> int:
        # DF unless the path MTU is locked (Linux's ip_dont_fragment, WANT).
        err: int = self._tcp.stack.ip_output(dst, 6, segment, src=src, df=None)
        return err

    def offload_path(self, src: bytes, dst: bytes) -> Any:
        ipv4 = self._tcp.stack.ipv4
        return ipv4.offload_path(dst, src) if ipv4 is not None else None

    def output_offload(self, path: Any, src: bytes, dst: bytes, segment: bytes, mss: int,
                       hlen: int) -> None:
        self._tcp.ipv4.output_offload(path, src, dst, segment, mss, hlen)

    def route_mtu(self, dst: bytes) -> int:
        return self._tcp.stack.route_mtu(dst)

    def forget(self, conn: TcpConnection) -> None:
        self._tcp._remove(conn)

    def ooo_changed(self) -> None:
        self._tcp._ooo_changed()

    def adopt_time_wait(self, conn: TcpConnection, deadline: float) -> TcpConnection | None:
        return self._tcp._adopt_time_wait(conn, deadline)

    def requeue_time_wait(self, record: TcpConnection) -> None:
        self._tcp._tw_push(record)  # type: ignore[arg-type]


class StackEnv4(StackEnv):
    """``TcpEnv`` for one IPv4 connection whose program set IP_TTL or IP_TOS
    (``own_env4``): its segments carry them. A TTL of its own sends without
    TSO (the offload path's header has the stack's)."""

    __slots__ = ("ttl", "tos")

    def __init__(self, tcp: Tcp) -> None:
        super().__init__(tcp)
        self.ttl: int | None = None
        self.tos = 0

    def output(self, src: bytes, dst: bytes, segment: bytes) -> int:
        err: int = self._tcp.stack.ip_output(dst, 6, segment, src=src, ttl=self.ttl,
                                             tos=self.tos, df=None)
        return err

    def offload_path(self, src: bytes, dst: bytes) -> Any:
        return None if self.ttl is not None else super().offload_path(src, dst)

    def output_offload(self, path: Any, src: bytes, dst: bytes, segment: bytes, mss: int,
                       hlen: int) -> None:
        self._tcp.ipv4.output_offload(path, src, dst, segment, mss, hlen, tos=self.tos)


def own_env4(conn: TcpConnection) -> StackEnv4 | None:
    """An IPv4 connection's own env (made the first time, in place of the
    shared one), for its IP_TTL and IP_TOS; None for an IPv6 connection."""
    env = conn.env
    if isinstance(env, StackEnv4):
        return env
    if type(env) is not StackEnv:
        return None
    own = StackEnv4(env._tcp)
    conn.env = conn.snd.env = conn.rcv.env = own
    return own


class StackEnv6(StackEnv):
    """``TcpEnv`` for one connection over IPv6: its segments carry the
    connection's flow label (RFC 6437: one per flow, never zero), hop limit
    (IPV6_UNICAST_HOPS; None: the stack's) and traffic class (IPV6_TCLASS), TSO
    super-segments go out as TCPV6, and its MSS follows the IPv6 path MTU."""

    __slots__ = ("_ipv6", "flow_label", "hop_limit", "tclass")

    def __init__(self, tcp: Tcp, ipv6: Ipv6, flow_label: int) -> None:
        super().__init__(tcp)
        self._ipv6 = ipv6
        self.flow_label = flow_label
        self.hop_limit: int | None = None
        self.tclass = 0

    def output(self, src: bytes, dst: bytes, segment: bytes) -> int:
        return self._ipv6.output(dst, 6, segment, src=src, ttl=self.hop_limit, tos=self.tclass,
                                 df=True, flow=self.flow_label)

    def offload_path(self, src: bytes, dst: bytes) -> Any:
        return self._ipv6.offload_path(dst, src)

    def output_offload(self, path: Any, src: bytes, dst: bytes, segment: bytes, mss: int,
                       hlen: int) -> None:
        self._ipv6.output_offload(path, src, dst, segment, mss, hlen, tos=self.tclass,
                                  flow=self.flow_label, hop=self.hop_limit)

    def route_mtu(self, dst: bytes) -> int:
        return self._ipv6.route_mtu(dst)
