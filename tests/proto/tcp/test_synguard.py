"""SYN floods: the early path (proto/tcp/synguard.py) answers a bare SYN as the
full receive path would, takes nothing else, and the listener keeps answering
with cookies for a while after its SYN queue was full."""

from __future__ import annotations

import random

from femtolan import parse_ip
from tcp_harness import ACK, ANY, FIN, PSH, RST, SYN, lan_with_peer

from femtotcp.proto.tcp.synguard import PRESSURE_HOLD, synack
from femtotcp.wire import tcp

OPTION_SETS = [
    b"",
    tcp.build_options(mss=1400),
    tcp.build_options(mss=1460, wscale=7, sack_perm=True, ts=(12345, 0)),
    tcp.build_options(mss=536, ts=(99, 0)),
    tcp.build_options(mss=9000, sack_perm=True),
    tcp.build_options(wscale=14, ts=(0xFFFFFFF0, 0)),
]


def _flooded(backlog: int = 4) -> tuple:
    lan, peer = lan_with_peer()
    stack = peer.stack
    stack.tcp.config.max_syn_backlog = backlog
    lst = stack.tcp.listen(ANY, 80)
    for i in range(backlog + 1):                 # the queue fills, then one cookie
        peer.send(SYN, 7000 + i, sport=20000 + i)
    assert len(lst.syn_queue) == backlog
    assert stack.counters["tcp.syncookies_sent"] == 1
    assert stack.early_input is not None          # armed by the first cookie
    peer.received()
    return lan, peer, stack, lst


def _send_all(peer) -> list[bytes]:
    """The TCP segments (bytes) the stack answers the option sets' SYNs with."""
    out = []
    for i, opts in enumerate(OPTION_SETS):
        seen = len(peer.sniffer.frames)
        peer.send(SYN, 1000 * i + 17, sport=30000 + i, options=opts, window=512 + i,
                  payload=b"x" if i == 3 else b"")
        got = [f for f in map(parse_ip, peer.sniffer.frames[seen:])
               if f is not None and f.ip.proto == 6 and f.ip.dst == peer.ip]
        assert len(got) == 1 and got[0].payload[13] == SYN | ACK
        out.append(bytes(got[0].payload))
    return out


def test_early_path_answers_exactly_as_the_full_path() -> None:
    lan, peer, stack, lst = _flooded()
    counters = stack.counters
    early = _send_all(peer)
    assert counters["tcp.early_syn"] == len(OPTION_SETS)
    # The same SYNs through Stack.receive alone (the guard unplugged), at the
    # same virtual time: the same SYN-ACKs, cookies and options included.
    guard = stack.early_input
    stack.early_input = lambda iface, frame, csum_ok: False    # nothing taken early
    full = _send_all(peer)
    assert counters["tcp.early_syn"] == len(OPTION_SETS)
    assert full == early
    stack.early_input = guard
    assert len(lst.syn_queue) == 4                # no state for any of them
    assert counters["stack.internal_error"] == 0


def test_a_cookie_from_the_early_path_completes() -> None:
    lan, peer, stack, lst = _flooded()
    opts = tcp.build_options(mss=1400, wscale=5, sack_perm=True, ts=(4242, 0))
    peer.send(SYN, 90000, options=opts, sport=60000)
    synack_seg = peer.expect(SYN | ACK)
    assert stack.counters["tcp.early_syn"] == 1
    peer.send(ACK | PSH, 90001, synack_seg.seq + 1, b"hi", sport=60000,
              options=tcp.build_options(ts=(4243, synack_seg.opts.ts_val)))
    conn = lst.accept()
    assert conn is not None and conn.state == "ESTABLISHED" and conn.recv(10) == b"hi"
    assert conn.snd_wscale == 5 and conn.sack_ok and conn.peer_mss == 1400
    assert stack.counters["tcp.syncookies_accepted"] == 1


