"""An HTTP transfer between two stacks in one process: http.server on one,
urllib on the other, both unmodified stdlib code.

Each side runs under ``femtotcp.api.patch.scoped`` for its own stack (the
patch is per thread there), so the two stacks can share one process. Used by
``femtotcp demo`` and by the API tests.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import urllib.request
from typing import Any

from femtotcp.wire import ip_str

CHUNK = 256 * 1024


def _payload_block() -> bytes:
    """A fixed pseudo-random block; the body repeats it (checkable, not compressible)."""
    seed = b"femtotcp demo"
    out = bytearray()
    while len(out) < CHUNK:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:CHUNK])


def expected_body(nbytes: int) -> bytes:
    block = _payload_block()
    reps, rest = divmod(nbytes, len(block))
    return block * reps + block[:rest]


def serve_and_fetch(runtime: Any, server_stack: Any, client_stack: Any, nbytes: int,
                    port: int = 8080, timeout: float = 60.0) -> dict[str, Any]:
    """Serve ``nbytes`` from ``server_stack`` with http.server and fetch them
    with urllib from ``client_stack``; both stacks are driven by ``runtime``.

    Returns ``{"bytes", "seconds", "MB/s", "status", "ok", "url"}``; ``ok``
    says the body arrived byte-exact."""
    from femtotcp.api.patch import scoped  # the run face: local imports
    from femtotcp.api.socket import network_for
    server_net = network_for(server_stack, runtime)
    client_net = network_for(client_stack, runtime)
    block = _payload_block()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(nbytes))
            self.send_header("Connection", "close")
            self.end_headers()
            left = nbytes
            while left > 0:
                piece = block[:min(left, len(block))]
                self.wfile.write(piece)
                left -= len(piece)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with scoped(server_net):
        server = http.server.ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="demo-http-server", daemon=True)
    thread.start()
    addr = runtime.call(lambda: server_stack.interfaces[0].primary_ipv4())
    url = f"http://{ip_str(addr)}:{server.server_address[1]}/data"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        digest = hashlib.sha256()
        received = 0
        start = time.monotonic()
        with scoped(client_net):
            with opener.open(url, timeout=timeout) as resp:
                status = resp.status
                while True:
                    data = resp.read(CHUNK)
                    if not data:
                        break
                    digest.update(data)
                    received += len(data)
        seconds = max(time.monotonic() - start, 1e-9)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    ok = received == nbytes and digest.digest() == hashlib.sha256(
        expected_body(nbytes)).digest()
    return {"bytes": received, "seconds": seconds, "MB/s": received / seconds / 1e6,
            "status": status, "ok": ok, "url": url}
