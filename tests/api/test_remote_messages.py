"""The socket service's messages (api/remote.py): JSON, and the compact form
of the hot request (a TCP connect) and of its answer."""

from __future__ import annotations

import errno
import os
import socket as std
import struct

import pytest
from apilan import Lan
from test_remote import svc  # noqa: F401 - the socket service's fixture

from femtotcp.api.remote import (
    COMPACT,
    MAX_MESSAGE,
    MODES,
    connected_answer,
    decode,
    decode_connect,
    encode,
    recv_message,
)
from femtotcp.control.sockets import SocketService
from femtotcp.wire import ip_bytes


def _one(doc: list) -> bytes:
    return b"".join(encode(doc))


def _is_compact(msg: bytes) -> bool:
    return struct.unpack_from("!H", msg)[0] == COMPACT


@pytest.mark.parametrize("doc", [
    ["+connect", 123456789012, std.AF_INET, std.SOCK_STREAM, 0, [], "192.0.2.7", 9001, 0,
     30.0, 0],
    ["+connect", 1, std.AF_INET6, std.SOCK_STREAM, 6, [], "2001:db8::1", 80, 0, -1.0, 0],
    ["connect", 2**64 - 1, "198.51.100.1", 65535, 4096, 0.0, 0],
    ["connect", 7, "fe80::1", 22, 0, 2.5, 3],
])
def test_connect_requests_go_compact_and_decode_to_the_same_array(doc: list) -> None:
    msg = _one(doc)
    assert _is_compact(msg)
    assert decode(msg) == (doc, b"")


def test_a_connect_without_scope_decodes_with_scope_zero() -> None:
    got, tail = decode(_one(["connect", 5, "192.0.2.1", 1, 0, 1.0]))
    assert got == ["connect", 5, "192.0.2.1", 1, 0, 1.0, 0] and tail == b""


@pytest.mark.parametrize("doc", [
    # options set before the first request travel with it: JSON
    ["+connect", 1, std.AF_INET, std.SOCK_STREAM, 0, [[6, 1, 1]], "192.0.2.7", 80, 0, 1.0, 0],
    # what does not fit the struct is serve's to refuse, as JSON
    ["connect", 1, "not-an-address", 80, 0, 1.0, 0],
    ["connect", 1, "192.0.2.7", 70000, 0, 1.0, 0],
    ["connect", -1, "192.0.2.7", 80, 0, 1.0, 0],
    ["connect", 1, "192.0.2.7", 80],
    ["state", 1],
])
def test_other_requests_stay_json(doc: list) -> None:
    msg = _one(doc)
    assert not _is_compact(msg)
    assert decode(msg) == (doc, b"")


def test_a_json_part_never_reads_as_compact() -> None:
    # '["x","' + filler + '"]': a JSON part of exactly 0xFFFF bytes
    doc = ["x", "a" * (COMPACT - 8)]
    with pytest.raises(OSError) as info:
        encode(doc)
    assert info.value.errno == errno.EMSGSIZE
    assert COMPACT - 1 + 2 <= MAX_MESSAGE
    shorter = ["x", "a" * (COMPACT - 9)]
    assert decode(_one(shorter)) == (shorter, b"")


def test_connected_answer_decodes_as_the_json_answer_would() -> None:
    msg = connected_answer(0, "connected", (ip_bytes("192.0.2.1"), 40000),
                           (ip_bytes("192.0.2.2"), 9001), 0)
    assert _is_compact(msg)
    assert decode(msg) == ([0, 0, ["connected", ["192.0.2.1", 40000],
                                   ["192.0.2.2", 9001], 0]], b"")
    msg = connected_answer(errno.ECONNREFUSED, "failed", (ip_bytes("fe80::2"), 1), None, 4)
    assert decode(msg) == ([0, errno.ECONNREFUSED, ["failed", ["fe80::2", 1], None, 4]], b"")
    msg = connected_answer(errno.EINPROGRESS, "connecting", None, None, 0)
    assert decode(msg)[0] == [0, errno.EINPROGRESS, ["connecting", None, None, 0]]


def test_every_mode_round_trips() -> None:
    for mode in MODES:
        assert decode(connected_answer(0, mode, None, None, 0))[0][2][0] == mode


_CONNECT_NAN = _one(["connect", 1, "192.0.2.7", 80, 0, 1.0, 0]).replace(
    struct.pack("!d", 1.0), struct.pack("!d", float("nan")))
_CONNECT_INF = _one(["connect", 1, "192.0.2.7", 80, 0, 1.0, 0]).replace(
    struct.pack("!d", 1.0), struct.pack("!d", float("inf")))


