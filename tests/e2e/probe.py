"""Differential prober: the same crafted frames to femtotcp and to Linux.

Two targets answer at the same address (192.0.2.2/24) on separate links:

- femtotcp: ``femtotcp serve --tap`` inside namespace F; the prober holds an
  AF_PACKET socket on the kernel side of that TAP (the kernel there has no
  address on it, so only the stack answers);
- Linux: a veth pair, one end in namespace L with 192.0.2.2/24 and socat echo
  services on TCP and UDP port 7, the other end in namespace P where the
  prober holds an AF_PACKET socket.

A ``Target`` sends frames and records every frame the target emits; it answers
the target's ARP requests for the prober's addresses (192.0.2.10-250). Each
probe in ``PROBES`` is a function ``probe(target, src_ip)`` that returns an
*observation*: a small dict of normalised facts (flags, sequence numbers
relative to what we sent, options present, ICMP type/code, TTL, DF, ...), so
the two targets' observations can be compared field by field.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import Netns, entered, netns, require_program
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_LSRR, IPOption_RR  # type: ignore
from scapy.layers.l2 import ARP, Ether  # type: ignore
from scapy.packet import Raw  # type: ignore

TARGET_IP = "192.0.2.2"
BCAST_IP = "192.0.2.255"
FEMTO_MAC = "02:00:00:00:00:02"
LINUX_MAC = "02:00:00:00:00:03"
PROBER_MAC = "02:aa:00:00:00:01"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
NO_REPLY_WAIT = 0.6       # how long silence must last to count as "no answer"
REPLY_WAIT = 3.0          # how long to wait for an expected answer
#: Both targets' IPv4 reassembly time (Linux's net.ipv4.ipfrag_time, 30 s by
#: default, and femtotcp's reasm_timeout, its twin): the reassembly-timeout
#: probe waits this long, so it is no longer than the other probes take.
FRAG_TIME = 10

Obs = dict[str, Any]


def prober_ip(i: int) -> str:
    """The prober's i-th source address (one per probe keeps ICMP rate limits apart)."""
    return f"192.0.2.{10 + i}"


def _is_prober_ip(ip: str) -> bool:
    parts = ip.split(".")
    return ip.startswith("192.0.2.") and 10 <= int(parts[3]) <= 250


class Target:
    """One side under test: send frames, see what comes back."""

    def __init__(self, name: str, ns: str, ifname: str, mac: str) -> None:
        self.name = name
        self.mac = mac
        with entered(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, 0))
        self.sock.settimeout(0.1)
        self.frames: list[tuple[float, Any]] = []
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._rx, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()

    def _rx(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            pkt = Ether(data)
            reply = self.answer(pkt)
            if reply is not None:
                self.sock.send(bytes(reply))
            with self.cond:
                self.frames.append((time.monotonic(), pkt))
                self.cond.notify_all()

    def answer(self, pkt: Any) -> Any | None:
        """The prober's own answer to a frame of the target's: the ARP reply for
        one of the prober's addresses (probe6.Target6 answers neighbour
        solicitations instead)."""
        if ARP in pkt and pkt[ARP].op == 1 and _is_prober_ip(pkt[ARP].pdst) \
                and pkt[ARP].psrc == TARGET_IP:
            return (Ether(dst=pkt.src, src=PROBER_MAC)
                    / ARP(op=2, hwsrc=PROBER_MAC, psrc=pkt[ARP].pdst,
                          hwdst=pkt[ARP].hwsrc, pdst=pkt[ARP].psrc))
        return None

    def send(self, pkt: Any) -> float:
        """Send a frame (scapy packet or bytes); returns the mark to wait from."""
        mark = time.monotonic()
        self.sock.send(bytes(pkt))
        return mark

    def wait(self, pred: Callable[[Any], bool], since: float,
             timeout: float = REPLY_WAIT) -> Any | None:
        """The first frame after ``since`` matching ``pred``, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, pkt in self.frames:
                    if t >= since and _safe(pred, pkt):
                        return pkt
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def collect(self, pred: Callable[[Any], bool], since: float,
                duration: float = NO_REPLY_WAIT) -> list[Any]:
        """Every frame matching ``pred`` within ``duration`` after ``since``."""
        time.sleep(max(0.0, since + duration - time.monotonic()))
        with self.cond:
            return [p for t, p in self.frames if t >= since and _safe(pred, p)]

    def eth(self, dst: str | None = None) -> Any:
        return Ether(dst=dst or self.mac, src=PROBER_MAC)


def _safe(pred: Callable[[Any], bool], pkt: Any) -> bool:
    try:
        return bool(pred(pkt))
    except Exception:  # noqa: BLE001 - a predicate on a strange frame is just "no"
        return False


# -- observation helpers -----------------------------------------------------------
def ip_obs(pkt: Any) -> Obs:
    ip = pkt[IP]
    obs = {"ttl": ip.ttl, "df": bool(ip.flags & 2), "ihl": ip.ihl, "tos": ip.tos,
           "checksums_ok": checksums_ok(pkt)}
    if ip.flags & 2:
        obs["df_id_zero"] = ip.id == 0
    return obs


def checksums_ok(pkt: Any) -> bool:
    """Whether the IP and transport checksums of a received frame are right."""
    ip = pkt[IP]
    again = ip.copy()
    del again.chksum
    for layer in (TCP, UDP, ICMP):
        if layer in again and not (layer is UDP and again[UDP].chksum == 0):
            del again[layer].chksum
    rebuilt = IP(bytes(again))
    if rebuilt.chksum != ip.chksum:
        return False
    for layer in (TCP, UDP, ICMP):
        if layer in ip and layer in rebuilt and rebuilt[layer].chksum != ip[layer].chksum:
            return False
    return True


def icmp_obs(pkt: Any | None) -> Obs:
    if pkt is None:
        return {"answer": None}
    ic = pkt[ICMP]
    obs: Obs = {"answer": "icmp", "type": ic.type, "code": ic.code, **ip_obs(pkt)}
    if ic.type in (3, 11, 12):
        quoted = bytes(ic.payload)
        obs["quote_has_ip_header"] = len(quoted) >= 20 and quoted[0] >> 4 == 4
        obs["quote_at_least_28"] = len(quoted) >= 28
        obs["quote_len"] = len(quoted)
    if ic.type == 12:
        obs["pointer"] = ic.ptr
    return obs


def from_target(src: str) -> Callable[[Any], bool]:
    return lambda p: IP in p and p[IP].src == TARGET_IP and p[IP].dst == src


def tcp_from(src: str, sport: int) -> Callable[[Any], bool]:
    return lambda p: (IP in p and TCP in p and p[IP].dst == src
                      and p[TCP].dport == sport)


def icmp_to(src: str) -> Callable[[Any], bool]:
    return lambda p: IP in p and ICMP in p and p[IP].dst == src


def flags_str(tcp: Any) -> str:
    names = [(0x02, "S"), (0x10, "A"), (0x04, "R"), (0x01, "F"), (0x08, "P"), (0x20, "U")]
    return "".join(n for bit, n in names if int(tcp.flags) & bit)


def tcp_obs(pkt: Any | None, seq: int, ack: int | None = None,
            net_obs: Callable[[Any], Obs] | None = None) -> Obs:
    """A TCP answer relative to the segment we sent (seq, ack); ``net_obs``: the
    facts of its network layer (IPv4's ``ip_obs`` unless given)."""
    if pkt is None:
        return {"answer": None}
    t = pkt[TCP]
    obs: Obs = {"answer": "tcp", "flags": flags_str(t), **(net_obs or ip_obs)(pkt)}
    if t.flags & 0x10:
        obs["ack_minus_seq"] = (t.ack - seq) % 2**32
    if ack is not None and not t.flags & 0x02:
        obs["seq_minus_ack"] = (t.seq - ack) % 2**32
    obs["window_zero"] = t.window == 0
    obs["options"] = sorted({o[0] for o in t.options if o[0] not in ("NOP", "EOL")})
    return obs


# -- a TCP connection driven by hand -----------------------------------------------
@dataclass
class Conn:
    """A handshake the prober made itself (no options but MSS; window unscaled)."""
    target: Target
    src: str
    sport: int
    snd_nxt: int = 0       # our next sequence number
    rcv_nxt: int = 0       # the target's next sequence number we expect
    synack: Any = None
    log: list[str] = field(default_factory=list)

    def seg(self, flags: str, seq: int | None = None, ack: int | None = None,
            data: bytes = b"", window: int = 65535, dport: int = 7, **kw: Any) -> Any:
        tcp = TCP(sport=self.sport, dport=dport, flags=flags,
                  seq=self.snd_nxt if seq is None else seq,
                  ack=self.rcv_nxt if ack is None else ack, window=window, **kw)
        return self.target.eth() / self.net() / tcp / Raw(data)

    def net(self) -> Any:
        """The network layer of our segments (probe6.Conn6: IPv6)."""
        return IP(src=self.src, dst=TARGET_IP)

    def mine(self, pkt: Any) -> bool:
        """Whether ``pkt`` is a segment of the target's on this connection."""
        return bool(tcp_from(self.src, self.sport)(pkt))

    def open(self, dport: int = 7) -> bool:
        self.snd_nxt = random.randrange(2**32)
        syn = (self.target.eth() / self.net()
               / TCP(sport=self.sport, dport=dport, flags="S", seq=self.snd_nxt,
                     window=65535, options=[("MSS", 1460)]))
        mark = self.target.send(syn)
        self.synack = self.target.wait(
            lambda p: self.mine(p) and p[TCP].flags == 0x12, mark)
        if self.synack is None:
            return False
        self.snd_nxt = (self.snd_nxt + 1) % 2**32
        self.rcv_nxt = (self.synack[TCP].seq + 1) % 2**32
        self.target.send(self.seg("A"))
        return True

    def alive(self) -> bool:
        """Send 4 bytes and see whether they are acknowledged (and echoed)."""
        mark = self.target.send(self.seg("PA", data=b"ping"))
        want = (self.snd_nxt + 4) % 2**32
        got = self.target.wait(lambda p: self.mine(p)
                               and p[TCP].flags & 0x10 and p[TCP].ack == want
                               and not p[TCP].flags & 0x04, mark)
        self.snd_nxt = want
        if got is not None:
            data = self.target.wait(lambda p: self.mine(p)
                                    and bytes(p[TCP].payload)[:4] == b"ping", mark, 1.0)
            if data is not None:
                self.rcv_nxt = (data[TCP].seq + 4) % 2**32
                self.target.send(self.seg("A"))
        return got is not None

    def reset(self) -> None:
        self.target.send(self.seg("R", ack=0))


# -- the probes ------------------------------------------------------------------
def _arp_answer(t: Target, mark: float, src: str, timeout: float = NO_REPLY_WAIT) -> Obs:
    """The target's ARP reply addressed to ``src`` (the probe's own sender address)."""
    got = t.collect(lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == TARGET_IP
                    and p[ARP].pdst == src, mark, timeout)
    if not got:
        return {"answer": None}
    a = got[0][ARP]
    return {"answer": "arp-reply", "sender_mac_ok": a.hwsrc == t.mac,
            "eth_dst": "broadcast" if got[0].dst == "ff:ff:ff:ff:ff:ff" else "unicast",
            "target_mac": a.hwdst, "target_ip": a.pdst}


def arp_request_ours(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc=src, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_request_unicast(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / ARP(op=1, hwsrc=PROBER_MAC, psrc=src, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_request_other(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc=src, pdst="192.0.2.77"))
    return _arp_answer(t, mark, src)


def arp_probe_zero_sender(t: Target, src: str) -> Obs:
    """RFC 5227 probe for our address: sender IP 0.0.0.0 (Linux defends: replies)."""
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc="0.0.0.0", pdst=TARGET_IP))
    return _arp_answer(t, mark, "0.0.0.0")


def arp_probe_other_ip(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc="0.0.0.0", pdst="192.0.2.78"))
    got = t.collect(lambda p: ARP in p and p[ARP].op == 2, mark)
    return {"answer": "arp-reply" if any(p[ARP].pdst == "0.0.0.0" and p[ARP].psrc ==
                                         "192.0.2.78" for p in got) else None}


def arp_request_from_other_subnet(t: Target, src: str) -> Obs:
    """A request for our address from a sender outside our prefix (Linux answers:
    arp_ignore=0 looks only at the target)."""
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc="198.51.100.7", pdst=TARGET_IP))
    return _arp_answer(t, mark, "198.51.100.7")


