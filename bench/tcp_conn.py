"""The cost of one TCP connection's life without any I/O: two stacks on an
in-memory wire do ``N`` cycles of connect, one byte each way, close (the
client closes first and keeps TIME-WAIT; the server closes on the FIN), and the
TIME-WAIT records expire at the end. Prints CPU microseconds per connection,
the best of ``--repeat`` runs (``time.process_time``: the machine is shared),
for the whole (both stacks, the wire and the loop) and split into the active
(connecting) side and the passive (listening) side; once with a plain listener
and once with a SYN-cookie one (its SYN queue is always full, as under a SYN
flood). Runs anywhere (no root).

    python -m bench.tcp_conn [--conns N] [--repeat N] [--profile]

The split wraps each stack's receiver and the calls made into it in CPU
clocks, so its parts add up to a little more than the unwrapped total; what is
left (the loop, the wire, timers) is shown as "rest".
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from typing import Any

from femtotcp.phy.memory import Wire
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.runtime import SimLoop
from femtotcp.stack import Stack
from femtotcp.stack.config import StackConfig
from femtotcp.wire import ip_bytes, mac_bytes

CLIENT_IP = ip_bytes("192.0.2.1")
SERVER_IP = ip_bytes("192.0.2.2")
PORT = 7


class _Clock:
    """CPU time spent inside one side's stack."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.depth = 0      # a callback the stack makes inside a timed call

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.process_time

        def timed(*args: Any, **kw: Any) -> Any:
            if self.depth:
                return fn(*args, **kw)
            self.depth = 1
            t = clock()
            try:
                return fn(*args, **kw)
            finally:
                self.spent += clock() - t
                self.depth = 0
        return timed


class ConnRig:
    """A client stack and a server stack with a listener on ``PORT``; the
    server answers each connection's byte with one byte and closes on EOF."""

    def __init__(self, cookies: bool = False, split: bool = False) -> None:
        self.loop = SimLoop()
        wire = Wire(self.loop)
        cfg = StackConfig(tcp=TcpConfig(max_syn_backlog=0) if cookies else None)
        self.client = Stack("client")
        self.server = Stack("server", config=cfg)
        self.active = _Clock()
        self.passive = _Clock()
        self.split = split
        self.client_if = self.client.add_interface(wire.a, mac=mac_bytes("02:00:00:00:00:01"),
                                                   ipv4="192.0.2.1/24")
        self.server_if = self.server.add_interface(wire.b, mac=mac_bytes("02:00:00:00:00:02"),
                                                   ipv4="192.0.2.2/24")
        for st in (self.client, self.server):
            self.loop.add_stack(st)
            st.start()
        if split:
            for dev, clock in ((wire.a, self.active), (wire.b, self.passive)):
                if dev._receiver is not None:
                    dev._receiver = clock.wrap(dev._receiver)
                if dev._checked is not None:
                    dev._checked = clock.wrap(dev._checked)
        assert self.server.tcp is not None
        self.listener = self.server.tcp.listen(b"\0\0\0\0", PORT)
        self.listener.on_event = self._accept
        if split:
            self.listener.on_event = self.passive.wrap(self._accept)
        self.served = 0
        self.loop.run(duration=0)

    def _accept(self) -> None:
        while (conn := self.listener.accept()) is not None:
            conn.on_event = self._server_event(conn)
            conn.on_event()

    def _server_event(self, conn: Any) -> Callable[[], None]:
        def ev() -> None:
            data = conn.recv(65536)
            if data:
                conn.send(data)
            elif data is not None and conn.state_name != "CLOSED":
                # EOF (b""): the client closed; so do we, once.
                conn.on_event = None
                conn.close()
                self.served += 1
        return self.passive.wrap(ev) if self.split else ev

    def cycles(self, n: int) -> None:
        tcp = self.client.tcp
        assert tcp is not None
        loop = self.loop
        wrap = self.active.wrap if self.split else (lambda f: f)
        connect = wrap(tcp.connect)
        for _ in range(n):
            conn = connect(SERVER_IP, PORT)
            got: list[bytes] = []
            sent: list[int] = []

            def ev(conn: Any = conn, got: list[bytes] = got, sent: list[int] = sent) -> None:
                if not sent and conn.state_name == "ESTABLISHED":
                    sent.append(conn.send(b"x"))
                data = conn.recv(65536)
                if data:
                    got.append(data)
                    conn.on_event = None
                    conn.close()
            conn.on_event = wrap(ev)
            loop.run_until(lambda conn=conn: conn.state_name in ("TIME_WAIT", "CLOSED"), 5)
            if not got:
                raise AssertionError(f"connection {conn} got no answer")
        # Let the TIME-WAIT records run out (2 MSL) and any timers finish.
        loop.run(duration=2 * tcp.config.msl + 5)
        if tcp.connections():
            raise AssertionError(f"left over: {tcp.connections()[:3]}")


def one_run(n: int, cookies: bool, split: bool = False,
            prof: cProfile.Profile | None = None) -> tuple[float, float, float]:
    """CPU microseconds per connection: total, active side, passive side."""
    rig = ConnRig(cookies, split)
    rig.cycles(20)     # warm up (ARP, first allocations)
    rig.active.spent = rig.passive.spent = 0.0
    served = rig.served
    if prof is not None:
        prof.enable()
    start = time.process_time()
    rig.cycles(n)
    elapsed = time.process_time() - start
    if prof is not None:
        prof.disable()
    if rig.served - served != n:
        raise AssertionError(f"server closed {rig.served - served} of {n}")
    return elapsed / n * 1e6, rig.active.spent / n * 1e6, rig.passive.spent / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tcp_conn")
    ap.add_argument("--conns", type=int, default=2000, help="connections per run (2000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure; best kept (5)")
    ap.add_argument("--profile", action="store_true", help="cProfile top entries too")
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--only", choices=("plain", "cookie"), help="one listener kind")
    ap.add_argument("--no-split", action="store_true", help="the totals only")
    args = ap.parse_args(argv)
    for cookies in (False, True):
        if args.only and (args.only == "cookie") != cookies:
            continue
        name = "SYN-cookie listener" if cookies else "plain listener"
        total = min(one_run(args.conns, cookies)[0] for _ in range(args.repeat))
        line = f"{name:20s} {total:7.1f} us CPU per connection (both stacks)"
        if not args.no_split:
            parts = min((one_run(args.conns, cookies, split=True)
                         for _ in range(args.repeat)), key=lambda r: r[0])
            rest = parts[0] - parts[1] - parts[2]
            line += (f"; split run {parts[0]:.1f}: active {parts[1]:.1f}, "
                     f"passive {parts[2]:.1f}, rest {rest:.1f}")
        print(line)
        if args.profile:
            prof = cProfile.Profile()
            one_run(args.conns, cookies, prof=prof)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
