"""The socket options' table (api/sockopts.py) and the knobs it sets, on the
in-memory LAN, for in-process and attached sockets (the comparison with the
kernel itself is tests/e2e/test_sockopts_twin.py)."""

from __future__ import annotations

import errno
import os
import socket as std
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pytest
from apilan import Lan

from femtotcp.api import sockopts
from femtotcp.api.remote import RemoteNetwork
from femtotcp.control.sockets import SocketService

S, T, IP, IP6 = std.SOL_SOCKET, std.IPPROTO_TCP, std.IPPROTO_IP, std.IPPROTO_IPV6
V4, V6 = std.AF_INET, std.AF_INET6


def _errno(fn: Callable[[], Any]) -> int:
    with pytest.raises(OSError) as info:
        fn()
    return int(info.value.errno or 0)


# -- the table ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("level", "opt", "value"), [
    (IP, std.IP_TTL, 0), (IP, std.IP_TTL, 256), (IP, std.IP_TTL, -2),
    (T, std.TCP_MAXSEG, 10), (T, std.TCP_MAXSEG, 87), (T, std.TCP_MAXSEG, 32768),
    (T, std.TCP_KEEPIDLE, 0), (T, std.TCP_KEEPIDLE, 32768), (T, std.TCP_KEEPCNT, 128),
    (T, std.TCP_KEEPINTVL, 40000), (T, std.TCP_USER_TIMEOUT, -1), (T, std.TCP_SYNCNT, 0),
    (T, std.TCP_SYNCNT, 128), (IP, sockopts.IP_MTU_DISCOVER, 6),
    (IP, std.IP_MULTICAST_TTL, 1),            # never on a TCP socket
    (IP6, std.IPV6_UNICAST_HOPS, 256), (IP6, std.IPV6_TCLASS, -2),
    (IP6, std.IPV6_MULTICAST_LOOP, 2),
])
def test_out_of_range_is_einval(level: int, opt: int, value: int) -> None:
    assert _errno(lambda: sockopts.parse(V6, "tcp", level, opt, value)) == errno.EINVAL


@pytest.mark.parametrize(("kind", "level", "opt", "value", "kept"), [
    ("tcp", IP, std.IP_TOS, 300, 44),           # the low byte
    ("tcp", IP, std.IP_TOS, 3, 0),              # TCP's ECN bits are the stack's
    ("udp", IP, std.IP_TOS, 3, 3),
    ("tcp", IP, std.IP_TOS, b"\x10", 16),       # IP's options take one byte
    ("udp", IP, std.IP_TTL, b"\x07", 7),
    ("udp", IP, std.IP_TTL, -1, -1),            # the default again
    ("udp", IP, std.IP_MULTICAST_TTL, -1, 1),
    ("udp", IP, std.IP_MULTICAST_LOOP, 9, 1),
    ("tcp", S, std.SO_KEEPALIVE, 5, 1),
    ("tcp", S, std.SO_SNDBUF, 10000, 20000),   # doubled
    ("tcp", S, std.SO_SNDBUF, 1, sockopts.SNDBUF_MIN),
    ("tcp", S, std.SO_RCVBUF, 1, sockopts.RCVBUF_MIN),
    ("tcp", S, std.SO_RCVBUF, 1 << 30, 2 * sockopts.BUF_MAX),
    ("tcp", S, std.SO_RCVBUF, -1, 2 * sockopts.BUF_MAX),   # (u32 for Linux)
    ("tcp", S, std.SO_RCVLOWAT, 0, 1), ("tcp", S, std.SO_RCVLOWAT, -1, 2**31 - 1),
    ("tcp", T, std.TCP_LINGER2, -5, -1), ("tcp", T, std.TCP_LINGER2, 500, 120),
    ("tcp", T, std.TCP_WINDOW_CLAMP, 100, 1152), ("tcp", T, std.TCP_WINDOW_CLAMP, -1, 1152),
    ("tcp", T, std.TCP_NODELAY, 3, 1), ("tcp", T, std.TCP_MAXSEG, 0, 0),
    ("tcp", IP6, std.IPV6_TCLASS, 9, 8), ("udp", IP6, std.IPV6_TCLASS, 9, 9),
    ("tcp", S, std.SO_LINGER, struct.pack("ii", 1, 5), (1, 5)),
    ("tcp", T, std.TCP_CONGESTION, b"reno", b"reno"),
])
def test_parse_keeps_what_linux_keeps(kind: str, level: int, opt: int, value: Any,
                                      kept: Any) -> None:
    assert sockopts.parse(V6, kind, level, opt, value) == kept


