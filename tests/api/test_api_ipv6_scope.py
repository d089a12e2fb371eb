"""Scoped link-local IPv6 addresses as Linux has them (RFC 4007), in memory.

Stack A has two interfaces, ``a1`` (index 2) and ``a2`` (index 3), each on
its own switch; behind ``a1`` is stack B and behind ``a2`` stack C, and B and
C hold the *same* link-local address fe80::bc. Only the scope id (``%a1``,
``%3``, or the sockaddr's scope_id) says which of them a program means, so
every test that reaches one of them proves the scope picked the interface.
The errors are the kernel's (checked on Linux 6 in a namespace with two veth
pairs): connect to a link-local address without a scope is EINVAL, a scope no
interface has is ENETUNREACH (connect, sendto) or ENODEV (bind), a link-local
bind needs a scope, and ping sockets want one for every send."""

from __future__ import annotations

import errno
import socket as std
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from femtotcp.api.socket import Network, network_for
from femtotcp.api.socket import socket as fsocket
from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack
from femtotcp.wire import ip_bytes

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "ipv6", "icmp6"]
A1, A2, BC = "fe80::a1", "fe80::a2", "fe80::bc"


@dataclass
class Links:
    a: Network
    b: Network
    c: Network


def _stack(name: str) -> Stack:
    return Stack(name, modules=MODULES,
                 config=StackConfig(ipv6_dad_transmits=0, ipv6_link_local=False))


@pytest.fixture
def links() -> Iterator[Links]:
    rt = Runtime()
    sw1, sw2 = Switch(rt), Switch(rt)
    a, b, c = _stack("a"), _stack("b"), _stack("c")
    a1 = a.add_interface(sw1.port("a1"), mac="02:00:00:00:07:a1")
    a2 = a.add_interface(sw2.port("a2"), mac="02:00:00:00:07:a2")
    bi = b.add_interface(sw1.port("b0"), mac="02:00:00:00:07:0b")
    ci = c.add_interface(sw2.port("c0"), mac="02:00:00:00:07:0c")
    for st, iface, addr in ((a, a1, A1), (a, a2, A2), (b, bi, BC), (c, ci, BC)):
        assert st.ipv6 is not None
        st.ipv6.add_address(iface, ip_bytes(addr), 64, "link")
    for st in (a, b, c):
        rt.add_stack(st)
    rt.start()
    for st in (a, b, c):
        rt.call(st.start)
    try:
        yield Links(network_for(a, rt), network_for(b, rt), network_for(c, rt))
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


def s6(net: Network, kind: int = std.SOCK_STREAM, proto: int = 0) -> Any:
    """An AF_INET6 socket on ``net`` (in-process, or an attached program's:
    tests/api/test_remote.py runs the tests below with A attached)."""
    sock = net.socket(std.AF_INET6, kind, proto)
    sock.settimeout(10)
    return sock


def test_interface_indexes_are_linux_like(links: Links) -> None:
    """Loopback is 1 ("lo"), devices from 2, as ``if_nameindex`` shows them
    and ``ctl addr`` prints them."""
    net = links.a
    assert net.if_nameindex() == [(1, "lo"), (2, "a1"), (3, "a2")]
    assert [i.index for i in net.stack.interfaces] == [2, 3]
    from femtotcp.control.gather import gather_addr
    shown = gather_addr(SimpleNamespace(stack=net.stack, services=[]))["interfaces"]
    assert [(i["index"], i["name"]) for i in shown] == [(2, "a1"), (3, "a2")]
    assert net.if_nametoindex("a2") == 3 and net.if_indextoname(2) == "a1"
    with pytest.raises(OSError, match="no interface"):
        net.if_nametoindex("eth9")
    with pytest.raises(OSError) as info:
        net.if_indextoname(9)
    assert info.value.errno == errno.ENXIO


def test_getaddrinfo_reads_scopes_as_glibc(links: Links) -> None:
    """``%ifname`` and ``%index`` become the sockaddr's scope_id; a name on a
    global address, an unknown name or an empty scope is EAI_NONAME. The
    same questions with ``lo`` (index 1 on both) get glibc's own answers."""
    net = links.a

    def sa(host: str) -> tuple[object, ...]:
        return tuple(net.getaddrinfo(host, 80, 0, std.SOCK_STREAM)[0][4])
    assert sa("fe80::bc%a2") == ("fe80::bc", 80, 0, 3)
    assert sa("fe80::bc%2") == ("fe80::bc", 80, 0, 2)
    assert sa("ff02::1%a1") == ("ff02::1", 80, 0, 2)
    for bad in ("fe80::bc%eth9", "fe80::bc%", "2001:db8::1%a1"):
        with pytest.raises(std.gaierror) as info:
            net.getaddrinfo(bad, 80)
        assert info.value.errno == std.EAI_NONAME, bad
    # Oracle: glibc on this machine, where "lo" is index 1 as on the stack.
    for host in ("fe80::1%lo", "fe80::1%1", "fe80::1%99", "ff02::1%lo", "2001:db8::1%5",
                 "fe80::1%nosuch", "2001:db8::1%lo", "::1%lo", "fe80::1%"):
        try:
            want: object = [tuple(r[4]) for r in std.getaddrinfo(host, 80, 0, std.SOCK_STREAM)]
        except std.gaierror as exc:
            want = exc.errno
        try:
            got: object = [tuple(r[4]) for r in net.getaddrinfo(host, 80, 0, std.SOCK_STREAM)]
        except std.gaierror as exc:
            got = exc.errno
        assert got == want, host


