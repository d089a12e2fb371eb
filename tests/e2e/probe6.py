"""Differential prober for IPv6: probe.py's design (and machinery) for RFC 8200,
4443, 4861, 5095, 5722, 6946, 7112 and TCP/UDP over IPv6.

Both targets answer at 2001:db8::2/64 and fe80::2 (femtotcp on a TAP, the
kernel behind a veth, each with TCP and UDP echo on port 7 and an IPv6
reassembly time of ``probe.FRAG_TIME``); the prober's addresses are
2001:db8::1:N and fe80::1:N, one N per probe (ICMPv6 error rate limits are per
destination). ``Target6`` answers the targets' neighbour solicitations for
them. Most packets are built here as bytes (``packet``, ``icmp``, ``udp``):
exactly the fields a probe means, no scapy automagic; answers are read with
scapy and reduced to facts (``icmp_obs``, ``na_obs``, ``tcp_obs``).
"""

from __future__ import annotations

import inspect
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import probe
from probe import NO_REPLY_WAIT, PROBER_MAC, REPLY_WAIT, Conn, Obs, Target
from scapy.layers.inet import TCP  # type: ignore
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment  # type: ignore
from scapy.layers.l2 import Ether  # type: ignore
from scapy.packet import Raw  # type: ignore

TARGET = "2001:db8::2"
TARGET_LL = "fe80::2"
ALL_NODES = "ff02::1"
SOLICITED = "ff02::1:ff00:2"          # the targets' solicited-node group (both addresses)
OTHER_MAC = "02:aa:00:00:00:77"
ND_TYPES = frozenset({133, 134, 135, 136, 137})
FRAG_TIME = probe.FRAG_TIME
#: Both targets' addresses (2001:db8::3-5 for the probes from ::, one each;
#: ::6 for the one that claims an address of theirs).
ADDRESSES = (TARGET, TARGET_LL, "2001:db8::3", "2001:db8::4", "2001:db8::5", "2001:db8::6")

# Next header values.
HBH, TCP_, UDP_, ROUTING, FRAGMENT, ICMP6, NONE, DSTOPTS = 0, 6, 17, 43, 44, 58, 59, 60


def prober_ip(i: int) -> str:
    return f"2001:db8::1:{i:x}"


def prober_ll(i: int) -> str:
    return f"fe80::1:{i:x}"


def _prober_addr(a: str) -> bool:
    return a.startswith(("2001:db8::1:", "fe80::1:"))


def _n(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def mcast_mac(group: str) -> str:
    return "33:33:" + ":".join(f"{b:02x}" for b in _n(group)[12:])


# -- building packets as bytes --------------------------------------------------------
def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def upper(src: str, dst: str, proto: int, body: bytes, at: int) -> bytes:
    """``body`` with its checksum (at offset ``at``) over the IPv6 pseudo-header."""
    body = body[:at] + b"\0\0" + body[at + 2:]
    pseudo = _n(src) + _n(dst) + len(body).to_bytes(4, "big") + bytes((0, 0, 0, proto))
    return body[:at] + csum(pseudo + body).to_bytes(2, "big") + body[at + 2:]


def icmp(src: str, dst: str, typ: int, code: int, rest: bytes) -> bytes:
    return upper(src, dst, ICMP6, bytes((typ, code, 0, 0)) + rest, 2)


def echo(src: str, dst: str = TARGET, data: bytes = b"abcdefgh", ident: int = 0x77,
         seq: int = 1) -> bytes:
    return icmp(src, dst, 128, 0, struct.pack("!HH", ident, seq) + data)


def udp(src: str, dst: str, dport: int, data: bytes = b"hello", sport: int = 40000,
        length: int | None = None) -> bytes:
    n = 8 + len(data) if length is None else length
    return upper(src, dst, UDP_, struct.pack("!HHHH", sport, dport, n, 0) + data, 6)


def packet(src: str, dst: str, nh: int, payload: bytes, hlim: int = 64,
           plen: int | None = None) -> bytes:
    """A fixed header (RFC 8200 3) and ``payload``."""
    return (struct.pack("!IHBB", 6 << 28, len(payload) if plen is None else plen, nh, hlim)
            + _n(src) + _n(dst) + payload)


def opts_header(nh: int, options: bytes) -> bytes:
    """A Hop-by-Hop or Destination Options header holding ``options`` (TLVs), padded
    with PadN (or Pad1) to a multiple of 8."""
    body = bytes((nh, 0)) + options
    pad = -len(body) % 8
    body += b"\0" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
    return bytes((nh, len(body) // 8 - 1)) + body[2:]


def routing(nh: int, rtype: int, segleft: int, addresses: int = 1) -> bytes:
    return bytes((nh, 2 * addresses, rtype, segleft)) + bytes(4) + bytes(16 * addresses)


def frag_header(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | int(more), ident)


def _sll(mac: str = PROBER_MAC, kind: int = 1) -> bytes:
    return bytes((kind, 1)) + bytes.fromhex(mac.replace(":", ""))


def ns(src: str, dst: str, target: str, options: bytes = b"") -> bytes:
    return icmp(src, dst, 135, 0, bytes(4) + _n(target) + options)


def na(src: str, dst: str, target: str, flags: int, options: bytes = b"") -> bytes:
    return icmp(src, dst, 136, 0, bytes((flags, 0, 0, 0)) + _n(target) + options)


# -- the target ---------------------------------------------------------------------------
class Target6(Target):
    """probe.Target that answers the targets' solicitations for the prober."""

    def answer(self, pkt: Any) -> Any | None:
        if IPv6 not in pkt or pkt[IPv6].nh != ICMP6:
            return None
        raw = bytes(pkt[IPv6])
        if len(raw) < 64 or raw[40] != 135:
            return None
        target = socket.inet_ntop(socket.AF_INET6, raw[48:64])
        if not _prober_addr(target):
            return None
        asker = pkt[IPv6].src
        dst = asker if asker != "::" else ALL_NODES
        return self.frame(packet(target, dst, ICMP6,
                                 na(target, dst, target, 0x60, _sll(kind=2)), 255),
                          pkt.src if asker != "::" else mcast_mac(ALL_NODES))

    def frame(self, pkt: bytes, dst: str | None = None) -> Any:
        return Ether(dst=dst or self.mac, src=PROBER_MAC, type=0x86DD) / Raw(pkt)


# -- reading answers ---------------------------------------------------------------------
def _upper_of(pkt: Any) -> tuple[int, bytes]:
    """(next header, bytes) after the fixed header of a received packet."""
    raw = bytes(pkt[IPv6])
    return pkt[IPv6].nh, raw[40:40 + pkt[IPv6].plen]


def checksums_ok(pkt: Any) -> bool:
    nh, data = _upper_of(pkt)
    if nh not in (TCP_, UDP_, ICMP6):
        return True
    ip = pkt[IPv6]
    pseudo = _n(ip.src) + _n(ip.dst) + len(data).to_bytes(4, "big") + bytes((0, 0, 0, nh))
    return csum(pseudo + data) == 0


def to_prober(src: str) -> Callable[[Any], bool]:
    """An answer of the target's to ``src`` (neighbour discovery left out)."""
    def pred(p: Any) -> bool:
        if IPv6 not in p or p[IPv6].dst != src:
            return False
        nh, data = _upper_of(p)
        return not (nh == ICMP6 and data[0] in ND_TYPES)
    return pred


def ip_obs(pkt: Any) -> Obs:
    ip = pkt[IPv6]
    return {"hlim": ip.hlim, "tc": ip.tc, "src_scope": "link" if ip.src.startswith("fe80")
            else "global", "checksums_ok": checksums_ok(pkt)}


def icmp_obs(pkt: Any | None) -> Obs:
    if pkt is None:
        return {"answer": None}
    nh, data = _upper_of(pkt)
    if nh != ICMP6:
        return {"answer": f"nh{nh}", **ip_obs(pkt)}
    typ, code = data[0], data[1]
    obs: Obs = {"answer": "icmp6", "type": typ, "code": code, **ip_obs(pkt)}
    if typ < 128:
        quoted = data[8:]
        obs["quote_has_ip6_header"] = len(quoted) >= 40 and quoted[0] >> 4 == 6
        obs["quote_len"] = len(quoted)
        obs["packet_le_1280"] = len(data) + 40 <= 1280
        if typ in (2, 4):
            obs["field"] = int.from_bytes(data[4:8], "big")   # MTU or pointer
    if typ == 129:
        obs["data"] = data[8:].hex() if len(data) <= 40 else len(data) - 8
    return obs


def send_wait(t: Target, frame: Any, pred: Callable[[Any], bool],
              timeout: float = NO_REPLY_WAIT) -> Any | None:
    return t.wait(pred, t.send(frame), timeout)


def _icmp(t: Target, src: str, pkt: bytes, dst_mac: str | None = None,
          timeout: float = REPLY_WAIT) -> Obs:
    """Send ``pkt``; the target's first answer to ``src`` as ICMPv6 facts."""
    assert isinstance(t, Target6)
    return icmp_obs(send_wait(t, t.frame(pkt, dst_mac), to_prober(src), timeout))


def _ping(t: Target, src: str, ext: bytes = b"", first: int = ICMP6, dst: str = TARGET,
          timeout: float = REPLY_WAIT, **kw: Any) -> Obs:
    """An echo request behind extension headers ``ext`` (``first`` names the first)."""
    return _icmp(t, src, packet(src, dst, first, ext + echo(src, dst), **kw), timeout=timeout)


def na_obs(pkt: Any | None) -> Obs:
    if pkt is None:
        return {"answer": None}
    _, data = _upper_of(pkt)
    flags = data[4]
    tlla = [data[i + 2:i + 8] for i in range(24, len(data) - 7, 8) if data[i] == 2]
    dst = pkt[IPv6].dst
    return {"answer": "na", "R": bool(flags & 0x80), "S": bool(flags & 0x40),
            "O": bool(flags & 0x20), "hlim": pkt[IPv6].hlim,
            "tlla": "ours" if tlla and tlla[0].hex(":") == pkt.src else bool(tlla),
            "to": "all-nodes" if dst == ALL_NODES else ("prober" if _prober_addr(dst) else dst),
            "target": socket.inet_ntop(socket.AF_INET6, data[8:24]),
            "checksums_ok": checksums_ok(pkt)}


def _na_for(target: str, to: str) -> Callable[[Any], bool]:
    def pred(p: Any) -> bool:
        if IPv6 not in p or p[IPv6].nh != ICMP6 or p[IPv6].dst != to:
            return False
        _, data = _upper_of(p)
        return data[0] == 136 and data[8:24] == _n(target)
    return pred


def _ns_probe(t: Target, src: str, pkt: bytes, dst_mac: str | None = None,
              target: str = TARGET, timeout: float = NO_REPLY_WAIT) -> Obs:
    """Send an NS (``src`` asks); the NA about ``target`` to ``src`` (to all-nodes
    when ``src`` is ::, and then ``target`` is one address per probe)."""
    assert isinstance(t, Target6)
    return na_obs(send_wait(t, t.frame(pkt, dst_mac),
                            _na_for(target, ALL_NODES if src == "::" else src), timeout))


# -- neighbour discovery (RFC 4861) -------------------------------------------------------
def nd_ns_solicited_node(t: Target, src: str) -> Obs:
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6, ns(src, SOLICITED, TARGET, _sll()),
                                    255), mcast_mac(SOLICITED), timeout=REPLY_WAIT)


def nd_ns_unicast(t: Target, src: str) -> Obs:
    return _ns_probe(t, src, packet(src, TARGET, ICMP6, ns(src, TARGET, TARGET, _sll()), 255),
                     timeout=REPLY_WAIT)


def nd_ns_no_sllao(t: Target, src: str) -> Obs:
    """No source link-layer option: the target must find our MAC itself to answer."""
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6, ns(src, SOLICITED, TARGET), 255),
                     mcast_mac(SOLICITED), timeout=REPLY_WAIT)