@pytest.mark.parametrize("msg", [
    b"\xff\xff",                                                        # no kind
    b"\xff\xff\x09" + bytes(40),                                        # unknown kind
    _one(["connect", 1, "192.0.2.7", 80, 0, 1.0, 0])[:-1],              # short
    _one(["connect", 1, "192.0.2.7", 80, 0, 1.0, 0]) + b"x",            # long
    # an address length of 5
    _one(["connect", 1, "192.0.2.7", 80, 0, 1.0, 0]).replace(b"\x04\xc0\x00\x02\x07",
                                                             b"\x05\xc0\x00\x02\x07"),
    # a timeout that is no number, or no finite one
    _CONNECT_NAN,
    _CONNECT_INF,
    # mode 200
    (lambda m: m[:7] + b"\xc8" + m[8:])(connected_answer(0, "idle", None, None, 0)),
    # a local address length of 3
    (lambda m: m[:8] + b"\x03" + m[9:])(connected_answer(0, "idle", None, None, 0)),
])
def test_malformed_compact_messages_are_value_errors(msg: bytes) -> None:
    with pytest.raises(ValueError):
        decode(msg)


@pytest.mark.parametrize("msg", [
    b"\xff\xff\x01" + bytes(10),                                       # short
    connected_answer(0, "idle", None, None, 0),                        # an answer
    # a first connect without the socket's end of the pair
    _one(["+connect", 99, std.AF_INET, std.SOCK_STREAM, 0, [], "192.0.2.2", 80, 0, 1.0, 0]),
])
def test_serve_answers_a_malformed_compact_request_einval(
        svc: SocketService,  # noqa: F811 - the fixture imported above
        msg: bytes) -> None:
    out = svc.handle(msg)
    assert out is not None
    ans, _ = decode(b"".join(out[0]))
    assert ans[0] == errno.EINVAL


def test_decode_connect_gives_the_packed_destination() -> None:
    msg = _one(["+connect", 5, std.AF_INET6, std.SOCK_STREAM, 0, [], "2001:db8::9", 443, 7,
                -1.0, 2])
    assert decode_connect(msg) == (True, 5, std.AF_INET6, std.SOCK_STREAM, 0,
                                   ip_bytes("2001:db8::9"), 443, 7, -1.0, 2)
    with pytest.raises(ValueError):
        decode_connect(connected_answer(0, "idle", None, None, 0))


def test_serve_answers_a_compact_first_connect(
        lan: Lan, svc: SocketService) -> None:  # noqa: F811 - the fixture imported above
    """A ``+connect`` in compact form hands serve the pair and connects it; a
    non-blocking one is answered EINPROGRESS with the socket's state, compact."""
    server = lan.net_b.create_server(("0.0.0.0", 6400))
    p, q = std.socketpair(std.AF_UNIX, std.SOCK_STREAM)
    sid = os.fstat(p.fileno()).st_ino
    msg = _one(["+connect", sid, std.AF_INET, std.SOCK_STREAM, 0, [], lan.ip_b, 6400, 0,
                0.0, 0])
    assert _is_compact(msg)
    out = svc.handle(msg, q.detach())
    assert out is not None
    answer = b"".join(out[0])
    assert _is_compact(answer)
    ans, _ = decode(answer)
    assert ans[0] == 0
    if ans[1] == errno.EINPROGRESS:
        assert ans[2][0] == "connecting" and ans[2][2] is None
    else:           # (the handshake may be done before the answer: connected)
        assert ans[1] == 0 and ans[2][0] == "connected" and ans[2][2] == [lan.ip_b, 6400]
    assert ans[2][1][0] == lan.ip_a and ans[2][1][1] > 0
    assert sid in svc.links
    peer, _ = server.accept()
    peer.close()
    p.close()
    server.close()



def test_recv_message_keeps_the_first_fd_and_closes_any_other() -> None:
    """A message carries at most one fd: the first is handed back, any more
    that came with it are closed (none leaks), and a message without one gives None."""
    a, b = std.socketpair(std.AF_UNIX, std.SOCK_SEQPACKET)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    with a, b:
        std.send_fds(a, [b"two"], [r1, r2])
        os.close(r1)
        os.close(r2)
        msg, fd = recv_message(b)
        assert msg == b"two" and fd is not None
        os.write(w1, b"x")
        assert os.read(fd, 1) == b"x"          # the first fd: r1's pipe
        os.close(fd)
        os.close(w1)
        # The copy of r2 that came was closed: nothing reads r2's pipe now.
        try:
            with pytest.raises(BrokenPipeError):
                os.write(w2, b"x")
        finally:
            os.close(w2)
        a.send(b"none")
        assert recv_message(b) == (b"none", None)