def _listener(net: Network) -> tuple[Any, int]:
    srv = s6(net)
    srv.bind(("::", 0))
    srv.listen()
    return srv, srv.getsockname()[1]


def test_tcp_connect_goes_out_the_scoped_interface(links: Links) -> None:
    """The same fe80::bc is B through a1 and C through a2; the names on both
    ends carry the scope (the index of the interface on each stack)."""
    srv_b, port_b = _listener(links.b)
    srv_c, port_c = _listener(links.c)
    with srv_b, srv_c:
        for target, srv, want_scope in ((("fe80::bc", port_b, 0, 2), srv_b, 2),
                                        (("fe80::bc%a2", port_c), srv_c, 3),
                                        (("fe80::bc%3", port_c), srv_c, 3)):
            with s6(links.a) as cli:
                cli.connect(target)
                conn, peer = srv.accept()
                with conn:
                    local = cli.getsockname()
                    assert cli.getpeername() == ("fe80::bc", target[1], 0, want_scope)
                    assert local == ((A1 if want_scope == 2 else A2), local[1], 0, want_scope)
                    # On B and C the one interface has index 2.
                    assert peer == (local[0], local[1], 0, 2)
                    assert conn.getsockname() == ("fe80::bc", target[1], 0, 2)
                    cli.sendall(b"ping")
                    assert conn.recv(4) == b"ping"
                    conn.sendall(b"pong")
                    assert cli.recv(4) == b"pong"


def test_accepting_on_the_second_interface(links: Links) -> None:
    """A listener on A bound to fe80::a2 on a2 (scope 3) takes C's connection;
    the accepted socket's names carry a2's index, and its replies leave by a2
    (C, behind a2 only, gets them)."""
    with s6(links.a) as srv, s6(links.c) as cli:
        srv.bind((A2, 0, 0, 3))
        srv.listen()
        port = srv.getsockname()[1]
        assert srv.getsockname() == (A2, port, 0, 3)
        cli.connect((A2, port, 0, 2))
        conn, peer = srv.accept()
        with conn:
            assert peer == ("fe80::bc", cli.getsockname()[1], 0, 3)
            assert conn.getsockname() == (A2, port, 0, 3)
            conn.sendall(b"via a2")
            assert cli.recv(6) == b"via a2"


def test_scope_errors_are_the_kernels(links: Links) -> None:
    net = links.a
    srv, port = _listener(links.b)
    with srv:
        with s6(net) as cli:                      # no scope: EINVAL (tcp_v6_connect)
            with pytest.raises(OSError) as info:
                cli.connect(("fe80::bc", port))
            assert info.value.errno == errno.EINVAL
        with s6(net) as cli:                      # no interface 99: ENETUNREACH
            with pytest.raises(OSError) as info:
                cli.connect(("fe80::bc", port, 0, 99))
            assert info.value.errno == errno.ENETUNREACH
        with s6(net, std.SOCK_DGRAM) as u:        # connected UDP wants one too
            with pytest.raises(OSError) as info:
                u.connect(("fe80::bc", port))
            assert info.value.errno == errno.EINVAL
        for kind in (std.SOCK_STREAM, std.SOCK_DGRAM):
            with s6(net, kind) as s:              # a link-local bind needs a scope
                with pytest.raises(OSError) as info:
                    s.bind((A1, 0))
                assert info.value.errno == errno.EINVAL
            with s6(net, kind) as s:              # ... of an interface that exists
                with pytest.raises(OSError) as info:
                    s.bind((A1, 0, 0, 99))
                assert info.value.errno == errno.ENODEV
            with s6(net, kind) as s:              # ... and holds the address
                with pytest.raises(OSError) as info:
                    s.bind((A1, 0, 0, 3))
                assert info.value.errno == errno.EADDRNOTAVAIL
            with s6(net, kind) as s:
                s.bind((f"{A1}%a1", 0))
                assert s.getsockname()[::2] == (A1, 0) and s.getsockname()[3] == 2
        # A socket bound on a1 connects through a1 without a scope, and not through a2.
        with s6(net) as cli:
            cli.bind((A1, 0, 0, 2))
            with pytest.raises(OSError) as info:
                cli.connect(("fe80::bc", port, 0, 3))
            assert info.value.errno == errno.EINVAL
        with s6(net) as cli:
            cli.bind((A1, 0, 0, 2))
            cli.connect(("fe80::bc", port))
            conn, _peer = srv.accept()
            conn.close()
        # A global address ignores a scope (Linux shows scope_id 0 for it).
        with s6(net, std.SOCK_DGRAM) as u:
            u.bind(("::", 0, 0, 2))
            assert u.getsockname()[3] == 0