def test_what_a_socket_lacks() -> None:
    """Unknown level: EOPNOTSUPP to get, ENOPROTOOPT to set; unknown or
    read-only option: ENOPROTOOPT; a short SO_LINGER or int: EINVAL."""
    assert _errno(lambda: sockopts.lookup(V4, "tcp", 9999, 1, False)) == errno.EOPNOTSUPP
    assert _errno(lambda: sockopts.parse(V4, "tcp", 9999, 1, 1)) == errno.ENOPROTOOPT
    assert _errno(lambda: sockopts.lookup(V4, "udp", T, std.TCP_NODELAY, False)) == \
        errno.EOPNOTSUPP
    assert _errno(lambda: sockopts.parse(V4, "udp", T, std.TCP_NODELAY, 1)) == errno.ENOPROTOOPT
    assert _errno(lambda: sockopts.lookup(V4, "tcp", IP6, std.IPV6_V6ONLY, False)) == \
        errno.EOPNOTSUPP
    assert _errno(lambda: sockopts.lookup(V4, "tcp", S, 9999, False)) == errno.ENOPROTOOPT
    for level, opt in ((S, std.SO_SNDLOWAT), (S, std.SO_ERROR), (S, std.SO_TYPE),
                       (IP, sockopts.IP_MTU), (T, std.TCP_INFO),
                       (IP6, std.IPV6_MULTICAST_HOPS)):
        assert _errno(lambda lv=level, o=opt: sockopts.parse(V6, "tcp", lv, o, 1)) == \
            errno.ENOPROTOOPT
    assert _errno(lambda: sockopts.parse(V4, "tcp", S, std.SO_LINGER, b"\1")) == errno.EINVAL
    assert _errno(lambda: sockopts.parse(V4, "tcp", S, std.SO_KEEPALIVE, b"\1")) == errno.EINVAL
    assert _errno(lambda: sockopts.parse(V4, "tcp", T, std.TCP_NODELAY, b"\1")) == errno.EINVAL


def test_answer_is_an_int_or_the_bytes_asked() -> None:
    assert sockopts.answer(-1, None) == -1
    assert sockopts.answer(300, 1) == (300).to_bytes(4, sys.byteorder, signed=True)[:1]
    name = b"reno".ljust(16, b"\0")
    assert sockopts.answer(name, None) == int.from_bytes(b"reno", sys.byteorder)
    assert sockopts.answer(name, 16) == name
    assert sockopts.answer(b"", None) == 0
    with pytest.raises(OSError, match="buflen out of range"):
        sockopts.answer(1, 0)


def test_tcp_info_is_linux_s_layout() -> None:
    assert sockopts._INFO.size == 248 and sockopts.INFO_SIZE == 280


# -- on sockets: in-process and attached ---------------------------------------------------------

@pytest.fixture
def net(program_net: Any) -> Any:
    """Stack A in-process and attached (conftest's ``program_net``)."""
    return program_net


def _stack_conn(lan: Lan, sock: Any) -> Any:
    """The stack's connection for ``sock`` (stack A), by its local port."""
    port = sock.getsockname()[1]
    return lan.runtime.call(lambda: next(c for c in lan.a.tcp.connections()
                                         if c.local[1] == port))


def _listener(lan: Lan) -> Any:
    srv = lan.net_b.socket()
    srv.bind(("", 0))
    srv.listen(8)
    return srv


