"""Name lookups as a program sees them (tests/e2e/twin.py).

Commands on stdin, one answer line each on stdout:
  ex NAME      socket.gethostbyname_ex(NAME), or the error
  canon NAME   the canonical name getaddrinfo(AI_CANONNAME) gives, or the error
"""

import socket
import sys

EAI = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}


def error(exc: OSError) -> str:
    return f"{type(exc).__name__}:{EAI.get(exc.errno, exc.errno)}"


for line in sys.stdin:
    cmd, name = line.split()
    try:
        if cmd == "ex":
            host, aliases, addrs = socket.gethostbyname_ex(name)
            print(host, ",".join(aliases) or "-", ",".join(addrs), flush=True)
        else:
            infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                                       socket.AI_CANONNAME)
            print(infos[0][3] or "-", flush=True)
    except OSError as exc:
        print(error(exc), flush=True)
