"""Every transition of RFC 9293's state diagram (figure 5), and RST in every
state, driven byte by byte from a raw peer on the virtual clock.

The diagram's LISTEN -> SYN_SENT ("SEND" on a listening socket) is not offered:
neither the sockets API nor Linux has it.
"""

from __future__ import annotations

import errno
import socket

import pytest
from tcp_harness import (
    ACK,
    ANY,
    FIN,
    PSH,
    RST,
    SYN,
    Transfer,
    connect_pair,
    lan_with_peer,
    open_passive,
    random_bytes,
)

from femtotcp.wire import tcp

MSL = 30.0


# -- opening -------------------------------------------------------------------------

def test_closed_listen_closed() -> None:
    """CLOSED -> LISTEN (passive open) -> CLOSED (close): SYNs get a SYN-ACK while
    listening and a RST afterwards."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    assert lst.state == "LISTEN"
    peer.send(SYN, 100)
    synack = peer.expect(SYN | ACK)
    assert synack.ack == 101
    lst.close()
    peer.send(SYN, 200, sport=40001)
    rst = peer.expect(RST | ACK)
    assert rst.seq == 0 and rst.ack == 201
    assert peer.stack.tcp.listeners() == []
    again = peer.stack.tcp.listen(ANY, 80)          # the port is free again
    with pytest.raises(OSError) as exc:
        peer.stack.tcp.listen(ANY, 80)
    assert exc.value.errno == errno.EADDRINUSE
    again.close()


def test_listen_syn_received_established() -> None:
    """LISTEN -> SYN_RECEIVED (rcv SYN, snd SYN,ACK) -> ESTABLISHED (rcv ACK of SYN)."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 7000, options=tcp.build_options(mss=1000))
    synack = peer.expect(SYN | ACK)
    assert synack.ack == 7001
    assert synack.opts.mss == 1460        # our MSS: MTU 1500 - 40
    (conn,) = peer.stack.tcp.connections()
    assert conn.state == "SYN_RECEIVED"
    assert lst.accept() is None
    peer.send(ACK, 7001, synack.seq + 1)
    assert conn.state == "ESTABLISHED"
    assert lst.accept() is conn
    assert conn.mss == 1000               # the peer's MSS bounds what we send


def test_closed_syn_sent_established() -> None:
    """CLOSED -> SYN_SENT (active open) -> ESTABLISHED (rcv SYN,ACK, snd ACK)."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80)
    assert conn.state == "SYN_SENT"
    lan.run(0)
    syn = peer.expect(SYN)
    assert syn.opts.mss == 1460 and syn.opts.sack_perm and syn.opts.ts_val is not None
    assert syn.opts.wscale is not None
    peer.send(SYN | ACK, 9000, syn.seq + 1, sport=80, dport=syn.sport)
    assert conn.state == "ESTABLISHED"
    ack = peer.expect(ACK)
    assert ack.seq == syn.seq + 1 and ack.ack == 9001
    # the peer offered no options, so none are used
    assert not conn.ts_ok and not conn.sack_ok and conn.snd_wscale == 0


def test_syn_sent_close() -> None:
    """SYN_SENT -> CLOSED (close): the TCB goes away without a RST."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80)
    lan.run(0)
    peer.expect(SYN)
    conn.close()
    assert conn.state == "CLOSED"
    assert peer.stack.tcp.connections() == []
    lan.run(10)
    peer.nothing()


def test_syn_sent_timeout_with_backoff() -> None:
    """SYN_SENT -> CLOSED after tcp_syn_retries, SYNs spaced 1, 2, 4, ... s (RFC 6298
    5.5), ETIMEDOUT for the program."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80)
    times = []
    while conn.state == "SYN_SENT" and lan.loop.now() < 500:
        lan.run(0.25)
        for s in peer.received():
            assert s.flags == SYN
            times.append(lan.loop.now())
    gaps = [round(b - a) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [1, 2, 4, 8, 16, 32]
    assert conn.state == "CLOSED" and conn.error == errno.ETIMEDOUT
    with pytest.raises(TimeoutError):
        conn.recv(10)


def test_syn_sent_refused() -> None:
    """SYN_SENT + acceptable RST -> CLOSED with ECONNREFUSED; a RST whose ACK does
    not cover our SYN is ignored (RFC 9293 3.10.7.3, RFC 5961 3.2)."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80)
    lan.run(0)
    syn = peer.expect(SYN)
    peer.send(RST | ACK, 0, syn.seq + 5, sport=80, dport=syn.sport)
    assert conn.state == "SYN_SENT"
    peer.send(RST, 0, 0, sport=80, dport=syn.sport)       # no ACK: ignored
    assert conn.state == "SYN_SENT"
    peer.send(RST | ACK, 0, syn.seq + 1, sport=80, dport=syn.sport)
    assert conn.state == "CLOSED" and conn.error == errno.ECONNREFUSED
    assert conn.writable and conn.readable
    with pytest.raises(ConnectionRefusedError):
        conn.send(b"x")


