"""A live IPv6 stack for the ``stack6`` fuzz target, on the in-memory LAN with a
virtual clock.

The victim (MAC 02:00:00:00:00:01, also 192.0.2.1 so dual-stack code runs)
has, when the world is built:

* a link-local address, a SLAAC global one and an RFC 8981 temporary one
  under 2001:db8:1::/64, learnt from a router's RA (which also gave a default
  route, a link MTU and an RDNSS server), all past DAD;
* an established TCP connection over IPv6 it opened to a peer's listener
  (port 80), with data exchanged both ways;
* a listener on [::]:22 with one accepted IPv6 connection from the peer;
* a UDP socket on [::]:5000;
* a pending neighbour resolution (INCOMPLETE, a datagram waiting) for an
  on-link address nobody holds;
* an IPv6 reassembly in progress (a first fragment from the peer whose rest
  never comes);
* a DNS AAAA query in flight to 2001:db8:1::53 (the router's port answers
  neighbour solicitations for it and drops the queries, so the query stays
  open until its timer).

``World6.inject(data)`` hands one fuzz input to the victim; its first byte
steers the harness, the rest is the Ethernet frame:

* bit 0: complete the IPv6 payload length (to the bytes present);
* bit 1: adapt the frame to the live state: a TCP segment is moved onto the
  live connection (seq/ack and SACK edges read as offsets from
  rcv_nxt/snd_una), a UDP datagram from port 53 onto the query in flight
  (server, port, txid), an ICMPv6 error made to quote the live connection,
  a Fragment header joined to the reassembly in progress, an NS made to ask
  for one of our addresses and an NA made to answer the pending resolution;
* bit 2: complete the ICMPv6/UDP/TCP checksum (an unfragmented packet, found
  past its extension headers);
* bits 3-4: virtual time to let pass afterwards (0, 10 ms, 0.5 s, 3 s), so
  timers (retransmission, NUD, DAD, reassembly, DNS, MLD) run with fuzzed state;
* bit 5: the victim sends 3 KiB on its connection first (data in flight);
* bits 6-7: rewrite the addresses (none; the peer's global to our global;
  the router's link-local to our link-local; the router's link-local to
  all-nodes), with the destination MAC to match.

After each input the world is kept alive: the query re-issued, the
connection re-opened, the pending resolution and the reassembly restarted
when they ended. ``World6.check()`` raises ``InternalError`` when the stack
swallowed an exception of its own.
"""

from __future__ import annotations

import io
from typing import Any

from femtotcp.phy.memory import MemoryDevice, Switch
from femtotcp.phy.pcap import PcapWriter, read_pcap
from femtotcp.runtime import SimLoop
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import Malformed, ethernet, icmp6, ip_bytes, ipv6, ipv6ext, mac_bytes, ndp
from fuzz.world import InternalError, Keeper, Live, _call

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns", "ipv6", "icmp6"]
VICTIM_MAC = mac_bytes("02:00:00:00:00:01")
PEER_MAC = mac_bytes("02:00:00:00:00:02")
ROUTER_MAC = mac_bytes("02:00:00:00:00:fe")
ROUTER_LL = ip_bytes("fe80::fe")
PREFIX = ip_bytes("2001:db8:1::")
DNS6 = ip_bytes("2001:db8:1::53")
NOBODY = ip_bytes("2001:db8:1::dead:0")  # on-link, never answers: resolution pending
REASM_ID = 0x0F0F0F0F
UDP_PORT = 5000
MASK32 = 0xFFFFFFFF
_ALL_NODES_MAC = ipv6.multicast_mac(ipv6.ALL_NODES)

__all__ = ["InternalError", "World6", "current", "prepare", "reset"]


