"""AF_INET6 stream and datagram sockets over the stack (real-time runtime, two
stacks on an in-memory switch, addresses from 2001:db8::/64): 4-tuple
addresses, a listener on :: accepting IPv4 as ::ffff:a.b.c.d unless
IPV6_V6ONLY, and the bind conflicts between :: and 0.0.0.0 as on Linux."""

from __future__ import annotations

import errno
import socket as std
import threading
from collections.abc import Iterator

import pytest
from apilan import dual_lan

from femtotcp.api.socket import Network
from femtotcp.api.socket import socket as fsocket
from femtotcp.wire import ethernet, ipv6

MODULES = ["arp", "ipv4", "icmp4", "udp", "tcp", "dns", "ipv6", "icmp6"]
A6, B6 = "2001:db8::a", "2001:db8::b"
A4, B4 = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def nets() -> Iterator[tuple[Network, Network]]:
    with dual_lan([("a", MODULES, "02:00:00:00:06:01", A4, A6),
                   ("b", MODULES, "02:00:00:00:06:02", B4, B6)]) as (na, nb):
        yield na, nb


def s6(net: Network, kind: int = std.SOCK_STREAM) -> fsocket:
    sock = fsocket(std.AF_INET6, kind, network=net)
    sock.settimeout(10)
    return sock


def test_tcp_over_ipv6_with_four_tuple_addresses(nets: tuple[Network, Network]) -> None:
    na, nb = nets
    with s6(nb) as srv, s6(na) as cli:
        srv.bind(("::", 0))
        srv.listen()
        host, port, flow, scope = srv.getsockname()
        assert (host, flow, scope) == ("::", 0, 0) and port > 0
        cli.connect((B6, port, 0, 0))
        conn, peer = srv.accept()
        with conn:
            assert peer[0] == A6 and peer[1] == cli.getsockname()[1] and len(peer) == 4
            assert cli.getpeername() == (B6, port, 0, 0)
            assert conn.getsockname() == (B6, port, 0, 0)
            payload = bytes(range(256)) * 4000

            def send() -> None:
                cli.sendall(payload)
                cli.shutdown(std.SHUT_WR)
            sender = threading.Thread(target=send)
            sender.start()
            got = bytearray()
            while chunk := conn.recv(65536):
                got += chunk
            sender.join(10)
            assert got == payload
        assert cli.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 0


def test_listener_on_any6_accepts_ipv4_as_v4_mapped(nets: tuple[Network, Network]) -> None:
    na, nb = nets
    with s6(nb) as srv, fsocket(std.AF_INET, std.SOCK_STREAM, network=na) as cli:
        srv.bind(("", 0))
        srv.listen()
        port = srv.getsockname()[1]
        cli.settimeout(10)
        cli.connect((B4, port))
        conn, peer = srv.accept()
        with conn:
            assert peer == ("::ffff:" + A4, cli.getsockname()[1], 0, 0)
            assert conn.getsockname() == ("::ffff:" + B4, port, 0, 0)
            conn.sendall(b"hello v4")
            assert cli.recv(100) == b"hello v4"


def test_v6only_listener_refuses_ipv4_and_shares_the_port(
        nets: tuple[Network, Network]) -> None:
    na, nb = nets
    with s6(nb) as srv, fsocket(std.AF_INET, std.SOCK_STREAM, network=nb) as srv4, \
            fsocket(std.AF_INET, std.SOCK_STREAM, network=na) as cli:
        srv.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 1)
        assert srv.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 1
        srv.bind(("::", 0))
        srv.listen()
        port = srv.getsockname()[1]
        with pytest.raises(OSError) as exc:
            srv.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 0)   # bound: too late
        assert exc.value.errno == errno.EINVAL
        cli.settimeout(10)
        assert cli.connect_ex((B4, port)) == errno.ECONNREFUSED
        srv4.bind(("0.0.0.0", port))      # :: with V6ONLY leaves the IPv4 port free


