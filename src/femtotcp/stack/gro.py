"""Software GRO: a device's read batch of MTU-sized TCP/IPv4 frames merged
into super-frames before IP and TCP see them.

Linux merges the consecutive in-order TCP segments of one flow that arrive in
one NAPI poll into one packet whatever the NIC offloads (generic receive
offload: ``dev_gro_receive``, ``inet_gro_receive``, ``tcp_gro_receive``); the
stack above then pays its per-segment cost once per super-frame. Our devices
read a batch of frames back to back (``TunTapDevice.on_readable``), so the
same can be done to a batch: ``coalesce`` takes the batch and returns the
frames to deliver, in order, a run of mergeable segments replaced by one
frame whose TCP checksum was verified here, segment by segment (so the stack
takes it through the trusted entry, ``csum_ok``; ``Stack.receive_batch``).

Sans-I/O and stateless between batches: nothing is held past the batch, so no
timer is needed and nothing waits for a later frame.

A frame joins a run (the rules of Linux's ``inet_gro_receive`` and
``tcp_gro_receive``; any other frame passes through untouched and ends the
run, so the order of everything stays as read):

- an untagged Ethernet frame, IPv4 without options (IHL 5), no fragment
  (only DF may be set), the IP total length exactly the frame's, protocol
  TCP, at most ``limit`` bytes (MTU-sized: a GRO super-frame from a vnet
  TAP is not merged again), with payload;
- its IP header checksum right, and its TCP checksum verified here (or
  vouched for by the device);
- the same Ethernet header, TOS, TTL, addresses, ports, acknowledgment
  number, data offset, window and TCP option bytes as the run's first
  segment, and the same flags except PSH and FIN (so ECE too);
- only ACK, PSH, FIN and ECE set: SYN, RST, URG and CWR never merge;
- its sequence number the one after the run's data, its payload at most the
  first's (``mss``); a shorter one, or one with PSH or FIN, is merged and ends
  the run;
- its IP ID the previous one's plus one, or (DF set) the same as all before
  (a fixed ID, RFC 6864 atomic datagrams);
- the merged IP datagram not over 65535 bytes.

The merged frame is the first frame's headers (IP total length and header
checksum rewritten, PSH and FIN of the later segments added, the TCP
checksum field left stale: it was verified per segment) followed by the
payloads. A frame that fails a check is not merged and goes the normal way,
where it is dropped and counted as before; nothing here raises on wire input
(lengths are checked before anything is read) and nothing outlives the batch.

IPv6 is not merged (its frames pass through).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from femtotcp.core.counters import Counters
from femtotcp.wire.checksum import ones_sum, sum_value

#: Ethernet and IPv4 header fields and the first 16 bytes of TCP's: MACs,
#: ethertype, version/IHL, TOS, total length, ID, flags/fragment, TTL,
#: protocol, addresses and ports (one string), seq, ack, offset/flags, window.
_HEAD = struct.Struct("!12sHBBHHHBB2x12sI4sH2s")
#: The IPv4 header's 20 bytes as three words (its sum modulo 0xFFFF is 0
#: when the header checksum is right).
_IP_WORDS = struct.Struct("!QQI")
_U16 = struct.Struct("!H")

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
CWR = 0x80
#: Flags that keep a segment out of any run.
_NEVER = SYN | RST | URG | CWR
#: Flags that may differ between the segments of a run (they end it).
_ENDS = PSH | FIN
_IP_DF = 0x4000

#: The largest IPv4 datagram: a run stops before its merged datagram would exceed it.
MAX_DATAGRAM = 65535


def _join_struct(hlen: int) -> struct.Struct:
    """How a segment joining a run of TCP header length ``hlen`` is read: the
    first 16 bytes (MACs, ethertype, version/IHL, TOS), IP total length, ID,
    flags/fragment with TTL and protocol, addresses and ports, seq, then ack,
    offset/flags and window, and the option bytes."""
    return struct.Struct(f"!16sHH4s2x12sI8s4x{hlen - 20}s")


#: ``_join_struct`` for every TCP header length.
_JOIN = {hlen: _join_struct(hlen) for hlen in range(20, 61, 4)}


class _Run:
    """The run being merged: the first frame, the fields every segment of it
    must share with the first (read by ``unpack``, its ``_JOIN`` struct), and
    what the next segment must be."""

    __slots__ = ("first", "unpack", "head", "fft", "addrs", "tail", "opts", "hlen", "mss",
                 "next_seq", "last_id", "id_step", "size", "parts", "flags", "df", "addrs_sum")

    def __init__(self, first: bytes, hlen: int, plen: int, flags: int) -> None:
        self.first = first
        join = _JOIN[hlen]
        self.unpack = join.unpack_from
        self.head, _, self.last_id, self.fft, self.addrs, seq, self.tail, self.opts = \
            join.unpack_from(first)
        self.df = first[20] & 0x40
        self.hlen = hlen
        self.mss = plen
        self.next_seq = (seq + plen) & 0xFFFFFFFF
        self.id_step = -1           # unknown until the second segment
        self.size = 20 + hlen + plen
        #: The payloads of the segments after the first.
        self.parts: list[memoryview] = []
        self.flags = flags
        #: The pseudo header's sum but for the TCP length.
        self.addrs_sum = 0

    def frame(self) -> bytes:
        """The run as one frame: the first's headers with the IP total length,
        the header checksum and the flags rewritten, then every payload."""
        first = self.first
        parts = self.parts
        if not parts:
            return first
        head_len = 34 + self.hlen
        head = bytearray(first[:head_len])
        _U16.pack_into(head, 16, self.size)
        head[24] = head[25] = 0
        a, b, c = _IP_WORDS.unpack_from(head, 14)
        _U16.pack_into(head, 24, 0xFFFF - (a + b + c) % 0xFFFF)
        head[47] |= self.flags & _ENDS
        return b"".join((head, memoryview(first)[head_len:], *parts))


def _same_but_ends(tail: bytes, first: bytes) -> bool:
    """Ack, offset/flags and window (``tail``) equal to the run's (``first``)
    but for PSH and FIN."""
    return tail[:5] == first[:5] and tail[6:] == first[6:] and not (tail[5] ^ first[5]) & ~_ENDS


def coalesce(frames: Iterable[tuple[bytes, int]], trusted: bool, limit: int,
             counters: Counters) -> list[tuple[bytes, bool]]:
    """The frames of one read batch as the stack should receive them: each
    ``(frame, vouched)`` of the batch (``vouched``: the device vouches for its
    checksum, taken only when ``trusted``) becomes ``(frame, csum_ok)``, runs
    of mergeable TCP segments (see the module doc) one verified super-frame.
    ``limit``: the largest frame that may join a run (the MTU plus the
    Ethernet header). Counts ``gro.merged_frames`` and ``gro.merged_segments``
    (the segments in them)."""
    out: list[tuple[bytes, bool]] = []
    append = out.append
    run: _Run | None = None
    psum_addrs = b""
    psum = 0
    unpack = _HEAD.unpack_from
    words = _IP_WORDS.unpack_from
    merged = segments = 0
    for frame, vouched in frames:
        n = len(frame)
        if run is not None:
            # The common case first: the next segment of the run.
            hdr = 34 + run.hlen
            if hdr < n <= limit:
                head, total, ident, fft, addrs, seq, tail, opts = run.unpack(frame)
                plen = n - hdr
                if seq == run.next_seq and total + 14 == n and plen <= run.mss \
                        and head == run.head and addrs == run.addrs and fft == run.fft \
                        and opts == run.opts and (tail == run.tail
                                                  or _same_but_ends(tail, run.tail)) \
                        and run.size + plen <= MAX_DATAGRAM:
                    step = (ident - run.last_id) & 0xFFFF
                    a, b, c = words(frame, 14)
                    if (step == run.id_step or (run.id_step < 0 and (
                            step == 1 or (step == 0 and run.df)))) \
                            and not (a + b + c) % 0xFFFF:
                        mv = memoryview(frame)
                        if (vouched and trusted) or not (
                                sum_value(mv[34:]) + run.addrs_sum + total - 20) % 0xFFFF:
                            run.id_step = step
                            run.last_id = ident
                            run.next_seq = (seq + plen) & 0xFFFFFFFF
                            run.size += plen
                            run.parts.append(mv[hdr:])
                            flags = tail[5]
                            if plen < run.mss or flags & _ENDS:
                                run.flags |= flags
                                append((run.frame(), True))
                                merged += 1
                                segments += 1 + len(run.parts)
                                run = None
                            continue
            append((run.frame(), True))
            if run.parts:
                merged += 1
                segments += 1 + len(run.parts)
            run = None
        # A frame that may start a run: every check of the module doc.
        ok = False
        if 54 <= n <= limit:
            macs, etype, vihl, tos, total, ident, frag, ttl, proto, addrs, seq, ack, offfl, \
                win = unpack(frame)
            hlen = (offfl >> 10) & 0x3C
            plen = n - 34 - hlen
            flags = offfl & 0xFF
            if etype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & ~_IP_DF \
                    and total + 14 == n and hlen >= 20 and plen > 0 and flags & ACK \
                    and not flags & _NEVER:
                a, b, c = words(frame, 14)
                if not (a + b + c) % 0xFFFF:
                    if addrs[:8] != psum_addrs:
                        psum_addrs = addrs[:8]
                        psum = ones_sum(psum_addrs) + 6
                    ok = bool(vouched and trusted) or not (
                        sum_value(memoryview(frame)[34:]) + psum + total - 20) % 0xFFFF
        if not ok:
            append((frame, bool(vouched and trusted)))
        elif flags & _ENDS:
            append((frame, True))           # verified, and a run of its own
        else:
            run = _Run(frame, hlen, plen, flags)
            run.addrs_sum = psum
    if run is not None:
        append((run.frame(), True))
        if run.parts:
            merged += 1
            segments += 1 + len(run.parts)
    if merged:
        counters["gro.merged_frames"] += merged
        counters["gro.merged_segments"] += segments
    return out
