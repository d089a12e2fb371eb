"""SYN floods: stateless cookie SYN-ACKs, and an early path that answers a bare
SYN without running the whole receive path.

Under a full-rate flood (hping3 offers some 160,000 SYNs a second to a TAP)
the stack loses most frames in the TAP's queue before it reads them, so a
legitimate SYN gets in only in proportion to how fast the stack reads. The
full path (Ethernet, IPv4 and TCP parsing into objects, the listener, the
cookie) costs several times what a SYN needs, so while a listener answers
with cookies (its SYN queue is full) the TCP layer *arms* this guard, which
the stack's receivers consult before ``Stack.receive``
(``Stack.early_input``):

- a frame that is not an untagged IPv4/TCP segment without IP options, with
  only SYN (or only RST) among SYN/ACK/RST/FIN, to an armed port, returns
  False at once: the stack takes it as usual (ACKs that complete cookies,
  established connections, ICMP, ARP: all of it);
- a candidate is checked as the full path would (MAC, IPv4 lengths and
  header checksum, fragments, source and destination addresses, TCP offset and
  checksum unless the device vouched for it, no connection on its 4-tuple, a
  listener whose SYN queue is full); anything the full path would treat
  differently goes to the full path (returns False);
- a SYN is answered with the cookie SYN-ACK the full path would send (the
  same bytes: both call ``send_cookie``); a RST for no connection to a
  listener is taken and dropped, as the full path does (RFC 9293 3.10.7.2).

Counters: the full path's (``ipv4.rx``, ``tcp.no_connection``,
``tcp.syncookies_sent``) plus ``tcp.early_syn`` and ``tcp.early_rst``. The
guard disarms itself when a candidate's listener no longer needs cookies,
and a timer disarms it after two cookie periods without one.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from femtotcp.proto.tcp.isn import COOKIE_PERIOD, encode_ts_options
from femtotcp.proto.tcp.options import (
    default_peer_mss,
    route_mss,
    syn_option_bytes,
    tsval,
    wscale_for,
)
from femtotcp.wire import tcp as wire

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.proto.tcp.layer import Tcp
    from femtotcp.proto.tcp.listener import TcpListener
    from femtotcp.stack.interface import Interface

log = logging.getLogger("femtotcp.tcp.synguard")

_ANY4 = b"\x00" * 4
_ETH_IPV4 = b"\x08\x00"
_SYN = wire.SYN
_RST = wire.RST
_CTL = wire.SYN | wire.ACK | wire.RST | wire.FIN
_SYN_ACK = wire.SYN | wire.ACK
#: Seconds a listener keeps answering with cookies after its SYN queue was full.
PRESSURE_HOLD = 1.0

_HDR = struct.Struct("!HHIIHHHH")
#: What the early path reads of an untagged IPv4 frame (no IP options): MACs,
#: total length, flags/fragment offset, addresses, source port, sequence
#: number, data offset (the destination port and flags were looked at first).
_EARLY = struct.Struct("!6s6s4xH2xH4x4s4sH2xI4xB")


def synack(peer: bytes, ours: bytes, lport: int, rport: int, seq: int, ack: int,
           window: int, options: bytes) -> bytes:
    """The SYN-ACK segment ``wire.tcp.build`` would make, in one pack: the
    checksum is the sum of the fields modulo 0xFFFF (2**16 = 1 there, so a
    32-bit field or the addresses' bytes read as one number add up as their
    16-bit words do; options are padded to a multiple of 4)."""
    hlen = 20 + len(options)
    off_flags = (hlen << 10) | _SYN_ACK
    value = (int.from_bytes(ours + peer, "big") + wire.PROTO + hlen + lport + rport + seq
             + ack + off_flags + window + int.from_bytes(options, "big")) % 0xFFFF
    return _HDR.pack(lport, rport, seq, ack, off_flags, window,
                     (0xFFFF - value) % 0xFFFF, 0) + options


class SynGuard:
    """The cookie SYN-ACK of one TCP layer, and its early path (see the module doc)."""

    def __init__(self, tcp: Tcp) -> None:
        self.tcp = tcp
        self.stack = tcp.stack
        #: Ports of listeners that answered with a cookie (while armed).
        self.ports: set[int] = set()
        self.last_cookie = -1e18
        self._timer: Timer | None = None

    # -- the cookie SYN-ACK (both paths) ----------------------------------------------
    def send_cookie(self, lst: TcpListener, src: bytes, dst: bytes, rport: int, lport: int,
                    peer_isn: int, opts: wire.TcpOptions, now: float) -> None:
        """A stateless SYN-ACK whose ISN encodes what we must remember
        (``isn.SynCookies``); window scale and SACK ride in the TSval."""
        tcp = self.tcp
        cfg = tcp.config
        stack = self.stack
        v4 = len(src) == 4
        inherited = lst.options            # what was set on the listener (setsockopt)
        our_mss = route_mss(stack.route_mtu(src), v4, inherited.get("maxseg", 0))
        peer_mss = opts.mss or default_peer_mss(v4)
        isn, _ = tcp.cookies.make(now, dst, lport, src, rport, peer_isn,
                                  min(peer_mss, our_mss))
        rcvbuf = inherited.get("rcvbuf", cfg.rcvbuf)
        ws = None
        ts_val = None
        sack = False
        if opts.ts_val is not None and cfg.timestamps:
            peer_ws = opts.wscale if cfg.window_scaling else None
            sack = opts.sack_perm and cfg.sack
            if peer_ws is not None:
                ws = wscale_for(max(rcvbuf, cfg.rcvbuf_max))
            offset = tcp.isn.ts_offset(dst, lport, src, rport)
            ts_val = encode_ts_options(tsval(now, offset), peer_ws, sack)
        options = syn_option_bytes(our_mss, ws, sack, ts_val, opts.ts_val or 0)
        seg = synack(src, dst, lport, rport, isn, (peer_isn + 1) & 0xFFFFFFFF,
                     min(rcvbuf, 0xFFFF), options)
        lst.cookie_time = now
        tcp.counters["tcp.syncookies_sent"] += 1
        self.ports.add(lport)
        self.last_cookie = now
        if stack.early_input is None:
            self._arm(now)
        tcp._reply(src, dst, seg, False, lst)     # over IPv6 with the flow label, hops, class

    def want_cookie(self, lst: TcpListener, now: float) -> bool:
        """Answer a SYN to ``lst`` statelessly: its SYN queue is full, or was
        within the last ``PRESSURE_HOLD`` seconds (under a flood whose SYN-ACKs
        earn RSTs the queue drains and refills at once; each half-open
        connection costs far more than a cookie). Without cookies (the
        ``syncookies`` switch) this is only "the queue is full"."""
        if len(lst.syn_queue) >= self.tcp.config.max_syn_backlog:
            lst.pressure_time = now
            return True
        return now - lst.pressure_time < PRESSURE_HOLD and self.tcp.config.syncookies

    # -- arming ---------------------------------------------------------------------
    def _arm(self, now: float) -> None:
        stack = self.stack
        ipv4 = stack.ipv4
        # Only when the stack's own IPv4 and TCP input would take the frame (a
        # gateway or test that replaced a handler keeps the full path).
        if ipv4 is None or stack.ethertypes.get(0x0800) != ipv4.input or \
                stack.ip_protocols.get(wire.PROTO) != self.tcp.input:
            return
        stack.early_input = self.input
        if self._timer is None:
            self._timer = stack.timers.call_at(now + 2 * COOKIE_PERIOD, self._expire)

    def disarm(self) -> None:
        if self.stack.early_input == self.input:
            self.stack.early_input = None
        self.ports.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        now = self.stack.now
        if now - self.last_cookie >= 2 * COOKIE_PERIOD:
            self.disarm()
        else:
            self._timer = self.stack.timers.call_at(self.last_cookie + 2 * COOKIE_PERIOD,
                                                    self._expire)

    # -- the early path -------------------------------------------------------------
    def input(self, iface: Interface, frame: bytes | memoryview, csum_ok: bool) -> bool:
        """True when the frame was taken here (answered or dropped, counted);
        False: hand it to ``Stack.receive`` unchanged. Never raises (as
        ``Stack.receive``: a bug is counted as ``stack.internal_error``)."""
        try:
            return self._input(iface, frame, csum_ok)
        except Exception:
            self.stack.counters["stack.internal_error"] += 1
            log.exception("internal error on the early SYN path (%s)", iface.name)
            return True

    def _input(self, iface: Interface, frame: bytes | memoryview, csum_ok: bool) -> bool:
        if type(frame) is not bytes:
            return False
        n = len(frame)
        if n < 54 or frame[23] != 6 or frame[14] != 0x45 or frame[12:14] != _ETH_IPV4:
            return False
        flags = frame[47]
        ctl = flags & _CTL
        if ctl != _SYN and ctl & (_RST | _SYN) != _RST:
            return False
        lport = (frame[36] << 8) | frame[37]
        if lport not in self.ports:
            return False
        stack = self.stack
        (dmac, smac, total, frag, src, dst, rport, seq, off) = _EARLY.unpack_from(frame)
        if dmac != iface.mac or iface.vlan is not None or smac == dmac or \
                n > iface.mtu + 18:
            return False
        if total < 40 or total + 14 > n or frag & 0x3FFF:
            return False                              # short, or a fragment
        if int.from_bytes(frame[14:34], "big") % 0xFFFF:
            return False                              # bad header checksum: counted there
        local = stack.local_addresses
        if dst not in local or src in local or src[0] >= 224 or src[0] == 127 or \
                src == _ANY4 or src in stack.broadcast_addresses:
            return False
        slen = total - 20
        hlen = (off >> 4) << 2
        if hlen < 20 or hlen > slen:
            return False
        if not csum_ok:
            value = int.from_bytes(frame[34:14 + total], "big")
            if slen & 1:
                value <<= 8
            if (value + int.from_bytes(frame[26:34], "big") + 6 + slen) % 0xFFFF:
                return False                          # bad checksum: counted there
        tcp = self.tcp
        if (dst, lport, src, rport) in tcp._conns:
            return False
        listeners = tcp._listeners
        lst = listeners.get((dst, lport)) or listeners.get((_ANY4, lport)) or \
            tcp._dual_listener(lport)
        if lst is None:
            return False
        if tcp._listener_groups:
            lst = tcp._group_pick(lst, src, rport)
        counters = stack.counters
        if ctl != _SYN:
            # RFC 9293 3.10.7.2: in LISTEN a RST is ignored (the full path's drop).
            counters["ipv4.rx"] += 1
            counters["tcp.no_connection"] += 1
            counters["tcp.early_rst"] += 1
            return True
        cfg = tcp.config
        if not cfg.syncookies or lst.accept_full() or \
                not self.want_cookie(lst, stack.clock()):
            self.ports.discard(lport)                 # no longer under pressure here
            if not self.ports:
                self.disarm()
            return False
        if hlen > 20:
            opts = wire.parse_options(frame[54:34 + hlen])
            if opts.bad:
                return False                          # counted by the full path
        else:
            opts = wire.NO_OPTIONS
        counters["ipv4.rx"] += 1
        counters["tcp.no_connection"] += 1
        counters["tcp.early_syn"] += 1
        self.send_cookie(lst, src, dst, rport, lport, seq, opts, stack.clock())
        return True


__all__ = ["SynGuard"]
