"""IP reassembly (RFC 791 3.2, RFC 815; IPv6: RFC 8200 4.5), bounded in
datagrams, bytes and time; one per family (``prefix`` names its counters).

A datagram is keyed by (src, dst, protocol, id). Fragments that overlap one
already held discard the whole datagram (the defence against overlap attacks
that RFC 5722 mandates for IPv6; Linux does the same for IPv4); an exact
duplicate is dropped on its own, since duplication happens on honest networks, and so is a
fragment wholly inside data already held (a subset; Linux since FragmentSmack).
Nothing can grow past 65535 bytes of datagram or the configured caps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from femtotcp.core.timers import Timer

if TYPE_CHECKING:
    from femtotcp.stack.stack import Stack

MAX_DATAGRAM = 65535

Key = tuple[bytes, bytes, int, int]


_QUOTE_MAX = 576 - 20 - 8   # the ICMP error's room for the offending datagram


_COVERED = 2   # _overlap(): the range lies inside one contiguous run of held data


def _overlap(pieces: list[tuple[int, bytes]], offset: int, end: int) -> int:
    """0 when [offset, end) touches no held piece; _COVERED when it lies wholly
    inside contiguous held data; 1 for any other (partial) overlap.

    ``pieces`` are sorted and disjoint, so a run of pieces that abut one another
    is contiguous data."""
    run_start = run_end = -1
    touched = False
    for o, d in pieces:
        if o >= end:
            break
        e = o + len(d)
        if o != run_end:          # a gap before this piece: a new run starts
            if touched:
                return 1          # the range spans the gap
            run_start = o
        run_end = e
        if e > offset:            # this piece touches [offset, end)
            if run_start > offset:
                return 1          # the range starts before the held run
            touched = True
            if e >= end:
                return _COVERED
    return 1 if touched else 0


class _Datagram:
    __slots__ = ("pieces", "total", "size", "timer", "first", "dead")

    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytes]] = []   # (offset, data), sorted by offset
        self.total: int | None = None               # payload length once the last fragment came
        self.size = 0                                # bytes held
        self.timer: Timer | None = None
        self.first: tuple[Any, bytes] | None = None  # (header, raw) for ICMP time exceeded
        self.dead = False


class Reassembler:
    def __init__(self, stack: Stack, prefix: str = "ipv4",
                 on_timeout: Callable[[tuple[Any, bytes]], None] | None = None,
                 timeout_setting: str = "reasm_timeout") -> None:
        self.stack = stack
        self.prefix = prefix
        #: What counts against the 65535-byte limit beside the fragments' data:
        #: IPv4's total length holds its header (20 bytes at least); IPv6's
        #: payload length (RFC 8200 4.5, Linux's IPV6_MAXPLEN) does not hold
        #: the fixed 40-byte header.
        self.header_min = 20 if prefix == "ipv4" else 0
        #: The StackConfig field holding the timeout (read at use).
        self.timeout_setting = timeout_setting
        self.on_timeout = on_timeout
        self.datagrams: dict[Key, _Datagram] = {}
        self.bytes_held = 0

    def add(self, key: Key, offset: int, more: bool, data: bytes | memoryview,
            header: Any, packet: memoryview) -> tuple[bytes, tuple[Any, bytes]] | None:
        """Add one fragment; when the datagram is complete, return its whole
        payload and the first fragment's (header, raw start).

        ``header``/``packet`` (the parsed header and the raw fragment) are kept
        for the first fragment: the whole datagram's header is that one's (its
        options included; later fragments carry only the copied ones), and
        the ICMP error sent on timeout quotes it."""
        counters = self.stack.counters
        cfg = self.stack.config
        p = self.prefix
        end = offset + len(data)
        if end > MAX_DATAGRAM - self.header_min:
            counters[f"{p}.frag_too_big"] += 1
            return None
        if more and len(data) % 8:
            counters[f"{p}.frag_bad_length"] += 1
            return None
        if not more and offset == 0:
            return bytes(data), (header, bytes(packet))     # not really a fragment
        dg = self.datagrams.get(key)
        if dg is None:
            if len(self.datagrams) >= cfg.reasm_max_datagrams:
                counters[f"{p}.reasm_table_full"] += 1
                return None
            dg = self.datagrams[key] = _Datagram()
            dg.timer = self.stack.timers.call_later(getattr(cfg, self.timeout_setting),
                                                    lambda: self._expire(key))
        if dg.dead:
            counters[f"{p}.frag_after_overlap"] += 1
            return None
        if self.bytes_held + len(data) > cfg.reasm_max_bytes:
            counters[f"{p}.reasm_memory_full"] += 1
            return None
        if len(dg.pieces) >= cfg.reasm_max_fragments:
            counters[f"{p}.reasm_too_many_fragments"] += 1
            self._discard(key, dg)
            return None
        if not more:
            if dg.total is not None and dg.total != end:
                counters[f"{p}.frag_inconsistent_length"] += 1
                self._kill(key, dg)
                return None
            if any(o + len(d) > end for o, d in dg.pieces):
                counters[f"{p}.frag_inconsistent_length"] += 1
                self._kill(key, dg)
                return None
            dg.total = end
        elif dg.total is not None and end > dg.total:
            counters[f"{p}.frag_inconsistent_length"] += 1
            self._kill(key, dg)
            return None
        overlap = _overlap(dg.pieces, offset, end)
        if overlap:
            if overlap is _COVERED:
                # Wholly inside data already held (a duplicate or a subset):
                # ignored, the datagram goes on (Linux's IPFRAG_DUP).
                counters[f"{p}.frag_duplicate"] += 1
                return None
            counters[f"{p}.frag_overlap"] += 1
            self._kill(key, dg)
            return None
        dg.pieces.append((offset, bytes(data)))
        dg.pieces.sort(key=lambda x: x[0])
        dg.size += len(data)
        self.bytes_held += len(data)
        if offset == 0:
            # Quote as much of the first fragment as an ICMP error carries
            # (RFC 1812 4.3.2.3, 576 bytes in all), as Linux does.
            dg.first = (header, bytes(packet[:min(header.total_len, _QUOTE_MAX)]))
        if dg.total is None or dg.size != dg.total:
            return None
        header_len = self.header_min
        if self.header_min and dg.first is not None:
            header_len = getattr(dg.first[0], "header_len", self.header_min)
        if header_len + dg.total > MAX_DATAGRAM:
            # Later fragments may carry shorter headers than the first: the whole
            # datagram, with the first fragment's header, must still fit 65535 bytes.
            counters[f"{p}.frag_too_big"] += 1
            self._discard(key, dg)
            return None
        # Complete: with no overlaps and the sizes adding up, the pieces tile [0, total).
        payload = b"".join(d for _, d in dg.pieces)
        self._discard(key, dg)
        counters[f"{p}.reassembled"] += 1
        assert dg.first is not None          # the pieces tile [0, total): offset 0 came
        return payload, dg.first

    def _kill(self, key: Key, dg: _Datagram) -> None:
        """Drop what is held but remember the key until the timer, so that the
        rest of an overlapping datagram is not reassembled into something else."""
        self.bytes_held -= dg.size
        dg.pieces.clear()
        dg.size = 0
        dg.dead = True

    def _discard(self, key: Key, dg: _Datagram) -> None:
        if dg.timer is not None:
            dg.timer.cancel()
        self.bytes_held -= dg.size
        self.datagrams.pop(key, None)

    def _expire(self, key: Key) -> None:
        dg = self.datagrams.get(key)
        if dg is None:
            return
        dg.timer = None
        self.stack.counters[f"{self.prefix}.reasm_timeout"] += 1
        if not dg.dead and dg.first is not None and self.on_timeout is not None:
            self.on_timeout(dg.first)
        self._discard(key, dg)

    def stats(self) -> dict[str, int]:
        return {"datagrams": len(self.datagrams), "bytes": self.bytes_held}
