"""Issue 16: behaviours a program or a peer can see, as Linux has them (virtual clock).

Each test here fails without its fix; the same rules are compared with the kernel
in tests/e2e/test_conformance.py.
"""

from __future__ import annotations

from tcp_harness import RST, SYN, lan_with_peer


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