def test_bind_conflicts_between_any6_and_any4(nets: tuple[Network, Network]) -> None:
    _, nb = nets
    with s6(nb) as dual, fsocket(std.AF_INET, std.SOCK_STREAM, network=nb) as v4, \
            fsocket(std.AF_INET, std.SOCK_STREAM, network=nb) as v4b, s6(nb) as dual2:
        dual.bind(("::", 0))
        port = dual.getsockname()[1]
        with pytest.raises(OSError) as exc:
            v4.bind(("0.0.0.0", port))
        assert exc.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as exc:
            v4.bind((B4, port))
        assert exc.value.errno == errno.EADDRINUSE
        v4b.bind(("0.0.0.0", 0))
        with pytest.raises(OSError) as exc:
            dual2.bind(("::", v4b.getsockname()[1]))
        assert exc.value.errno == errno.EADDRINUSE


def test_udp_over_ipv6_and_v4_mapped(nets: tuple[Network, Network]) -> None:
    na, nb = nets
    with s6(nb, std.SOCK_DGRAM) as srv, s6(na, std.SOCK_DGRAM) as cli, \
            fsocket(std.AF_INET, std.SOCK_DGRAM, network=na) as cli4:
        srv.bind(("::", 0))
        port = srv.getsockname()[1]
        cli.sendto(b"six", (B6, port, 0, 0))
        data, peer = srv.recvfrom(100)
        assert data == b"six" and peer[0] == A6 and len(peer) == 4
        srv.sendto(b"back", peer)
        assert cli.recvfrom(100) == (b"back", (B6, port, 0, 0))
        cli4.settimeout(10)
        cli4.sendto(b"four", (B4, port))
        data, peer = srv.recvfrom(100)
        assert data == b"four" and peer[0] == "::ffff:" + A4
        srv.sendto(b"mapped back", peer)
        assert cli4.recvfrom(100) == (b"mapped back", (B4, port))
        # A connected IPv6 socket learns of the closed port (ECONNREFUSED).
        cli.connect((B6, 9, 0, 0))
        cli.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            cli.recv(100)


def test_getaddrinfo_numeric_ipv6_and_v4_mapped(nets: tuple[Network, Network]) -> None:
    na, _ = nets
    (info,) = na.getaddrinfo("2001:DB8::B", 80, 0, std.SOCK_STREAM)
    assert info[0] == std.AF_INET6 and info[4] == (B6, 80, 0, 0)
    with pytest.raises(std.gaierror):
        na.getaddrinfo(B6, 80, std.AF_INET)
    with pytest.raises(std.gaierror):
        na.getaddrinfo(B4, 80, std.AF_INET6)
    (mapped,) = na.getaddrinfo(B4, 80, std.AF_INET6, std.SOCK_STREAM, 0, std.AI_V4MAPPED)
    assert mapped[4] == ("::ffff:" + B4, 80, 0, 0)
    (passive,) = na.getaddrinfo(None, 80, std.AF_INET6, std.SOCK_STREAM, 0, std.AI_PASSIVE)
    assert passive[4] == ("::", 80, 0, 0)


def test_create_server_and_create_connection_over_ipv6(
        nets: tuple[Network, Network]) -> None:
    na, nb = nets
    with nb.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True) as srv:
        srv.settimeout(10)
        port = srv.getsockname()[1]
        assert srv.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 0
        for target in (B6, B4):
            with na.create_connection((target, port), timeout=10) as cli:
                conn, peer = srv.accept()
                with conn:
                    cli.sendall(b"ping")
                    assert conn.recv(10) == b"ping"
                    assert peer[0] == (A6 if target == B6 else "::ffff:" + A4)
    with nb.create_server(("::", 0), family=std.AF_INET6) as only6:
        assert only6.getsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY) == 1


