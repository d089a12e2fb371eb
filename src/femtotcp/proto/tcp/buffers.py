"""The receiver's out-of-order queue (RFC 9293 3.10.7.4 "segment text", RFC 2018).

Segments above RCV.NXT are merged into disjoint blocks sorted by sequence
number. The queue is bounded both in blocks and in bytes; a segment that would
exceed either first makes room by dropping the blocks furthest from RCV.NXT
(beyond it), and is dropped itself only when it would be the furthest (the
sender retransmits what was dropped). Data already held wins
over a retransmission that overlaps it. Sequence numbers here are the
connection's unwrapped (64-bit) ones.

For SACK options the queue remembers where the latest segments landed, so the
first block reported is the one holding the most recent arrival (RFC 2018 4).
"""

from __future__ import annotations

from bisect import bisect_left


class Block:
    __slots__ = ("start", "end", "data")

    def __init__(self, start: int, end: int, data: bytearray) -> None:
        self.start = start
        self.end = end    # == start + len(data)
        self.data = data


def _end(block: Block) -> int:
    return block.end


class OutOfOrderQueue:
    __slots__ = ("blocks", "nbytes", "max_blocks", "max_bytes", "recent", "dropped", "pruned")

    def __init__(self, max_blocks: int = 256, max_bytes: int = 256 * 1024) -> None:
        #: Sorted, disjoint and never touching (touching blocks are merged).
        self.blocks: list[Block] = []
        self.nbytes = 0
        self.max_blocks = max_blocks
        self.max_bytes = max_bytes
        self.recent: list[int] = []   # sequence numbers of the latest arrivals, newest last
        self.dropped = 0
        self.pruned = 0

    def __len__(self) -> int:
        return len(self.blocks)

    def add(self, seq: int, data: bytes | bytearray | memoryview) -> bool:
        """Hold ``data`` (which starts at ``seq``); False when it was dropped.

        When a bound is reached, blocks further from RCV.NXT than the new data
        (wholly after it) are dropped first, the furthest first, until it fits
        (Linux's tcp_prune_ofo_queue): what the receiver needs next is nearest
        RCV.NXT. Data that would land last is dropped itself. ``pruned``
        counts the blocks given up so."""
        if self._add(seq, data):
            return True
        blocks = self.blocks
        end = seq + len(data)
        while blocks and blocks[-1].start > end:
            blk = blocks.pop()
            self.nbytes -= len(blk.data)
            self.pruned += 1
            if self._add(seq, data):
                return True
        self.dropped += 1
        return False

    def _add(self, seq: int, data: bytes | bytearray | memoryview) -> bool:
        """``add`` without pruning: False (nothing changed) when a bound is reached."""
        n = len(data)
        if n == 0:
            return True
        end = seq + n
        blocks = self.blocks
        i = bisect_left(blocks, seq, key=_end)  # first block ending at or after seq
        j = i
        nblocks = len(blocks)
        while j < nblocks and blocks[j].start <= end:
            j += 1
        if i == j:  # touches nothing: a new block
            if nblocks >= self.max_blocks or self.nbytes + n > self.max_bytes:
                return False
            blocks.insert(i, Block(seq, end, bytearray(data)))
            self.nbytes += n
        else:
            first = blocks[i]
            if j == i + 1 and first.start <= seq:
                # The common case: extends (or repeats) one block at its end.
                if end > first.end:
                    added = end - first.end
                    if self.nbytes + added > self.max_bytes:
                                return False
                    first.data += data[first.end - seq:]
                    first.end = end
                    self.nbytes += added
            else:
                start = min(seq, first.start)
                new_end = max(end, blocks[j - 1].end)
                held = sum(len(blocks[k].data) for k in range(i, j))
                added = (new_end - start) - held
                if self.nbytes + added > self.max_bytes:
                        return False
                out = bytearray()
                pos = start
                for k in range(i, j):
                    blk = blocks[k]
                    if pos < blk.start:
                        out += data[pos - seq:blk.start - seq]
                    out += blk.data
                    pos = blk.end
                if pos < new_end:
                    out += data[pos - seq:]
                blocks[i:j] = [Block(start, new_end, out)]
                self.nbytes += added
        recent = self.recent
        if not recent or recent[-1] != seq:
            recent.append(seq)
            if len(recent) > 4:
                del recent[0]
        return True

    def pop_ready(self, rcv_nxt: int) -> tuple[list[bytearray], int]:
        """Remove the blocks that RCV.NXT has reached; return their new bytes and
        the advanced RCV.NXT."""
        out: list[bytearray] = []
        blocks = self.blocks
        while blocks and blocks[0].start <= rcv_nxt:
            blk = blocks.pop(0)
            self.nbytes -= len(blk.data)
            if blk.end > rcv_nxt:
                out.append(blk.data[rcv_nxt - blk.start:] if blk.start < rcv_nxt else blk.data)
                rcv_nxt = blk.end
        if self.recent:
            self.recent = [s for s in self.recent if s >= rcv_nxt]
        return out, rcv_nxt

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` blocks: the newest arrival's first, then other recent
        ones, then the highest (RFC 2018 4)."""
        blocks = self.blocks
        out: list[tuple[int, int]] = []
        if not blocks or limit <= 0:
            return out
        for s in reversed(self.recent):
            i = bisect_left(blocks, s + 1, key=_end)
            if i < len(blocks) and blocks[i].start <= s:
                b = (blocks[i].start, blocks[i].end)
                if b not in out:
                    out.append(b)
                    if len(out) >= limit:
                        return out
        for blk in reversed(blocks):
            b = (blk.start, blk.end)
            if b not in out:
                out.append(b)
                if len(out) >= limit:
                    break
        return out

    def clear(self) -> None:
        self.blocks.clear()
        self.nbytes = 0
        self.recent.clear()
