"""The rate limiter applied to HTTP: the guard, the ``x-ratelimit-*`` headers, token reports.

The guard counts every authenticated request of a tenant that has limits and remembers the
tenant in the request scope; ``add_ratelimit_headers`` (a ``before_send`` hook) then puts
OpenAI's six headers on whatever response goes out, streamed, 429 or other. Handlers report
tokens with :func:`record_tokens`, and generation handlers submit through :func:`submit`, which
holds the tenant's concurrency slots until each sequence ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope

from hugind.api.auth import tenant
from hugind.api.ratelimit import RateLimiter, is_limited, reset_text
from hugind.api.settings import Live
from hugind.api.sticky import note_session
from hugind.config import RateLimitConfig
from hugind.engine.interface import Engine
from hugind.engine.types import GenerationRequest, TokenEvent

_SCOPE_KEY = "hugind_ratelimit"


@dataclass(frozen=True)
class _Metered:
    """One limited request: whose windows it counts in, under which limits, until when it
    may wait."""

    limiter: RateLimiter
    tenant: str
    limits: RateLimitConfig
    deadline: float


def _metered(scope: Any) -> _Metered | None:
    state = scope.get("state") if isinstance(scope, dict) else None
    return state.get(_SCOPE_KEY) if isinstance(state, dict) else None


async def rate_limit_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Count the request in its tenant's windows; wait (``max_wait_s``) or raise 429."""
    if handler.opt.get("public") or handler.opt.get("admin"):
        return
    live = Live.of(connection)
    who = tenant(connection)
    limits = live.settings.limits_for(who)
    if not is_limited(limits):
        return
    entry = _Metered(live.limiter, who, limits, time.time() + (limits.max_wait_s or 0.0))
    # Stored before admitting, so a 429 carries the headers too.
    connection.scope.setdefault("state", {})[_SCOPE_KEY] = entry  # type: ignore[typeddict-item]
    await live.limiter.admit(who, limits, entry.deadline)


async def add_ratelimit_headers(message: Message, scope: Scope) -> None:
    """``before_send``: OpenAI's ``x-ratelimit-*`` headers on a limited tenant's responses."""
    if message["type"] != "http.response.start":
        return
    entry = _metered(scope)
    if entry is None:
        return
    headers = MutableScopeHeaders.from_message(message)
    for kind, window in (await entry.limiter.windows(entry.tenant, entry.limits)).items():
        headers[f"x-ratelimit-limit-{kind}"] = str(window.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(window.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = reset_text(window.reset_s)


async def record_tokens(connection_or_scope: Any, n: int) -> None:
    """Count ``n`` tokens (prompt + completion, once known) against the caller's window."""
    scope = getattr(connection_or_scope, "scope", connection_or_scope)
    entry = _metered(scope)
    if entry is not None:
        await entry.limiter.record_tokens(entry.tenant, entry.limits, n)


async def submit(connection: Any, engine: Engine, reqs: list[GenerationRequest],
                 ) -> list[AsyncIterator[TokenEvent]]:
    """``engine.submit_many(reqs)`` inside the caller's ``max_concurrent`` (one slot per
    sequence, waiting up to ``max_wait_s``); each stream gives its slot back and reports its
    tokens when it ends, is closed, or is dropped unread."""
    note_session(connection, reqs[0].session if reqs else None)
    entry = _metered(connection.scope)
    if entry is None:
        return await engine.submit_many(reqs)
    await entry.limiter.acquire(entry.tenant, entry.limits, len(reqs), entry.deadline)
    try:
        streams = await engine.submit_many(reqs)
    except BaseException:
        entry.limiter.release(entry.tenant, len(reqs))
        raise
    return [_counted(stream, entry, _Slot(entry), len(req.prompt_tokens) if i == 0 else 0)
            for i, (stream, req) in enumerate(zip(streams, reqs, strict=True))]


class _Slot:
    """One sequence's concurrency slot; given back once, also when its stream is garbage
    collected without ever being started (its generator's ``finally`` never runs then)."""

    def __init__(self, entry: _Metered) -> None:
        self._entry: _Metered | None = entry
        self._loop = asyncio.get_running_loop()

    def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.limiter.release(entry.tenant, 1)

    def __del__(self) -> None:
        if self._entry is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                self._loop.call_soon_threadsafe(self.release)


async def _counted(stream: AsyncIterator[TokenEvent], entry: _Metered, slot: _Slot,
                   n_prompt: int) -> AsyncIterator[TokenEvent]:
    generated = 0
    try:
        async for ev in stream:
            generated = ev.usage.completion_tokens if ev.usage is not None \
                else generated + len(ev.token_ids)
            yield ev
    finally:
        slot.release()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()
        await entry.limiter.record_tokens(entry.tenant, entry.limits, n_prompt + generated)
