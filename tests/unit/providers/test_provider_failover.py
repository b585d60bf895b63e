"""ProviderRouter against httpx.MockTransport: failover, passthrough, translation, redaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hugind.config import ProviderConfig, parse_config
from hugind.errors import (
    ModelNotFoundError,
    NotFoundError,
    UpstreamError,
    UpstreamTimeoutError,
)
from hugind.providers import ProviderRouter, UpstreamResponse

KEY_A = "sk-test-aaaaaaaaaaaaaaaa-A001"
KEY_B = "sk-test-bbbbbbbbbbbbbbbb-B002"
KEY_C = "sk-test-cccccccccccccccc-C003"
ALL_KEYS = (KEY_A, KEY_B, KEY_C)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def providers(*specs: dict[str, Any]) -> list[ProviderConfig]:
    return parse_config({"providers": list(specs)}).providers


def provider(name: str, keys: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": f"http://{name}.test/v1", "api_keys": keys,
            "models": ["gpt-*"], **extra}


class Upstream:
    """Answers by key: a list of responses per key, consumed in order (last one repeats)."""

    def __init__(self, script: dict[str | None, list[httpx.Response | Exception]]) -> None:
        self.script = script
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        auth = request.headers.get("authorization")
        key = auth.removeprefix("Bearer ") if auth else None
        answers = self.script[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def keys_used(self) -> list[str | None]:
        out = []
        for r in self.seen:
            auth = r.headers.get("authorization")
            out.append(auth.removeprefix("Bearer ") if auth else None)
        return out


def ok(body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body or {"ok": True}, headers=headers)


def err(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x"}},
                          headers=headers)


def make_router(
    configs: list[ProviderConfig], upstream: Handler, clock: FakeClock | None = None,
    native: tuple[str, ...] = (),
) -> ProviderRouter:
    return ProviderRouter(configs, native, transport=httpx.MockTransport(upstream),
                          clock=clock or FakeClock())


async def read(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response])


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
    upstream = Upstream({KEY_A: [err(500), ok()], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B], cooldown_s=10)),
                         upstream, clock)

    async def scenario() -> list[str | None]:
        for _ in range(2):
            await read(await router.forward("POST", "/v1/chat/completions", "", [], b"{}",
                                            "gpt-4o"))
        clock.now += 11
        upstream.script[KEY_B] = [err(503)]
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
    assert exc.headers["Retry-After"] == "12"
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
    assert ("x-request-id", "r1") in response.headers
    assert upstream.keys_used() == [KEY_A]
    assert router.activity() == []


@pytest.mark.parametrize("status", [401, 403, 408, 429, 500, 502, 503, 504])
def test_key_and_server_failures_move_on_to_the_next_key(status: int) -> None:
    upstream = Upstream({KEY_A: [err(status)], KEY_B: [ok()]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    response, _ = chat(router)
    assert response.status == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    assert router.activity()[0]["status"] == status


def test_relayed_error_bodies_never_echo_a_key() -> None:
    upstream = Upstream({KEY_A: [err(400, f"weird echo of {KEY_A}")]})
    router = make_router(providers(provider("openai", [KEY_A])), upstream)
    _, body = chat(router)
    assert KEY_A.encode() not in body
    assert b"[redacted]" in body


def test_timeouts_everywhere_give_504() -> None:
    upstream = Upstream({KEY_A: [httpx.ReadTimeout("slow")],
                         KEY_B: [httpx.ConnectTimeout("slow")]})
    router = make_router(providers(provider("openai", [KEY_A, KEY_B])), upstream)
    with pytest.raises(UpstreamTimeoutError) as info:
        chat(router)
    assert info.value.status == 504
    assert "timed out" in info.value.message


def test_connection_error_fails_over_to_the_next_provider() -> None:
    upstream = Upstream({KEY_A: [httpx.ConnectError("refused")], KEY_B: [ok({"from": "b"})]})
    configs = providers(provider("first", [KEY_A]), provider("second", [KEY_B]))
    router = make_router(configs, upstream)
    response, body = chat(router)
    assert response.provider == "second"
    assert json.loads(body) == {"from": "b"}
    assert [e["event"] for e in router.activity()] == [
        "key_cooled_down", "provider_skipped", "failover",
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


def test_break_before_first_byte_is_retried_after_it_is_not() -> None:
    class Broken(httpx.AsyncByteStream):
        def __init__(self, chunks_before: int) -> None:
            self.chunks_before = chunks_before

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for i in range(self.chunks_before):
                yield f"data: {i}\n\n".encode()
            raise httpx.RemoteProtocolError("peer closed connection")

    upstream = Upstream({
        KEY_A: [httpx.Response(200, stream=Broken(0),
                               headers={"content-type": "text/event-stream"})],
        KEY_B: [httpx.Response(200, stream=Broken(2),
                               headers={"content-type": "text/event-stream"})],
        KEY_C: [ok()],
    })
    router = make_router(providers(provider("openai", list(ALL_KEYS))), upstream)

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
    cooled = [e["key"] for e in router.activity() if e["event"] == "key_cooled_down"]
    assert cooled == ["...A001", "...B002"]


def test_keyless_provider_sends_no_authorization() -> None:
    upstream = Upstream({None: [ok()]})
    router = make_router(providers(provider("local", [])), upstream)
    chat(router)
    assert "authorization" not in upstream.seen[0].headers