def nd_ns_link_local(t: Target, src: str) -> Obs:
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    return _ns_probe(t, ll, packet(ll, SOLICITED, ICMP6, ns(ll, SOLICITED, TARGET_LL, _sll()),
                                   255), mcast_mac(SOLICITED), TARGET_LL, REPLY_WAIT)


def nd_ns_to_all_nodes(t: Target, src: str) -> Obs:
    """An NS for our address sent to ff02::1 (neither the solicited-node group
    nor the target)."""
    return _ns_probe(t, src, packet(src, ALL_NODES, ICMP6, ns(src, ALL_NODES, TARGET, _sll()),
                                    255), mcast_mac(ALL_NODES), timeout=REPLY_WAIT)


def nd_ns_from_off_link_prefix(t: Target, src: str) -> Obs:
    """An NS (hop limit 255, so from the link) whose source is in no prefix of
    ours: the NA goes back to it on the link (RFC 4861 7.2.4)."""
    other = f"2001:db8:9::{src.rsplit(':', 1)[1]}"
    return _ns_probe(t, other, packet(other, SOLICITED, ICMP6,
                                      ns(other, SOLICITED, TARGET, _sll()), 255),
                     mcast_mac(SOLICITED), timeout=REPLY_WAIT)


def nd_na_claims_our_address(t: Target, src: str) -> Obs:
    """An unsolicited NA (O=1) from another node for a preferred address of ours
    (2001:db8::6): DAD is over (RFC 4862 5.4.4 looks at NAs only for tentative
    addresses), the address stays in use and still answers."""
    assert isinstance(t, Target6)
    mine = "2001:db8::6"
    t.send(t.frame(packet(mine, ALL_NODES, ICMP6, na(mine, ALL_NODES, mine, 0x20,
                                                     _sll(OTHER_MAC, 2)), 255),
                   mcast_mac(ALL_NODES)))
    time.sleep(0.2)
    return _icmp(t, src, packet(src, mine, ICMP6, echo(src, mine)))


def nd_ns_hop_limit_254(t: Target, src: str) -> Obs:
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6, ns(src, SOLICITED, TARGET, _sll()),
                                    254), mcast_mac(SOLICITED))


def nd_ns_code_1(t: Target, src: str) -> Obs:
    body = bytearray(ns(src, SOLICITED, TARGET, _sll()))
    body[1] = 1
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6,
                                    upper(src, SOLICITED, ICMP6, bytes(body), 2), 255),
                     mcast_mac(SOLICITED))


def nd_ns_bad_checksum(t: Target, src: str) -> Obs:
    body = bytearray(ns(src, SOLICITED, TARGET, _sll()))
    body[2] ^= 0x55
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6, bytes(body), 255),
                     mcast_mac(SOLICITED))


def nd_ns_multicast_target(t: Target, src: str) -> Obs:
    return _ns_probe(t, src, packet(src, TARGET, ICMP6, ns(src, TARGET, ALL_NODES, _sll()),
                                    255), target=ALL_NODES)


def _from_unspecified(t: Target, extra: int, dst: str, options: bytes = b"",
                      timeout: float = NO_REPLY_WAIT) -> Obs:
    """An NS from :: for the target's address 2001:db8::``extra`` (one per probe:
    the answer goes to all-nodes, where another probe's answer could be seen)."""
    target = f"2001:db8::{extra}"
    dst = dst or f"ff02::1:ff00:{extra}"
    mac = mcast_mac(dst) if dst.startswith("ff") else None
    return _ns_probe(t, "::", packet("::", dst, ICMP6, ns("::", dst, target, options), 255),
                     mac, target, timeout)


def nd_ns_unspecified_with_sllao(t: Target, src: str) -> Obs:
    """RFC 4861 7.1.1: from :: there must be no source link-layer option."""
    return _from_unspecified(t, 3, "", _sll())


def nd_ns_unspecified_to_unicast(t: Target, src: str) -> Obs:
    """RFC 4861 7.1.1: from ::, the destination must be a solicited-node group."""
    return _from_unspecified(t, 4, "2001:db8::4")


def nd_dad_defence(t: Target, src: str) -> Obs:
    """RFC 4861 7.2.4: a DAD probe for our address gets an NA to all-nodes."""
    return _from_unspecified(t, 5, "", timeout=REPLY_WAIT)


def nd_ns_other_address(t: Target, src: str) -> Obs:
    other = "2001:db8::77"
    group = "ff02::1:ff00:77"
    return _ns_probe(t, src, packet(src, group, ICMP6, ns(src, group, other, _sll()), 255),
                     mcast_mac(group), other)


def nd_ns_option_length_zero(t: Target, src: str) -> Obs:
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6,
                                    ns(src, SOLICITED, TARGET, bytes((1, 0)) + bytes(6)), 255),
                     mcast_mac(SOLICITED))


def nd_ns_option_truncated(t: Target, src: str) -> Obs:
    """An option whose length (2, 16 bytes) runs past the message."""
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6,
                                    ns(src, SOLICITED, TARGET, bytes((1, 2)) + bytes(6)), 255),
                     mcast_mac(SOLICITED))


def nd_ns_short(t: Target, src: str) -> Obs:
    """An NS of 20 bytes (less than the 24 RFC 4861 7.1.1 requires)."""
    body = icmp(src, SOLICITED, 135, 0, bytes(4) + _n(TARGET)[:12])
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6, body, 255), mcast_mac(SOLICITED))


def nd_ns_unknown_option(t: Target, src: str) -> Obs:
    """RFC 4861 4.6: unknown options are skipped, the NS answered."""
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6,
                                    ns(src, SOLICITED, TARGET, bytes((99, 1)) + bytes(6)
                                       + _sll()), 255), mcast_mac(SOLICITED),
                     timeout=REPLY_WAIT)


def nd_ns_sllao_length_2(t: Target, src: str) -> Obs:
    """A source link-layer option of 16 bytes: no Ethernet address (RFC 4861 4.6.1,
    RFC 2464 8): the NS is dropped."""
    return _ns_probe(t, src, packet(src, SOLICITED, ICMP6,
                                    ns(src, SOLICITED, TARGET, bytes((1, 2)) + bytes(14)), 255),
                     mcast_mac(SOLICITED))