def test_unicast_hops_and_traffic_class_on_datagrams(nets: tuple[Network, Network]) -> None:
    na, nb = nets
    seen: list[tuple[int, int]] = []

    def capture(frame: bytes, outbound: bool) -> None:
        eth, body = ethernet.parse(frame)
        if outbound and eth.ethertype == ethernet.ETH_IPV6:
            h, _ = ipv6.parse(body)
            if h.next_header == ipv6.PROTO_UDP:
                seen.append((h.hop_limit, h.traffic_class))
    na.stack.interfaces[0].device.add_capture(capture)
    with s6(nb, std.SOCK_DGRAM) as srv, s6(na, std.SOCK_DGRAM) as cli:
        srv.bind(("::", 0))
        port = srv.getsockname()[1]
        assert cli.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 64
        cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, 7)
        cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 0x28)
        assert cli.getsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS) == 7
        assert cli.getsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS) == 0x28
        cli.sendto(b"x", (B6, port))
        assert srv.recv(10) == b"x"
        cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_UNICAST_HOPS, -1)
        cli.sendto(b"y", (B6, port))
        assert srv.recv(10) == b"y"
        with pytest.raises(OSError) as exc:
            cli.setsockopt(std.IPPROTO_IPV6, std.IPV6_TCLASS, 300)
        assert exc.value.errno == errno.EINVAL
    assert seen == [(7, 0x28), (64, 0x28)]
    with fsocket(std.AF_INET, std.SOCK_DGRAM, network=na) as v4, pytest.raises(OSError):
        v4.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 1)


def test_patched_stdlib_serves_and_connects_over_ipv6(nets: tuple[Network, Network]) -> None:
    """Under ``scoped``, AF_INET6 sockets are the stack's when it has IPv6: the
    stdlib's create_server (dual stack) and create_connection run over it."""
    from femtotcp.api.patch import scoped
    na, nb = nets
    with scoped(nb):
        srv = std.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True)
        assert isinstance(srv, fsocket) and srv.getsockname()[0] == "::"
    with srv:
        srv.settimeout(10)
        port = srv.getsockname()[1]
        with scoped(na):
            cli = std.create_connection((B6, port), timeout=10)
            # urllib3's import-time probe: ::1 binds, as on Linux with IPv6.
            probe = std.socket(std.AF_INET6, std.SOCK_STREAM)
            probe.bind(("::1", 0))
            assert isinstance(probe, fsocket) and probe.getsockname()[0] == "::1"
            probe.close()
        with cli:
            assert isinstance(cli, fsocket)
            conn, peer = srv.accept()
            with conn:
                assert peer[0] == A6
                cli.sendall(b"patched six")
                assert conn.recv(100) == b"patched six"


def test_icmpv6_ping_socket(nets: tuple[Network, Network]) -> None:
    na, _ = nets
    with fsocket(std.AF_INET6, std.SOCK_DGRAM, std.IPPROTO_ICMPV6, network=na) as ping:
        ping.settimeout(10)
        request = bytes((128, 0, 0, 0, 0, 0, 0, 5)) + b"femto six"
        ping.sendto(request, (B6, 0))
        reply, peer = ping.recvfrom(200)
        ident = ping.getsockname()[1]
        assert peer[0] == B6
        assert reply[0] == 129 and reply[1] == 0
        assert int.from_bytes(reply[4:6], "big") == ident
        assert int.from_bytes(reply[6:8], "big") == 5 and reply[8:] == b"femto six"
        with pytest.raises(OSError) as exc:       # an ICMPv4 echo on an ICMPv6 socket
            ping.sendto(bytes((8, 0, 0, 0, 0, 0, 0, 1)), (B6, 0))
        assert exc.value.errno == errno.EINVAL


def test_getaddrinfo_aaaa_ordered_by_rfc6724_and_create_connection_falls_back(
        nets: tuple[Network, Network]) -> None:
    from femtotcp.services.dns_server import DnsResponder
    na, nb = nets

    def responder() -> DnsResponder:
        r = DnsResponder(nb.stack, zone="demo", addr=bytes(16))
        r.add_address("both.demo", B4)
        r.add_address("both.demo", B6)
        r.add_address("four.demo", B4)
        r.add_address("six.demo", B6)
        r.add_address("far.demo", B4)
        r.add_address("far.demo", "2001:db8:99::1")     # no route to it from a
        return r
    nb.call(responder)
    na.call(lambda: na.stack.resolver.set_servers([B6]))

    def addrs(name: str, family: int = 0, flags: int = 0) -> list[str]:
        return [ai[4][0] for ai in na.getaddrinfo(name, 80, family, std.SOCK_STREAM, 0, flags)]
    assert addrs("both.demo") == [B6, B4]
    assert addrs("both.demo", std.AF_INET) == [B4]
    assert addrs("six.demo") == [B6]
    assert addrs("far.demo") == [B4, "2001:db8:99::1"]
    with pytest.raises(std.gaierror):
        addrs("six.demo", std.AF_INET)
    with pytest.raises(std.gaierror):
        addrs("four.demo", std.AF_INET6)
    assert addrs("four.demo", std.AF_INET6, std.AI_V4MAPPED) == ["::ffff:" + B4]
    assert na.gethostbyname("both.demo") == B4       # stays IPv4, as the stdlib
    with nb.create_server(("::", 0), family=std.AF_INET6, dualstack_ipv6=True) as srv:
        srv.settimeout(10)
        port = srv.getsockname()[1]
        for name, family in (("both.demo", std.AF_INET6), ("far.demo", std.AF_INET)):
            with na.create_connection((name, port), timeout=10) as cli:
                assert cli.family == family
                conn, _ = srv.accept()
                conn.close()


