"""Stack-to-stack transfers on the virtual clock: bulk data under loss,
duplication and reordering; SACK and NewReno recovery; RTO backoff and give-up;
the user timeout; keepalive; window scaling; MSS and path MTU."""

from __future__ import annotations

import errno
import time

import pytest
from femtolan import addr, make_lan
from tcp_harness import (
    ACK,
    ANY,
    Transfer,
    bulk,
    connect_pair,
    digest,
    filtered_lan,
    random_bytes,
    sent_log,
    tcp_of,
)


@pytest.mark.slow
@pytest.mark.timeout(60)   # its budget: about 2 s on 2 loaded cores (issue 19)
def test_20mb_each_way_with_loss_duplication_reordering() -> None:
    """20 MB each way through 5% loss, 1% duplication, 2% reordering and 1 ms
    delay (every frame crosses one faulty device), byte-exact by SHA-256."""
    lan = make_lan(0)
    lan.add_stack(0)
    lan.add_stack(1, faults=dict(loss=0.05, duplicate=0.01, reorder=0.02, delay=0.001),
                  seed=3)
    lan.loop.run(duration=0)
    ca, cb = connect_pair(lan, client=1, server=0)
    started = time.monotonic()
    up, down, t1, t2 = bulk(lan, ca, cb, 20_000_000, 3000)
    wall = time.monotonic() - started
    assert digest(t2.got) == digest(up)
    assert digest(t1.got) == digest(down)
    a, b = lan.stacks
    # Loss was really there and really repaired, by fast recovery mostly.
    assert a.counters["tcp.fast_retransmit"] > 100 and b.counters["tcp.fast_retransmit"] > 100
    assert ca.sack_ok and cb.sack_ok and ca.ts_ok and ca.snd_wscale == 7
    print(f"20 MB each way: {wall:.1f} s wall, {lan.loop.now():.1f} s virtual; "
          f"retransmits {ca.retransmits}/{cb.retransmits}")


def test_2mb_newreno_without_sack_under_loss() -> None:
    """The same without SACK (one side does not offer it): NewReno recovery."""
    lan = make_lan(0)
    a = lan.add_stack(0)
    lan.add_stack(1, faults=dict(loss=0.03, duplicate=0.01, reorder=0.02, delay=0.001),
                  seed=4)
    lan.loop.run(duration=0)
    a.tcp.config.sack = False
    ca, cb = connect_pair(lan, client=1, server=0)
    assert not ca.sack_ok and not cb.sack_ok
    up, down, t1, t2 = bulk(lan, ca, cb, 2_000_000, 1000)
    assert bytes(t2.got) == up and bytes(t1.got) == down
    assert lan.stacks[1].counters["tcp.fast_retransmit"] > 5


def test_no_timestamps_no_window_scaling_under_loss() -> None:
    lan = make_lan(0)
    a = lan.add_stack(0)
    lan.add_stack(1, faults=dict(loss=0.03, reorder=0.02, delay=0.001), seed=5)
    lan.loop.run(duration=0)
    a.tcp.config.timestamps = False
    a.tcp.config.window_scaling = False
    ca, cb = connect_pair(lan, client=1, server=0)
    assert not ca.ts_ok and ca.snd_wscale == 0 and cb.rcv_wscale == 0
    up, down, t1, t2 = bulk(lan, ca, cb, 1_000_000, 1000)
    assert bytes(t2.got) == up and bytes(t1.got) == down
    assert ca.rtt.samples > 10       # RFC 6298 timing of one segment at a time


def test_corruption_is_caught_by_the_checksum() -> None:
    lan = make_lan(0)
    lan.add_stack(0)
    lan.add_stack(1, faults=dict(corrupt=0.05), seed=6)
    lan.loop.run(duration=0)
    ca, cb = connect_pair(lan, client=1, server=0)
    up, down, t1, t2 = bulk(lan, ca, cb, 500_000, 1000)
    assert bytes(t2.got) == up and bytes(t1.got) == down
    total = sum(s.counters["tcp.bad_checksum"] + s.counters["ipv4.bad_checksum"]
                for s in lan.stacks)
    assert total > 0


