"""Session names from agents' signals: headers, Anthropic metadata.user_id, OpenAI fields."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from litestar.datastructures import Headers

from hugind.api.generation import session_name
from hugind.errors import InvalidRequestError

ALL_HEADERS = {"X-Session-Id": "h", "x-claude-code-session-id": "claude", "session_id": "codex"}
BODY = SimpleNamespace(prompt_cache_key="key", user="u")


@pytest.mark.parametrize(("headers", "user_id", "req", "expected"), [
    (ALL_HEADERS, "meta", BODY, "h"),
    ({**ALL_HEADERS, "X-Session-Id": ""}, "meta", BODY, "claude"),  # empty counts as absent
    ({"session_id": "codex", "x-claude-code-session-id": "claude"}, None, BODY, "claude"),
    ({"session_id": "codex"}, "meta", BODY, "codex"),
    ({}, "meta", BODY, "meta"),
    ({}, None, BODY, "key"),
    ({}, None, SimpleNamespace(prompt_cache_key=None, user="u"), "u"),
    ({}, None, object(), None),  # a request without the OpenAI fields
    ({"x-session-id": "lower"}, None, BODY, "lower"),  # header names are case-insensitive
])
def test_first_present_signal_wins(headers: dict[str, str], user_id: str | None, req: object,
                                   expected: str | None) -> None:
    assert session_name(req, Headers(headers), user_id=user_id) == expected


@pytest.mark.parametrize("header", ["X-Session-Id", "x-claude-code-session-id", "session_id"])
def test_an_over_long_header_is_a_400_naming_it(header: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        session_name(BODY, Headers({header: "s" * 257}))
    assert err.value.param == header
