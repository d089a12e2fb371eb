"""Flow control: zero-window probes with backoff (RFC 9293 3.8.6.1, RFC 1122
4.2.2.17) and silly-window-syndrome avoidance at the sender and the receiver
(RFC 9293 3.8.6.2)."""

from __future__ import annotations

import errno

from tcp_harness import (
    ACK,
    ANY,
    PSH,
    SYN,
    Transfer,
    connect_pair,
    filtered_lan,
    lan_with_peer,
    open_passive,
    random_bytes,
    sent_log,
    tcp_of,
)

from femtotcp.wire import tcp


def _fill_and_close_window(lan, peer, p, nbytes: int = 3000):  # type: ignore[no-untyped-def]
    """The stack sends; the peer takes it all but offers a zero window."""
    p.conn.send(b"d" * nbytes)
    lan.run(0)
    segs = peer.received()
    sent = sum(len(s.payload) for s in segs)
    peer.send(ACK, p.snd, p.rcv + sent, window=0)
    return sent


def test_zero_window_probes_back_off_and_continue_while_answered() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    sent = _fill_and_close_window(lan, peer, p, 1000)
    log = sent_log(lan, 0)
    conn.send(b"more data waiting")
    answered = 0
    while answered < 7:
        lan.run(0.05)
        for s in peer.received():
            assert not s.payload                         # nothing beyond the window
            assert s.seq == (p.rcv + sent - 1) & 0xFFFFFFFF   # <SEQ=SND.UNA-1>
            peer.send(ACK, p.snd, p.rcv + sent, window=0)     # still closed
            answered += 1
    times = [when for when, s in log]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for g1, g2 in zip(gaps, gaps[1:], strict=False):
        assert abs(g2 / g1 - 2) < 1e-6                    # exponential backoff
    assert conn.state == "ESTABLISHED"
    assert peer.stack.counters["tcp.window_probes"] == 7
    # The window opens (answering a probe): the data flows at once.
    lan.run(2 * (times[-1] - times[-2]) + 0.1)
    probe = peer.received()
    assert probe
    peer.send(ACK, p.snd, p.rcv + sent, window=65535)
    data = peer.expect(ACK | PSH)
    assert data.payload == b"d" * (1000 - sent) + b"more data waiting"


def test_zero_window_probing_gives_up_when_unanswered() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.config.retries2 = 4
    p = open_passive(lan, peer)
    _fill_and_close_window(lan, peer, p)
    p.conn.send(b"x")
    lan.run(600)
    assert p.conn.state == "CLOSED" and p.conn.error == errno.ETIMEDOUT
    assert peer.stack.counters["tcp.persist_timeout_abort"] == 1


def test_zero_window_probe_rescues_a_lost_window_update() -> None:
    """Stack to stack: the receiver's program stops reading, the window closes;
    when it reads again its window update is lost, and only the sender's probe
    gets the transfer going again. Without probes this would hang forever."""
    lan, filters = filtered_lan(2)
    a, b = lan.stacks
    ca, cb = connect_pair(lan, client=1, server=0, rcvbuf=20_000)
    data = random_bytes(200_000, 9)
    t = Transfer(ca, data)
    got = bytearray()
    t.event()
    lan.run(1)
    assert cb.info()["rcv_wnd"] == 0 and ca.snd_wnd == 0
    dropped = []

    def drop_window_updates(frame: bytes) -> bool:
        s = tcp_of(frame)
        if s is not None and s.flags == ACK and not s.payload and s.window > 0 \
                and not dropped:
            dropped.append(s)
            return True
        return False

    filters[0].drop_out = drop_window_updates
    t.event()

    def reader() -> None:
        while (d := cb.recv(1 << 20)):
            got.extend(d)

    cb.on_event = reader
    reader()
    assert lan.run_until(lambda: len(got) == len(data), 200)
    assert bytes(got) == data
    assert dropped and b.counters["tcp.window_probes"] >= 1


def test_receiver_sws_avoidance() -> None:
    """RFC 9293 3.8.6.2.2: after the window closed, it reopens only once
    min(RCV.BUFF / 2, MSS) is free; reading 100 bytes offers nothing."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    lst.rcvbuf = 8000
    p = open_passive(lan, peer, listener=lst, options=tcp.build_options(mss=1000))
    conn = p.conn
    for i in range(8):
        peer.send(ACK, p.snd + 1000 * i, p.rcv, bytes([65 + i]) * 1000, run=False)
    lan.run(1)
    acks = peer.received()
    assert acks[-1].window == 0 and acks[-1].ack == p.snd + 8000
    assert conn.recv(100) == b"A" * 100
    lan.run(1)
    assert all(s.window == 0 for s in peer.received())    # no update for 100 bytes
    peer.send(ACK, p.snd + 7999, p.rcv)                   # a zero-window probe
    assert peer.expect(ACK).window == 0                   # not 100: no silly window
    assert len(conn.recv(1400)) == 1400                   # 1500 free >= MSS (1460)
    update = peer.expect(ACK)
    assert update.window == 1500


def test_sender_sws_avoidance_and_override() -> None:
    """RFC 9293 3.8.6.2.1: with data queued, a usable window smaller than both a
    full segment and half the largest window seen is not used at once; the
    persist (override) timer uses it later if nothing better comes."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer, options=tcp.build_options(mss=1460))
    conn = p.conn
    sent = _fill_and_close_window(lan, peer, p, 20_000)
    assert conn.max_snd_wnd == 65535
    conn.send(b"e" * 20_000)
    peer.send(ACK, p.snd, p.rcv + sent, window=1000)      # a small window opens
    peer.nothing()                                        # ... and is not used
    assert peer.stack.counters["tcp.sws_override"] == 0
    lan.run(0.3)                                          # the override timer fires
    seg = peer.expect(ACK)
    assert len(seg.payload) == 1000
    assert peer.stack.counters["tcp.sws_override"] == 1
    peer.send(ACK, p.snd, p.rcv + sent + 1000, window=10_000)   # a bigger window
    segs = peer.received()
    # Six full segments; the 1240 bytes left of the window are not sent alone.
    assert [len(s.payload) for s in segs] == [1460] * 6


def test_window_updates_when_the_program_reads() -> None:
    """A receiver that had closed its window announces the reopening itself."""
    lan, filters = filtered_lan(2)
    ca, cb = connect_pair(lan, client=1, server=0, rcvbuf=30_000)
    log = sent_log(lan, 0)
    ca.send(random_bytes(60_000, 4))
    lan.run(1)
    assert cb.info()["rcv_wnd"] == 0
    n = len(log)
    cb.recv(20_000)
    lan.run(0)
    updates = [s for _, s in log[n:] if s.flags == ACK and s.window > 0]
    assert updates
    assert lan.stacks[0].counters["tcp.window_update"] >= 1


def test_syn_window_is_not_scaled() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 10, options=tcp.build_options(mss=1460, wscale=2))
    synack = peer.expect(SYN | ACK)
    assert synack.window == 65535 and synack.opts.wscale == 7
