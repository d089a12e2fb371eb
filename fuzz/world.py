"""A live stack for the ``stack`` fuzz target, on the in-memory LAN with a virtual clock.

The victim (192.0.2.1, MAC 02:00:00:00:00:01) has, when the world is built:

* an established TCP connection it opened to a peer's listener (port 80),
  with data exchanged both ways;
* a listener on port 22 with one accepted connection from the peer;
* a DNS query in flight to 192.0.2.53 (a host that takes queries and never
  answers, so the query stays open until its timer);
* a DHCP client on a second interface (another switch): SELECTING in the even
  variants (no server), BOUND to a real server in the odd ones;
* a DNS responder (zone "fuzz", port 53) and a DHCP server on the LAN, so the
  servers' parsers take fuzzed queries too.

``World.inject(data)`` hands one fuzz input to the victim. Its first byte
steers the harness (the rest is the frame):

* bit 0: which interface receives it (0: the LAN, 1: the DHCP network);
* bit 1: adapt the frame to the live state: a TCP segment is moved onto the
  live connection's 4-tuple with seq/ack (and SACK edges) read as offsets from
  rcv_nxt/snd_una,
  a UDP datagram from port 53 goes to the in-flight query's port with its txid
  and source, a datagram to port 68 gets the DHCP client's xid and MAC, and
  an ICMP error quoting TCP is made to quote the live connection;
* bit 2: complete the checksums (IPv4 header and the ICMP/UDP/TCP checksum);
* bits 3-4: virtual time to let pass afterwards (0, 10 ms, 0.5 s, 3 s), so
  timers (retransmission, reassembly, ARP, DNS, DHCP) run with fuzzed state;
* bit 5: the victim sends 3 KiB on its connection first, so the frame meets
  data in flight (and, adapted, ACKs and SACKs it relative to snd_una).

After each input the world is kept alive: a query is re-issued when none is in
flight and the connection re-opened when it ended. ``World.check()`` raises
``InternalError`` when the stack swallowed an exception (the stack counts
``stack.internal_error`` and logs it, so the traceback is caught from the log).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from femtotcp.core.counters import DROP, kind_of
from femtotcp.phy.memory import MemoryDevice, Switch
from femtotcp.phy.pcap import PcapWriter, read_pcap
from femtotcp.runtime import SimLoop
from femtotcp.services import dhcp
from femtotcp.services.dhcp_server import DhcpServer
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import arp, ethernet, ip_bytes, mac_bytes
from femtotcp.wire.checksum import checksum

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns"]
VICTIM_IP = ip_bytes("192.0.2.1")
VICTIM_MAC = mac_bytes("02:00:00:00:00:01")
PEER_IP = ip_bytes("192.0.2.2")
PEER_MAC = mac_bytes("02:00:00:00:00:02")
DNS_IP = ip_bytes("192.0.2.53")
ATTACKER_IP = ip_bytes("192.0.2.254")
ATTACKER_MAC = mac_bytes("02:00:00:00:00:fe")
DHCP_MAC = mac_bytes("02:00:00:00:01:01")
DHCP_SERVER_IP = ip_bytes("198.51.100.1")
MASK32 = 0xFFFFFFFF


class InternalError(Exception):
    """The stack caught an exception of its own while receiving (a bug)."""


class _Catch(logging.Handler):
    """Keeps the last exception the stack logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            import traceback
            self.last = "".join(traceback.format_exception(*record.exc_info))
        else:
            self.last = record.getMessage()


_CATCH = _Catch()
logging.getLogger("femtotcp").addHandler(_CATCH)
logging.getLogger("femtotcp").propagate = False


class _Absorber:
    """A switch port that answers ARP for its address and drops everything else."""

    def __init__(self, switch: Switch, name: str, ip: bytes, mac: bytes) -> None:
        self.port: MemoryDevice = switch.port(name)
        self.ip = ip
        self.mac = mac
        self.port.set_receiver(self._receive)

    def _receive(self, frame: bytes) -> None:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            return
        try:
            req = arp.parse(memoryview(frame)[14:])
        except Exception:  # noqa: BLE001 - not ours to judge
            return
        if req.op == arp.REQUEST and req.tpa == self.ip:
            self.port.send(ethernet.build(req.sha, self.mac, ethernet.ETH_ARP,
                                          arp.build(arp.REPLY, self.mac, self.ip, req.sha,
                                                    req.spa)))


