"""The NAT: the guest's TCP, UDP and ICMP echo carried over host sockets.

The stack is the guest's router: its guest interface takes unicast datagrams
to any address (``ipv4.accept_any``), TCP hands over every segment no
connection or listener takes (``tcp.transparent``), UDP every datagram to an
address not ours (``udp.catch_all``), and echo requests to other addresses are
taken before ICMP sees them. Host sockets are non-blocking and registered with
the runtime (``watch_fd``); their handlers run on the loop thread.

TCP: a guest SYN is held while a host socket connects to its destination; the
guest's handshake completes only when the host's does (refused -> RST,
unreachable -> ICMP unreachable, timeout -> RST). Then bytes are spliced both
ways: from the guest only as much as the flow's buffer can hold, from the host
only as much as the stack connection's send buffer takes, so a slow reader on
either side closes the other side's window. FIN and RST are carried both ways.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.gateway.flows import (
    CLOSING,
    CONNECTING,
    ESTABLISHED,
    ICMP,
    TCP,
    UDP,
    Flow,
    FlowTable,
    Limits,
)
from femtotcp.proto.tcp.listener import TcpListener
from femtotcp.wire import Malformed, ip_bytes, ip_str
from femtotcp.wire import icmp4 as wire_icmp
from femtotcp.wire import icmp6 as wire_icmp6
from femtotcp.wire import ipv4 as wire_ipv4
from femtotcp.wire import ipv6 as wire_ipv6
from femtotcp.wire import tcp as wire_tcp
from femtotcp.wire import udp as wire_udp

if TYPE_CHECKING:
    from femtotcp.proto.tcp.connection import TcpConnection
    from femtotcp.proto.tcp.layer import Tcp
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack

log = logging.getLogger("femtotcp.gateway")

ANY4 = b"\x00\x00\x00\x00"
LOOPBACK4 = wire_ipv4.LOOPBACK
LOOPBACK6 = wire_ipv6.LOOPBACK
#: The most one read from a host TCP socket takes (into ``Nat.scratch``).
SPLICE_READ = 262144
#: Datagrams read from one host UDP socket per readiness event (fairness).
UDP_BATCH = 64
_LINGER0 = struct.pack("ii", 1, 0)
IP_RECVERR = 11
IPV6_RECVERR = 25
_EE = struct.Struct("=IBBBBII")      # struct sock_extended_err
SO_EE_ORIGIN_ICMP = 2

Watch = Callable[[int, bool, bool, Any], None]
#: A guest SYN held while the host connects: (guest addr, destination addr,
#: its TCP header (options copied), its payload).
HeldSyn = tuple[bytes, bytes, wire_tcp.TcpHeader, bytes]


def _errno_icmp(err: int, v6: bool = False) -> int:
    """The ICMP (ICMPv6 with ``v6``) unreachable code to tell the guest for a
    host socket's errno."""
    if v6:
        return {errno.ECONNREFUSED: wire_icmp6.PORT_UNREACHABLE,
                errno.ENETUNREACH: wire_icmp6.NO_ROUTE,
                errno.EACCES: wire_icmp6.ADMIN_PROHIBITED,
                errno.EPERM: wire_icmp6.ADMIN_PROHIBITED}.get(err,
                                                             wire_icmp6.ADDRESS_UNREACHABLE)
    if err == errno.ECONNREFUSED:
        return wire_icmp.PORT_UNREACHABLE
    if err == errno.ENETUNREACH:
        return wire_icmp.NET_UNREACHABLE
    if err in (errno.EACCES, errno.EPERM):
        return wire_icmp.ADMIN_PROHIBITED
    return wire_icmp.HOST_UNREACHABLE


#: The largest MSS (options included) of which two fit one 64 KB TSO write.
TSO_PAIR_MSS = 32752


def family(addr: bytes) -> socket.AddressFamily:
    """The host socket family for a packed address."""
    return socket.AF_INET if len(addr) == 4 else socket.AF_INET6


def tso_maxseg(iface: Interface) -> int:
    """On a link whose MTU would make every segment a 64 KB one, an MSS that
    lets two share one TSO write (checksummed by the kernel, not in Python);
    0 (no cap) otherwise or without offload."""
    if iface.device.offload and iface.mtu - 40 > TSO_PAIR_MSS:
        return TSO_PAIR_MSS
    return 0