def arp_gratuitous(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc=src, pdst=src))
    return _arp_answer(t, mark, src)


def arp_unsolicited_reply(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / ARP(op=2, hwsrc=PROBER_MAC, psrc=src, hwdst=t.mac,
                                pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_conflict_claim(t: Target, src: str) -> Obs:
    """Someone else claims our address (gratuitous ARP for 192.0.2.2)."""
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc="02:aa:00:00:00:09", psrc=TARGET_IP, pdst=TARGET_IP))
    got = t.collect(lambda p: ARP in p and p.src == t.mac, mark)
    return {"arp_frames": len(got) > 0}


def arp_rarp_opcode(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=3, hwsrc=PROBER_MAC, psrc=src, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_bad_hlen(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwlen=8, hwsrc=PROBER_MAC + ":00:00", psrc=src,
                        hwdst="00:00:00:00:00:00:00:00", pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_request_self_target_mac(t: Target, src: str) -> Obs:
    """A request whose target hardware address is already filled in: still answered."""
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=PROBER_MAC, psrc=src, hwdst=t.mac, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


OTHER_MAC = "02:aa:00:00:00:77"


def _learned(t: Target, src: str, arp: Any) -> Obs:
    """Send ``arp`` (sender ``src`` at OTHER_MAC), then ping from ``src``: did the
    target take OTHER_MAC into its cache (the reply goes there, no request first)?"""
    t.send(arp)
    time.sleep(0.1)
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=8, id=77, seq=1))
    got = t.wait(icmp_to(src), mark)
    if got is None:
        return {"answer": None}
    return {"answer": "icmp", "learned": got.dst == OTHER_MAC}


def arp_learn_from_request(t: Target, src: str) -> Obs:
    return _learned(t, src, t.eth("ff:ff:ff:ff:ff:ff")
                    / ARP(op=1, hwsrc=OTHER_MAC, psrc=src, pdst=TARGET_IP))


def arp_learn_from_unsolicited_reply(t: Target, src: str) -> Obs:
    return _learned(t, src, t.eth() / ARP(op=2, hwsrc=OTHER_MAC, psrc=src, hwdst=t.mac,
                                          pdst=TARGET_IP))


def arp_learn_from_gratuitous(t: Target, src: str) -> Obs:
    return _learned(t, src, t.eth("ff:ff:ff:ff:ff:ff")
                    / ARP(op=1, hwsrc=OTHER_MAC, psrc=src, pdst=src))


def arp_learn_from_request_for_other(t: Target, src: str) -> Obs:
    return _learned(t, src, t.eth("ff:ff:ff:ff:ff:ff")
                    / ARP(op=1, hwsrc=OTHER_MAC, psrc=src, pdst="192.0.2.77"))


def arp_broadcast_sender_mac(t: Target, src: str) -> Obs:
    mark = t.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=PROBER_MAC)
                  / ARP(op=1, hwsrc="ff:ff:ff:ff:ff:ff", psrc=src, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def arp_multicast_sender_mac(t: Target, src: str) -> Obs:
    mark = t.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=PROBER_MAC)
                  / ARP(op=1, hwsrc="01:00:5e:00:00:01", psrc=src, pdst=TARGET_IP))
    return _arp_answer(t, mark, src)


def _echo(t: Target, src: str, ip: Any, payload: bytes = b"abcdefgh",
          dst_mac: str | None = None, ident: int = 0x1234) -> Obs:
    mark = t.send(t.eth(dst_mac) / ip / ICMP(type=8, id=ident, seq=1) / Raw(payload))
    got = t.wait(icmp_to(src), mark, NO_REPLY_WAIT if ip.dst == BCAST_IP else REPLY_WAIT)
    obs = icmp_obs(got)
    if got is not None and got[ICMP].type == 0:
        obs["id_seq_ok"] = got[ICMP].id == ident and got[ICMP].seq == 1
        obs["payload_ok"] = bytes(got[ICMP].payload) == payload
    return obs


def icmp_echo(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP))


def icmp_echo_odd(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP), payload=bytes(range(37)))


def icmp_echo_empty(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP), payload=b"")


def icmp_echo_big_df(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP, flags="DF"), payload=bytes(1400))


def options_obs(pkt: Any) -> str:
    """The IP options of an answer, as facts both targets can share: each
    option's type, length and pointer, a record route's addresses, a
    timestamp option's flags, overflow count and slots (an address, and "t"
    for a time that was filled in, "0" for one left empty: the clocks differ)."""
    raw = bytes(pkt[IP])
    opts = raw[20:(raw[0] & 0x0F) * 4]
    out = []
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind in (0, 1):
            out.append(str(kind))
            i += 1
            continue
        length = opts[i + 1] if i + 1 < len(opts) else 0
        if length < 2:
            out.append(f"bad{kind}")
            break
        body = opts[i:i + length]
        if kind == 7:
            addrs = [socket.inet_ntoa(body[j:j + 4]) for j in range(3, length - 3, 4)]
            out.append(f"rr/{length}/{body[2]}/" + ",".join(addrs))
        elif kind == 68:
            flag, over = body[3] & 0x0F, body[3] >> 4
            step = 8 if flag in (1, 3) else 4
            slots = []
            for j in range(4, length - step + 1, step):
                time_at = j + step - 4
                cell = "t" if any(body[time_at:time_at + 4]) else "0"
                if step == 8:
                    cell = socket.inet_ntoa(body[j:j + 4]) + "@" + cell
                slots.append(cell)
            out.append(f"ts/{length}/{body[2]}/{flag}/{over}/" + ",".join(slots))
        else:
            out.append(f"opt{kind}/{length}")
        i += length
    return " ".join(out)


def _echo_with_options(t: Target, src: str, opts: bytes) -> Obs:
    """An echo request carrying ``opts`` (raw, a multiple of 4 octets): the
    answer, and its options."""
    mark = t.send(bytes(Ether(dst=t.mac, src=PROBER_MAC, type=0x0800))
                  + _with_options(src, opts))
    got = t.wait(from_target(src), mark, REPLY_WAIT)
    obs = icmp_obs(got)
    if got is not None:
        obs["options"] = options_obs(got)
    return obs


def icmp_echo_record_route(t: Target, src: str) -> Obs:
    obs = _echo(t, src, IP(src=src, dst=TARGET_IP,
                           options=[IPOption_RR(routers=["0.0.0.0"] * 3)]))
    return obs


def icmp_echo_record_route_options(t: Target, src: str) -> Obs:
    """RFC 1122 3.2.2.6: the route recorded on the way in and on the way out."""
    return _echo_with_options(t, src, bytes([7, 15, 4]) + bytes(12) + bytes(1))


def icmp_echo_record_route_one_slot(t: Target, src: str) -> Obs:
    """Room for one address: the target's on receipt, none left for the reply."""
    return _echo_with_options(t, src, bytes([7, 7, 4]) + bytes(4) + bytes(1))


def icmp_echo_record_route_full(t: Target, src: str) -> Obs:
    return _echo_with_options(t, src, bytes([7, 7, 8]) + socket.inet_aton("192.0.2.77")
                              + bytes(1))


def icmp_echo_record_route_among_others(t: Target, src: str) -> Obs:
    """An unknown option and a NOP beside it: only the record route comes back."""
    return _echo_with_options(t, src, bytes([0x1E, 4, 0, 0, 1, 7, 11, 4]) + bytes(8))


def icmp_echo_timestamp_only(t: Target, src: str) -> Obs:
    return _echo_with_options(t, src, bytes([68, 20, 5, 0]) + bytes(16))


def icmp_echo_timestamp_and_address(t: Target, src: str) -> Obs:
    return _echo_with_options(t, src, bytes([68, 36, 5, 1]) + bytes(32))


def icmp_echo_timestamp_prespecified(t: Target, src: str) -> Obs:
    """Prespecified: the target's slot first, the prober's after."""
    return _echo_with_options(t, src, bytes([68, 20, 5, 3]) + socket.inet_aton(TARGET_IP)
                              + bytes(4) + socket.inet_aton(src) + bytes(4))