def _learned(t: Target, src: str, before: list[bytes], ping_first: bool = False) -> Obs:
    """Send ``before`` (frames to the target), then ping from ``src``: does the reply
    go to OTHER_MAC (the target took it as ``src``'s link-layer address)?"""
    assert isinstance(t, Target6)
    if ping_first:
        send_wait(t, t.frame(packet(src, TARGET, ICMP6, echo(src))), to_prober(src), REPLY_WAIT)
    for pkt in before:
        t.send(t.frame(pkt))
    time.sleep(0.1)
    got = send_wait(t, t.frame(packet(src, TARGET, ICMP6, echo(src, seq=2))), to_prober(src),
                    REPLY_WAIT)
    return {"answer": None} if got is None else {"answer": "icmp6",
                                                 "learned": got.dst == OTHER_MAC}


def _na_then_ping(t: Target, src: str, flags: int, dst: str = TARGET, hlim: int = 255,
                  ping_first: bool = True) -> Obs:
    """An NA from ``src`` (``flags``: R/S/O) saying ``src`` is at OTHER_MAC."""
    body = na(src, dst, src, flags, _sll(OTHER_MAC, 2))
    return _learned(t, src, [packet(src, dst, ICMP6, body, hlim)], ping_first)


def nd_unsolicited_na_new(t: Target, src: str) -> Obs:
    """RFC 4861 7.2.5: an NA for an address with no cache entry is ignored."""
    return _na_then_ping(t, src, 0x20, ping_first=False)


def nd_unsolicited_na_override(t: Target, src: str) -> Obs:
    """RFC 4861 7.2.5: O=1 overrides a cached link-layer address."""
    return _na_then_ping(t, src, 0x20)


def nd_na_no_override(t: Target, src: str) -> Obs:
    """O=0 with a different address: the cached one stays (the entry goes STALE)."""
    return _na_then_ping(t, src, 0x00)


def nd_na_solicited_to_multicast(t: Target, src: str) -> Obs:
    """RFC 4861 7.1.2: an NA with S=1 to a multicast destination is invalid."""
    return _na_then_ping(t, src, 0x60, ALL_NODES)


def nd_na_hop_limit_254(t: Target, src: str) -> Obs:
    """RFC 4861 7.1.2: an NA whose hop limit is not 255 was forwarded: invalid."""
    return _na_then_ping(t, src, 0x20, hlim=254)


def nd_ns_learns_sllao(t: Target, src: str) -> Obs:
    """RFC 4861 7.2.3: an NS's source link-layer option updates the cache."""
    return _learned(t, src, [packet(src, SOLICITED, ICMP6,
                                    ns(src, SOLICITED, TARGET, _sll(OTHER_MAC)), 255)])


def nd_ns_atomic_fragment(t: Target, src: str) -> Obs:
    """RFC 6980 5: a fragmented ND message is silently ignored (here an atomic
    fragment; Linux's suppress_frag_ndisc)."""
    body = ns(src, SOLICITED, TARGET, _sll())
    return _ns_probe(t, src, packet(src, SOLICITED, FRAGMENT, frag_header(ICMP6, 0, False, 7)
                                    + body, 255), mcast_mac(SOLICITED))


def nd_ns_in_two_fragments(t: Target, src: str) -> Obs:
    """RFC 6980 5: an NS in two fragments is silently ignored."""
    assert isinstance(t, Target6)
    body = ns(src, SOLICITED, TARGET, _sll())
    first, second = _frags(src, body, 16, 0x6980, dst=SOLICITED)
    t.send(t.frame(first[:7] + b"\xff" + first[8:], mcast_mac(SOLICITED)))
    return _ns_probe(t, src, second[:7] + b"\xff" + second[8:], mcast_mac(SOLICITED))


def nd_redirect_from_non_router(t: Target, src: str) -> Obs:
    """RFC 4861 8.1: a Redirect not from the current first hop is ignored."""
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    body = icmp(ll, TARGET, 137, 0, bytes(4) + _n(src) + _n(src) + _sll(OTHER_MAC, 2))
    return _learned(t, src, [packet(ll, TARGET, ICMP6, body, 255)])


def nd_rs_to_host(t: Target, src: str) -> Obs:
    """RFC 4861 6.2.6: a host ignores Router Solicitations."""
    assert isinstance(t, Target6)
    got = send_wait(t, t.frame(packet(src, "ff02::2", ICMP6, icmp(src, "ff02::2", 133, 0,
                                                                   bytes(4) + _sll()), 255),
                               mcast_mac("ff02::2")),
                    lambda p: IPv6 in p and p[IPv6].nh == ICMP6 and _upper_of(p)[1][0] == 134)
    return {"ra": got is not None}


# -- ICMPv6 (RFC 4443) ----------------------------------------------------------------------
def icmp6_echo(t: Target, src: str) -> Obs:
    return _ping(t, src)


def icmp6_echo_empty(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src, data=b"")))


def icmp6_echo_odd(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src, data=b"abcde")))


def icmp6_echo_all_nodes(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, ALL_NODES, ICMP6, echo(src, ALL_NODES)),
                 mcast_mac(ALL_NODES))


def icmp6_echo_all_nodes_link_local(t: Target, src: str) -> Obs:
    """From a link-local source: the reply comes from the link-local address."""
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    return _icmp(t, ll, packet(ll, ALL_NODES, ICMP6, echo(ll, ALL_NODES)), mcast_mac(ALL_NODES))


def icmp6_packet_too_big_then_echo(t: Target, src: str) -> Obs:
    """A Packet Too Big (1280) about one of the target's echo replies: the next
    1400-byte reply comes in fragments that fit 1280 (RFC 8201 4; Linux's
    icmpv6_err lowers the path MTU for ICMPv6)."""
    assert isinstance(t, Target6)
    data = bytes(1400)
    first = send_wait(t, t.frame(packet(src, TARGET, ICMP6, echo(src, data=data))),
                      to_prober(src), REPLY_WAIT)
    if first is None:
        return {"answer": None}
    quoted = bytes(first[IPv6])[:1232]
    t.send(t.frame(packet(src, TARGET, ICMP6, icmp(src, TARGET, 2, 0, (1280).to_bytes(4, "big")
                                                   + quoted))))
    time.sleep(0.2)
    mark = t.send(t.frame(packet(src, TARGET, ICMP6, echo(src, data=data, seq=2))))
    frags = t.collect(to_prober(src), mark, 1.0)
    return {"first_len": len(first[IPv6]), "replies": len(frags),
            "all_fit": all(len(p[IPv6]) <= 1280 for p in frags),
            "fragmented": all(IPv6ExtHdrFragment in p for p in frags)}


def icmp6_echo_solicited_node(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, SOLICITED, ICMP6, echo(src, SOLICITED)),
                 mcast_mac(SOLICITED))


def icmp6_echo_link_local(t: Target, src: str) -> Obs:
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    return _icmp(t, ll, packet(ll, TARGET_LL, ICMP6, echo(ll, TARGET_LL)))


def icmp6_echo_global_from_link_local(t: Target, src: str) -> Obs:
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    return _icmp(t, ll, packet(ll, TARGET, ICMP6, echo(ll, TARGET)))


def icmp6_echo_link_local_from_global(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET_LL, ICMP6, echo(src, TARGET_LL)))


def _mld_reports(t: Target, src: str, query: bytes, wait: float) -> Obs:
    """Send an MLD query from the link-local ``src``; the reports within ``wait``."""
    assert isinstance(t, Target6)
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    ra = bytes((ICMP6, 0, 5, 2, 0, 0, 1, 0))           # Hop-by-Hop: Router Alert (MLD), PadN
    mark = t.send(t.frame(packet(ll, ALL_NODES, HBH, ra + icmp(ll, ALL_NODES, 130, 0, query), 1),
                          mcast_mac(ALL_NODES)))
    reports = t.collect(lambda p: IPv6 in p and p[IPv6].src in (TARGET_LL, "::")
                        and p[IPv6].dst in ("ff02::16", SOLICITED) and p[IPv6].nh == HBH, mark,
                        wait)
    groups: set[str] = set()
    for p in reports:
        raw = bytes(p[IPv6])[48:]
        if raw[0] == 143:                               # MLDv2: the records' groups
            n = int.from_bytes(raw[6:8], "big")
            pos = 8
            for _ in range(n):
                aux, count = raw[pos + 1], int.from_bytes(raw[pos + 2:pos + 4], "big")
                groups.add(socket.inet_ntop(socket.AF_INET6, raw[pos + 4:pos + 20]))
                pos += 20 + 16 * count + 4 * aux
        elif raw[0] == 131:                             # MLDv1
            groups.add(socket.inet_ntop(socket.AF_INET6, raw[8:24]))
    return {"reported": sorted(g for g in groups if g.startswith("ff02::1:ff00:")),
            "types": sorted({bytes(p[IPv6])[48] for p in reports}),
            "hlim_1": all(p[IPv6].hlim == 1 for p in reports)}


