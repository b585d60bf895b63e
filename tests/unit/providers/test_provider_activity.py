from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hugind.providers.activity import ActivityLog


def test_events_are_kept_in_order_with_ids() -> None:
    log = ActivityLog(10)
    log.record("key_cooled_down", "a", "first", key="...1111", status=429, retry_after_s=3)
    log.record("failover", "a", "second", key="...2222")
    events = log.events()
    assert [e["description"] for e in events] == ["first", "second"]
    assert [e["id"] for e in events] == [1, 2]
    assert events[0]["status"] == 429
    assert events[0]["retry_after_s"] == 3


def test_filter_and_limit() -> None:
    log = ActivityLog(10)
    for i in range(5):
        log.record("provider_skipped", "a" if i % 2 else "b", f"e{i}")
    assert [e["description"] for e in log.events(provider="a")] == ["e1", "e3"]
    assert [e["description"] for e in log.events(limit=2)] == ["e3", "e4"]
    assert log.events(limit=0) == []


def test_returned_events_are_copies() -> None:
    log = ActivityLog(10)
    log.record("failover", "a", "x")
    log.events()[0]["description"] = "changed"
    assert log.events()[0]["description"] == "x"


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=200))
def test_log_is_bounded_and_keeps_the_newest(max_events: int, n: int) -> None:
    log = ActivityLog(max_events)
    for i in range(n):
        log.record("failover", "p", str(i))
    events = log.events()
    assert len(events) == min(n, max_events)
    assert [e["description"] for e in events] == [str(i) for i in range(max(0, n - max_events), n)]