class _Router:
    """A switch port standing for the router (fe80::fe) and the DNS server
    (2001:db8:1::53): it answers neighbour solicitations for both and drops
    everything else."""

    def __init__(self, switch: Switch) -> None:
        self.port: MemoryDevice = switch.port("router")
        self.addrs = {ROUTER_LL, DNS6}
        self.port.set_receiver(self._receive)

    def _receive(self, frame: bytes) -> None:
        if len(frame) < 14 + 40 + 24 or frame[12:14] != b"\x86\xdd" or frame[20] != 58:
            return
        try:
            hdr, payload = ipv6.parse(memoryview(frame)[14:])
            icmp, body = icmp6.parse(payload, hdr.src, hdr.dst)
            msg = ndp.parse(icmp, body, hdr.src, hdr.dst, hdr.hop_limit)
        except Malformed:
            return
        if not isinstance(msg, ndp.NeighborSolicitation) or msg.target not in self.addrs \
                or hdr.src == ipv6.UNSPECIFIED:
            return
        na = ndp.build_na(msg.target, hdr.src, msg.target, router=msg.target == ROUTER_LL,
                          solicited=True,
                          target_lladdr=ROUTER_MAC)
        self.port.send(ethernet.build(frame[6:12], ROUTER_MAC, ethernet.ETH_IPV6,
                                      ipv6.build(msg.target, hdr.src, ipv6.PROTO_ICMP6, na,
                                                 hop_limit=255)))


def ra_frame() -> bytes:
    opts = (ndp.opt_source_lladdr(ROUTER_MAC) + ndp.opt_prefix(PREFIX, 64, 86400, 14400)
            + ndp.opt_mtu(1500) + ndp.opt_rdnss(600, [DNS6])
            + ndp.opt_dnssl(600, ["fuzz"]))
    msg = ndp.build_ra(ROUTER_LL, ipv6.ALL_NODES, router_lifetime=1800, options=opts)
    return ethernet.build(_ALL_NODES_MAC, ROUTER_MAC, ethernet.ETH_IPV6,
                          ipv6.build(ROUTER_LL, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, msg,
                                     hop_limit=255))


def _addr(stack: Stack, origin: str) -> bytes:
    for a in stack.interfaces[0].ipv6:
        if a.origin == origin and a.state == "preferred":
            return a.addr
    raise RuntimeError(f"{stack.name}: no usable {origin} IPv6 address")


