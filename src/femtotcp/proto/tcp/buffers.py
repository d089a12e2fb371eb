"""The receiver's buffers: the receive queue of in-order bytes the program has
not read (``ReceiveQueue``), and the out-of-order queue (RFC 9293 3.10.7.4
"segment text", RFC 2018).

The receive queue is a queue of chunks, not one growing bytearray: a bytearray
appended at its tail while its front is read reallocates and copies everything
buffered whenever the tail reaches its allocation, so an append cost grew with
what the program had not read yet (a bulk download to a program slower than
the network). Here an append costs the same whatever is buffered: a payload
is held as a view of its frame, or, when small, copied into a small tail
bytearray.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import islice

Chunk = bytes | bytearray | memoryview

#: A payload of at least this many bytes may be held as a view of its frame
#: (no copy); a shorter one is copied into the tail chunk (a view would pin a
#: frame much larger than its bytes).
VIEW_MIN = 512
#: The tail chunk (a bytearray) takes such copies until it holds this many
#: bytes: many tiny segments cost a few chunks, not one object each.
COALESCE = 4096
#: At most this many chunks are offered to one ``sendmsg`` (well under IOV_MAX).
MAX_IOV = 64


class ReceiveQueue:
    """In-order received bytes as a queue of chunks, with their byte count.

    A chunk is a ``bytes``, a ``bytearray`` this queue owns (small payloads
    copied together, up to ``COALESCE`` bytes; an out-of-order block), or a
    ``memoryview`` of an immutable ``bytes`` frame. A payload is held as a view
    only when it is at least ``VIEW_MIN`` bytes and its frame is not much
    larger than it (an MTU frame's or a GRO super-frame's payload is), so the
    chunks pin little more memory than their bytes."""

    __slots__ = ("chunks", "nbytes")

    def __init__(self) -> None:
        self.chunks: deque[Chunk] = deque()
        self.nbytes = 0

    def __len__(self) -> int:
        return self.nbytes

    def __bool__(self) -> bool:
        return self.nbytes > 0

    def append(self, data: Chunk) -> None:
        """Queue ``data`` at the tail (copied into the tail chunk, or held as it
        is when that is safe and cheap)."""
        n = len(data)
        if n >= VIEW_MIN:
            if type(data) is memoryview:
                obj = data.obj
                if type(obj) is not bytes or len(obj) > n + n + VIEW_MIN:
                    data = data.tobytes()
            elif type(data) is not bytes:
                data = bytes(data)
            self.chunks.append(data)
            self.nbytes += n
        elif n:
            self._copy(data)

    def append_owned(self, data: bytearray) -> None:
        """Queue a bytearray nobody else holds (an out-of-order block given up
        by its queue): kept as it is, no copy, when it is large."""
        if len(data) >= VIEW_MIN:
            self.chunks.append(data)
            self.nbytes += len(data)
        elif data:
            self._copy(data)

    def _copy(self, data: Chunk) -> None:
        chunks = self.chunks
        self.nbytes += len(data)
        if chunks:
            tail = chunks[-1]
            if type(tail) is bytearray and len(tail) < COALESCE:
                tail += data
                return
        chunks.append(bytearray(data))

    def clear(self) -> None:
        self.chunks.clear()
        self.nbytes = 0

    def consume(self, n: int) -> None:
        """Drop the first ``n`` bytes (``0 <= n <= len(self)``); a chunk taken in
        part keeps its rest (a view of it, or a bytearray trimmed at its front)."""
        chunks = self.chunks
        if n == self.nbytes:
            chunks.clear()
            self.nbytes = 0
            return
        self.nbytes -= n
        while n:
            head = chunks[0]
            h = len(head)
            if h <= n:
                chunks.popleft()
                n -= h
                continue
            if type(head) is bytearray:
                del head[:n]            # cheap: CPython moves the start
            else:
                chunks[0] = (head if type(head) is memoryview else memoryview(head))[n:]
            return

    def take(self, n: int) -> bytes:
        """Remove and return the first ``min(n, len(self))`` bytes (``n > 0``)."""
        chunks = self.chunks
        if n >= self.nbytes:
            if len(chunks) == 1:
                head = chunks[0]
                data = head if type(head) is bytes else bytes(head)
            else:
                data = b"".join(chunks)
            self.clear()
            return data
        head = chunks[0]
        h = len(head)
        if h == n:
            chunks.popleft()
            self.nbytes -= n
            return head if type(head) is bytes else bytes(head)
        if h > n:
            with memoryview(head) as mv:
                data = mv[:n].tobytes()
            self.consume(n)
            return data
        self.nbytes -= n
        parts: list[Chunk] = []
        need = n
        popleft = chunks.popleft
        while need:
            head = chunks[0]
            h = len(head)
            if h <= need:
                parts.append(popleft())
                need -= h
            elif type(head) is bytearray:
                parts.append(head[:need])
                del head[:need]
                break
            else:
                mv = head if type(head) is memoryview else memoryview(head)
                parts.append(mv[:need])
                chunks[0] = mv[need:]
                break
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """The first ``min(n, len(self))`` bytes, left queued."""
        out = bytearray()
        for chunk in self.chunks:
            out += chunk[:n - len(out)]
            if len(out) >= n:
                break
        return bytes(out)

    def send_first(self, sendmsg: Callable[[list[Chunk]], int], n: int) -> int:
        """Offer at most the first ``n`` bytes to ``sendmsg`` in one call (up to
        ``MAX_IOV`` chunks) and consume what it took; returns that count."""
        offer: list[Chunk] = []
        left = n
        for chunk in self.chunks:
            if left <= 0 or len(offer) == MAX_IOV:
                break
            if len(chunk) > left:
                chunk = chunk[:left]      # (a copy of a bytearray's part: no export held)
            offer.append(chunk)
            left -= len(chunk)
        taken = sendmsg(offer) if offer else 0
        if taken:
            self.consume(taken)
        return taken

    def send_to(self, sendmsg: Callable[[list[Chunk]], int]) -> int:
        """Offer the queued chunks to ``sendmsg`` (scatter-gather, as
        ``socket.sendmsg``), up to ``MAX_IOV`` chunks a call, and consume what it
        took. It is called again while it took everything it was offered and
        more is queued. Returns the byte count taken; what the first call
        raises propagates (nothing consumed), what a later one raises ends the
        offer (its cause is met again by the next)."""
        chunks = self.chunks
        total = 0
        while chunks:
            if len(chunks) <= MAX_IOV:
                offer = list(chunks)
                offered = self.nbytes
            else:
                offer = list(islice(chunks, MAX_IOV))
                offered = sum(map(len, offer))
            try:
                n = sendmsg(offer)
            except OSError:
                if total:
                    break
                raise
            if n <= 0:
                break
            self.consume(n)
            total += n
            if n < offered:
                break
        return total


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
