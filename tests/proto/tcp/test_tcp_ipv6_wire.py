"""What TCP over IPv6 puts in the IPv6 header, read back with scapy as an
independent parser: the flow label of segments no connection owns (RSTs and
SYN-cookie SYN-ACKs: RFC 6437 3, a keyed hash of the 4-tuple as Linux's auto
flow labels, so the same for every reply about one flow and never zero), and
a connection's hop limit and traffic class (IPV6_UNICAST_HOPS, IPV6_TCLASS),
set on it or inherited from its listener, on every segment including the
cookie SYN-ACK."""

from __future__ import annotations

import errno
from typing import Any

from femtolan import Lan
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from test_tcp_ipv6 import ANY6, g6, lan6, tcp_of

from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.stack.config import StackConfig


def segments(frames: list[bytes]) -> list[Any]:
    """scapy's reading of the TCP-over-IPv6 frames among ``frames``."""
    out = []
    for frame in frames:
        pkt = Ether(frame)
        if IPv6 in pkt and TCP in pkt:
            out.append(pkt)
    return out


def test_rsts_carry_one_nonzero_flow_label_per_flow() -> None:
    lan = lan6()
    out_b = lan.capture(1)
    a = tcp_of(lan.stacks[0])
    conns = []
    for sport in (40001, 40001, 40002):
        conn = a.connect(g6(1), 4444, sport=sport)
        assert lan.run_until(lambda c=conn: c.state == "CLOSED", 5)
        assert conn.error == errno.ECONNREFUSED
        conns.append(conn)
    rsts = [p for p in segments(out_b) if "R" in str(p[TCP].flags)]
    assert [p[TCP].dport for p in rsts] == [40001, 40001, 40002]
    labels = [p[IPv6].fl for p in rsts]
    assert 0 not in labels
    assert labels[0] == labels[1]          # the same flow: the same label
    assert labels[0] != labels[2]          # another flow: another (equal once in 2^20)
    assert all(p[IPv6].hlim == 64 and p[IPv6].tc == 0 for p in rsts)
    assert lan.stacks[1].counters["tcp.rst_sent"] == 3


def cookie_lan() -> Lan:
    """Two stacks whose listeners answer every SYN with a cookie (no SYN queue)."""
    return lan6(config=StackConfig(tcp=TcpConfig(max_syn_backlog=0)))


def test_cookie_syn_ack_has_a_flow_label_and_the_listeners_hops_and_class() -> None:
    lan = cookie_lan()
    out_b = lan.capture(1)
    b = tcp_of(lan.stacks[1])
    lst = b.listen(ANY6, 6001)
    lst.hop_limit, lst.tclass = 9, 0x48
    conn = tcp_of(lan.stacks[0]).connect(g6(1), 6001)
    assert lan.run_until(lambda: bool(lst.accept_queue), 10)
    srv = lst.accept()
    assert srv is not None and lan.stacks[1].counters["tcp.syncookies_sent"] == 1
    assert (srv.hop_limit, srv.tclass) == (9, 0x48)
    assert srv.send(b"x" * 3000) == 3000
    lan.run(1.0)
    assert conn.recv(10_000) == b"x" * 3000
    sent = segments(out_b)
    syn_ack = [p for p in sent if str(p[TCP].flags) == "SA"]
    assert len(syn_ack) == 1
    assert syn_ack[0][IPv6].fl != 0
    assert (syn_ack[0][IPv6].hlim, syn_ack[0][IPv6].tc) == (9, 0x48)
    data = [p for p in sent if len(p[TCP].payload) > 0]
    assert data and all((p[IPv6].hlim, p[IPv6].tc) == (9, 0x48) for p in data)
    assert len({p[IPv6].fl for p in data}) == 1 and 0 not in {p[IPv6].fl for p in data}


def test_connection_hops_and_class_reach_every_segment_and_can_change() -> None:
    lan = lan6()
    out_a = lan.capture(0)
    b = tcp_of(lan.stacks[1])
    lst = b.listen(ANY6, 6002)
    conn = tcp_of(lan.stacks[0]).connect(g6(1), 6002, hop_limit=7, tclass=0x28)
    assert lan.run_until(lambda: bool(lst.accept_queue), 10)
    srv = lst.accept()
    assert srv is not None and (srv.hop_limit, srv.tclass) == (None, 0)
    assert conn.send(b"a" * 2000) == 2000
    lan.run(0.5)
    first = len(out_a)
    conn.hop_limit, conn.tclass = None, 0x10    # back to the stack's hop limit
    assert conn.send(b"b" * 100) == 100
    lan.run(0.5)
    before = segments(out_a[:first])
    assert str(before[0][TCP].flags) == "S"
    assert {(p[IPv6].hlim, p[IPv6].tc) for p in before} == {(7, 0x28)}
    after = segments(out_a[first:])
    assert after and {(p[IPv6].hlim, p[IPv6].tc) for p in after} == {(64, 0x10)}
    assert len({p[IPv6].fl for p in before + after}) == 1
    assert srv.recv(10_000) == b"a" * 2000 + b"b" * 100
