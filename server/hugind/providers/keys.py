"""API keys of one provider: fingerprints, cooldowns and the order they are tried in.

A key is never printed, logged or returned: everything outside this module sees its
:func:`fingerprint`. Threading: a :class:`KeyPool` belongs to one event loop and is not locked.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

Clock = Callable[[], float]
#: Where a key came from: the YAML (read-only), the admin API (stored encrypted), or the
#: request's own ``client_key_header`` (used for that request only, never kept).
KeySource = Literal["yaml", "runtime", "request"]
#: What a request's own key is called wherever a key would be named (logs, activity, errors).
REQUEST_KEY_LABEL = "(request key)"


def fingerprint(key: str | None) -> str:
    """The last 4 characters of ``key`` as ``...abcd``; short keys show nothing."""
    if key is None:
        return "(no key)"
    if len(key) < 12:
        return "...****"
    return f"...{key[-4:]}"


def yaml_key_id(key: str) -> str:
    """A stable id for a YAML key (same key, same id, across reorders and restarts): 8 hex of
    its SHA-256, which says nothing usable about a high-entropy API key."""
    return "yaml-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class KeyState:
    """One key and its health. ``key`` is ``None`` for a provider that needs no key."""

    key: str | None = field(repr=False)
    id: str = ""
    name: str | None = None
    source: KeySource = "yaml"
    created_at: float | None = None
    cooldown_until: float = 0.0
    failures: int = 0
    successes: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_used_wall: float | None = None
    cooling: bool = field(default=False)

    @property
    def fingerprint(self) -> str:
        return REQUEST_KEY_LABEL if self.source == "request" else fingerprint(self.key)


class KeyPool:
    """The keys of one provider, tried in order starting from the last key that worked.

    Args:
        keys: the provider's keys; empty means the provider takes no ``Authorization``.
        cooldown_s: how long a failing key rests when the upstream gives no ``Retry-After``.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(self, keys: list[str], cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self._states = [KeyState(k, id=yaml_key_id(k)) for k in keys]
        self._keyless = KeyState(None, id="none")  # tried when the pool holds no key
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._current = 0
        self.selected: KeyState | None = None

    @property
    def _tried(self) -> list[KeyState]:
        return self._states or [self._keyless]

    def add(self, state: KeyState) -> None:
        """Append a key (a runtime one); the order of the others is kept."""
        self._states.append(state)

    def remove(self, state: KeyState) -> None:
        current = self._tried[self._current % len(self._tried)]
        self._states = [s for s in self._states if s is not state]
        if self.selected is state:
            self.selected = None
        self._current = self._index(current) if current is not state else 0

    def find(self, key_id: str) -> KeyState | None:
        return next((s for s in self._states if s.id == key_id), None)

    def _index(self, state: KeyState) -> int:
        return next((i for i, s in enumerate(self._tried) if s is state), 0)

    def __len__(self) -> int:
        return len(self._tried)

    @property
    def states(self) -> list[KeyState]:
        return list(self._tried)

    def is_ready(self, state: KeyState) -> bool:
        """Whether ``state``'s cooldown is over."""
        return self._clock() >= state.cooldown_until

    def ready(self) -> Iterator[KeyState]:
        """Keys whose cooldown is over, starting from the last one that worked.

        A generator, so a key that cools down while the caller iterates is skipped.
        """
        states = self._tried
        n = len(states)
        for offset in range(n):
            state = states[(self._current + offset) % n]
            if self.is_ready(state):
                yield state

    def pick(self, after: KeyState | None = None) -> KeyState | None:
        """The next ready key: the selected one, else the last one that worked, or the one
        after ``after``.

        A key that failed without cooling down (a 5xx) stays ready, so a one-key provider
        retries the same key. ``after`` from outside the pool (a request's key) starts over.
        """
        states = self._tried
        n = len(states)
        inside = after is not None and any(s is after for s in states)
        if not inside and self.selected is not None and self.is_ready(self.selected):
            return self.selected
        start = self._index(after) + 1 if inside else self._current
        for offset in range(n):
            state = states[(start + offset) % n]
            if self.is_ready(state):
                return state
        return None

    def next_ready_in_s(self) -> float:
        """Seconds until the first cooling key is ready again (0 if one is ready now)."""
        now = self._clock()
        return max(0.0, min(s.cooldown_until for s in self._tried) - now)

    def mark_success(self, state: KeyState, status: int) -> bool:
        """Record a good answer; returns ``True`` if the key had been cooling down (restored)."""
        restored = state.cooling
        state.cooling = False
        state.successes += 1
        state.last_status = status
        state.last_error = None
        state.last_used_wall = time.time()
        if any(s is state for s in self._tried):  # a request's own key is not in the pool
            self._current = self._index(state)
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

    def cooldown_until_wall(self, state: KeyState) -> float | None:
        """When ``state``'s cooldown ends, in unix seconds (``None`` when it is ready)."""
        rest_s = state.cooldown_until - self._clock()
        return time.time() + rest_s if rest_s > 0 else None

    def describe(self) -> list[dict[str, object]]:
        """Each key's state by fingerprint, for the admin endpoint."""
        now = self._clock()
        return [
            {
                "key": s.fingerprint,
                "id": s.id,
                "source": s.source,
                "state": "ready" if now >= s.cooldown_until else "cooling_down",
                "cooldown_remaining_s": round(max(0.0, s.cooldown_until - now), 3),
                "successes": s.successes,
                "failures": s.failures,
                "last_status": s.last_status,
                "last_error": s.last_error,
                "last_used": s.last_used_wall,
            }
            for s in self._tried
        ]
