"""Socket calls whose answers Linux defines closely (tests/e2e/twin.py): errors
of sends and connects, the one pending error (sk_err) that recv, send and
SO_ERROR share, the wildcard destination, broadcasts and cut datagrams.

Commands on stdin, one JSON line back each: ``run PEER`` runs the cases
against PEER's services (tests/e2e/test_socket_errors_twin.py: TCP echo 7,
TCP 13 closes at once, TCP 21 resets at once, UDP echo 7); ``urgent PEER
PORT`` sends b"data", b"!" with MSG_OOB and b"more" to PEER:PORT;
``urgent_in PEER PORT INLINE`` receives urgent data from PEER:PORT.
"""

import errno
import json
import select
import socket
import sys
import time


def outcome(fn):
    try:
        value = fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, repr(exc))
    if isinstance(value, bytes):
        return f"bytes:{value.hex()}"
    return value


def attempt(fn):
    """The errno name of what ``fn`` raised, or "ok"."""
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, repr(exc))
    return "ok"


def run(peer):
    out = {}
    tcp = socket.SOCK_STREAM

    def fresh():
        return socket.socket(socket.AF_INET, tcp)

    out["send on a fresh socket"] = attempt(lambda: fresh().send(b"x"))
    out["sendall on a fresh socket"] = attempt(lambda: fresh().sendall(b"x"))
    out["sendto on a fresh socket"] = attempt(lambda: fresh().sendto(b"x", (peer, 7)))

    def listening_send():
        s = fresh()
        s.bind(("0.0.0.0", 0))
        s.listen()
        s.send(b"x")
    out["send on a listening socket"] = attempt(listening_send)

    def nonblocking():
        s = fresh()
        s.setblocking(False)
        first = s.connect_ex((peer, 7))
        select.select([], [s], [], 10)
        got = [first, s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)]
        got += [s.connect_ex((peer, 7)), s.connect_ex((peer, 7))]
        s.close()
        return [errno.errorcode.get(e, e) for e in got]
    out["non-blocking connect, then connect twice"] = outcome(nonblocking)

    def with_timeout():
        s = socket.create_connection((peer, 7), timeout=10)
        got = [attempt(lambda: s.connect((peer, 7))), attempt(lambda: s.connect((peer, 7)))]
        s.close()
        return got
    out["connect with a timeout, then connect twice"] = outcome(with_timeout)

    def blocking():
        s = fresh()
        s.connect((peer, 7))
        got = attempt(lambda: s.connect((peer, 7)))
        s.close()
        return got
    out["blocking connect, then connect"] = outcome(blocking)

    def taken_four_tuple():
        a, b = fresh(), fresh()
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        a.bind(("0.0.0.0", 0))
        a.connect((peer, 7))
        b.bind(("0.0.0.0", a.getsockname()[1]))
        got = attempt(lambda: b.connect((peer, 7)))
        a.close()
        b.close()
        return got
    out["connect on a taken 4-tuple"] = outcome(taken_four_tuple)

    def shut_both():
        s = socket.create_connection((peer, 7), timeout=10)
        s.shutdown(socket.SHUT_RDWR)
        got = [outcome(lambda: s.recv(10)), attempt(lambda: s.send(b"x"))]
        s.close()
        return got
    out["shutdown(SHUT_RDWR): recv, send"] = outcome(shut_both)

    def shut_read():
        # Linux goes on receiving after SHUT_RD: a read takes what is queued,
        # else gives EOF at once; what arrives later is read too.
        s = socket.create_connection((peer, 7), timeout=10)
        s.sendall(b"before")
        time.sleep(0.3)
        s.shutdown(socket.SHUT_RD)
        got = [outcome(lambda: s.recv(100)), outcome(lambda: s.recv(100))]
        s.sendall(b"after")
        time.sleep(0.3)
        buf = bytearray(3)
        got += [outcome(lambda: s.recv_into(buf)), buf.decode(), outcome(lambda: s.recv(100)),
                outcome(lambda: s.recv(100)), attempt(lambda: s.send(b"x"))]
        s.close()
        return got
    out["shutdown(SHUT_RD): recv, recv, then the peer's echo"] = outcome(shut_read)

    def over_time_wait(first_reuses):
        # Our close comes first: our side of the connection is in TIME_WAIT.
        s = socket.socket()
        if first_reuses:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.connect((peer, 7))
        port = s.getsockname()[1]
        s.close()
        time.sleep(0.3)
        b = socket.socket()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        got = attempt(lambda: b.bind(("0.0.0.0", port)))
        b.close()
        return got
    for first in (False, True):
        out[f"SO_REUSEADDR bind over TIME_WAIT, the old socket's SO_REUSEADDR {first}"] = \
            outcome(lambda: over_time_wait(first))  # noqa: B023
    out["accept on a UDP socket"] = attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).accept())

    out["UDP send with MSG_OOB"] = attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
            b"u", socket.MSG_OOB, (peer, 7)))

    def again_blocking():
        s = fresh()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = [attempt(lambda: s.connect((peer, 1))), attempt(lambda: s.connect((peer, 7)))]
        s.sendall(b"again")
        got += [outcome(lambda: s.recv(10)),
                s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)]
        s.close()
        return got
    out["refused, then connect again (blocking)"] = outcome(again_blocking)

    def again_with_timeout():
        s = fresh()
        s.settimeout(10)
        got = [attempt(lambda p=port: s.connect((peer, p))) for port in (1, 7, 7)]
        s.close()
        return got
    out["refused, then connect again twice (timeout)"] = outcome(again_with_timeout)

    def again_nonblocking():
        s = fresh()
        s.setblocking(False)
        got = [s.connect_ex((peer, 1))]
        select.select([], [s], [], 10)
        got += [s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), s.connect_ex((peer, 7)),
                s.connect_ex((peer, 7))]
        select.select([], [s], [], 10)
        got += [s.connect_ex((peer, 7)), s.connect_ex((peer, 7))]
        s.close()
        return [errno.errorcode.get(e, e) for e in got]
    out["refused, then connect again (non-blocking)"] = outcome(again_nonblocking)

    def closed_by_peer():
        s = socket.create_connection((peer, 13), timeout=10)
        got = [outcome(lambda: s.recv(10)), attempt(lambda: s.send(b"x"))]
        time.sleep(0.5)                   # the peer's RST for the byte arrives
        got += [attempt(lambda: s.send(b"x")), outcome(lambda: s.recv(10)),
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)]
        s.close()
        return got
    out["FIN, send, RST: send, recv, SO_ERROR"] = outcome(closed_by_peer)

    def reset(first):
        s = fresh()
        s.connect((peer, 21))             # blocking: done before the RST can come
        time.sleep(0.5)                   # the peer's RST arrives
        got = []
        for what in first:
            if what == "so_error":
                got.append(errno.errorcode.get(
                    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0))
            elif what == "recv":
                got.append(outcome(lambda: s.recv(10)))
            else:
                got.append(attempt(lambda: s.send(b"x")))
        s.close()
        return got
    out["RST: recv, recv, send, SO_ERROR"] = outcome(lambda: reset(["recv", "recv", "send", "so_error"]))
    out["RST: SO_ERROR, recv, SO_ERROR"] = outcome(lambda: reset(["so_error", "recv", "so_error"]))
    out["RST: send, SO_ERROR, recv"] = outcome(lambda: reset(["send", "so_error", "recv"]))

    def wildcard_tcp():
        lst = fresh()
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        port = lst.getsockname()[1]
        s = socket.create_connection(("0.0.0.0", port), timeout=10)
        peer_addr = s.getpeername()[0]
        conn, _ = lst.accept()
        s.sendall(b"to the wildcard")
        got = [peer_addr, outcome(lambda: conn.recv(100))]
        s.close()
        conn.close()
        lst.close()
        return got
    out["connect to 0.0.0.0"] = outcome(wildcard_tcp)
    out["connect to 0.0.0.0, nothing listening"] = attempt(
        lambda: socket.create_connection(("0.0.0.0", 1), timeout=10))

    def wildcard_udp():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.sendto(b"wild", ("0.0.0.0", rx.getsockname()[1]))
        data, addr = rx.recvfrom(100)
        return [outcome(lambda: data), addr[0]]
    out["sendto 0.0.0.0"] = outcome(wildcard_udp)

    bcast = peer.rsplit(".", 1)[0] + ".255"

    def udp():
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    out["sendto a subnet broadcast"] = attempt(lambda: udp().sendto(b"b", (bcast, 9)))
    out["connect to a subnet broadcast"] = attempt(lambda: udp().connect((bcast, 9)))

    def allowed():
        u = udp()
        u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        u.sendto(b"b", (bcast, 9))
    out["sendto a subnet broadcast with SO_BROADCAST"] = attempt(allowed)

    def cut(how):
        u = udp()
        u.settimeout(10)
        u.sendto(bytes(range(100)), (peer, 7))
        if how == "recvmsg":
            data, _anc, flags, _addr = u.recvmsg(10)
            return [outcome(lambda: data), flags & socket.MSG_TRUNC != 0]
        if how == "recvmsg whole":
            data, _anc, flags, _addr = u.recvmsg(1000)
            return [len(data), flags & socket.MSG_TRUNC != 0]
        if how == "recv MSG_TRUNC":
            return len(u.recv(10, socket.MSG_TRUNC))
        buf1, buf2 = bytearray(4), bytearray(4)
        n, _anc, flags, _addr = u.recvmsg_into([buf1, buf2])
        return [n, (buf1 + buf2).hex(), flags & socket.MSG_TRUNC != 0]
    for how in ("recvmsg", "recvmsg whole", "recv MSG_TRUNC", "recvmsg_into"):
        out[f"a 100-byte datagram: {how}"] = outcome(lambda: cut(how))  # noqa: B023
    return out


