"""Response headers from what a handler noted in the request's scope state, set in
``before_send`` so streamed responses carry them too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope


def note(connection: Any, key: str, value: Any) -> None:
    """Keep ``value`` under ``key`` for :func:`header_from_state`."""
    connection.scope.setdefault("state", {})[key] = value


def header_from_state(key: str, header: str, render: Callable[[Any], str],
                      ) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook setting ``header`` to ``render(value)`` when ``key`` was noted."""
    async def add(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        state = scope.get("state")
        value = state.get(key) if isinstance(state, dict) else None
        if value:
            MutableScopeHeaders.from_message(message)[header] = render(value)
    return add
