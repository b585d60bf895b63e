from __future__ import annotations

import pytest

from hugind.providers.keys import KeyPool, fingerprint


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("key", "fp"),
    [("sk-proj-abcdefgh1234", "...1234"), ("short-key", "...****"), (None, "(no key)")],
)
def test_fingerprint(key: str | None, fp: str) -> None:
    assert fingerprint(key) == fp


def test_fingerprint_never_contains_more_than_four_chars_of_the_key() -> None:
    key = "sk-0123456789abcdefXYZW"
    assert fingerprint(key) == "...XYZW"
    assert key[:-4] not in fingerprint(key)


def keys(n: int) -> list[str]:
    return [f"sk-test-key-number-{i:04d}" for i in range(n)]


def test_ready_starts_with_first_key_and_skips_cooling_ones() -> None:
    clock = FakeClock()
    pool = KeyPool(keys(3), cooldown_s=60, clock=clock)
    first = next(pool.ready())
    assert first.key == keys(3)[0]
    pool.mark_failure(first, "HTTP 429", status=429)
    assert [s.key for s in pool.ready()] == keys(3)[1:]
    clock.now += 59.9
    assert [s.key for s in pool.ready()] == keys(3)[1:]
    clock.now += 0.2
    assert [s.key for s in pool.ready()] == keys(3)


def test_last_working_key_is_tried_first() -> None:
    pool = KeyPool(keys(3), cooldown_s=60, clock=FakeClock())
    states = pool.states
    pool.mark_success(states[1], 200)
    assert [s.key for s in pool.ready()] == [keys(3)[1], keys(3)[2], keys(3)[0]]


def test_generator_skips_a_key_cooled_during_iteration() -> None:
    pool = KeyPool(keys(3), cooldown_s=60, clock=FakeClock())
    seen = []
    for state in pool.ready():
        seen.append(state.key)
        if state.key == keys(3)[0]:
            pool.mark_failure(pool.states[1], "HTTP 500", status=500)
    assert seen == [keys(3)[0], keys(3)[2]]


def test_retry_after_wins_over_cooldown() -> None:
    clock = FakeClock()
    pool = KeyPool(keys(1), cooldown_s=60, clock=clock)
    state = pool.states[0]
    assert pool.mark_failure(state, "HTTP 429", status=429, retry_after_s=5) == 5
    assert pool.next_ready_in_s() == pytest.approx(5)
    clock.now += 5
    assert list(pool.ready()) == [state]


def test_restored_is_reported_once_after_a_cooldown() -> None:
    clock = FakeClock()
    pool = KeyPool(keys(1), cooldown_s=1, clock=clock)
    state = pool.states[0]
    pool.mark_failure(state, "HTTP 500", status=500)
    clock.now += 2
    assert pool.mark_success(state, 200) is True
    assert pool.mark_success(state, 200) is False


def test_zero_cooldown_keeps_the_key_ready() -> None:
    pool = KeyPool(keys(1), cooldown_s=0, clock=FakeClock())
    state = pool.states[0]
    pool.mark_failure(state, "HTTP 500", status=500)
    assert list(pool.ready()) == [state]
    assert pool.mark_success(state, 200) is False


def test_keyless_provider_has_one_slot() -> None:
    pool = KeyPool([], cooldown_s=60, clock=FakeClock())
    assert len(pool) == 1
    assert next(pool.ready()).key is None


def test_describe_shows_fingerprints_only() -> None:
    clock = FakeClock()
    pool = KeyPool(keys(2), cooldown_s=30, clock=clock)
    pool.mark_failure(pool.states[0], "HTTP 429", status=429)
    described = pool.describe()
    assert [d["key"] for d in described] == ["...0000", "...0001"]
    assert described[0]["state"] == "cooling_down"
    assert described[0]["cooldown_remaining_s"] == 30
    assert described[1]["state"] == "ready"
    for key in keys(2):
        assert key not in repr(described)
