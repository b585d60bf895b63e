"""``X-Session-Id`` on the responses of requests that continue a session, so a balancer or a
client can stick to it (nginx: ``hash $upstream_http_x_session_id``, or the client sends it
back) whichever field named the session."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

SESSION_HEADER = "X-Session-Id"
_SCOPE_KEY = "hugind_session"


def note_session(connection: Any, name: str | None) -> None:
    """Remember the session a request continues, when it can travel as a header value
    (printable ASCII: a name in other characters is sent by the client in the body only)."""
    if name and name.isascii() and name.isprintable():
        connection.scope.setdefault("state", {})[_SCOPE_KEY] = name


async def add_session_header(message: Message, scope: Scope) -> None:
    """``before_send``: the session's name on the response, streamed or not."""
    if message["type"] != "http.response.start":
        return
    state = scope.get("state")
    name = state.get(_SCOPE_KEY) if isinstance(state, dict) else None
    if name:
        MutableScopeHeaders.from_message(message)[SESSION_HEADER] = name
