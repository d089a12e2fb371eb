"""``--qemu-dgram unix:PATH --max-guests N``: each sender address on the
gateway's datagram socket is a guest on the switch (real Unix sockets, no
root): a guest's broadcast reaches the others and the stack, the stack's
unicast goes to one guest only, one sender too many is refused and counted,
an unnamed sender is dropped, and a guest whose socket went leaves the switch
(making room for another)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from femtotcp.gateway.switch import GuestSwitch, QemuDgramHub

MAC_STACK = b"\x02\x00\x00\x00\x00\x02"


def _frame(dst: bytes, src: bytes, tag: bytes) -> bytes:
    return dst + src + b"\x08\x00" + tag.ljust(46, b".")


def _mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, 1, i])


class Watches:
    def __init__(self) -> None:
        self.fds: dict[int, Any] = {}

    def __call__(self, fd: int, read: bool, write: bool, handler: Any) -> None:
        if read or write:
            self.fds[fd] = handler
        else:
            self.fds.pop(fd, None)


def _recv_all(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    sw = GuestSwitch([], name="qemu-dgram")
    sw.own.add(MAC_STACK)
    got: list[bytes] = []
    sw.set_receiver(got.append)
    h = QemuDgramHub(sw, str(tmp_path / "gw.dgram"), 2)
    watches = Watches()
    h.start(watches)
    yield h, sw, got, watches
    h.close()
    assert not os.path.exists(tmp_path / "gw.dgram") and watches.fds == {}


def _qemu(tmp_path: Path, name: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    s.bind(str(tmp_path / name))
    return s


def test_each_sender_is_a_guest_and_one_too_many_is_refused(hub: Any, tmp_path: Path) -> None:
    h, sw, got, watches = hub
    assert watches.fds == {h.sock.fileno(): h}
    a, b, c = (_qemu(tmp_path, n) for n in ("a", "b", "c"))
    bcast = b"\xff" * 6
    a.sendto(_frame(bcast, _mac(1), b"from a"), h.path)
    b.sendto(_frame(bcast, _mac(2), b"from b"), h.path)
    c.sendto(_frame(bcast, _mac(3), b"from c"), h.path)
    h.on_readable()
    assert len(sw.ports) == 2 and sw.counters["switch.guest_limit"] == 1
    assert [f[14:20] for f in got] == [b"from a", b"from b"]
    # Each guest's broadcast went to the other guest, not back to itself nor to c.
    assert [f[14:20] for f in _recv_all(a)] == [b"from b"]
    assert [f[14:20] for f in _recv_all(b)] == [b"from a"]
    assert _recv_all(c) == []
    # The stack's unicast to b's MAC goes to b only.
    sw.send(_frame(_mac(2), MAC_STACK, b"to b"))
    assert [f[14:18] for f in _recv_all(b)] == [b"to b"] and _recv_all(a) == []
    # An unnamed sender cannot be answered: dropped.
    anon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    anon.sendto(_frame(bcast, _mac(4), b"anon"), h.path)
    h.on_readable()
    assert sw.counters["switch.unnamed_peer"] == 1 and len(sw.ports) == 2
    # a goes: the next frame to it finds its socket gone; c may join then.
    a.close()
    os.unlink(tmp_path / "a")
    sw.send(_frame(_mac(1), MAC_STACK, b"to a"))
    assert len(sw.ports) == 1 and sw.counters["disconnects"] == 1
    c.sendto(_frame(bcast, _mac(3), b"from c"), h.path)
    h.on_readable()
    assert len(sw.ports) == 2 and got[-1][14:20] == b"from c"
    assert [f[14:20] for f in _recv_all(b)] == [b"from c"]
    for s in (b, c, anon):
        s.close()


def test_a_refused_sender_takes_the_place_of_a_peer_whose_socket_went(
        hub: Any, tmp_path: Path) -> None:
    h, sw, got, watches = hub
    a, b, c = (_qemu(tmp_path, n) for n in ("a", "b", "c"))
    bcast = b"\xff" * 6
    for i, s in enumerate((a, b), 1):
        s.sendto(_frame(bcast, _mac(i), b"hello"), h.path)
    h.on_readable()
    _recv_all(a)
    _recv_all(b)
    b.close()                       # the socket file stays: ECONNREFUSED
    c.sendto(_frame(bcast, _mac(3), b"from c"), h.path)
    h.on_readable()
    assert len(sw.ports) == 2 and sw.counters["disconnects"] == 1
    assert sw.counters["switch.guest_limit"] == 0
    assert [f[14:20] for f in _recv_all(a)] == [b"from c"]
    # A live peer is not dropped by the check: one more sender is refused.
    d = _qemu(tmp_path, "d")
    h._probed = -1e18
    d.sendto(_frame(bcast, _mac(4), b"from d"), h.path)
    h.on_readable()
    assert sw.counters["switch.guest_limit"] == 1 and len(sw.ports) == 2
    for s in (a, c, d):
        s.close()


def test_short_datagrams_are_dropped(hub: Any, tmp_path: Path) -> None:
    h, sw, got, watches = hub
    a = _qemu(tmp_path, "a")
    a.sendto(b"short", h.path)
    h.on_readable()
    assert sw.counters["rx_bad_length"] == 1 and got == [] and sw.ports == []
    a.close()


def test_the_gateway_takes_max_guests_with_qemu_dgram(tmp_path: Path) -> None:
    from femtotcp.gateway.gateway import Gateway, GatewayOptions
    gw = Gateway(GatewayOptions(qemu_dgram=f"unix:{tmp_path}/g.sock", max_guests=3,
                                net="192.0.2.0/24", net6=None,
                                dns_upstream=["198.51.100.1"]))
    try:
        assert isinstance(gw.hub, QemuDgramHub) and gw.hub.max_guests == 3
        assert f"qemu-dgram {tmp_path}/g.sock" in gw.describe()
    finally:
        gw.close()
    assert not (tmp_path / "g.sock").exists()