def test_syn_sent_bad_ack_gets_reset() -> None:
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80)
    lan.run(0)
    syn = peer.expect(SYN)
    peer.send(SYN | ACK, 1, syn.seq + 100, sport=80, dport=syn.sport)
    rst = peer.expect(RST)
    assert rst.seq == syn.seq + 100
    assert conn.state == "SYN_SENT"


def test_connect_to_closed_port() -> None:
    """A stack-to-stack connect to a port nobody listens on: RST, ECONNREFUSED."""
    from femtolan import addr, make_lan
    lan = make_lan(2)
    conn = lan.stacks[1].tcp.connect(addr(0), 9999)
    lan.run(1)
    assert conn.state == "CLOSED" and conn.error == errno.ECONNREFUSED
    assert lan.stacks[0].counters["tcp.no_socket"] == 1


def test_simultaneous_open_raw() -> None:
    """SYN_SENT -> SYN_RECEIVED (rcv SYN, snd SYN,ACK) -> ESTABLISHED (RFC 9293 figure 8)."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80, sport=4444)
    lan.run(0)
    syn = peer.expect(SYN)
    peer.send(SYN, 300, sport=80, dport=4444)
    assert conn.state == "SYN_RECEIVED"
    synack = peer.expect(SYN | ACK)
    assert synack.seq == syn.seq and synack.ack == 301
    peer.send(SYN | ACK, 300, syn.seq + 1, sport=80, dport=4444)
    assert conn.state == "ESTABLISHED"
    peer.received()
    conn.send(b"hello")
    lan.run(0)
    data = peer.expect(ACK | PSH)
    assert data.payload == b"hello" and data.seq == syn.seq + 1 and data.ack == 301


def test_simultaneous_open_two_stacks() -> None:
    from femtolan import addr, make_lan
    lan = make_lan(2)
    a, b = lan.stacks
    ca = a.tcp.connect(addr(1), 6000, sport=7000)
    cb = b.tcp.connect(addr(0), 7000, sport=6000)
    assert lan.run_until(lambda: ca.state == cb.state == "ESTABLISHED", 10)
    assert a.counters["tcp.simultaneous_open"] == 1
    ta = Transfer(ca, b"from a" * 1000)
    tb = Transfer(cb, b"from b" * 1000)
    ta.event()
    tb.event()
    assert lan.run_until(lambda: ta.eof and tb.eof, 30)
    assert bytes(tb.got) == b"from a" * 1000 and bytes(ta.got) == b"from b" * 1000


def test_syn_received_rst_returns_to_listen() -> None:
    """SYN_RECEIVED (passive) + RST -> LISTEN: the half-open connection is dropped,
    the listener keeps working."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 100)
    synack = peer.expect(SYN | ACK)
    peer.send(RST, 101)
    assert peer.stack.tcp.connections() == [] and not lst.syn_queue
    assert peer.stack.counters["tcp.syn_queue"] == 0
    open_passive(lan, peer, listener=lst, irs=555)
    assert synack.ack == 101


