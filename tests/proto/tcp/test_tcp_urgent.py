"""Urgent data sent (a program's send with MSG_OOB, ``TcpConnection.mark_urgent``):
segments before the urgent pointer carry URG and the pointer as Linux sends
them (the byte after the urgent data), with a valid checksum, until the peer
acknowledges the urgent byte; neither Nagle nor TSO holds it meanwhile. Received urgent data stays
inline in the connection's stream (RFC 6093; a relay gets every byte); the
urgent byte is marked (the byte before the pointer, as Linux reads it) for a
socket to hand over out of band (``urgent_offset``, ``send_urgent_byte``)."""

from __future__ import annotations

import pytest
from tcp_harness import ACK, PSH, lan_with_peer, open_passive

from femtotcp.wire import tcp

URG = tcp.URG


@pytest.mark.parametrize("timestamps", [False, True])
def test_the_urgent_byte_goes_with_urg_and_its_pointer(timestamps: bool) -> None:
    lan, peer = lan_with_peer()
    opts = tcp.build_options(mss=1460, ts=(100, 0)) if timestamps else b""
    p = open_passive(lan, peer, options=opts)
    conn = p.conn
    conn.send(b"data")
    lan.run(0)
    (first,) = peer.received()            # (tcp.parse checks every checksum)
    assert not first.flags & URG and first.payload == b"data"
    conn.send(b"!", False)
    conn.mark_urgent(0)
    lan.run(0)
    (urgent,) = peer.received()
    assert urgent.payload == b"!" and urgent.flags & URG
    assert urgent.seq + urgent.urgent == urgent.seq + 1     # just past the urgent byte
    # Past the pointer no URG; once the urgent byte is acknowledged, urgent mode ends.
    conn.send(b"more")
    lan.run(0)
    (more,) = peer.received()
    assert more.payload == b"more" and not more.flags & URG    # past the pointer
    peer.send(ACK, p.snd, urgent.seq + 1)
    conn.send(b"after")
    lan.run(0)
    assert all(not s.flags & URG for s in peer.received())
    assert conn.snd_up is None
    assert conn.counters["tcp.urgent_sent"] == 1


def test_urgent_data_not_yet_queued_is_pointed_at() -> None:
    """The pointer may lie beyond what the send buffer holds (the program's bytes
    still on their way): earlier segments point past their own end, as Linux's."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.mark_urgent(3)                   # three bytes still to come, the last urgent
    conn.send(b"xy")
    lan.run(0)
    (seg,) = peer.received()
    assert seg.flags & URG and seg.urgent == 3
    peer.send(ACK | PSH, p.snd, seg.seq + 2)
    conn.send(b"z")
    lan.run(0)
    (last,) = peer.received()
    assert last.flags & URG and last.urgent == 1 and last.payload == b"z"


def test_urgent_data_received_stays_inline() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab!", urgent=3)
    assert p.conn.recv(10) == b"ab!"
    assert p.conn.counters["tcp.urgent"] == 1


def test_the_urgent_byte_is_marked_where_linux_reads_it() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab!cd", urgent=3)
    assert conn.urgent_offset() == 2           # b"ab" before it
    taken: list[bytes] = []

    def sendmsg(chunks: list[bytes]) -> int:
        taken.append(b"".join(bytes(c) for c in chunks))
        return len(taken[-1])

    assert conn.send_urgent_byte(2, sendmsg, lambda b: taken.append(b"OOB" + b) or 1)
    assert taken == [b"ab", b"OOB!"]
    assert conn.urgent_offset() == -1 and conn.recv(10) == b"cd"
    assert conn.counters["tcp.urgent_marks"] == 1
    # The same pointer again (a retransmission's) is not replayed.
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab!cd", urgent=3)
    assert conn.urgent_offset() == -1
    assert conn.counters["tcp.urgent_marks"] == 1


def test_a_pointer_past_the_data_marks_the_byte_when_it_comes() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab", urgent=4)    # the urgent byte: seq +3
    assert conn.urgent_offset() == -1           # not here yet
    peer.send(ACK | PSH, p.snd + 2, p.rcv, b"c!d")
    assert conn.urgent_offset() == 3


def test_a_newer_mark_makes_the_older_byte_ordinary() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab!", urgent=3)
    peer.send(ACK | PSH | URG, p.snd + 3, p.rcv, b"cd?", urgent=3)
    assert conn.urgent_offset() == 5
    assert conn.counters["tcp.urgent_marks"] == 2


def test_a_full_socket_takes_the_bytes_before_the_mark_in_parts() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"abcd!", urgent=5)
    oob: list[bytes] = []
    assert not conn.send_urgent_byte(4, lambda chunks: 1, oob.append)   # takes one byte
    assert oob == [] and conn.urgent_offset() == 3
    assert conn.send_urgent_byte(3, lambda chunks: sum(map(len, chunks)),
                                 lambda b: oob.append(b) or 1)
    assert oob == [b"!"] and conn.recv(10) is None


def test_no_mark_after_shut_rd() -> None:
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.shutdown(0)                        # SHUT_RD: what comes is discarded
    peer.send(ACK | PSH | URG, p.snd, p.rcv, b"ab!", urgent=3)
    assert p.conn.urgent_offset() == -1
