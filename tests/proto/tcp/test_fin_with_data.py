"""The FIN rides on the last data segment when the program closes (or shuts
its writing side) before that data was sent, as Linux's tcp_send_fin sets FIN
on the unsent tail of the write queue: one segment instead of two, resent
whole, and an ACK of the data alone does not count the FIN."""

from __future__ import annotations

import socket

from tcp_harness import ACK, FIN, lan_with_peer, open_passive

from femtotcp.wire.tcp import PSH

DATA = b"HTTP/1.0 200 OK\r\n\r\nhello"


def test_write_then_close_sends_data_and_fin_in_one_segment() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    assert p.conn.send(DATA, push=False) == len(DATA)
    peer.nothing()                       # queued, not sent
    p.conn.close()
    seg = peer.expect(ACK | PSH | FIN)
    assert seg.payload == DATA and seg.seq == p.rcv
    assert p.conn.state == "FIN_WAIT_1"
    peer.send(ACK, p.snd, p.rcv + len(DATA) + 1)
    assert p.conn.state == "FIN_WAIT_2"
    peer.nothing()


def test_shutdown_after_unpushed_write_sends_one_segment() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.send(DATA, push=False)
    p.conn.shutdown(socket.SHUT_WR)
    seg = peer.expect(ACK | PSH | FIN)
    assert seg.payload == DATA


def test_the_retransmission_carries_data_and_fin() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.send(DATA, push=False)
    p.conn.close()
    first = peer.expect(ACK | PSH | FIN)
    lan.run(1.5)                         # a few RTOs
    again = peer.received()
    assert again and all((s.flags, s.seq, s.payload) == (first.flags, first.seq, DATA)
                         for s in again)
    assert p.conn.state == "FIN_WAIT_1"
    peer.send(ACK, p.snd, p.rcv + len(DATA) + 1)
    assert p.conn.state == "FIN_WAIT_2"


def test_a_partial_ack_does_not_count_the_fin() -> None:
    """An ACK of the data without the FIN leaves FIN-WAIT-1, and the FIN
    alone is resent at the next timeout."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.send(DATA, push=False)
    p.conn.close()
    peer.expect(ACK | PSH | FIN)
    peer.send(ACK, p.snd, p.rcv + len(DATA))       # the data, not the FIN
    assert p.conn.state == "FIN_WAIT_1"
    peer.nothing()
    lan.run(1.5)                         # a few RTOs: the FIN alone again
    again = peer.received()
    assert again and all((s.flags, s.seq, s.payload) ==
                         (ACK | FIN, (p.rcv + len(DATA)) & 0xFFFFFFFF, b"") for s in again)
    peer.send(ACK, p.snd, p.rcv + len(DATA) + 1)
    assert p.conn.state == "FIN_WAIT_2"


def test_push_sends_what_was_queued_as_before() -> None:
    """Without a close, ``push`` sends the queued data alone (no FIN), and the
    FIN of a later close follows in its own segment."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.send(DATA, push=False)
    p.conn.push()
    seg = peer.expect(ACK | PSH)
    assert seg.payload == DATA
    p.conn.close()
    assert peer.expect(ACK | FIN).payload == b""