class Nat:
    """Carries one guest interface's flows over the host's sockets."""

    def __init__(self, stack: Stack, iface: Interface, watch: Watch,
                 gateway_addr: bytes, limits: Limits | None = None,
                 allow_host_loopback: bool = False, gateway_addr6: bytes | None = None) -> None:
        """``gateway_addr6``: the gateway's IPv6 address on the guest's prefix
        (the stack's ipv6 module carries the guest's IPv6 too); None: IPv4 only."""
        self.stack = stack
        self.iface = iface
        self.watch = watch
        self.gateway_addr = gateway_addr
        self.gateway_addr6 = gateway_addr6
        self.allow_host_loopback = allow_host_loopback
        self.counters = stack.counters
        self.table = FlowTable(limits, stack.counters)
        #: Where host TCP reads land before the stack connection copies them (one
        #: loop thread: one buffer for every flow).
        self.scratch = memoryview(bytearray(SPLICE_READ))
        self.limits = self.table.limits
        self._timer: Any = None
        self._ping_warned = False
        ipv4, tcp, udp = stack.ipv4, stack.tcp, stack.udp
        if ipv4 is None or tcp is None or udp is None:
            raise ValueError("the gateway needs the stack's ipv4, tcp and udp modules")
        self.tcp: Tcp = tcp
        ipv4.accept_any.add(iface)
        # Refusals (flow limit, refused connects) go to our own guest only: not
        # rate limited, so a guest's connect fails at once instead of timing out.
        tcp.rst_bucket = None
        tcp.transparent = self._tcp_segment
        udp.catch_all = self._udp_datagram
        self._icmp_input: Callable[..., None] = stack.ip_protocols[wire_ipv4.PROTO_ICMP]
        stack.ip_protocols[wire_ipv4.PROTO_ICMP] = self._icmp_datagram
        ipv6 = stack.ipv6
        if gateway_addr6 is not None:
            if ipv6 is None:
                raise ValueError("IPv6 NAT needs the stack's ipv6 module")
            ipv6.accept_any.add(iface)
            self._icmp6_input: Callable[..., None] = ipv6.protocols[wire_ipv6.PROTO_ICMP6]
            ipv6.protocols[wire_ipv6.PROTO_ICMP6] = self._icmp6_datagram
        # Held SYNs are answered through a listener that is in no table.
        self.listener = TcpListener(tcp, ANY4, 0, self.limits.max_flows)
        self.listener.on_event = self._accept
        self.listener.sndbuf = self.limits.flow_buffer
        self.listener.rcvbuf = self.limits.flow_buffer
        # A relay adds no Nagle delay of its own: the sender's socket already
        # applied its own (TCP_NODELAY on both legs, as passt's splice).
        self.listener.nodelay = True
        self.listener.maxseg = self.maxseg = tso_maxseg(iface)
        self._accepting: dict[tuple[bytes, int, bytes, int], TcpSplice] = {}
        #: TCP to one of our own (address, port)s carried to a host (address, port)
        #: instead (DNS over TCP on the DNS address goes to the upstream resolver).
        self.tcp_redirects: dict[tuple[bytes, int], tuple[bytes, int]] = {}
        #: UDP port forwards' conversations: (guest addr, guest port, shown client
        #: addr, port) -> (forward, the client's host address, last use).
        self.udp_forwarded: dict[tuple[bytes, int, bytes, int],
                                 tuple[UdpForward, tuple[str, int], float]] = {}
        #: The guest's IPv6 addresses as last seen (port forwards from IPv6 host
        #: addresses go there): a global one on --net6, and a link-local one.
        self.seen6: bytes | None = None
        self.seen6_ll: bytes | None = None

    # -- the guest's IPv6 address (for port forwards) ------------------------------------
    def saw6(self, src: bytes) -> None:
        """Note a source address of the guest's IPv6 packets."""
        gw6 = self.gateway_addr6
        if gw6 is None or len(src) != 16:
            return
        if src[:8] == gw6[:8]:
            if src != self.seen6 and src not in self.stack.local_addresses:
                self.seen6 = src
        elif wire_ipv6.is_link_local(src) and src != self.seen6_ll:
            self.seen6_ll = src

    def guest6(self) -> bytes | None:
        """The guest's IPv6 address on --net6: the last one its packets came from;
        before any, the prefix with the interface identifier of its link-local
        address (a Linux guest's SLAAC address, EUI-64 by default, from its
        Router Solicitation); None without IPv6 or a word from the guest."""
        gw6 = self.gateway_addr6
        if gw6 is None:
            return None
        if self.seen6 is not None:
            return self.seen6
        if self.seen6_ll is not None:
            return gw6[:8] + self.seen6_ll[8:]
        return None

    # -- addresses -------------------------------------------------------------------
    def is_gateway(self, addr: bytes) -> bool:
        return addr == self.gateway_addr or addr == self.gateway_addr6

    def host_address(self, dst: bytes) -> bytes | None:
        """Where a guest's destination goes on the host (None: not allowed)."""
        if self.is_gateway(dst):
            if not self.allow_host_loopback:
                self.counters["nat.host_loopback_denied"] += 1
                return None
            return LOOPBACK4 if len(dst) == 4 else LOOPBACK6
        if self.stack.is_local(dst):
            return None
        return dst

    def guest_address(self, addr: bytes) -> bytes:
        """How a host address is shown to the guest (loopback as the gateway)."""
        if len(addr) == 4:
            return self.gateway_addr if addr[0] == 127 else addr
        if addr == LOOPBACK6 and self.gateway_addr6 is not None:
            return self.gateway_addr6
        return addr

    def gateway_for(self, addr: bytes) -> bytes:
        """Our address of ``addr``'s family (the source of ICMP we make up)."""
        if len(addr) == 16 and self.gateway_addr6 is not None:
            return self.gateway_addr6
        return self.gateway_addr

    def _routable(self, dst: bytes) -> bool:
        if len(dst) == 16:
            # Global unicast only: no multicast, link-local, ::, ::1 or v4-mapped.
            return not (dst[0] == 0xFF or wire_ipv6.is_link_local(dst)
                        or dst in (wire_ipv6.UNSPECIFIED, LOOPBACK6)
                        or wire_ipv6.is_v4_mapped(dst))
        return not (dst[0] >= 224 or self.stack.is_broadcast(dst) or dst == ANY4)

    # -- expiry ------------------------------------------------------------------------
    def _arm(self) -> None:
        when = self.table.next_expiry()
        if when is None:
            return
        t = self._timer
        if t is not None and not t.cancelled and t.when <= when:
            return
        if t is not None:
            t.cancel()
        self._timer = self.stack.timers.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for flow in self.table.expire(self.stack.now):
            handle = flow.handle
            if handle is not None:
                handle.expired()
        self._arm()

    def _open(self, proto: str, guest: tuple[bytes, int],
              remote: tuple[bytes, int]) -> Flow | None:
        flow = self.table.open(proto, guest, remote, self.stack.now)
        if flow is not None:
            self._arm()
        return flow

    def close(self) -> None:
        """Drop every flow (host sockets closed; guests get RSTs for TCP)."""
        for flow in self.table:
            if flow.handle is not None:
                flow.handle.abort()
            self.table.remove(flow)
        if self._timer is not None:
            self._timer.cancel()
        self.listener.close()

    # -- TCP ---------------------------------------------------------------------------
    def _tcp_segment(self, ip: Any, hdr: wire_tcp.TcpHeader, payload: memoryview) -> bool:
        src, dst = ip.src, ip.dst
        if len(src) == 16:
            self.saw6(src)
        redirect = self.tcp_redirects.get((dst, hdr.dst_port))
        host = redirect[0] if redirect is not None else self.host_address(dst)
        if host is None:
            if self.is_gateway(dst):
                self.tcp.reset_for(src, dst, hdr, len(payload))
                return True
            return False            # our own address: the stack answers
        if not self._routable(dst):
            return False
        flags = hdr.flags
        guest = (src, hdr.src_port)
        remote = (dst, hdr.dst_port)
        flow = self.table.get(TCP, guest, remote)
        if flow is not None:
            if flow.state == CONNECTING and flags & wire_tcp.SYN:
                self.counters["nat.tcp_syn_while_connecting"] += 1
                return True
            # A late segment of a flow whose connection went: refuse it.
        if flags & wire_tcp.SYN and not flags & wire_tcp.ACK and flow is None:
            flow = self._open(TCP, guest, remote)
            if flow is None:
                self.tcp.reset_for(src, dst, hdr, len(payload))
                return True
            held = (src, dst, hdr._replace(options=memoryview(bytes(hdr.options))),
                    bytes(payload))
            splice = TcpSplice(self, flow, host, held,
                               redirect[1] if redirect is not None else hdr.dst_port)
            flow.handle = splice
            splice.connect()
            return True
        self.counters["nat.tcp_no_flow"] += 1
        self.tcp.reset_for(src, dst, hdr, len(payload))
        return True

    def _accept(self) -> None:
        while (conn := self.listener.accept()) is not None:
            splice = self._accepting.pop(conn.key, None)
            if splice is None:
                conn.abort()
                continue
            splice.attach(conn)

    def forward_tcp(self, sock: socket.socket, client: tuple[str, int],
                    guest: tuple[bytes, int], masquerade: bool) -> None:
        """A host client accepted on a port forward: connect to the guest, showing
        the client's own address and port (or the gateway's with ``masquerade``,
        and always for a loopback client) as the source."""
        addr = ip_bytes(client[0])
        src, sport = self.forward_source(addr, client[1], guest[0], masquerade)
        flow = self._open(TCP, guest, (src, sport or client[1]))
        if flow is None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            sock.close()
            return
        try:
            conn = self.tcp.connect(guest[0], guest[1], src=src, sport=sport,
                                          any_src=True, sndbuf=self.limits.flow_buffer,
                                          rcvbuf=self.limits.flow_buffer,
                                          maxseg=self.maxseg, nodelay=True)
        except OSError:
            self.counters["nat.forward_connect_failed"] += 1
            self.table.remove(flow)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            sock.close()
            return
        self.counters["nat.tcp_forwarded"] += 1
        splice = TcpSplice(self, flow, addr, None)
        flow.handle = splice
        sock.setblocking(False)
        _no_delay(sock)
        splice.sock = sock
        splice.fd = sock.fileno()
        splice.attach(conn)

    def forward_source(self, client: bytes, port: int, guest: bytes,
                       masquerade: bool) -> tuple[bytes, int]:
        """The source a forwarded client is shown to the guest from: its own
        address and port, or the gateway's address of the guest's family (and
        port 0: any) with ``masquerade``, for a loopback or local client, and for
        an IPv6 client of a guest reached over IPv4."""
        if masquerade or len(client) != len(guest) or client == LOOPBACK6 \
                or len(client) == 4 and client[0] == 127 or self.stack.is_local(client):
            return self.gateway_for(guest), 0
        return client, port

    # -- UDP ---------------------------------------------------------------------------
    def _udp_datagram(self, ip: Any, udp: wire_udp.UdpHeader, payload: memoryview) -> bool:
        src, dst = ip.src, ip.dst
        if len(src) == 16:
            self.saw6(src)
        fwd = self.udp_forwarded.get((src, udp.src_port, dst, udp.dst_port))
        if fwd is not None:
            fwd[0].reply(bytes(payload), fwd[1])
            return True
        if not self._routable(dst) or (not self.is_gateway(dst) and self.stack.is_local(dst)):
            return False
        host = self.host_address(dst)
        if host is None:
            return self.is_gateway(dst)     # dropped (counted)
        guest = (src, udp.src_port)
        flow = self.table.get(UDP, guest, (dst, udp.dst_port))
        if flow is None:
            flow = self._open(UDP, guest, (dst, udp.dst_port))
            if flow is None:
                return True
            try:
                flow.handle = UdpMapping(self, flow)
            except OSError as exc:
                self.counters["nat.udp_socket_failed"] += 1
                log.warning("cannot open a host UDP socket: %s", exc)
                self.table.remove(flow)
                return True
        flow.handle.send(bytes(payload), host, udp.dst_port, dst)
        return True

    # -- ICMP echo -----------------------------------------------------------------------
    def _icmp_datagram(self, ip: Any, data: memoryview, iface: Interface, *rest: Any) -> None:
        """Echo requests to other addresses; everything else to ICMP as before
        (``rest``: whatever else the IP layer hands its protocol handlers)."""
        dst = ip.dst
        if len(data) < 8 or data[0] != wire_icmp.ECHO_REQUEST or self.stack.is_local(dst) \
                or not self._routable(dst):
            self._icmp_input(ip, data, iface, *rest)
            return
        self._echo(ip.src, dst, data)

    def _icmp6_datagram(self, ip: Any, data: memoryview, iface: Interface, *rest: Any) -> None:
        """ICMPv6 echo requests to other addresses (checksum verified; a bad one
        raises ``Malformed``, a counted drop); everything else to the IPv6
        module's own ICMPv6 input (neighbour discovery, MLD, our echo)."""
        dst, src = ip.dst, ip.src
        if len(data) < 8 or data[0] != wire_icmp6.ECHO_REQUEST or self.stack.is_local(dst) \
                or not self._routable(dst):
            if src != self.seen6 and src != self.seen6_ll and iface is self.iface:
                # A new source (neighbour discovery for ::2, say): noted once
                # the checksum holds; the ICMPv6 input counts a bad one.
                try:
                    wire_icmp6.parse(data, src, dst)
                except Malformed:
                    pass
                else:
                    self.saw6(src)
            self._icmp6_input(ip, data, iface, *rest)
            return
        wire_icmp6.parse(data, src, dst)
        self.saw6(src)
        self._echo(src, dst, data)

    def _echo(self, src: bytes, dst: bytes, data: memoryview) -> None:
        """An echo request from the guest ``src`` to ``dst`` through a ping socket."""
        host = self.host_address(dst)
        if host is None:
            return
        ident = int.from_bytes(data[4:6], "big")
        guest = (src, ident)
        flow = self.table.get(ICMP, guest, (dst, 0))
        if flow is None:
            flow = self._open(ICMP, guest, (dst, 0))
            if flow is None:
                return
            try:
                flow.handle = PingMapping(self, flow)
            except OSError as exc:
                self.table.remove(flow)
                self.counters["nat.ping_socket_failed"] += 1
                if not self._ping_warned:
                    self._ping_warned = True
                    log.warning(
                        "ICMP echo from the guest is not carried: this host does not allow "
                        "unprivileged ping sockets (%s); allow them with "
                        "`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`",
                        exc.strerror)
                return
        flow.handle.send(bytes(data), host, dst)

    # -- to the guest --------------------------------------------------------------------
    def send_unreachable(self, guest: bytes, inner_ip: bytes, code: int,
                         src: bytes) -> None:
        """ICMP destination unreachable to the guest about ``inner_ip`` (its
        datagram's IP header and at least 8 bytes beyond, RFC 792; ICMPv6 for
        an IPv6 guest, RFC 4443 3.1)."""
        self.counters["nat.icmp_unreachable_sent"] += 1
        if len(guest) == 16:
            msg6 = wire_icmp6.build_dest_unreachable(src, guest, code, inner_ip)
            self.stack.ip_output(guest, wire_icmp6.PROTO, msg6, src=src)
            return
        msg = wire_icmp.build(wire_icmp.DEST_UNREACHABLE, code, 0, inner_ip[:576 - 28])
        self.stack.ip_output(guest, wire_ipv4.PROTO_ICMP, msg, src=src)

    def quote(self, src: bytes, dst: bytes, proto: int, head: bytes) -> bytes:
        """The invoking datagram's IP header and first transport bytes ``head``, as
        an ICMP error quotes it (made up: the datagram itself is gone)."""
        if len(src) == 16:
            return wire_ipv6.build(src, dst, proto, head, 64)
        return wire_ipv4.build(src, dst, proto, head, 64, 0, 0,
                               wire_ipv4.DF if proto == wire_tcp.PROTO else 0)


