"""Interleaving: every round visits every target, in an order that rotates.

A noisy machine (another job, thermal throttling, a page-cache flush) then hits all targets
alike instead of whichever happened to run in that minute. For step ``i`` of round ``r`` the
targets run in the order of the list rotated left by ``(r + i) mod n``: across rounds each step
starts with each target equally often (when rounds is a multiple of n), and within a round
consecutive steps alternate who goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Slot", "interleave", "rotated"]

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class Slot(Generic[S, T]):
    """One unit of work: run ``step`` against ``target`` in ``round``; ``position`` in its group."""

    round: int
    step_index: int
    step: S
    target: T
    position: int


def rotated(items: Sequence[T], k: int) -> list[T]:
    """``items`` rotated left by ``k`` (mod its length)."""
    if not items:
        return []
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def interleave(steps: Sequence[S], targets: Sequence[T], rounds: int) -> list[Slot[S, T]]:
    """All slots of a scenario in the order to run them: rounds, then steps, then targets."""
    if rounds < 0:
        raise ValueError("rounds must be >= 0")
    out: list[Slot[S, T]] = []
    for r in range(rounds):
        for i, step in enumerate(steps):
            for pos, target in enumerate(rotated(targets, r + i)):
                out.append(Slot(r, i, step, target, pos))
    return out
