"""A generation job: created on the event loop, run by a model's worker thread.

Threading contract: the event loop thread creates a ``Job`` and may only set ``cancelled``;
every other field is written by the worker thread alone. Events cross back to the loop through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hugind.engine.stops import TextStream
from hugind.engine.types import GenerationRequest, TokenEvent, TokenLogprob


@dataclass(eq=False)
class Job:
    req: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[TokenEvent]
    cancelled: bool = False
    # Worker-owned state below.
    slot: Any = None
    pending: list[int] = field(default_factory=list)
    next_token: int | None = None
    sampler: Any = None
    text: TextStream | None = None
    n_generated: int = 0
    cached_tokens: int = 0
    store_session: bool = True
    done: bool = False
    prompt_lps: list[TokenLogprob] | None = None  # filled while prefilling, when requested

    def emit(self, event: TokenEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True