def icmp_echo_timestamp_prespecified_other(t: Target, src: str) -> Obs:
    """Prespecified for another host: nothing recorded."""
    return _echo_with_options(t, src, bytes([68, 12, 5, 3]) + socket.inet_aton("192.0.2.77")
                              + bytes(4))


def icmp_echo_timestamp_full(t: Target, src: str) -> Obs:
    """A full timestamp option: its overflow count goes up by one."""
    return _echo_with_options(t, src, bytes([68, 12, 13, 0x10]) + bytes(8))


def icmp_echo_timestamp_full_overflow(t: Target, src: str) -> Obs:
    """Full, and 15 hosts counted already: Parameter Problem at the count."""
    return _echo_with_options(t, src, bytes([68, 12, 13, 0xF0]) + bytes(8))


def icmp_echo_timestamp_no_room_for_reply(t: Target, src: str) -> Obs:
    """Room for the target's time on receipt, half a slot for the reply's:
    Linux sends no reply (ip_options_echo fails)."""
    return _echo_with_options(t, src, bytes([68, 10, 5, 0]) + bytes(6) + bytes(2))


def icmp_echo_record_route_mid_slot(t: Target, src: str) -> Obs:
    """A pointer that leaves less than an address: Parameter Problem at it."""
    return _echo_with_options(t, src, bytes([7, 7, 6]) + bytes(4) + bytes(1))


def icmp_echo_record_route_twice(t: Target, src: str) -> Obs:
    return _echo_with_options(t, src, bytes([7, 7, 4]) + bytes(4) + bytes([7, 7, 4])
                              + bytes(4) + bytes(2))


def udp_closed_port_record_route(t: Target, src: str) -> Obs:
    """Port unreachable about a datagram with Record Route: the error echoes it."""
    frame = t.eth() / IP(src=src, dst=TARGET_IP, options=[IPOption_RR(routers=["0.0.0.0"] * 2)]) \
        / UDP(sport=4000, dport=9999) / Raw(b"q" * 20)
    mark = t.send(frame)
    got = t.wait(from_target(src), mark, REPLY_WAIT)
    obs = icmp_obs(got)
    if got is not None:
        obs["options"] = options_obs(got)
    return obs


def icmp_echo_fragmented_reply(t: Target, src: str) -> Obs:
    """A 3000-byte echo in fragments: the reply comes back fragmented to the MTU."""
    payload = bytes(i & 0xFF for i in range(3000))
    whole = bytes(IP(src=src, dst=TARGET_IP, id=0x707) / ICMP(type=8, id=0x707, seq=1)
                  / Raw(payload))[20:]
    mark = time.monotonic()
    for off in range(0, len(whole), 1480):
        more = off + 1480 < len(whole)
        t.send(t.eth() / IP(src=src, dst=TARGET_IP, id=0x707, proto=1, frag=off // 8,
                            flags="MF" if more else 0) / Raw(whole[off:off + 1480]))
    t.wait(lambda p: IP in p and p[IP].dst == src and p[IP].frag > 0
           and not p[IP].flags & 1, mark)
    frags = t.collect(lambda p: IP in p and p[IP].dst == src and p[IP].proto == 1, mark, 0.3)
    return {"fragments": sorted((p[IP].frag * 8, len(p[IP].payload), bool(p[IP].flags & 1))
                                for p in frags),
            "same_id": len({p[IP].id for p in frags}) == 1}


def icmp_echo_ttl0(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP, ttl=0))


def icmp_echo_broadcast(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=BCAST_IP), dst_mac="ff:ff:ff:ff:ff:ff")


def icmp_echo_l2_broadcast(t: Target, src: str) -> Obs:
    """Unicast IP destination inside a link-layer broadcast frame."""
    return _echo(t, src, IP(src=src, dst=TARGET_IP), dst_mac="ff:ff:ff:ff:ff:ff")


def icmp_echo_bad_checksum(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=8, chksum=0x1234)
                  / Raw(b"x" * 8))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def icmp_timestamp(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / ICMP(type=13, id=7, seq=1, ts_ori=123456, ts_rx=0, ts_tx=0))
    got = t.wait(icmp_to(src), mark, NO_REPLY_WAIT)
    obs = icmp_obs(got)
    if got is not None and got[ICMP].type == 14:
        ic = got[ICMP]
        now = int(time.time() * 1000) % 86_400_000
        obs["id_seq_ok"] = ic.id == 7 and ic.seq == 1
        obs["originate_copied"] = ic.ts_ori == 123456
        obs["times_plausible"] = abs(ic.ts_rx - now) < 5000 and abs(ic.ts_tx - now) < 5000
        obs["length"] = len(bytes(ic))
    return obs


def icmp_timestamp_broadcast(t: Target, src: str) -> Obs:
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff") / IP(src=src, dst=BCAST_IP)
                  / ICMP(type=13, id=7, seq=1))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def icmp_echo_tos(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP, tos=0x28))


def icmp_echo_network_address(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst="192.0.2.0"), dst_mac="ff:ff:ff:ff:ff:ff")


def icmp_echo_limited_broadcast(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst="255.255.255.255"), dst_mac="ff:ff:ff:ff:ff:ff")


def icmp_echo_from_broadcast_source(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=BCAST_IP, dst=TARGET_IP) / ICMP(type=8, id=5, seq=1))
    return icmp_obs(t.wait(lambda p: IP in p and ICMP in p and p[IP].src == TARGET_IP
                           and p[ICMP].id == 5, mark, NO_REPLY_WAIT))


def icmp_echo_land(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=TARGET_IP, dst=TARGET_IP) / ICMP(type=8, id=6, seq=1))
    got = t.collect(lambda p: IP in p and ICMP in p and p[ICMP].id == 6, mark)
    return {"answer": "icmp" if got else None}


def icmp_echo_zero_source(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src="0.0.0.0", dst=TARGET_IP) / ICMP(type=8, id=8, seq=1))
    got = t.collect(lambda p: IP in p and ICMP in p and p[ICMP].id == 8
                    and p[IP].src == TARGET_IP, mark)
    return {"answer": "icmp" if got else None}


def icmp_echo_loopback_source(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src="127.0.0.1", dst=TARGET_IP) / ICMP(type=8, id=9, seq=1))
    got = t.collect(lambda p: IP in p and ICMP in p and p[ICMP].id == 9
                    and p[IP].src == TARGET_IP, mark)
    return {"answer": "icmp" if got else None}


def icmp_echo_loopback_destination(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst="127.0.0.1") / ICMP(type=8, id=10, seq=1))
    return {"answer": "frame" if t.collect(lambda p: IP in p and p[IP].dst == src, mark)
            else None}


def icmp_error_about_nothing(t: Target, src: str) -> Obs:
    """A port unreachable quoting a datagram we never sent: no answer."""
    inner = IP(src=TARGET_IP, dst=src) / UDP(sport=5555, dport=6666)
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=3, code=3)
                  / Raw(bytes(inner)))
    return {"answer": "frame" if t.collect(from_target(src), mark) else None}


def icmp_unknown_type(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=99, code=0)
                  / Raw(b"x" * 8))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def _frag_echo(t: Target, src: str, order: Callable[[list[Any]], list[Any]],
               ident: int, size: int = 64, fragsize: int = 16) -> Obs:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    whole = IP(src=src, dst=TARGET_IP, id=ident) / ICMP(type=8, id=ident, seq=1) / Raw(payload)
    raw = bytes(whole)
    body = raw[20:]
    frags = []
    for off in range(0, len(body), fragsize):
        more = off + fragsize < len(body)
        frags.append(IP(src=src, dst=TARGET_IP, id=ident, proto=1, frag=off // 8,
                        flags="MF" if more else 0) / Raw(body[off:off + fragsize]))
    mark = time.monotonic()
    for f in order(frags):
        t.send(t.eth() / f)
    got = t.wait(icmp_to(src), mark)
    obs = icmp_obs(got)
    if got is not None and got[ICMP].type == 0:
        obs["payload_ok"] = bytes(got[ICMP].payload) == payload
    return obs


def frag_in_order(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: f, 0x101)


def frag_reversed(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: f[::-1], 0x102)


def frag_duplicate(t: Target, src: str) -> Obs:
    return _frag_echo(t, src, lambda f: [f[0], f[1], f[1], f[0], *f[2:]], 0x103)


def frag_tiny(t: Target, src: str) -> Obs:
    """8-byte fragments: the first does not even hold the whole ICMP header."""
    return _frag_echo(t, src, lambda f: f, 0x104, size=32, fragsize=8)


def frag_overlap(t: Target, src: str) -> Obs:
    """A fragment overlapping the previous one with different bytes (RFC 5722 spirit)."""
    def order(f: list[Any]) -> list[Any]:
        bad = f[1].copy()
        bad.frag = f[1].frag + 1
        bad[Raw].load = b"\xee" * 16
        bad.flags = "MF"
        return [f[0], f[1], bad, *f[2:]]
    return _frag_echo(t, src, order, 0x105)


def frag_oversize(t: Target, src: str) -> Obs:
    """Ping of death: the last fragment ends past 65535 bytes."""
    def order(f: list[Any]) -> list[Any]:
        last = f[-1].copy()
        last.frag = 8189
        last[Raw].load = b"\x00" * 100
        return [*f[:-1], last]
    return _frag_echo(t, src, order, 0x107)


def frag_overlap_same_data(t: Target, src: str) -> Obs:
    """A fragment that partly overlaps another with the same bytes."""
    def order(f: list[Any]) -> list[Any]:
        both = f[1].copy()
        both[Raw].load = bytes(f[1][Raw].load) + bytes(f[2][Raw].load)[:8]
        return [f[0], both, *f[2:]]
    return _frag_echo(t, src, order, 0x108)


def frag_subset(t: Target, src: str) -> Obs:
    """A fragment wholly inside one already held: dropped alone, the datagram completes."""
    def order(f: list[Any]) -> list[Any]:
        sub = f[1].copy()
        sub[Raw].load = bytes(f[1][Raw].load)[:8]
        return [f[0], f[1], f[2], sub, *f[3:]]
    return _frag_echo(t, src, order, 0x109)


