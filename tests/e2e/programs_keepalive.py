"""A connection that keeps alive, its times set after SO_KEEPALIVE (tests/e2e/twin.py).

Commands on stdin, one answer line each on stdout:
  connect HOST PORT   connect; SO_KEEPALIVE on, then TCP_KEEPIDLE 1, KEEPINTVL 1, KEEPCNT 2
  recv                a blocking recv (at most 60 s): the data, "eof" or the errno name
"""

import errno
import socket
import sys
import time

conn = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "connect":
        conn = socket.create_connection((cmd[1], int(cmd[2])), timeout=10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
        print("ok", flush=True)
    elif cmd[0] == "recv":
        conn.settimeout(60)
        start = time.monotonic()
        try:
            data = conn.recv(100)
            answer = "eof" if not data else "data"
        except OSError as exc:    # a socket timeout has no errno; ETIMEDOUT has
            answer = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "timeout"
        print(answer, "within_10s" if time.monotonic() - start < 10 else "late", flush=True)