class Live:
    """What the IPv4 and IPv6 worlds share: the victim's own connection to the
    peer's listener on port 80 (re-opened when it ended), the DNS query kept
    in flight, the upkeep after each input, the internal-error check, and the
    TCP segment moved onto the live connection."""

    victim: Stack
    loop: SimLoop
    peer: Stack
    peer_listener: Any
    victim_listener: Any
    conn: Any
    server_conn: Any
    accepted: list[Any]
    queries: int
    internal_errors: int
    #: The query type kept in flight, and the peer address the victim connects to.
    QTYPE = 1

    def peer_addr(self) -> bytes:
        raise NotImplementedError

    def _connect(self) -> None:
        # Fuzzed input may have taken the route away (an RA ending the on-link
        # prefix and the default router): then there is no connection until
        # one comes back, as for a program (ENETUNREACH).
        conn = _call(self.victim.tcp.connect, self.peer_addr(), 80)
        self.conn = conn
        if conn is None:
            self.server_conn = None
            return
        self.loop.run(duration=0.01)
        # The peer's accept queue may also hold connections a fuzzed frame reset
        # since (accept returns them, as Linux does): take ours, abort the others.
        server = None
        while (got := self.peer_listener.accept()) is not None:
            if got.key[2:] == conn.key[:2] and server is None:
                server = got
            else:
                got.abort()
        self.server_conn = server
        if server is not None:
            _call(server.send, b"HTTP/1.1 200 OK\r\n\r\n" + bytes(range(256)) * 4)
            _call(conn.send, b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n")
            self.loop.run(duration=0.01)
            _drain(conn)

    def _query(self) -> None:
        self.queries += 1
        self.victim.resolver.resolve(f"q{self.queries}.fuzz.example", self.QTYPE,
                                     lambda r: None)

    def maintain(self) -> None:
        if not self.victim.resolver.lookups:
            self._query()
        if self.conn is None or self.conn.state != "ESTABLISHED":
            if self.conn is not None and self.conn.state != "CLOSED":
                self.conn.abort()
            self._connect()
        if self.conn is not None:
            _drain(self.conn)
        if self.server_conn is not None:
            _drain(self.server_conn)
        for acc in self.accepted:
            _drain(acc)
        lst = self.victim_listener
        while (extra := lst.accept()) is not None:
            extra.abort()

    def in_flight(self) -> Any:
        for lookup in self.victim.resolver.lookups.values():
            for attempt in lookup.attempts:
                return attempt
        return None

    def send_first(self, ctl: int) -> None:
        """Bit 5 of an input: data in flight when the frame arrives (the
        peer's ACKs come after it)."""
        conn = self.conn
        if ctl & 0x20 and conn is not None and conn.state == "ESTABLISHED" and conn.writable:
            _call(conn.send, _STREAM)

    def after(self, ctl: int) -> None:
        """Bits 3-4 of an input: virtual time to let pass; then the upkeep."""
        self.loop.run(duration=(0.0, 0.01, 0.5, 3.0)[(ctl >> 3) & 3])
        self.check()
        self.maintain()
        self.check()

    def check(self) -> None:
        n = self.victim.counters.get("stack.internal_error", 0)
        if n != self.internal_errors:
            self.internal_errors = n
            raise InternalError(_CATCH.last or "stack.internal_error")

    def onto_conn(self, frame: bytearray, l4: int) -> None:
        """A TCP header at ``l4`` moved onto the live connection: its ports,
        and seq/ack (and SACK edges) read as offsets from rcv_nxt/snd_una."""
        conn = self.conn
        key = conn.key   # (local addr, local port, remote addr, remote port)
        frame[l4:l4 + 2] = key[3].to_bytes(2, "big")
        frame[l4 + 2:l4 + 4] = key[1].to_bytes(2, "big")
        seq = (int.from_bytes(frame[l4 + 4:l4 + 8], "big") + conn.rcv_nxt) & MASK32
        ack = (int.from_bytes(frame[l4 + 8:l4 + 12], "big") + conn.snd_una) & MASK32
        frame[l4 + 4:l4 + 8] = seq.to_bytes(4, "big")
        frame[l4 + 8:l4 + 12] = ack.to_bytes(4, "big")
        _adapt_sack(frame, l4, conn.snd_una)

    def quote_conn(self, frame: bytearray, t: int) -> None:
        """The TCP header quoted in an ICMP error at ``t``: the live
        connection's ports (as the victim sent them), seq from snd_una."""
        key = self.conn.key
        frame[t:t + 2] = key[1].to_bytes(2, "big")
        frame[t + 2:t + 4] = key[3].to_bytes(2, "big")
        seq = (int.from_bytes(frame[t + 4:t + 8], "big") + self.conn.snd_una) & MASK32
        frame[t + 4:t + 8] = seq.to_bytes(4, "big")

    def run(self, data: bytes) -> str | None:
        """One input (``inject``): the names of the drop counters it moved
        (a plain copy before, the kind looked up for the changed names only:
        ``Counters.drops`` on every input cost a quarter of the stack's time)."""
        counters = self.victim.counters
        before = dict(counters)
        self.inject(data)
        moved = sorted(k for k, v in counters.items()
                       if v != before.get(k, 0) and kind_of(k) is DROP)
        return ",".join(moved) or None

    def inject(self, data: bytes) -> None:
        raise NotImplementedError


class World(Live):
    def __init__(self, variant: int = 0, record: bool = False) -> None:
        self.variant = variant
        self.loop = SimLoop()
        self.lan = Switch(self.loop)
        self.dhcp_net = Switch(self.loop)
        self.pcap = io.BytesIO()
        self.writer: PcapWriter | None = None
        self.queries = 0
        victim = self.victim = Stack("victim", modules=MODULES)
        self.if0 = victim.add_interface(self.lan.port("victim"), mac=VICTIM_MAC,
                                        ipv4="192.0.2.1/24")
        self.if1 = victim.add_interface(self.dhcp_net.port("victim-dhcp"), mac=DHCP_MAC)
        if record:
            self.writer = PcapWriter(self.pcap)
            self.writer.attach(self.if0.device)
            self.writer.attach(self.if1.device)
        self.loop.add_stack(victim)
        victim.start()
        self.responder = DnsResponder(victim, zone="fuzz")
        self.responder.add_address("www.fuzz", "192.0.2.80")
        self.responder.add_cname("web.fuzz", "www.fuzz")
        DhcpServer(victim, self.if0, "192.0.2.100", "192.0.2.120", router="192.0.2.1",
                   dns=["192.0.2.1"], lease_time=60, domain="fuzz", search=["fuzz"])
        peer = self.peer = Stack("peer", modules=MODULES)
        peer.add_interface(self.lan.port("peer"), mac=PEER_MAC, ipv4="192.0.2.2/24")
        self.loop.add_stack(peer)
        peer.start()
        dnsd = self.dnsd = Stack("dnsd", modules=["arp", "ipv4", "udp"])
        dnsd.add_interface(self.lan.port("dnsd"), mac=mac_bytes("02:00:00:00:00:53"),
                           ipv4="192.0.2.53/24")
        self.loop.add_stack(dnsd)
        dnsd.start()
        self.silent = dnsd.udp.open(b"\0\0\0\0", 53)   # takes queries, never answers
        self.silent.on_readable = self._swallow
        _Absorber(self.lan, "attacker", ATTACKER_IP, ATTACKER_MAC)
        self.loop.run(duration=0)
        # TCP: the victim's own connection, and one it accepted.
        self.peer_listener = peer.tcp.listen(PEER_IP, 80)
        self.victim_listener = victim.tcp.listen(b"\0\0\0\0", 22)
        self.conn: Any = None
        self.server_conn: Any = None
        self.accepted: list[Any] = []
        self._connect()
        incoming = peer.tcp.connect(VICTIM_IP, 22)
        self.loop.run(duration=0.01)
        got = self.victim_listener.accept()
        if got is not None:
            self.accepted.append(got)
            got.send(b"SSH-2.0-femto\r\n")
            incoming.send(b"SSH-2.0-peer\r\n")
        self.incoming = incoming
        # DNS: a query in flight.
        victim.resolver.set_servers([DNS_IP])
        self._query()
        # DHCP on the second interface.
        if variant & 1:
            server_stack = self.dhcpd = Stack("dhcpd", modules=MODULES[:4])
            server_stack.add_interface(self.dhcp_net.port("dhcpd"),
                                       mac=mac_bytes("02:00:00:00:01:fe"),
                                       ipv4="198.51.100.1/24")
            self.loop.add_stack(server_stack)
            server_stack.start()
            DhcpServer(server_stack, server_stack.interfaces[0], "198.51.100.10",
                       "198.51.100.20", router="198.51.100.1", dns=["198.51.100.1"],
                       lease_time=120, domain="fuzz", search=["fuzz", "lab.fuzz"])
        self.client = dhcp.install(victim, self.if1)
        self.client.probe = False
        self.client.apply_dns = False
        self.client.start()
        self.loop.run(duration=8.0 if variant & 1 else 1.5)
        self._query()
        self.loop.run(duration=0)
        self.internal_errors = 0

    # -- keeping it alive -------------------------------------------------------------
    def _swallow(self) -> None:
        while self.silent.recv() is not None:
            pass

    def peer_addr(self) -> bytes:
        return PEER_IP

    # -- input ---------------------------------------------------------------------------
    def inject(self, data: bytes) -> None:
        if not data:
            return
        ctl = data[0]
        frame = bytearray(data[1:])
        iface = self.if1 if ctl & 1 else self.if0
        self.send_first(ctl)
        if ctl & 2:
            self.adapt(frame, iface is self.if1)
        if ctl & 4:
            fix_checksums(frame)
        self.victim.receive(iface, bytes(frame))
        self.after(ctl)

    def adapt(self, frame: bytearray, dhcp_side: bool) -> None:
        """Move a frame onto the live state (see the module docstring)."""
        ip = _ip_offset(frame)
        if ip is None:
            return
        hlen = (frame[ip] & 0x0F) * 4
        proto = frame[ip + 9]
        l4 = ip + hlen
        if hlen < 20 or len(frame) < l4 + 8:
            return
        if proto == 6 and len(frame) >= l4 + 20 and not dhcp_side:
            conn = self.conn
            if conn is None:
                return
            frame[ip + 16:ip + 20] = VICTIM_IP
            frame[ip + 12:ip + 16] = conn.key[2]
            self.onto_conn(frame, l4)
        elif proto == 1 and frame[l4] in (3, 11, 12) and len(frame) >= l4 + 8 + 28 \
                and not dhcp_side and self.conn is not None:
            inner = l4 + 8
            ihl = (frame[inner] & 0x0F) * 4
            key = self.conn.key
            if ihl < 20 or len(frame) < inner + ihl + 8:
                return
            frame[inner + 9] = 6
            frame[inner + 12:inner + 16] = key[0]
            frame[inner + 16:inner + 20] = key[2]
            self.quote_conn(frame, inner + ihl)
        elif proto == 17:
            sport = int.from_bytes(frame[l4:l4 + 2], "big")
            dport = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
            body = l4 + 8
            if sport == 53 and not dhcp_side:
                attempt = self.in_flight()
                if attempt is None or len(frame) < body + 2:
                    return
                frame[ip + 12:ip + 16] = attempt.server
                frame[l4 + 2:l4 + 4] = attempt.ep.local[1].to_bytes(2, "big")
                frame[body:body + 2] = attempt.txid.to_bytes(2, "big")
            elif dport == 68 and len(frame) >= body + 34:
                frame[body + 4:body + 8] = self.client.xid.to_bytes(4, "big")
                frame[body + 28:body + 34] = DHCP_MAC

    def seeds(self) -> list[bytes]:
        """Every frame the victim sent or received while the world was built
        (written to a pcap and read back), as inputs for both interfaces."""
        if self.writer is None:
            return []
        self.writer.flush()
        out = []
        for _ts, frame in read_pcap(self.pcap.getvalue()):
            out.append(bytes([4]) + frame)          # as captured, checksums completed
            out.append(bytes([5]) + frame)          # the same on the DHCP interface
        return out


_STREAM = bytes(range(256)) * 12


def _call(fn: Any, *args: Any) -> Any:
    """A program's call: an error the stack reports (reset, timeout) is normal here."""
    try:
        return fn(*args)
    except OSError:
        return None


def _drain(conn: Any) -> None:
    for _ in range(64):
        if not conn.readable or not _call(conn.recv):
            return


def _adapt_sack(frame: bytearray, l4: int, base: int) -> None:
    """SACK block edges (RFC 2018) read as offsets from ``base`` too."""
    end = min(len(frame), l4 + ((frame[l4 + 12] >> 4) * 4))
    i = l4 + 20
    while i + 1 < end:
        kind = frame[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        length = frame[i + 1]
        if length < 2 or i + length > end:
            return
        if kind == 5:
            for j in range(i + 2, i + length - 3, 4):
                edge = (int.from_bytes(frame[j:j + 4], "big") + base) & MASK32
                frame[j:j + 4] = edge.to_bytes(4, "big")
        i += length


def _ip_offset(frame: bytearray) -> int | None:
    if len(frame) < 34:
        return None
    et = frame[12:14]
    off = 14
    if et == b"\x81\x00":
        if len(frame) < 38:
            return None
        et = frame[16:18]
        off = 18
    if et != b"\x08\x00" or frame[off] >> 4 != 4:
        return None
    return off


def fix_checksums(frame: bytearray) -> None:
    """Complete the IPv4 header checksum and, for an unfragmented datagram,
    the ICMP/UDP/TCP checksum, over whatever bytes are present."""
    ip = _ip_offset(frame)
    if ip is None:
        return
    hlen = (frame[ip] & 0x0F) * 4
    if hlen < 20 or len(frame) < ip + hlen:
        return
    total = int.from_bytes(frame[ip + 2:ip + 4], "big")
    frame[ip + 10:ip + 12] = b"\0\0"
    frame[ip + 10:ip + 12] = checksum(frame[ip:ip + hlen]).to_bytes(2, "big")
    flags_frag = int.from_bytes(frame[ip + 6:ip + 8], "big")
    if flags_frag & 0x3FFF:
        return
    end = min(len(frame), ip + total) if total >= hlen else len(frame)
    l4 = ip + hlen
    proto = frame[ip + 9]
    n = end - l4
    if proto == 1 and n >= 4:
        frame[l4 + 2:l4 + 4] = b"\0\0"
        frame[l4 + 2:l4 + 4] = checksum(frame[l4:end]).to_bytes(2, "big")
    elif proto in (6, 17):
        at = l4 + (16 if proto == 6 else 6)
        if at + 2 > end:
            return
        if proto == 17:
            ulen = int.from_bytes(frame[l4 + 4:l4 + 6], "big")
            if 8 <= ulen <= n:
                end, n = l4 + ulen, ulen
        frame[at:at + 2] = b"\0\0"
        pseudo = bytes(frame[ip + 12:ip + 20]) + bytes((0, proto)) + n.to_bytes(2, "big")
        csum = checksum(pseudo + bytes(frame[l4:end]))
        if proto == 17 and csum == 0:
            csum = 0xFFFF
        frame[at:at + 2] = csum.to_bytes(2, "big")


W = TypeVar("W", bound=Live)
#: Inputs one world takes before it is rebuilt (its state fresh again).
REBUILD_EVERY = 5000


class Keeper(Generic[W]):
    """The one world a target feeds, rebuilt every ``REBUILD_EVERY`` inputs
    (``build`` gets how many were built before)."""

    def __init__(self, build: Callable[[int], W]) -> None:
        self.build = build
        self.world: W | None = None
        self.uses = 0
        self.built = 0

    def current(self) -> W:
        if self.world is None:
            self.prepare()
        assert self.world is not None
        return self.world

    def prepare(self) -> None:
        """Count one input; build a fresh world when due (outside the timed part)."""
        if self.world is None or self.uses >= REBUILD_EVERY:
            self.world = None
            self.world = self.build(self.built)
            self.built += 1
            self.uses = 0
        self.uses += 1

    def reset(self) -> W:
        """A fresh world now (regression tests)."""
        self.world = None
        self.uses = REBUILD_EVERY
        self.prepare()
        return self.current()


_KEEPER = Keeper(lambda built: World(built & 1))
#: The world the ``stack`` target feeds, the input counter, a fresh world.
current, prepare, reset = _KEEPER.current, _KEEPER.prepare, _KEEPER.reset