def frag_subset_of_two(t: Target, src: str) -> Obs:
    """A fragment covering exactly two held ones (in-order, contiguous): a duplicate."""
    def order(f: list[Any]) -> list[Any]:
        both = f[0].copy()
        both[Raw].load = bytes(f[0][Raw].load) + bytes(f[1][Raw].load)
        return [f[0], f[1], f[2], both, *f[3:]]
    return _frag_echo(t, src, order, 0x10A)


def frag_missing_last_start(t: Target, src: str) -> float:
    """Start the reassembly-timeout probe: the first fragment only."""
    raw = bytes(IP(src=src, dst=TARGET_IP, id=0x106) / ICMP(type=8, id=1, seq=1)
                / Raw(bytes(40)))
    return t.send(t.eth() / IP(src=src, dst=TARGET_IP, id=0x106, proto=1, flags="MF",
                               frag=0) / Raw(raw[20:36]))


def frag_missing_last_end(t: Target, src: str, mark: float) -> Obs:
    """The time-exceeded error, due FRAG_TIME s after the first fragment (ipfrag_time)."""
    return icmp_obs(t.wait(icmp_to(src), mark,
                           max(0.0, mark + FRAG_TIME + 4 - time.monotonic())))


def _raw_ip(t: Target, src: str, raw: bytes) -> Obs:
    mark = t.send(bytes(Ether(dst=t.mac, src=PROBER_MAC, type=0x0800)) + raw)
    return icmp_obs(t.wait(from_target(src), mark, NO_REPLY_WAIT))


def _echo_bytes(src: str, **ipkw: Any) -> bytearray:
    return bytearray(bytes(IP(src=src, dst=TARGET_IP, **ipkw) / ICMP(type=8, id=9, seq=1)
                           / Raw(b"y" * 16)))


def _fix_ip_checksum(b: bytearray, ihl: int) -> bytearray:
    b[10:12] = b"\0\0"
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, ihl * 4, 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    b[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    return b


def ip_bad_ihl(t: Target, src: str) -> Obs:
    b = _echo_bytes(src)
    b[0] = 0x44
    return _raw_ip(t, src, bytes(_fix_ip_checksum(b, 4)))


def ip_ihl_beyond_total(t: Target, src: str) -> Obs:
    b = _echo_bytes(src)
    b[0] = 0x4F
    b[2:4] = (40).to_bytes(2, "big")
    return _raw_ip(t, src, bytes(_fix_ip_checksum(b, 5)))


def ip_total_len_beyond_frame(t: Target, src: str) -> Obs:
    b = _echo_bytes(src)
    b[2:4] = (len(b) + 100).to_bytes(2, "big")
    return _raw_ip(t, src, bytes(_fix_ip_checksum(b, 5)))


def ip_trailing_padding(t: Target, src: str) -> Obs:
    """Total length shorter than the frame: the rest is padding, the packet is fine."""
    return _raw_ip(t, src, bytes(_echo_bytes(src)) + b"\xaa" * 30)


def ip_bad_checksum(t: Target, src: str) -> Obs:
    b = _echo_bytes(src)
    b[10] ^= 0xFF
    return _raw_ip(t, src, bytes(b))


def ip_bad_version(t: Target, src: str) -> Obs:
    b = _echo_bytes(src)
    b[0] = 0x55
    return _raw_ip(t, src, bytes(_fix_ip_checksum(b, 5)))


def _with_options(src: str, opts: bytes) -> bytes:
    assert len(opts) % 4 == 0
    inner = bytes(ICMP(type=8, id=9, seq=1) / Raw(b"y" * 16))
    ihl = 5 + len(opts) // 4
    hdr = bytearray(bytes(IP(src=src, dst=TARGET_IP, proto=1, ihl=ihl,
                             len=ihl * 4 + len(inner), options=[]))[:20]) + opts
    hdr[0] = 0x40 | ihl
    return bytes(_fix_ip_checksum(hdr, ihl)) + inner


def ip_reserved_flag(t: Target, src: str) -> Obs:
    """The reserved ("evil") flag bit set on an otherwise fine echo request."""
    b = _echo_bytes(src)
    b[6] |= 0x80
    return _raw_ip(t, src, bytes(_fix_ip_checksum(b, 5)))


def icmp_echo_nonzero_code(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=8, code=5, id=3, seq=1)
                  / Raw(b"code"))
    got = t.wait(icmp_to(src), mark)
    obs = icmp_obs(got)
    return obs


def icmp_info_request(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=15, id=3, seq=1))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def icmp_mask_request(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=17, id=3, seq=1)
                  / Raw(bytes(4)))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def ip_option_len_zero(t: Target, src: str) -> Obs:
    return _raw_ip(t, src, _with_options(src, bytes([0x07, 0x00, 0x04, 0x00])))


def ip_option_len_one(t: Target, src: str) -> Obs:
    return _raw_ip(t, src, _with_options(src, bytes([0x07, 0x01, 0x04, 0x00])))


def ip_option_len_past_end(t: Target, src: str) -> Obs:
    return _raw_ip(t, src, _with_options(src, bytes([0x07, 0x27, 0x04, 0x00])))


def ip_option_rr_bad_pointer(t: Target, src: str) -> Obs:
    return _raw_ip(t, src, _with_options(src, bytes([0x07, 0x07, 0x02, 0, 0, 0, 0, 0])))


def ip_option_unknown(t: Target, src: str) -> Obs:
    """An unknown option with a sane length: ignored (RFC 1122 3.2.1.8)."""
    return _raw_ip(t, src, _with_options(src, bytes([0x1E, 0x04, 0x00, 0x00])))


def ip_lsrr_more_hops(t: Target, src: str) -> Obs:
    return _echo(t, src, IP(src=src, dst=TARGET_IP,
                            options=[IPOption_LSRR(routers=["192.0.2.99"])]))


def ip_lsrr_exhausted(t: Target, src: str) -> Obs:
    opt = IPOption_LSRR(routers=["192.0.2.99"], pointer=8)
    return _echo(t, src, IP(src=src, dst=TARGET_IP, options=[opt]))


def ip_unknown_protocol(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP, proto=253) / Raw(b"z" * 12))
    return icmp_obs(t.wait(icmp_to(src), mark, NO_REPLY_WAIT))


def _udp(t: Target, src: str, dport: int, payload: bytes = b"hello", dst: str = TARGET_IP,
         dst_mac: str | None = None, raw_udp: bytes | None = None, **ipkw: Any) -> Obs:
    ip = IP(src=src, dst=dst, **ipkw)
    if raw_udp is not None:
        frame: Any = t.eth(dst_mac) / IP(src=src, dst=dst, proto=17, **ipkw) / Raw(raw_udp)
    else:
        frame = t.eth(dst_mac) / ip / UDP(sport=4000, dport=dport) / Raw(payload)
    mark = t.send(frame)
    got = t.wait(from_target(src), mark, REPLY_WAIT if dport == 7 and dst == TARGET_IP
                 and raw_udp is None else NO_REPLY_WAIT)
    if got is None:
        return {"answer": None}
    if UDP in got and ICMP not in got:
        return {"answer": "udp", "payload": bytes(got[UDP].payload).hex(),
                "sport": got[UDP].sport, "dport": got[UDP].dport, **ip_obs(got)}
    obs = icmp_obs(got)
    if ICMP in got and got[ICMP].type == 3:
        quoted = bytes(got[ICMP].payload)
        sent = bytes(frame[IP])
        obs["quote_is_prefix_of_sent"] = sent.startswith(quoted) or quoted.startswith(sent)
        obs["quote_len"] = len(quoted)
    return obs


def udp_echo_fragmented(t: Target, src: str) -> Obs:
    """A 3000-byte datagram in fragments to the echo: the answer is the same bytes,
    fragmented to the MTU."""
    payload = bytes((i * 13) & 0xFF for i in range(3000))
    whole = bytes(IP(src=src, dst=TARGET_IP, id=0x909) / UDP(sport=4001, dport=7)
                  / Raw(payload))[20:]
    mark = time.monotonic()
    for off in range(0, len(whole), 1480):
        more = off + 1480 < len(whole)
        t.send(t.eth() / IP(src=src, dst=TARGET_IP, id=0x909, proto=17, frag=off // 8,
                            flags="MF" if more else 0) / Raw(whole[off:off + 1480]))
    t.wait(lambda p: IP in p and p[IP].dst == src and p[IP].frag > 0
           and not p[IP].flags & 1, mark)
    frags = t.collect(lambda p: IP in p and p[IP].dst == src and p[IP].proto == 17,
                      mark, 0.3)
    body = b"".join(bytes(p[IP].payload) for p in sorted(frags, key=lambda p: p[IP].frag))
    return {"fragments": sorted((p[IP].frag * 8, len(p[IP].payload), bool(p[IP].flags & 1))
                                for p in frags),
            "payload_ok": body[8:] == payload}


def udp_echo(t: Target, src: str) -> Obs:
    return _udp(t, src, 7)


def udp_closed_port(t: Target, src: str) -> Obs:
    return _udp(t, src, 9999, payload=b"q" * 100)


def udp_closed_port_broadcast(t: Target, src: str) -> Obs:
    return _udp(t, src, 9999, dst=BCAST_IP, dst_mac="ff:ff:ff:ff:ff:ff")


def udp_closed_port_l2_broadcast(t: Target, src: str) -> Obs:
    return _udp(t, src, 9999, dst_mac="ff:ff:ff:ff:ff:ff")


def udp_zero_checksum(t: Target, src: str) -> Obs:
    raw = bytes(UDP(sport=4000, dport=7, len=8 + 5, chksum=0) / Raw(b"hello"))
    raw = raw[:6] + b"\0\0" + raw[8:]
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP, proto=17) / Raw(raw))
    got = t.wait(lambda p: from_target(src)(p) and UDP in p, mark)
    return {"answer": None} if got is None else {"answer": "udp",
                                                  "payload": bytes(got[UDP].payload).hex()}


def udp_bad_checksum(t: Target, src: str) -> Obs:
    raw = bytearray(bytes(IP(src=src, dst=TARGET_IP) / UDP(sport=4000, dport=7)
                          / Raw(b"hello"))[20:])
    raw[6] ^= 0x55
    return _udp(t, src, 7, raw_udp=bytes(raw))


def udp_length_beyond_payload(t: Target, src: str) -> Obs:
    raw = bytearray(bytes(IP(src=src, dst=TARGET_IP) / UDP(sport=4000, dport=7)
                          / Raw(b"hello"))[20:])
    raw[4:6] = (40).to_bytes(2, "big")
    raw[6:8] = b"\0\0"
    return _udp(t, src, 7, raw_udp=bytes(raw))