def _drop_data_once(offsets: set[int], sender_port_holder: dict[str, int]):  # type: ignore[no-untyped-def]
    """A drop_out predicate: lose the data segments at these relative sequence
    numbers, once each."""
    pending = set(offsets)

    def drop(frame: bytes) -> bool:
        s = tcp_of(frame)
        if s is None or not s.payload or "iss" not in sender_port_holder:
            return False
        rel = (s.seq - sender_port_holder["iss"] - 1) & 0xFFFFFFFF
        if rel in pending:
            pending.discard(rel)
            return True
        return False
    return drop


def _recovery_run(sack: bool):  # type: ignore[no-untyped-def]
    lan, filters = filtered_lan(2, latency=0.005)      # RTT 10 ms
    a, b = lan.stacks
    a.tcp.config.sack = sack
    b.tcp.config.sack = sack
    holder: dict[str, int] = {}
    mss = 1448
    lost = {150 * mss, 160 * mss, 170 * mss}
    filters[1].drop_out = _drop_data_once(lost, holder)
    log = sent_log(lan, 1)
    ca, cb = connect_pair(lan, client=1, server=0)
    holder["iss"] = ca.iss
    data = random_bytes(600 * mss, 21)
    t = Transfer(ca, data)
    sink = Transfer(cb, b"")
    t.event()
    assert lan.run_until(lambda: sink.eof, 60)
    assert bytes(sink.got) == data
    rtx = [(when, s) for when, s in log
           if s.payload and ((s.seq - ca.iss - 1) & 0xFFFFFFFF) in lost]
    firsts = {}
    for when, s in rtx:
        firsts.setdefault((s.seq - ca.iss - 1) & 0xFFFFFFFF, []).append(when)
    retransmit_times = sorted(v[1] for v in firsts.values() if len(v) > 1)
    return ca, b, retransmit_times


def test_sack_recovery_repairs_several_holes_in_one_round_trip() -> None:
    """RFC 6675: three segments lost from one window are all retransmitted within
    one round trip of each other, without a timeout and without resending
    anything the receiver holds. (NewReno needs one round trip per hole; see
    the next test.)"""
    ca, b, times = _recovery_run(sack=True)
    assert len(times) == 3
    assert times[-1] - times[0] < 0.010          # less than one RTT
    assert ca.retransmits == 3
    assert lan_counter(ca, "tcp.rto_expired") == 0
    assert lan_counter(ca, "tcp.fast_retransmit") == 1


def test_newreno_recovery_needs_a_round_trip_per_hole() -> None:
    """RFC 6582: without SACK, each partial ACK reveals the next hole."""
    ca, b, times = _recovery_run(sack=False)
    assert len(times) == 3
    assert times[1] - times[0] >= 0.009 and times[2] - times[1] >= 0.009
    assert lan_counter(ca, "tcp.rto_expired") == 0
    assert lan_counter(ca, "tcp.fast_retransmit") == 1