def mld_general_query(t: Target, src: str) -> Obs:
    """An MLDv2 general query (max response 1 s): every joined group reported
    (RFC 3810 6.2) with hop limit 1."""
    query = (1000).to_bytes(2, "big") + bytes(2) + bytes(16) + bytes((2, 125, 0, 0))
    return _mld_reports(t, src, query, 2.5)


def mld_v1_general_query(t: Target, src: str) -> Obs:
    """An MLDv1 general query (24 bytes, RFC 2710): an MLDv2 host answers it
    with version 1 reports (RFC 3810 8.2.1: MLDv1 compatibility mode)."""
    return _mld_reports(t, src, (1000).to_bytes(2, "big") + bytes(2) + bytes(16), 2.5)


def icmp6_echo_nonzero_code(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, icmp(src, TARGET, 128, 3,
                                                         b"\0\x77\0\x01abcdefgh")))


def icmp6_echo_bad_checksum(t: Target, src: str) -> Obs:
    body = bytearray(echo(src))
    body[3] ^= 0x11
    return _icmp(t, src, packet(src, TARGET, ICMP6, bytes(body)), timeout=NO_REPLY_WAIT)


def icmp6_echo_traffic_class(t: Target, src: str) -> Obs:
    pkt = bytearray(packet(src, TARGET, ICMP6, echo(src)))
    pkt[0:4] = ((6 << 28) | (0xB8 << 20)).to_bytes(4, "big")
    return _icmp(t, src, bytes(pkt))


def icmp6_echo_large(t: Target, src: str) -> Obs:
    """A 3000-byte echo in fragments: the reply comes back fragmented at the MTU."""
    assert isinstance(t, Target6)
    data = bytes(range(256)) * 11 + bytes(184)
    body = echo(src, data=data)
    mark = 0.0
    for off in range(0, len(body), 1232):
        piece = body[off:off + 1232]
        more = off + len(piece) < len(body)
        m = t.send(t.frame(packet(src, TARGET, FRAGMENT,
                                  frag_header(ICMP6, off, more, 0x5151) + piece)))
        mark = mark or m
    frags = t.collect(lambda p: to_prober(src)(p) and IPv6ExtHdrFragment in p, mark, 1.5)
    if not frags:
        return {"fragments": 0}
    size = sum(len(bytes(p[IPv6ExtHdrFragment].payload)) for p in frags)
    return {"fragments": len(frags) > 1, "max_len_le_1500": max(len(p[IPv6]) for p in frags)
            <= 1500, "complete": size == len(body)}


def icmp6_unknown_informational(t: Target, src: str) -> Obs:
    """RFC 4443 2.4 (b): an unknown informational type is silently discarded."""
    return _icmp(t, src, packet(src, TARGET, ICMP6, icmp(src, TARGET, 200, 0, bytes(8))),
                 timeout=NO_REPLY_WAIT)


def icmp6_unknown_error(t: Target, src: str) -> Obs:
    """RFC 4443 2.4 (a): an unknown error type goes up, never answered."""
    inner = packet(TARGET, src, UDP_, udp(TARGET, src, 5000, sport=7))
    return _icmp(t, src, packet(src, TARGET, ICMP6, icmp(src, TARGET, 100, 0, bytes(4) + inner)),
                 timeout=NO_REPLY_WAIT)


def icmp6_error_about_nothing(t: Target, src: str) -> Obs:
    """A Destination Unreachable quoting a packet the target never sent."""
    inner = packet(TARGET, src, UDP_, udp(TARGET, src, 5000, sport=4444))
    return _icmp(t, src, packet(src, TARGET, ICMP6, icmp(src, TARGET, 1, 4, bytes(4) + inner)),
                 timeout=NO_REPLY_WAIT)


def icmp6_error_with_bad_option(t: Target, src: str) -> Obs:
    """RFC 4443 2.4 (e.1): no error about an error, even one behind an option whose
    action asks for a Parameter Problem."""
    inner = packet(TARGET, src, UDP_, udp(TARGET, src, 5000, sport=4444))
    err = icmp(src, TARGET, 1, 4, bytes(4) + inner)
    return _icmp(t, src, packet(src, TARGET, HBH, opts_header(ICMP6, b"\x9e\x02\0\0") + err),
                 timeout=NO_REPLY_WAIT)


def icmp6_error_unknown_next_header(t: Target, src: str) -> Obs:
    """No Parameter Problem about an error whose ... unknown type inside a header chain."""
    inner = packet(TARGET, src, UDP_, udp(TARGET, src, 5000, sport=4444))
    err = icmp(src, TARGET, 1, 4, bytes(4) + inner)
    return _icmp(t, src, packet(src, TARGET, DSTOPTS, opts_header(ICMP6, b"\x9e\x02\0\0") + err),
                 timeout=NO_REPLY_WAIT)


def icmp6_echo_truncated(t: Target, src: str) -> Obs:
    """An ICMPv6 message of 3 bytes."""
    return _icmp(t, src, packet(src, TARGET, ICMP6, b"\x80\0\0"), timeout=NO_REPLY_WAIT)


# -- extension headers (RFC 8200 4) -------------------------------------------------------------
def ext_hbh_padn(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b""), HBH)


def ext_hbh_pad1(t: Target, src: str) -> Obs:
    return _ping(t, src, bytes((ICMP6, 0)) + bytes(6), HBH)


def ext_hbh_skip(t: Target, src: str) -> Obs:
    """Unknown option, action 00: skipped, the packet processed."""
    return _ping(t, src, opts_header(ICMP6, b"\x1e\x02\0\0"), HBH)


def ext_hbh_discard(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x5e\x02\0\0"), HBH, timeout=NO_REPLY_WAIT)


def ext_hbh_icmp(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x9e\x02\0\0"), HBH)


def ext_hbh_icmp_multicast(t: Target, src: str) -> Obs:
    """Action 10: a Parameter Problem even to a multicast destination."""
    pkt = packet(src, ALL_NODES, HBH, opts_header(ICMP6, b"\x9e\x02\0\0") + echo(src, ALL_NODES))
    return _icmp(t, src, pkt, mcast_mac(ALL_NODES))


def ext_hbh_icmp_unless_multicast(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\xde\x02\0\0"), HBH)


def ext_hbh_icmp_unless_multicast_to_multicast(t: Target, src: str) -> Obs:
    pkt = packet(src, ALL_NODES, HBH, opts_header(ICMP6, b"\xde\x02\0\0") + echo(src, ALL_NODES))
    return _icmp(t, src, pkt, mcast_mac(ALL_NODES), timeout=NO_REPLY_WAIT)


def ext_dst_skip(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x1e\x02\0\0"), DSTOPTS)


def ext_dst_icmp_second_option(t: Target, src: str) -> Obs:
    """The pointer names the unknown option, here the second one."""
    return _ping(t, src, opts_header(ICMP6, b"\x1e\x02\0\0\x9e\x01\0"), DSTOPTS)


def ext_dst_discard(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x7e\x02\0\0"), DSTOPTS, timeout=NO_REPLY_WAIT)


def ext_dst_padn_nonzero(t: Target, src: str) -> Obs:
    """PadN whose bytes are not zero (RFC 8200 4.2 says zeros; Linux drops it)."""
    return _ping(t, src, bytes((ICMP6, 0, 1, 4, 1, 2, 3, 4)), DSTOPTS, timeout=NO_REPLY_WAIT)


def ext_hbh_router_alert(t: Target, src: str) -> Obs:
    """A Router Alert (RFC 2711, value 0) on an echo: a host just processes it."""
    return _ping(t, src, opts_header(ICMP6, b"\x05\x02\0\0"), HBH)


def ext_hbh_jumbo_option(t: Target, src: str) -> Obs:
    """A Jumbo Payload option (RFC 2675) in a packet with a payload length: the
    error RFC 2675 3 names is Parameter Problem code 0."""
    return _ping(t, src, opts_header(ICMP6, b"\xc2\x04\0\x01\0\0"), HBH)


def ext_hbh_jumbo_small(t: Target, src: str) -> Obs:
    """A Jumbo Payload option with a jumbo length under 65536 (RFC 2675 3)."""
    return _ping(t, src, opts_header(ICMP6, b"\xc2\x04\0\0\x01\0"), HBH)


def ext_padn_eight(t: Target, src: str) -> Obs:
    """A PadN of 8 bytes: padding is at most 7 (RFC 8200 4.2's alignment needs no
    more; Linux drops longer runs)."""
    return _ping(t, src, bytes((ICMP6, 1, 1, 6)) + bytes(6) + bytes((1, 4)) + bytes(4),
                 DSTOPTS, timeout=NO_REPLY_WAIT)


def ext_dst_nine_options(t: Target, src: str) -> Obs:
    """Nine options to skip in one header (Linux's max_dst_opts_number is 8)."""
    return _ping(t, src, opts_header(ICMP6, b"\x1e\x00" * 9), DSTOPTS, timeout=NO_REPLY_WAIT)


def ext_dst_eight_options(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x1e\x00" * 8), DSTOPTS)


def ext_hbh_not_first(t: Target, src: str) -> Obs:
    """Hop-by-Hop after a Destination Options header: Parameter Problem code 1."""
    return _ping(t, src, opts_header(HBH, b"") + opts_header(ICMP6, b""), DSTOPTS)


def ext_unknown_next_header(t: Target, src: str) -> Obs:
    """RFC 8200 4: code 1, the pointer at the fixed header's Next Header field (6)."""
    return _icmp(t, src, packet(src, TARGET, 150, bytes(16)))


def ext_unknown_next_header_after_dst(t: Target, src: str) -> Obs:
    """As above, the pointer at the Destination Options header's Next Header (40)."""
    return _icmp(t, src, packet(src, TARGET, DSTOPTS, opts_header(150, b"") + bytes(16)))


def ext_no_next_header(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, NONE, bytes(16)), timeout=NO_REPLY_WAIT)


def ext_rh0_segments_left(t: Target, src: str) -> Obs:
    """RFC 5095 3: RH0 with segments left: Parameter Problem code 0 at the type (42)."""
    return _ping(t, src, routing(ICMP6, 0, 1), ROUTING)


def ext_rh0_exhausted(t: Target, src: str) -> Obs:
    """RFC 5095 3: RH0 with segments left 0 is ignored, the packet processed."""
    return _ping(t, src, routing(ICMP6, 0, 0), ROUTING)


def ext_rh_unknown_exhausted(t: Target, src: str) -> Obs:
    return _ping(t, src, routing(ICMP6, 253, 0), ROUTING)


def ext_rh_unknown_segments_left(t: Target, src: str) -> Obs:
    return _ping(t, src, routing(ICMP6, 253, 1), ROUTING)


def ext_dst_options(t: Target, src: str) -> Obs:
    return _ping(t, src, opts_header(ICMP6, b"\x01\x04\0\0\0\0"), DSTOPTS)


def ext_chain(t: Target, src: str) -> Obs:
    """Hop-by-Hop, Destination Options, Routing (exhausted), Destination Options."""
    chain = (opts_header(DSTOPTS, b"") + opts_header(ROUTING, b"") + routing(DSTOPTS, 0, 0)
             + opts_header(ICMP6, b""))
    return _ping(t, src, chain, HBH)


def ext_long_chain(t: Target, src: str) -> Obs:
    """Ten Destination Options headers in a row."""
    chain = b"".join(opts_header(DSTOPTS, b"") for _ in range(9)) + opts_header(ICMP6, b"")
    return _ping(t, src, chain, DSTOPTS, timeout=REPLY_WAIT)


def ext_past_end(t: Target, src: str) -> Obs:
    """A Destination Options header whose length runs past the packet."""
    return _icmp(t, src, packet(src, TARGET, DSTOPTS, bytes((ICMP6, 4)) + bytes(14)),
                 timeout=NO_REPLY_WAIT)


def ext_payload_length_past_frame(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src), plen=200),
                 timeout=NO_REPLY_WAIT)


def ext_trailing_padding(t: Target, src: str) -> Obs:
    """Bytes past the payload length (Ethernet padding): cut, the packet answered."""
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src)) + bytes(30))


