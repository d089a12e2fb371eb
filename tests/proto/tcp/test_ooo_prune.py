"""Out-of-order data under its bounds: the blocks furthest from RCV.NXT give
way to data nearer it (Linux's tcp_prune_ofo_queue), counted as
``tcp.ooo_pruned``; data that would land last is the one dropped."""

from __future__ import annotations

from tcp_harness import ACK, FIN, lan_with_peer, open_passive

from femtotcp.proto.tcp.buffers import OutOfOrderQueue


def test_queue_prunes_the_furthest_blocks_for_nearer_data() -> None:
    q = OutOfOrderQueue(max_blocks=3, max_bytes=1000)
    for start in (3000, 2000, 1000):
        assert q.add(start, b"z" * 10)
    assert q.add(500, b"n" * 10)                 # nearer: the block at 3000 goes
    assert [(b.start, b.end) for b in q.blocks] == [(500, 510), (1000, 1010), (2000, 2010)]
    assert (q.pruned, q.dropped, q.nbytes) == (1, 0, 30)
    assert not q.add(5000, b"f" * 10)            # it would land last: dropped itself
    assert (q.pruned, q.dropped) == (1, 1)
    # Bytes: a big segment near the front prunes as many blocks as it needs.
    # Bytes: merged with the two blocks it touches it needs 1005 bytes; the
    # block beyond it goes.
    assert q.add(100, b"b" * 995)
    assert [(b.start, b.end) for b in q.blocks] == [(100, 1095)]
    assert q.nbytes == 995 and q.pruned == 2
    # Blocks it touches merge with it and are never pruned for it.
    q2 = OutOfOrderQueue(max_blocks=2, max_bytes=100)
    assert q2.add(100, b"a" * 50) and q2.add(200, b"c" * 40)
    assert not q2.add(150, b"b" * 50)            # merging all would exceed the bytes
    assert q2.pruned == 0 and q2.dropped == 1


def test_connection_prunes_far_ooo_data_for_near_data() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    stack = peer.stack
    cfg = stack.tcp.config
    cap = cfg.ooo_max_segments
    # A hole at p.snd, then far-away segments fill the queue's block bound.
    for i in range(cap):
        peer.send(ACK, p.snd + 10_000 + 2 * i, p.rcv, b"f", run=False)
    lan.run(0)
    assert len(p.conn.ooo) == cap and stack.counters["tcp.ooo_pruned"] == 0
    # Segments just past the hole are nearer RCV.NXT: the furthest blocks give way.
    # (the first makes a new block, the next three extend it).
    data = bytes(range(250))
    for k in range(1, 5):
        peer.send(ACK, p.snd + 50 * k, p.rcv, data[50 * k:50 * k + 50], run=False)
    lan.run(0)
    assert stack.counters["tcp.ooo_pruned"] == 1
    assert len(p.conn.ooo) == cap and p.conn.ooo.blocks[0].start == p.conn.ooo.blocks[0].end - 200
    assert stack.counters["tcp.ooo_dropped"] == 0
    # The hole is filled: the near data is delivered in order.
    peer.send(ACK, p.snd, p.rcv, data[:50])
    assert p.conn.recv(500) == data
    assert stack.counters["tcp.ooo_held_segments"] == len(p.conn.ooo) == cap - 1
    assert stack.counters["stack.internal_error"] == 0


def test_a_fin_held_out_of_order_survives_pruning() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.ooo.max_blocks = 2
    peer.send(ACK, p.snd + 100, p.rcv, b"m" * 10)
    peer.send(ACK | FIN, p.snd + 200, p.rcv, b"e" * 10)     # the end, out of order
    peer.send(ACK, p.snd + 50, p.rcv, b"n" * 10)            # nearer: the FIN's block goes
    assert peer.stack.counters["tcp.ooo_pruned"] == 1
    assert p.conn.state == "ESTABLISHED"
    # The sender fills in everything and resends the end: the FIN takes effect once.
    peer.send(ACK, p.snd, p.rcv, b"a" * 200)
    assert p.conn.state == "ESTABLISHED"
    peer.send(ACK | FIN, p.snd + 200, p.rcv, b"e" * 10)
    assert p.conn.state == "CLOSE_WAIT"
    assert p.conn.recv(1000) == b"a" * 200 + b"e" * 10