class World6(Live):
    QTYPE = 28      # AAAA

    def __init__(self, record: bool = False) -> None:
        self.loop = SimLoop()
        self.lan = Switch(self.loop)
        self.pcap = io.BytesIO()
        self.writer: PcapWriter | None = None
        self.queries = 0
        self.nobody = NOBODY
        # RFC 8981 temporary addresses too (off by default), so prefixes reach them.
        victim = self.victim = Stack("victim6", modules=MODULES,
                                     config=StackConfig(ipv6_temporary=True))
        self.if0 = victim.add_interface(self.lan.port("victim"), mac=VICTIM_MAC,
                                        ipv4="192.0.2.1/24")
        if record:
            self.writer = PcapWriter(self.pcap)
            self.writer.attach(self.if0.device)
        self.loop.add_stack(victim)
        peer = self.peer = Stack("peer6", modules=MODULES)
        peer.add_interface(self.lan.port("peer"), mac=PEER_MAC, ipv4="192.0.2.2/24")
        self.loop.add_stack(peer)
        self.router = _Router(self.lan)
        victim.start()
        peer.start()
        self.loop.run(duration=3.0)            # DAD of the link-local addresses
        self.router.port.send(ra_frame())
        self.loop.run(duration=3.0)            # SLAAC and its DAD
        self.victim_ll = _addr(victim, "link")
        self.victim_g = _addr(victim, "slaac")
        self.peer_ll = _addr(peer, "link")
        self.peer_g = _addr(peer, "slaac")
        # TCP over IPv6: the victim's own connection, and one it accepted.
        self.peer_listener = peer.tcp.listen(self.peer_g, 80)
        self.victim_listener = victim.tcp.listen(bytes(16), 22)
        self.conn: Any = None
        self.server_conn: Any = None
        self.accepted: list[Any] = []
        self._connect()
        incoming = self.incoming = peer.tcp.connect(self.victim_g, 22)
        self.loop.run(duration=0.01)
        got = self.victim_listener.accept()
        if got is not None:
            self.accepted.append(got)
            got.send(b"SSH-2.0-femto\r\n")
            incoming.send(b"SSH-2.0-peer\r\n")
        # UDP over IPv6.
        self.udp = victim.udp.open(bytes(16), UDP_PORT)
        self.udp.on_readable = self._swallow
        # DNS: an AAAA query in flight.
        victim.resolver.set_servers([DNS6])
        self._query()
        self.loop.run(duration=0.01)
        self._resolve_nobody()
        self._fragment()
        self.loop.run(duration=0)
        self.internal_errors = 0

    # -- keeping it alive -------------------------------------------------------------
    def _swallow(self) -> None:
        while self.udp.recv() is not None:
            pass

    def peer_addr(self) -> bytes:
        return self.peer_g

    def _resolve_nobody(self) -> None:
        """A datagram to an on-link address nobody holds: the neighbour entry
        stays INCOMPLETE (its packet waiting) for three solicitations. Once
        it ended (failed, or resolved by a fuzzed NA), the next address."""
        if not self._pending():
            n = int.from_bytes(self.nobody[12:], "big") + 1
            self.nobody = self.nobody[:12] + (n & 0xFFFFFFFF).to_bytes(4, "big")
        _call(self.udp.sendto, b"anyone?", self.nobody, 9)

    def _pending(self) -> bool:
        cache = self.victim.ipv6.ndp.caches.get(self.if0, {})
        n = cache.get(self.nobody)
        return n is not None and n.state == "INCOMPLETE"

    def _fragment(self) -> None:
        """The first fragment of a datagram whose rest never comes."""
        body = ipv6ext.build_fragment(ipv6.PROTO_UDP, 0, True, REASM_ID) + bytes(8) + b"x" * 64
        self.victim.receive(self.if0, ethernet.build(
            VICTIM_MAC, PEER_MAC, ethernet.ETH_IPV6,
            ipv6.build(self.peer_g, self.victim_g, ipv6.PROTO_FRAGMENT, body)))

    def maintain(self) -> None:
        super().maintain()
        if not self._pending():
            self._resolve_nobody()
        if not self.victim.ipv6.reassembly.datagrams:
            self._fragment()

    # -- input ---------------------------------------------------------------------------
    def inject(self, data: bytes) -> None:
        if not data:
            return
        ctl = data[0]
        frame = bytearray(data[1:])
        self.send_first(ctl)
        if ctl >> 6:
            self.readdress(frame, ctl >> 6)
        if ctl & 2:
            self.adapt(frame)
        if ctl & 1:
            fix_payload_len(frame)
        if ctl & 4:
            fix_checksums(frame)
        self.victim.receive(self.if0, bytes(frame))
        self.after(ctl)

    def readdress(self, frame: bytearray, how: int) -> None:
        if _ip6_offset(frame) is None:
            return
        if how == 1:
            src, dst, mac = self.peer_g, self.victim_g, VICTIM_MAC
        elif how == 2:
            src, dst, mac = ROUTER_LL, self.victim_ll, VICTIM_MAC
        else:
            src, dst, mac = ROUTER_LL, ipv6.ALL_NODES, _ALL_NODES_MAC
        frame[0:6] = mac
        frame[22:38] = src
        frame[38:54] = dst

    def adapt(self, frame: bytearray) -> None:
        """Move a frame onto the live state (see the module docstring)."""
        if _ip6_offset(frame) is None:
            return
        headers, upper, l4 = _chain(frame)
        for nh, at in headers:
            if nh == ipv6.PROTO_FRAGMENT and at + 8 <= len(frame):
                # Join the reassembly in progress (its addresses and identification).
                frame[22:38] = self.peer_g
                frame[38:54] = self.victim_g
                frame[at + 4:at + 8] = REASM_ID.to_bytes(4, "big")
                return
        if l4 is None:
            return
        conn = self.conn
        if upper == 6 and len(frame) >= l4 + 20 and conn is not None:
            frame[22:38] = conn.key[2]
            frame[38:54] = conn.key[0]
            self.onto_conn(frame, l4)
        elif upper == 17 and len(frame) >= l4 + 10:
            if int.from_bytes(frame[l4:l4 + 2], "big") != 53:
                return
            attempt = self.in_flight()
            if attempt is None:
                return
            frame[22:38] = attempt.server
            frame[38:54] = self.victim_g
            frame[l4 + 2:l4 + 4] = attempt.ep.local[1].to_bytes(2, "big")
            frame[l4 + 8:l4 + 10] = attempt.txid.to_bytes(2, "big")
        elif upper == 58 and len(frame) >= l4 + 8:
            t = frame[l4]
            if t < 128 and len(frame) >= l4 + 8 + 40 + 8 and conn is not None:
                self._adapt_quote(frame, l4 + 8)
            elif t == ndp.NEIGHBOR_SOLICITATION and len(frame) >= l4 + 24:
                frame[l4 + 8:l4 + 24] = self.victim_g if frame[l4 + 8] & 1 else self.victim_ll
            elif t == ndp.NEIGHBOR_ADVERTISEMENT and len(frame) >= l4 + 24:
                frame[l4 + 8:l4 + 24] = self.nobody

    def _adapt_quote(self, frame: bytearray, q: int) -> None:
        """An ICMPv6 error's quote made to be about the live connection."""
        key = self.conn.key
        frame[q] = 0x60 | frame[q] & 0x0F
        frame[q + 6] = 6
        frame[q + 8:q + 24] = key[0]
        frame[q + 24:q + 40] = key[2]
        self.quote_conn(frame, q + 40)
        frame[22:38] = self.peer_g if frame[22] & 1 else ROUTER_LL
        frame[38:54] = key[0]

    def seeds(self) -> list[bytes]:
        """Every frame the victim sent or received while the world was built
        (written to a pcap and read back), checksums completed."""
        if self.writer is None:
            return []
        self.writer.flush()
        return [bytes([4]) + frame for _ts, frame in read_pcap(self.pcap.getvalue())]