def lan_counter(conn, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(conn.counters[name])


def test_rto_backoff_and_give_up() -> None:
    """RFC 6298 5.5: the timer doubles after each expiry; after retries2 the
    connection fails with ETIMEDOUT. Karn: no RTT sample from retransmissions."""
    lan, filters = filtered_lan(2)
    a, b = lan.stacks
    b.tcp.config.retries2 = 5
    log = sent_log(lan, 1)
    ca, cb = connect_pair(lan, client=1, server=0)
    samples = ca.rtt.samples
    filters[1].drop_out = lambda frame: True        # the cable is cut
    ca.send(b"x" * 1000)
    lan.run(200)
    data = [when for when, s in log if s.payload]
    gaps = [round(y - x, 1) for x, y in zip(data, data[1:], strict=False)]
    assert gaps == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert ca.state == "CLOSED" and ca.error == errno.ETIMEDOUT
    assert ca.rtt.samples == samples
    with pytest.raises(TimeoutError):
        ca.recv(1)


def test_user_timeout() -> None:
    """TCP_USER_TIMEOUT (RFC 5482): give up when data stays unacknowledged that long."""
    lan, filters = filtered_lan(2)
    ca, cb = connect_pair(lan, client=1, server=0)
    ca.user_timeout = 3.0
    filters[1].drop_out = lambda frame: True
    ca.send(b"y" * 100)
    lan.run(2.9)
    assert ca.state == "ESTABLISHED"
    lan.run(0.2)
    assert ca.state == "CLOSED" and ca.error == errno.ETIMEDOUT


def test_keepalive_detects_a_dead_peer() -> None:
    lan, filters = filtered_lan(2)
    ca, cb = connect_pair(lan, client=1, server=0)
    ca.keepalive_idle = 10.0
    ca.keepalive_interval = 2.0
    ca.keepalive_count = 3
    ca.set_keepalive(True)
    lan.run(30)
    assert ca.state == "ESTABLISHED"                 # probes answered
    assert lan.stacks[1].counters["tcp.keepalive_probes"] >= 2
    filters[0].drop_out = lambda frame: True         # the peer goes silent
    lan.run(10 + 3 * 2 + 2.5)
    assert ca.state == "CLOSED" and ca.error == errno.ETIMEDOUT
    assert lan.stacks[1].counters["tcp.keepalive_timeout"] == 1


def test_window_scaling_fills_a_long_fat_pipe() -> None:
    """RFC 7323: with a 50 ms RTT, more than 64 KiB must be in flight."""
    lan, filters = filtered_lan(2, latency=0.025)
    log = sent_log(lan, 1)
    ca, cb = connect_pair(lan, client=1, server=0)
    assert ca.snd_wscale == 7 and cb.rcv_wscale == 7
    data = random_bytes(3_000_000, 31)
    t, sink = Transfer(ca, data), Transfer(cb, b"")
    t.event()
    peak = 0

    def watch() -> bool:
        nonlocal peak
        peak = max(peak, ca.snd_max - ca.snd_una)
        return sink.eof

    assert lan.run_until(watch, 100)
    assert bytes(sink.got) == data
    assert peak > 200_000
    assert 0.045 < ca.rtt.srtt < 0.07                 # timestamps measured the RTT
    assert log


def test_mss_clamped_to_interface_mtu() -> None:
    lan, filters = filtered_lan(2, mtu=1000)
    log = sent_log(lan, 1)
    ca, cb = connect_pair(lan, client=1, server=0)
    syn = next(s for _, s in log if s.flags & 0x02)
    assert syn.opts.mss == 960
    ca.send(random_bytes(50_000, 1))
    lan.run(1)
    assert max(len(s.payload) for _, s in log) == 960 - 12   # timestamps take 12
    assert cb.recv(100_000) is not None


def test_path_mtu_discovery_lowers_mss() -> None:
    """ICMP fragmentation needed (RFC 1191) lowers the MSS; the data still arrives."""
    from femtotcp.wire import icmp4, ipv4
    lan, filters = filtered_lan(2)
    a, b = lan.stacks
    ca, cb = connect_pair(lan, client=1, server=0)
    big = []

    def drop_big(frame: bytes) -> bool:
        if len(frame) > 14 + 1000:
            big.append(frame)
            return True
        return False

    filters[1].drop_out = drop_big
    data = random_bytes(100_000, 2)
    t, sink = Transfer(ca, data), Transfer(cb, b"")
    t.event()
    lan.run(0)
    assert big
    packet = big[0][14:]
    hdr, _ = ipv4.parse(packet)
    # The router's complaint, as the stack's ICMP module would deliver it.
    icmp = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, 1000, packet[:28])
    b.ipv4.input(lan.ifaces[1], _eth(lan, 0, 1), memoryview(
        ipv4.build(addr(0), addr(1), ipv4.PROTO_ICMP, icmp)))
    assert lan.run_until(lambda: sink.eof, 30)
    assert bytes(sink.got) == data
    assert ca.mss_base == 960
    assert b.counters["tcp.pmtu_reduced"] == 1
    # The route learned it too (Linux's inet_csk_update_pmtu): a new
    # connection there starts below it.
    assert b.route_mtu(addr(0)) == 1000
    assert b.tcp.connect(addr(0), 9).opt.adv_mss == 960


