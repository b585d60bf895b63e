"""ProviderRouter against httpx.MockTransport: failover, passthrough, translation, redaction."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.unit.providers.mock_upstream import (
    ALL_KEYS,
    KEY_A,
    KEY_B,
    KEY_C,
    Broken,
    FakeClock,
    Upstream,
    err,
    make_router,
    ok,
    provider,
    providers,
    read,
    sse,
)

from hugind.errors import (
    ModelNotFoundError,
    NotFoundError,
    UpstreamError,
    UpstreamTimeoutError,
)
from hugind.providers import ProviderRouter, UpstreamResponse


def chat(router: ProviderRouter, model: str = "gpt-4o", **kw: Any) -> UpstreamResponse:
    body = json.dumps({"model": model, "messages": []}).encode()
    headers = [("content-type", "application/json"), ("authorization", "Bearer hugind-client")]
    return asyncio.run(_forward(router, "/v1/chat/completions", body, headers, model, **kw))


async def _forward(router: ProviderRouter, path: str, body: bytes,
                   headers: list[tuple[str, str]], model: str | None,
                   method: str = "POST") -> Any:
    try:
        response = await router.forward(method, path, "", headers, body, model)
        return response, await read(response)
    finally:
        await router.aclose()


def test_429_then_second_key_succeeds_and_is_logged() -> None:
    upstream = Upstream({KEY_A: [err(429, "Rate limit reached", **{"retry-after": "30"})],
                         KEY_B: [ok({"answer": 42}, **{"x-ratelimit-remaining-requests": "9"})]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    response, body = chat(router)
    assert response.status == 200
    assert json.loads(body) == {"answer": 42}
    assert ("x-ratelimit-remaining-requests", "9") in response.headers
    assert upstream.keys_used() == [KEY_A, KEY_B]
    events = router.activity()
    assert [e["event"] for e in events] == ["key_cooled_down", "failover"]
    assert events[0]["key"] == "...A001"
    assert events[0]["status"] == 429
    assert events[0]["retry_after_s"] == 30
    assert events[1]["key"] == "...B002"
    states = {s["key"]: s for s in router.key_states()}
    assert states["...A001"]["state"] == "cooling_down"
    assert states["...A001"]["cooldown_remaining_s"] == 30
    assert states["...B002"]["state"] == "ready"


def test_the_client_authorization_is_replaced() -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A])), upstream)
    chat(router)
    assert upstream.seen[0].headers["authorization"] == f"Bearer {KEY_A}"
    assert str(upstream.seen[0].url) == "http://openai.test/v1/chat/completions"


def test_cooled_key_is_skipped_next_time_and_restored_after_cooldown() -> None:
    clock = FakeClock()
    upstream = Upstream({KEY_A: [err(429), ok()], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B], cooldown_s=10)),
                         upstream, clock)

    async def scenario() -> list[str | None]:
        for _ in range(2):
            await read(await router.forward("POST", "/v1/chat/completions", "", [], b"{}",
                                            "gpt-4o"))
        clock.now += 11
        upstream.script[KEY_B] = [err(401)]
        await read(await router.forward("POST", "/v1/chat/completions", "", [], b"{}", "gpt-4o"))
        await router.aclose()
        return upstream.keys_used()

    # A fails, B serves; B is tried first next time; after the cooldown B fails, A is back.
    assert asyncio.run(scenario()) == [KEY_A, KEY_B, KEY_B, KEY_B, KEY_A]
    assert [e["event"] for e in router.activity()] == [
        "key_cooled_down", "failover", "key_cooled_down", "key_restored", "failover",
    ]


def test_all_keys_failing_is_a_502_naming_the_provider_without_keys() -> None:
    upstream = Upstream({
        KEY_A: [err(401, f"Incorrect API key provided: {KEY_A}")],
        KEY_B: [err(429, "slow down", **{"retry-after": "12"})],
        KEY_C: [err(500, "boom")],
    })
    router = make_router(providers(provider("openai", list(ALL_KEYS))), upstream)
    with pytest.raises(UpstreamError) as info:
        chat(router)
    exc = info.value
    assert exc.status == 502
    assert "'openai'" in exc.message
    assert "HTTP 401" in exc.message and "HTTP 429" in exc.message and "HTTP 500" in exc.message
    for key in ALL_KEYS:
        assert key not in exc.message
        assert key not in json.dumps(router.activity())
        assert key not in json.dumps(router.key_states())
    # Retry-After is when the provider may be tried again: three failures in a row tripped it
    # for breaker_open_s (10 s), and key C (a 500) did not cool down, so the 429's 12 s is moot.
    assert exc.headers["Retry-After"] == "10"
    assert router.activity()[-1]["event"] == "provider_tripped"
    assert exc.to_dict()["error"]["type"] == "upstream_error"


def test_when_every_key_is_cooling_no_request_is_sent() -> None:
    upstream = Upstream({KEY_A: [err(429, **{"retry-after": "20"})]})
    router = make_router(providers(provider("openai", [KEY_A])), upstream)
    with pytest.raises(UpstreamError):
        chat(router)
    with pytest.raises(UpstreamError) as info:
        chat(router)
    assert "cooling down" in info.value.message
    assert len(upstream.seen) == 1
    assert info.value.headers["Retry-After"] == "20"
    assert router.activity()[-1]["event"] == "provider_skipped"


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_pass_through_once(status: int) -> None:
    upstream = Upstream({KEY_A: [err(status, "bad param", **{"x-request-id": "r1"})],
                         KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    response, body = chat(router)
    assert response.status == status
    assert json.loads(body)["error"]["message"] == "bad param"
    assert ("x-upstream-request-id", "r1") in response.headers
    assert upstream.keys_used() == [KEY_A]
    assert router.activity() == []


@pytest.mark.parametrize("status", [401, 403, 429])
def test_key_failures_cool_the_key_and_move_on_at_once(status: int) -> None:
    sleeps: list[float] = []
    upstream = Upstream({KEY_A: [err(status)], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream, sleeps=sleeps)
    response, _ = chat(router)
    assert response.status == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    assert sleeps == []
    assert [(e["event"], e["status"]) for e in router.activity()] == [
        ("key_cooled_down", status), ("failover", None)]
    states = {s["key"]: s["state"] for s in router.key_states()}
    assert states == {"...A001": "cooling_down", "...B002": "ready"}


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_failures_move_on_after_a_backoff_without_cooling(status: int) -> None:
    sleeps: list[float] = []
    upstream = Upstream({KEY_A: [err(status)], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream, sleeps=sleeps)
    response, _ = chat(router)
    assert response.status == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    assert sleeps == [pytest.approx(0.25 * 0.75)]  # backoff_s, jitter 0.5 -> 0.75 of it
    assert [(e["event"], e["status"]) for e in router.activity()] == [
        ("attempt_failed", status), ("failover", None)]
    states = {s["key"]: s for s in router.key_states()}
    assert states["...A001"]["state"] == "ready"
    assert (states["...A001"]["failures"], states["...A001"]["last_status"]) == (1, status)


def test_relayed_error_bodies_never_echo_a_key() -> None:
    upstream = Upstream({KEY_A: [err(400, f"weird echo of {KEY_A}")]})
    router = make_router(providers(provider("openai", [KEY_A])), upstream)
    _, body = chat(router)
    assert KEY_A.encode() not in body
    assert b"[redacted]" in body


def test_timeouts_everywhere_give_504() -> None:
    upstream = Upstream({KEY_A: [httpx.ConnectTimeout("slow")],
                         KEY_B: [httpx.PoolTimeout("slow")]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    with pytest.raises(UpstreamTimeoutError) as info:
        chat(router)
    assert info.value.status == 504
    assert "timed out (connect)" in info.value.message
    assert upstream.keys_used() == [KEY_A, KEY_B, KEY_A]  # nothing cooled: A is tried again


def test_connection_error_fails_over_to_the_next_provider() -> None:
    upstream = Upstream({KEY_A: [httpx.ConnectError("refused")], KEY_B: [ok({"from": "b"})]})
    configs = providers(provider("first", [KEY_A]), provider("second", [KEY_B]))
    router = make_router(configs, upstream)
    response, body = chat(router)
    assert response.provider == "second"
    assert json.loads(body) == {"from": "b"}
    # A one-key provider retries its key (max_retries 2), which trips it, then moves on.
    assert upstream.keys_used() == [KEY_A, KEY_A, KEY_A, KEY_B]
    assert [e["event"] for e in router.activity()] == [
        "attempt_failed", "attempt_failed", "attempt_failed", "provider_tripped",
        "provider_skipped", "failover",
    ]


def test_max_retries_bounds_attempts_per_provider() -> None:
    upstream = Upstream({KEY_A: [err(500)], KEY_B: [err(500)], KEY_C: [ok()]})
    router = make_router(providers(provider("openai", list(ALL_KEYS), max_retries=1)), upstream)
    with pytest.raises(UpstreamError):
        chat(router)
    assert upstream.keys_used() == [KEY_A, KEY_B]


def test_prefix_rule_strips_the_prefix_before_forwarding() -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A], models=["openai/"])), upstream)
    chat(router, model="openai/gpt-4o")
    assert json.loads(upstream.seen[0].content) == {"model": "gpt-4o", "messages": []}


def test_multipart_model_is_renamed_and_body_otherwise_unchanged() -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A], models=["openai/"])), upstream)
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
            f"openai/whisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    body += bytes(range(256)) + f"\r\n--{boundary}--\r\n".encode()
    headers = [("content-type", f"multipart/form-data; boundary={boundary}")]
    asyncio.run(_forward(router, "/v1/audio/transcriptions", body, headers, "openai/whisper-1"))
    assert upstream.seen[0].content == body.replace(b"openai/whisper-1", b"whisper-1")


def test_unknown_model_and_unrouted_endpoint() -> None:
    router = make_router(providers(provider("openai", [KEY_A], endpoints=["images"])),
                         Upstream({}), native=("gemma",))
    with pytest.raises(ModelNotFoundError):
        chat(router, model="llama-3")
    router = make_router(providers(provider("openai", [KEY_A], endpoints=["images"])),
                         Upstream({}), native=("gemma",))
    with pytest.raises(NotFoundError):
        asyncio.run(_forward(router, "/v1/files", b"", [], None, method="GET"))
    router = make_router(providers(provider("openai", [KEY_A], models=["*"])),
                         Upstream({}), native=("gemma",))
    with pytest.raises(NotFoundError):
        asyncio.run(_forward(router, "/v1/responses", b"{}", [], "gemma"))


def test_serves_model_and_remote_models() -> None:
    configs = providers(
        provider("a", [KEY_A], models=["gpt-4o", "gpt-*", "gemma"]),
        provider("b", [KEY_B], models=["gpt-4o", "claude-3", "openai/"]),
    )
    router = make_router(configs, Upstream({}), native=("gemma",))
    assert router.serves_model("gpt-4o-mini")
    assert router.serves_model("openai/x")
    assert not router.serves_model("gemma")
    assert not router.serves_model("llama")
    assert router.remote_models() == [("gpt-4o", "a"), ("claude-3", "b")]
    asyncio.run(router.aclose())


def test_a_post_whose_200_broke_before_its_first_byte_is_not_sent_again() -> None:
    upstream = Upstream({KEY_A: [sse(Broken(0))], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    with pytest.raises(UpstreamError) as info:
        chat(router)
    assert "broke before the first byte" in info.value.message
    assert "Not sent again" in info.value.message
    assert upstream.keys_used() == [KEY_A]


def test_break_before_first_byte_is_retried_with_retry_reads_after_it_is_not() -> None:
    upstream = Upstream({KEY_A: [sse(Broken(0))], KEY_B: [sse(Broken(2))], KEY_C: [ok()]})
    router = make_router(providers(provider("openai", list(ALL_KEYS), retry_reads=True)),
                         upstream)

    async def scenario() -> list[bytes]:
        response = await router.forward("POST", "/v1/chat/completions", "", [], b"{}", "gpt-4o")
        chunks = []
        with pytest.raises(UpstreamError) as info:
            async for chunk in response:
                chunks.append(chunk)
        assert "broke off" in info.value.message
        await router.aclose()
        return chunks

    assert asyncio.run(scenario()) == [b"data: 0\n\n", b"data: 1\n\n"]
    assert upstream.keys_used() == [KEY_A, KEY_B]
    failed = [e["key"] for e in router.activity() if e["event"] == "attempt_failed"]
    assert failed == ["...A001", "...B002"]
    assert {s["state"] for s in router.key_states()} == {"ready"}  # nothing cooled down


def test_keyless_provider_sends_no_authorization() -> None:
    upstream = Upstream({None: [ok()]})
    router = make_router(providers(provider("local", [])), upstream)
    chat(router)
    assert "authorization" not in upstream.seen[0].headers
