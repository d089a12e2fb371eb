"""TCP closes whose effect the peer sees (tests/e2e/twin.py).

Commands on stdin, one answer line each on stdout:
  listen PORT [BACKLOG]   a listening socket on PORT
  accept                  accept one connection
  wait_data               wait until the accepted connection has data to read
  read                    read what the accepted connection has (up to 100 bytes)
  close                   close the accepted connection (unread data stays unread)
  linger0                 SO_LINGER on with a zero timeout on the accepted connection
  close_listener          close the listening socket (queued connections unaccepted)
"""

import select
import socket
import struct
import sys

lst = None
conn = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "listen":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("0.0.0.0", int(cmd[1])))
        lst.listen(int(cmd[2]) if len(cmd) > 2 else 5)
    elif cmd[0] == "accept":
        conn, _ = lst.accept()
    elif cmd[0] == "wait_data":
        select.select([conn], [], [], 10)
    elif cmd[0] == "read":
        conn.recv(100)
    elif cmd[0] == "close":
        conn.close()
    elif cmd[0] == "linger0":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif cmd[0] == "close_listener":
        lst.close()
    print("ok", flush=True)
