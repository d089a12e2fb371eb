"""``ctl addr`` and ``ctl sockets`` show multicast groups: each interface's
(with their users and, for IPv4, the filter state) and each UDP socket's."""

from __future__ import annotations

from test_control import Lan, lan, run_ctl, short_dir  # noqa: F401  (the fixtures)

from femtotcp.stack import mcast
from femtotcp.wire import ip_bytes


def test_groups_in_addr_and_sockets(lan: Lan) -> None:  # noqa: F811
    group = ip_bytes("239.1.2.3")
    src = ip_bytes("192.0.2.77")

    def join() -> None:
        stack = lan.a
        index = stack.interfaces[0].index
        ep = stack.udp.open(port=5353, reuse_addr=True)
        ep.mcast = mcast.Memberships()
        mcast.join(stack, ep.mcast, group, index)
        other = stack.udp.open(port=5353, reuse_addr=True)
        other.mcast = mcast.Memberships()
        mcast.join(stack, other.mcast, group, index)
        mcast.source(stack, other.mcast, True, False, group, bytes(4), src, index)

    lan.rt.call(join)
    groups = lan.ok("addr")["interfaces"][0]["groups"]
    assert {"address": "224.0.0.1", "users": 1} in groups
    # Two sockets, one membership; one blocks a source the other takes: EXCLUDE {}.
    assert {"address": "239.1.2.3", "users": 2, "mode": "exclude", "sources": []} in groups
    rows = [s for s in lan.ok("sockets")["sockets"] if s.get("local_port") == 5353]
    index = lan.a.interfaces[0].index
    assert [r["groups"] for r in rows] == [[f"239.1.2.3%{index}"]] * 2
    rc, out, _ = run_ctl("--control", lan.path, "addr")
    assert rc == 0 and "group 239.1.2.3 users 2" in out
