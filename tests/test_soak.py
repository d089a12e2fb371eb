"""Ten simulated minutes of bench.soak in ``make test``: DHCP renewals, DNS lookups and
hundreds of TCP transfers over lossy, duplicating, reordering links; fails on any
lost or altered byte, any connection or queue left behind, and heap that does not
return to its warm-up baseline."""

from __future__ import annotations

from bench.soak import MEMORY_ALLOWANCE, run_soak


def test_ten_minute_soak_accounts_for_every_byte() -> None:
    report = run_soak(600.0, clients=3, workers=2, think=4.0, seed=7)
    print(report.summary())
    assert report.failures == []
    assert report.transfers >= 200 and report.completed == report.transfers
    assert report.bytes_sent == report.bytes_served > 0
    assert report.bytes_returned > 0
    assert report.leftovers == []
    assert report.dhcp_renewals >= 3 * 4          # lease 120 s: a renewal a minute each
    assert report.dns_lookups > 0
    # The links really were faulty, and TCP really recovered.
    assert report.counters["link.out.lost"] > 0 and report.counters["link.in.reordered"] > 0
    assert report.counters["tcp.retransmitted_segments"] > 0
    assert report.heap_end - report.heap_baseline <= MEMORY_ALLOWANCE
    assert report.ok
