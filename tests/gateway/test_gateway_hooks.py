"""The core hooks a gateway uses, on an in-memory LAN and a virtual clock: the
guest (host 0) routes through the gateway stack (host 1), which takes its
segments and datagrams for any destination and decides when its handshake
completes."""

from __future__ import annotations

import errno
from typing import Any

from femtolan import Lan, addr, make_lan, resolve

from femtotcp.proto.tcp.listener import TcpListener
from femtotcp.wire import ip_bytes

REMOTE = ip_bytes("198.51.100.1")
ANY4 = b"\0\0\0\0"


def _gateway_lan() -> tuple[Lan, Any, Any]:
    lan = make_lan(2)
    guest, gw = lan.stacks
    guest.add_route("0.0.0.0/0", gateway=addr(1))
    resolve(lan, 0, 1)
    return lan, guest, gw


def test_without_the_hooks_traffic_for_other_addresses_is_dropped() -> None:
    lan, guest, gw = _gateway_lan()
    conn = guest.tcp.connect(REMOTE, 80)
    lan.run(1.0)
    assert conn.state == "SYN_SENT"
    assert gw.counters["ipv4.not_for_us"] >= 1


def test_a_held_syn_completes_only_when_the_gateway_accepts_it() -> None:
    lan, guest, gw = _gateway_lan()
    gw.ipv4.accept_any.add(lan.ifaces[1])
    held: list[tuple[Any, Any, bytes]] = []

    def hook(ip: Any, hdr: Any, payload: memoryview) -> bool:
        if ip.dst == REMOTE:
            held.append((ip.src, hdr, bytes(payload)))
            return True
        return False

    gw.tcp.transparent = hook
    lst = TcpListener(gw.tcp, ANY4, 0, 8)
    conn = guest.tcp.connect(REMOTE, 80)
    lan.run(2.5)                      # the guest retransmits its SYN; nothing answers
    assert conn.state == "SYN_SENT" and len(held) >= 2
    src, hdr, payload = held[-1]
    gw.tcp.accept_transparent(lst, src, REMOTE, hdr, memoryview(payload))
    assert lan.run_until(lambda: conn.state == "ESTABLISHED", 5)
    assert lan.run_until(lambda: lst.readable, 5)
    server = lst.accept()
    assert server is not None and server.local == (REMOTE, 80)
    assert server.remote == conn.local
    conn.send(b"to the world")
    assert lan.run_until(lambda: server.readable, 5)
    assert server.recv() == b"to the world"
    server.send(b"from the world")
    assert lan.run_until(lambda: conn.readable, 5)
    assert conn.recv() == b"from the world"


def test_a_refused_syn_gets_the_guest_connection_refused() -> None:
    lan, guest, gw = _gateway_lan()
    gw.ipv4.accept_any.add(lan.ifaces[1])

    def hook(ip: Any, hdr: Any, payload: memoryview) -> bool:
        gw.tcp.reset_for(ip.src, ip.dst, hdr, len(payload))
        return True

    gw.tcp.transparent = hook
    conn = guest.tcp.connect(REMOTE, 81)
    assert lan.run_until(lambda: conn.state == "CLOSED", 5)
    assert conn.error == errno.ECONNREFUSED


def test_listeners_on_the_gateways_own_address_still_answer() -> None:
    lan, guest, gw = _gateway_lan()
    gw.ipv4.accept_any.add(lan.ifaces[1])
    seen: list[bytes] = []
    gw.tcp.transparent = lambda ip, hdr, payload: seen.append(ip.dst) is None
    lst = gw.tcp.listen(ANY4, 53)
    conn = guest.tcp.connect(addr(1), 53)
    assert lan.run_until(lambda: lst.readable, 5)
    assert lst.accept() is not None and seen == [] and conn.state == "ESTABLISHED"
    # A listener bound to the wildcard is not a listener for other addresses.
    other = guest.tcp.connect(REMOTE, 53)
    lan.run(0.5)
    assert seen == [REMOTE] and other.state == "SYN_SENT"


def test_udp_catch_all_takes_datagrams_for_other_addresses_only() -> None:
    lan, guest, gw = _gateway_lan()
    gw.ipv4.accept_any.add(lan.ifaces[1])
    caught: list[tuple[bytes, int, bytes]] = []

    def hook(ip: Any, udp: Any, payload: memoryview) -> bool:
        caught.append((ip.dst, udp.dst_port, bytes(payload)))
        return True

    gw.udp.catch_all = hook
    local = gw.udp.open(ANY4, 53)
    ep = guest.udp.open()
    ep.sendto(b"to the world", REMOTE, 53)
    ep.sendto(b"to the gateway", addr(1), 53)
    lan.run(0.5)
    assert caught == [(REMOTE, 53, b"to the world")]
    assert local.recv() == (b"to the gateway", (addr(0), ep.local[1]))
    ep.sendto(b"unbound", addr(1), 9999)       # our address, no endpoint: the hook
    lan.run(0.5)
    assert caught[-1] == (addr(1), 9999, b"unbound")


def test_send_received_splices_without_losing_or_reordering_a_byte() -> None:
    """``TcpConnection.send_received``: the receive buffer's chunks offered to a
    socket's sendmsg as they are; what it takes is consumed, the rest stays; a raising send
    consumes nothing; a full buffer closes the window until it drains."""
    lan, guest, gw = _gateway_lan()
    lst = gw.tcp.listen(ANY4, 80, backlog=4)
    lst.rcvbuf = 65536
    conn = guest.tcp.connect(addr(1), 80)
    assert lan.run_until(lambda: lst.readable, 5)
    server = lst.accept()
    assert server is not None
    data = bytes(range(256)) * 1024           # 256 KB: more than the window
    sent = 0
    got = bytearray()

    def take(limit: int) -> Any:
        def sendmsg(buffers: list[Any]) -> int:     # as socket.sendmsg: scatter-gather
            joined = b"".join(buffers)
            n = min(limit, len(joined))
            got.extend(joined[:n])
            return n
        return sendmsg

    def refuse(buffers: list[Any]) -> int:
        raise BlockingIOError

    for _ in range(500):                      # each round the window reopens
        if len(got) == len(data):
            break
        sent += conn.send(data[sent:])
        lan.run(0.2)
        held = len(server.rcv_buf)
        assert held <= 65536 + 4096          # the window (rounded up by its scale)
        if held:
            try:
                server.send_received(refuse)
            except BlockingIOError:
                pass
            assert len(server.rcv_buf) == held
            assert server.send_received(take(1000)) == min(1000, held)
            assert server.send_received(take(1 << 20)) == max(0, held - 1000)
        assert server.send_received(take(1)) == 0 and not server.rcv_buf
    assert bytes(got) == data
