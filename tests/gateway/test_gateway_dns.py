"""The gateway's DNS forwarder on a virtual clock: host records answered locally,
SERVFAIL without an upstream, and what /etc/resolv.conf lines are taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from femtolan import addr, make_lan, resolve

from femtotcp.gateway.dns_forward import DnsForwarder, resolv_conf_servers
from femtotcp.wire import dns, ip_bytes


def _ask(lan: Any, name: str, qtype: int = dns.A) -> dns.Message:
    client = lan.stacks[0].udp.open()
    client.sendto(dns.build_query(0x1234, name, qtype), addr(1), 53)
    assert lan.run_until(lambda: client.readable, 5)
    data, src = client.recv()
    assert src == (addr(1), 53)
    return dns.parse(data)


def _forwarder(upstreams: list[str]) -> tuple[Any, DnsForwarder, list[tuple[int, bool]]]:
    lan = make_lan(2)
    resolve(lan, 0, 1)
    watched: list[tuple[int, bool]] = []
    fwd = DnsForwarder(lan.stacks[1], addr(1), lambda fd, r, w, h: watched.append((fd, r)),
                       upstreams, {"db.internal": [ip_bytes("192.0.2.10")],
                                  "both.internal": [ip_bytes("192.0.2.11"),
                                                    ip_bytes("2001:db8::11")]})
    return lan, fwd, watched


def test_a_host_record_is_answered_without_asking_upstream() -> None:
    lan, fwd, watched = _forwarder([])
    msg = _ask(lan, "DB.internal")
    assert msg.txid == 0x1234 and msg.is_response and msg.rcode == 0
    assert [(r.rtype, r.data) for r in msg.answers] == [(dns.A, ip_bytes("192.0.2.10"))]
    # Other types for that name: no data, no error (the name exists).
    msg = _ask(lan, "db.internal", dns.AAAA)
    assert msg.rcode == 0 and msg.answers == []
    assert watched == [] and lan.stacks[1].counters["gwdns.host_record"] == 2


def test_a_host_record_of_both_families_answers_a_and_aaaa() -> None:
    lan, fwd, watched = _forwarder([])
    msg = _ask(lan, "both.internal", dns.AAAA)
    assert [(r.rtype, r.data) for r in msg.answers] == [(dns.AAAA, ip_bytes("2001:db8::11"))]
    msg = _ask(lan, "both.internal", dns.A)
    assert [(r.rtype, r.data) for r in msg.answers] == [(dns.A, ip_bytes("192.0.2.11"))]
    assert watched == []


def test_without_an_upstream_other_names_get_servfail() -> None:
    lan, fwd, watched = _forwarder([])
    msg = _ask(lan, "elsewhere.example")
    assert msg.rcode == dns.SERVFAIL and msg.is_response
    assert lan.stacks[1].counters["gwdns.no_upstream"] == 1 and watched == []


def test_garbage_is_dropped_and_counted() -> None:
    lan, fwd, watched = _forwarder([])
    client = lan.stacks[0].udp.open()
    client.sendto(b"\x00\x01", addr(1), 53)
    lan.run(1.0)
    assert not client.readable
    assert lan.stacks[1].counters["gwdns.malformed"] == 1


def test_resolv_conf_gives_its_nameservers_but_link_local_ones(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 127.0.0.53\n"
                    "nameserver 2001:db8::53\nnameserver bogus\nnameserver 192.0.2.53\n"
                    "nameserver fe80::1%eth0\nnameserver fe80::2\noptions edns0\n")
    assert resolv_conf_servers(str(conf)) == ["127.0.0.53", "2001:db8::53", "192.0.2.53"]
    assert resolv_conf_servers(str(tmp_path / "missing")) == []