def udp_length_short(t: Target, src: str) -> Obs:
    """UDP length 10 in a 13-byte datagram: the receiver uses the first 2 bytes."""
    inner = bytes(IP(src=src, dst=TARGET_IP) / UDP(sport=4000, dport=7, len=10)
                  / Raw(b"he"))[20:]
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP, proto=17) / Raw(inner + b"llo"))
    got = t.wait(lambda p: from_target(src)(p) and UDP in p, mark)
    return {"answer": None} if got is None else {"answer": "udp",
                                                  "payload": bytes(got[UDP].payload).hex()}


def udp_length_below_header(t: Target, src: str) -> Obs:
    raw = bytearray(bytes(UDP(sport=4000, dport=7, chksum=0) / Raw(b"hello")))
    raw[4:6] = (4).to_bytes(2, "big")
    raw[6:8] = b"\0\0"
    return _udp(t, src, 7, raw_udp=bytes(raw))


def _syn(t: Target, src: str, dport: int, flags: str = "S", data: bytes = b"",
         options: Any = (("MSS", 1460),), sport: int = 40000, **kw: Any) -> Obs:
    seq = random.randrange(2**32)
    pkt = (t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                 options=list(options), window=65535, **kw) / Raw(data))
    mark = t.send(pkt)
    ack = kw.get("ack")
    got = t.wait(tcp_from(src, sport), mark, REPLY_WAIT if "S" in flags and dport == 7
                 and "F" not in flags and "R" not in flags else NO_REPLY_WAIT)
    obs = tcp_obs(got, seq, ack)
    if got is not None and got[TCP].flags & 0x02:
        for o in got[TCP].options:
            if o[0] == "MSS":
                obs["mss"] = o[1]
        t.send(t.eth() / IP(src=src, dst=TARGET_IP)
               / TCP(sport=sport, dport=dport, flags="R", seq=(seq + 1) % 2**32))
    return obs


FULL_OPTS = (("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
             ("WScale", 7))


def tcp_syn_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9)


def tcp_syn_data_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, data=b"0123456789")


def tcp_syn_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=FULL_OPTS)


def tcp_syn_open_bare(t: Target, src: str) -> Obs:
    """A SYN without options: the SYN/ACK must not offer what the peer did not."""
    return _syn(t, src, 7, options=())


def tcp_syn_open_data(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, data=b"0123456789")


def tcp_synfin_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="SF")


def tcp_synfin_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="SF")


def tcp_synrst_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="SR")


def tcp_fin_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="F", options=())


def tcp_fin_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="F", options=())


def tcp_null_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="", options=())


def tcp_null_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="", options=())


def tcp_xmas_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="FPU", options=())


def tcp_xmas_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="FPU", options=())


def tcp_ack_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="A", options=(), ack=0x11223344)


def tcp_ack_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="A", options=(), ack=0x11223344)


def tcp_rst_closed(t: Target, src: str) -> Obs:
    return _syn(t, src, 9, flags="R", options=())


def tcp_rst_open(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, flags="R", options=())


def tcp_syn_opt_len_zero(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\x08\x00\x00\x00"))


def tcp_syn_opt_len_one(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\x08\x01\x00\x00"))


def tcp_syn_opt_past_end(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\x08\x20\x00\x00"))


def tcp_syn_ts_bad_length(t: Target, src: str) -> Obs:
    """A timestamp option of length 8 (not 10): ignored, the SYN still answered."""
    return _syn(t, src, 7, options=(), **_raw_opts(
        b"\x02\x04\x05\xb4\x08\x08" + bytes(6)))


def tcp_syn_wscale_bad_length(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\x03\x04\x07\x00"))


def tcp_syn_sackperm_bad_length(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\x04\x03\x00\x00"))


def tcp_syn_unknown_option(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), **_raw_opts(b"\x02\x04\x05\xb4\xfd\x04\x12\x34"))


def tcp_syn_with_ip_options(t: Target, src: str) -> Obs:
    seq = 777
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP,
                               options=[IPOption_RR(routers=["0.0.0.0"] * 2)])
                  / TCP(sport=40010, dport=7, flags="S", seq=seq, options=[("MSS", 1460)]))
    got = t.wait(tcp_from(src, 40010), mark)
    obs = tcp_obs(got, seq)
    if got is not None and got[TCP].flags & 0x02:
        t.send(t.eth() / IP(src=src, dst=TARGET_IP)
               / TCP(sport=40010, dport=7, flags="R", seq=seq + 1))
    return obs


def tcp_syn_fragmented(t: Target, src: str) -> Obs:
    seq = 888
    raw = bytes(IP(src=src, dst=TARGET_IP, id=0xABC)
                / TCP(sport=40011, dport=7, flags="S", seq=seq,
                      options=[("MSS", 1460), ("NOP", None), ("NOP", None),
                               ("SAckOK", b"")]))[20:]
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP, id=0xABC, proto=6, flags="MF")
                  / Raw(raw[:16]))
    t.send(t.eth() / IP(src=src, dst=TARGET_IP, id=0xABC, proto=6, frag=2) / Raw(raw[16:]))
    got = t.wait(tcp_from(src, 40011), mark)
    obs = tcp_obs(got, seq)
    if got is not None and got[TCP].flags & 0x02:
        t.send(t.eth() / IP(src=src, dst=TARGET_IP)
               / TCP(sport=40011, dport=7, flags="R", seq=seq + 1))
    return obs


def tcp_syn_mss_zero(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(("MSS", 0),))


def tcp_syn_wscale_15(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(("MSS", 1460), ("NOP", None), ("WScale", 15)))


def tcp_syn_bad_offset(t: Target, src: str) -> Obs:
    """Data offset 4 (below the header): dropped."""
    return _syn(t, src, 7, options=(), dataofs=4)


def tcp_syn_offset_past_end(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, options=(), dataofs=15)


def tcp_syn_bad_checksum(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, chksum=0x1234)


def tcp_syn_sport_zero(t: Target, src: str) -> Obs:
    return _syn(t, src, 7, sport=0)


def tcp_syn_dport_zero(t: Target, src: str) -> Obs:
    return _syn(t, src, 0, sport=40001)


def tcp_syn_ts_echo(t: Target, src: str) -> Obs:
    """SYN-ACK timestamps: TSecr echoes our TSval; the window-scale shift is sane."""
    seq = 5000
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=40002, dport=7, flags="S", seq=seq, window=65535,
                        options=list(FULL_OPTS)))
    got = t.wait(lambda p: tcp_from(src, 40002)(p) and p[TCP].flags == 0x12, mark)
    if got is None:
        return {"answer": None}
    opts = dict((o[0], o[1]) for o in got[TCP].options)
    t.send(t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=40002, dport=7, flags="R", seq=seq + 1))
    return {"answer": "tcp", "tsecr_echoes": opts.get("Timestamp", (0, 0))[1] == 12345,
            "tsval_nonzero": opts.get("Timestamp", (0, 0))[0] != 0,
            "wscale_ok": 0 <= opts.get("WScale", -1) <= 14,
            "window_nonzero": got[TCP].window > 0}


def tcp_syn_ack_flags_open(t: Target, src: str) -> Obs:
    """SYN+ACK to a listener (no connection): RST with seq = the ACK field."""
    return _syn(t, src, 7, flags="SA", options=(), ack=0x55667788)


def tcp_syn_from_broadcast_source(t: Target, src: str) -> Obs:
    mark = t.send(t.eth() / IP(src=BCAST_IP, dst=TARGET_IP)
                  / TCP(sport=40003, dport=9, flags="S", seq=1))
    got = t.collect(lambda p: TCP in p and p[TCP].dport == 40003, mark)
    return {"answer": "tcp" if got else None}


def tcp_port_scan(t: Target, src: str) -> Obs:
    """SYNs to 100 closed ports at once (a scan): how many get their RST/ACK."""
    mark = time.monotonic()
    for port in range(2000, 2100):
        t.send(t.eth() / IP(src=src, dst=TARGET_IP)
               / TCP(sport=43000, dport=port, flags="S", seq=port))
    got = t.collect(lambda p: tcp_from(src, 43000)(p) and p[TCP].flags == 0x14, mark, 1.0)
    # Linux may lose one of a burst under load: "nearly all" is what is compared.
    return {"nearly_all_reset": len({p[TCP].sport for p in got}) >= 90}


def sweep_closed_ports(t: Target, src: str) -> Obs:
    """An nmap -sS style sweep: SYNs to 1,000 closed ports at about 2,000 a second.
    Linux answers each with RST/ACK (none rate limited), so no port looks filtered.
    run_all runs it alone, after the others: its 1,000 answers would crowd theirs."""
    frames = [bytes(t.eth() / IP(src=src, dst=TARGET_IP)
                    / TCP(sport=44000, dport=port, flags="S", seq=port))
              for port in range(3000, 4000)]
    mark = time.monotonic()
    for i in range(0, len(frames), 20):
        for f in frames[i:i + 20]:
            t.send(f)
        time.sleep(0.01)
    got = t.collect(lambda p: tcp_from(src, 44000)(p) and p[TCP].flags == 0x14, mark, 2.0)
    # Allow a few frames lost in a queue on a loaded machine; a rate limit (the
    # old default: a burst of 200, then 1,000/s) loses hundreds.
    return {"nearly_all_reset": len({p[TCP].sport for p in got}) >= 950}


def tcp_syn_broadcast(t: Target, src: str) -> Obs:
    seq = 1000
    mark = t.send(t.eth("ff:ff:ff:ff:ff:ff") / IP(src=src, dst=BCAST_IP)
                  / TCP(sport=40000, dport=9, flags="S", seq=seq))
    return tcp_obs(t.wait(tcp_from(src, 40000), mark, NO_REPLY_WAIT), seq)


def _raw_opts(opts: bytes) -> dict[str, Any]:
    """Options scapy would 'fix': passed as the TCP payload with a larger data offset."""
    return {"_rawopts": opts}


_orig_syn = _syn