def test_syn_received_gives_up_silently() -> None:
    """SYN_RECEIVED -> CLOSED after tcp_synack_retries unanswered SYN-ACKs."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 100)
    lan.run(200)
    synacks = [s for s in peer.received() if s.flags == SYN | ACK]
    assert len(synacks) == 1 + 5
    assert peer.stack.tcp.connections() == [] and lst.accept() is None
    assert not any(s.flags & RST for s in peer.received())


def test_syn_received_duplicate_syn_resends_synack() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 100)
    first = peer.expect(SYN | ACK)
    peer.send(SYN, 100)
    again = peer.expect(SYN | ACK)
    assert again.seq == first.seq and again.ack == 101


def test_syn_received_bad_ack_gets_reset() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 100)
    synack = peer.expect(SYN | ACK)
    peer.send(ACK, 101, synack.seq + 50)
    rst = peer.expect(RST)
    assert rst.seq == synack.seq + 50
    (conn,) = peer.stack.tcp.connections()
    assert conn.state == "SYN_RECEIVED"


def test_syn_received_close_sends_fin_once_established() -> None:
    """SYN_RECEIVED + close -> FIN_WAIT_1: the FIN follows the handshake (RFC 9293
    3.10.4 SYN-RECEIVED: queued until ESTABLISHED)."""
    lan, peer = lan_with_peer()
    conn = peer.stack.tcp.connect(peer.ip, 80, sport=4444)
    lan.run(0)
    syn = peer.expect(SYN)
    peer.send(SYN, 300, sport=80, dport=4444)
    peer.expect(SYN | ACK)
    conn.close()
    peer.nothing()
    peer.send(SYN | ACK, 300, syn.seq + 1, sport=80, dport=4444)
    assert conn.state == "FIN_WAIT_1"
    fin = peer.expect(FIN | ACK)
    assert fin.seq == syn.seq + 1


# -- closing ---------------------------------------------------------------------------

def test_active_close_fin_wait_time_wait() -> None:
    """ESTABLISHED -> FIN_WAIT_1 (close, snd FIN) -> FIN_WAIT_2 (rcv ACK of FIN)
    -> TIME_WAIT (rcv FIN, snd ACK) -> CLOSED (2 MSL)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.close()
    assert conn.state == "FIN_WAIT_1"
    fin = peer.expect(FIN | ACK)
    assert fin.seq == p.rcv and fin.ack == p.snd
    peer.send(ACK, p.snd, p.rcv + 1)
    assert conn.state == "FIN_WAIT_2"
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    assert conn.state == "TIME_WAIT"
    ack = peer.expect(ACK)
    assert ack.ack == p.snd + 1
    lan.run(2 * MSL - 1)
    assert conn.state == "TIME_WAIT"
    lan.run(2)
    assert conn.state == "CLOSED" and peer.stack.tcp.connections() == []
    assert conn.error is None


def test_passive_close_close_wait_last_ack() -> None:
    """ESTABLISHED -> CLOSE_WAIT (rcv FIN, snd ACK after the delayed-ACK
    timeout, as Linux's tcp_fin) -> LAST_ACK (close, snd FIN) -> CLOSED (rcv
    ACK of FIN)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(FIN | ACK, p.snd, p.rcv)
    assert conn.state == "CLOSE_WAIT"
    assert peer.received() == []
    lan.run(conn.config.delack)
    assert peer.expect(ACK).ack == p.snd + 1
    assert conn.recv(100) == b""              # EOF
    conn.close()
    assert conn.state == "LAST_ACK"
    fin = peer.expect(FIN | ACK)
    assert fin.seq == p.rcv
    peer.send(ACK, p.snd + 1, p.rcv + 1)
    assert conn.state == "CLOSED" and peer.stack.tcp.connections() == []


def test_passive_close_fin_carries_the_ack_of_the_peers_fin() -> None:
    """A program that closes on the peer's FIN before the delayed ACK is due
    sends one FIN+ACK that acknowledges it: three segments for the close, as
    between two Linux hosts."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(FIN | ACK, p.snd, p.rcv)
    assert conn.state == "CLOSE_WAIT" and peer.received() == []
    conn.close()
    fin = peer.expect(FIN | ACK)
    assert fin.seq == p.rcv and fin.ack == p.snd + 1
    peer.send(ACK, p.snd + 1, p.rcv + 1)
    assert conn.state == "CLOSED"
    lan.run(conn.config.delack * 2)
    assert peer.received() == []              # no ACK left over from the FIN
    assert conn.counters["tcp.delayed_acks"] == 0


