"""The negotiated options of a connection (MSS, window scale, timestamps, SACK)
and the computations behind them, shared by connections and the stateless SYN
cookie path.

MSS: ours comes from the route's MTU (RFC 9293 3.7.1, RFC 6691), the peer's
from its SYN (536 or 1220 bytes when absent, RFC 9293 3.7.1 / RFC 8200 5); a
Path MTU report lowers both (RFC 1191, RFC 8201). Window scale: the smallest
shift that lets the largest receive buffer be offered (RFC 7323 2.3), used only
when both sides offer it. Timestamps (RFC 7323 3) run at 1 kHz from a
per-connection offset (RFC 6528's secret-keyed ``IsnGenerator.ts_offset``).
"""

from __future__ import annotations

import struct

from femtotcp.proto.tcp.seq import MASK
from femtotcp.wire.tcp import MAX_WSCALE, TcpOptions, build_options

#: The timestamp option as sent on every segment: NOP NOP TS(10), 12 bytes.
TS_LEN = 12
#: The smallest MSS we offer (Linux's TCP_MIN_MSS).
MIN_ADV_MSS = 88
#: The largest MSS an IPv4 packet can carry.
MAX_ADV_MSS = 65495


def ip_overhead(v4: bool) -> int:
    """IP + TCP header bytes without options."""
    return 40 if v4 else 60


def route_mss(mtu: int, v4: bool, maxseg: int = 0) -> int:
    """The MSS we offer on a route of ``mtu`` (TCP_MAXSEG ``maxseg`` lowers it)."""
    mss = max(mtu - ip_overhead(v4), MIN_ADV_MSS)
    if maxseg:
        mss = min(mss, max(maxseg, MIN_ADV_MSS))
    return min(mss, MAX_ADV_MSS)


def pmtu_mss(mtu: int, v4: bool) -> int:
    """The MSS for a Path MTU report, never below the smallest path MTU the
    route takes (552 for IPv4, Linux's ip_rt_min_pmtu; 1280 for IPv6)."""
    return max(mtu, 552 if v4 else 1280) - ip_overhead(v4)


def default_peer_mss(v4: bool) -> int:
    """The peer's MSS when its SYN carries none (RFC 9293 3.7.1, RFC 8200 5)."""
    return 536 if v4 else 1220


def wscale_for(biggest: int) -> int:
    """RFC 7323 2.3: the smallest shift that lets ``biggest`` bytes be offered."""
    ws = biggest.bit_length() - 16      # biggest >> ws <= 0xFFFF
    return 0 if ws < 0 else (ws if ws < MAX_WSCALE else MAX_WSCALE)


def tsval(now: float, offset: int) -> int:
    """Our timestamp clock: milliseconds plus the connection's offset, 32-bit."""
    return (int(now * 1000) + offset) & MASK


_TS_PAIR = struct.Struct("!II")
#: SYN option templates: (bytes with zero timestamps, where TSval starts or -1).
_SYN_TEMPLATES: dict[tuple[int, int | None, bool, bool], tuple[bytes, int]] = {}


def _syn_template(mss: int, wscale: int | None, sack: bool, ts: bool) -> tuple[bytes, int]:
    raw = build_options(mss=mss, wscale=wscale, sack_perm=sack,
                        ts=(0, 0) if ts else None)
    at = -1
    if ts:
        marked = build_options(mss=mss, wscale=wscale, sack_perm=sack,
                               ts=(0xFFFFFFFF, 0xFFFFFFFF))
        at = next(i for i in range(len(raw)) if raw[i] != marked[i])
    if len(_SYN_TEMPLATES) < 256:      # a few (MSS, scale) pairs in practice
        _SYN_TEMPLATES[(mss, wscale, sack, ts)] = (raw, at)
    return raw, at


def syn_option_bytes(mss: int, wscale: int | None, sack: bool, ts_val: int | None,
                     ts_ecr: int = 0) -> bytes:
    """The options of a SYN or SYN-ACK, ``build_options(mss=mss, wscale=wscale,
    sack_perm=sack, ts=(ts_val, ts_ecr) or None)``'s bytes, from a template per
    (MSS, window scale, SACK, timestamps) with the timestamp values put in:
    a connection's and a SYN cookie's alike."""
    key = (mss, wscale, sack, ts_val is not None)
    tmpl = _SYN_TEMPLATES.get(key)
    if tmpl is None:
        tmpl = _syn_template(*key)
    raw, at = tmpl
    if ts_val is None:
        return raw
    return raw[:at] + _TS_PAIR.pack(ts_val & MASK, ts_ecr & MASK) + raw[at + 8:]


class Negotiated:
    """What we offer and what the handshake settled. ``mss`` is the payload of
    a full segment we send (the peer's MSS less the timestamp option)."""

    __slots__ = ("adv_mss", "peer_mss", "mss_base", "mss", "snd_wscale", "rcv_wscale",
                 "ts_ok", "sack_ok", "ts_recent", "ts_recent_stamp", "ts_offset",
                 "offer_ts", "offer_sack", "offer_ws")

    def __init__(self, offer_ts: bool, offer_sack: bool, offer_ws: bool, ts_offset: int) -> None:
        self.adv_mss = 536
        self.peer_mss = 536
        self.mss_base = 536
        self.mss = 536
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        self.ts_recent_stamp = 0.0
        self.ts_offset = ts_offset
        self.offer_ts = offer_ts
        self.offer_sack = offer_sack
        self.offer_ws = offer_ws

    def offer(self, mtu: int, v4: bool, maxseg: int, rcvbuf: int, rcvbuf_max: int) -> None:
        """Before our SYN or SYN-ACK: the MSS and window scale we offer."""
        self.adv_mss = route_mss(mtu, v4, maxseg)
        self.rcv_wscale = wscale_for(max(rcvbuf, rcvbuf_max)) if self.offer_ws else 0

    def tsval(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & MASK

    def syn_options(self, now: float, synack: bool) -> bytes:
        """The options of our SYN or SYN-ACK (``syn_option_bytes``)."""
        return syn_option_bytes(self.adv_mss, self.rcv_wscale if self.offer_ws else None,
                                self.offer_sack,
                                tsval(now, self.ts_offset) if self.offer_ts else None,
                                self.ts_recent if synack else 0)

    def negotiate(self, opts: TcpOptions, v4: bool, min_snd_mss: int, now: float) -> None:
        """Settle the options from the peer's SYN (or SYN-ACK); the caller then
        sets the MSS base (``set_mss_base``)."""
        peer = opts.mss or default_peer_mss(v4)
        if peer < min_snd_mss:
            peer = min_snd_mss
        self.peer_mss = peer
        if opts.wscale is not None and self.offer_ws:
            self.snd_wscale = opts.wscale
        else:
            self.offer_ws = False
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = self.offer_sack and opts.sack_perm
        self.offer_sack = self.sack_ok
        if self.offer_ts and opts.ts_val is not None:
            self.ts_ok = True
            self.ts_recent = opts.ts_val
            self.ts_recent_stamp = now
        else:
            self.ts_ok = False
            self.offer_ts = False

    def set_mss_base(self, base: int) -> None:
        self.mss_base = base
        mss = base - TS_LEN if self.ts_ok else base
        self.mss = mss if mss > 8 else 8

    def rcv_mss_limit(self) -> int:
        """The largest payload the peer may send us (our MSS less the timestamp)."""
        return self.adv_mss - TS_LEN if self.ts_ok else self.adv_mss
