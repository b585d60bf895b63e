from __future__ import annotations

import pytest

from hugind.providers.headers import (
    MAX_RETRY_AFTER_S,
    client_response_headers,
    retry_after_s,
    upstream_request_headers,
)


def names(pairs: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in pairs]


def test_request_drops_hop_by_hop_credentials_and_framing() -> None:
    client = [
        ("Host", "hugind.local"), ("Connection", "keep-alive, X-Private"), ("X-Private", "1"),
        ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("TE", "trailers"),
        ("Content-Length", "12"), ("Authorization", "Bearer hugind-client-key"),
        ("Proxy-Authorization", "Basic x"), ("Cookie", "a=b"), ("Accept-Encoding", "gzip"),
        ("Content-Type", "application/json"), ("OpenAI-Beta", "assistants=v2"),
        ("X-Request-Id", "r1"),
    ]
    out = upstream_request_headers(client, "sk-provider-key-0001", {})
    assert names(out) == ["content-type", "openai-beta", "x-request-id", "authorization"]
    assert ("authorization", "Bearer sk-provider-key-0001") in out
    assert "hugind-client-key" not in repr(out)


def test_extra_headers_replace_client_ones_and_no_key_means_no_authorization() -> None:
    out = upstream_request_headers(
        [("OpenAI-Organization", "client-org"), ("Authorization", "Bearer x")], None,
        {"OpenAI-Organization": "org-1"},
    )
    assert out == [("OpenAI-Organization", "org-1")]


def test_response_keeps_status_related_and_rate_limit_headers() -> None:
    upstream = [
        ("content-type", "text/event-stream"), ("content-length", "10"),
        ("content-encoding", "gzip"), ("transfer-encoding", "chunked"),
        ("connection", "close"), ("date", "x"), ("server", "nginx"), ("set-cookie", "s=1"),
        ("x-ratelimit-remaining-requests", "99"), ("x-ratelimit-reset-tokens", "6m0s"),
        ("retry-after", "3"), ("x-request-id", "req_1"), ("openai-processing-ms", "12"),
    ]
    out = client_response_headers(upstream)
    assert names(out) == [
        "content-type", "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens",
        "retry-after", "x-upstream-request-id", "openai-processing-ms",
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        # A zone of -0000 parses to a naive datetime: still read as GMT, not local time.
        ({"retry-after": "Wed, 21 Oct 2015 07:28:40 -0000"}, 40.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
        # A hostile or buggy upstream cannot retire a key for good, nor crash math.ceil.
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "1e12"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "inf", "retry-after": "4"}, 4.0),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 GMT
    assert retry_after_s(headers, now=now) == expected
