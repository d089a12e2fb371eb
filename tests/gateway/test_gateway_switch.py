"""Several guests behind the gateway's ``GuestSwitch``, on memory wires and a
virtual clock: the guests reach each other and the gateway, a unicast frame
goes only to the port its destination sits behind, and the MAC table stays
bounded."""

from __future__ import annotations

from typing import Any

from femtotcp.gateway import switch as switch_mod
from femtotcp.gateway.switch import GuestSwitch
from femtotcp.phy.memory import Wire
from femtotcp.runtime import SimLoop
from femtotcp.stack.stack import Stack
from femtotcp.wire import ip_bytes

GW = ip_bytes("192.0.2.2")


def _guest(i: int) -> bytes:
    return ip_bytes(f"192.0.2.{15 + i}")


def _net(n: int) -> tuple[SimLoop, Stack, list[Stack], GuestSwitch, list[list[bytes]]]:
    loop = SimLoop()
    wires = [Wire(loop, names=(f"g{i}", f"port{i}")) for i in range(n)]
    sw = GuestSwitch([w.b for w in wires])
    gw = Stack("gw")
    iface = gw.add_interface(sw, mac=b"\x02\x00\x00\x00\x00\x02", ipv4="192.0.2.2/24")
    sw.own.add(iface.mac)
    loop.add_stack(gw)
    gw.start()
    guests = []
    seen: list[list[bytes]] = []
    for i, w in enumerate(wires):
        g = Stack(f"g{i}")
        g.add_interface(w.a, mac=bytes([2, 0, 0, 0, 1, i]), ipv4=f"192.0.2.{15 + i}/24")
        loop.add_stack(g)
        g.start()
        guests.append(g)
        frames: list[bytes] = []
        w.a.add_capture(lambda frame, out, frames=frames: None if out else frames.append(frame))
        seen.append(frames)
    loop.run(duration=5)
    return loop, gw, guests, sw, seen


def _ping(loop: SimLoop, stack: Stack, dst: bytes) -> bool:
    replies: list[Any] = []
    assert stack.icmp is not None
    ep = stack.icmp.ping(dst, replies.append)
    ok = loop.run_until(lambda: bool(replies), 10)
    ep.close()
    return ok


def test_guests_reach_each_other_and_the_gateway() -> None:
    loop, gw, guests, sw, seen = _net(3)
    assert _ping(loop, guests[0], _guest(1))
    assert _ping(loop, guests[2], _guest(0))
    for g in guests:
        assert _ping(loop, g, GW)
    assert sw.counters["switch.forwarded"] > 0


def test_unicast_between_two_guests_does_not_reach_the_third() -> None:
    loop, gw, guests, sw, seen = _net(3)
    assert _ping(loop, guests[0], _guest(1))        # every MAC learned by now
    for frames in seen:
        frames.clear()
    udp0 = guests[0].udp
    assert udp0 is not None
    ep = udp0.open()
    for _ in range(5):
        ep.sendto(b"private", _guest(1), 9)
    loop.run(duration=1)
    assert sum(b"private" in f for f in seen[1]) == 5
    assert not any(b"private" in f for f in seen[2])
    # ... nor the gateway's stack (its frames are the switch's deliveries).
    assert gw.counters["udp.rx"] == 0


def test_the_mac_table_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(switch_mod, "MAX_MACS", 8)
    loop, gw, guests, sw, seen = _net(2)
    port = sw.ports[0]
    for i in range(50):
        frame = b"\xff" * 6 + bytes([2, 9, 9, 9, 0, i]) + b"\x08\x00" + bytes(46)
        port.deliver(frame)
    assert len(sw.macs) == 8 and sw.counters["switch.mac_table_full"] > 0
    # A group address or our own MAC is never learned as a source.
    port.deliver(b"\xff" * 6 + b"\x03\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(46))
    port.deliver(b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00" + bytes(46))
    assert sw.counters["switch.bad_source"] == 2