def ext_bad_version(t: Target, src: str) -> Obs:
    pkt = bytearray(packet(src, TARGET, ICMP6, echo(src)))
    pkt[0] = 0x40
    return _icmp(t, src, bytes(pkt), timeout=NO_REPLY_WAIT)


# -- fragments (RFC 8200 4.5, RFC 5722, RFC 6946, RFC 7112) ------------------------------------
def _frags(src: str, body: bytes, size: int, ident: int, nh: int = ICMP6,
           dst: str = TARGET) -> list[bytes]:
    out = []
    for off in range(0, len(body), size):
        piece = body[off:off + size]
        out.append(packet(src, dst, FRAGMENT,
                          frag_header(nh, off, off + len(piece) < len(body), ident) + piece))
    return out


def _frag_echo(t: Target, src: str, order: Callable[[list[bytes]], list[bytes]],
               timeout: float = REPLY_WAIT) -> Obs:
    assert isinstance(t, Target6)
    body = echo(src, data=bytes(range(200)) * 6)
    pieces = order(_frags(src, body, 400, random.randrange(2**32)))
    mark = 0.0
    for p in pieces:
        m = t.send(t.frame(p))
        mark = mark or m
    return icmp_obs(t.wait(to_prober(src), mark, timeout))


def frag_in_order(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: f)


def frag_reversed(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: f[::-1])


def frag_duplicate(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: [f[0], f[1], f[1], f[2], f[3]])


def frag_overlap(t: Target, src: str) -> Obs:
    """RFC 5722: a fragment overlapping another discards the whole datagram."""
    def overlap(f: list[bytes]) -> list[bytes]:
        second = bytearray(f[1])
        second[42:44] = (392 | 1).to_bytes(2, "big")    # offset 392 instead of 400
        return [f[0], bytes(second), f[1], *f[2:]]
    return _frag_echo(t, src, overlap, NO_REPLY_WAIT * 2)


def frag_tiny(t: Target, src: str) -> Obs:
    """An echo cut into 8-byte fragments (all of them the minimum)."""
    assert isinstance(t, Target6)
    mark = 0.0
    for p in _frags(src, echo(src, data=bytes(range(56))), 8, 0x7777):
        m = t.send(t.frame(p))
        mark = mark or m
    return icmp_obs(t.wait(to_prober(src), mark))


def frag_atomic(t: Target, src: str) -> Obs:
    """RFC 6946: offset 0, M=0: processed on its own."""
    return _ping(t, src, frag_header(ICMP6, 0, False, 0x1234), FRAGMENT)


def frag_atomic_with_pending(t: Target, src: str) -> Obs:
    """An atomic fragment with the ID of a datagram being reassembled: answered at
    once, the other left alone (RFC 6946 4)."""
    assert isinstance(t, Target6)
    body = echo(src, data=bytes(800))
    t.send(t.frame(_frags(src, body, 400, 0x4242)[0]))
    return _ping(t, src, frag_header(ICMP6, 0, False, 0x4242), FRAGMENT)


def frag_first_without_upper(t: Target, src: str) -> Obs:
    """RFC 7112 5: the first fragment ends inside the header chain: code 3."""
    pkt = packet(src, TARGET, FRAGMENT, frag_header(DSTOPTS, 0, True, 0x7112)
                 + opts_header(ICMP6, b""))
    return _icmp(t, src, pkt)


def frag_bad_length(t: Target, src: str) -> Obs:
    """M=1 and a length not a multiple of 8: code 0, pointer 4 (Payload Length)."""
    body = echo(src, data=bytes(20))
    return _icmp(t, src, packet(src, TARGET, FRAGMENT, frag_header(ICMP6, 0, True, 0x88) + body))


def frag_too_big(t: Target, src: str) -> Obs:
    """Offset + length past 65535: code 0 pointing at the Fragment Offset (42)."""
    return _icmp(t, src, packet(src, TARGET, FRAGMENT, frag_header(ICMP6, 65528, False, 0x99)
                                + bytes(16)))


def frag_udp(t: Target, src: str) -> Obs:
    assert isinstance(t, Target6)
    body = udp(src, TARGET, 7, bytes(range(200)) * 4)
    mark = 0.0
    for p in _frags(src, body, 400, 0x3131, UDP_):
        m = t.send(t.frame(p))
        mark = mark or m
    got = t.wait(lambda p: to_prober(src)(p) and (UDP_ in (p[IPv6].nh,) or
                                                  IPv6ExtHdrFragment in p), mark)
    return {"answer": None} if got is None else {"answer": "udp", **ip_obs(got)}


def frag_missing_last_start(t: Target, src: str) -> float:
    """The first fragment only (the timeout probe: run_all waits FRAG_TIME)."""
    assert isinstance(t, Target6)
    return t.send(t.frame(_frags(src, echo(src, data=bytes(800)), 400, 0x6666)[0]))


def frag_missing_first_start(t: Target, src: str) -> float:
    assert isinstance(t, Target6)
    return t.send(t.frame(_frags(src, echo(src, data=bytes(800)), 400, 0x6767)[1]))


def frag_timeout_end(t: Target, src: str, mark: float) -> Obs:
    return icmp_obs(t.wait(to_prober(src), mark, FRAG_TIME + 6 - (time.monotonic() - mark)))


# -- addresses (RFC 4291, RFC 4443 2.4) ------------------------------------------------------
def addr_multicast_source(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet("ff02::1", TARGET, ICMP6, echo("ff02::1")),
                 timeout=NO_REPLY_WAIT)


def _src_obs(t: Target, bad: str) -> Obs:
    """An echo from a source no host may send from: any answer that carries (or
    quotes) this echo's random data counts, wherever it goes."""
    assert isinstance(t, Target6)
    token = os.urandom(8)
    got = send_wait(t, t.frame(packet(bad, TARGET, ICMP6, echo(bad, data=token))),
                    lambda p: IPv6 in p and p[IPv6].nh == ICMP6 and token in _upper_of(p)[1])
    return icmp_obs(got)


def addr_loopback_source(t: Target, src: str) -> Obs:
    return _src_obs(t, "::1")