def _ip6_offset(frame: bytearray) -> int | None:
    """14 when the frame is untagged IPv6 with a whole fixed header, else None."""
    if len(frame) < 54 or frame[12:14] != b"\x86\xdd":
        return None
    return 14


def _chain(frame: bytearray) -> tuple[list[tuple[int, int]], int, int | None]:
    """The extension headers by lengths alone (bounded): [(next header, frame
    offset)], the upper-layer protocol and its offset (None when cut short)."""
    end = min(len(frame), 54 + int.from_bytes(frame[18:20], "big"))
    nh = frame[20]
    pos = 54
    headers: list[tuple[int, int]] = []
    for _ in range(ipv6ext.MAX_HEADERS):
        if nh not in ipv6ext.EXT_HEADERS:
            return headers, nh, pos if pos <= end else None
        if pos + 8 > end:
            return headers, nh, None
        headers.append((nh, pos))
        length = 8 if nh == ipv6.PROTO_FRAGMENT else (frame[pos + 1] + 1) * 8
        nh = frame[pos]
        pos += length
    return headers, nh, None


def fix_payload_len(frame: bytearray) -> None:
    if _ip6_offset(frame) is not None:
        frame[18:20] = min(0xFFFF, len(frame) - 54).to_bytes(2, "big")


def fix_checksums(frame: bytearray) -> None:
    """Complete the ICMPv6/UDP/TCP checksum of an unfragmented packet over the
    bytes its payload length covers (those present)."""
    if _ip6_offset(frame) is None:
        return
    headers, upper, l4 = _chain(frame)
    if l4 is None or any(nh == ipv6.PROTO_FRAGMENT for nh, _ in headers):
        return
    end = min(len(frame), 54 + int.from_bytes(frame[18:20], "big"))
    at = {58: 2, 17: 6, 6: 16}.get(upper)
    if at is None or l4 + at + 2 > end:
        return
    if upper == 17:
        ulen = int.from_bytes(frame[l4 + 4:l4 + 6], "big")
        if 8 <= ulen <= end - l4:
            end = l4 + ulen
    frame[l4 + at:l4 + at + 2] = b"\0\0"
    csum = ipv6.upper_checksum(bytes(frame[22:38]), bytes(frame[38:54]), upper, frame[l4:end])
    if upper == 17 and csum == 0:
        csum = 0xFFFF
    frame[l4 + at:l4 + at + 2] = csum.to_bytes(2, "big")


_KEEPER = Keeper(lambda built: World6())
#: The world the ``stack6`` target feeds, the input counter, a fresh world.
current, prepare, reset = _KEEPER.current, _KEEPER.prepare, _KEEPER.reset
