"""What a handler learnt about its request, for the access log and the metrics.

Handlers fill one ``RequestFacts`` kept in ``scope["state"]``; the access middleware reads it
when the response has ended (for a stream: when it ends or is cut). Prompt and completion text
are kept only when ``server.log_prompts`` is on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

_KEY = "facts"


@dataclass
class RequestFacts:
    started: float = field(default_factory=time.perf_counter)
    log_prompts: bool = False
    metrics: bool = True  # server.metrics: count this request in the series
    model: str | None = None
    where: str | None = None  # "local" or "remote": the model is configured, so a safe label
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    finish_reason: str | None = None
    prompt: Any = None  # only with log_prompts
    completions: list[list[str]] = field(default_factory=list)  # per choice, with log_prompts

    @staticmethod
    def of(connection: Any) -> RequestFacts:
        """The request's facts (made on first use when no middleware made them)."""
        state = connection.scope.setdefault("state", {})
        facts = state.get(_KEY)
        if not isinstance(facts, RequestFacts):
            facts = state[_KEY] = RequestFacts()
        return facts

    @staticmethod
    def install(scope: Any, log_prompts: bool, metrics: bool = True) -> RequestFacts:
        facts = RequestFacts(log_prompts=log_prompts, metrics=metrics)
        scope.setdefault("state", {})[_KEY] = facts
        return facts

    def local(self, model: str, prompt: Any = None) -> None:
        """A local model answers; ``prompt`` is kept only when prompts are logged."""
        self.model, self.where = model, "local"
        if self.log_prompts:
            self.prompt = prompt

    def remote(self, model: str | None, configured: bool) -> None:
        self.model, self.where = model, "remote" if configured else None

    def completion_text(self) -> list[str]:
        return ["".join(parts) for parts in self.completions]
