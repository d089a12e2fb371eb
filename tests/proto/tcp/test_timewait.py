"""TIME-WAIT kept as a compact record (proto/tcp/timewait.py) once the program
has closed the connection: what it answers, when it ends, and that the full
connection it replaces is freed.

The state-diagram tests (test_tcp_states.py) drive TIME-WAIT's rules through
the record too (re-ACK of a retransmitted FIN, SYN reuse, RST and RFC 1337,
the bound); these check the record itself against a connection that keeps
TIME-WAIT as before (one the program has not closed).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from tcp_harness import ACK, ANY, FIN, RST, SYN, Passive, lan_with_peer, open_passive

from femtotcp.proto.tcp.timewait import TimeWait
from femtotcp.wire import tcp

MSL = 30.0


def _time_wait(closed: bool, options: bytes = b"") -> tuple[Any, Passive]:
    """A passive connection the stack closes first, into TIME-WAIT; with
    ``closed`` False the program only shuts the write side (it keeps the
    connection, which keeps TIME-WAIT itself)."""
    import socket
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer, options=options)
    if closed:
        p.conn.close()
    else:
        p.conn.shutdown(socket.SHUT_WR)
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    assert peer.expect(ACK).ack == p.snd + 1
    assert p.conn.state == "TIME_WAIT"
    return lan, p


def _answers(closed: bool, options: bytes = b"") -> tuple[list[Any], dict[str, int]]:
    """What TIME-WAIT answers to every kind of segment, and its counters."""
    lan, p = _time_wait(closed, options)
    peer = p.peer
    out: list[Any] = []

    def answer(*args: Any, **kw: Any) -> None:
        peer.send(*args, **kw)
        out.append([(s.flags, (s.seq - p.iss) & 0xFFFFFFFF, (s.ack - p.irs) & 0xFFFFFFFF,
                     s.window, s.opts.ts_val is not None) for s in peer.received()])
        lan.run(1.0)           # past the rate limit of ACKs to empty segments

    answer(FIN | ACK, p.snd, p.rcv + 1)                # the FIN again: ACKed
    answer(ACK, p.snd + 1, p.rcv + 1)                  # a stray ACK: ACKed
    answer(ACK, p.snd + 1, p.rcv + 1, b"late data")    # data: ACKed
    answer(SYN, p.snd - 50)                            # an old SYN: challenge ACK
    answer(RST, p.snd + 7)                             # RST off the sequence: ignored
    answer(ACK | FIN, p.snd + 1, p.rcv + 1)            # not the old FIN: an ACK
    lan.run(2 * MSL - 8)       # 2 MSL from the first answer's FIN, less 2 s
    still = p.conn.state
    lan.run(3)
    out.append([still, p.conn.state])
    counters = {k: v for k, v in peer.stack.counters.snapshot().items()
                if k.startswith("tcp.") and "_opens" not in k}
    return out, counters


def test_the_record_answers_as_the_connection_did() -> None:
    """A closed connection's TIME-WAIT record and a connection keeping
    TIME-WAIT itself send the same segments (sequence numbers, windows,
    timestamps) and count the same, and both end 2 MSL after the last FIN."""
    ts = tcp.build_options(ts=(100, 0))
    for options in (b"", ts):
        record = _answers(True, options)
        kept = _answers(False, options)
        assert record == kept
        answers, counters = record
        assert answers[-1] == ["TIME_WAIT", "CLOSED"]
        assert all(a == [(ACK, 2, 2, 65535, bool(options))] for a in answers[:4]), answers
        assert answers[4] == [] and counters["tcp.time_wait_done"] == 1


def test_the_closed_connection_is_freed_and_the_record_expires() -> None:
    """The table holds a ``TimeWait`` in place of the connection; once the
    program lets go of the connection object it is freed while TIME-WAIT
    goes on (the record re-ACKs a FIN), and the record ends at 2 MSL."""
    lan, p = _time_wait(True)
    stack = p.peer.stack
    (record,) = stack.tcp.connections()
    assert isinstance(record, TimeWait) and record.state == "TIME_WAIT"
    assert record.info()["state"] == "TIME_WAIT" and record.local == p.conn.local
    assert stack.tcp.stats()["state.TIME_WAIT"] == 1 and stack.tcp.time_wait_count == 1
    peer = p.peer
    ref = weakref.ref(p.conn)
    del p
    lan.run(5)                  # the connection's cancelled timers leave the heap
    gc.collect()
    assert ref() is None
    lan.run(10)
    peer.send(FIN | ACK, record.rcv_nxt - 1, record.snd_max)
    assert peer.expect(ACK).ack == record.rcv_nxt & 0xFFFFFFFF
    lan.run(2 * MSL - 1)        # restarted by that FIN
    assert stack.tcp.connections() == [record]
    lan.run(2)
    assert stack.tcp.connections() == [] and record.state == "CLOSED"
    assert stack.tcp.time_wait_count == 0 and stack.counters["tcp.time_wait_done"] == 1


def test_a_syn_reusing_the_tuple_ends_the_record() -> None:
    """RFC 6191: a SYN above the old RCV.NXT opens a new connection; the record
    ends (and the closed connection object with it)."""
    lan, p = _time_wait(True)
    stack = p.peer.stack
    p.peer.send(SYN, p.snd + 100_000)
    synack = p.peer.expect(SYN | ACK)
    assert synack.ack == (p.snd + 100_001) & 0xFFFFFFFF
    assert p.conn.state == "CLOSED" and stack.tcp.time_wait_count == 0
    assert stack.counters["tcp.time_wait_reused"] == 1
    (conn,) = stack.tcp.connections()
    assert conn.state == "SYN_RECEIVED" and not isinstance(conn, TimeWait)


def test_records_ended_early_leave_a_bounded_queue() -> None:
    """Records a RST ends before 2 MSL leave their queue entries behind; the
    queue is compacted, so it stays within a bound of the live records."""
    lan, peer = lan_with_peer()
    stack = peer.stack
    stack.tcp.listen(ANY, 80)
    for i in range(700):
        port = 20000 + i
        peer.send(SYN, 5000, sport=port)
        synack = [s for s in peer.received() if s.flags == SYN | ACK][0]
        peer.send(ACK, 5001, synack.seq + 1, sport=port)
        conn = stack.tcp._listeners[(ANY, 80)].accept()
        conn.close()
        fin = [s for s in peer.received() if s.flags & FIN][0]
        peer.send(FIN | ACK, 5001, fin.seq + 1, sport=port)
        peer.received()
        peer.send(RST, 5002, sport=port)            # ends the record at once
    assert stack.counters["tcp.time_wait_reset"] == 700
    assert stack.tcp.time_wait_count == 0 and stack.tcp.connections() == []
    assert len(stack.tcp._tw_queue) <= 256 + 1
    lan.run(2 * MSL + 1)
    assert len(stack.tcp._tw_queue) == 0


def test_an_ipv6_record_keeps_the_connection_s_flow_label() -> None:
    """Over IPv6 the record answers through the connection's own env: its
    ACK to a retransmitted FIN carries the connection's flow label."""
    from test_tcp_ipv6 import lan6, pair, sent6

    from femtotcp.wire import ethernet, ipv6
    lan = lan6()
    client, server = pair(lan)
    client.close()
    lan.run(0.5)
    server.close()
    lan.run(0.5)
    assert client.state == "TIME_WAIT"
    stack = lan.stacks[0]
    (record,) = stack.tcp.connections()
    assert isinstance(record, TimeWait)
    iface = stack.interfaces[0]
    sent: list[bytes] = []
    send = iface.device.send
    iface.device.send = lambda frame: (sent.append(bytes(frame)), send(frame))[1]  # type: ignore[method-assign]
    # The server's FIN again, as if our ACK was lost.
    fin = tcp.build(server.local[0], server.remote[0], server.local[1], server.remote[1],
                    (record.rcv_nxt - 1) & 0xFFFFFFFF, record.snd_max & 0xFFFFFFFF,
                    FIN | ACK, 100)
    stack.receive(iface, ethernet.build(iface.mac, lan.stacks[1].interfaces[0].mac,
                                        ethernet.ETH_IPV6,
                                        ipv6.build(server.local[0], server.remote[0], 6, fin)))
    ((h, ack, _),) = sent6(sent)
    assert ack.flags == ACK and ack.ack == record.rcv_nxt & 0xFFFFFFFF
    assert ack.seq == record.snd_max & 0xFFFFFFFF
    assert h.flow_label == record.env.flow_label != 0   # type: ignore[attr-defined]


