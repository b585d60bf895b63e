from __future__ import annotations

from pathlib import Path

import pytest
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


def test_actions_are_named_for_key_and_failover_events() -> None:
    log = ActivityLog(10)
    for event in ("key_added", "key_deleted", "key_selected", "key_unselected",
                  "key_cooled_down", "key_restored", "failover", "attempt_failed"):
        log.record(event, "a", event, key="...1111")  # type: ignore[arg-type]
    assert [e["action"] for e in log.events()] == [
        "ADD", "DELETE", "SELECT", "UNSELECT", "COOLDOWN", "RESTORE", "FAILOVER", None]
    assert len(log.events(actions_only=True)) == 7
    assert [e["event"] for e in log.events(action="cooldown")] == ["key_cooled_down"]


def test_time_filters_are_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    log = ActivityLog(10)
    for t in (100.0, 200.0, 300.0):
        monkeypatch.setattr("hugind.providers.activity.time.time", lambda t=t: t)
        log.record("failover", "a", str(t))
    assert [e["time"] for e in log.events(since=200)] == [200.0, 300.0]
    assert [e["time"] for e in log.events(until=200)] == [100.0, 200.0]
    assert [e["time"] for e in log.events(since=150, until=250)] == [200.0]


def test_events_are_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "activity.jsonl"
    first = ActivityLog(10, path)
    first.record("key_added", "a", "added", key="...1111")
    first.record("failover", "b", "served", key="...2222")
    again = ActivityLog(10, path)
    assert [(e["id"], e["action"], e["provider"]) for e in again.events()] == [
        (1, "ADD", "a"), (2, "FAILOVER", "b")]
    assert again.record("key_deleted", "a", "gone")["id"] == 3  # ids go on


def test_the_file_stays_bounded_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "activity.jsonl"
    log = ActivityLog(5, path)
    for i in range(23):
        log.record("failover", "p", str(i))
    assert len(path.read_text().splitlines()) < 10  # rewritten at 2x max_events
    with path.open("a") as f:
        f.write('{"time": 1, "provid')  # a crash mid-write
    again = ActivityLog(5, path)
    assert [e["description"] for e in again.events()] == ["18", "19", "20", "21", "22"]
