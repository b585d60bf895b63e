"""Watch a request's engine streams: time to first token, inter-token latency and token counts
go to the metrics and into the request's facts, as the events are consumed.

A pass-through iterator rather than a generator, so ``aclose`` still reaches the engine stream
at once (its ``finally`` cancels the sequence on the worker)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from hugind.api.facts import RequestFacts
from hugind.api.runtime import Runtime
from hugind.engine.types import TokenEvent
from hugind.metrics import GENERATION_TOKENS, INTER_TOKEN_LATENCY, TIME_TO_FIRST_TOKEN


def local_facts(request: Any, model: str, prompt: Any = None) -> RequestFacts:
    """Note that a local model answers ``request``, under its configured id; ``prompt`` is
    kept for the access log only with ``server.log_prompts``."""
    info = Runtime.of(request).engine.resolve_model(model)
    facts = RequestFacts.of(request)
    facts.local(info.id if info is not None else model, prompt)
    return facts


def observed(streams: list[AsyncIterator[TokenEvent]], facts: RequestFacts,
             n_prompt: int) -> list[AsyncIterator[TokenEvent]]:
    """``streams``, watched; ``n_prompt`` is the request's prompt tokens (all prompts)."""
    facts.prompt_tokens = n_prompt
    if facts.log_prompts:
        facts.completions = [[] for _ in streams]
    return [_Observed(i, s, facts) for i, s in enumerate(streams)]


class _Observed:
    """One choice's stream; consumed on the event loop only."""

    def __init__(self, index: int, stream: AsyncIterator[TokenEvent], facts: RequestFacts) -> None:
        self._index, self._stream, self._facts = index, stream, facts
        model = facts.model or "other"
        self._ttft = TIME_TO_FIRST_TOKEN.labels(model)
        self._itl = INTER_TOKEN_LATENCY.labels(model)
        self._tokens = GENERATION_TOKENS.labels(model)
        self._last: float | None = None

    def __aiter__(self) -> _Observed:
        return self

    async def __anext__(self) -> TokenEvent:
        ev = await self._stream.__anext__()
        self._note(ev)
        return ev

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()

    def _note(self, ev: TokenEvent) -> None:
        facts, n = self._facts, len(ev.token_ids)
        if n:
            t = time.perf_counter()
            if facts.ttft_s is None:
                facts.ttft_s = t - facts.started
                if facts.metrics:
                    self._ttft.observe(facts.ttft_s)
            if self._last is not None and facts.metrics:  # tokens together share the wait
                for _ in range(n):
                    self._itl.observe((t - self._last) / n)
            self._last = t
            if facts.metrics:
                self._tokens.inc(n)
        if facts.log_prompts and ev.text:
            facts.completions[self._index].append(ev.text)
        if ev.finish_reason is not None:
            self._finish(ev)

    def _finish(self, ev: TokenEvent) -> None:
        facts, reason = self._facts, ev.finish_reason.value if ev.finish_reason else None
        if facts.finish_reason is None or facts.finish_reason == reason:
            facts.finish_reason = reason
        elif reason not in facts.finish_reason.split(","):  # choices that ended differently
            facts.finish_reason += f",{reason}"
        if ev.usage is not None:
            facts.completion_tokens = (facts.completion_tokens or 0) + ev.usage.completion_tokens
            if self._index == 0:  # as usage_dict reports it
                facts.cached_tokens = ev.usage.cached_tokens