class TcpSplice:
    """One TCP flow: the guest's stack connection spliced to a host socket."""

    def __init__(self, nat: Nat, flow: Flow, host: bytes, syn: HeldSyn | None,
                 host_port: int = 0) -> None:
        self.nat = nat
        self.flow = flow
        self.host = host
        self.host_port = host_port or flow.remote[1]
        self.syn = syn                        # the guest's SYN, held while connecting
        self.conn: TcpConnection | None = None
        self.sock: socket.socket | None = None
        self.fd = -1
        self.guest_eof = False
        self.host_eof = False
        self.host_shut = False
        self.done = False
        self._interest = (False, False)
        self.conn_key: tuple[bytes, int, bytes, int] | None = None

    # -- connecting --------------------------------------------------------------------
    def connect(self) -> None:
        try:
            sock = socket.socket(family(self.host), socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                                 | socket.SOCK_CLOEXEC)
        except OSError:
            # Out of descriptors (or memory): refuse the guest at once.
            self.nat.counters["nat.tcp_socket_failed"] += 1
            src, dst, hdr, payload = self._held_syn()
            self.nat.tcp.reset_for(src, dst, hdr, len(payload))
            self._finish()
            return
        self.sock = sock
        self.fd = sock.fileno()
        _no_delay(sock)
        err = sock.connect_ex((ip_str(self.host), self.host_port))
        if err in (0, errno.EINPROGRESS):
            self._want(False, True)
        else:
            self._connect_failed(err)

    def on_readable(self) -> None:
        """The runtime's callback for either readiness of the host socket."""
        if self.done or self.sock is None:
            return
        if self.flow.state == CONNECTING:
            if self.conn is None and self._interest == (False, True):
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._connect_failed(err)
                else:
                    self._connected()
            return
        self.pump()

    def _connected(self) -> None:
        nat = self.nat
        self._want(False, False)
        src, dst, hdr, payload = self._held_syn()
        conn_key = (dst, hdr.dst_port, src, hdr.src_port)
        self.conn_key = conn_key
        nat._accepting[conn_key] = self
        nat.tcp.accept_transparent(nat.listener, src, dst, hdr, payload)
        if conn_key not in nat.listener.syn_queue:
            self._finish()

    def _connect_failed(self, err: int) -> None:
        nat = self.nat
        nat.counters["nat.tcp_connect_failed"] += 1
        src, dst, hdr, payload = self._held_syn()
        if err == errno.ECONNREFUSED:
            nat.counters["nat.tcp_refused"] += 1
            nat.tcp.reset_for(src, dst, hdr, len(payload))
        else:
            nat.counters["nat.tcp_unreachable"] += 1
            # The quote: the SYN's IP header and its first 8 bytes (RFC 792).
            quote = nat.quote(src, dst, wire_tcp.PROTO, struct.pack(
                "!HHI", hdr.src_port, hdr.dst_port, hdr.seq))
            nat.send_unreachable(src, quote, _errno_icmp(err, len(src) == 16),
                                 nat.gateway_for(src))
        self._finish()

    def attach(self, conn: TcpConnection) -> None:
        """The guest's handshake completed: start splicing."""
        self.conn = conn
        self.syn = None
        conn.on_event = self.pump
        self.nat.table.set_state(self.flow, ESTABLISHED, self.nat.stack.now)
        self.pump()

    # -- splicing ----------------------------------------------------------------------
    def pump(self) -> None:
        conn, sock = self.conn, self.sock
        if self.done or conn is None or sock is None:
            return
        nat = self.nat
        table = nat.table
        now = nat.stack.now
        # guest -> host: straight from the connection's receive buffer (no copy);
        # what the host socket does not take stays there, so the guest's window
        # closes until the host reads (the receive buffer is the flow's buffer).
        host_full = False
        while not self.guest_eof:
            try:
                n = conn.send_received(sock.sendmsg)
            except (BlockingIOError, InterruptedError):
                host_full = True
                break
            except OSError:
                self._host_reset()
                return
            if conn.rcv_buf:
                if n:
                    table.outbound(self.flow, n, now)
                host_full = True              # a partial send: the socket is full
                break
            if n:
                table.outbound(self.flow, n, now)
                continue
            try:
                data = conn.recv(1)           # nothing buffered: EOF, error or None
            except OSError:
                self._guest_reset()
                return
            if data == b"":
                self.guest_eof = True
            break
        if self.guest_eof and not self.host_shut:
            self.host_shut = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            table.set_state(self.flow, CLOSING, now)
        # host -> guest: only what the connection's send buffer takes, read into
        # one reused buffer (no allocation per read) and copied once, into it
        # Queued without sending until the host side is drained, so an answer
        # the host ended at once leaves with the FIN on its last segment.
        room = 0
        scratch = nat.scratch
        queued = False
        while not self.host_eof:
            room = conn.sndbuf - len(conn.snd_buf)
            if room <= 0:
                break
            try:
                got = sock.recv_into(scratch, min(room, SPLICE_READ))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._host_reset()
                return
            if not got:
                self.host_eof = True
                table.set_state(self.flow, CLOSING, now)
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
            try:
                conn.send(scratch[:got], False)
            except OSError:
                self._guest_reset()
                return
            queued = True
            table.inbound(self.flow, got, now)
        if queued:
            conn.push()
        if self.guest_eof and self.host_eof:
            nat.counters["nat.tcp_closed"] += 1
            conn.on_event = None
            conn.close()
            self.conn = None
            self._finish()
            return
        self._want(not self.host_eof and room > 0, host_full)

    def _guest_reset(self) -> None:
        """The guest reset (or its connection failed): abort the host side (the
        guest's connection is closed already, so no RST goes back to it)."""
        self.nat.counters["nat.tcp_guest_reset"] += 1
        self.abort()

    def _host_reset(self) -> None:
        """The host side reset: reset the guest's connection."""
        self.nat.counters["nat.tcp_host_reset"] += 1
        self.abort()

    def expired(self) -> None:
        """Idle (or connect) timeout: RST to the guest, close the host socket."""
        if self.conn is None and self.syn is not None:
            src, dst, hdr, payload = self._held_syn()
            self.nat.tcp.reset_for(src, dst, hdr, len(payload))
        self.abort()

    def _held_syn(self) -> tuple[bytes, bytes, wire_tcp.TcpHeader, memoryview]:
        """(guest, destination, TCP header, payload) of the SYN held while connecting."""
        assert self.syn is not None
        src, dst, hdr, payload = self.syn
        return src, dst, hdr, memoryview(payload)

    def abort(self) -> None:
        """RST both ways (where a connection is still open) and forget the flow."""
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            except OSError:
                pass
        if self.conn is not None:
            self.conn.on_event = None
            self.conn.abort()
            self.conn = None
        self._finish()

    def _want(self, read: bool, write: bool) -> None:
        if (read, write) != self._interest and self.fd >= 0:
            self._interest = (read, write)
            self.nat.watch(self.fd, read, write, self)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._want(False, False)
        if self.conn_key is not None:
            self.nat._accepting.pop(self.conn_key, None)
            pending = self.nat.listener.syn_queue.get(self.conn_key)
            if pending is not None:
                pending.abort()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.fd = -1
        self.nat.table.remove(self.flow)


