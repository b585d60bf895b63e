"""Session names from agents' signals: headers, Anthropic metadata.user_id, OpenAI fields."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from litestar.datastructures import Headers
from litestar.testing import TestClient

from hugind.api.generation import session_name
from hugind.app import create_app
from hugind.config import parse_config
from hugind.errors import InvalidRequestError
from tests.fakes import FakeEngine

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


@pytest.mark.parametrize(("extra", "headers", "expected"), [
    ({"user": "alice"}, {}, "alice"),
    ({"prompt_cache_key": "conv-1", "user": "alice"}, {}, "conv-1"),
    ({"user": "alice"}, {"X-Session-Id": "from-header"}, "from-header"),
    ({"user": "ålice"}, {}, None),  # not a header value: the client keeps sending the body
    ({}, {}, None),
])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_name_the_session_they_continue(extra: dict[str, str],
                                                  headers: dict[str, str],
                                                  expected: str | None, stream: bool) -> None:
    engine = FakeEngine()
    with TestClient(create_app(parse_config({}), engine=engine)) as c:
        r = c.post("/v1/chat/completions", headers=headers, json={
            "model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
            "stream": stream, **extra})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-session-id") == expected
    assert engine.requests[0].session == (expected or extra.get("user"))