def test_passive_close_in_the_callback_makes_no_delayed_ack_timer() -> None:
    """A program that closes from its callback on the peer's FIN answers
    with one FIN+ACK, and the delayed ACK of the FIN, which that segment
    carried, never had its timer made (nothing armed only to be stopped)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    heap = peer.stack.timers.heap_size()

    def on_event() -> None:
        if conn.recv() == b"":
            conn.close()

    conn.on_event = on_event
    peer.send(FIN | ACK, p.snd, p.rcv)
    assert conn.state == "LAST_ACK"
    fin = peer.expect(FIN | ACK)
    assert fin.seq == p.rcv and fin.ack == p.snd + 1
    assert conn.rcv.t_delack.deadline is None and not hasattr(conn.rcv.t_delack, "_fire")
    assert peer.stack.timers.heap_size() <= heap + 1      # the FIN's RTO only
    peer.send(ACK, p.snd + 1, p.rcv + 1)
    assert conn.state == "CLOSED"
    assert conn.counters["tcp.delayed_acks"] == 0


def test_delayed_ack_of_a_fin_the_callback_does_not_answer() -> None:
    """A callback that takes the EOF but does not close leaves the FIN's
    ACK delayed: its timer is armed once the callback returned, and the ACK
    goes out after the delayed-ACK timeout, not before."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    seen: list[bytes | None] = []
    conn.on_event = lambda: seen.append(conn.recv())
    peer.send(FIN | ACK, p.snd, p.rcv)
    assert seen == [b""] and conn.state == "CLOSE_WAIT"
    assert conn.rcv.t_delack.deadline is not None
    assert peer.received() == []
    lan.run(conn.config.delack / 2)
    assert peer.received() == []
    lan.run(conn.config.delack)
    assert peer.expect(ACK).ack == p.snd + 1
    assert conn.counters["tcp.delayed_acks"] == 1


def test_simultaneous_close_closing() -> None:
    """FIN_WAIT_1 -> CLOSING (rcv FIN, snd ACK) -> TIME_WAIT (rcv ACK of FIN)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.close()
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv)        # the peer's FIN, not acking ours
    assert conn.state == "CLOSING"
    assert peer.expect(ACK).ack == p.snd + 1
    peer.send(ACK, p.snd + 1, p.rcv + 1)
    assert conn.state == "TIME_WAIT"


def test_fin_wait_1_to_time_wait_directly() -> None:
    """FIN_WAIT_1 + FIN that also acks our FIN -> TIME_WAIT."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    assert p.conn.state == "TIME_WAIT"


def test_simultaneous_close_two_stacks() -> None:
    from femtolan import make_lan
    lan = make_lan(2)
    ca, cb = connect_pair(lan)
    ca.close()
    cb.close()
    lan.run(0.5)
    assert ca.state == "TIME_WAIT" and cb.state == "TIME_WAIT"
    lan.run(2 * MSL + 1)
    assert ca.state == cb.state == "CLOSED"
    assert lan.stacks[0].tcp.connections() == [] == lan.stacks[1].tcp.connections()


def test_time_wait_reacks_retransmitted_fin() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    peer.expect(ACK)
    lan.run(50)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)     # our ACK was lost: the FIN comes again
    assert peer.expect(ACK).ack == p.snd + 1
    lan.run(2 * MSL - 1)                       # the 2 MSL timer restarted
    assert p.conn.state == "TIME_WAIT"
    lan.run(2)
    assert p.conn.state == "CLOSED"


def test_time_wait_new_syn_reuses_the_tuple() -> None:
    """RFC 6191 / Linux: a SYN above the old RCV.NXT opens a new connection."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    p = open_passive(lan, peer, listener=lst)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    peer.expect(ACK)
    assert p.conn.state == "TIME_WAIT"
    peer.send(SYN, p.snd + 100_000)
    synack = peer.expect(SYN | ACK)
    assert synack.ack == p.snd + 100_001
    peer.send(SYN, p.snd - 5, sport=40000)     # an old SYN would not have been allowed
    assert lst.accept() is None


def test_half_close_keeps_receiving() -> None:
    """shutdown(SHUT_WR): our FIN goes out, the peer's data still arrives."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.send(b"request")
    conn.shutdown(socket.SHUT_WR)
    lan.run(0)
    segs = peer.received()
    assert b"".join(s.payload for s in segs) == b"request"
    assert segs[-1].flags & FIN
    with pytest.raises(BrokenPipeError):
        conn.send(b"more")
    peer.send(ACK, p.snd, p.rcv + 8)
    assert conn.state == "FIN_WAIT_2"
    peer.send(ACK | PSH, p.snd, p.rcv + 8, b"response")
    assert conn.recv(100) == b"response"
    peer.send(FIN | ACK, p.snd + 8, p.rcv + 8)
    assert conn.recv(100) == b""
    assert conn.state == "TIME_WAIT"