def _syn(t: Target, src: str, dport: int, flags: str = "S", data: bytes = b"",  # noqa: F811
         options: Any = (("MSS", 1460),), sport: int = 40000, **kw: Any) -> Obs:
    raw = kw.pop("_rawopts", None)
    if raw is None:
        return _orig_syn(t, src, dport, flags, data, options, sport, **kw)
    seq = random.randrange(2**32)
    hdr = bytearray(bytes(TCP(sport=sport, dport=dport, flags=flags, seq=seq, window=65535,
                              dataofs=5 + len(raw) // 4, chksum=0)))
    seg = bytes(hdr) + raw + data
    ip = IP(src=src, dst=TARGET_IP, proto=6)
    full = IP(bytes(ip / Raw(seg)))
    pseudo = TCP(seg)
    pseudo.chksum = None
    # recompute the checksum over the exact bytes
    from scapy.utils import checksum as _cs  # type: ignore
    ph = (bytes(full)[12:20] + b"\x00\x06" + len(seg).to_bytes(2, "big"))
    csum = _cs(ph + seg)
    seg = seg[:16] + csum.to_bytes(2, "big") + seg[18:]
    mark = t.send(t.eth() / ip / Raw(seg))
    got = t.wait(tcp_from(src, sport), mark)
    obs = tcp_obs(got, seq)
    if got is not None and got[TCP].flags & 0x02:
        t.send(t.eth() / IP(src=src, dst=TARGET_IP)
               / TCP(sport=sport, dport=dport, flags="R", seq=(seq + 1) % 2**32))
    return obs


# -- probes on an established connection ---------------------------------------------
def _conn(t: Target, src: str, sport: int = 41000, cls: type[Conn] = Conn) -> Conn:
    c = cls(t, src, sport)
    assert c.open(), f"{t.name}: no handshake"
    return c


def _answer_after(c: Conn, pkt: Any, timeout: float = NO_REPLY_WAIT) -> Obs:
    mark = c.target.send(pkt)
    got = c.target.wait(c.mine, mark, timeout)
    if got is None:
        return {"answer": None}
    tcp = got[TCP]
    return {"answer": "tcp", "flags": flags_str(tcp),
            "ack_is_rcv_nxt": tcp.ack == c.snd_nxt,
            "seq_is_snd_nxt": tcp.seq == c.rcv_nxt}


def est_rst_out_of_window(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("R", seq=(c.snd_nxt + 2**30) % 2**32))
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_rst_in_window(t: Target, src: str) -> Obs:
    """RFC 5961 3.2: in the window but not exact -> challenge ACK, connection stays."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("R", seq=(c.snd_nxt + 100) % 2**32), REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_rst_exact(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("R"))
    mark = t.send(c.seg("PA", data=b"late"))
    got = t.wait(tcp_from(src, c.sport), mark, REPLY_WAIT)
    obs["after"] = None if got is None else flags_str(got[TCP])
    return obs


def est_rst_ack_exact(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("RA"))
    obs["alive_after"] = c.alive()
    return obs


def est_syn(t: Target, src: str) -> Obs:
    """RFC 5961 4.2: a SYN in ESTABLISHED gets a challenge ACK."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("S", seq=(c.snd_nxt + 500) % 2**32), REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_syn_old_seq(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("S", seq=(c.snd_nxt - 1) % 2**32), REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_data_beyond_window(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("PA", seq=(c.snd_nxt + 2**20) % 2**32, data=b"far"),
                        REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_old_data(t: Target, src: str) -> Obs:
    """A duplicate of data already acknowledged: answered with an ACK."""
    c = _conn(t, src)
    c.alive()
    obs = _answer_after(c, c.seg("PA", seq=(c.snd_nxt - 4) % 2**32, data=b"ping"),
                        REPLY_WAIT)
    c.reset()
    return obs


def est_ack_unsent(t: Target, src: str) -> Obs:
    """RFC 5961 5.2: an ACK for data never sent is dropped (and ACKed)."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("PA", ack=(c.rcv_nxt + 100000) % 2**32, data=b"abcd"),
                        REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_ack_too_old(t: Target, src: str) -> Obs:
    """RFC 5961 5.2: an ACK older than SND.UNA - MAX.SND.WND: drop the segment, ACK."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("PA", ack=(c.rcv_nxt - 2**30) % 2**32, data=b"old!"),
                        REPLY_WAIT)
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_data_without_ack(t: Target, src: str) -> Obs:
    """RFC 9293 3.10.7.4 fifth: a segment without ACK in a synchronized state is dropped."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("P", data=b"noak"))
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_overlapping_data(t: Target, src: str) -> Obs:
    """Data starting before RCV.NXT: the new part is taken (RFC 9293 3.10.7.4 first)."""
    c = _conn(t, src)
    t.send(c.seg("PA", data=b"ab"))
    mark = t.send(c.seg("PA", data=b"abcd"))
    want = (c.snd_nxt + 4) % 2**32
    got = t.wait(lambda p: tcp_from(src, c.sport)(p) and p[TCP].ack == want, mark)
    echo = t.collect(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) > 0,
                     mark - 0.5, 1.5)
    c.reset()
    stream = _stream(echo, c.rcv_nxt)
    # We never ACK the echo, so Nagle may hold "cd" back: compare the stream's shape.
    return {"acked": got is not None,
            "echo_ok": stream.startswith("ab") and "abcd".startswith(stream)}


def _stream(segs: list[Any], start: int) -> str:
    """The byte stream the target sent from ``start``, retransmissions folded in."""
    data = bytearray()
    for p in sorted(segs, key=lambda p: (p[TCP].seq - start) % 2**32):
        off = (p[TCP].seq - start) % 2**32
        payload = bytes(p[TCP].payload)
        if off <= len(data):
            data[off:off + len(payload)] = payload
    return data.decode(errors="replace")


def est_fin_out_of_order(t: Target, src: str) -> Obs:
    """A FIN after a hole: ACKed as a duplicate, not taken until the hole is filled."""
    c = _conn(t, src)
    mark = t.send(c.seg("FA", seq=(c.snd_nxt + 4) % 2**32))
    dup = t.wait(tcp_from(src, c.sport), mark)
    mark2 = t.send(c.seg("PA", data=b"fill"))
    fin_ack = t.wait(lambda p: tcp_from(src, c.sport)(p)
                     and p[TCP].ack == (c.snd_nxt + 5) % 2**32, mark2)
    c.reset()
    return {"dup_ack": None if dup is None else dup[TCP].ack == c.snd_nxt,
            "fin_taken_after_fill": fin_ack is not None}


def est_bad_offset(t: Target, src: str) -> Obs:
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("PA", data=b"abcd", dataofs=4))
    obs["alive_after"] = c.alive()
    c.reset()
    return obs


def est_urgent_beyond(t: Target, src: str) -> Obs:
    """URG with the pointer far past the segment: the data still arrives in order."""
    c = _conn(t, src)
    mark = t.send(c.seg("PAU", data=b"urgentdata", urgptr=5000))
    got = t.wait(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) >= 1,
                 mark, REPLY_WAIT)
    acked = t.wait(lambda p: tcp_from(src, c.sport)(p)
                   and p[TCP].ack == (c.snd_nxt + 10) % 2**32, mark, REPLY_WAIT)
    c.reset()
    return {"acked_all": acked is not None,
            "echo": None if got is None else bytes(got[TCP].payload).decode(errors="replace")}


def est_zero_window_probe(t: Target, src: str) -> Obs:
    """We advertise window 0 and send data: the echo must wait and probe (RFC 9293 3.8.6.1)."""
    c = _conn(t, src)
    mark = t.send(c.seg("PA", data=b"hello", window=0))
    c.snd_nxt = (c.snd_nxt + 5) % 2**32
    got = t.collect(tcp_from(src, c.sport), mark, 2.0)
    payload = [bytes(p[TCP].payload) for p in got]
    c.reset()
    acks = [p for p in got if p[TCP].ack == c.snd_nxt]
    # The first answer ACKs our data; anything after it is a window probe.
    return {"data_sent_into_zero_window": any(len(x) > 1 for x in payload),
            "acked": bool(acks), "probed": len(got) >= 2}


def est_fin(t: Target, src: str) -> Obs:
    """Our FIN: ACKed; the echo closes too (FIN), and a segment after that gets a RST."""
    c = _conn(t, src)
    mark = t.send(c.seg("FA"))
    fin_seq = c.snd_nxt
    c.snd_nxt = (c.snd_nxt + 1) % 2**32
    acked = t.wait(lambda p: tcp_from(src, c.sport)(p) and p[TCP].flags & 0x10
                   and p[TCP].ack == c.snd_nxt, mark)
    their_fin = t.wait(lambda p: tcp_from(src, c.sport)(p) and p[TCP].flags & 0x01, mark)
    obs: Obs = {"fin_acked": acked is not None, "their_fin": their_fin is not None,
                "fin_seq_ok": fin_seq is not None}
    if their_fin is not None:
        c.rcv_nxt = (their_fin[TCP].seq + 1) % 2**32
        t.send(c.seg("A"))
        time.sleep(0.2)
        obs["after_close"] = _answer_after(c, c.seg("PA", data=b"zz")).get("flags")
    return obs


def est_last_ack(t: Target, src: str) -> Obs:
    """Our FIN, their FIN (LAST_ACK): a retransmitted FIN of ours is ACKed again;
    our last ACK closes; a segment after that gets a RST."""
    c = _conn(t, src)
    mark = t.send(c.seg("FA"))
    fin = t.wait(lambda p: tcp_from(src, c.sport)(p) and p[TCP].flags & 0x01, mark)
    if fin is None:
        return {"their_fin": False}
    again = _answer_after(c, c.seg("FA"), REPLY_WAIT)
    c.snd_nxt = (c.snd_nxt + 1) % 2**32
    c.rcv_nxt = (fin[TCP].seq + 1) % 2**32
    t.send(c.seg("A"))
    time.sleep(0.1)
    mark = t.send(c.seg("A", data=b"late"))
    late = t.wait(tcp_from(src, c.sport), mark, REPLY_WAIT)
    return {"their_fin": True, "fin_again": again.get("flags"),
            "after_last_ack": None if late is None else flags_str(late[TCP])}


def _half_open(t: Target, src: str, sport: int) -> tuple[int, Any]:
    seq = random.randrange(2**32)
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=sport, dport=7, flags="S", seq=seq, options=[("MSS", 1460)]))
    synack = t.wait(lambda p: tcp_from(src, sport)(p) and p[TCP].flags == 0x12, mark)
    return seq, synack


def est_syn_recv_rst(t: Target, src: str) -> Obs:
    """An exact RST in SYN_RECEIVED ends the embryo: the late ACK meets a listener."""
    seq, synack = _half_open(t, src, 42002)
    if synack is None:
        return {"synack": False}
    t.send(t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=42002, dport=7, flags="R", seq=(seq + 1) % 2**32))
    time.sleep(0.1)
    ack = (synack[TCP].seq + 1) % 2**32
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=42002, dport=7, flags="A", seq=(seq + 1) % 2**32, ack=ack))
    return tcp_obs(t.wait(tcp_from(src, 42002), mark, REPLY_WAIT), seq + 1, ack)


def est_syn_recv_bad_ack(t: Target, src: str) -> Obs:
    """RFC 9293 3.10.7.4: an unacceptable ACK in SYN_RECEIVED gets <SEQ=SEG.ACK><RST>;
    the embryo stays and the right ACK still completes the handshake."""
    seq, synack = _half_open(t, src, 42003)
    if synack is None:
        return {"synack": False}
    bad = (synack[TCP].seq + 1000) % 2**32
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=42003, dport=7, flags="A", seq=(seq + 1) % 2**32, ack=bad))
    obs = tcp_obs(t.wait(tcp_from(src, 42003), mark, REPLY_WAIT), seq + 1, bad)
    c = Conn(t, src, 42003, snd_nxt=(seq + 1) % 2**32, rcv_nxt=(synack[TCP].seq + 1) % 2**32)
    t.send(c.seg("A"))
    obs["completes_after"] = c.alive()
    c.reset()
    return obs


def est_icmp_port_unreachable(t: Target, src: str) -> Obs:
    """RFC 1122 4.2.3.9 / RFC 5927: an ICMP error about a live connection is soft:
    the connection goes on (Linux keeps it)."""
    c = _conn(t, src)
    inner = bytes(IP(src=TARGET_IP, dst=src, proto=6)
                  / TCP(sport=7, dport=c.sport, seq=c.rcv_nxt, ack=c.snd_nxt, flags="A"))
    t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=3, code=3) / Raw(inner[:28]))
    time.sleep(0.1)
    alive = c.alive()
    c.reset()
    return {"alive_after": alive}


def est_icmp_frag_needed(t: Target, src: str) -> Obs:
    """RFC 1191: "fragmentation needed" with an MTU of 1000 about one of the target's
    segments shrinks what it sends next."""
    c = _conn(t, src)
    data = bytes(1400)
    mark = t.send(c.seg("PA", data=data))
    c.snd_nxt = (c.snd_nxt + 1400) % 2**32
    first = t.wait(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) > 0,
                   mark)
    if first is None:
        c.reset()
        return {"echo": False}
    inner = bytes(first[IP])[:first[IP].ihl * 4 + 8]
    t.send(t.eth() / IP(src=src, dst=TARGET_IP) / ICMP(type=3, code=4, nexthopmtu=1000)
           / Raw(inner))
    time.sleep(0.3)
    c.rcv_nxt = (first[TCP].seq + len(bytes(first[TCP].payload))) % 2**32
    mark = t.send(c.seg("PA", data=data))
    segs = t.collect(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) > 0,
                     mark, 1.0)
    c.reset()
    return {"echo": True, "shrunk": bool(segs) and max(len(p[IP]) for p in segs) <= 1000}


def est_small_mss(t: Target, src: str) -> Obs:
    """Our SYN says MSS 200: the echo's segments respect it."""
    seq = random.randrange(2**32)
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=42010, dport=7, flags="S", seq=seq, window=65535,
                        options=[("MSS", 200)]))
    synack = t.wait(lambda p: tcp_from(src, 42010)(p) and p[TCP].flags == 0x12, mark)
    if synack is None:
        return {"synack": False}
    c = Conn(t, src, 42010, snd_nxt=(seq + 1) % 2**32,
             rcv_nxt=(synack[TCP].seq + 1) % 2**32)
    t.send(c.seg("A"))
    mark = t.send(c.seg("PA", data=bytes(180)))
    c.snd_nxt = (c.snd_nxt + 180) % 2**32
    t.send(c.seg("PA", data=bytes(180)))
    c.snd_nxt = (c.snd_nxt + 180) % 2**32
    segs = t.collect(lambda p: tcp_from(src, 42010)(p) and len(bytes(p[TCP].payload)) > 0,
                     mark, 1.0)
    c.reset()
    sizes = [len(bytes(p[TCP].payload)) for p in segs]
    return {"echoed": bool(sizes), "within_mss": bool(sizes) and max(sizes) <= 200}


