"""A connected UDP socket that reports what ICMP errors do to it (tests/e2e/twin.py).

Commands on stdin, one answer line each on stdout:
  open PEER PORT     connect a new UDP socket, send "knock", answer its local port
  do OP [OP ...]     run each OP on that socket (so_error: getsockopt(SO_ERROR);
                     recv: a recv with a 1 s timeout; send: send one byte) after
                     waiting up to 5 s for it to become readable; answer the results

Every datagram and ICMP error the socket will get was sent before the ``do``
line and the wait for readability saw the first of them, so a recv's timeout
only bounds the wait for nothing more (the second recv of a soft error's
"recv recv"): 1 s of silence is that answer, on Linux and on femtotcp alike.
"""

import errno
import select
import socket
import sys

RECV_TIMEOUT = 1.0


def name(err: int) -> str:
    return errno.errorcode.get(err, str(err)) if err else "0"


sock = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        if sock is not None:
            sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((cmd[1], int(cmd[2])))
        sock.send(b"knock")
        print(sock.getsockname()[1], flush=True)
    elif cmd[0] == "do":
        select.select([sock], [], [], 5.0)
        out = []
        for op in cmd[1:]:
            try:
                if op == "so_error":
                    out.append(name(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
                elif op == "recv":
                    sock.settimeout(RECV_TIMEOUT)
                    out.append("data:" + sock.recv(100).decode())
                elif op == "send":
                    sock.send(b"x")
                    out.append("sent")
            except OSError as exc:    # a socket timeout has no errno
                out.append(name(exc.errno) if exc.errno else "timeout")
        print(" ".join(out), flush=True)
