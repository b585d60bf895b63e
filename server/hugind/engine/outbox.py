"""A step's events, handed to their event loops in one call per loop, from a thread of their
own.

``loop.call_soon_threadsafe`` per token wakes the event loop once per stream per step, each
wake a self-pipe write and a GIL handoff; a step's events together need one. Made by the
worker, even that one costs it: the write wakes the loop, which takes the GIL to deliver, and
the worker then waits behind it (measured with cProfile at 8 streams: ~0.29 ms of each step in
``socket.send``). So the worker only queues a step's events; a publisher thread makes the
call, and gets the GIL when the worker lets it go, in the next ``llama_decode``: the loop
delivers while the model computes. It also renders the text of :class:`Draft` events (see
``hugind.engine.rendering``) before handing them on. One queue for every event of a
scheduler, so a job's events (a token, then its error) keep their order.

Threading contract: ``open``/``put``/``flush``/``close`` on the worker thread alone; the
publisher thread calls ``call_soon_threadsafe``; ``_deliver`` runs on each event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from hugind.engine.rendering import Draft
from hugind.engine.types import FinishReason, TokenEvent
from hugind.errors import InternalError

log = logging.getLogger(__name__)

_Held = list[tuple[Any, TokenEvent | Draft]]


class Outbox:
    def __init__(self, name: str = "engine") -> None:
        self._open = False
        self._held: _Held = []
        self._queue: queue.SimpleQueue[_Held | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._publish, name=f"hugind-{name}-events",
                                        daemon=True)
        self._thread.start()

    def open(self) -> None:
        """Hold events until :meth:`flush` (the scheduler opens it for one step)."""
        self._open = True

    def put(self, job: Any, event: TokenEvent | Draft) -> None:
        if self._open:
            self._held.append((job, event))
        else:
            self._queue.put([(job, event)])

    def flush(self) -> None:
        self._open = False
        held, self._held = self._held, []
        if held:
            self._queue.put(held)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, then stop the publisher."""
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout)

    def _publish(self) -> None:
        while (held := self._queue.get()) is not None:
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, TokenEvent]]] = {}
            for job, event in _rendered(held):
                by_loop.setdefault(job.loop, []).append((job, event))
            for loop, batch in by_loop.items():
                try:
                    _send(loop, batch)
                except Exception:  # the publisher must outlive one bad loop
                    log.exception("could not hand events to an event loop")


def _rendered(batch: list[tuple[Any, TokenEvent | Draft]]) -> list[tuple[Any, TokenEvent]]:
    out: list[tuple[Any, TokenEvent]] = []
    for job, event in batch:
        if isinstance(event, Draft):
            if job.cancelled:  # nobody listens, or its text already failed
                continue
            try:
                event = event.render(job.text)
            except Exception:  # that job fails alone; the worker ends it as cancelled
                log.exception("could not detokenize a token of a request")
                job.cancelled = True
                event = TokenEvent("", finish_reason=FinishReason.ERROR, error=InternalError(
                    "the engine failed on this request; other requests are unaffected"))
        out.append((job, event))
    return out


def _send(loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, TokenEvent]]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, batch)
    except RuntimeError:  # the loop is closed: nobody is listening any more
        for job, _ in batch:
            job.cancelled = True


def _deliver(batch: list[tuple[Any, TokenEvent]]) -> None:
    for job, event in batch:
        job.events.put_nowait(event)