def addr_v4_mapped_source(t: Target, src: str) -> Obs:
    return _src_obs(t, "::ffff:192.0.2.9")


def addr_unspecified_source(t: Target, src: str) -> Obs:
    return _src_obs(t, "::")


def addr_own_source(t: Target, src: str) -> Obs:
    return _src_obs(t, TARGET)


def addr_own_link_local_source(t: Target, src: str) -> Obs:
    return _src_obs(t, TARGET_LL)


def _dst_obs(t: Target, src: str, dst: str, dst_mac: str | None = None) -> Obs:
    return _icmp(t, src, packet(src, dst, ICMP6, echo(src, dst)), dst_mac,
                 timeout=NO_REPLY_WAIT)


def addr_loopback_destination(t: Target, src: str) -> Obs:
    """::1 from the wire (RFC 4291 2.5.3: never sent, never accepted from a link)."""
    return _dst_obs(t, src, "::1")


def addr_v4_mapped_destination(t: Target, src: str) -> Obs:
    return _dst_obs(t, src, "::ffff:192.0.2.2")


def addr_all_routers(t: Target, src: str) -> Obs:
    """ff02::2: a host is no member."""
    return _dst_obs(t, src, "ff02::2", mcast_mac("ff02::2"))


def addr_l2_broadcast(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src)), "ff:ff:ff:ff:ff:ff")


def addr_l2_multicast(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, TARGET, ICMP6, echo(src)), mcast_mac(ALL_NODES))


def addr_not_ours(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, "2001:db8::99", ICMP6, echo(src, "2001:db8::99")),
                 timeout=NO_REPLY_WAIT)


def addr_other_prefix(t: Target, src: str) -> Obs:
    return _icmp(t, src, packet(src, "2001:db8:5::2", ICMP6, echo(src, "2001:db8:5::2")),
                 timeout=NO_REPLY_WAIT)


def addr_group_not_joined(t: Target, src: str) -> Obs:
    g = "ff02::1234"
    return _icmp(t, src, packet(src, g, ICMP6, echo(src, g)), mcast_mac(g),
                 timeout=NO_REPLY_WAIT)


def addr_subnet_router_anycast(t: Target, src: str) -> Obs:
    """2001:db8:: (the subnet-router anycast address, RFC 4291 2.6.1): a host
    does not hold it."""
    return _icmp(t, src, packet(src, "2001:db8::", ICMP6, echo(src, "2001:db8::")),
                 timeout=NO_REPLY_WAIT)


def addr_hop_limit_0(t: Target, src: str) -> Obs:
    return _ping(t, src, hlim=0)


def addr_hop_limit_1(t: Target, src: str) -> Obs:
    return _ping(t, src, hlim=1)


def addr_interface_local_multicast(t: Target, src: str) -> Obs:
    """ff01::1 (interface-local) from the wire: never valid there (RFC 4291 2.7)."""
    return _icmp(t, src, packet(src, "ff01::1", ICMP6, echo(src, "ff01::1")),
                 mcast_mac("ff01::1"), timeout=NO_REPLY_WAIT)


# -- UDP (RFC 768, RFC 8200 8.1) -------------------------------------------------------------
def _udp(t: Target, src: str, pkt: bytes, dst_mac: str | None = None,
         timeout: float = REPLY_WAIT) -> Obs:
    assert isinstance(t, Target6)
    got = send_wait(t, t.frame(pkt, dst_mac), to_prober(src), timeout)
    if got is None:
        return {"answer": None}
    if got[IPv6].nh == UDP_:
        _, data = _upper_of(got)
        return {"answer": "udp", "data": data[8:].decode("latin-1"), **ip_obs(got)}
    return icmp_obs(got)


def udp_echo(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 7)))


def udp_echo_link_local(t: Target, src: str) -> Obs:
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    return _udp(t, ll, packet(ll, TARGET_LL, UDP_, udp(ll, TARGET_LL, 7)))


def udp_zero_checksum(t: Target, src: str) -> Obs:
    """RFC 8200 8.1: a zero UDP checksum is discarded (no tunnel exception here)."""
    body = bytearray(udp(src, TARGET, 7))
    body[6:8] = b"\0\0"
    return _udp(t, src, packet(src, TARGET, UDP_, bytes(body)), timeout=NO_REPLY_WAIT)


def udp_zero_checksum_closed(t: Target, src: str) -> Obs:
    body = bytearray(udp(src, TARGET, 9))
    body[6:8] = b"\0\0"
    return _udp(t, src, packet(src, TARGET, UDP_, bytes(body)), timeout=NO_REPLY_WAIT)


def udp_bad_checksum(t: Target, src: str) -> Obs:
    body = bytearray(udp(src, TARGET, 7))
    body[7] ^= 0x21
    return _udp(t, src, packet(src, TARGET, UDP_, bytes(body)), timeout=NO_REPLY_WAIT)


def udp_length_beyond_payload(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 7, length=40)),
                timeout=NO_REPLY_WAIT)


def udp_length_short(t: Target, src: str) -> Obs:
    """A UDP length shorter than the payload, checksummed as the length says."""
    body = udp(src, TARGET, 7, b"hel", length=11)[:11]
    return _udp(t, src, packet(src, TARGET, UDP_, body + b"lo"))


def udp_length_below_header(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 7, length=4)),
                timeout=NO_REPLY_WAIT)


def udp_closed_port(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 9)))


def udp_closed_port_large(t: Target, src: str) -> Obs:
    """The Port Unreachable quotes as much as fits 1280 bytes (RFC 4443 3.1)."""
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 9, bytes(1400))))


def udp_closed_port_burst(t: Target, src: str) -> Obs:
    """Twenty datagrams to closed ports at once from one source: the Port
    Unreachables are rate limited (RFC 4443 2.4 f)."""
    assert isinstance(t, Target6)
    mark = time.monotonic()
    for port in range(20):
        t.send(t.frame(packet(src, TARGET, UDP_, udp(src, TARGET, 1000 + port))))
    n = len(t.collect(to_prober(src), mark, 1.0))
    return {"some": n >= 1, "limited": n < 20}


def udp_closed_port_multicast(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, ALL_NODES, UDP_, udp(src, ALL_NODES, 9)),
                mcast_mac(ALL_NODES), timeout=NO_REPLY_WAIT)


def udp_closed_port_l2_broadcast(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 9)), "ff:ff:ff:ff:ff:ff")


def udp_echo_l2_broadcast(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, UDP_, udp(src, TARGET, 7)), "ff:ff:ff:ff:ff:ff")


def udp_packet_too_big_then_echo(t: Target, src: str) -> Obs:
    """A Packet Too Big (1280) about one of the echo service's 1400-byte replies:
    the next reply comes in fragments that fit (Linux's __udp6_lib_err finds the
    socket and lowers the path MTU)."""
    assert isinstance(t, Target6)
    first = send_wait(t, t.frame(packet(src, TARGET, UDP_, udp(src, TARGET, 7, bytes(1400)))),
                      to_prober(src), REPLY_WAIT)
    if first is None:
        return {"answer": None}
    t.send(t.frame(packet(src, TARGET, ICMP6, icmp(src, TARGET, 2, 0, (1280).to_bytes(4, "big")
                                                   + bytes(first[IPv6])[:1232]))))
    time.sleep(0.2)
    mark = t.send(t.frame(packet(src, TARGET, UDP_, udp(src, TARGET, 7, bytes(1400)))))
    frags = t.collect(to_prober(src), mark, 1.0)
    return {"first_len": len(first[IPv6]), "replies": len(frags),
            "all_fit": all(len(p[IPv6]) <= 1280 for p in frags)}


def udp_packet_too_big_not_ours(t: Target, src: str) -> Obs:
    """A Packet Too Big (1280) quoting a datagram from a port nobody holds: the
    path MTU stays (Linux's __udp6_lib_err finds no socket), the next 1400-byte
    echo reply comes whole."""
    assert isinstance(t, Target6)
    fake = packet(TARGET, src, UDP_, udp(TARGET, src, 5000, bytes(1400), sport=4444))
    t.send(t.frame(packet(src, TARGET, ICMP6, icmp(src, TARGET, 2, 0, (1280).to_bytes(4, "big")
                                                   + fake[:1232]))))
    time.sleep(0.2)
    mark = t.send(t.frame(packet(src, TARGET, UDP_, udp(src, TARGET, 7, bytes(1400)))))
    got = t.collect(to_prober(src), mark, 1.0)
    return {"replies": len(got), "max_len": max((len(p[IPv6]) for p in got), default=0)}


def udp_echo_behind_dst_options(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, DSTOPTS, opts_header(UDP_, b"")
                               + udp(src, TARGET, 7)))


def udp_closed_port_behind_chain(t: Target, src: str) -> Obs:
    return _udp(t, src, packet(src, TARGET, HBH, opts_header(DSTOPTS, b"")
                               + opts_header(UDP_, b"") + udp(src, TARGET, 9)))


# -- TCP ---------------------------------------------------------------------------------------
class Conn6(Conn):
    def net(self) -> Any:
        return IPv6(src=self.src, dst=TARGET)

    def mine(self, pkt: Any) -> bool:
        return _tcp_from(self.src, self.sport)(pkt)


