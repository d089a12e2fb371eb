"""Software GRO: a device's read batch of MTU-sized TCP frames (IPv4 and
IPv6) merged into super-frames before IP and TCP see them.

Linux merges the consecutive in-order TCP segments of one flow that arrive in
one NAPI poll into one packet whatever the NIC offloads (generic receive
offload: ``dev_gro_receive``, ``inet_gro_receive``/``ipv6_gro_receive``,
``tcp_gro_receive``); the stack above then pays its per-segment cost once per
super-frame. Our devices read a batch of frames back to back
(``TunTapDevice.on_readable``), so the same can be done to a batch:
``coalesce`` takes the batch and returns the frames to deliver, in order, a
run of mergeable segments replaced by one frame whose TCP checksum was
verified here, segment by segment (so the stack takes it through the trusted
entry, ``csum_ok``; ``Stack.receive_batch``).

Sans-I/O and stateless between batches: nothing is held past the batch, so no
timer is needed and nothing waits for a later frame.

A frame joins a run (the rules of Linux's ``inet_gro_receive``,
``ipv6_gro_receive`` and ``tcp_gro_receive``; any other frame passes through
untouched and ends the run, so the order of everything stays as read):

- an untagged Ethernet frame, at most ``limit`` bytes (MTU-sized: a GRO
  super-frame from a vnet TAP is not merged again), carrying IPv4 without
  options (IHL 5) and not a fragment (only DF may be set), or IPv6 without
  extension headers; the IP length exactly the frame's; TCP with payload;
- its IPv4 header checksum right, and its TCP checksum verified here (or
  vouched for by the device);
- the same Ethernet header, addresses, ports, acknowledgment number, data
  offset, window and TCP option bytes as the run's first segment, the same
  TOS, TTL and DF (IPv4) or traffic class, flow label and hop limit (IPv6),
  and the same flags except PSH and FIN (so ECE too);
- only ACK, PSH, FIN and ECE set: SYN, RST, URG and CWR never merge;
- its sequence number the one after the run's data, its payload at most the
  first's (``mss``); a shorter one, or one with PSH or FIN, is merged and ends
  the run;
- IPv4: its ID the previous one's plus one, or (DF set) the same as all
  before (a fixed ID, RFC 6864 atomic datagrams);
- the merged IPv4 datagram, or IPv6 payload, not over 65535 bytes.

The merged frame is the first frame's headers (IP length, IPv4 header
checksum rewritten, PSH and FIN of the later segments added, the TCP checksum
field left stale: it was verified per segment) followed by the payloads. A
frame that fails a check is not merged and goes the normal way, where it is
dropped and counted as before; nothing here raises on wire input (lengths are
checked before anything is read) and nothing outlives the batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from femtotcp.core.counters import Counters
from femtotcp.wire.checksum import ones_sum, sum_value
from femtotcp.wire.tcp import ACK, CWR, FIN, PSH, RST, SYN, URG

#: Ethernet and IPv4 header fields and the first 16 bytes of TCP's: MACs,
#: ethertype, version/IHL, TOS, total length, ID, flags/fragment, TTL,
#: protocol, addresses and ports (one string), seq, ack, offset/flags, window.
_HEAD = struct.Struct("!12sHBBHHHBB2x12sI4sH2s")
#: The same for IPv6: MACs, ethertype, version/traffic class/flow label,
#: payload length, next header, hop limit, addresses (one string), ports,
#: seq, ack, offset/flags, window.
_HEAD6 = struct.Struct("!12sHIHBB32s4sI4sH2s")
#: The IPv4 header's 20 bytes as three words (its sum modulo 0xFFFF is 0
#: when the header checksum is right).
_IP_WORDS = struct.Struct("!QQI")
_U16 = struct.Struct("!H")

#: Flags that keep a segment out of any run.
_NEVER = SYN | RST | URG | CWR
#: Flags that may differ between the segments of a run (they end it).
_ENDS = PSH | FIN
_IP_DF = 0x4000

#: The largest IPv4 datagram or IPv6 payload: a run stops before its merged
#: datagram would exceed it.
MAX_DATAGRAM = 65535


def _join_struct(hlen: int) -> struct.Struct:
    """How a TCP/IPv4 segment joining a run of TCP header length ``hlen`` is
    read: the first 16 bytes (MACs, ethertype, version/IHL, TOS), IP total
    length, ID, flags/fragment with TTL and protocol, the header checksum,
    addresses and ports, seq, then ack, offset/flags and window, and the
    option bytes."""
    return struct.Struct(f"!16sHH4sH12sI8s4x{hlen - 20}s")


def _join_struct6(hlen: int) -> struct.Struct:
    """The same for TCP/IPv6: the first 18 bytes (MACs, ethertype, version,
    traffic class, flow label), payload length, next header, hop limit,
    addresses and ports, seq, then ack, offset/flags and window, and the
    option bytes."""
    return struct.Struct(f"!18sH38sI8s4x{hlen - 20}s")


#: ``_join_struct`` and ``_join_struct6`` for every TCP header length.
_JOIN = {hlen: _join_struct(hlen) for hlen in range(20, 61, 4)}
_JOIN6 = {hlen: _join_struct6(hlen) for hlen in range(20, 61, 4)}


def _merged(first: bytes, ip_end: int, hdr: int, size: int, flags: int,
            parts: list[memoryview]) -> bytes:
    """A run as one frame: the first frame's ``hdr`` bytes of headers (the IP
    header ending at ``ip_end``: 34 for IPv4, 54 for IPv6) with the IP length
    (``size``), the IPv4 header checksum and the flags (PSH and FIN of
    ``flags`` added) rewritten, then every payload (the first's, then
    ``parts``); the first frame as it is when nothing joined it."""
    if not parts:
        return first
    head = bytearray(first[:hdr])
    if ip_end == 34:
        _U16.pack_into(head, 16, size)
        head[24] = head[25] = 0
        a, b, c = _IP_WORDS.unpack_from(head, 14)
        _U16.pack_into(head, 24, 0xFFFF - (a + b + c) % 0xFFFF)
    else:
        _U16.pack_into(head, 18, size)
    head[ip_end + 13] |= flags & _ENDS
    return b"".join((head, memoryview(first)[hdr:], *parts))


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
    unpack = _HEAD.unpack_from
    words = _IP_WORDS.unpack_from
    from_bytes = int.from_bytes
    merged = joined = 0         # runs merged, and segments that joined one
    psum_addrs = b""
    psum = 0
    # The open run, in locals (the per-segment loop reads them all): its first
    # frame (None: no run), where its IP header ends (34: IPv4, 54: IPv6) and
    # its headers do, the fields every segment shares with the first (for
    # IPv6 ``r_fft`` is unused and ``r_addrs`` holds next header, hop limit,
    # addresses and ports), the next seq, the first's payload length (mss),
    # the IPv4 ID's last value and step (-1: not known yet), the merged
    # datagram's (IPv6: payload's) size, the later payloads, the flags seen,
    # and the IPv4 header's sum without the total length, ID and checksum
    # (the rest is the same in every segment, so a joining header's checksum
    # is checked by adding its three); ``r_pre``: the same for all the headers
    # before TCP's (IPv6: less the payload length), so that a joining
    # segment's TCP checksum is the whole frame's sum less it (and those).
    first: bytes | None = None
    ip_end = hdr = 0
    join = _JOIN[20].unpack_from
    join6 = _JOIN6[20].unpack_from
    r_head = r_fft = r_addrs = r_tail = r_opts = b""
    next_seq = mss = last_id = id_step = size = flags_seen = ip_base = r_pre = df = 0
    parts: list[memoryview] = []
    for frame, vouched in frames:
        n = len(frame)
        if first is not None:
            # The common case first: the next segment of the run.
            if hdr < n <= limit:
                good: int | bool = False
                plen = n - hdr
                if ip_end == 34:
                    head, total, ident, fft, ipsum, addrs, seq, tail, opts = join(frame)
                    if seq == next_seq and total + 14 == n and plen <= mss \
                            and head == r_head and addrs == r_addrs and fft == r_fft \
                            and opts == r_opts \
                            and (tail == r_tail or _same_but_ends(tail, r_tail)) \
                            and size + plen <= MAX_DATAGRAM \
                            and not (ip_base + total + ident + ipsum) % 0xFFFF:
                        step = (ident - last_id) & 0xFFFF
                        if step == id_step or (id_step < 0 and (
                                step == 1 or (step == 0 and df))):
                            # The TCP checksum over the whole frame (cheaper
                            # than over a slice of it), less its headers.
                            if (vouched and trusted) or not (
                                    sum_value(frame) - r_pre - ident - ipsum + psum - 20) \
                                    % 0xFFFF:
                                good = True
                                id_step = step
                                last_id = ident
                else:
                    head, length, addrs, seq, tail, opts = join6(frame)
                    if seq == next_seq and length + 54 == n and plen <= mss \
                            and head == r_head and addrs == r_addrs and opts == r_opts \
                            and (tail == r_tail or _same_but_ends(tail, r_tail)) \
                            and size + plen <= MAX_DATAGRAM:
                        good = (vouched and trusted) or not (
                            sum_value(frame) - r_pre + psum) % 0xFFFF
                if good:
                    next_seq = (seq + plen) & 0xFFFFFFFF
                    size += plen
                    parts.append(memoryview(frame)[hdr:])
                    joined += 1
                    flags = tail[5]
                    if plen < mss or flags & _ENDS:
                        append((_merged(first, ip_end, hdr, size, flags_seen | flags, parts),
                                True))
                        merged += 1
                        first = None
                    continue
            append((_merged(first, ip_end, hdr, size, flags_seen, parts), True))
            merged += bool(parts)
            first = None
        # A frame that may start a run: every check of the module doc.
        ok = False
        if 54 <= n <= limit:
            macs, etype, vihl, tos, total, ident, frag, ttl, proto, addrs, seq, ack, offfl, \
                win = unpack(frame)
            if etype == 0x0800:
                ip_end = 34
                hlen = (offfl >> 10) & 0x3C
                plen = n - 34 - hlen
                flags = offfl & 0xFF
                if vihl == 0x45 and proto == 6 and not frag & ~_IP_DF and total + 14 == n \
                        and hlen >= 20 and plen > 0 and flags & ACK and not flags & _NEVER:
                    a, b, c = words(frame, 14)
                    if not (a + b + c) % 0xFFFF:
                        if addrs[:8] != psum_addrs:
                            psum_addrs = addrs[:8]
                            psum = ones_sum(psum_addrs) + 6
                        # The whole frame's sum less the Ethernet header's (the
                        # IP header's is 0): the TCP segment's.
                        pre = from_bytes(frame[:14], "big")
                        ok = bool(vouched and trusted) or not (
                            sum_value(frame) - pre + psum + total - 20) % 0xFFFF
            elif etype == 0x86DD and n >= 74:
                ip_end = 54
                _, _, vtf, length, nh, _, addrs, _, seq, _, offfl, _ = _HEAD6.unpack_from(frame)
                hlen = (offfl >> 10) & 0x3C
                plen = n - 54 - hlen
                flags = offfl & 0xFF
                if vtf >> 28 == 6 and nh == 6 and length + 54 == n and hlen >= 20 \
                        and plen > 0 and flags & ACK and not flags & _NEVER:
                    if addrs != psum_addrs:
                        psum_addrs = addrs
                        psum = ones_sum(psum_addrs) + 6
                    pre = from_bytes(frame[:54], "big")
                    ok = bool(vouched and trusted) or not (
                        sum_value(frame) - pre + psum + length) % 0xFFFF
        if not ok:
            append((frame, bool(vouched and trusted)))
        elif flags & _ENDS:
            append((frame, True))           # verified, and a run of its own
        else:
            first = frame
            hdr = ip_end + hlen
            mss = plen
            next_seq = (seq + plen) & 0xFFFFFFFF
            parts = []
            flags_seen = flags
            if ip_end == 34:
                join = _JOIN[hlen].unpack_from
                r_head, _, last_id, r_fft, ipsum, r_addrs, _, r_tail, r_opts = join(frame)
                ip_base = a + b + c - total - last_id - ipsum
                r_pre = pre + ip_base
                df = frag
                id_step = -1
                size = 20 + hlen + plen
            else:
                join6 = _JOIN6[hlen].unpack_from
                r_head, _, r_addrs, _, r_tail, r_opts = join6(frame)
                r_pre = pre - length
                size = hlen + plen
    if first is not None:
        append((_merged(first, ip_end, hdr, size, flags_seen, parts), True))
        merged += bool(parts)
    if merged:
        counters["gro.merged_frames"] += merged
        counters["gro.merged_segments"] += merged + joined
    return out
