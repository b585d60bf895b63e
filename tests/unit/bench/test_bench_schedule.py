"""The interleaving schedule of the bench harness."""

from __future__ import annotations

from collections import Counter

import pytest
from bench.schedule import interleave, rotated


def test_rotated() -> None:
    assert rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated(["a", "b", "c"], 5) == ["c", "a", "b"]
    assert rotated([], 3) == []


def test_every_round_and_step_visits_every_target_once() -> None:
    targets = ["hugind", "llama-server", "llama-cpp-python"]
    steps = [64, 512, 2000]
    slots = interleave(steps, targets, rounds=4)
    assert len(slots) == 4 * 3 * 3
    groups: dict[tuple[int, int], list[str]] = {}
    for s in slots:
        groups.setdefault((s.round, s.step_index), []).append(s.target)
    assert len(groups) == 12
    for order in groups.values():
        assert sorted(order) == sorted(targets)


def test_order_is_rounds_then_steps_then_targets() -> None:
    slots = interleave(["x", "y"], ["a", "b"], rounds=2)
    assert [(s.round, s.step, s.target, s.position) for s in slots] == [
        (0, "x", "a", 0),
        (0, "x", "b", 1),
        (0, "y", "b", 0),
        (0, "y", "a", 1),
        (1, "x", "b", 0),
        (1, "x", "a", 1),
        (1, "y", "a", 0),
        (1, "y", "b", 1),
    ]


@pytest.mark.parametrize("n_targets", [1, 2, 3, 4])
def test_first_position_is_balanced_per_step(n_targets: int) -> None:
    targets = [f"t{i}" for i in range(n_targets)]
    steps = [1, 2, 4, 8]
    rounds = 2 * n_targets
    slots = interleave(steps, targets, rounds)
    for i in range(len(steps)):
        firsts = Counter(s.target for s in slots if s.step_index == i and s.position == 0)
        assert set(firsts.values()) == {rounds // n_targets}
        assert set(firsts) == set(targets)


def test_each_target_sees_each_step_rounds_times() -> None:
    slots = interleave(["a", "b", "c"], ["p", "q"], rounds=3)
    assert Counter((s.step, s.target) for s in slots) == {(st, t): 3 for st in "abc" for t in "pq"}


def test_zero_rounds_and_errors() -> None:
    assert interleave([1], ["a"], 0) == []
    assert interleave([], ["a"], 3) == []
    assert interleave([1], [], 3) == []
    with pytest.raises(ValueError):
        interleave([1], ["a"], -1)