def tcp_obs(pkt: Any | None, seq: int, ack: int | None = None) -> Obs:
    """probe.tcp_obs over IPv6, with the MSS a SYN-ACK offers."""
    obs = probe.tcp_obs(pkt, seq, ack, ip_obs)
    for o in [] if pkt is None else pkt[TCP].options:
        if o[0] == "MSS":
            obs["mss"] = o[1]
    return obs


def _tcp_from(src: str, sport: int) -> Callable[[Any], bool]:
    return lambda p: IPv6 in p and TCP in p and p[IPv6].dst == src and p[TCP].dport == sport


def _syn(t: Target, src: str, dport: int, flags: str = "S", data: bytes = b"",
         options: Any = (("MSS", 1440),), sport: int = 40000, **kw: Any) -> Obs:
    seq = random.randrange(2**32)
    mark = t.send(Ether(dst=t.mac, src=PROBER_MAC) / IPv6(src=src, dst=TARGET)
                  / TCP(sport=sport, dport=dport, flags=flags, seq=seq, options=list(options),
                        window=65535, **kw) / Raw(data))
    # The full wait for every case: a reset comes from a busy target too.
    got = t.wait(_tcp_from(src, sport), mark, REPLY_WAIT)
    obs = tcp_obs(got, seq, kw.get("ack"))
    if got is not None and got[TCP].flags & 0x02:
        t.send(Ether(dst=t.mac, src=PROBER_MAC) / IPv6(src=src, dst=TARGET)
               / TCP(sport=sport, dport=dport, flags="R", seq=(seq + 1) % 2**32))
    return obs


FULL_OPTS = (("MSS", 1440), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
             ("WScale", 7))


#: SYN-family segments to an open (7) or a closed (9) port: name -> (port, flags,
#: more of ``_syn``'s arguments); each is a probe (``_segment_probe``).
SEGMENTS: dict[str, tuple[int, str, dict[str, Any]]] = {
    "tcp_syn_closed": (9, "S", {}),
    "tcp_syn_open": (7, "S", {"options": FULL_OPTS}),
    "tcp_syn_open_bare": (7, "S", {"options": ()}),
    # MSS 9000 offered: the SYN-ACK's MSS is the link's (1500 - 60).
    "tcp_syn_open_big_mss": (7, "S", {"options": (("MSS", 9000),)}),
    "tcp_syn_open_data": (7, "S", {"data": b"0123456789"}),
    "tcp_synfin_open": (7, "SF", {}),
    "tcp_synfin_closed": (9, "SF", {}),
    "tcp_synrst_open": (7, "SR", {}),
    "tcp_fin_closed": (9, "F", {"options": ()}),
    "tcp_null_open": (7, "", {"options": ()}),
    "tcp_null_closed": (9, "", {"options": ()}),
    "tcp_xmas_open": (7, "FPU", {"options": ()}),
    "tcp_xmas_closed": (9, "FPU", {"options": ()}),
    "tcp_ack_open": (7, "A", {"options": (), "ack": 0x11223344}),
    "tcp_ack_closed": (9, "A", {"options": (), "ack": 0x11223344}),
    "tcp_rst_closed": (9, "R", {"options": ()}),
    "tcp_syn_bad_checksum": (7, "S", {"chksum": 0x1234}),
    "tcp_syn_mss_zero": (7, "S", {"options": (("MSS", 0),)}),
    "tcp_syn_wscale_15": (7, "S", {"options": (("MSS", 1440), ("WScale", 15))}),
    "tcp_syn_sport_zero": (7, "S", {"sport": 0}),
}


def _segment_probe(port: int, flags: str, kw: dict[str, Any]) -> Callable[[Target, str], Obs]:
    return lambda t, src: _syn(t, src, port, flags, **kw)


def tcp_syn_multicast(t: Target, src: str) -> Obs:
    """A SYN to a group (ff02::1): never answered (RFC 9293 3.10.7.2)."""
    mark = t.send(Ether(dst=mcast_mac(ALL_NODES), src=PROBER_MAC)
                  / IPv6(src=src, dst=ALL_NODES) / TCP(sport=40000, dport=9, flags="S"))
    return tcp_obs(t.wait(_tcp_from(src, 40000), mark, NO_REPLY_WAIT), 0)


def tcp_syn_link_local(t: Target, src: str) -> Obs:
    ll = prober_ll(int(src.rsplit(":", 1)[1], 16))
    seq = 5000
    mark = t.send(Ether(dst=t.mac, src=PROBER_MAC) / IPv6(src=ll, dst=TARGET_LL)
                  / TCP(sport=40000, dport=7, flags="S", seq=seq, options=[("MSS", 1440)]))
    got = t.wait(_tcp_from(ll, 40000), mark)
    if got is not None:
        t.send(Ether(dst=t.mac, src=PROBER_MAC) / IPv6(src=ll, dst=TARGET_LL)
               / TCP(sport=40000, dport=7, flags="R", seq=seq + 1))
    return tcp_obs(got, seq)


def tcp_syn_l2_broadcast(t: Target, src: str) -> Obs:
    """A SYN to our address in an Ethernet broadcast frame."""
    mark = t.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=PROBER_MAC) / IPv6(src=src, dst=TARGET)
                  / TCP(sport=40000, dport=7, flags="S", seq=99))
    return tcp_obs(t.wait(_tcp_from(src, 40000), mark, NO_REPLY_WAIT), 99)


def tcp_syn_l2_multicast_closed(t: Target, src: str) -> Obs:
    mark = t.send(Ether(dst=mcast_mac(ALL_NODES), src=PROBER_MAC) / IPv6(src=src, dst=TARGET)
                  / TCP(sport=40000, dport=9, flags="S", seq=99))
    return tcp_obs(t.wait(_tcp_from(src, 40000), mark, NO_REPLY_WAIT), 99)


def tcp_syn_behind_hbh(t: Target, src: str) -> Obs:
    assert isinstance(t, Target6)
    seg = bytes(TCP(sport=40000, dport=9, flags="S", seq=777, options=[]))
    body = upper(src, TARGET, TCP_, seg, 16)
    got = send_wait(t, t.frame(packet(src, TARGET, HBH, opts_header(TCP_, b"") + body)),
                    _tcp_from(src, 40000), REPLY_WAIT)
    return tcp_obs(got, 777)


def _conn(t: Target, src: str, sport: int = 41000) -> Conn6:
    c = probe._conn(t, src, sport, Conn6)
    assert isinstance(c, Conn6)
    return c


_answer_after = probe._answer_after


def _est(t: Target, src: str, make: Callable[[Conn6], Any], timeout: float = NO_REPLY_WAIT,
         alive: bool = True) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, make(c), timeout)
    if alive:
        obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_echo(t: Target, src: str) -> Obs:
    return {"alive": _est(t, src, lambda c: c.seg("A"))["alive_after"]}


def est_rst_out_of_window(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("R", seq=(c.snd_nxt + 2**30) % 2**32))


def est_rst_in_window(t: Target, src: str) -> Obs:
    """RFC 5961 3.2: challenge ACK, the connection stays."""
    return _est(t, src, lambda c: c.seg("R", seq=(c.snd_nxt + 100) % 2**32), REPLY_WAIT)


def est_rst_exact(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("R"), alive=False)


def est_syn(t: Target, src: str) -> Obs:
    """RFC 5961 4.2: a SYN in ESTABLISHED gets a challenge ACK."""
    return _est(t, src, lambda c: c.seg("S", seq=(c.snd_nxt + 500) % 2**32), REPLY_WAIT)


def est_data_beyond_window(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("PA", seq=(c.snd_nxt + 2**20) % 2**32, data=b"far"),
                REPLY_WAIT)


def est_old_data(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("PA", seq=(c.snd_nxt - 100) % 2**32, data=b"old"),
                REPLY_WAIT)


def est_ack_unsent(t: Target, src: str) -> Obs:
    """RFC 9293 3.10.7.4: an ACK for data not yet sent is answered with an ACK."""
    return _est(t, src, lambda c: c.seg("A", ack=(c.rcv_nxt + 5000) % 2**32), REPLY_WAIT)


def est_syn_old_seq(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("S", seq=(c.snd_nxt - 1) % 2**32), REPLY_WAIT)


def est_rst_ack_exact(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("RA"), alive=False)


def est_ack_too_old(t: Target, src: str) -> Obs:
    """An ACK far below SND.UNA (RFC 5961 5.2: outside MAX.SND.WND): dropped, with
    an ACK (Linux answers it)."""
    return _est(t, src, lambda c: c.seg("A", ack=(c.rcv_nxt - 2**30) % 2**32), REPLY_WAIT)


def est_data_without_ack(t: Target, src: str) -> Obs:
    return _est(t, src, lambda c: c.seg("P", data=b"noack"))


def est_data_at_window_edge(t: Target, src: str) -> Obs:
    """Data starting at RCV.NXT + RCV.WND (just past the window): an ACK answers."""
    def make(c: Conn6) -> Any:
        wnd = c.synack[TCP].window << 0
        return c.seg("PA", seq=(c.snd_nxt + wnd + 10) % 2**32, data=b"edge")
    return _est(t, src, make, REPLY_WAIT)