def test_fragmentation_needed_without_a_figure_means_552() -> None:
    """An RFC 792 router's Fragmentation Needed carries no MTU: as Linux, the
    path MTU becomes 552 (ip_rt_min_pmtu) and the MSS follows."""
    from femtotcp.wire import icmp4, ipv4
    lan, filters = filtered_lan(2)
    a, b = lan.stacks
    ca, cb = connect_pair(lan, client=1, server=0)
    big: list[bytes] = []
    filters[1].drop_out = lambda frame: len(frame) > 14 + 552 and not big.append(frame)
    t, sink = Transfer(ca, random_bytes(20_000, 3)), Transfer(cb, b"")
    t.event()
    lan.run(0)
    packet = big[0][14:]
    assert ipv4.parse(packet)[0].dont_fragment
    after: list[bytes] = []
    filters[1].drop_out = lambda frame: bool(after.append(frame)) or len(frame) > 14 + 552
    icmp = icmp4.build(icmp4.DEST_UNREACHABLE, icmp4.FRAG_NEEDED, 0, packet[:28])
    b.ipv4.input(lan.ifaces[1], _eth(lan, 0, 1), memoryview(
        ipv4.build(addr(0), addr(1), ipv4.PROTO_ICMP, icmp)))
    assert lan.run_until(lambda: sink.eof, 30)
    assert ca.mss_base == 512 and b.route_mtu(addr(0)) == 552
    # Locked there: DF goes (Linux's ip_dont_fragment), so a smaller link on
    # the way could still fragment them.
    data_segs = [ipv4.parse(f[14:])[0] for f in after if len(f) > 100]
    assert data_segs and not any(h.dont_fragment for h in data_segs)


def _eth(lan, src: int, dst: int):  # type: ignore[no-untyped-def]
    from femtolan import mac

    from femtotcp.wire import ethernet
    return ethernet.EthernetHeader(mac(dst), mac(src), ethernet.ETH_IPV4, None)


def test_connect_to_missing_host_fails_with_ehostunreach() -> None:
    """ARP gets no answer: the connect fails with EHOSTUNREACH, as on Linux."""
    lan = make_lan(1)
    conn = lan.stacks[0].tcp.connect(addr(50), 80)
    lan.run(10)
    assert conn.state == "CLOSED" and conn.error == errno.EHOSTUNREACH
    with pytest.raises(OSError) as exc:
        conn.recv(10)
    assert exc.value.errno == errno.EHOSTUNREACH


def test_connect_without_route() -> None:
    lan = make_lan(1)
    from femtotcp.wire import ip_bytes
    with pytest.raises(OSError) as exc:
        lan.stacks[0].tcp.connect(ip_bytes("198.51.100.1"), 80)
    assert exc.value.errno == errno.ENETUNREACH


def test_protocol_unreachable_fails_connect() -> None:
    """An ICMP unreachable during SYN_SENT is a hard error (Linux's mapping:
    protocol unreachable -> ENOPROTOOPT)."""
    lan = make_lan(2)
    b = lan.stacks[1]
    b.ip_protocols.pop(6)          # the other host speaks no TCP: ICMP protocol unreachable
    conn = lan.stacks[0].tcp.connect(addr(1), 80)
    lan.run(1)
    assert conn.state == "CLOSED" and conn.error == errno.ENOPROTOOPT