def test_half_close_two_stacks() -> None:
    from femtolan import make_lan
    lan = make_lan(2)
    ca, cb = connect_pair(lan)
    ca.send(b"ping" * 100)
    ca.shutdown(socket.SHUT_WR)
    lan.run(1)
    assert cb.recv(1000) == b"ping" * 100 and cb.recv(10) == b""
    assert cb.state == "CLOSE_WAIT" and ca.state == "FIN_WAIT_2"
    cb.send(b"pong" * 5000)
    got = bytearray()
    lan.run_until(lambda: (got.extend(ca.recv(1 << 20) or b"") or len(got)) >= 20000, 10)
    assert bytes(got) == b"pong" * 5000
    cb.close()
    lan.run(1)
    assert ca.state == "TIME_WAIT" and cb.state == "CLOSED"


def test_time_wait_rst_and_rfc1337() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(FIN | ACK, p.snd, p.rcv + 1)
    peer.send(RST, p.snd + 5)                    # not exact: ignored
    assert p.conn.state == "TIME_WAIT"
    peer.send(RST, p.snd + 1)
    assert p.conn.state == "CLOSED"


def test_orphan_fin_wait_2_times_out() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(ACK, p.snd, p.rcv + 1)
    assert p.conn.state == "FIN_WAIT_2"
    lan.run(61)
    assert p.conn.state == "CLOSED"


def test_close_with_unread_data_resets() -> None:
    """RFC 2525 2.17 / Linux: closing with unread data sends a RST."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    peer.send(ACK | PSH, p.snd, p.rcv, b"unread")
    peer.received()
    p.conn.close()
    rst = peer.expect(RST | ACK)          # with ACK and RCV.NXT, as Linux sends it
    assert rst.seq == p.rcv and rst.ack == p.snd + 6
    assert p.conn.state == "CLOSED"


def test_linger_zero_resets() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.linger = 0
    p.conn.close()
    rst = peer.expect(RST | ACK)
    assert (rst.seq, rst.ack) == (p.rcv, p.snd)


def test_abort_resets() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.abort()
    rst = peer.expect(RST | ACK)
    assert rst.seq == p.rcv and rst.ack == p.snd and p.conn.state == "CLOSED"


def test_data_after_close_resets() -> None:
    """Data arriving for a closed (orphaned) socket: RST, as Linux."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.close()
    peer.expect(FIN | ACK)
    peer.send(ACK | PSH, p.snd, p.rcv + 1, b"late data")
    assert any(s.flags & RST for s in peer.received())
    assert p.conn.state == "CLOSED"


# -- RST in every state -----------------------------------------------------------------

def _to_state(state: str):  # type: ignore[no-untyped-def]
    lan, peer = lan_with_peer()
    if state in ("SYN_SENT",):
        conn = peer.stack.tcp.connect(peer.ip, 80, sport=4444)
        lan.run(0)
        syn = peer.expect(SYN)
        return lan, peer, conn, 0, syn.seq + 1
    if state == "SYN_RECEIVED":
        peer.stack.tcp.listen(ANY, 80)
        peer.send(SYN, 100)
        synack = peer.expect(SYN | ACK)
        (conn,) = peer.stack.tcp.connections()
        return lan, peer, conn, 101, synack.seq + 1
    p = open_passive(lan, peer)
    conn, snd, rcv = p.conn, p.snd, p.rcv
    if state == "FIN_WAIT_1":
        conn.close()
    elif state == "FIN_WAIT_2":
        conn.shutdown(socket.SHUT_WR)
        peer.send(ACK, snd, rcv + 1)
    elif state == "CLOSE_WAIT":
        peer.send(FIN | ACK, snd, rcv)
        snd += 1
    elif state == "CLOSING":
        conn.close()
        peer.send(FIN | ACK, snd, rcv)
        snd += 1
    elif state == "LAST_ACK":
        peer.send(FIN | ACK, snd, rcv)
        snd += 1
        conn.close()
    elif state == "TIME_WAIT":
        conn.shutdown(socket.SHUT_WR)
        peer.send(FIN | ACK, snd, rcv + 1)
        snd += 1
    peer.received()
    assert conn.state == state
    return lan, peer, conn, snd, rcv


