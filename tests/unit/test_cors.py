"""CORS over real HTTP: local pages by default, configured origins, keyless preflights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from hugind.app import create_app
from hugind.config import ConfigError, parse_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread

KEY = "cors-key-0001"


@contextmanager
def _server(server: dict[str, Any]) -> Iterator[httpx.Client]:
    app = create_app(parse_config({"server": {"api_keys": [KEY], **server}}),
                     engine=FakeEngine())
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def _preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options("/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://localhost:5173", True), ("http://127.0.0.1:8000", True),
    ("http://localhost", True), ("https://localhost:5173", False),
    ("http://localhost.evil.example", False), ("http://localhost:1@evil.example", False),
    ("https://app.example", False), ("null", False)])
def test_default_origins_are_local_pages(origin: str, allowed: bool) -> None:
    with _server({}) as client:
        r = _preflight(client, origin)
    if allowed:
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert "POST" in r.headers["access-control-allow-methods"]
    else:
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers


def test_configured_origins_widen_the_defaults() -> None:
    origins = ["https://app.example", "https://*.corp.example", "http://dev.example:*"]
    with _server({"cors_origins": origins}) as client:
        for origin in ("https://app.example", "https://wiki.corp.example",
                       "http://dev.example:3000", "http://dev.example", "http://localhost:1"):
            assert _preflight(client, origin).status_code == 204, origin
        for origin in ("https://app.example:444", "https://other.example",
                       "https://dev.example:3000"):
            assert _preflight(client, origin).status_code == 400, origin


def test_a_star_allows_every_origin() -> None:
    with _server({"cors_origins": ["*"]}) as client:
        r = _preflight(client, "https://anywhere.example")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"


def test_actual_requests_carry_the_origin_and_expose_limit_headers() -> None:
    with _server({}) as client:
        r = client.get("/v1/models", headers={"Origin": "http://localhost:3000",
                                               "Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "x-ratelimit-remaining-requests" in r.headers["access-control-expose-headers"]
        # Without a key the answer is still a 401, with CORS headers the page can read.
        r = client.get("/v1/models", headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"


@pytest.mark.parametrize("origin", ["app.example", "https://app.example/path", "https://",
                                    "https://a b", "https://app.example:port"])
def test_a_malformed_origin_is_a_config_error(origin: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"cors_origins": ["http://ok.example", origin]}})
    assert str(caught.value).startswith("server.cors_origins[1]: ")
