"""The access log and the request metrics: one line and one count per request, written when
its response has ended (a stream: when it ends or is cut).

A pure ASGI middleware around the whole app (404s included). It makes the request's
``RequestFacts``, which handlers fill, and reads them back at the end. Labels stay bounded: the
route's path template (``other`` when nothing matched) and a configured model name only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from hugind.api.facts import RequestFacts
from hugind.api.request_id import request_id_of
from hugind.metrics import CACHED_PROMPT_TOKENS, PROMPT_TOKENS, REQUEST_DURATION, REQUESTS

log = logging.getLogger("hugind.access")

#: Status logged (nginx's convention) when the client left before any response.
CLIENT_CLOSED_REQUEST = 499
MAX_PATH_CHARS = 256
MAX_LOGGED_CHARS = 2000  # of a prompt or a completion, with log_prompts
#: Probes and scrapes: every few seconds for weeks, so logged at DEBUG only.
_QUIET = {"/health", "/v1/health", "/health/live", "/health/ready", "/metrics"}


def access_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        facts = RequestFacts.install(scope, _log_prompts(scope), _metrics_on(scope))
        status: int | None = None
        complete = False

        async def watch(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            record(scope, facts, status, complete)

    return middleware


def _log_prompts(scope: Scope) -> bool:
    """``server.log_prompts`` of the config in force (a SIGHUP may have replaced it)."""
    state = getattr(scope.get("app"), "state", None)
    live = getattr(state, "live", None)
    config = live.settings.config if live is not None else getattr(state, "config", None)
    return bool(getattr(getattr(config, "server", None), "log_prompts", False))


def _metrics_on(scope: Scope) -> bool:
    config = getattr(getattr(scope.get("app"), "state", None), "config", None)
    return bool(getattr(getattr(config, "server", None), "metrics", True))


def record(scope: Any, facts: RequestFacts, status: int | None, complete: bool) -> None:
    """Count the request and write its access line."""
    duration = time.perf_counter() - facts.started
    code = status if status is not None else CLIENT_CLOSED_REQUEST
    endpoint = scope.get("path_template") or "other"
    model = facts.model if facts.where is not None and facts.model else "other"
    if facts.metrics:
        _count(endpoint, model, code, duration, facts)
    fields = access_fields(scope, facts, code, complete, duration)
    level = logging.DEBUG if scope.get("path") in _QUIET and code < 500 else logging.INFO
    log.log(level, "%s %s %d", fields["method"], fields["path"], code, extra=fields)


def _count(endpoint: str, model: str, code: int, duration: float, facts: RequestFacts) -> None:
    REQUESTS.labels(endpoint, model, str(code)).inc()
    REQUEST_DURATION.labels(endpoint).observe(duration)
    if facts.where == "local" and facts.prompt_tokens:
        PROMPT_TOKENS.labels(model).inc(facts.prompt_tokens)
        if facts.cached_tokens:
            CACHED_PROMPT_TOKENS.labels(model).inc(facts.cached_tokens)


def access_fields(scope: Any, facts: RequestFacts, status: int, complete: bool,
                  duration: float) -> dict[str, Any]:
    """The access line's fields; never a key, and client text only with ``log_prompts``."""
    state = scope.get("state", {})
    fields: dict[str, Any] = {
        "request_id": request_id_of(scope),
        "method": scope.get("method", ""),
        "path": _printable(str(scope.get("path", ""))[:MAX_PATH_CHARS]),
        "status": status,
        "model": _printable(facts.model[:MAX_PATH_CHARS]) if facts.model else None,
        "tenant": state.get("tenant") or ("admin" if state.get("admin") else "-"),
        "prompt_tokens": facts.prompt_tokens,
        "cached_tokens": facts.cached_tokens,
        "completion_tokens": facts.completion_tokens,
        "ttft_ms": None if facts.ttft_s is None else round(facts.ttft_s * 1000, 1),
        "duration_ms": round(duration * 1000, 1),
        "finish_reason": facts.finish_reason,
    }
    if not complete:
        fields["complete"] = False  # the client left or the response broke off
    if facts.log_prompts:
        if facts.prompt is not None:
            fields["prompt"] = _clip(facts.prompt)
        if facts.completions:
            fields["completion"] = [_clip(t) for t in facts.completion_text()]
    return fields


def _printable(text: str) -> str:
    """Client text for the message: a decoded ``%0A`` in a path must not start a new line."""
    return text if text.isprintable() else "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=str).decode()
    if len(text) <= MAX_LOGGED_CHARS:
        return text
    return f"{text[:MAX_LOGGED_CHARS]}... (+{len(text) - MAX_LOGGED_CHARS} chars)"
