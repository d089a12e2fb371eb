"""The NAT flow table on a virtual clock: keys, limits, states, counters, expiry."""

from __future__ import annotations

import pytest

from femtotcp.gateway.flows import (
    CLOSED,
    CLOSING,
    CONNECTING,
    ESTABLISHED,
    ICMP,
    TCP,
    UDP,
    FlowTable,
    Limits,
)

G = (b"\xc0\x00\x02\x0f", 40000)
R1 = (b"\xc6\x33\x64\x01", 80)
R2 = (b"\xc6\x33\x64\x02", 53)


def test_tcp_flows_are_keyed_by_both_ends_udp_by_the_guest_end() -> None:
    t = FlowTable()
    a = t.open(TCP, G, R1, 0.0)
    b = t.open(TCP, G, R2, 0.0)
    assert a is not None and b is not None and a is not b
    assert t.get(TCP, G, R1) is a and t.get(TCP, G, R2) is b
    u = t.open(UDP, G, R1, 0.0)
    assert u is not None
    # Endpoint-independent mapping (RFC 4787 REQ-1): any remote finds the same flow.
    assert t.get(UDP, G, R2) is u
    assert t.open(UDP, G, R2, 0.0) is None          # exists already
    assert len(t) == 3 and t.counters["nat.flows"] == 3
    assert a.state == CONNECTING and u.state == "active"


def test_the_flow_limit_refuses_and_counts_and_frees_on_remove() -> None:
    t = FlowTable(Limits(max_flows=3))
    flows = [t.open(TCP, G, (R1[0], p), 0.0) for p in (1, 2, 3)]
    assert all(flows)
    assert t.open(TCP, G, (R1[0], 4), 0.0) is None
    assert t.open(UDP, G, R1, 0.0) is None
    assert t.counters["nat.flow_limit"] == 2 and len(t) == 3
    first = flows[0]
    assert first is not None
    t.remove(first)
    assert first.state == CLOSED and t.counters["nat.tcp_flows_closed"] == 1
    assert t.open(TCP, G, (R1[0], 4), 0.0) is not None
    t.remove(first)                                 # twice: no effect
    assert t.counters["nat.tcp_flows_closed"] == 1 and len(t) == 3


def test_byte_counters_both_ways_and_activity() -> None:
    t = FlowTable()
    f = t.open(TCP, G, R1, 5.0)
    assert f is not None
    t.outbound(f, 100, 6.0)
    t.outbound(f, 50, 7.0)
    t.inbound(f, 1000, 8.0)
    assert (f.bytes_out, f.bytes_in, f.packets_out, f.packets_in) == (150, 1000, 2, 1)
    assert f.last_active == 8.0
    assert t.counters["nat.bytes_out"] == 150 and t.counters["nat.bytes_in"] == 1000
    row = f.describe(10.0)
    assert row["guest"] == "192.0.2.15:40000" and row["remote"] == "198.51.100.1:80"
    assert row["idle"] == 2.0 and row["bytes_out"] == 150 and row["state"] == CONNECTING


def test_idle_timeouts_per_protocol_and_state() -> None:
    lim = Limits(tcp_established_timeout=100.0, tcp_transitory_timeout=10.0,
                 tcp_connect_timeout=5.0, udp_timeout=30.0, icmp_timeout=20.0)
    t = FlowTable(lim)
    conn = t.open(TCP, G, R1, 0.0)
    est = t.open(TCP, G, R2, 0.0)
    fin = t.open(TCP, (G[0], 1), R2, 0.0)
    udp = t.open(UDP, G, R1, 0.0)
    ping = t.open(ICMP, G, R1, 0.0)
    assert conn and est and fin and udp and ping
    t.set_state(est, ESTABLISHED, 0.0)
    t.set_state(fin, CLOSING, 0.0)
    assert t.next_expiry() == 5.0
    assert t.expire(4.999) == []
    assert t.expire(5.0) == [conn]
    assert t.counters["nat.tcp_connect_timeout"] == 1
    assert t.next_expiry() == 10.0
    assert t.expire(10.0) == [fin]
    t.inbound(udp, 10, 15.0)                       # traffic restarts the idle clock
    assert t.expire(20.0) == [ping]
    assert t.counters["nat.icmp_idle_expired"] == 1
    assert t.next_expiry() == 45.0
    assert t.expire(44.0) == [] and t.expire(45.0) == [udp]
    assert t.counters["nat.udp_idle_expired"] == 1
    assert t.expire(99.0) == [] and t.expire(100.0) == [est]
    assert t.next_expiry() is None and len(t) == 0 and t.counters["nat.flows"] == 0


def test_default_timeouts_meet_the_nat_rfcs() -> None:
    lim = Limits()
    assert lim.tcp_established_timeout >= 7440      # RFC 5382 REQ-5
    assert lim.tcp_transitory_timeout >= 240
    assert lim.udp_timeout >= 120                   # RFC 4787 REQ-5
    assert lim.icmp_timeout >= 60                   # RFC 5508 REQ-1


@pytest.mark.parametrize("bad", [dict(max_flows=0), dict(flow_buffer=10),
                                 dict(udp_timeout=0.0), dict(tcp_connect_timeout=-1.0)])
def test_bad_limits_are_refused_with_the_name(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        FlowTable(Limits(**bad))  # type: ignore[arg-type]
