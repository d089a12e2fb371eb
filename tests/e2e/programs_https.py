"""The stdlib's HTTPS recipe: http.server with its *listening* socket wrapped
(tests/e2e/twin.py). Arguments: CERT KEY DIRECTORY. On the first line of stdin
it starts serving on port 4443 and answers "serving"."""

import functools
import http.server
import ssl
import sys
import threading

cert, key, directory = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 4443), handler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
sys.stdin.readline()
threading.Thread(target=httpd.serve_forever, daemon=True).start()
print("serving", flush=True)
sys.stdin.readline()          # until the driver is done
