"""API keys of one provider: fingerprints, cooldowns and the order they are tried in.

A key is never printed, logged or returned: everything outside this module sees its
:func:`fingerprint`. Threading: a :class:`KeyPool` belongs to one event loop and is not locked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Clock = Callable[[], float]


def fingerprint(key: str | None) -> str:
    """The last 4 characters of ``key`` as ``...abcd``; short keys show nothing."""
    if key is None:
        return "(no key)"
    if len(key) < 12:
        return "...****"
    return f"...{key[-4:]}"


@dataclass
class KeyState:
    """One key and its health. ``key`` is ``None`` for a provider that needs no key."""

    key: str | None
    cooldown_until: float = 0.0
    failures: int = 0
    successes: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_used_wall: float | None = None
    cooling: bool = field(default=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


class KeyPool:
    """The keys of one provider, tried in order starting from the last key that worked.

    Args:
        keys: the provider's keys; empty means the provider takes no ``Authorization``.
        cooldown_s: how long a failing key rests when the upstream gives no ``Retry-After``.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(self, keys: list[str], cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self._states = [KeyState(k) for k in keys] if keys else [KeyState(None)]
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._current = 0

    def __len__(self) -> int:
        return len(self._states)

    @property
    def states(self) -> list[KeyState]:
        return list(self._states)

    def is_ready(self, state: KeyState) -> bool:
        """Whether ``state``'s cooldown is over."""
        return self._clock() >= state.cooldown_until

    def ready(self) -> Iterator[KeyState]:
        """Keys whose cooldown is over, starting from the last one that worked.

        A generator, so a key that cools down while the caller iterates is skipped.
        """
        n = len(self._states)
        for offset in range(n):
            state = self._states[(self._current + offset) % n]
            if self.is_ready(state):
                yield state

    def pick(self, after: KeyState | None = None) -> KeyState | None:
        """The next ready key: the last one that worked, or the one after ``after``.

        A key that failed without cooling down (a 5xx) stays ready, so a one-key provider
        retries the same key.
        """
        n = len(self._states)
        start = self._current if after is None else self._states.index(after) + 1
        for offset in range(n):
            state = self._states[(start + offset) % n]
            if self.is_ready(state):
                return state
        return None

    def next_ready_in_s(self) -> float:
        """Seconds until the first cooling key is ready again (0 if one is ready now)."""
        now = self._clock()
        return max(0.0, min(s.cooldown_until for s in self._states) - now)

    def mark_success(self, state: KeyState, status: int) -> bool:
        """Record a good answer; returns ``True`` if the key had been cooling down (restored)."""
        restored = state.cooling
        state.cooling = False
        state.successes += 1
        state.last_status = status
        state.last_error = None
        state.last_used_wall = time.time()
        self._current = self._states.index(state)
        return restored

    def mark_failure(
        self, state: KeyState, reason: str, *, status: int | None = None,
        retry_after_s: float | None = None,
    ) -> float:
        """Cool ``state`` down; ``Retry-After`` wins over the configured cooldown.

        Returns:
            The cooldown applied, in seconds.
        """
        rest_s = self._cooldown_s if retry_after_s is None else max(0.0, retry_after_s)
        state.cooldown_until = self._clock() + rest_s
        state.cooling = rest_s > 0
        state.failures += 1
        state.last_status = status
        state.last_error = reason
        state.last_used_wall = time.time()
        return rest_s

    def mark_error(self, state: KeyState, reason: str, *, status: int | None = None) -> None:
        """Record a failure that says nothing about the key (a 5xx, a timeout): no cooldown."""
        state.failures += 1
        state.last_status = status
        state.last_error = reason
        state.last_used_wall = time.time()

    def describe(self) -> list[dict[str, object]]:
        """Each key's state by fingerprint, for the admin endpoint."""
        now = self._clock()
        return [
            {
                "key": s.fingerprint,
                "state": "ready" if now >= s.cooldown_until else "cooling_down",
                "cooldown_remaining_s": round(max(0.0, s.cooldown_until - now), 3),
                "successes": s.successes,
                "failures": s.failures,
                "last_status": s.last_status,
                "last_error": s.last_error,
                "last_used": s.last_used_wall,
            }
            for s in self._states
        ]
