"""A step's events, handed to their event loops in one call per loop.

``loop.call_soon_threadsafe`` per token wakes the event loop once per stream per step, each
wake a self-pipe write and a GIL handoff; a step's events together need one. Events outside a
step (admission errors, a crash failing everything) go at once, as before.

Threading contract: used by the worker thread alone; ``deliver`` runs on each event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hugind.engine.types import TokenEvent


class Outbox:
    def __init__(self) -> None:
        self._open = False
        self._held: dict[asyncio.AbstractEventLoop, list[tuple[Any, TokenEvent]]] = {}

    def open(self) -> None:
        """Hold events until :meth:`flush` (the scheduler opens it for one step)."""
        self._open = True

    def put(self, job: Any, event: TokenEvent) -> None:
        if self._open:
            self._held.setdefault(job.loop, []).append((job, event))
        else:
            _send(job.loop, [(job, event)])

    def flush(self) -> None:
        self._open = False
        held, self._held = self._held, {}
        for loop, batch in held.items():
            _send(loop, batch)


def _send(loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, TokenEvent]]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, batch)
    except RuntimeError:  # the loop is closed: nobody is listening any more
        for job, _ in batch:
            job.cancelled = True


def _deliver(batch: list[tuple[Any, TokenEvent]]) -> None:
    for job, event in batch:
        job.events.put_nowait(event)