def est_bad_checksum_data(t: Target, src: str) -> Obs:
    """In-window data with a bad checksum: dropped, never acknowledged."""
    return _est(t, src, lambda c: c.seg("PA", data=b"bad", chksum=0x4242))


def _big_echo(c: Conn6, n: int = 1400, wait: float = 1.0) -> list[Any]:
    """Send ``n`` bytes, collect the echoed segments (and keep rcv_nxt up)."""
    t = c.target
    mark = t.send(c.seg("PA", data=bytes(n)))
    c.snd_nxt = (c.snd_nxt + n) % 2**32
    segs = t.collect(lambda p: c.mine(p) and len(bytes(p[TCP].payload)) > 0, mark, wait)
    for p in segs:
        end = (p[TCP].seq + len(bytes(p[TCP].payload))) % 2**32
        if (end - c.rcv_nxt) % 2**32 < 2**31:
            c.rcv_nxt = end
    t.send(c.seg("A"))
    return segs


def _ptb(c: Conn6, mtu: int, quoted: bytes) -> float:
    t = c.target
    assert isinstance(t, Target6)
    body = icmp(c.src, TARGET, 2, 0, mtu.to_bytes(4, "big") + quoted[:1232])
    return t.send(t.frame(packet(c.src, TARGET, ICMP6, body)))


def _ptb_probe(t: Target, src: str, mtu: int, retransmitted: bool = True) -> Obs:
    """1400 bytes echoed in one segment, left unacknowledged (Linux takes a PTB
    only for data in flight); the PTB about it; then what is retransmitted at
    once (``retransmitted``: when the PTB is taken, else a timer decides), and
    the segments of the next 1400 bytes."""
    c = _conn(t, src)
    mark = t.send(c.seg("PA", data=bytes(1400)))
    c.snd_nxt = (c.snd_nxt + 1400) % 2**32
    first = t.wait(lambda p: c.mine(p) and len(bytes(p[TCP].payload)) > 0, mark)
    if first is None:
        c.reset()
        return {"echo": False}
    mark = _ptb(c, mtu, bytes(first[IPv6]))
    again = t.collect(lambda p: c.mine(p) and len(bytes(p[TCP].payload)) > 0, mark, 1.0)
    c.rcv_nxt = (first[TCP].seq + 1400) % 2**32
    t.send(c.seg("A"))
    segs = _big_echo(c)
    c.reset()
    sizes = [len(p[IPv6]) for p in segs]
    obs = {"echo": True, "next_max": max(sizes, default=0),
           "fragmented": any(IPv6ExtHdrFragment in p for p in again + segs)}
    if retransmitted:
        obs["retransmitted"] = bool(again)
        obs["retransmitted_max"] = max((len(p[IPv6]) for p in again), default=0)
    return obs


def est_packet_too_big(t: Target, src: str) -> Obs:
    """RFC 8201: PTB 1280 about one of the target's segments: the next ones fit."""
    return _ptb_probe(t, src, 1280)


def est_packet_too_big_below_minimum(t: Target, src: str) -> Obs:
    """PTB 1000 (< 1280): RFC 8201 / RFC 8021: the path MTU stays 1280, no fragments."""
    return _ptb_probe(t, src, 1000, retransmitted=False)


def est_packet_too_big_about_an_echo(t: Target, src: str) -> Obs:
    """A Packet Too Big (1280) about an echo reply to the peer of a live
    connection: the path MTU to the peer is 1280 now, and the connection's
    next segments fit it too (Linux's tcp_current_mss follows the route's MTU)."""
    assert isinstance(t, Target6)
    c = _conn(t, src)
    reply = send_wait(t, t.frame(packet(src, TARGET, ICMP6, echo(src, data=bytes(1400)))),
                      to_prober(src), REPLY_WAIT)
    if reply is None:
        c.reset()
        return {"echo_reply": False}
    t.send(t.frame(packet(src, TARGET, ICMP6, icmp(src, TARGET, 2, 0, (1280).to_bytes(4, "big")
                                                   + bytes(reply[IPv6])[:1232]))))
    time.sleep(0.2)
    segs = _big_echo(c, wait=2.5)    # femtotcp resends by its RTO
    c.reset()
    return {"echo": bool(segs), "max_packet": max((len(p[IPv6]) for p in segs), default=0)}


def est_packet_too_big_not_ours(t: Target, src: str) -> Obs:
    """A PTB quoting a segment of a connection that does not exist: nothing changes."""
    c = _conn(t, src)
    fake = bytes(IPv6(src=TARGET, dst=src) / TCP(sport=7, dport=45000, flags="A", seq=1, ack=1)
                 / Raw(bytes(1300)))
    _ptb(c, 1280, fake)
    time.sleep(0.2)
    segs = _big_echo(c)
    c.reset()
    return {"echo": bool(segs), "max_packet": max((len(p[IPv6]) for p in segs), default=0)}


def _est_icmp(t: Target, src: str, typ: int, code: int) -> Obs:
    """An ICMPv6 error about a live connection's segment: RFC 5927 / RFC 1122
    4.2.3.9 make it soft; the connection goes on (Linux without IPV6_RECVERR)."""
    c = _conn(t, src)
    assert isinstance(t, Target6)
    inner = bytes(IPv6(src=TARGET, dst=src) / TCP(sport=7, dport=c.sport, seq=c.rcv_nxt,
                                                  ack=c.snd_nxt, flags="A"))
    t.send(t.frame(packet(src, TARGET, ICMP6, icmp(src, TARGET, typ, code, bytes(4) + inner))))
    time.sleep(0.1)
    alive = c.alive()
    c.reset()
    return {"alive_after": alive}


def est_icmp6_port_unreachable(t: Target, src: str) -> Obs:
    return _est_icmp(t, src, 1, 4)


def est_icmp6_time_exceeded(t: Target, src: str) -> Obs:
    return _est_icmp(t, src, 3, 0)


def est_icmp6_parameter_problem(t: Target, src: str) -> Obs:
    return _est_icmp(t, src, 4, 1)


def est_fin(t: Target, src: str) -> Obs:
    """Our FIN is acknowledged and answered with the echo server's FIN."""
    c = _conn(t, src)
    mark = t.send(c.seg("FA"))
    got = t.wait(lambda p: c.mine(p) and bool(p[TCP].flags & 0x01), mark)
    c.reset()
    return {"fin": got is not None,
            "ack_ok": got is not None and got[TCP].ack == (c.snd_nxt + 1) % 2**32}


# -- the list, the environment ---------------------------------------------------------------
PROBES: dict[str, Callable[[Target, str], Obs]] = {
    name: fn for name, fn in list(globals().items())
    if callable(fn) and name.split("_")[0] in ("nd", "icmp6", "mld", "ext", "frag", "addr",
                                               "udp", "tcp", "est")
    and list(inspect.signature(fn).parameters) == ["t", "src"] and not name.endswith("_start")
}
PROBES.update((name, _segment_probe(*case)) for name, case in SEGMENTS.items())
#: Probes that change a target for minutes (an MLDv1 query puts Linux in MLDv1
#: compatibility mode, RFC 3810 8.2.1): run alone, after all the others.
LAST = ("mld_v1_general_query",)
TIMEOUT_PROBES = ("frag_missing_last", "frag_missing_first")


def _ready(t: Target) -> bool:
    return icmp6_echo(t, prober_ip(250)).get("type") == 129 \
        and udp_echo(t, prober_ip(251)).get("answer") == "udp"


def environment() -> Any:
    """Both IPv6 targets, with an IPv6 reassembly time of FRAG_TIME."""
    return probe.launch(probe.Setup(
        "c6", [[f"{a}/64", "nodad"] for a in ADDRESSES],
        ["--ip", f"{probe.TARGET_IP}/24", *(f"--ipv6={a}/64" for a in ADDRESSES)],
        [f"net.ipv6.ip6frag_time={FRAG_TIME}"], Target6, _ready, ipv6_in_linux=True,
        linux_link=["addrgenmode", "none"]))


def run_all(femto: Target, linux: Target,
            names: list[str] | None = None) -> dict[str, tuple[Obs, Obs]]:
    names = names or list(PROBES)
    late = [n for n in names if n in LAST]
    names = [n for n in names if n not in LAST]
    starts = {"frag_missing_last": (frag_missing_last_start, prober_ip(252)),
              "frag_missing_first": (frag_missing_first_start, prober_ip(253))}
    marks = {name: (fn(femto, src), fn(linux, src)) for name, (fn, src) in starts.items()}
    results = probe.run_probes(femto, linux, {n: PROBES[n] for n in names}, prober_ip)
    for name, (_, src) in starts.items():
        f_mark, l_mark = marks[name]
        results[name] = (frag_timeout_end(femto, src, f_mark),
                         frag_timeout_end(linux, src, l_mark))
    for i, name in enumerate(late):
        results[name] = probe.on_both(femto, linux, PROBES[name], prober_ip(240 + i))
    return results

