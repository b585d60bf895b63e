"""A generation job: created on the event loop, run by a model's worker thread.

Threading contract: the event loop thread creates a ``Job`` and may only set ``cancelled``
(through ``ModelWorker.cancel``; the publisher sets it too, for a loop that is gone or a text
that failed); every other field is written by the worker thread alone, but for what its
``TextStream`` holds when the request has no stop strings (``hugind.engine.rendering``).
Events cross back to the loop through ``loop.call_soon_threadsafe`` (a step's together, see
``hugind.engine.outbox``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from hugind.engine.rendering import Draft
from hugind.engine.stops import TextStream
from hugind.engine.types import GenerationRequest, TokenEvent, TokenLogprob

UNREAD = object()  # ``Job.stored_stamp`` before (or without) a look at the store


class JobState(str, Enum):
    QUEUED = "queued"  # in the inbox or waiting for a sequence
    PREFILL = "prefill"  # prompt tokens left to read
    SAMPLING = "sampling"  # its next token is being drawn beside the step (a grammar)
    DECODE = "decode"  # ``next_token`` goes into the next step
    DONE = "done"


@dataclass(eq=False)
class Job:
    req: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[TokenEvent]
    sampler: Any = None  # a ``TokenSampler``; the engine builds it before submitting
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    counted: bool = True  # still counted in its worker's queue depth (guarded by its lock)
    epoch: int = 0  # the worker incarnation it was submitted to
    deadline: float | None = None  # monotonic; server.request_timeout_s
    # A shared session store's version of the job's conversation (a ``hugind.sessions.Stamp``
    # or None), read off the worker before submitting; ``UNREAD`` when it was not.
    stored_stamp: Any = UNREAD
    # Worker-owned state below.
    state: JobState = JobState.QUEUED
    slot: Any = None
    pending: list[int] = field(default_factory=list)
    next_token: int | None = None
    text: TextStream | None = None
    n_generated: int = 0
    cached_tokens: int = 0
    store_session: bool = True
    prompt_lps: list[TokenLogprob] | None = None  # filled while prefilling, when requested
    # A token being drawn beside the step, and the logits row it is drawn from.
    drawing: tuple[concurrent.futures.Future[int], np.ndarray] | None = None
    draw_waited: bool = False  # a step has already waited for this draw
    outbox: Any = None  # the scheduler's ``Outbox`` once it runs the job

    @property
    def done(self) -> bool:
        return self.state is JobState.DONE

    def past_deadline(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def emit(self, event: TokenEvent | Draft) -> None:
        if self.outbox is not None:
            self.outbox.put(self, event)
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True
