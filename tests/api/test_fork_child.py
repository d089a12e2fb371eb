"""A forked child of a program whose stack runs in its own process (``os.fork``,
multiprocessing's fork, a pre-forking server): the stack stays with the
parent. The child's new sockets are the kernel's, and the stack sockets it
inherited end at once (EOF, EPIPE, a listener's EINVAL) instead of hanging
or taking the parent's connections; the parent's sockets go on as before."""

from __future__ import annotations

import json
import os
import select
import socket as std

from apilan import Lan

from femtotcp.api import patch as fpatch


def _child(listener: std.socket, conn: std.socket, report: int) -> None:
    out: dict[str, object] = {}
    try:
        new = std.socket(std.AF_INET, std.SOCK_STREAM)
        out["new"] = type(new).__module__
        new.close()
        conn.settimeout(5)
        out["recv"] = conn.recv(10).decode()
        try:
            conn.sendall(b"from the child")
            out["send"] = "sent"
        except OSError as exc:
            out["send"] = exc.errno
        listener.settimeout(5)
        try:
            listener.accept()
            out["accept"] = "accepted"
        except OSError as exc:
            out["accept"] = type(exc).__name__
    finally:
        os.write(report, json.dumps(out).encode())
        os._exit(0)


def test_forked_child_of_an_in_process_program(lan: Lan) -> None:
    server = lan.net_b.create_server(("0.0.0.0", 7300))
    with fpatch.patch(lan.net_a):
        listener = std.create_server(("0.0.0.0", 7301))
        conn = std.create_connection((lan.ip_b, 7300), timeout=5)
        peer, _ = server.accept()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(listener, conn, w)
        os.close(w)
        ready, _, _ = select.select([r], [], [], 30)
        assert ready, "the child neither ended nor reported"
        report = json.loads(os.read(r, 4096))
        os.close(r)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert report == {"new": "socket", "recv": "", "send": 32, "accept": "OSError"}
        # The parent's sockets are untouched: data both ways, a new connection.
        peer.sendall(b"to the parent")
        assert conn.recv(100) == b"to the parent"
        conn.sendall(b"from the parent")
        assert peer.recv(100) == b"from the parent"
        client = lan.net_b.create_connection((lan.ip_a, 7301), timeout=5)
        accepted, _ = listener.accept()
        accepted.sendall(b"ok")
        assert client.recv(10) == b"ok"
        conn.close()
        assert peer.recv(10) == b""          # (the child's copies do not keep it open)
        for s in (accepted, client, listener, peer):
            s.close()
    server.close()
