"""Scoped link-local addresses against the Linux kernel over TAP: the socket
API reaches the kernel's own fe80:: address on the TAP as ``fe80::...%ftap0``
(TCP to a kernel listener, UDP echo, an ICMPv6 ping socket), and the kernel
sees our link-local address as the peer. Inside the test's own namespace."""

from __future__ import annotations

import socket as std
import subprocess
import sys
from collections.abc import Callable

from netns import Netns, kernel_tap
from test_ipv6_kernel import enable_ipv6, kernel_link_local, link_local, ready, stack6

from femtotcp.api.socket import network_for
from femtotcp.api.socket import socket as fsocket
from femtotcp.wire import ip_str

PORT = 7007

#: Kernel side: a TCP server that answers "peer <host> <scope>" then echoes, and a
#: UDP echo, both on [::]:PORT.
KERNEL_SERVERS = f"""
import socket, threading
def udp():
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.bind(("::", {PORT}))
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data, peer)
threading.Thread(target=udp, daemon=True).start()
srv = socket.socket(socket.AF_INET6)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", {PORT}))
srv.listen()
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    conn.sendall(f"peer {{peer[0]}} {{peer[3]}}\\n".encode())
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()
"""


def test_link_local_with_scope_against_the_kernel(
        ns: Netns, require_program: Callable[[str], str]) -> None:
    enable_ipv6(ns)
    dev = kernel_tap(ns, "ftap0", "192.0.2.1/24")
    server = ns.popen(sys.executable, "-c", KERNEL_SERVERS, stdout=subprocess.PIPE,
                      text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    with stack6(dev, static=None) as (rt, stack):
        ours = rt.call(link_local, stack)
        assert rt.wait_until(ready(stack, ours), 10)
        kernel_ll = kernel_link_local(ns, "ftap0")
        kernel_index = int(ns.ip("-o", "link", "show", "ftap0").stdout.split(":")[0])
        net = network_for(stack, rt)
        assert net.if_nametoindex("ftap0") == 2
        sa = net.getaddrinfo(f"{kernel_ll}%ftap0", PORT, 0, std.SOCK_STREAM)[0][4]
        assert tuple(sa) == (kernel_ll, PORT, 0, 2)

        # TCP: the kernel sees our link-local address on its TAP's index.
        with fsocket(std.AF_INET6, std.SOCK_STREAM, network=net) as cli:
            cli.settimeout(10)
            cli.connect((f"{kernel_ll}%ftap0", PORT))
            assert cli.getpeername() == (kernel_ll, PORT, 0, 2)
            assert cli.getsockname()[0] == ip_str(ours) and cli.getsockname()[3] == 2
            with cli.makefile("rb") as f:
                assert f.readline().decode().split() == ["peer", ip_str(ours),
                                                         str(kernel_index)]
                payload = bytes(range(256)) * 1000
                cli.sendall(payload)
                cli.shutdown(std.SHUT_WR)
                assert f.read() == payload

        # UDP: a scoped sendto, and recvfrom names the kernel with our scope.
        with fsocket(std.AF_INET6, std.SOCK_DGRAM, network=net) as u:
            u.settimeout(10)
            u.sendto(b"hello over fe80", (kernel_ll, PORT, 0, 2))
            assert u.recvfrom(100) == (b"hello over fe80", (kernel_ll, PORT, 0, 2))

        # ICMPv6 ping socket to the kernel's link-local address.
        with fsocket(std.AF_INET6, std.SOCK_DGRAM, std.IPPROTO_ICMPV6, network=net) as p:
            p.settimeout(10)
            p.sendto(bytes((128, 0, 0, 0, 0, 0, 0, 1)) + b"scoped", (f"{kernel_ll}%2", 0))
            reply, src = p.recvfrom(100)
            assert reply[0] == 129 and reply[8:] == b"scoped"
            assert src == (kernel_ll, 0, 0, 2)
        assert rt.call(lambda: stack.counters.get("stack.internal_error", 0)) == 0