def test_the_early_path_leaves_everything_else_to_the_full_path() -> None:
    lan, peer, stack, lst = _flooded()
    c = stack.counters
    # A bad checksum, a SYN+FIN, a SYN to a closed port, a SYN-ACK: each counted
    # where the full path counts it, none answered early.
    peer.send(SYN, 5, sport=41000, checksum_ok=False)
    assert c["tcp.bad_checksum"] == 1
    peer.send(SYN | FIN, 5, sport=41001)
    assert c["tcp.syn_fin_dropped"] == 1
    peer.send(SYN, 5, sport=41002, dport=81)
    assert c["tcp.no_socket"] == 1 and peer.expect(RST | ACK)
    peer.send(SYN | ACK, 5, 6, sport=41003)
    assert c["tcp.listen_bad_ack"] == 1
    assert c["tcp.early_syn"] == 0
    peer.received()
    # A SYN on the 4-tuple of a half-open connection goes to that connection.
    key = next(iter(lst.syn_queue))
    peer.send(SYN, 7000, sport=key[3])
    assert c["tcp.early_syn"] == 0 and len(lst.syn_queue) == 4
    assert [s.ack for s in peer.received()] == [7001]      # its SYN-ACK again
    # A RST for no connection is dropped early, silently, as LISTEN does.
    before = c["tcp.no_connection"]
    peer.send(RST, 5, sport=41004)
    peer.send(RST | ACK, 5, 9, sport=41005)
    peer.nothing()
    assert c["tcp.early_rst"] == 2 and c["tcp.no_connection"] == before + 2
    # A RST for a half-open connection still reaches it.
    conn = lst.syn_queue[key]
    peer.send(RST, conn.rcv_nxt, sport=key[3])
    assert key not in lst.syn_queue and c["tcp.early_rst"] == 2
    assert c["stack.internal_error"] == 0


def test_cookies_go_on_for_a_while_after_the_queue_was_full() -> None:
    lan, peer, stack, lst = _flooded()
    for conn in list(lst.syn_queue.values()):
        conn.abort()                              # the queue drains at once
    assert not lst.syn_queue
    peer.received()
    peer.send(SYN, 1, sport=42000)
    peer.expect(SYN | ACK)
    assert not lst.syn_queue and stack.counters["tcp.syncookies_sent"] == 2
    lan.run(PRESSURE_HOLD + 0.1)
    peer.received()
    peer.send(SYN, 1, sport=42001)                # the pressure is over: state again
    peer.expect(SYN | ACK)
    assert len(lst.syn_queue) == 1 and stack.counters["tcp.syncookies_sent"] == 2


def test_the_guard_disarms_when_cookies_stop() -> None:
    lan, peer, stack, lst = _flooded()
    for conn in list(lst.syn_queue.values()):
        conn.abort()
    lan.run(PRESSURE_HOLD + 0.1)
    peer.received()
    peer.send(SYN, 1, sport=42001)                # a candidate, no longer under pressure
    assert len(lst.syn_queue) == 1
    assert stack.early_input is None
    # The disarm timer as well: armed again, then two cookie periods of quiet.
    lan2, peer2, stack2, _ = _flooded()
    lan2.run(200)
    assert stack2.early_input is None


def test_synack_matches_the_general_builder() -> None:
    rng = random.Random(5)
    for _ in range(300):
        a = bytes(rng.randrange(256) for _ in range(4))
        b = bytes(rng.randrange(256) for _ in range(4))
        lport, rport = rng.randrange(65536), rng.randrange(65536)
        seq, ack, win = rng.getrandbits(32), rng.getrandbits(32), rng.randrange(65536)
        opts = rng.choice(OPTION_SETS)
        assert synack(b, a, lport, rport, seq, ack, win, opts) == tcp.build(
            a, b, lport, rport, seq, ack, SYN | ACK, win, b"", opts)


def test_a_bug_on_the_early_path_is_counted_not_raised(monkeypatch) -> None:
    lan, peer, stack, lst = _flooded()

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stack.tcp.synguard, "send_cookie", broken)
    peer.send(SYN, 1, sport=43000)                # through the device receiver
    assert stack.counters["stack.internal_error"] == 1
    peer.nothing()
