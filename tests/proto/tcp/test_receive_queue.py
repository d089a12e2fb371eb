"""The receive buffer as a queue of chunks (proto/tcp/buffers.ReceiveQueue),
checked against a plain bytearray: random appends of every kind of buffer,
reads of random sizes, consumption, and sendmsg-like partial takes."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femtotcp.proto.tcp.buffers import COALESCE, MAX_IOV, VIEW_MIN, Chunk, ReceiveQueue

PATTERN = bytes(range(256)) * 300


def pinned(q: ReceiveQueue) -> int:
    """The memory the chunks hold: each object, and the frame behind a view."""
    total = 0
    for c in q.chunks:
        total += sys.getsizeof(c)
        if isinstance(c, memoryview):
            total += len(c.obj)
    return total


def check(q: ReceiveQueue, model: bytearray) -> None:
    assert len(q) == len(model)
    assert bool(q) == bool(model)
    assert b"".join(q.chunks) == model
    assert all(len(c) for c in q.chunks)
    chunks = list(q.chunks)
    # Past the head (which a partial take may have trimmed): no view pins a
    # frame much larger than its bytes, and no two small chunks side by side
    # (small payloads are copied into the tail bytearray).
    for c in chunks[1:]:
        if isinstance(c, memoryview):
            assert isinstance(c.obj, bytes) and len(c.obj) <= 2 * len(c) + VIEW_MIN
    for a, b in zip(chunks[1:], chunks[2:], strict=False):
        assert len(a) >= VIEW_MIN or len(b) >= VIEW_MIN
    assert len(chunks) <= 2 * (len(model) // VIEW_MIN) + 3


def as_kind(data: bytes, kind: int, pad: int) -> Chunk:
    """``data`` as a device or the stack may hand it over."""
    if kind == 0:
        return data
    if kind == 1:
        return bytearray(data)
    if kind == 2:                     # a payload view of its (bytes) frame
        return memoryview(b"h" * pad + data + b"t" * pad)[pad:pad + len(data)]
    return memoryview(bytearray(data))    # a view of a buffer someone may reuse


class FakeSocket:
    """``sendmsg`` of a stream socket with room for ``limit`` bytes; ``mode`` 1:
    a later call fails (what was sent stays sent), 2: the first call finds it
    full (BlockingIOError)."""

    def __init__(self, limit: int, mode: int) -> None:
        self.limit = limit
        self.mode = mode
        self.calls = 0
        self.taken = 0
        self.full = False

    def sendmsg(self, buffers: list[Chunk]) -> int:
        assert 0 < len(buffers) <= MAX_IOV
        assert not self.full, "offered again after a partial take (the socket is full)"
        self.calls += 1
        if self.mode == 2 and self.calls == 1:
            raise BlockingIOError
        if self.mode == 1 and self.calls > 1:
            raise BrokenPipeError
        joined = b"".join(buffers)
        n = min(self.limit - self.taken, len(joined))
        self.taken += n
        self.full = n < len(joined)
        return n


op = st.one_of(
    st.tuples(st.just("append"), st.one_of(st.integers(0, 3000), st.integers(4000, 70000)),
              st.integers(0, 3),
              st.sampled_from([0, 54, 66, 5000, 70000])),
    st.tuples(st.just("owned"), st.integers(0, 9000), st.just(0), st.just(0)),
    st.tuples(st.just("take"), st.integers(1, 90000), st.just(0), st.just(0)),
    st.tuples(st.just("consume"), st.integers(0, 90000), st.just(0), st.just(0)),
    st.tuples(st.just("sendmsg"), st.integers(0, 200000), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=60))
def test_queue_matches_a_bytearray(ops: list[tuple[str, int, int, int]]) -> None:
    q = ReceiveQueue()
    model = bytearray()
    counter = 0
    for name, size, kind, pad in ops:
        if name in ("append", "owned"):
            data = PATTERN[counter & 0xFF:(counter & 0xFF) + size]
            counter += size
            original = bytes(data)
            chunk = as_kind(data, kind, pad)
            if name == "owned":
                q.append_owned(bytearray(data))
            else:
                q.append(chunk)
                if isinstance(chunk, memoryview) and isinstance(chunk.obj, bytearray):
                    chunk.obj[:] = bytes(len(chunk.obj))   # its owner reuses the buffer
            model += original
        elif name == "take":
            if not model:
                continue
            got = q.take(size)
            assert isinstance(got, bytes)
            assert got == model[:size]
            del model[:size]
        elif name == "consume":
            n = min(size, len(model))
            q.consume(n)
            del model[:n]
        else:
            sock = FakeSocket(size, kind)
            before = len(model)
            try:
                n = q.send_to(sock.sendmsg)
            except BlockingIOError:
                assert len(q) == before          # nothing consumed
                check(q, model)
                continue
            assert n == sock.taken
            assert n <= before
            del model[:n]
        check(q, model)


def test_many_tiny_appends_cost_a_few_chunks() -> None:
    """One byte at a time: copied into shared tail bytearrays, so the memory held
    stays near the byte count (not one object per byte)."""
    q = ReceiveQueue()
    frame = bytes(1514)
    for _ in range(20_000):
        q.append(memoryview(frame)[100:101])   # a 1-byte payload of a full frame
    assert len(q) == 20_000
    assert len(q.chunks) <= 20_000 // COALESCE + 1
    assert pinned(q) <= 2 * len(q) + 4096


def test_a_big_payload_is_held_as_a_view_and_read_without_losing_a_byte() -> None:
    frame = bytes(range(256)) * 260
    q = ReceiveQueue()
    q.append(memoryview(frame)[66:])
    (chunk,) = q.chunks
    assert isinstance(chunk, memoryview) and chunk.obj is frame      # no copy
    assert q.take(10) == frame[66:76]
    assert q.take(1 << 20) == frame[76:] and not q


@pytest.mark.parametrize("n", [1448, 3 * 1448, 3 * 1448 + 5, 100])
def test_take_returns_exactly_what_was_asked(n: int) -> None:
    q = ReceiveQueue()
    data = bytes(range(256)) * 40
    for i in range(0, len(data), 1448):
        q.append(data[i:i + 1448])
    assert q.take(n) == data[:n]
    assert len(q) == len(data) - n
    assert q.take(len(data)) == data[n:]


@pytest.mark.parametrize("room", [10**9, 64 * 5000, 64 * 5000 - 1, 100 * 5000 - 7])
def test_send_to_offers_max_iov_chunks_a_call_and_stops_at_a_partial_take(room: int) -> None:
    frames = [bytes([i]) * 5066 for i in range(100)]
    q = ReceiveQueue()
    for f in frames:
        q.append(memoryview(f)[66:])          # 100 chunks of 5000 bytes, all views
    assert len(q.chunks) == 100
    sock = FakeSocket(room, 0)
    n = q.send_to(sock.sendmsg)
    everything = b"".join(f[66:] for f in frames)
    assert n == min(room, len(everything)) == sock.taken
    # a full first offer (64 chunks) is followed by a second call unless it was partial
    assert sock.calls == (1 if room < 64 * 5000 else 2)
    assert b"".join(q.chunks) == everything[n:]
