"""Issue 16: behaviours a program or a peer can see, as Linux has them (virtual clock).

Each test here fails without its fix; the same rules are compared with the kernel
in tests/e2e/test_conformance.py.
"""

from __future__ import annotations

import errno

import pytest
from tcp_harness import ACK, ANY, FIN, PSH, RST, SYN, lan_with_peer, open_passive

from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.stack.config import StackConfig


def test_every_segment_to_a_closed_port_gets_a_reset() -> None:
    """Linux answers each SYN to a port with no listener (an nmap -sS sweep of 1,000
    closed ports sees 1,000 RSTs, none 'filtered')."""
    lan, peer = lan_with_peer()
    peer.send(SYN, 1, dport=2000)          # the stack learns our MAC (ARP) first
    assert peer.expect().has(RST)
    for port in range(1, 1001):
        peer.send(SYN, 5000 + port, dport=port, run=False)
    lan.run(0)
    segs = peer.received()
    assert len(segs) == 1000
    assert all(s.has(RST) for s in segs)
    assert sorted(s.sport for s in segs) == list(range(1, 1001))
    assert peer.stack.counters["tcp.rst_ratelimited"] == 0


def test_segment_without_ack_rst_or_syn_is_dropped_silently() -> None:
    """RFC 9293 3.10.7.4 fifth (ACK bit off: drop), checked before the sequence
    number as Linux does: a bare FIN, in or out of the window, draws no ACK."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    for seq in (p.snd, p.snd + 2**20, p.snd - 2**20):
        peer.send(FIN, seq)
        peer.nothing()
        peer.send(PSH, seq, payload=b"noack")
        peer.nothing()
    assert p.conn.state == "ESTABLISHED"
    assert peer.stack.counters["tcp.no_ack_flag"] == 6
    peer.send(ACK | PSH, p.snd, p.rcv, payload=b"data")
    assert p.conn.recv(100) == b"data"


def test_empty_segment_at_the_window_edge_is_answered() -> None:
    """SEQ = RCV.NXT + RCV.WND with RCV.WND > 0 is not acceptable (RFC 9293
    3.10.7.4's table), empty or not: an ACK answers it (Linux stays silent)."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    peer.send(ACK | PSH, p.snd, p.rcv, payload=b"x")
    ack = peer.expect()
    edge = p.snd + 1 + ack.window
    peer.send(ACK, edge, p.rcv)
    answer = peer.expect(ACK)
    assert (answer.seq, answer.ack) == (p.rcv, p.snd + 1)
    peer.send(ACK, edge - 1, p.rcv)       # inside the window: acceptable, no answer
    peer.nothing()


@pytest.mark.parametrize("nodelay", [True, False])
def test_sender_uses_the_largest_window_offered(nodelay: bool) -> None:
    """RFC 9293 3.8.6.2.1: a peer that never offered more than 10 bytes gets 10-byte
    segments at once (its largest window, not our MSS, is the yardstick)."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 1000, dport=80, window=10)
    synack = peer.expect(SYN | ACK)
    peer.send(ACK, 1001, synack.seq + 1, dport=80, window=10)
    conn = lst.accept()
    peer.received()
    conn.nodelay = nodelay
    conn.send(bytes(range(40)))
    got = b""
    nxt = synack.seq + 1
    for _ in range(4):
        seg = peer.expect()
        assert len(seg.payload) == 10 and seg.seq == nxt
        got += seg.payload
        nxt += 10
        peer.send(ACK, 1001, nxt, dport=80, window=10)
    assert got == bytes(range(40))


def test_keepalive_times_set_after_so_keepalive_take_effect_at_once() -> None:
    """TCP_KEEPIDLE/KEEPINTVL/KEEPCNT after SO_KEEPALIVE on a live connection: the
    first probe follows the new idle time, not the 7,200 s default (Linux
    tcp_sock_set_keepidle re-arms the timer); then the peer's silence ends the
    connection with ETIMEDOUT and a RST|ACK, as Linux's keepalive timer."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    p.conn.keepalive = True
    p.conn.keepalive_idle = 5
    p.conn.keepalive_interval = 1
    p.conn.keepalive_count = 2
    lan.run(4.9)
    peer.nothing()
    lan.run(0.2)
    probe = peer.expect(ACK)
    assert probe.seq == p.rcv - 1 and not probe.payload
    lan.run(1)
    peer.expect(ACK)
    lan.run(1)
    rst = peer.expect(RST | ACK)
    assert (rst.seq, rst.ack) == (p.rcv, p.snd)
    assert p.conn.error == errno.ETIMEDOUT


def test_reset_cap_is_an_option() -> None:
    """TcpConfig.rst_rate/rst_burst (serve --tcp-rst-limit RATE/BURST) caps them."""
    lan, peer = lan_with_peer(config=StackConfig(tcp=TcpConfig(rst_rate=1000.0,
                                                               rst_burst=200)))
    peer.send(SYN, 1, dport=2000)
    assert peer.expect().has(RST)
    for port in range(1, 1001):
        peer.send(SYN, 5000 + port, dport=port, run=False)
    lan.run(0)
    assert len(peer.received()) == 199          # the burst, less the first one above
    assert peer.stack.counters["tcp.rst_ratelimited"] == 801


def test_after_shut_rd_data_is_still_received_and_kept() -> None:
    """SHUT_RD as Linux's RCV_SHUTDOWN (``shut_reading``): the connection goes on
    receiving and acknowledging, and keeps the bytes for the program's reads."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.shut_reading()
    peer.send(ACK | PSH, p.snd, p.rcv, b"late")
    assert peer.expect().ack == p.snd + 4 and conn.state == "ESTABLISHED"
    assert conn.recv(10) == b"late"


def test_data_after_shut_rd_and_our_fin_resets() -> None:
    """Once our FIN is out (FIN_WAIT_1/2), new data to a socket that shut its
    reading side resets the connection (RFC 1122 4.2.2.13; Linux's
    TCPAbortOnData): a RST to the peer, ECONNRESET to the program."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    conn = p.conn
    conn.shut_reading()
    conn.shutdown(1)                           # SHUT_WR: our FIN
    lan.run(0)
    fin = peer.expect()
    assert fin.has(FIN)
    peer.send(ACK | PSH, p.snd, fin.seq + 1, b"late")
    assert peer.expect().has(RST)
    assert conn.error == errno.ECONNRESET
    assert conn.counters["tcp.data_after_shutdown"] == 1