@pytest.mark.parametrize("state,err", [
    ("SYN_SENT", errno.ECONNREFUSED),
    ("SYN_RECEIVED", None),
    ("ESTABLISHED", errno.ECONNRESET),
    ("FIN_WAIT_1", None),
    ("FIN_WAIT_2", errno.ECONNRESET),
    ("CLOSE_WAIT", errno.EPIPE),
    ("CLOSING", None),
    ("LAST_ACK", None),
    ("TIME_WAIT", None),
])
def test_rst_in_every_state(state: str, err: int | None) -> None:
    """An acceptable RST ends the connection in every state (RFC 9293 3.10.7),
    with Linux's errno for the program; an in-window but inexact one only
    draws a challenge ACK (RFC 5961 3.2), except where no window exists yet."""
    lan, peer, conn, snd, rcv = _to_state(state)
    if state not in ("SYN_SENT",):
        peer.send(RST, snd + 10, sport=4444 if state == "SYN_SENT" else None)
        assert conn.state == state
        if state != "TIME_WAIT":
            assert peer.expect(ACK).ack == snd      # challenge ACK
    if state == "SYN_SENT":
        peer.send(RST | ACK, 0, rcv, sport=80, dport=4444)
    else:
        peer.send(RST, snd)
    assert conn.state == "CLOSED"
    if state in ("FIN_WAIT_1", "CLOSING", "LAST_ACK", "TIME_WAIT", "SYN_RECEIVED"):
        assert conn.error in (err, errno.ECONNRESET, None)
    else:
        assert conn.error == err
    assert peer.stack.tcp.connections() == []
    peer.nothing()


def test_segment_for_no_connection_gets_rst() -> None:
    """RFC 9293 3.10.7.1: <SEQ=SEG.ACK><CTL=RST> or <SEQ=0><ACK=SEG.SEQ+SEG.LEN>."""
    lan, peer = lan_with_peer()
    peer.send(ACK, 1000, 2000, b"abc", dport=81)
    rst = peer.expect(RST)
    assert rst.seq == 2000
    peer.send(PSH, 1000, 0, b"abcd", dport=81)
    rst = peer.expect(RST | ACK)
    assert rst.seq == 0 and rst.ack == 1004
    peer.send(RST, 5, dport=81)
    peer.nothing()                             # never answer a RST


def test_established_data_both_ways_raw() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    peer.send(ACK | PSH, p.snd, p.rcv, b"hello")
    assert p.conn.recv(100) == b"hello"
    assert peer.expect(ACK).ack == p.snd + 5
    p.conn.send(b"world")
    seg = peer.expect(ACK | PSH)
    assert seg.payload == b"world" and seg.ack == p.snd + 5


def test_bulk_two_stacks_clean() -> None:
    from femtolan import make_lan
    lan = make_lan(2)
    ca, cb = connect_pair(lan)
    data = random_bytes(500_000, 1)
    t1, t2 = Transfer(ca, data), Transfer(cb, data[::-1])
    t1.event()
    t2.event()
    assert lan.run_until(lambda: t1.eof and t2.eof, 60)
    assert bytes(t2.got) == data and bytes(t1.got) == data[::-1]
    assert ca.retransmits == 0 and cb.retransmits == 0


def test_time_wait_is_bounded() -> None:
    """Like tcp_max_tw_buckets: past the limit a closing connection skips TIME_WAIT."""
    from femtolan import make_lan
    lan = make_lan(2)
    lan.stacks[1].tcp.config.max_time_wait = 3
    pairs = [connect_pair(lan, port=6000 + i) for i in range(5)]
    for ca, cb in pairs:
        ca.close()
        lan.run(0.2)
        cb.close()
        lan.run(0.2)
    states = [ca.state for ca, _ in pairs]
    assert states.count("TIME_WAIT") == 3 and states.count("CLOSED") == 2
    assert lan.stacks[1].counters["tcp.time_wait_overflow"] == 2
    lan.run(61)
    assert lan.stacks[1].tcp.time_wait_count == 0


def test_addresses_must_be_ours() -> None:
    from femtolan import make_lan

    from femtotcp.wire import ip_bytes
    lan = make_lan(2)
    tcp_ = lan.stacks[0].tcp
    with pytest.raises(OSError) as exc:
        tcp_.listen(ip_bytes("192.0.2.77"), 80)
    assert exc.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as exc:
        tcp_.connect(ip_bytes("192.0.2.2"), 80, src=ip_bytes("192.0.2.77"))
    assert exc.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(TypeError):
        tcp_.connect(ip_bytes("192.0.2.2"), 80, bogus_option=1)
