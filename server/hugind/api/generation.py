"""Shared by chat and completions: wire sampling fields -> engine requests, n-way fan-out."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hugind.api.protocol import MAX_NAME_CHARS, SamplingFields
from hugind.engine.interface import Engine
from hugind.engine.types import FinishReason, SamplingParams, TokenEvent, TokenLogprob, Usage
from hugind.errors import InvalidRequestError

_TOKEN_ID = re.compile(r"-?[0-9]{1,10}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def stops(req: SamplingFields) -> list[str]:
    """The request's stop strings; their count and length are bounded by the wire schema
    (``MAX_STOPS``, ``MAX_STOP_CHARS``)."""
    if req.stop is None:
        return []
    items = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    return [s for s in items if s]


def logit_bias(req: SamplingFields) -> dict[int, float]:
    """Token id -> bias; keys are decimal token ids (``"42"``), checked against the vocabulary
    by the engine. The entry count is bounded by the wire schema (``MAX_LOGIT_BIAS``)."""
    out: dict[int, float] = {}
    for key, value in (req.logit_bias or {}).items():
        if not _TOKEN_ID.fullmatch(key):
            raise InvalidRequestError(f"logit_bias keys must be token ids, got '{key[:32]}'",
                                      param="logit_bias")
        out[int(key)] = value
    return out


def sampling(req: SamplingFields, *, seed_offset: int = 0, grammar: str | None = None,
             json_schema: Any = None) -> SamplingParams:
    seed = None if req.seed is None else req.seed + seed_offset
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=req.min_p or 0.0,
        repeat_penalty=req.repeat_penalty or 1.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        logit_bias=logit_bias(req),
        seed=seed,
        grammar=grammar if grammar is not None else req.grammar,
        json_schema=json_schema,
    )


#: Headers that name a conversation, in precedence order: Hugind's own, Claude Code's, Codex's.
SESSION_HEADERS = ("X-Session-Id", "x-claude-code-session-id", "session_id")


def session_name(req: object, headers: Mapping[str, str] | None = None, *,
                 user_id: str | None = None) -> str | None:
    """The conversation a request continues: the first of these that is present and not empty.

    1. the ``X-Session-Id`` header;
    2. the ``x-claude-code-session-id`` header (Claude Code);
    3. the ``session_id`` header (Codex CLI);
    4. ``user_id``, Anthropic's ``metadata.user_id``;
    5. ``req.prompt_cache_key`` (OpenAI);
    6. ``req.user`` (OpenAI).

    Headers win because a harness sets them per conversation, while body fields are often one
    value per user or deployment. ``headers`` must look names up case-insensitively (Litestar's
    ``Headers`` do). ``req`` is any request with optional ``prompt_cache_key`` and ``user``.
    The engine keys every session by (the caller's API key, this name), so two keys never share
    one. Names are opaque client text (the session store hashes them into file names): body
    fields are bounded by the wire schema, and any of these headers over ``MAX_NAME_CHARS`` is
    a 400 naming it, present or not the winner, so a client learns of it at once.
    """
    found: list[str | None] = []
    for name in SESSION_HEADERS:
        value = headers.get(name) if headers is not None else None
        if value is not None and len(value) > MAX_NAME_CHARS:
            raise InvalidRequestError(f"the {name} header is longer than {MAX_NAME_CHARS} "
                                      "characters", param=name)
        found.append(value)
    found += [user_id, getattr(req, "prompt_cache_key", None), getattr(req, "user", None)]
    return next((v for v in found if v), None)


@dataclass
class Choice:
    """What one choice has produced so far."""

    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    prompt_logprobs: list[TokenLogprob] | None = None

    def add(self, ev: TokenEvent) -> None:
        if ev.prompt_logprobs is not None:
            self.prompt_logprobs = ev.prompt_logprobs
        self.text.append(ev.text)
        self.logprobs.extend(ev.logprobs)
        self.token_ids.extend(ev.token_ids)
        if ev.finish_reason is not None:
            self.finish_reason = ev.finish_reason
            self.usage = ev.usage

    @property
    def content(self) -> str:
        return "".join(self.text)

    @property
    def score(self) -> float:
        """Mean logprob per generated token, OpenAI's "highest log probability per token" for
        ``best_of`` (needs logprobs on the request)."""
        values = [lp.logprob for lp in self.logprobs if lp.logprob is not None]
        return sum(values) / len(values) if values else -math.inf


async def merged(streams: list[AsyncIterator[TokenEvent]]) -> AsyncIterator[tuple[int,
                                                                                    TokenEvent]]:
    """Interleave several choices' events as they come; closing this closes them all."""
    if len(streams) == 1:
        async for ev in streams[0]:
            yield 0, ev
        return
    queue: asyncio.Queue[tuple[int, TokenEvent | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, it: AsyncIterator[TokenEvent]) -> None:
        try:
            async for ev in it:
                await queue.put((i, ev))
            await queue.put((i, None))
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, it)) for i, it in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for it in streams:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except RuntimeError:  # still running in a cancelled task
                    pass


async def collect(engine: Engine, streams: list[AsyncIterator[TokenEvent]]) -> list[Choice]:
    choices = [Choice(i) for i in range(len(streams))]
    async for i, ev in merged(streams):
        choices[i].add(ev)
    return choices


def usage_dict(choices: list[Choice], n_prompt: int) -> dict[str, Any]:
    completion = sum(c.usage.completion_tokens for c in choices if c.usage)
    cached = choices[0].usage.cached_tokens if choices and choices[0].usage else 0
    return {
        "prompt_tokens": n_prompt,
        "completion_tokens": completion,
        "total_tokens": n_prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def finish_reason(reason: FinishReason | None) -> str:
    if reason is None or reason in (FinishReason.CANCELLED, FinishReason.ERROR):
        return "stop"
    return reason.value