def test_tcp_maxseg_before_connect_caps_the_syn(lan: Lan, net: Any) -> None:
    """TCP_MAXSEG set before connect is the MSS the SYN offers (the peer sends
    no larger segments); then it reads the MSS in use (less the timestamps)."""
    srv = _listener(lan)
    c = net.socket()
    c.setsockopt(T, std.TCP_MAXSEG, 600)
    assert c.getsockopt(T, std.TCP_MAXSEG) == 600
    c.settimeout(10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    port = c.getsockname()[1]
    peer_conn = lan.runtime.call(lambda: next(x for x in lan.b.tcp.connections()
                                              if x.remote[1] == port))
    assert peer_conn.peer_mss == 600
    assert c.getsockopt(T, std.TCP_MAXSEG) == _stack_conn(lan, c).mss == 588
    for s in (c, peer, srv):
        s.close()


def test_syncnt_linger2_quickack_set_the_connection_s_own_limits(lan: Lan, net: Any) -> None:
    srv = _listener(lan)
    c = net.socket()
    c.setsockopt(T, std.TCP_SYNCNT, 2)
    c.settimeout(10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    c.setsockopt(T, std.TCP_LINGER2, 7)
    conn = _stack_conn(lan, c)
    stack_cfg = lan.runtime.call(lambda: lan.a.tcp.config)
    assert conn.config.syn_retries == 2 and conn.config.fin_timeout == 7.0
    assert stack_cfg.syn_retries == 6 and stack_cfg.fin_timeout == 60.0    # untouched
    assert c.getsockopt(T, std.TCP_SYNCNT) == 2 and c.getsockopt(T, std.TCP_LINGER2) == 7
    c.setsockopt(T, std.TCP_LINGER2, 0)           # the stack's again
    assert conn.config.fin_timeout == 60.0 and c.getsockopt(T, std.TCP_LINGER2) == 60
    c.setsockopt(T, std.TCP_LINGER2, -1)
    assert conn.config.fin_timeout == 0.0 and c.getsockopt(T, std.TCP_LINGER2) == -1
    assert _errno(lambda: c.setsockopt(T, std.TCP_WINDOW_CLAMP, 0)) == errno.EINVAL
    c.setsockopt(T, std.TCP_QUICKACK, 0)          # delayed ACKs from now on
    assert conn.rcv.quickack == 0 and c.getsockopt(T, std.TCP_QUICKACK) == 0
    c.setsockopt(T, std.TCP_QUICKACK, 1)          # quick-ack mode again
    assert conn.rcv.quickack == stack_cfg.quickack_segments
    c.close()
    srv.close()


def test_tcp_info_from_the_live_connection(lan: Lan, net: Any) -> None:
    srv = _listener(lan)
    c = net.socket()
    c.settimeout(10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    c.sendall(b"x" * 5000)
    got = b""
    while len(got) < 5000:
        got += peer.recv(65536)
    peer.sendall(b"y" * 300)
    assert c.recv(1000, std.MSG_WAITALL) == b"y" * 300
    conn = _stack_conn(lan, c)
    raw = c.getsockopt(T, std.TCP_INFO, 512)
    assert len(raw) == 280
    state, _ca, _retr, _probes, _backoff, options, wscale = struct.unpack_from("7B", raw)
    _rto, _ato, snd_mss, _rcv_mss = struct.unpack_from("4I", raw, 8)
    bytes_acked, bytes_received = struct.unpack_from("2Q", raw, 120)
    segs_out, segs_in, notsent = struct.unpack_from("3I", raw, 136)
    snd_wnd, rcv_wnd = struct.unpack_from("2I", raw, 228)
    assert state == 1 and snd_mss == conn.mss
    assert options == 7 and wscale & 15 == conn.snd_wscale     # TS, SACK, window scale
    assert bytes_received == 300 and bytes_acked == lan.runtime.call(lambda: conn.bytes_acked)
    assert segs_out >= 4 and segs_in >= 3 and notsent == 0
    assert snd_wnd == lan.runtime.call(lambda: conn.snd_wnd) and rcv_wnd > 0
    assert c.getsockopt(T, std.TCP_INFO) == 1                  # the first four bytes
    for s in (c, peer, srv):
        s.close()


def test_names_are_checked_by_the_stack(lan: Lan, net: Any) -> None:
    """TCP_CONGESTION: the stack's algorithm only (ENOENT); SO_BINDTODEVICE: a
    device of the stack's (ENODEV) - also before the socket's first request."""
    s = net.socket()
    assert _errno(lambda: s.setsockopt(T, std.TCP_CONGESTION, b"cubic")) == errno.ENOENT
    s.setsockopt(T, std.TCP_CONGESTION, b"reno\0")
    assert s.getsockopt(T, std.TCP_CONGESTION, 16).rstrip(b"\0") == b"reno"
    assert _errno(lambda: s.setsockopt(S, std.SO_BINDTODEVICE, b"nosuch0")) == errno.ENODEV
    name = lan.runtime.call(lambda: lan.a.interfaces[0].name).encode()
    s.setsockopt(S, std.SO_BINDTODEVICE, name)
    assert s.getsockopt(S, std.SO_BINDTODEVICE, 16) == name
    s.setsockopt(S, std.SO_BINDTODEVICE, b"")
    assert s.getsockopt(S, std.SO_BINDTODEVICE, 16) == b""
    s.close()


def test_udp_options_reach_the_endpoint(lan: Lan, net: Any) -> None:
    u = net.socket(std.AF_INET, std.SOCK_DGRAM)
    u.bind(("", 0))
    u.setsockopt(IP, std.IP_TTL, 9)
    u.setsockopt(IP, std.IP_TOS, 0x2D)
    u.setsockopt(S, std.SO_RCVBUF, 5000)
    port = u.getsockname()[1]
    ep = lan.runtime.call(lambda: next(e for e in lan.a.udp.endpoints.values()
                                         if e.local[1] == port))
    assert (ep.ttl, ep.tos, ep.rcvbuf) == (9, 0x2D, 10000)
    u.setsockopt(IP, std.IP_TTL, -1)
    assert ep.ttl is None and u.getsockopt(IP, std.IP_TTL) == 64
    u.setsockopt(S, std.SO_SNDBUF, 5000)        # a datagram's send buffer is P's
    assert u.getsockopt(S, std.SO_SNDBUF) == 10000
    assert _errno(lambda: u.getsockopt(IP, sockopts.IP_MTU)) == errno.ENOTCONN
    u.connect((lan.ip_b, 9))
    assert u.getsockopt(IP, sockopts.IP_MTU) == 1500
    u.close()


def test_rcvlowat_holds_a_blocking_read(lan: Lan, net: Any) -> None:
    """SO_RCVLOWAT 5: a blocking recv waits for five bytes, not the first three."""
    srv = _listener(lan)
    c = net.socket()
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    c.setsockopt(S, std.SO_RCVLOWAT, 5)
    assert c.getsockopt(S, std.SO_RCVLOWAT) == 5
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(c.recv(100)))
    peer.sendall(b"abc")
    reader.start()
    reader.join(0.5)
    peer.sendall(b"de")
    reader.join(10)
    assert got == [b"abcde"]
    for s in (c, peer, srv):
        s.close()


def test_window_clamp_bounds_the_window_offered(lan: Lan, net: Any) -> None:
    """TCP_WINDOW_CLAMP: once the window offered before it is used up (the right
    edge never moves left, RFC 9293 3.8.6.2.1), the peer sees no larger window.
    Without the clamp it would see the receive buffer's (256 KiB)."""
    srv = _listener(lan)
    c = net.socket()
    c.setsockopt(T, std.TCP_WINDOW_CLAMP, 5000)
    c.settimeout(10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    assert c.getsockopt(T, std.TCP_WINDOW_CLAMP) == 5000
    port = c.getsockname()[1]
    sender = threading.Thread(target=peer.sendall, args=(b"z" * 100_000,))
    sender.start()
    got = 0
    while got < 100_000:
        got += len(c.recv(65536))
    sender.join(10)
    peer_conn = lan.runtime.call(lambda: next(x for x in lan.b.tcp.connections()
                                              if x.remote[1] == port))
    wnd, scale = lan.runtime.call(lambda: (peer_conn.snd_wnd, peer_conn.snd_wscale))
    assert 0 < wnd < 5000 + (1 << scale)          # (a scaled window is rounded up)
    for s in (c, peer, srv):
        s.close()


def test_ip_ttl_and_tos_of_an_ipv4_stream_on_the_wire(lan: Lan, net: Any) -> None:
    """IP_TTL and IP_TOS set on a connected IPv4 TCP socket mark its segments
    (TOS without the ECN bits, as Linux); IP_TTL -1 is the stack's TTL again."""
    seen: list[tuple[int, int, int]] = []

    def capture(frame: bytes, outbound: bool) -> None:
        if outbound and frame[12:14] == b"\x08\x00" and frame[23] == 6:
            seen.append((frame[22], frame[15], len(frame)))      # TTL, TOS, size

    lan.a.interfaces[0].device.add_capture(capture)
    srv = _listener(lan)
    c = net.socket()
    c.settimeout(10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    c.setsockopt(IP, std.IP_TTL, 9)
    c.setsockopt(IP, std.IP_TOS, 0x2B)
    assert (c.getsockopt(IP, std.IP_TTL), c.getsockopt(IP, std.IP_TOS)) == (9, 0x28)
    before = len(seen)
    c.sendall(b"a" * 3000)
    got = b""
    while len(got) < 3000:
        got += peer.recv(65536)
    marked = {(ttl, tos) for ttl, tos, size in seen[before:] if size > 100}
    assert marked == {(9, 0x28)}
    c.setsockopt(IP, std.IP_TTL, -1)
    before = len(seen)
    c.sendall(b"b" * 100)
    assert peer.recv(100) == b"b" * 100
    assert {(ttl, tos) for ttl, tos, size in seen[before:] if size > 100} == {(64, 0x28)}
    for s in (c, peer, srv):
        s.close()


def test_ip_ttl_and_tos_set_before_the_handshake_mark_syn_and_syn_ack(
        lan: Lan, net: Any) -> None:
    """IP_TTL and IP_TOS set before connect mark the SYN already, and set on a
    listener its SYN-ACKs and the connections it accepts, as Linux's."""
    seen: list[tuple[int, int, int]] = []        # TTL, TOS, TCP flags

    def capture(frame: bytes, outbound: bool) -> None:
        if outbound and frame[12:14] == b"\x08\x00" and frame[23] == 6:
            seen.append((frame[22], frame[15], frame[47]))

    for stack in (lan.a, lan.b):
        stack.interfaces[0].device.add_capture(capture)
    srv = lan.net_b.socket()
    srv.setsockopt(IP, std.IP_TTL, 11)
    srv.setsockopt(IP, std.IP_TOS, 0x20)
    srv.bind(("", 0))
    srv.listen(8)
    c = net.socket()
    c.settimeout(10)
    c.setsockopt(IP, std.IP_TTL, 7)
    c.setsockopt(IP, std.IP_TOS, 0x10)
    c.connect((lan.ip_b, srv.getsockname()[1]))
    peer, _ = srv.accept()
    peer.sendall(b"from the accepted one")
    assert c.recv(100) == b"from the accepted one"
    syn, syn_ack, ack, psh = 0x02, 0x12, 0x10, 0x18
    assert (7, 0x10, syn) in seen and (11, 0x20, syn_ack) in seen
    assert (11, 0x20, psh) in seen or (11, 0x20, ack) in seen
    for s in (c, peer, srv):
        s.close()


def test_defaults_are_the_stack_s(lan: Lan, net: Any) -> None:
    """Unset, the TCP limits read the stack's own config (Linux's sysctls)."""
    def tune() -> None:
        lan.a.tcp.config.keepalive_idle = 100.0
        lan.a.tcp.config.syn_retries = 3
        lan.a.tcp.config.fin_timeout = 20.0

    lan.runtime.call(tune)
    s = net.socket()
    assert s.getsockopt(T, std.TCP_KEEPIDLE) == 100
    assert s.getsockopt(T, std.TCP_SYNCNT) == 3 and s.getsockopt(T, std.TCP_LINGER2) == 20
    assert s.getsockopt(T, std.TCP_KEEPCNT) == 9 and s.getsockopt(IP, std.IP_TTL) == 64
    s.close()


def test_serve_checks_a_program_s_values_again(lan: Lan) -> None:
    """An attached program's setopt request is checked in serve too: a value
    out of range (a program not using api/remote), a big int or a list is
    EINVAL, and the socket keeps what it had."""
    from femtotcp.api.remote import decode, encode
    d = tempfile.mkdtemp(prefix="ftopts")
    service = SocketService(lan.a, lan.runtime, os.path.join(d, "s.sockets")).start()
    try:
        s = RemoteNetwork(service.path).socket()
        s.bind(("", 0))
        sid = os.fstat(s.fileno()).st_ino
        for value in (1000, 2**70, [1, 2], "zz"):
            answer, _ = decode(b"".join(service.handle(b"".join(
                encode(["setopt", sid, IP, std.IP_TTL, value])))[0]))
            assert answer[0] == errno.EINVAL, value
        assert s.getsockopt(IP, std.IP_TTL) == 64
        answer, _ = decode(b"".join(service.handle(b"".join(
            encode(["setopt", sid, IP, std.IP_TTL, 9])))[0]))
        assert answer[0] == 0 and s.getsockopt(IP, std.IP_TTL) == 9
        s.close()
    finally:
        service.close()
        os.rmdir(d)