def test_ipv6_loopback_is_this_host(nets: tuple[Network, Network]) -> None:
    """::1 is the stack's own, as Linux's lo: a listener on it is reached by a
    connect to it (and to ::, the wildcard as a destination), over TCP and UDP;
    ::1 from the wire stays a martian (counted)."""
    na, nb = nets
    with s6(na) as srv, s6(na) as cli, s6(na) as wild:
        srv.bind(("::1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        cli.connect(("::1", port))
        conn, peer = srv.accept()
        with conn:
            assert peer[0] == "::1" and cli.getpeername()[:2] == ("::1", port)
            cli.sendall(b"over ::1")
            assert conn.recv(100) == b"over ::1"
        wild.connect(("::", port))
        assert wild.getpeername()[0] == "::1"
        srv.accept()[0].close()
    with s6(na, std.SOCK_DGRAM) as rx, s6(na, std.SOCK_DGRAM) as tx:
        rx.bind(("::1", 0))
        tx.sendto(b"looped", rx.getsockname())
        data, src = rx.recvfrom(100)
        assert data == b"looped" and src[0] == "::1"
    # From a wire, ::1 is refused (RFC 4291 2.5.3).
    stack_a = na.stack
    frame = ethernet.build(stack_a.interfaces[0].mac, b"\x02\x00\x00\x00\x06\x02",
                           ethernet.ETH_IPV6,
                           ipv6.build(ipv6.LOOPBACK, ipv6.LOOPBACK, 17, b"\x00" * 8))
    before = stack_a.counters["ipv6.loopback_address"]
    na.call(stack_a.receive, stack_a.interfaces[0], frame)
    assert stack_a.counters["ipv6.loopback_address"] == before + 1


def test_v4_mapped_addresses_on_a_v6only_socket(nets: tuple[Network, Network]) -> None:
    """IPV6_V6ONLY: binding a v4-mapped address is EINVAL, connecting or sending
    to one ENETUNREACH, as Linux."""
    na, _nb = nets
    for kind in (std.SOCK_STREAM, std.SOCK_DGRAM):
        with s6(na, kind) as sock:
            sock.setsockopt(std.IPPROTO_IPV6, std.IPV6_V6ONLY, 1)
            with pytest.raises(OSError) as exc:
                sock.bind((f"::ffff:{A4}", 0))
            assert exc.value.errno == errno.EINVAL
            with pytest.raises(OSError) as exc:
                sock.connect((f"::ffff:{B4}", 7))
            assert exc.value.errno == errno.ENETUNREACH


def test_largest_udp_datagram_over_ipv6(nets: tuple[Network, Network]) -> None:
    """65527 bytes, the most an IPv6 payload length of 65535 leaves a UDP
    datagram, go and are reassembled whole (one byte more: EMSGSIZE)."""
    na, nb = nets
    with s6(nb, std.SOCK_DGRAM) as rx, s6(na, std.SOCK_DGRAM) as tx:
        rx.bind((B6, 0))
        big = bytes(range(256)) * 255 + bytes(range(247))
        assert len(big) == 65527
        assert tx.sendto(big, rx.getsockname()) == 65527
        assert rx.recv(70000) == big
        with pytest.raises(OSError) as exc:
            tx.sendto(big + b"x", rx.getsockname())
        assert exc.value.errno == errno.EMSGSIZE