def est_small_window(t: Target, src: str) -> Obs:
    """We advertise a 10-byte window: the echo never sends past it."""
    c = _conn(t, src)
    mark = t.send(c.seg("PA", data=bytes(100), window=10))
    c.snd_nxt = (c.snd_nxt + 100) % 2**32
    segs = t.collect(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) > 0,
                     mark, 1.0)
    c.reset()
    ends = [(p[TCP].seq - c.rcv_nxt) % 2**32 + len(bytes(p[TCP].payload)) for p in segs]
    return {"within_window": all(e <= 10 for e in ends)}


def est_bare_fin(t: Target, src: str) -> Obs:
    """A FIN without ACK in ESTABLISHED: dropped before any sequence check, no ACK
    drawn, the connection untouched (Linux tcp_validate_incoming / tcp_ack)."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("F"))
    obs["alive"] = c.alive()
    c.reset()
    return obs


def est_bare_fin_out_of_window(t: Target, src: str) -> Obs:
    """As above, with a SEQ far outside the window: still no answer (an ACK-less
    segment is dropped before the sequence check that would draw an ACK)."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("F", seq=(c.snd_nxt + 2**20) % 2**32))
    obs["alive"] = c.alive()
    c.reset()
    return obs


def est_bare_push_data(t: Target, src: str) -> Obs:
    """Data with PSH but no ACK flag, in window: dropped silently, never delivered."""
    c = _conn(t, src)
    obs = _answer_after(c, c.seg("P", data=b"noack"))
    obs["alive"] = c.alive()
    c.reset()
    return obs


def est_zero_length_at_window_edge(t: Target, src: str) -> Obs:
    """An empty ACK whose SEQ is RCV.NXT + RCV.WND: RFC 9293 3.10.7.4's table finds it
    not acceptable (RCV.WND > 0 needs SEQ < RCV.NXT + RCV.WND), so an ACK answers it."""
    c = _conn(t, src)
    mark = t.send(c.seg("PA", data=b"ping"))
    c.snd_nxt = (c.snd_nxt + 4) % 2**32
    segs = t.collect(tcp_from(src, c.sport), mark, 1.0)
    for p in segs:
        n = len(bytes(p[TCP].payload))
        if n:
            c.rcv_nxt = (p[TCP].seq + n) % 2**32
    if not segs:
        return {"error": "no answer to data"}
    t.send(c.seg("A"))
    wnd = segs[-1][TCP].window      # the right edge the target advertised last
    obs = _answer_after(c, c.seg("A", seq=(c.snd_nxt + wnd) % 2**32))
    c.reset()
    return obs


def est_tiny_peer_window(t: Target, src: str) -> Obs:
    """The peer never offers more than 10 bytes (RFC 9293 3.8.6.2.1: the sender's
    silly-window avoidance measures against the largest window offered): the echo
    comes back in 10-byte segments, none held back."""
    c = Conn(t, src, 41000)
    c.snd_nxt = random.randrange(2**32)
    mark = t.send(t.eth() / IP(src=src, dst=TARGET_IP)
                  / TCP(sport=c.sport, dport=7, flags="S", seq=c.snd_nxt, window=10,
                        options=[("MSS", 1460)]))
    c.synack = t.wait(lambda p: tcp_from(src, c.sport)(p) and p[TCP].flags == 0x12, mark)
    assert c.synack is not None, f"{t.name}: no handshake"
    c.snd_nxt = (c.snd_nxt + 1) % 2**32
    c.rcv_nxt = (c.synack[TCP].seq + 1) % 2**32
    t.send(c.seg("A", window=10))
    mark = t.send(c.seg("PA", data=bytes(range(40)), window=10))
    c.snd_nxt = (c.snd_nxt + 40) % 2**32
    sizes: list[int] = []
    deadline = time.monotonic() + 4.0
    while sum(sizes) < 40 and time.monotonic() < deadline:
        got = t.wait(lambda p: tcp_from(src, c.sport)(p) and len(bytes(p[TCP].payload)) > 0
                     and p[TCP].seq == c.rcv_nxt, mark, 1.5)
        if got is None:
            break
        n = len(bytes(got[TCP].payload))
        sizes.append(n)
        c.rcv_nxt = (c.rcv_nxt + n) % 2**32
        mark = t.send(c.seg("A", window=10))
    c.reset()
    return {"sizes": sizes}


def _burst_answers(t: Target, src: str, make: Callable[[Conn, int], Any]) -> int:
    c = _conn(t, src)
    mark = time.monotonic()
    for i in range(10):
        t.send(make(c, i))
    got = t.collect(tcp_from(src, c.sport), mark, 0.4)
    c.reset()
    return len(got)


def est_rst_burst_rate_limited(t: Target, src: str) -> Obs:
    """Ten in-window RSTs at once: challenge ACKs are rate limited per connection
    (RFC 5961 7; Linux's tcp_invalid_ratelimit, 500 ms)."""
    n = _burst_answers(t, src, lambda c, i: c.seg("R", seq=(c.snd_nxt + 100 + i) % 2**32))
    return {"some": n >= 1, "limited": n <= 3}


def est_syn_burst_rate_limited(t: Target, src: str) -> Obs:
    n = _burst_answers(t, src, lambda c, i: c.seg("S", seq=(c.snd_nxt + 100 + i) % 2**32))
    return {"some": n >= 1, "limited": n <= 3}


def est_out_of_window_burst(t: Target, src: str) -> Obs:
    n = _burst_answers(t, src, lambda c, i: c.seg("PA", seq=(c.snd_nxt + 2**20 + i) % 2**32,
                                                   data=b"far"))
    return {"some": n >= 1, "limited": n <= 3}