def _no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY on a flow's host socket (a relay adds no Nagle delay);
    a socket that is not TCP (a test's stand-in) is left as it is."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class _DatagramMapping:
    """A guest endpoint's datagram socket on the host: reads until EAGAIN (at most
    ``UDP_BATCH`` per event), each datagram to ``_answer``; closed on expiry."""

    def __init__(self, nat: Nat, flow: Flow, sock: socket.socket) -> None:
        self.nat = nat
        self.flow = flow
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        nat.watch(self.fd, True, False, self)

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        """0, or the errno of a failed send (EAGAIN counted and ignored)."""
        sock = self.sock
        if sock is None:
            return 0
        nat = self.nat
        nat.table.outbound(self.flow, len(data), nat.stack.now)
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            nat.counters["nat.host_busy"] += 1
        except OSError as exc:
            nat.counters["nat.host_send_error"] += 1
            return exc.errno or errno.EHOSTUNREACH
        return 0

    def on_readable(self) -> None:
        sock = self.sock
        for _ in range(UDP_BATCH):
            if sock is None:
                return
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._error()
                continue
            nat = self.nat
            nat.table.inbound(self.flow, len(data), nat.stack.now)
            self._answer(data, nat.guest_address(ip_bytes(peer[0])), peer[1])

    def _answer(self, data: bytes, src: bytes, port: int) -> None:
        raise NotImplementedError

    def _error(self) -> None:
        self.nat.counters["nat.host_recv_error"] += 1

    def expired(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self.sock is not None:
            self.nat.watch(self.fd, False, False, self)
            self.sock.close()
            self.sock = None
        self.nat.table.remove(self.flow)


class UdpMapping(_DatagramMapping):
    """One guest UDP endpoint's host socket (endpoint-independent, RFC 4787)."""

    def __init__(self, nat: Nat, flow: Flow) -> None:
        v6 = len(flow.guest[0]) == 16
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                             socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.level, self.recverr = ((socket.IPPROTO_IPV6, IPV6_RECVERR) if v6
                                    else (socket.SOL_IP, IP_RECVERR))
        try:
            sock.setsockopt(self.level, self.recverr, 1)
            sock.bind(("::" if v6 else "0.0.0.0", 0))
        except OSError:
            sock.close()
            raise
        super().__init__(nat, flow, sock)

    def send(self, data: bytes, host: bytes, port: int, shown: bytes) -> None:
        err = self._sendto(data, (ip_str(host), port))
        if err:
            self._error_to_guest(err, shown, port)

    def _answer(self, data: bytes, src: bytes, port: int) -> None:
        guest_addr, guest_port = self.flow.guest
        msg = wire_udp.build(src, guest_addr, port, guest_port, data)
        self.nat.stack.ip_output(guest_addr, wire_udp.PROTO, msg, src=src)

    def _error(self) -> None:
        """ICMP errors the host socket queued (IP_RECVERR): tell the guest."""
        sock = self.sock
        if sock is None:
            return
        for _ in range(UDP_BATCH):
            try:
                _data, anc, _flags, name = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            for level, kind, cdata in anc:
                if level != self.level or kind != self.recverr or len(cdata) < _EE.size \
                        or not name:
                    continue
                err = _EE.unpack_from(cdata)[0]
                self._error_to_guest(err, self.nat.guest_address(ip_bytes(name[0])),
                                     name[1])

    def _error_to_guest(self, err: int, remote: bytes, port: int) -> None:
        """An ICMP unreachable to the guest about its datagram to ``remote``."""
        nat = self.nat
        guest_addr, guest_port = self.flow.guest
        inner = nat.quote(guest_addr, remote, wire_udp.PROTO,
                          struct.pack("!HHHH", guest_port, port, 8, 0))
        v6 = len(guest_addr) == 16
        code = _errno_icmp(err, v6)
        src = remote if code == (wire_icmp6.PORT_UNREACHABLE if v6
                                 else wire_icmp.PORT_UNREACHABLE) else nat.gateway_for(remote)
        nat.counters["nat.udp_icmp_error"] += 1
        nat.send_unreachable(guest_addr, inner, code, src)


class PingMapping(_DatagramMapping):
    """One guest echo identifier's unprivileged ping socket (SOCK_DGRAM, IPPROTO_ICMP):
    the kernel picks the identifier on the wire; replies get the guest's back."""

    def __init__(self, nat: Nat, flow: Flow) -> None:
        self.v6 = len(flow.guest[0]) == 16
        super().__init__(nat, flow, socket.socket(
            socket.AF_INET6 if self.v6 else socket.AF_INET,
            socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP))

    def send(self, data: bytes, host: bytes, shown: bytes) -> None:
        self._sendto(data, (ip_str(host), 0))

    def _answer(self, data: bytes, src: bytes, port: int) -> None:
        guest_addr, ident = self.flow.guest
        seq = int.from_bytes(data[6:8], "big")
        if self.v6:
            if len(data) < 8 or data[0] != wire_icmp6.ECHO_REPLY:
                return
            reply6 = wire_icmp6.build_echo(src, guest_addr, wire_icmp6.ECHO_REPLY, ident, seq,
                                           data[8:])
            self.nat.stack.ip_output(guest_addr, wire_icmp6.PROTO, reply6, src=src)
            return
        if len(data) < 8 or data[0] != wire_icmp.ECHO_REPLY:
            return
        reply = wire_icmp.build_echo(wire_icmp.ECHO_REPLY, ident, seq, data[8:])
        self.nat.stack.ip_output(guest_addr, wire_ipv4.PROTO_ICMP, reply, src=src)


class UdpForward:
    """``-u [ADDR:]HOSTPORT:GUESTPORT``: a host UDP socket whose datagrams go to the
    guest from the client's own address and port (the gateway's with
    ``masquerade`` or for a loopback client); the guest's answers go back to
    the client. At most ``MAX_CLIENTS`` conversations are remembered (the
    oldest are forgotten), each for the UDP idle timeout."""

    MAX_CLIENTS = 1024

    def __init__(self, nat: Nat, sock: socket.socket, target: Callable[[], bytes],
                 guest_port: int, masquerade: bool, spec: Any = None) -> None:
        """``sock``: the bound host socket; ``target()``: the guest's address for
        a new client."""
        self.nat = nat
        self.spec = spec          # the Forward it was made from (for ctl forward list)
        self.target = target
        self.guest_port = guest_port
        self.masquerade = masquerade
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        nat.watch(self.fd, True, False, self)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        nat = self.nat
        now = nat.stack.now
        table = nat.udp_forwarded
        for _ in range(UDP_BATCH):
            try:
                data, client = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                nat.counters["nat.udp_forward_error"] += 1
                return
            guest = self.target()
            addr, _ = nat.forward_source(ip_bytes(client[0]), client[1], guest,
                                         self.masquerade)
            key = (guest, self.guest_port, addr, client[1])
            if key not in table and len(table) >= self.MAX_CLIENTS:
                self._forget(now)
            table[key] = (self, client, now)
            nat.counters["nat.udp_forwarded"] += 1
            msg = wire_udp.build(addr, guest, client[1], self.guest_port, data)
            nat.stack.ip_output(guest, wire_udp.PROTO, msg, src=addr)

    def _forget(self, now: float) -> None:
        table = self.nat.udp_forwarded
        idle = self.nat.limits.udp_timeout
        for key in [k for k, v in table.items() if now - v[2] > idle]:
            del table[key]
        while len(table) >= self.MAX_CLIENTS:
            del table[next(iter(table))]

    def reply(self, data: bytes, client: tuple[str, int]) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, client)
        except OSError:
            self.nat.counters["nat.udp_forward_error"] += 1

    def close(self) -> None:
        if self.sock is not None:
            self.nat.watch(self.fd, False, False, self)
            self.sock.close()
            self.sock = None
        for key in [k for k, v in self.nat.udp_forwarded.items() if v[0] is self]:
            del self.nat.udp_forwarded[key]
