"""Input-side rules found by the differential conformance run against Linux
(tests/e2e/test_conformance.py), pinned here on the virtual clock."""

from __future__ import annotations

from tcp_harness import ACK, ANY, FIN, PSH, RST, SYN, lan_with_peer, open_passive


def test_fin_held_out_of_order_is_taken_when_the_hole_fills() -> None:
    """RFC 9293 3.10.7.4: a FIN beyond RCV.NXT is held; the in-order data that fills
    the hole (even on the fast path) brings it in, acknowledged at once."""
    lan, peer = lan_with_peer()
    p = open_passive(lan, peer)
    peer.send(FIN | ACK, p.snd + 4, p.rcv)
    assert peer.expect(ACK).ack == p.snd            # duplicate ACK for the hole
    peer.send(ACK | PSH, p.snd, p.rcv, b"fill")
    segs = peer.received()
    assert segs and segs[-1].ack == p.snd + 5       # the data and the FIN
    assert p.conn.recv(100) == b"fill"
    assert p.conn.recv(100) == b""
    assert p.conn.state == "CLOSE_WAIT"


def test_reset_for_no_connection_has_df() -> None:
    """Resets for a closed port carry DF like every other TCP segment (as Linux)."""
    lan, peer = lan_with_peer()
    frames: list[bytes] = []
    peer.stack.interfaces[0].device.add_capture(
        lambda f, outgoing: frames.append(bytes(f)) if outgoing else None)
    peer.send(SYN, 1, dport=81)
    rst = peer.expect(RST | ACK)
    assert rst.ack == 2
    ip = [f[14:] for f in frames if len(f) > 34 and f[23] == 6][-1]
    assert ip[6] & 0x40


def test_syn_data_is_not_acknowledged_by_the_syn_ack() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 7000, payload=b"x" * 10)
    assert peer.expect(SYN | ACK).ack == 7001


def test_new_syn_in_syn_received_resets_the_embryo() -> None:
    """RFC 9293 3.10.7.4 fourth: a SYN (other than a retransmission) in SYN_RECEIVED
    of a passive open returns it to LISTEN; the SYN gets a RST, as from Linux."""
    lan, peer = lan_with_peer()
    lst = peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 1000)
    synack = peer.expect(SYN | ACK)
    peer.send(SYN, 1500)
    rst = peer.expect(RST | ACK)
    assert rst.ack == 1501 and rst.seq == 0
    assert peer.stack.tcp.connections() == []
    peer.send(ACK, 1001, synack.seq + 1)
    assert peer.expect(RST).seq == synack.seq + 1
    assert lst.accept() is None


def test_retransmitted_syn_in_syn_received_repeats_the_syn_ack() -> None:
    lan, peer = lan_with_peer()
    peer.stack.tcp.listen(ANY, 80)
    peer.send(SYN, 1000)
    first = peer.expect(SYN | ACK)
    peer.send(SYN, 1000)
    again = peer.expect(SYN | ACK)
    assert again.seq == first.seq and again.ack == 1001