def est_dup_syn_in_syn_received(t: Target, src: str) -> Obs:
    seq = random.randrange(2**32)
    syn = (t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=42000, dport=7, flags="S", seq=seq, options=[("MSS", 1460)]))
    mark = t.send(syn)
    first = t.wait(lambda p: tcp_from(src, 42000)(p) and p[TCP].flags == 0x12, mark)
    mark2 = t.send(syn)
    second = t.wait(tcp_from(src, 42000), mark2, REPLY_WAIT)
    t.send(t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=42000, dport=7, flags="R", seq=(seq + 1) % 2**32))
    return {"second": None if second is None else flags_str(second[TCP]),
            "same_isn": bool(first and second and first[TCP].seq == second[TCP].seq),
            "ack_ok": bool(second and second[TCP].ack == (seq + 1) % 2**32)}


def est_syn_different_seq_in_syn_received(t: Target, src: str) -> Obs:
    seq = random.randrange(2**32)

    def syn(s: int) -> Any:
        return (t.eth() / IP(src=src, dst=TARGET_IP)
                / TCP(sport=42001, dport=7, flags="S", seq=s, options=[("MSS", 1460)]))
    mark = t.send(syn(seq))
    t.wait(lambda p: tcp_from(src, 42001)(p) and p[TCP].flags == 0x12, mark)
    mark2 = t.send(syn((seq + 1000) % 2**32))
    second = t.wait(tcp_from(src, 42001), mark2, REPLY_WAIT)
    t.send(t.eth() / IP(src=src, dst=TARGET_IP)
           / TCP(sport=42001, dport=7, flags="R", seq=(seq + 1) % 2**32))
    return tcp_obs(second, seq)


PROBES: dict[str, Callable[[Target, str], Obs]] = {
    name: fn for name, fn in list(globals().items())
    if callable(fn) and name.split("_")[0] in ("arp", "icmp", "frag", "ip", "udp", "tcp", "est")
    and not name.startswith(("ip_obs", "icmp_obs", "icmp_to", "tcp_obs", "tcp_from",
                             "frag_missing"))
}


# -- the environment ---------------------------------------------------------------
def _sysctl(ns: Netns, *settings: str) -> None:
    for s in settings:
        ns.run("sysctl", "-qw", s, check=False)


@dataclass
class Setup:
    """What differs between the IPv4 and the IPv6 environment (probe6.py)."""
    prefix: str                              # namespace names' prefix
    linux_addrs: list[list[str]]             # `ip addr add` argument lists for l0
    femto_args: list[str]                    # serve's address flags
    linux_sysctls: list[str]                 # in L, each checked after it is set
    target_cls: type[Target]
    ready: Callable[[Target], bool]          # the target answers (socat is up)
    ipv6_in_linux: bool = False              # IPv6 stays off in F and P in any case
    linux_link: list[str] = field(default_factory=list)   # more `ip link set l0` arguments


@contextlib.contextmanager
def launch(setup: Setup) -> Iterator[tuple[Target, Target]]:
    """Both targets up and answering; everything torn down afterwards."""
    require_program("socat")
    with contextlib.ExitStack() as stack:
        nf = stack.enter_context(netns(f"{setup.prefix}f"))
        nl = stack.enter_context(netns(f"{setup.prefix}l"))
        np_ = stack.enter_context(netns(f"{setup.prefix}p"))
        # The kernel sides of the TAP (F) and of the prober's veth (P) hold no
        # address and must not answer or solicit anything themselves.
        for n in (nf, nl, np_) if not setup.ipv6_in_linux else (nf, np_):
            _sysctl(n, "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1")
        # Linux: veth l0 in L, p0 (no address) in P.
        subprocess.run(["ip", "-n", nl.name, "link", "add", "l0", "address", LINUX_MAC,
                        "type", "veth", "peer", "name", "p0", "netns", np_.name],
                       check=True, capture_output=True)
        if setup.linux_link:
            nl.ip("link", "set", "l0", *setup.linux_link)
        for addr in setup.linux_addrs:
            nl.ip("addr", "add", *addr, "dev", "l0")
        for setting in setup.linux_sysctls:
            nl.run("sysctl", "-qw", setting)
            key, _, want = setting.partition("=")
            got = nl.run("sysctl", "-n", key).stdout.strip()
            if got != want:
                raise RuntimeError(f"{key} is {got}, not {want}")
        # No GSO super-frames on the veth: the prober must see real segments.
        nl.ip("link", "set", "l0", "gso_max_segs", "1", check=False)
        nl.ip("link", "set", "l0", "up")
        np_.ip("link", "set", "p0", "up")
        nl.popen("socat", "TCP6-LISTEN:7,fork,reuseaddr,ipv6only=0" if setup.ipv6_in_linux
                 else "TCP-LISTEN:7,fork,reuseaddr", "PIPE",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nl.popen("socat", "UDP6-RECVFROM:7,fork" if setup.ipv6_in_linux
                 else "UDP-RECVFROM:7,fork", "PIPE",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # femtotcp on a TAP in F: serve's stack, with the same reassembly time.
        src = Path(__file__).resolve().parents[2] / "src"
        env = dict(os.environ, PYTHONPATH=str(src))
        tap = f"cft{secrets.token_hex(3)}"     # unique: other runs may be going on
        nf.popen(sys.executable, str(Path(__file__).with_name("probe_target.py")),
                 str(FRAG_TIME), "--tap", tap, *setup.femto_args, "--mac", FEMTO_MAC,
                 "--tcp-echo", "7", "--udp-echo", "7", stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 15
        while nf.ip("link", "show", tap, check=False).returncode != 0 \
                or "UP" not in nf.ip("link", "show", tap).stdout.split(">")[0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"femtotcp serve did not bring {tap} up")
            time.sleep(0.05)
        femto = setup.target_cls("femtotcp", nf.name, tap, FEMTO_MAC)
        stack.callback(femto.close)
        linux = setup.target_cls("linux", np_.name, "p0", LINUX_MAC)
        stack.callback(linux.close)
        # Both answer an echo before probing starts (socat and the stack are ready).
        for tgt in (femto, linux):
            deadline = time.monotonic() + 15
            while not setup.ready(tgt):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{tgt.name} does not answer")
        yield femto, linux


def environment() -> contextlib.AbstractContextManager[tuple[Target, Target]]:
    """The IPv4 targets at TARGET_IP, with an IPv4 reassembly time of FRAG_TIME."""
    return launch(Setup(
        "cf", [[f"{TARGET_IP}/24"]], ["--ip", f"{TARGET_IP}/24"],
        [f"net.ipv4.ipfrag_time={FRAG_TIME}"], Target,
        lambda tgt: icmp_echo(tgt, prober_ip(190)).get("type") == 0
        and udp_echo(tgt, prober_ip(191)).get("answer") == "udp"))


def run_probes(femto: Target, linux: Target, probes: dict[str, Callable[[Target, str], Obs]],
               address: Callable[[int], str]) -> dict[str, tuple[Obs, Obs]]:
    """Every probe on both targets at once, probe i from ``address(i)`` (its own
    source address, so ICMP rate limits per destination stay apart)."""
    def one(tgt: Target, i: int, name: str) -> Obs:
        try:
            return probes[name](tgt, address(i))
        except Exception as exc:  # noqa: BLE001 - reported as the observation
            return {"error": repr(exc)}

    results: dict[str, tuple[Obs, Obs]] = {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        futs = {name: (pool.submit(one, femto, i, name), pool.submit(one, linux, i, name))
                for i, name in enumerate(probes)}
        for name, (ff, fl) in futs.items():
            results[name] = (ff.result(), fl.result())
    return results


def compare(results: dict[str, tuple[Obs, Obs]], name: str,
            accepted: dict[str, tuple[str, Obs]], meaningless: tuple[str, ...] = ()) -> None:
    """Assert femtotcp's observation for probe ``name``: Linux's, or exactly what
    ``accepted`` documents ({"answer": None} replaces the whole observation,
    any other dict those fields of Linux's). ``checksums_ok`` is compared only
    for femtotcp (the kernel leaves its own to the veth's offload), the fields
    in ``meaningless`` not at all."""
    assert name in results, f"probe {name} did not run"
    femto, linux = results[name]
    assert "error" not in linux, f"the probe failed against Linux: {linux['error']}"
    assert "error" not in femto, f"the probe failed against femtotcp: {femto['error']}"
    assert femto.get("checksums_ok", True) is True, f"femtotcp sent a bad checksum: {femto}"
    skip = ("checksums_ok", *meaningless)
    linux = {k: v for k, v in linux.items() if k not in skip}
    femto = {k: v for k, v in femto.items() if k not in skip}
    if name in accepted:
        reason, shown = accepted[name]
        expected = dict(shown) if shown.get("answer", "x") is None else {**linux, **shown}
        assert femto == expected, f"accepted difference changed ({reason}); linux: {linux}"
    else:
        assert femto == linux, f"femtotcp diverges from Linux: femtotcp {femto}, linux {linux}"


def on_both(femto: Target, linux: Target, fn: Callable[..., Obs], *args: Any) -> tuple[Obs, Obs]:
    """``fn(target, *args)`` on both targets at once."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        f, l_ = (pool.submit(fn, tgt, *args) for tgt in (femto, linux))
        return f.result(), l_.result()


def run_all(femto: Target, linux: Target,
            names: list[str] | None = None) -> dict[str, tuple[Obs, Obs]]:
    """Every probe on both targets (each probe has its own source address and ports)."""
    names = names or list(PROBES)
    frag_src = prober_ip(192)
    frag_marks = (frag_missing_last_start(femto, frag_src),
                  frag_missing_last_start(linux, frag_src))
    results = run_probes(femto, linux, {n: PROBES[n] for n in names}, prober_ip)
    results["sweep_closed_ports"] = on_both(femto, linux, sweep_closed_ports, prober_ip(193))
    # Reassembly timeout (FRAG_TIME on both, Linux's ipfrag_time): wait for it.
    with ThreadPoolExecutor(max_workers=2) as pool:
        ends = [pool.submit(frag_missing_last_end, tgt, frag_src, mark)
                for tgt, mark in zip((femto, linux), frag_marks, strict=True)]
        results["frag_missing_last"] = (ends[0].result(), ends[1].result())
    return results
