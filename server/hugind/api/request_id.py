"""Request ids: ``X-Request-Id`` from the client when it is a short printable token, else one
made here; stored in ``scope["state"]``, set as a context variable for log records, returned
on every response (streamed or not, errors and 404s too) and put in error bodies.

Litestar runs app middleware only for matched routes, so ``request_ids`` wraps the app's whole
ASGI handler (see ``app.py``); ``request_id_of`` also serves code that runs outside it."""

from __future__ import annotations

import contextvars
import secrets
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_CHARS = 128
_KEY = "request_id"

#: The id of the request this task is serving; read by the logging filter and error bodies.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hugind_request_id", default=None)


def new_request_id() -> str:
    return f"req-{secrets.token_hex(12)}"


def is_valid(value: str) -> bool:
    """Short and printable ASCII without spaces: safe to echo in a header and a log line."""
    return 0 < len(value) <= MAX_CHARS and all("!" <= ch <= "~" for ch in value)


def _from_headers(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            text = value.decode("latin-1")
            return text if is_valid(text) else None
    return None


def request_id_of(scope: Any) -> str:
    """The request's id, chosen once and kept in ``scope["state"]``."""
    state = scope.setdefault("state", {})
    rid = state.get(_KEY)
    if rid is None:
        rid = state[_KEY] = _from_headers(scope) or new_request_id()
    return str(rid)


def with_request_id(body: dict[str, Any], rid: str | None = None) -> dict[str, Any]:
    """An OpenAI error body with ``error.request_id`` added (OpenAI's four keys stay)."""
    rid = rid or current_request_id.get()
    error = body.get("error")
    if rid is not None and isinstance(error, dict):
        error["request_id"] = rid
    return body


def request_ids(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = request_id_of(scope)
        header = (HEADER.encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = current_request_id.set(rid)
        try:
            await app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)

    return middleware
