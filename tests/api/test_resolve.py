"""Blocking name resolution for program threads (api/resolve.py): the resolver
itself runs in the loop thread; the caller waits, and a failed lookup becomes
the ``socket.gaierror`` glibc's getaddrinfo would raise.

(Moved here from tests/services/test_dns_resolver.py with the code it tests.)"""

from __future__ import annotations

import socket
import threading

from femtotcp.api import resolve
from femtotcp.phy.memory import Switch
from femtotcp.runtime import Runtime
from femtotcp.services import dns
from femtotcp.services.dns_server import DnsResponder
from femtotcp.stack.stack import Stack
from femtotcp.wire import dns as wire
from femtotcp.wire import ip_bytes

MODULES = ["arp", "ipv4", "icmp4", "udp", "dns"]


def _lan(rt: Runtime) -> Stack:
    """A client stack and a responder for the zone "demo" on one switch."""
    return _lan_and_server(rt)[0]


def _lan_and_server(rt: Runtime) -> tuple[Stack, DnsResponder]:
    """``_lan``'s client stack and its responder."""
    switch = Switch(rt)
    stacks = []
    for name, ip, n in (("client", "192.0.2.10/24", 0x10), ("ns0", "192.0.2.53/24", 0x53)):
        st = Stack(name, modules=MODULES)
        st.add_interface(switch.port(name), mac=f"02:00:00:00:00:{n:02x}", ipv4=ip)
        rt.add_stack(st)
        st.start()
        stacks.append(st)
    client, ns = stacks
    responder = DnsResponder(ns, zone="demo")
    responder.add_address("www.demo", "192.0.2.80")
    responder.add_cname("web.demo", "www.demo")
    client.resolver.servers = [ip_bytes("192.0.2.53")]
    return client, responder


def test_resolve_blocking_from_another_thread() -> None:
    rt = Runtime()
    client = _lan(rt)
    rt.start()
    try:
        r = resolve.resolve_blocking(rt, client, "web.demo", wire.A, timeout=10)
        assert r.addresses == [ip_bytes("192.0.2.80")]
        r = resolve.resolve_blocking(rt, client, "nope.demo", wire.A, timeout=10)
        assert r.error == dns.NXDOMAIN
        err = resolve.gaierror_for(r)
        assert isinstance(err, socket.gaierror) and err.errno == socket.EAI_NONAME
        assert threading.current_thread() is not rt.thread
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


def test_gaierror_mapping() -> None:
    ok = dns.DnsResult("a", wire.A, addresses=[b"\1\2\3\4"])
    assert resolve.gaierror_for(ok) is None
    codes = {e: resolve.gaierror_for(dns.DnsResult("a", wire.A, error=e)).errno  # type: ignore[union-attr]
             for e in (dns.NXDOMAIN, dns.BADNAME, dns.NODATA, dns.TIMEOUT, dns.SERVFAIL,
                       dns.REFUSED, dns.CNAME_LOOP, dns.NOSERVERS)}
    assert codes[dns.NXDOMAIN] == codes[dns.BADNAME] == socket.EAI_NONAME
    assert codes[dns.NODATA] == getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
    # glibc: a server that refused or failed is asked again later (EAI_AGAIN)
    assert codes[dns.TIMEOUT] == codes[dns.SERVFAIL] == codes[dns.NOSERVERS] == \
        codes[dns.REFUSED] == socket.EAI_AGAIN
    assert resolve.gaierror_for(dns.DnsResult("a", wire.A, error=dns.TRUNCATED)).errno == \
        socket.EAI_AGAIN  # type: ignore[union-attr]
    assert codes[dns.CNAME_LOOP] == socket.EAI_FAIL


def test_names_as_glibc_gives_them() -> None:
    """gethostbyname_ex of a CNAME: the canonical name, then the names that led
    there as aliases; AI_CANONNAME: the canonical name; an answer the server
    refused (out of its zone): EAI_AGAIN; NXDOMAIN: EAI_NONAME."""
    from femtotcp.api.network import network_for

    rt = Runtime()
    client = _lan(rt)
    rt.start()
    try:
        net = network_for(client, rt)
        assert net.gethostbyname_ex("web.demo") == ("www.demo", ["web.demo"], ["192.0.2.80"])
        assert net.gethostbyname_ex("www.demo") == ("www.demo", [], ["192.0.2.80"])
        infos = net.getaddrinfo("web.demo", 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                                socket.AI_CANONNAME)
        assert infos[0][3] == "www.demo"
        assert net.getaddrinfo("web.demo", 80, socket.AF_INET, socket.SOCK_STREAM)[0][3] == ""
        errors = {}
        for name in ("nope.demo", "elsewhere.example"):
            try:
                net.gethostbyname_ex(name)
            except socket.gaierror as exc:
                errors[name] = exc.errno
        assert errors == {"nope.demo": socket.EAI_NONAME,
                          "elsewhere.example": socket.EAI_AGAIN}
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


def test_search_list_and_trailing_dot_as_glibc() -> None:
    """A dotless name goes through the search list and AI_CANONNAME (and
    gethostbyname_ex) give the full name found; a trailing dot makes the name
    absolute: asked as it is only, never under a search domain (glibc)."""
    from femtotcp.api.network import network_for

    rt = Runtime()
    client, ns = _lan_and_server(rt)
    ns.add_address("host.demo", "192.0.2.81")
    ns.add_address("host", "192.0.2.7")       # a name at the root, served too
    client.resolver.search = ["demo"]
    rt.start()
    try:
        net = network_for(client, rt)
        infos = net.getaddrinfo("host", 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                                socket.AI_CANONNAME)
        assert infos[0][3] == "host.demo" and infos[0][4] == ("192.0.2.81", 80)
        assert net.gethostbyname_ex("host") == ("host.demo", [], ["192.0.2.81"])
        infos = net.getaddrinfo("host.", 80, socket.AF_INET, socket.SOCK_STREAM, 0,
                                socket.AI_CANONNAME)
        assert infos[0][3] == "host" and infos[0][4] == ("192.0.2.7", 80)
        assert net.gethostbyname_ex("host.") == ("host", [], ["192.0.2.7"])
        # Through a CNAME found under the search domain: the alias is the full name.
        assert net.gethostbyname_ex("web") == ("www.demo", ["web.demo"], ["192.0.2.80"])
        # Absolute and not there as asked: no search domain rescues it.
        try:
            net.getaddrinfo("www.", 80, socket.AF_INET)
        except socket.gaierror as exc:
            assert exc.errno in (socket.EAI_NONAME, socket.EAI_AGAIN)
        else:
            raise AssertionError("www. was searched under demo")
        assert net.getaddrinfo("www", 80, socket.AF_INET)[0][4] == ("192.0.2.80", 80)
    finally:
        rt.stop()
        rt.join(5)
        rt.close()
