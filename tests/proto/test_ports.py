"""proto/ports.py: the one bind-conflict rule (Linux bind(2) semantics)."""

from __future__ import annotations

from femtotcp.proto.ports import ANY4, ANY6, port_taken
from femtotcp.wire import ip_bytes

A = ip_bytes("192.0.2.1")
B = ip_bytes("192.0.2.2")
V6 = ip_bytes("2001:db8::1")


def test_same_address_and_port_conflict() -> None:
    assert port_taken([(A, 80)], A, 80)
    assert not port_taken([(A, 80)], A, 81)


def test_different_addresses_share_a_port() -> None:
    assert not port_taken([(A, 80)], B, 80)


def test_the_wildcard_conflicts_with_every_address_of_its_family() -> None:
    assert port_taken([(ANY4, 80)], A, 80)
    assert port_taken([(A, 80)], ANY4, 80)
    assert port_taken({(ANY4, 80): object()}, ANY4, 80)
    assert not port_taken([(ANY4, 80)], A, 8080)


def test_families_do_not_conflict() -> None:
    assert not port_taken([(V6, 80)], ANY4, 80)
    assert not port_taken([(ANY6, 80)], A, 80)
    assert port_taken([(V6, 80)], ANY6, 80)
    assert port_taken([(ANY6, 80)], V6, 80)


def test_a_dual_stack_wildcard_overlaps_ipv4_as_linux() -> None:
    """ipv6_rcv_saddr_equal: ``::`` without IPV6_V6ONLY holds the port for
    IPv4 too; with it, or bound to a specific IPv6 address, it does not."""
    assert port_taken([(ANY4, 80)], ANY6, 80, v6only=False)
    assert port_taken([(A, 80)], ANY6, 80, v6only=False)
    assert not port_taken([(ANY4, 80)], ANY6, 80, v6only=True)
    assert not port_taken([(A, 80)], ANY6, 81, v6only=False)
    assert port_taken([(ANY6, 80)], ANY4, 80, dual=[(ANY6, 80)])
    assert port_taken([(ANY6, 80)], A, 80, dual=[(ANY6, 80)])
    assert not port_taken([(ANY6, 80)], A, 80, dual=[])
    assert not port_taken([(V6, 80)], ANY4, 80, dual=[])
    assert port_taken([(ANY6, 80)], ANY6, 80, v6only=True)    # :: and :: always