# -- FIN_WAIT_2 (the orphan's substate) ----------------------------------------------------

FIN_TIMEOUT = 60.0


def _fin_wait_2(options: bytes = b"") -> tuple[Any, Passive]:
    """A passive connection the program closed; the peer ACKs our FIN and
    keeps its own."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer, options=options)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(ACK, p.snd, p.rcv + 1)
    assert p.conn.state == "FIN_WAIT_2"
    peer.nothing()
    return lan, p


def test_an_orphan_in_fin_wait_2_becomes_a_record_and_is_freed() -> None:
    """Linux's tcp_time_wait with the FIN_WAIT2 substate: the table holds a
    ``TimeWait`` in FIN_WAIT_2 in place of the connection, which is freed
    once the program lets go; TIME-WAIT is not counted yet."""
    lan, p = _fin_wait_2()
    stack = p.peer.stack
    (record,) = stack.tcp.connections()
    assert isinstance(record, TimeWait) and record.state == "FIN_WAIT_2"
    assert record.info()["state"] == "FIN_WAIT_2" and record.local == p.conn.local
    assert stack.tcp.time_wait_count == 0
    ref = weakref.ref(p.conn)
    del p
    lan.run(5)
    gc.collect()
    assert ref() is None
    assert stack.tcp.connections() == [record]


def test_the_peer_s_fin_is_acked_and_time_wait_follows_for_2msl() -> None:
    """The peer's FIN: ACKed at once, the record goes on in TIME-WAIT (the
    program's object shows it) for 2 MSL from that FIN, then ends."""
    ts = tcp.build_options(ts=(100, 0))
    for options in (b"", ts):
        lan, p = _fin_wait_2(options)
        stack = p.peer.stack
        peer = p.peer
        lan.run(20)
        peer.send(FIN | ACK, p.snd, p.rcv + 1, options=ts if options else b"")
        ack = peer.expect(ACK)
        assert (ack.seq, ack.ack) == ((p.rcv + 1) & 0xFFFFFFFF, (p.snd + 1) & 0xFFFFFFFF)
        assert (ack.opts.ts_val is not None) == bool(options)
        assert p.conn.state == "TIME_WAIT" and stack.tcp.time_wait_count == 1
        (record,) = stack.tcp.connections()
        assert isinstance(record, TimeWait) and record.state == "TIME_WAIT"
        peer.send(FIN | ACK, p.snd, p.rcv + 1, options=ts if options else b"")
        assert peer.expect(ACK).ack == (p.snd + 1) & 0xFFFFFFFF      # re-ACKed
        lan.run(2 * MSL - 1)
        assert p.conn.state == "TIME_WAIT"
        lan.run(2)
        assert p.conn.state == "CLOSED" and stack.tcp.connections() == []
        assert stack.tcp.time_wait_count == 0
        assert stack.counters["tcp.time_wait_done"] == 1
        assert stack.counters["tcp.fin_wait_2_timeout"] == 0


