"""``femtotcp ctl flows`` and ``ctl forward`` for people: tables made from the
documents the gateway's control commands return (docs/ctl-json.md)."""

from __future__ import annotations

from femtotcp.control.render import render
from femtotcp.gateway.flows import TCP, UDP, FlowTable, Limits
from femtotcp.wire import ip_bytes

GUEST4 = ip_bytes("192.0.2.15")
GUEST6 = ip_bytes("2001:db8:1::9")


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_flows_are_a_table_with_both_families_and_the_limit() -> None:
    table = FlowTable(Limits(max_flows=10))
    a = table.open(TCP, (GUEST4, 40000), (ip_bytes("198.51.100.1"), 80), 100.0)
    b = table.open(UDP, (GUEST6, 5353), (ip_bytes("2001:db8:2::1"), 53), 101.0)
    assert a is not None and b is not None
    table.outbound(a, 120, 102.0)
    table.inbound(a, 4096, 103.0)
    doc = {"flows": [f.describe(105.5) for f in table], "count": len(table), "limit": 10}
    rows = _rows(render("flows", doc))
    assert rows[0] == ["PROTO", "GUEST", "REMOTE", "STATE", "BYTES-OUT", "BYTES-IN",
                       "IDLE(s)"]
    assert rows[1] == ["tcp", "192.0.2.15:40000", "198.51.100.1:80", "connecting", "120",
                       "4096", "2.5"]
    assert rows[2] == ["udp", "[2001:db8:1::9]:5353", "[2001:db8:2::1]:53", "active", "0",
                       "0", "4.5"]
    assert rows[3] == ["2", "flows", "(limit", "10)"]


def test_no_flows_is_one_line() -> None:
    assert render("flows", {"flows": [], "count": 0, "limit": 4096}) == \
        "0 flows (limit 4096)\n"


def test_forwards_are_a_table() -> None:
    doc = {"forwards": [{"proto": "tcp", "host": "0.0.0.0:8080", "guest": "192.0.2.15:80"},
                        {"proto": "udp", "host": "198.51.100.1:5300",
                         "guest": "192.0.2.15:7000"}]}
    assert _rows(render("forward", doc)) == [
        ["PROTO", "HOST", "GUEST"], ["tcp", "0.0.0.0:8080", "192.0.2.15:80"],
        ["udp", "198.51.100.1:5300", "192.0.2.15:7000"]]
    assert render("forward", {"forwards": []}) == "no port forwards\n"