def urgent(peer, port):
    """b"data", then b"!" sent with MSG_OOB, then b"more" (the peer reads them)."""
    s = socket.create_connection((peer, port), timeout=10)
    s.sendall(b"data")
    sent = s.send(b"!", socket.MSG_OOB)
    s.sendall(b"more")
    time.sleep(1)
    s.close()
    return sent


def urgent_in(peer, port, inline):
    """Connect to PEER:PORT, whose side sends b"ab", b"!" with MSG_OOB and b"cd"
    and closes; what the urgent byte looks like here (SO_OOBINLINE with
    ``inline`` "1"): poll's POLLPRI, select's exceptional set, SIOCATMARK,
    where a read stops, recv(MSG_OOB), and the rest of the stream."""
    import fcntl
    import struct

    def atmark():
        return struct.unpack("i", fcntl.ioctl(s.fileno(), 0x8905, b"\0" * 4))[0]  # SIOCATMARK

    s = socket.create_connection((peer, port), timeout=10)
    if inline == "1":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    p = select.poll()
    p.register(s, select.POLLPRI)
    out = {"POLLPRI": bool(p.poll(10000))}
    out["exceptional"] = bool(select.select([], [], [s], 0)[2])
    out["at the mark, before"] = atmark()
    out["recv"] = outcome(lambda: s.recv(100))
    out["at the mark, after"] = atmark()
    out["recv MSG_OOB"] = outcome(lambda: s.recv(1, socket.MSG_OOB))
    out["recv MSG_OOB again"] = outcome(lambda: s.recv(1, socket.MSG_OOB))
    rest = b""
    while data := s.recv(100):
        rest += data
    out["the rest"] = rest.decode()
    s.close()
    return out


for line in sys.stdin:
    cmd = line.split()
    if cmd and cmd[0] == "run":
        print(json.dumps(run(cmd[1])), flush=True)
    elif cmd and cmd[0] == "urgent":
        print(json.dumps(urgent(cmd[1], int(cmd[2]))), flush=True)
    elif cmd and cmd[0] == "urgent_in":
        print(json.dumps(urgent_in(cmd[1], int(cmd[2]), cmd[3])), flush=True)
