"""A bounded log of provider and key events, newest last, kept across restarts.

Events name keys only by fingerprint. Each has an ``event`` (the failover's own vocabulary,
shown by ``/admin/providers``) and, for the ones ``/admin/activity`` lists, an ``action``:
``ADD``, ``DELETE``, ``SELECT``, ``UNSELECT`` (the admin API), ``COOLDOWN``, ``RESTORE`` and
``FAILOVER`` (the failover).

With a ``path`` every event is appended to a JSON-lines file as it happens and the last
``max_events`` are read back at start; once the file holds twice that many lines it is rewritten
(atomically) with the last ``max_events``, so it stays bounded without a rewrite per event.

Threading: used from one event loop, not locked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

EventKind = Literal[
    "key_cooled_down", "key_restored", "attempt_failed", "provider_skipped", "provider_tripped",
    "provider_restored", "failover", "key_added", "key_deleted", "key_selected",
    "key_unselected",
]
Action = Literal["ADD", "DELETE", "SELECT", "UNSELECT", "COOLDOWN", "RESTORE", "FAILOVER"]
ACTIONS: dict[str, Action] = {
    "key_added": "ADD", "key_deleted": "DELETE", "key_selected": "SELECT",
    "key_unselected": "UNSELECT", "key_cooled_down": "COOLDOWN", "key_restored": "RESTORE",
    "failover": "FAILOVER",
}
FILE_NAME = "activity.jsonl"
log = logging.getLogger("hugind.providers")


class ActivityLog:
    """The last ``max_events`` events.

    Args:
        max_events: how many events are kept; older ones are dropped.
        path: the JSON-lines file they are kept in across restarts (``None``: memory only).
    """

    def __init__(self, max_events: int = 10_000, path: Path | None = None) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._max = max_events
        self._path = path
        self._lines = 0
        self._seq = 0
        if path is not None:
            self._read(path)

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
            "action": ACTIONS.get(event),
            "provider": provider,
            "key": key,
            "status": status,
            "retry_after_s": retry_after_s,
            "description": description,
        }
        self._events.append(entry)
        self._append(entry)
        return entry

    def events(
        self, limit: int | None = None, provider: str | None = None, *,
        action: str | None = None, since: float | None = None, until: float | None = None,
        actions_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Copies of the kept events, oldest first, filtered, then cut to the last ``limit``.

        Args:
            action: only this action (``ADD``...), case-insensitive.
            since, until: unix seconds, both inclusive.
            actions_only: only events that have an action (what ``/admin/activity`` lists).
        """
        wanted = action.upper() if action is not None else None
        events = [
            dict(e) for e in self._events
            if (provider is None or e["provider"] == provider)
            and (wanted is None or e.get("action") == wanted)
            and (not actions_only or e.get("action") is not None)
            and (since is None or e["time"] >= since)
            and (until is None or e["time"] <= until)
        ]
        if limit is not None:
            events = events[-limit:] if limit > 0 else []
        return events

    def _read(self, path: Path) -> None:
        try:
            with path.open(encoding="utf-8") as f:
                for line in f:
                    self._lines += 1
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash mid-write
                    if isinstance(entry, dict) and "time" in entry and "provider" in entry:
                        self._events.append(entry)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("activity log %s unreadable (%s); starting empty", path, exc.strerror)
            return
        self._seq = max((int(e.get("id", 0)) for e in self._events), default=0)

    def _append(self, entry: dict[str, Any]) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            self._lines += 1
            if self._lines >= 2 * self._max:
                self._rotate()
        except OSError as exc:  # a full disk must not fail the request that caused the event
            log.warning("activity log %s not written (%s)", self._path, exc.strerror)

    def _rotate(self) -> None:
        assert self._path is not None
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in self._events)
        tmp.replace(self._path)
        self._lines = len(self._events)
