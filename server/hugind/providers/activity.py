"""A bounded, in-memory log of failover events, newest last.

Events name keys only by fingerprint. Threading: used from one event loop, not locked.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Literal

EventKind = Literal[
    "key_cooled_down", "key_restored", "attempt_failed", "provider_skipped", "provider_tripped",
    "provider_restored", "failover",
]


class ActivityLog:
    """The last ``max_events`` failover events.

    Args:
        max_events: how many events are kept; older ones are dropped.
    """

    def __init__(self, max_events: int = 500) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._events)

    def record(
        self, event: EventKind, provider: str, description: str, *,
        key: str | None = None, status: int | None = None, retry_after_s: float | None = None,
    ) -> dict[str, Any]:
        """Append an event; ``key`` must already be a fingerprint."""
        self._seq += 1
        entry: dict[str, Any] = {
            "id": self._seq,
            "time": time.time(),
            "event": event,
            "provider": provider,
            "key": key,
            "status": status,
            "retry_after_s": retry_after_s,
            "description": description,
        }
        self._events.append(entry)
        return entry

    def events(self, limit: int | None = None, provider: str | None = None) -> list[dict[str, Any]]:
        """Copies of the kept events, oldest first, optionally filtered and cut to ``limit``."""
        events = [dict(e) for e in self._events if provider is None or e["provider"] == provider]
        if limit is not None:
            events = events[-limit:] if limit > 0 else []
        return events
