"""The sans-I/O timer heap: ordering, cancellation, and a bounded heap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from femtotcp.core.timers import Timers


def test_fires_in_time_order_when_due() -> None:
    t = Timers()
    fired: list[str] = []
    t.call_at(3.0, lambda: fired.append("c"))
    t.call_at(1.0, lambda: fired.append("a"))
    t.call_at(2.0, lambda: fired.append("b"))
    t.call_at(2.0, lambda: fired.append("b2"))     # same time: insertion order
    t.poll(1.5)
    assert fired == ["a"]
    assert t.next_deadline() == 2.0
    t.poll(10)
    assert fired == ["a", "b", "b2", "c"]
    assert t.next_deadline() is None and t.now == 10


def test_cancel_and_call_later() -> None:
    t = Timers()
    t.now = 5.0
    fired: list[int] = []
    keep = t.call_later(1.0, lambda: fired.append(1))
    drop = t.call_later(0.5, lambda: fired.append(2))
    drop.cancel()
    drop.cancel()
    assert len(t) == 1 and t.next_deadline() == 6.0
    t.poll(7)
    assert fired == [1]
    keep.cancel()                 # after firing: harmless
    assert len(t) == 0


def test_callback_may_schedule_due_timers() -> None:
    t = Timers()
    fired: list[int] = []

    def first() -> None:
        fired.append(1)
        t.call_at(0.5, lambda: fired.append(2))     # already due: runs in this poll

    t.call_at(1.0, first)
    t.poll(1.0)
    assert fired == [1, 2]


def test_cancelled_timers_do_not_pile_up_behind_a_live_one() -> None:
    """Reassembly and ARP set and cancel a timer per datagram; one early live timer
    must not keep every cancelled entry in memory until it fires."""
    t = Timers()
    t.call_at(1000.0, lambda: None)
    for i in range(20000):
        t.call_at(2000.0 + i, lambda: None).cancel()
    assert len(t) == 1
    assert t.heap_size() < 1000


def test_compaction_inside_poll_keeps_order() -> None:
    t = Timers()
    fired: list[int] = []
    timers = [t.call_at(float(i), lambda i=i: fired.append(i)) for i in range(100)]
    for tm in timers[50:]:
        tm.cancel()

    def churn() -> None:
        for _ in range(600):
            t.call_at(1e9, lambda: None).cancel()

    t.call_at(10.5, churn)
    t.poll(1e6)
    assert fired == list(range(50))


@given(st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.booleans()), max_size=400),
       st.floats(0, 100, allow_nan=False))
def test_matches_a_sorted_list(entries: list[tuple[float, bool]], now: float) -> None:
    t = Timers()
    fired: list[int] = []
    for k, (when, cancel) in enumerate(entries):
        tm = t.call_at(when, lambda k=k: fired.append(k))
        if cancel:
            tm.cancel()
    t.poll(now)
    expected = sorted((w, k) for k, (w, c) in enumerate(entries) if not c and w <= now)
    assert fired == [k for _, k in expected]
    assert len(t) == sum(1 for w, c in entries if not c and w > now)


def test_token_bucket_survives_a_clock_that_moves_back() -> None:
    """A stack made on time.monotonic() and then attached to a SimLoop at 0 must
    not stop refilling its rate limits."""
    from femtotcp.proto.ratelimit import TokenBucket
    bucket = TokenBucket(rate=1.0, burst=1, now=1000.0)
    assert bucket.take(1000.0)
    assert not bucket.take(0.0)        # clock jumped back: nothing saved up yet
    assert bucket.take(1.5)            # ...but it refills from the new origin