def test_udp_sendto_and_recvfrom_carry_the_scope(links: Links) -> None:
    with s6(links.b, std.SOCK_DGRAM) as ub, s6(links.c, std.SOCK_DGRAM) as uc, \
            s6(links.a, std.SOCK_DGRAM) as ua:
        ub.bind(("::", 5300))
        uc.bind(("::", 5300))
        ua.bind(("::", 0))
        ua.sendto(b"to C", ("fe80::bc%a2", 5300))
        data, src = uc.recvfrom(100)
        assert data == b"to C" and src == (A2, ua.getsockname()[1], 0, 2)
        uc.sendto(b"back", src)                 # the address recvfrom gave, as is
        data, src = ua.recvfrom(100)
        assert data == b"back" and src == ("fe80::bc", 5300, 0, 3)
        ua.sendto(b"to B", ("fe80::bc", 5300, 0, 2))
        data, src = ub.recvfrom(100)
        assert data == b"to B" and src[0] == A1
        with pytest.raises(OSError) as info:    # sendto a scope no interface has
            ua.sendto(b"x", ("fe80::bc", 5300, 0, 99))
        assert info.value.errno == errno.ENETUNREACH
        # Connected through a2: send() goes there, names show scope 3.
        ua.connect(("fe80::bc", 5300, 0, 3))
        assert ua.getpeername() == ("fe80::bc", 5300, 0, 3)
        assert ua.getsockname()[0] == A2 and ua.getsockname()[3] == 3
        ua.send(b"again C")
        assert uc.recvfrom(100)[0] == b"again C"


def test_ping_socket_needs_and_uses_a_scope(links: Links) -> None:
    request = bytes((128, 0, 0, 0, 0, 0, 0, 7)) + b"scope"
    with s6(links.a, std.SOCK_DGRAM, std.IPPROTO_ICMPV6) as ping:
        with pytest.raises(OSError) as info:
            ping.sendto(request, ("fe80::bc", 0))
        assert info.value.errno == errno.EINVAL
        for scope in (2, 3):
            ping.sendto(request, ("fe80::bc", 0, 0, scope))
            reply, src = ping.recvfrom(100)
            assert reply[0] == 129 and reply[8:] == b"scope"
            assert src == ("fe80::bc", 0, 0, scope)
        b_stack, c_stack = links.b.stack, links.c.stack
        got = [links.b.call(lambda s=s: s.counters["icmp6.echo_replied"])
               for s in (b_stack, c_stack)]
        assert got == [1, 1]


def test_patched_socket_module_knows_the_stacks_interfaces(links: Links) -> None:
    """Under ``patch``, the socket module's interface names and indexes are
    the stack's, so a program builds a scoped address from them, and
    ``has_dualstack_ipv6``/``create_server(dualstack_ipv6=True)`` run on
    the stack."""
    from femtotcp.api.patch import scoped
    srv, port = _listener(links.c)
    with srv, scoped(links.a):
        assert std.if_nameindex() == [(1, "lo"), (2, "a1"), (3, "a2")]
        assert std.if_nametoindex("a2") == 3 and std.if_indextoname(3) == "a2"
        assert std.has_dualstack_ipv6()
        with std.create_connection((f"fe80::bc%{std.if_indextoname(3)}", port),
                                   timeout=10) as cli:
            assert isinstance(cli, fsocket) and cli.getpeername()[3] == 3
            conn, _peer = srv.accept()
            conn.close()
        with std.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True) as lst:
            assert isinstance(lst, fsocket)
            assert lst.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 0
    assert std.if_nametoindex("lo") == 1        # the kernel's again


def test_no_dualstack_without_ipv6() -> None:
    from femtotcp.api.patch import scoped
    rt = Runtime()
    stack = Stack("v4", modules=["arp", "ipv4", "udp", "tcp"])
    try:
        with scoped(Network(stack, rt)):
            assert not std.has_dualstack_ipv6()
            with pytest.raises(ValueError, match="dualstack_ipv6 not supported"):
                std.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True)
    finally:
        rt.close()