def test_ephemeral_ports_are_distinct() -> None:
    lan = make_lan(2)
    lst = lan.stacks[0].tcp.listen(ANY, 80, backlog=200)
    conns = [lan.stacks[1].tcp.connect(addr(0), 80) for _ in range(150)]
    ports = {c.local[1] for c in conns}
    assert len(ports) == 150 and all(32768 <= p <= 60999 for p in ports)
    lan.run(1)
    assert all(c.state == "ESTABLISHED" for c in conns)
    assert len(lst.accept_queue) == 150


def test_delayed_ack_every_second_segment() -> None:
    """RFC 5681 4.2 / RFC 9293 3.8.6.3: after quick-ack mode, one ACK per two
    full segments, and the delayed-ACK timer for a lone segment."""
    lan, filters = filtered_lan(2, latency=0.001)
    lan.stacks[0].tcp.config.ack_coalescing = False
    log_a = sent_log(lan, 0)
    ca, cb = connect_pair(lan, client=1, server=0)
    data = random_bytes(400_000, 3)
    t, sink = Transfer(ca, data, shut=False), Transfer(cb, b"", shut=False)
    t.event()
    assert lan.run_until(lambda: len(sink.got) == len(data), 30)
    acks = [s for _, s in log_a if s.flags == ACK and not s.payload]
    assert len(acks) < 0.6 * (len(data) / ca.mss)
    assert len(acks) > 0.4 * (len(data) / ca.mss)
    before = len([s for _, s in log_a if s.flags == ACK])
    sent_at = lan.loop.now()
    ca.send(b"lonely")
    lan.run(0.002)
    assert len([s for _, s in log_a if s.flags == ACK]) == before     # not yet
    lan.run(0.05)
    acks_after = [(w, s) for w, s in log_a if s.flags == ACK][before:]
    assert acks_after and 0.035 < acks_after[0][0] - sent_at < 0.045


def test_ack_coalescing_per_batch() -> None:
    """Segments that arrive together are ACKed once when the batch is done (like
    GRO), but an ACK never lets more than 16 full segments go unacknowledged."""
    lan, filters = filtered_lan(2, latency=0.001)
    log_a = sent_log(lan, 0)
    ca, cb = connect_pair(lan, client=1, server=0)
    data = random_bytes(2_000_000, 3)
    t, sink = Transfer(ca, data, shut=False), Transfer(cb, b"", shut=False)
    t.event()
    assert lan.run_until(lambda: len(sink.got) == len(data), 30)
    acks = [s.ack for _, s in log_a if s.flags == ACK and not s.payload]
    assert len(acks) < 0.25 * (len(data) / ca.mss)
    steps = [(b - a) & 0xFFFFFFFF for a, b in zip(acks, acks[1:], strict=False)]
    assert max(steps) < 17 * ca.mss


def test_nagle_and_nodelay() -> None:
    """RFC 896: small writes wait while data is unacknowledged; TCP_NODELAY sends them."""
    lan, filters = filtered_lan(2, latency=0.01)
    log = sent_log(lan, 1)
    ca, cb = connect_pair(lan, client=1, server=0)
    log.clear()
    for _ in range(10):
        ca.send(b"ab")
    lan.run(0)
    assert [len(s.payload) for _, s in log if s.payload] == [2]     # the rest waits
    lan.run(0.1)
    assert [len(s.payload) for _, s in log if s.payload] == [2, 18]
    log.clear()
    ca.nodelay = True
    for _ in range(10):
        ca.send(b"ab")
    lan.run(0)
    assert [len(s.payload) for _, s in log if s.payload] == [2] * 10
    lan.run(1)
    assert cb.recv(1000) == b"ab" * 20
