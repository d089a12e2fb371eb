"""bench.floods in miniature: each flood (a few thousand frames on the virtual clock)
keeps the queue it aims at within its configured cap, leaves the stack answering a
ping and accepting a connection half-way through, raises nothing inside the stack,
and leaves Python's heap where it found it once its timers ran out."""

from __future__ import annotations

import pytest

from bench.floods import FLOODS, run
from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.stack.config import StackConfig

CAPS = {"syn_queue": TcpConfig().max_syn_backlog,
        "reasm_datagrams": StackConfig().reasm_max_datagrams,
        "reasm_bytes": StackConfig().reasm_max_bytes,
        "ooo_segments": TcpConfig().ooo_max_segments,
        "ooo_bytes": TcpConfig().rcvbuf,
        "arp_cache": StackConfig().arp_cache_max,
        "udp_queued": StackConfig().udp_queue_max}

FRAMES = {"syn": 2000, "fragments": 1000, "tcp_ooo": 1000, "udp_closed": 1000,
          "arp_requests": 1500, "arp_replies": 1500, "dns_spray": 2000, "dhcp_offers": 1000}


@pytest.mark.parametrize("name", sorted(FLOODS))
def test_flood_stays_bounded(name: str) -> None:
    res = run(FLOODS[name], FRAMES[name], 20_000.0)
    assert res.ping and res.connect
    assert "INTERNAL_ERRORS" not in res.extra
    for key, cap in CAPS.items():
        if isinstance(res.gauges_peak.get(key), int):
            assert res.gauges_peak[key] <= cap, (key, res.gauges_peak)
    assert res.blocks[2] - res.blocks[0] < 5000, res.blocks     # heap back after the flood
    if name == "syn":
        assert res.gauges_peak["syn_queue"] == CAPS["syn_queue"]
        assert res.counters["tcp.syncookies_sent"] > 0 and res.gauges_after["syn_queue"] == 0
    if name == "fragments":
        assert res.gauges_peak["reasm_datagrams"] == CAPS["reasm_datagrams"]
        assert res.gauges_after["reasm_datagrams"] == 0
    if name in ("arp_requests", "arp_replies"):
        assert res.gauges_peak["arp_cache"] == CAPS["arp_cache"]
    if name == "tcp_ooo":
        assert res.extra["conn_still_delivers"] is True
    if name == "dns_spray":
        assert res.extra["poisoned"] == 0 and res.extra["answered"] == res.extra["lookups"] > 0
    if name == "dhcp_offers":
        assert res.extra["dhcp_state"] == "BOUND" and res.extra["server"] == "198.51.100.1"
