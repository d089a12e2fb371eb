"""The TCP layer of one stack: demultiplexing, listen/connect, RSTs for
segments nobody wants, SYN cookies, and ICMP errors.

Lookup is one dict probe on the 4-tuple ``(local addr, local port, remote
addr, remote port)``; listeners are found by ``(addr, port)`` and then by the
wildcard address.
"""

from __future__ import annotations

import errno
import os
import struct
from bisect import insort
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any

from femtotcp.core import rand
from femtotcp.proto.ports import port_taken, sharers_taken
from femtotcp.proto.ratelimit import TokenBucket
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.proto.tcp.connection import TcpConnection, _os_error
from femtotcp.proto.tcp.env import StackEnv, StackEnv6
from femtotcp.proto.tcp.isn import (
    COOKIE_PERIOD,
    IsnGenerator,
    SynCookies,
    decode_ts_options,
)
from femtotcp.proto.tcp.listener import INHERITED, TcpListener
from femtotcp.proto.tcp.ports import EphemeralPorts
from femtotcp.proto.tcp.seq import MASK
from femtotcp.proto.tcp.state import FIN_WAIT_2, TIME_WAIT
from femtotcp.proto.tcp.synguard import SynGuard
from femtotcp.proto.tcp.timewait import TimeWait
from femtotcp.stack.ipv4 import MIN_PMTU
from femtotcp.wire import Malformed, icmp4
from femtotcp.wire import tcp as wire
from femtotcp.wire.checksum import ones_sum, sum_value

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.ipv4 import Ipv4
    from femtotcp.stack.ipv6 import Ipv6
    from femtotcp.stack.stack import Stack
    from femtotcp.wire.ipv4 import Ipv4Header
    from femtotcp.wire.ipv6 import Ipv6Header

ANY4 = b"\x00" * 4
ANY6 = b"\x00" * 16
_PORTS_SEQ = struct.Struct("!HHI")
_PORTS = struct.Struct("!HH")
_HDR = struct.Struct("!HHIIHHHH")
_FAST_HDR = struct.Struct("!HHIIHH")

Key = tuple[bytes, int, bytes, int]


def _checksum_ok(segment: memoryview, n: int, psum: int) -> bool:
    """The segment's checksum (RFC 9293 3.1): the ones' complement sum is the
    value modulo 0xFFFF (see wire.checksum); ``psum`` is the pseudo header's
    address part plus the protocol (a connection caches it)."""
    return not (sum_value(segment) + psum + n) % 0xFFFF

#: The states a compact record (timewait.py) keeps.
_RECORD_STATES = frozenset({TIME_WAIT, FIN_WAIT_2})


