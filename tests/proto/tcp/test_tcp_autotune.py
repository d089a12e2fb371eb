"""Receive-buffer autotuning (Linux's dynamic right-sizing, tcp_rcv_space_adjust):
a connection whose program reads as fast as data comes grows its receive
buffer, and so the window it offers, up to ``rcvbuf_max``; SO_RCVBUF (a size
the program chose) and a program that does not read keep it where it is."""

from __future__ import annotations

from tcp_harness import Transfer, bulk, connect_pair, filtered_lan, random_bytes, sent_log


def _lan(rcvbuf_max: int | None = None):  # type: ignore[no-untyped-def]
    # 2 ms each way: a 4 ms round trip, over which a 256 KB window is the limit.
    lan, _ = filtered_lan(latency=0.002)
    if rcvbuf_max is not None:
        for s in lan.stacks:
            s.tcp.config.rcvbuf_max = rcvbuf_max
    return lan


def test_a_program_that_reads_fast_gets_a_bigger_window() -> None:
    lan = _lan()
    ca, cb = connect_pair(lan)
    server = lan.stacks[0]
    initial = cb.rcvbuf
    cap = server.tcp.config.rcvbuf_max
    log = sent_log(lan, 0)
    up, down, t1, t2 = bulk(lan, ca, cb, 6 << 20, timeout=600)
    assert bytes(t2.got) == up and bytes(t1.got) == down
    assert initial < cb.rcvbuf <= cap
    assert server.counters["tcp.rcvbuf_grown"] >= 1
    # The peer was offered more than the initial buffer: the window field, scaled.
    offered = max(seg.window for _, seg in log) << cb.rcv_wscale
    assert offered > initial


def test_growth_stops_at_rcvbuf_max() -> None:
    lan = _lan(rcvbuf_max=400_000)
    ca, cb = connect_pair(lan)
    bulk(lan, ca, cb, 6 << 20, timeout=600)
    assert cb.rcvbuf == 400_000 and ca.rcvbuf == 400_000


def test_so_rcvbuf_turns_autotuning_off() -> None:
    lan = _lan()
    # Set on the listener (inherited by the accepted connection) and the connecting one.
    ca, cb = connect_pair(lan, rcvbuf=100_000)
    bulk(lan, ca, cb, 4 << 20, timeout=600)
    assert cb.rcvbuf == 100_000 and ca.rcvbuf == 100_000
    assert lan.stacks[0].counters["tcp.rcvbuf_grown"] == 0


def test_a_program_that_does_not_read_keeps_its_buffer() -> None:
    lan = _lan()
    ca, cb = connect_pair(lan)
    initial = cb.rcvbuf
    sender = Transfer(ca, random_bytes(2 << 20, 3), shut=False)
    sender.event()
    lan.run(2.0)
    assert cb.rcv_buf.nbytes >= initial          # full: the window closed
    assert cb.rcvbuf == initial
    assert lan.stacks[0].counters["tcp.rcvbuf_grown"] == 0


def test_all_connections_together_grow_no_more_than_the_total() -> None:
    lan = _lan()
    server = lan.stacks[0]
    cfg = server.tcp.config
    cfg.rcvbuf_autotune_total = 500_000
    pairs = [connect_pair(lan, port=5001 + i) for i in range(3)]
    transfers = [(Transfer(ca, random_bytes(3 << 20, i)), Transfer(cb, b"", shut=False))
                 for i, (ca, cb) in enumerate(pairs)]
    for t1, t2 in transfers:
        t1.event()
        t2.event()
    assert lan.run_until(lambda: all(t2.eof for _, t2 in transfers), 600)
    added = sum(cb.rcvbuf - cfg.rcvbuf for _, cb in pairs)
    assert 0 < added <= 500_000
    assert server.counters["tcp.rcvbuf_autotuned"] == added
    assert server.counters["tcp.rcvbuf_grow_limited"] >= 1
    # What a connection added is given back when it ends.
    for ca, cb in pairs:
        cb.close()
        ca.close()
    lan.run(300)
    assert server.counters["tcp.rcvbuf_autotuned"] == 0
