"""Rate limits over real HTTP (uvicorn thread, FakeEngine): 429s, headers, waiting, caps."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from hugind.api.ratelimit import RateLimiter
from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread

KEY_A = "rl-key-alpha-0001"
KEY_B = "rl-key-beta-0002"
COMPLETION = {"model": "fake", "prompt": "hi", "max_tokens": 3}


@contextmanager
def _server(server: dict[str, Any], *, window_s: int = 60,
            engine: FakeEngine | None = None) -> Iterator[httpx.Client]:
    app = create_app(parse_config({"server": server}), engine=engine or FakeEngine())
    app.state.live.limiter = RateLimiter(window_s=window_s)  # short windows keep tests short
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_over_the_limit_is_a_429_with_retry_after_and_openai_headers() -> None:
    server = {"api_keys": [KEY_A], "rate_limits": {"requests_per_minute": 2,
                                                   "tokens_per_minute": 1000}}
    with _server(server) as client:
        first = client.post("/v1/completions", json=COMPLETION, headers=_auth(KEY_A))
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-reset-requests"].endswith("s")
        assert first.headers["x-ratelimit-limit-tokens"] == "1000"
        assert client.post("/v1/completions", json=COMPLETION,
                           headers=_auth(KEY_A)).status_code == 200
        over = client.post("/v1/completions", json=COMPLETION, headers=_auth(KEY_A))
        assert over.status_code == 429
        assert 55 <= int(over.headers["retry-after"]) <= 60
        assert over.headers["x-ratelimit-remaining-requests"] == "0"
        error = over.json()["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert KEY_A not in over.text
        # Tokens: two answers of 2 prompt + 3 completion tokens each.
        assert over.headers["x-ratelimit-remaining-tokens"] == str(1000 - 2 * (2 + 3))
        # Other endpoints count too; public ones do not.
        assert client.get("/v1/models", headers=_auth(KEY_A)).status_code == 429
        health = client.get("/health")
        assert health.status_code == 200 and "x-ratelimit-limit-requests" not in health.headers


def test_without_limits_no_headers() -> None:
    with _server({"api_keys": [KEY_A]}) as client:
        r = client.post("/v1/completions", json=COMPLETION, headers=_auth(KEY_A))
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers


def test_the_token_window_refuses_once_spent() -> None:
    with _server({"rate_limits": {"tokens_per_minute": 8}}) as client:  # anonymous tenant
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200
        r = client.post("/v1/completions", json=COMPLETION)
        assert r.status_code == 200  # 5 of 8 spent: admitted, and overshoots to 10
        # A whole answer is counted before its headers go out.
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
        r = client.post("/v1/completions", json=COMPLETION)
        assert r.status_code == 429 and r.json()["error"]["type"] == "tokens"
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
        r = client.post("/v1/embeddings", json={"model": "fake-embed", "input": "abc"})
        assert r.status_code == 429


def test_embeddings_count_their_tokens() -> None:
    with _server({"rate_limits": {"tokens_per_minute": 100}}) as client:
        assert client.post("/v1/embeddings", json={"model": "fake-embed",
                                                   "input": "abcdefghij"}).status_code == 200
        r = client.get("/v1/models")
    assert r.headers["x-ratelimit-remaining-tokens"] == "90"


def test_with_max_wait_a_request_waits_for_the_window_then_succeeds() -> None:
    server = {"rate_limits": {"requests_per_minute": 1, "max_wait_s": 10}}
    with _server(server, window_s=2) as client:
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200
        start = time.monotonic()
        r = client.post("/v1/completions", json=COMPLETION)
        waited = time.monotonic() - start
    assert r.status_code == 200
    assert 0.5 < waited < 5


def test_max_wait_shorter_than_the_window_still_refuses() -> None:
    server = {"rate_limits": {"requests_per_minute": 1, "max_wait_s": 0.2}}
    with _server(server, window_s=5) as client:
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200
        start = time.monotonic()
        assert client.post("/v1/completions", json=COMPLETION).status_code == 429
        assert time.monotonic() - start < 1


def test_per_key_override_and_fallback() -> None:
    server = {"api_keys": [{"key": KEY_A, "rate_limits": {"requests_per_minute": 1}}, KEY_B],
              "rate_limits": {"requests_per_minute": 3, "tokens_per_minute": 500}}
    with _server(server) as client:
        a = [client.get("/v1/models", headers=_auth(KEY_A)).status_code for _ in range(2)]
        b = [client.get("/v1/models", headers=_auth(KEY_B)) for _ in range(4)]
    assert a == [200, 429]
    assert [r.status_code for r in b] == [200, 200, 200, 429]
    # A's override leaves tokens_per_minute unset: it falls back to server.rate_limits.
    assert b[0].headers["x-ratelimit-limit-tokens"] == "500"


def _stream(client: httpx.Client, key: str | None = None, n: int = 1) -> int:
    headers = _auth(key) if key else {}
    with client.stream("POST", "/v1/completions", headers=headers,
                       json={**COMPLETION, "max_tokens": 5, "stream": True, "n": n}) as r:
        r.read()
        return r.status_code


def test_max_concurrent_caps_a_keys_sequences() -> None:
    engine = FakeEngine(delay_s=0.2)  # 5 words: about 1 s per stream
    with _server({"rate_limits": {"max_concurrent": 2}}, engine=engine) as client, \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(_stream, client, None, 2)  # n=2 holds both slots
        time.sleep(0.3)
        third = client.post("/v1/completions", json=COMPLETION)
        assert third.status_code == 429
        assert "max_concurrent" in third.json()["error"]["message"]
        assert first.result() == 200
        assert _stream(client, None, 3) == 429  # more choices than the cap, ever
        # Slots came back: two single streams run side by side.
        both = [pool.submit(_stream, client) for _ in range(2)]
        assert [f.result() for f in both] == [200, 200]


def test_max_concurrent_waits_within_max_wait() -> None:
    engine = FakeEngine(delay_s=0.1)
    with _server({"rate_limits": {"max_concurrent": 1, "max_wait_s": 10}},
                 engine=engine) as client, concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = [pool.submit(_stream, client) for _ in range(3)]
        assert [f.result() for f in results] == [200, 200, 200]


def test_a_client_leaving_mid_stream_gives_its_slot_back() -> None:
    engine = FakeEngine(["w"] * 40, delay_s=0.05)
    with _server({"rate_limits": {"max_concurrent": 1}}, engine=engine) as client:
        with client.stream("POST", "/v1/completions",
                           json={**COMPLETION, "max_tokens": 40, "stream": True}) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
        deadline = time.monotonic() + 5
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200


def test_streamed_answers_carry_the_headers_and_count_their_tokens() -> None:
    with _server({"rate_limits": {"requests_per_minute": 5, "tokens_per_minute": 100}}) as client:
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "fake", "stream": True, "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status_code == 200
            assert r.headers["x-ratelimit-remaining-requests"] == "4"
            assert r.headers["x-ratelimit-remaining-tokens"] == "100"  # not known yet
            r.read()
        after = client.get("/v1/models")
    # "<user>hi" is 8 prompt tokens on the FakeEngine, plus 5 generated.
    assert after.headers["x-ratelimit-remaining-tokens"] == str(100 - 8 - 5)