def test_a_shorter_2msl_than_fin_timeout_ends_time_wait_on_time() -> None:
    """With 2 MSL shorter than what is left of fin_timeout, TIME-WAIT still
    ends 2 MSL after the peer's FIN."""
    from femtotcp.proto.tcp.config import TcpConfig
    from femtotcp.stack.config import StackConfig
    lan, peer = lan_with_peer(config=StackConfig(tcp=TcpConfig(msl=5.0)))
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(ACK, p.snd, p.rcv + 1)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    peer.expect(ACK)
    lan.run(9)
    assert p.conn.state == "TIME_WAIT"
    lan.run(2)
    assert p.conn.state == "CLOSED" and peer.stack.tcp.connections() == []


def test_data_for_the_closed_socket_is_reset() -> None:
    """Data from the peer in FIN_WAIT_2 for a closed socket: a RST (as Linux
    for an orphan) and the record ends."""
    lan, p = _fin_wait_2()
    peer = p.peer
    stack = peer.stack
    peer.send(ACK | FIN, p.snd, p.rcv + 1, b"late answer")
    rst = peer.expect(RST)
    assert rst.seq == (p.rcv + 1) & 0xFFFFFFFF
    assert p.conn.state == "CLOSED" and stack.tcp.connections() == []
    assert stack.counters["tcp.data_after_close"] == 1
    assert stack.tcp.time_wait_count == 0


def test_fin_timeout_ends_the_record_silently() -> None:
    lan, p = _fin_wait_2()
    peer = p.peer
    stack = peer.stack
    lan.run(FIN_TIMEOUT - 1)
    assert p.conn.state == "FIN_WAIT_2"
    lan.run(2)
    peer.nothing()
    assert p.conn.state == "CLOSED" and stack.tcp.connections() == []
    assert stack.counters["tcp.fin_wait_2_timeout"] == 1
    assert stack.counters["tcp.time_wait_done"] == 0


def test_the_record_answers_other_segments_as_the_connection() -> None:
    """What the FIN_WAIT_2 record answers to a RST off the sequence, a SYN, an
    ACK of unsent data, an old segment and an exact RST is what the orphaned
    connection answered: a challenge ACK, a challenge ACK, a challenge ACK, an
    ACK, the end."""
    lan, p = _fin_wait_2()
    peer = p.peer
    stack = peer.stack
    got = []
    for args in ((RST, p.snd + 7), (SYN, p.snd + 9), (ACK, p.snd, p.rcv + 50),
                 (ACK, p.snd - 1, p.rcv + 1, b"x")):
        peer.send(*args)
        got.append([(s.flags, (s.seq - p.iss) & 0xFFFFFFFF, (s.ack - p.irs) & 0xFFFFFFFF)
                    for s in peer.received()])
        lan.run(1.0)
    assert got == [[(ACK, 2, 1)]] * 4
    assert stack.counters["tcp.rst_challenged"] == 1
    assert stack.counters["tcp.syn_challenged"] == 1
    assert stack.counters["tcp.ack_unsent_data"] == 1
    assert stack.counters["tcp.old_segment"] == 1
    assert p.conn.state == "FIN_WAIT_2"
    peer.send(RST, p.snd)
    peer.nothing()
    assert p.conn.state == "CLOSED" and stack.tcp.connections() == []
    assert stack.counters["tcp.reset_received"] == 1
