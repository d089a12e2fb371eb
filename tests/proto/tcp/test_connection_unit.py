"""TcpConnection without a Stack: segments in, segments out, a virtual clock.

Each connection gets a ``FakeEnv`` (the ``TcpEnv`` interface: an output that
queues segments, a clock with a timer heap, counters, config, ISNs) and is fed
segments the way the TCP layer feeds them (``fast_input``, then ``input`` when
header prediction declines). ``Net`` joins two connections back to back and can
drop chosen segments, so handshakes, data, loss recovery and closing are driven
here one segment at a time, with nothing but the connection under test.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Callable
from itertools import count

import pytest

from femtotcp.core.counters import Counters
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.proto.tcp.connection import TcpConnection
from femtotcp.proto.tcp.isn import IsnGenerator
from femtotcp.proto.tcp.recovery import NEWRENO, SACK
from femtotcp.proto.tcp.state import TcpState
from femtotcp.wire import tcp

A_ADDR = bytes([192, 0, 2, 1])
B_ADDR = bytes([192, 0, 2, 2])
A_PORT = 40000
B_PORT = 80
MASK = 0xFFFFFFFF


class Handle:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """The ``TimerSource`` of the tests: a virtual clock and a timer heap."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Handle]] = []
        self._seq = count()

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def next_due(self, until: float) -> Handle | None:
        """Pop the next live timer due at or before ``until`` and move to its time."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, handle = heapq.heappop(heap)
            if not handle.cancelled:
                self.now = max(self.now, when)
                return handle
        return None


class FakeEnv:
    """A ``TcpEnv`` with no stack behind it."""

    def __init__(self, clock: Clock, config: TcpConfig, sent: list[tuple[bytes, bytes, bytes]],
                 mtu: int = 1500) -> None:
        self.config = config
        self.counters = Counters()
        self.timers = clock
        self.isn = IsnGenerator(bytes(32))
        self.time_wait_count = 0
        #: End-of-batch work while a receive batch runs (``Net.batch``); None: none.
        self.batch: list[Callable[[], None]] | None = None
        self.sent = sent
        self.mtu = mtu
        self.forgotten: list[TcpConnection] = []

    def defer(self, callback: Callable[[], None]) -> bool:
        if self.batch is None:
            return False
        self.batch.append(callback)
        return True

    def challenge_ack_allowed(self, now: float) -> bool:
        return True

    def output(self, src: bytes, dst: bytes, segment: bytes) -> int:
        self.sent.append((src, dst, segment))
        return 0

    def offload_path(self, src: bytes, dst: bytes) -> None:
        return None

    def output_offload(self, path: object, src: bytes, dst: bytes, segment: bytes, mss: int,
                       hlen: int) -> None:
        raise AssertionError("no offload path was offered")

    def route_mtu(self, dst: bytes) -> int:
        return self.mtu

    def forget(self, conn: TcpConnection) -> None:
        self.forgotten.append(conn)

    def ooo_changed(self) -> None:
        pass

    def adopt_time_wait(self, conn: TcpConnection, deadline: float) -> None:
        return None             # the connection keeps TIME_WAIT itself


def feed(conn: TcpConnection, src: bytes, dst: bytes, segment: bytes) -> None:
    """Hand one segment to a connection as the TCP layer does."""
    hdr, payload = tcp.parse(segment, src, dst)          # checksum checked here
    if not conn.fast_input(hdr.seq, hdr.ack, hdr.flags, hdr.window, memoryview(segment),
                           hdr.header_len):
        conn.input(hdr, payload)


def parse(segment: bytes) -> tuple[tcp.TcpHeader, tcp.TcpOptions, bytes]:
    hdr, payload = tcp.parse(segment)
    return hdr, tcp.parse_options(hdr.options), bytes(payload)


class States:
    """Records the ``on_state`` hook and checks each change starts where the
    last one ended (the state changes in one place only)."""

    def __init__(self, conn: TcpConnection) -> None:
        self.seen: list[TcpState] = [conn.state]
        conn.on_state = self

    def __call__(self, conn: TcpConnection, old: TcpState, new: TcpState) -> None:
        assert old == self.seen[-1] and conn.state == new
        self.seen.append(new)


class Net:
    """Two connections back to back; ``drop`` may swallow a segment in flight."""

    def __init__(self, config: TcpConfig | None = None,
                 config_b: TcpConfig | None = None) -> None:
        self.clock = Clock()
        self.wire: list[tuple[bytes, bytes, bytes]] = []
        self.env_a = FakeEnv(self.clock, config or TcpConfig(), self.wire)
        self.env_b = FakeEnv(self.clock, config_b or config or TcpConfig(), self.wire)
        self.a = TcpConnection(self.env_a, A_ADDR, A_PORT, B_ADDR, B_PORT)
        self.b: TcpConnection | None = None
        self.drop: Callable[[bytes, tcp.TcpHeader, bytes], bool] = lambda src, h, p: False
        self.delivered: list[tuple[bytes, tcp.TcpHeader, bytes]] = []

    def run(self) -> None:
        """Deliver everything in flight (and what it provokes) at the current time."""
        while self.wire:
            self._deliver_one()

    def batch(self, env: FakeEnv) -> None:
        """Deliver what is in flight as one receive batch for ``env``'s side, then
        do its end-of-batch work (as the loop does after a device's read batch)."""
        env.batch = []
        for _ in range(len(self.wire)):             # only what is in flight now
            self._deliver_one()
        work, env.batch = env.batch, None
        for callback in work:
            callback()

    def _deliver_one(self) -> None:
        src, dst, seg = self.wire.pop(0)
        hdr, _, payload = parse(seg)
        if self.drop(src, hdr, payload):
            return
        self.delivered.append((src, hdr, payload))
        if dst == B_ADDR:
            if self.b is None:
                assert hdr.flags == tcp.SYN
                self.b = TcpConnection(self.env_b, B_ADDR, B_PORT, A_ADDR, A_PORT)
                opts = tcp.parse_options(hdr.options)
                self.b.open_passive(hdr, opts, memoryview(payload))
            else:
                feed(self.b, src, dst, seg)
        else:
            feed(self.a, src, dst, seg)

    def advance(self, seconds: float) -> None:
        """Let time pass, firing timers and delivering what they send."""
        until = self.clock.now + seconds
        self.run()
        while (handle := self.clock.next_due(until)) is not None:
            handle.callback()
            self.run()
        self.clock.now = until

    def connect(self) -> TcpConnection:
        self.a.open_active()
        self.run()
        assert self.b is not None
        return self.b

    def segments(self, src: bytes) -> list[tuple[tcp.TcpHeader, bytes]]:
        return [(h, p) for s, h, p in self.delivered if s == src]


def pump(net: Net, sender: TcpConnection, receiver: TcpConnection, data: bytes,
         seconds: float = 5.0) -> bytes:
    """Send ``data`` and read it all at the other end, letting time pass."""
    got = bytearray()
    sent = 0
    deadline = net.clock.now + seconds
    while net.clock.now < deadline and len(got) < len(data):
        if sent < len(data):
            sent += sender.send(data[sent:])
        net.run()
        while (chunk := receiver.recv(1 << 20)):
            got += chunk
        if len(got) < len(data):
            net.advance(0.01)
    return bytes(got)


def data(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


def lone(active: bool = True, mtu: int = 1500
         ) -> tuple[TcpConnection, list[tuple[bytes, bytes, bytes]], Clock]:
    """One connection with nothing behind it: what it sends stays in a list."""
    clock = Clock()
    sent: list[tuple[bytes, bytes, bytes]] = []
    env = FakeEnv(clock, TcpConfig(), sent, mtu=mtu)
    if active:
        return TcpConnection(env, A_ADDR, A_PORT, B_ADDR, B_PORT), sent, clock
    return TcpConnection(env, B_ADDR, B_PORT, A_ADDR, A_PORT), sent, clock


# -- handshakes ------------------------------------------------------------------------

def test_active_open_sends_syn_with_options_and_completes_on_synack() -> None:
    conn, sent, clock = lone()
    states = States(conn)
    conn.open_active()
    assert conn.state == "SYN_SENT"
    (src, dst, seg), = sent
    assert (src, dst) == (A_ADDR, B_ADDR)
    syn, opts, payload = parse(seg)
    assert syn.flags == tcp.SYN and payload == b""
    assert opts.mss == 1460 and opts.sack_perm and opts.ts_val is not None
    assert opts.wscale is not None and opts.wscale > 0
    sent.clear()
    # The peer's SYN-ACK (MSS 1000, no other options): ESTABLISHED and one ACK.
    clock.now = 0.05
    synack = tcp.build(B_ADDR, A_ADDR, B_PORT, A_PORT, 5000, syn.seq + 1, tcp.SYN | tcp.ACK,
                       8192, b"", tcp.build_options(mss=1000))
    feed(conn, B_ADDR, A_ADDR, synack)
    assert conn.state == "ESTABLISHED"
    assert states.seen == [TcpState.CLOSED, TcpState.SYN_SENT, TcpState.ESTABLISHED]
    (_, _, seg), = sent
    ack, opts, _ = parse(seg)
    assert ack.flags == tcp.ACK and ack.seq == syn.seq + 1 and ack.ack == 5001
    assert opts.ts_val is None and opts.sack_blocks == ()    # the peer offered neither
    assert conn.mss == 1000 and not conn.ts_ok and not conn.sack_ok
    assert conn.snd_wscale == 0 and conn.snd_wnd == 8192
    assert conn.snd.recovery is NEWRENO
    assert conn.rtt.srtt == pytest.approx(0.05)              # the SYN was timed
    assert conn.snd.t_rto.deadline is None


def test_passive_open_answers_syn_and_establishes_on_ack() -> None:
    conn, sent, _ = lone(active=False, mtu=9000)
    states = States(conn)
    syn = tcp.build(A_ADDR, B_ADDR, A_PORT, B_PORT, 7000, 0, tcp.SYN, 65535, b"",
                    tcp.build_options(mss=1460, wscale=7, sack_perm=True, ts=(100, 0)))
    hdr, opts, _ = parse(syn)
    conn.open_passive(hdr, opts, memoryview(b""))
    assert conn.state == "SYN_RECEIVED"
    (_, _, seg), = sent
    synack, sopts, _ = parse(seg)
    assert synack.flags == tcp.SYN | tcp.ACK and synack.ack == 7001
    assert sopts.mss == 8960 and sopts.sack_perm and sopts.ts_ecr == 100
    sent.clear()
    ack = tcp.build(A_ADDR, B_ADDR, A_PORT, B_PORT, 7001, synack.seq + 1, tcp.ACK, 512, b"",
                    tcp.build_options(ts=(101, sopts.ts_val or 0)))
    feed(conn, A_ADDR, B_ADDR, ack)
    assert conn.state == "ESTABLISHED" and sent == []
    assert states.seen == [TcpState.CLOSED, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED]
    assert conn.ts_ok and conn.sack_ok and conn.snd.recovery is SACK
    assert conn.mss == 1460 - 12                       # the peer's MSS less the timestamp
    assert conn.snd_wnd == 512 << 7                    # scaled once established
    assert conn.snd_una == conn.iss + 1 and conn.rcv_nxt == 7001


def test_handshake_between_two_connections() -> None:
    net = Net()
    a_states = States(net.a)
    b = net.connect()
    assert net.a.state == "ESTABLISHED" and b.state == "ESTABLISHED"
    assert a_states.seen == [TcpState.CLOSED, TcpState.SYN_SENT, TcpState.ESTABLISHED]
    assert net.a.snd_una == b.irs + 1 and b.snd_una == net.a.irs + 1
    assert net.a.env.counters["tcp.active_opens"] == 1
    assert b.env.counters["tcp.passive_opens"] == 1


# -- data --------------------------------------------------------------------------------

def test_data_both_ways() -> None:
    net = Net()
    b = net.connect()
    up = data(200_000)
    down = data(150_001)[::-1]
    assert pump(net, net.a, b, up) == up
    assert pump(net, b, net.a, down) == down
    net.advance(0.1)                                          # the last delayed ACKs
    assert net.a.bytes_acked == len(up) and b.bytes_received == len(up)
    assert b.bytes_acked == len(down) and net.a.bytes_received == len(down)
    assert net.a.retransmits == 0 and b.retransmits == 0
    # Full segments all the way (the timestamp takes 12 bytes of the MSS).
    sizes = {len(p) for h, p in net.segments(A_ADDR) if p}
    assert max(sizes) == 1448


def test_a_lone_segment_is_acked_after_the_delayed_ack_timeout() -> None:
    net = Net(TcpConfig(quickack_segments=0))
    b = net.connect()
    net.a.send(b"hello")
    net.run()
    acks_before = len(net.segments(B_ADDR))
    net.advance(0.03)
    assert len(net.segments(B_ADDR)) == acks_before          # still delayed
    assert net.a.snd_una < net.a.snd_max
    net.advance(0.02)                                         # past the 40 ms
    assert len(net.segments(B_ADDR)) == acks_before + 1
    assert b.env.counters["tcp.delayed_acks"] == 1
    assert net.a.snd_una == net.a.snd_max
    assert b.recv() == b"hello"


def test_acks_and_events_of_one_batch_go_out_once_at_its_end() -> None:
    """ACK and event coalescing through ``TcpEnv.defer``: eight full segments
    in one receive batch get one ACK and one ``on_event``, at the batch's end."""
    net = Net(TcpConfig(quickack_segments=0))
    b = net.connect()
    events: list[int] = []
    b.on_event = lambda: events.append(len(b.rcv_buf))
    mss = net.a.mss
    net.a.send(data(8 * mss))
    acks_before = len(net.segments(B_ADDR))
    net.batch(net.env_b)
    assert events == [8 * mss]                              # one event, all the data
    net.run()
    acks = net.segments(B_ADDR)[acks_before:]
    assert [h.ack for h, _ in acks] == [(net.a.snd_max) & MASK]
    # Without a batch, every second full segment is acknowledged at once.
    net.a.send(data(8 * mss))
    acks_before = len(net.segments(B_ADDR))
    net.run()
    assert len(net.segments(B_ADDR)) - acks_before == 4


# -- loss recovery -----------------------------------------------------------------------

def test_a_dropped_segment_is_resent_by_the_retransmission_timer() -> None:
    net = Net()
    b = net.connect()
    dropped: list[int] = []

    def drop_first_data(src: bytes, hdr: tcp.TcpHeader, payload: bytes) -> bool:
        if src == A_ADDR and payload and not dropped:
            dropped.append(hdr.seq)
            return True
        return False

    net.drop = drop_first_data
    net.a.send(b"x" * 500)
    net.run()
    assert dropped and b.recv() is None
    rto = net.a.rtt.rto
    net.advance(rto * 0.9)
    assert net.a.retransmits == 0
    net.advance(rto * 0.2)
    assert net.a.retransmits == 1 and net.a.env.counters["tcp.rto_expired"] == 1
    assert b.recv() == b"x" * 500
    resent = [h for h, p in net.segments(A_ADDR) if p]
    assert resent[-1].seq == dropped[0]
    assert net.a.snd.cc.cwnd == net.a.mss + 500      # loss window, then one ACK's growth
    assert net.a.snd.t_rto.deadline is None


@pytest.mark.parametrize("sack", [True, False])
def test_a_dropped_segment_is_resent_by_fast_retransmit(sack: bool) -> None:
    net = Net(TcpConfig(sack=sack))
    b = net.connect()
    assert (net.a.snd.recovery is SACK) == sack
    # A sender's scoreboard is made with the first SACK block; until then
    # it shares the empty one, which stays empty (another sender's is it).
    fresh = TcpConnection(net.env_a, A_ADDR, A_PORT + 1, B_ADDR, B_PORT)
    assert net.a.snd.sb is fresh.snd.sb and not fresh.snd.sb.starts
    mss = net.a.mss
    dropped: list[int] = []
    first_seq = (net.a.snd_nxt) & MASK

    def drop_third(src: bytes, hdr: tcp.TcpHeader, payload: bytes) -> bool:
        if src == A_ADDR and payload and hdr.seq == (first_seq + 2 * mss) & MASK \
                and not dropped:
            dropped.append(hdr.seq)
            return True
        return False

    net.drop = drop_third
    payload = data(8 * mss)
    net.a.send(payload)
    net.run()
    assert dropped
    counters = net.a.env.counters
    assert counters["tcp.fast_retransmit"] == 1
    assert counters["tcp.rto_expired"] == 0 and counters["tcp.recovery_done"] == 1
    assert net.a.retransmits == 1 and not net.a.snd.in_recovery
    assert b.recv(1 << 20) == payload
    dupacks = [h for h, p in net.segments(B_ADDR) if h.ack == (first_seq + 2 * mss) & MASK]
    assert len(dupacks) >= 3
    if sack:
        assert any(tcp.parse_options(h.options).sack_blocks for h in dupacks)
    assert counters["tcp.dupack"] >= 3
    assert (net.a.snd.sb is not fresh.snd.sb) == sack     # made for the SACK blocks
    assert not fresh.snd.sb.starts and not fresh.snd.sb.sacked
    assert not net.a.snd.sb.starts                         # all acknowledged since


# -- closing and resets --------------------------------------------------------------------

def test_fin_both_ways_then_time_wait_expires() -> None:
    net = Net()
    a_states = States(net.a)
    b = net.connect()
    b_states = States(b)
    net.a.send(b"last words")
    net.a.shutdown(1)                                  # SHUT_WR: FIN after the data
    net.run()
    assert b.recv() == b"last words" and b.recv() == b""
    # The FIN begins b's passive close: its ACK is a delayed one (Linux's tcp_fin).
    assert b.state == "CLOSE_WAIT" and net.a.state == "FIN_WAIT_1"
    net.advance(b.config.delack)
    assert net.a.state == "FIN_WAIT_2" and b.env.counters["tcp.delayed_acks"] == 1
    b.send(b"reply")
    b.close()
    net.run()
    assert net.a.recv() == b"reply" and net.a.recv() == b""
    assert b.state == "CLOSED" and b.env.forgotten == [b]
    assert net.a.state == "TIME_WAIT" and net.a.env.time_wait_count == 1
    assert b_states.seen == [TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.LAST_ACK,
                             TcpState.CLOSED]
    msl = net.a.config.msl
    net.advance(2 * msl - 1)
    assert net.a.state == "TIME_WAIT"
    net.advance(2)
    assert net.a.state == "CLOSED" and net.a.env.forgotten == [net.a]
    assert net.a.env.time_wait_count == 0
    assert a_states.seen == [TcpState.CLOSED, TcpState.SYN_SENT, TcpState.ESTABLISHED,
                             TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.TIME_WAIT,
                             TcpState.CLOSED]
    assert net.a.env.counters["tcp.time_wait_done"] == 1


def test_time_wait_acks_a_retransmitted_fin() -> None:
    net = Net()
    b = net.connect()
    net.a.close()
    net.run()
    lost: list[int] = []

    def drop_last_ack(src: bytes, hdr: tcp.TcpHeader, payload: bytes) -> bool:
        if src == A_ADDR and hdr.flags == tcp.ACK and not lost:
            lost.append(hdr.ack)
            return True
        return False

    net.drop = drop_last_ack
    b.close()
    net.run()
    assert net.a.state == "TIME_WAIT" and b.state == "LAST_ACK"
    net.advance(b.rtt.rto + 0.01)                    # B resends its FIN; A ACKs it again
    assert b.state == "CLOSED" and net.a.state == "TIME_WAIT"


def test_rst_resets_the_peer() -> None:
    net = Net()
    b = net.connect()
    b.abort()
    assert b.state == "CLOSED"
    net.run()
    assert net.a.state == "CLOSED" and net.a.error == errno.ECONNRESET
    with pytest.raises(ConnectionResetError):
        net.a.recv()
    assert net.a.recv() == b""
    with pytest.raises(BrokenPipeError):
        net.a.send(b"x")
    assert net.a.env.counters["tcp.reset_received"] == 1


def test_in_window_rst_with_the_wrong_sequence_gets_a_challenge_ack() -> None:
    net = Net()
    net.connect()
    a = net.a
    net.wire.append((B_ADDR, A_ADDR, tcp.build(B_ADDR, A_ADDR, B_PORT, A_PORT,
                                              (a.rcv_nxt + 10) & MASK, 0, tcp.RST, 0)))
    net.run()
    assert a.state == "ESTABLISHED"
    assert a.env.counters["tcp.rst_challenged"] == 1
    challenge = net.segments(A_ADDR)[-1][0]
    assert challenge.flags == tcp.ACK and challenge.ack == a.rcv_nxt & MASK


def test_syn_sent_refused_by_rst() -> None:
    conn, sent, _ = lone()
    events: list[str] = []
    conn.on_event = lambda: events.append(conn.state)
    conn.open_active()
    syn, _, _ = parse(sent[0][2])
    feed(conn, B_ADDR, A_ADDR, tcp.build(B_ADDR, A_ADDR, B_PORT, A_PORT, 0, syn.seq + 1,
                                         tcp.RST | tcp.ACK, 0))
    assert conn.state == "CLOSED" and events == ["CLOSED"]
    with pytest.raises(ConnectionRefusedError):
        conn.recv()


def test_state_is_assigned_only_in_set_state() -> None:
    """The connection's code assigns ``.state`` in ``_set_state`` (and the
    initial CLOSED in ``__init__``, TIME_WAIT in a TIME-WAIT record's, which
    is born from a connection in that state), nowhere else."""
    import ast
    from pathlib import Path

    import femtotcp.proto.tcp as pkg
    where = []
    for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
        if path.name == "listener.py":
            continue                 # a listener's own state, always LISTEN
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr == "state":
                        where.append((path.name, fn.name))
    assert sorted(where) == [("connection.py", "__init__"), ("connection.py", "_set_state"),
                             ("timewait.py", "__init__")]