class Tcp:
    def __init__(self, stack: Stack, config: TcpConfig | None = None) -> None:
        self.stack = stack
        if stack.ipv4 is None:
            raise ValueError("the tcp module needs the ipv4 module")
        #: The IP layer TCP's offload (TSO) output goes through.
        self.ipv4: Ipv4 = stack.ipv4
        self.config = config or stack.config.tcp or TcpConfig()
        stack.config.tcp = self.config
        self.counters = stack.counters
        #: Work deferred to the end of the receive batch, in order.
        self._due: list[Callable[[], None]] = []
        #: ``defer(callback)``: run ``callback`` once at the end of the current
        #: receive batch (``Stack.end_batch``), after everything deferred before
        #: it. The caller keeps its own flag so that it defers a thing once per
        #: batch (a connection's coalesced ACK, its ``on_event``). A bound
        #: ``list.append``: as cheap as the call_soon it replaces, no allocation.
        self.defer: Callable[[Callable[[], None]], None] = self._due.append
        self._conns: dict[Key, TcpConnection] = {}
        self.time_wait_count = 0
        #: TIME-WAIT records by deadline, oldest first (``_adopt_time_wait``):
        #: (deadline, tie-breaker, record); one expiry timer for the oldest.
        self._tw_queue: deque[tuple[float, int, TimeWait]] = deque()
        self._tw_seq = count()
        self._tw_timer: Timer | None = None
        self._listeners: dict[tuple[bytes, int], TcpListener] = {}
        #: (address, port)s that SO_REUSEPORT listeners share: all of them, in
        #: listening order (``_listeners`` holds the first).
        self._listener_groups: dict[tuple[bytes, int], list[TcpListener]] = {}
        self.isn = IsnGenerator(os.urandom(32))
        self.cookies = SynCookies(os.urandom(32))
        #: Cookie SYN-ACKs, and the early path for bare SYNs while they are sent.
        self.synguard = SynGuard(self)
        #: What the connections see of the stack (their ``TcpEnv``).
        self.env = StackEnv(self)
        scfg = stack.config
        self.ports = EphemeralPorts(scfg.ephemeral_low, scfg.ephemeral_high, os.urandom(32))
        cfg = self.config
        # Started "long ago": the stack's clock may still change when a loop adopts it.
        self.challenge_bucket = TokenBucket(cfg.challenge_ack_rate, cfg.challenge_ack_burst,
                                            -1e18)
        self.rst_bucket = (TokenBucket(cfg.rst_rate, cfg.rst_burst, -1e18)
                           if cfg.rst_rate > 0 else None)
        #: Gateway hook: ``transparent(ip, hdr, payload) -> bool`` sees every segment
        #: that no connection or listener takes (any destination); True: consumed.
        self.transparent: Callable[[Any, wire.TcpHeader, memoryview], bool] | None = None
        full = stack.ip_protocols[wire.PROTO] = self.input
        self.ipv4.add_fast_protocol(wire.PROTO, self.fast_input4, full)
        stack.ip_error_handlers[wire.PROTO] = self.on_ip_error
        stack.add_batch_hook(self.end_batch)
        if stack.ipv6 is not None:
            self.attach_ipv6(stack.ipv6)

    def attach_ipv6(self, ipv6: Ipv6) -> None:
        """Carry TCP over IPv6 too (next header 6): the same input (the
        pseudo-header sum over 16-byte addresses is the same expression) and
        the same ICMP error path (Linux's tcp_v6_err acts as tcp_v4_err)."""
        full = ipv6.protocols[wire.PROTO] = self.input
        ipv6.add_fast_protocol(wire.PROTO, self.fast_input6, full)
        ipv6.error_handlers[wire.PROTO] = self.on_ip_error

    def _env_for(self, raddr: bytes) -> StackEnv:
        """The shared env for IPv4; for IPv6 one per connection, holding its
        flow label (RFC 6437 3: random, non-zero, 20 bits)."""
        ipv6 = self.stack.ipv6
        if len(raddr) == 4 or ipv6 is None:
            return self.env
        return StackEnv6(self, ipv6, rand.randbelow(0xFFFFF) + 1)

    # ------------------------------------------------------------------ batches
    def end_batch(self, now: float) -> None:
        """The stack's end-of-batch hook: run what input deferred (``defer``),
        in order; what those callbacks defer runs after them."""
        due = self._due
        if due:
            i = 0
            try:
                while i < len(due):    # what a callback defers runs in this pass too
                    callback = due[i]
                    i += 1
                    callback()
            finally:
                del due[:i]            # a raising callback leaves the rest for next time

    # ------------------------------------------------------------------ program API
    def listen(self, local_addr: bytes, port: int, backlog: int = 128,
               v6only: bool = False, reuse_port: bool = False) -> TcpListener:
        """A listener on (addr, port); the all-zero address means every address
        of its family, and ``::`` without ``v6only`` IPv4 ones too (as Linux).
        OSError(EADDRINUSE) when the port is taken; port 0 picks a free one.
        ``reuse_port`` (SO_REUSEPORT): listeners that all set it share the
        port, each new connection going to one of them by a hash of its
        source, as Linux's reuseport groups."""
        if not 0 <= port <= 65535:
            raise _os_error(errno.EINVAL)
        if local_addr not in (ANY4, ANY6) and not self.stack.is_local(local_addr):
            raise _os_error(errno.EADDRNOTAVAIL)
        if port == 0:
            port = self._free_listen_port(local_addr, v6only)
        if self._listen_conflict(local_addr, port, v6only, reuse_port):
            raise _os_error(errno.EADDRINUSE)
        lst = TcpListener(self, local_addr, port, backlog, v6only)
        lst.reuse_port = reuse_port
        key = (local_addr, port)
        first = self._listeners.get(key)
        if first is None:
            self._listeners[key] = lst
        else:
            self._listener_groups.setdefault(key, [first]).append(lst)
        self.counters["tcp.listens"] += 1
        return lst

    def _group_pick(self, lst: TcpListener, src: bytes, sport: int) -> TcpListener:
        """The listener of ``lst``'s SO_REUSEPORT group a segment from (``src``,
        ``sport``) goes to: the same for every segment of a connection."""
        group = self._listener_groups.get(lst.local)
        if group is None:
            return lst
        return group[hash((src, sport)) % len(group)]

    def connect(self, dst: bytes, port: int, src: bytes | None = None, sport: int = 0,
                any_src: bool = False, **options: Any) -> TcpConnection:
        """Active open: send a SYN (the connection starts in SYN_SENT).

        ``options`` are connection attributes applied before the SYN (rcvbuf,
        sndbuf, nodelay, maxseg, keepalive, user_timeout, ...). Raises
        OSError(ENETUNREACH) without a route, EADDRNOTAVAIL for a taken 4-tuple
        or when no ephemeral port is left. ``any_src``: ``src`` need not
        be ours (a gateway's port forward shows the guest the real client)."""
        if not 0 < port <= 65535:
            raise _os_error(errno.EINVAL)
        stack = self.stack
        if src is None or src in (ANY4, ANY6):
            src = stack.source_address(dst)
            if src is None:
                raise _os_error(errno.ENETUNREACH)
        elif not any_src and not stack.is_local(src):
            raise _os_error(errno.EADDRNOTAVAIL)
        if sport == 0:
            picked = self.ports.pick(src, dst, port,
                                     lambda p: self._port_in_use(src, p, dst, port))
            if picked is None:
                raise _os_error(errno.EADDRNOTAVAIL)
            sport = picked
        elif (src, sport, dst, port) in self._conns:
            raise _os_error(errno.EADDRNOTAVAIL)     # Linux's answer for a taken 4-tuple
        conn = TcpConnection(self._env_for(dst), src, sport, dst, port)
        for name, value in options.items():
            if name not in INHERITED:
                raise TypeError(f"unknown TCP option {name!r} (known: {', '.join(INHERITED)})")
            setattr(conn, name, value)
        self._conns[conn.key] = conn
        conn.open_active()
        return conn

    def connections(self) -> list[TcpConnection]:
        return list(self._conns.values())

    def listeners(self) -> list[TcpListener]:
        groups = self._listener_groups
        return [each for key, lst in self._listeners.items()
                for each in groups.get(key, (lst,))]

    def stats(self) -> dict[str, int]:
        """Occupancy now: connections by state, queues and out-of-order data held."""
        out: dict[str, int] = {}
        for conn in self._conns.values():
            key = f"state.{conn.state}"
            out[key] = out.get(key, 0) + 1
        listeners = self.listeners()
        out["listeners"] = len(listeners)
        out["syn_queue"] = sum(len(lst.syn_queue) for lst in listeners)
        out["accept_queue"] = sum(len(lst.accept_queue) for lst in listeners)
        out["ooo_segments"] = sum(len(c.ooo) for c in self._conns.values())
        out["ooo_bytes"] = sum(c.ooo.nbytes for c in self._conns.values())
        return out

    def close(self) -> None:
        """Stack shutdown: listeners stop, connections close (FIN, or RST as close()
        decides)."""
        for lst in self.listeners():
            lst.close()
        for conn in list(self._conns.values()):
            if conn.listener is None and not conn.orphaned:
                conn.close()

    # ------------------------------------------------------------------ ports
    def _port_in_use(self, src: bytes, port: int, dst: bytes, dport: int) -> bool:
        if (src, port, dst, dport) in self._conns:
            return True
        return (src, port) in self._listeners or (
            (ANY4 if len(src) == 4 else ANY6), port) in self._listeners or (
            len(src) == 4 and self._dual_listener(port) is not None)

    def _listen_conflict(self, addr: bytes, port: int, v6only: bool = True,
                         reuse_port: bool = False) -> bool:
        dual = self._dual_listener(port)
        if reuse_port:
            groups = self._listener_groups
            return sharers_taken(
                ((key, groups.get(key, (lst,))) for key, lst in self._listeners.items()),
                addr, port, v6only, None if dual is None else dual.local,
                lambda each: each.reuse_port)
        return port_taken(self._listeners, addr, port, v6only,
                          () if dual is None else (dual.local,))

    def _dual_listener(self, port: int) -> TcpListener | None:
        """The listener on ``::`` that takes IPv4 on ``port``, if any."""
        lst = self._listeners.get((ANY6, port))
        return lst if lst is not None and not lst.v6only else None

    def _free_listen_port(self, addr: bytes, v6only: bool = True) -> int:
        def used(p: int) -> bool:
            return self._listen_conflict(addr, p, v6only) or any(
                k[1] == p for k in self._conns)
        port = self.ports.pick(addr, b"", 0, used)
        if port is None:
            raise _os_error(errno.EADDRINUSE)
        return port

    # ------------------------------------------------------------------ bookkeeping
    def _remove(self, conn: TcpConnection) -> None:
        if self._conns.get(conn.key) is conn:
            del self._conns[conn.key]
        lst = conn.listener
        if lst is not None and conn.key in lst.syn_queue:
            lst._forget(conn)

    def _adopt_time_wait(self, conn: TcpConnection, deadline: float) -> TimeWait | None:
        """A closed connection entered TIME_WAIT (or FIN_WAIT_2, timewait.py's
        substate): a compact record takes its
        place in the table (``timewait.py``) until ``deadline``. Records are
        expired in order by one timer; a FIN that restarts 2 MSL moves the
        record's deadline, and it is queued again when its entry comes up."""
        key = conn.key
        if self._conns.get(key) is not conn:
            return None
        tw = TimeWait(conn, deadline)
        self._conns[key] = tw
        self._tw_push(tw)
        return tw

    def _tw_push(self, tw: TimeWait) -> None:
        queue = self._tw_queue
        entry = (tw.deadline, next(self._tw_seq), tw)
        if not queue or queue[-1][0] <= entry[0]:
            queue.append(entry)
        else:
            insort(queue, entry)        # a shorter MSL than the records before it
        if len(queue) > 2 * self.time_wait_count + 256:
            # Records that ended early (a RST, a reused 4-tuple) leave their
            # entries behind: drop them once they are most of the queue.
            live = [e for e in queue if e[2].state in _RECORD_STATES]
            queue.clear()
            queue.extend(live)
        timer = self._tw_timer
        if timer is None or timer.when > queue[0][0]:
            if timer is not None:
                timer.cancel()
            self._tw_timer = self.stack.timers.call_at(queue[0][0], self._time_wait_expire)

    def _time_wait_expire(self) -> None:
        """End the TIME-WAIT records whose 2 MSL ran out (``tcp.time_wait_done``)."""
        self._tw_timer = None
        queue = self._tw_queue
        now = self.stack.timers.now
        while queue and queue[0][0] <= now:
            deadline, _, tw = queue.popleft()
            st = tw.state
            if st not in _RECORD_STATES:
                continue                    # ended early
            if tw.deadline != deadline:
                if tw.deadline > deadline:
                    self._tw_push(tw)       # a retransmitted FIN restarted 2 MSL
                continue                    # (an earlier one has its own entry)
            self.counters["tcp.time_wait_done" if st == TIME_WAIT else
                          "tcp.fin_wait_2_timeout"] += 1
            tw._destroy()
        if queue and self._tw_timer is None:
            self._tw_timer = self.stack.timers.call_at(queue[0][0], self._time_wait_expire)

    def _remove_listener(self, lst: TcpListener) -> None:
        key = lst.local
        group = self._listener_groups.get(key)
        if group is not None and lst in group:
            group.remove(lst)
            if self._listeners.get(key) is lst:
                self._listeners[key] = group[0]
            if len(group) == 1:
                del self._listener_groups[key]
            return
        if self._listeners.get(key) is lst:
            del self._listeners[key]

    def _ooo_changed(self) -> None:
        """Keep the out-of-order gauges current (cheap: only on that slow path)."""
        counters = self.counters
        counters["tcp.ooo_held_segments"] = sum(len(c.ooo) for c in self._conns.values())
        counters["tcp.ooo_held_bytes"] = sum(c.ooo.nbytes for c in self._conns.values())

    # ------------------------------------------------------------------ input
    def fast_input4(self, src: bytes, dst: bytes, segment: memoryview, iface: Interface,
                    tos: int, csum_ok: bool) -> int:
        """The IPv4 fast path's TCP handler (``Ipv4.fast_input``): a segment for
        an existing connection that its header prediction (``fast_input``)
        takes. Returns 1 when consumed; 2 when not, its checksum verified (or
        vouched for), 0 when it is for no connection or fails the checksum
        (the full path then counts it), never changing anything first."""
        n = len(segment)
        if n < 20:
            return 0
        sport, dport, seq, ack, off_flags, window = _FAST_HDR.unpack_from(segment)
        conn = self._conns.get((dst, dport, src, sport))
        if conn is None:
            return self._fast_listen(src, dst, segment, n, csum_ok)
        hlen = (off_flags >> 10) & 0x3C
        if hlen < 20 or hlen > n:
            return 0
        if not csum_ok and (sum_value(segment) + conn._psum + n) % 0xFFFF:
            return 0
        return 1 if conn.fast_input(seq, ack, off_flags & 0xFF, window, segment, hlen) else 2

    def _fast_listen(self, src: bytes, dst: bytes, segment: memoryview, n: int,
                     csum_ok: bool) -> int:
        """The fast paths' segment for no connection: when a listener takes its
        port (a SYN opening a connection, the ACK of a cookie handshake), what
        ``input`` does with it (the checksum, the header, ``tcp.no_connection``,
        ``_listen_input``), without the full IP path's header objects; the
        fast paths made every check of that path before. Otherwise (no
        listener: a RST, or the gateway's ``transparent`` hook) 0, and the full
        path decides."""
        sport, dport, seq, ack, off_flags, window, csum, urgent = _HDR.unpack_from(segment)
        lst = self._listener_for(dst, dport, src, sport)
        if lst is None:
            return 0
        hlen = (off_flags >> 10) & 0x3C
        if hlen < 20 or hlen > n:
            return 0
        if not csum_ok and not _checksum_ok(segment, n, ones_sum(src + dst) + 6):
            return 0
        self.counters["tcp.no_connection"] += 1
        self._listen_input(lst, src, dst,
                           wire.TcpHeader(sport, dport, seq, ack, hlen, off_flags & 0xFF,
                                          window, csum, urgent, segment[20:hlen]),
                           segment[hlen:])
        return 1

    def _listener_for(self, dst: bytes, dport: int, src: bytes,
                      sport: int) -> TcpListener | None:
        """The listener a segment from (``src``, ``sport``) to our address
        ``dst`` reaches: on the address, on the wildcard of its family, or for
        IPv4 on a dual-stack ``::``; one of a SO_REUSEPORT group."""
        listeners = self._listeners
        lst = listeners.get((dst, dport)) or listeners.get(
            (ANY4 if len(dst) == 4 else ANY6, dport))
        if lst is None and len(dst) == 4:
            lst = self._dual_listener(dport)
        if lst is not None and self._listener_groups:
            lst = self._group_pick(lst, src, sport)
        return lst

    #: The IPv6 fast path's TCP handler (``Ipv6.fast_input``): the very same
    #: steps, the connection's ``_psum`` being its pseudo-header's address
    #: part for either family (a 16-bit length and next header 6 sum as IPv4's).
    fast_input6 = fast_input4

    def input(self, ip: Ipv4Header | Ipv6Header, segment: memoryview, iface: Interface,
              packet: memoryview, csum_ok: bool = False) -> None:
        """IP protocol 6 handler: checksum (unless the device vouched for it,
        ``csum_ok``: see ``Stack.receive``), demultiplex, hand over."""
        n = len(segment)
        if n < 20:
            raise Malformed("tcp.truncated")
        sport, dport, seq, ack, off_flags, window, csum, urgent = _HDR.unpack_from(segment)
        hlen = (off_flags >> 10) & 0x3C
        if hlen < 20 or hlen > n:
            raise Malformed("tcp.bad_offset")
        src = ip.src
        dst = ip.dst
        conn = self._conns.get((dst, dport, src, sport))
        # The checksum; the connection caches the pseudo header's address part.
        if not csum_ok and not _checksum_ok(
                segment, n, conn._psum if conn is not None else ones_sum(src + dst) + 6):
            raise Malformed("tcp.bad_checksum")
        flags = off_flags & 0xFF
        if conn is not None:
            # Every segment but one in TIME_WAIT ends in the connection.
            if conn.fast_input(seq, ack, flags, window, segment, hlen):
                return
            hdr = wire.TcpHeader(sport, dport, seq, ack, hlen, flags, window, csum, urgent,
                                 segment[20:hlen])
            if not conn.timewait_accepts_syn(hdr):
                conn.input(hdr, segment[hlen:])
                return
            self.counters["tcp.time_wait_reused"] += 1
            conn._destroy()
        else:
            hdr = wire.TcpHeader(sport, dport, seq, ack, hlen, flags, window, csum, urgent,
                                 segment[20:hlen])
        self.counters["tcp.no_connection"] += 1
        local = self.stack.is_local(dst)
        if local:
            lst = self._listener_for(dst, dport, src, sport)
            if lst is not None:
                self._listen_input(lst, src, dst, hdr, segment[hlen:])
                return
        hook = self.transparent
        if hook is not None and hook(ip, hdr, segment[hlen:]):
            return
        if not local:
            self.counters["tcp.not_unicast"] += 1
            return
        self.counters["tcp.no_socket"] += 1
        self._reset_for(src, dst, hdr, n - hlen)

    def accept_transparent(self, lst: TcpListener, src: bytes, dst: bytes,
                           hdr: wire.TcpHeader, payload: memoryview) -> None:
        """Answer a SYN the ``transparent`` hook held (for any destination ``dst``)
        as if it had reached ``lst``, a listener not in the table: the SYN-ACK
        goes out now and the connection lands in ``lst``'s accept queue."""
        self._listen_input(lst, src, dst, hdr, payload)

    def reset_for(self, src: bytes, dst: bytes, hdr: wire.TcpHeader, plen: int) -> None:
        """Refuse a segment with a RST (a held SYN whose host connect failed)."""
        self._reset_for(src, dst, hdr, plen)

    def _reset_for(self, src: bytes, dst: bytes, hdr: wire.TcpHeader, plen: int) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST."""
        flags = hdr.flags
        if flags & wire.RST:
            return
        bucket = self.rst_bucket
        if bucket is not None and not bucket.take(self.stack.now):
            self.counters["tcp.rst_ratelimited"] += 1
            return
        if flags & wire.ACK:
            seg = wire.build(dst, src, hdr.dst_port, hdr.src_port, hdr.ack, 0, wire.RST, 0)
        else:
            seg_len = plen + (1 if flags & wire.SYN else 0) + (1 if flags & wire.FIN else 0)
            seg = wire.build(dst, src, hdr.dst_port, hdr.src_port, 0, hdr.seq + seg_len,
                             wire.RST | wire.ACK, 0)
        self.counters["tcp.rst_sent"] += 1
        # DF as on every other TCP segment we send (Linux sets it on its resets too).
        self._reply(src, dst, seg, True)

    def _reply(self, to: bytes, frm: bytes, seg: bytes, df: bool,
               lst: TcpListener | None = None) -> None:
        """Send a segment no connection owns (a RST, a SYN-cookie SYN-ACK). Over
        IPv6 it carries the flow label ``IsnGenerator.flow_label`` gives its
        4-tuple (RFC 6437 3), and a listener's IPV6_UNICAST_HOPS and
        IPV6_TCLASS (over IPv4 its IP_TTL and IP_TOS), as its connections'
        SYN-ACKs do."""
        ipv6 = self.stack.ipv6
        if len(to) == 4 or ipv6 is None:
            if lst is None:
                self.stack.ip_output(to, wire.PROTO, seg, src=frm, df=df)
            else:           # a listener's IP_TTL and IP_TOS, as its connections'
                self.stack.ip_output(to, wire.PROTO, seg, src=frm, df=df, ttl=lst.ttl,
                                     tos=lst.tos)
            return
        lport, rport = _PORTS.unpack_from(seg)
        ipv6.output(to, wire.PROTO, seg, src=frm, df=df,
                    ttl=None if lst is None else lst.hop_limit,
                    tos=0 if lst is None else lst.tclass,
                    flow=self.isn.flow_label(frm, lport, to, rport))

    def _listen_input(self, lst: TcpListener, src: bytes, dst: bytes, hdr: wire.TcpHeader,
                      payload: memoryview) -> None:
        """RFC 9293 3.10.7.2 (LISTEN)."""
        flags = hdr.flags
        counters = self.counters
        if flags & wire.RST:
            return
        if flags & wire.ACK:
            if not flags & wire.SYN and self._cookie_ack(lst, src, dst, hdr, payload):
                return
            counters["tcp.listen_bad_ack"] += 1
            self._reset_for(src, dst, hdr, len(payload))
            return
        if not flags & wire.SYN:
            counters["tcp.listen_no_syn"] += 1
            return
        if flags & wire.FIN:
            counters["tcp.syn_fin_dropped"] += 1     # as Linux: SYN+FIN is discarded
            return
        if lst.accept_full():
            counters["tcp.listen_overflow"] += 1
            return
        opts = wire.parse_options(hdr.options) if hdr.options else wire.NO_OPTIONS
        if opts.bad:
            counters[opts.bad] += 1
        if self.synguard.want_cookie(lst, self.stack.now):
            if self.config.syncookies:
                self._send_cookie(lst, src, dst, hdr, opts)
            else:
                counters["tcp.syn_queue_overflow"] += 1
            return
        conn = TcpConnection(self._env_for(src), dst, hdr.dst_port, src, hdr.src_port,
                             listener=lst)
        lst.apply_options(conn)
        self._conns[conn.key] = conn
        lst.syn_queue[conn.key] = conn
        counters["tcp.syn_queue"] += 1
        conn.open_passive(hdr, opts, payload)

    def _send_cookie(self, lst: TcpListener, src: bytes, dst: bytes, hdr: wire.TcpHeader,
                     opts: wire.TcpOptions) -> None:
        """A stateless SYN-ACK whose ISN encodes what we must remember (built by
        ``SynGuard.send_cookie``, which the early path shares)."""
        self.synguard.send_cookie(lst, src, dst, hdr.src_port, hdr.dst_port, hdr.seq, opts,
                                  self.stack.now)

    def _cookie_ack(self, lst: TcpListener, src: bytes, dst: bytes, hdr: wire.TcpHeader,
                    payload: memoryview) -> bool:
        """The third segment of a cookie handshake (only while cookies were sent
        recently, as Linux)."""
        cfg = self.config
        now = self.stack.now
        if not cfg.syncookies or now - lst.cookie_time > 2 * COOKIE_PERIOD:
            return False
        lport, rport = hdr.dst_port, hdr.src_port
        mss = self.cookies.check(now, dst, lport, src, rport, (hdr.seq - 1) & MASK,
                                 (hdr.ack - 1) & MASK)
        if mss is None:
            self.counters["tcp.syncookies_failed"] += 1
            return False
        if lst.accept_full():
            self.counters["tcp.listen_overflow"] += 1
            return True
        opts = wire.parse_options(hdr.options) if hdr.options else wire.NO_OPTIONS
        wscale: int | None = None
        sack = False
        if opts.ts_ecr is not None and cfg.timestamps:
            wscale, sack = decode_ts_options(opts.ts_ecr)
            if not cfg.window_scaling:
                wscale = None
            sack = sack and cfg.sack
        else:
            opts = wire.TcpOptions()    # no timestamps: none of the extensions
        conn = TcpConnection(self._env_for(src), dst, lport, src, rport, listener=lst)
        lst.apply_options(conn)
        self._conns[conn.key] = conn
        conn.open_from_cookie(hdr, opts, mss, wscale, sack)
        conn.input(hdr, payload)
        return True

    # ------------------------------------------------------------------ ICMP
    def on_ip_error(self, src: bytes, dst: bytes, inner: memoryview, err: int,
                    icmp_type: int, icmp_code: int, mtu: int) -> bool:
        """An ICMP error (or failed ARP) about a segment we sent from src to dst;
        False when no connection sent it (``IpErrorHandler``)."""
        if len(inner) < 8:
            self.counters["tcp.icmp_truncated"] += 1
            return False
        sport, dport, seq = _PORTS_SEQ.unpack_from(inner)
        conn = self._conns.get((src, sport, dst, dport))
        if conn is None:
            self.counters["tcp.icmp_no_connection"] += 1
            return False
        self.counters["tcp.icmp_errors"] += 1
        ipv4 = self.stack.ipv4
        if len(dst) != 4 or ipv4 is None or icmp_type != icmp4.DEST_UNREACHABLE or \
                icmp_code != icmp4.FRAG_NEEDED:
            return conn.icmp_error(seq, err, icmp_type, icmp_code, mtu)
        # RFC 1191 as Linux's tcp_v4_err: a figure below 552 (an RFC 792
        # router's 0 too) means 552; once the segment is found in flight the
        # route's path MTU falls too, so later connections start below it.
        if conn.in_flight(seq):
            # First, so what the connection sends now already knows (a lock).
            ipv4.lower_pmtu(dst, mtu)
        if mtu < MIN_PMTU:
            mtu = min(self.stack.route_mtu(dst), MIN_PMTU)
        return conn.icmp_error(seq, err, icmp_type, icmp_code, mtu)


def install(stack: Stack) -> Tcp:
    tcp = Tcp(stack)
    stack.tcp = tcp
    stack.on_close(tcp.close)
    return tcp


__all__ = ["Tcp", "install"]
