"""Remote providers over real HTTP on loopback: Hugind in front of a scriptable fake upstream.

Both servers run in uvicorn threads. The fake upstream answers by the key it receives, so one
config with several keys can script 429-then-200 failover, 401s, 500s, hangs and drops.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from hugind.config import Config, parse_config

KEY_OK = "sk-live-OKOKOKOKOKOKOKOKOKOK-0k01"
KEY_429 = "sk-live-RATERATERATERATERA-rl02"
KEY_401 = "sk-live-BADBADBADBADBADBAD-ba03"
KEY_500 = "sk-live-FIVEFIVEFIVEFIVEFIV-ff04"
KEY_HANG = "sk-live-HANGHANGHANGHANGHA-hg05"
KEY_DROP = "sk-live-DROPDROPDROPDROPDR-dr06"
KEY_400 = "sk-live-FOURFOURFOURFOURFO-fo07"
ALL_KEYS = (KEY_OK, KEY_429, KEY_401, KEY_500, KEY_HANG, KEY_DROP, KEY_400)
MODE = {KEY_OK: "ok", KEY_429: "429", KEY_401: "401", KEY_500: "500", KEY_HANG: "hang",
        KEY_DROP: "drop", KEY_400: "400"}
SPEECH = bytes(range(256)) * 64  # binary, not valid UTF-8
WAIT_S = 5.0


class FakeUpstream:
    """An OpenAI-shaped ASGI app; behaviour chosen by the bearer key; records what it saw."""

    def __init__(self) -> None:
        self.modes = dict(MODE)  # a test may change how a key is answered
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.finished = threading.Event()
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        key = headers.get("authorization", "").removeprefix("Bearer ")
        self.requests.append({"method": scope["method"], "path": scope["path"],
                              "raw_path": scope.get("raw_path"),
                              "query": scope["query_string"].decode(), "headers": headers,
                              "body": body, "key": key})
        mode = self.modes.get(key, "ok")
        if mode == "hang":
            await self._hang(receive)
            return
        if mode in ("401", "429", "500", "400"):
            await self._error(send, int(mode), key)
            return
        await self._route(scope, body, receive, send, drop=mode == "drop")

    async def _hang(self, receive: Any) -> None:
        try:
            await asyncio.wait_for(self._wait_disconnect(receive), WAIT_S)
        except asyncio.TimeoutError:
            return

    async def _wait_disconnect(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()

    async def _error(self, send: Any, status: int, key: str) -> None:
        messages = {401: f"Incorrect API key provided: {key}", 429: "Rate limit reached",
                    500: "The server had an error", 400: "Invalid value for 'n'"}
        extra = [(b"retry-after", b"7")] if status == 429 else []
        body = {"error": {"message": messages[status], "type": "invalid_request_error",
                          "param": "n" if status == 400 else None, "code": None}}
        await self._send(send, status, json.dumps(body).encode(), b"application/json", extra)

    async def _send(self, send: Any, status: int, body: bytes, media: bytes,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", media), (b"x-ratelimit-remaining-requests", b"99"),
                   (b"x-request-id", b"req_up_1"), (b"connection", b"keep-alive"),
                   *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: dict[str, Any], body: bytes, receive: Any, send: Any,
                     drop: bool) -> None:
        path = scope["path"]
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
        if path == "/v1/chat/completions":
            request = json.loads(body)
            if request.get("stream"):
                await self._sse(send, receive, drop=drop, gated=request.get("gated", False))
                return
            reply = {"id": "chatcmpl-up", "object": "chat.completion",
                     "model": request["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "hi"}}]}
            await self._send(send, 200, json.dumps(reply).encode(), b"application/json")
        elif path == "/v1/audio/speech":
            await self._send(send, 200, SPEECH, b"audio/mpeg")
        elif path in ("/v1/images/edits", "/v1/audio/transcriptions"):
            reply = {"sha256": hashlib.sha256(body).hexdigest(), "content_type": content_type}
            await self._send(send, 200, json.dumps(reply).encode(), b"application/json")
        elif path == "/v1/images/generations":
            reply = {"created": 1, "data": [{"b64_json": "aGk="}]}
            await self._send(send, 200, json.dumps(reply).encode(), b"application/json")
        elif path == "/v1/files/gone":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/v1/moderations":
            reply = {"id": "modr-1", "results": [{"flagged": False}]}
            await self._send(send, 200, json.dumps(reply).encode(), b"application/json")
        else:
            reply = {"echo": path, "query": scope["query_string"].decode()}
            await self._send(send, 200, json.dumps(reply).encode(), b"application/json")

    async def _sse(self, send: Any, receive: Any, *, drop: bool, gated: bool) -> None:
        watcher = asyncio.ensure_future(self._wait_disconnect(receive))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        try:
            for i in range(5):
                chunk = {"choices": [{"index": 0, "delta": {"content": f"tok{i}"}}]}
                await send({"type": "http.response.body", "more_body": True,
                            "body": f"data: {json.dumps(chunk)}\n\n".encode()})
                if drop and i == 1:
                    raise ConnectionResetError("fake upstream drops the connection")
                if gated and i == 0:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self.release.wait, WAIT_S)
                if self.disconnected.is_set():
                    return
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            self.finished.set()
        finally:
            watcher.cancel()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="auto", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def build_app(config: Config) -> Any:
    """The Hugind app: ``create_app`` when it exists, else the forwarding handlers alone."""
    try:
        from hugind.app import create_app
    except ImportError:
        return minimal_app(config)
    return create_app(config)


def minimal_app(config: Config) -> Any:
    from litestar import Litestar, Request, post

    from hugind.api.forward import forward_route_handlers, forward_to_provider
    from hugind.api.handlers import to_openai_error
    from hugind.errors import ModelNotFoundError
    from hugind.providers import ProviderRouter

    router = ProviderRouter(config.providers, set())

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Any:
        body = await request.body()
        model = json.loads(body)["model"]
        if not router.serves_model(model):
            raise ModelNotFoundError(model)
        return await forward_to_provider(request, router, body, model)

    return Litestar([chat, *forward_route_handlers(router)],
                    exception_handlers={Exception: to_openai_error},
                    on_shutdown=[router.aclose])


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    with serve_in_thread(fake) as url:
        try:
            yield fake, url
        finally:
            fake.release.set()


def hugind_config(url: str, *providers: dict[str, Any]) -> Config:
    return parse_config({"providers": [{"base_url": f"{url}/v1", **p} for p in providers]})


@contextmanager
def hugind(url: str, *providers: dict[str, Any]) -> Iterator[httpx.Client]:
    with serve_in_thread(build_app(hugind_config(url, *providers))) as base, \
            httpx.Client(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        yield client


def openai(keys: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": "openai", "api_keys": keys, "models": ["gpt-*"],
            "timeout": {"connect_s": 2, "read_s": 2}, **extra}


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_first_key_429_then_second_key_serves_and_activity_records_it(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_429, KEY_OK])) as client:
        response = client.post("/v1/chat/completions", json=chat_body(),
                               headers={"Authorization": "Bearer client-key"})
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hi"
        assert response.headers["x-ratelimit-remaining-requests"] == "99"
        assert response.headers["x-upstream-request-id"] == "req_up_1"
        assert response.headers["x-request-id"].startswith("req-")  # Hugind's own
        assert [r["key"] for r in fake.requests] == [KEY_429, KEY_OK]
        admin = client.get("/admin/providers").json()
    events = admin["activity"]
    assert [e["event"] for e in events] == ["key_cooled_down", "failover"]
    assert events[0]["key"] == "..." + KEY_429[-4:]
    assert events[0]["status"] == 429
    assert events[0]["retry_after_s"] == 7
    keys = {k["key"]: k for k in admin["keys"]}
    assert keys["..." + KEY_429[-4:]]["state"] == "cooling_down"
    # Retry-After (7s) wins over the configured cooldown (60s by default).
    assert 0 < keys["..." + KEY_429[-4:]]["cooldown_remaining_s"] <= 7
    assert keys["..." + KEY_OK[-4:]]["state"] == "ready"


def test_all_keys_failing_gives_502_in_openai_shape(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_401, KEY_429, KEY_500])) as client:
        response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["type"] == "upstream_error"
    assert "'openai'" in error["message"]
    assert "HTTP 401" in error["message"] and "HTTP 500" in error["message"]
    assert len(fake.requests) == 3


def test_400_is_passed_through_once(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_400, KEY_OK])) as client:
        response = client.post("/v1/chat/completions", json=chat_body(n=5))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid value for 'n'"
    assert response.json()["error"]["param"] == "n"
    assert len(fake.requests) == 1


def test_remote_body_is_forwarded_before_local_validation(upstream) -> None:
    """Fields Hugind would bound or does not know reach the provider untouched."""
    fake, url = upstream
    body = chat_body(temperature=3.5, n=500, messages=[{"role": "wizard", "content": "hi"}],
                     vendor_extra={"a": 1})
    with hugind(url, openai([KEY_OK])) as client:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            response = client.post(path, json=body)
            assert response.status_code == 200, (path, response.text)
    assert len(fake.requests) == 3
    assert all(json.loads(r["body"]) == body for r in fake.requests)


def test_hanging_upstream_gives_504(upstream) -> None:
    _, url = upstream
    provider = openai([KEY_HANG], timeout={"connect_s": 1, "read_s": 0.5})
    with hugind(url, provider) as client:
        started = time.monotonic()
        response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert time.monotonic() - started < 4


def test_stream_reaches_the_client_chunk_by_chunk(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_OK])) as client, \
            client.stream("POST", "/v1/chat/completions",
                          json=chat_body(stream=True, gated=True)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        # The upstream is blocked until we release it: the first chunk came through alone.
        assert not fake.finished.is_set()
        assert "tok0" in first
        fake.release.set()
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert [json.loads(line[6:])["choices"][0]["delta"]["content"]
            for line in [first, *rest[:-1]]] == [f"tok{i}" for i in range(5)]


def test_upstream_drop_mid_stream_ends_with_an_error_event_and_no_retry(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_DROP, KEY_OK])) as client, \
            client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
        lines = [line for line in r.iter_lines() if line]
    assert "tok0" in lines[0] and "tok1" in lines[1]
    error = json.loads(lines[-1][6:])["error"]
    assert error["type"] == "upstream_error"
    assert "broke off" in error["message"]
    assert [r["key"] for r in fake.requests] == [KEY_DROP]


def test_client_disconnect_cancels_the_upstream_stream(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_OK])) as client:
        with client.stream("POST", "/v1/chat/completions",
                           json=chat_body(stream=True, gated=True)) as response:
            next(line for line in response.iter_lines() if line)
        assert fake.disconnected.wait(WAIT_S)
        fake.release.set()
        assert not fake.finished.is_set()


def test_client_disconnect_before_the_answer_cancels_the_upstream_request(upstream) -> None:
    fake, url = upstream
    provider = openai([KEY_HANG], timeout={"connect_s": 1, "read_s": 30})
    with hugind(url, provider) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=chat_body(), timeout=0.5)
        assert fake.disconnected.wait(WAIT_S)


def test_images_audio_and_moderations_are_forwarded(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_OK])) as client:
        images = client.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "x"})
        assert images.status_code == 200
        assert images.json()["data"][0]["b64_json"] == "aGk="

        speech = client.post("/v1/audio/speech",
                             json={"model": "tts-1", "input": "hi", "voice": "alloy"})
        assert speech.status_code == 200
        assert speech.headers["content-type"] == "audio/mpeg"
        assert speech.content == SPEECH

        files = {"file": ("a.wav", SPEECH, "audio/wav")}
        transcription = client.post("/v1/audio/transcriptions", files=files,
                                    data={"model": "whisper-1"})
        sent = fake.requests[-1]
        assert transcription.json()["sha256"] == hashlib.sha256(sent["body"]).hexdigest()
        assert transcription.request.read() == sent["body"]
        assert sent["headers"]["content-type"].startswith("multipart/form-data; boundary=")

        bare = client.post("/moderations", json={"input": "hello"})
        assert bare.status_code == 200
        assert bare.json()["results"][0]["flagged"] is False
        assert fake.requests[-1]["path"] == "/v1/moderations"

        listing = client.get("/v1/files", params={"purpose": "batch", "limit": "2"})
        assert listing.json() == {"echo": "/v1/files", "query": "purpose=batch&limit=2"}
        assert client.delete("/v1/files/file-1").json()["echo"] == "/v1/files/file-1"
        gone = client.delete("/v1/files/gone")
        assert (gone.status_code, gone.content) == (204, b"")

        assert client.get("/not-openai").status_code == 404
    assert all(r["key"] == KEY_OK for r in fake.requests)


def test_client_credentials_never_reach_the_upstream(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_OK])) as client:
        client.post("/v1/moderations", json={"input": "x"},
                    headers={"Authorization": "Bearer hugind-user-key",
                             "X-Api-Key": "hugind-user-key", "OpenAI-Beta": "v2"})
    headers = fake.requests[-1]["headers"]
    assert headers["authorization"] == f"Bearer {KEY_OK}"
    assert "x-api-key" not in headers
    assert headers["openai-beta"] == "v2"


def test_no_key_appears_in_logs_or_responses(upstream, caplog) -> None:
    _, url = upstream
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with hugind(url, openai([KEY_401, KEY_429, KEY_500, KEY_DROP, KEY_OK],
                            timeout={"connect_s": 1, "read_s": 1}),
                {"name": "backup", "api_keys": [KEY_HANG], "models": ["gpt-*"],
                 "timeout": {"connect_s": 1, "read_s": 0.3}}) as client:
        # 401 (echoing the key), 429, 500, then the backup provider hangs: 502
        r = client.post("/v1/chat/completions", json=chat_body())
        assert r.status_code == 502
        seen.append(r.text + json.dumps(dict(r.headers)))
        # the dropping key serves a stream that breaks off mid-body
        r = client.post("/v1/chat/completions", json=chat_body(stream=True))
        assert "broke off" in r.text
        seen.append(r.text + json.dumps(dict(r.headers)))
        r = client.post("/v1/chat/completions", json=chat_body())
        seen.append(r.text + json.dumps(dict(r.headers)))
        assert r.status_code == 200
        seen.append(client.get("/admin/providers").text)
    logged = caplog.text + "".join(record.getMessage() for record in caplog.records)
    assert "key_cooled_down" in seen[-1]
    for key in ALL_KEYS:
        assert key not in logged
        for text in seen:
            assert key not in text


def test_native_routes_are_not_shadowed_by_the_catch_alls(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_OK], models=["gpt-4o-mini", "gpt-*"])) as client:
        assert client.get("/health").status_code != 404
        models = client.get("/v1/models").json()["data"]
        assert {"id": "gpt-4o-mini", "object": "model", "created": 0,
                "owned_by": "openai"} in models
        assert client.get("/v1/models/gpt-4o-mini").json()["owned_by"] == "openai"
        assert client.get("/v1/models/gpt-unknown").status_code == 404
        client.post("/tokenize", json={"model": "gpt-4o", "content": "x"})
        client.get("/v1/sessions")
        assert client.get("/v1/chat/completions").status_code == 405
        assert fake.requests == []
        admin = client.get("/admin/providers").json()
    assert admin["providers"][0]["name"] == "openai"
    assert admin["providers"][0]["keys"][0]["key"] == "..." + KEY_OK[-4:]
    assert KEY_OK not in json.dumps(admin)


def test_models_merges_local_and_remote_and_local_wins(upstream) -> None:
    from hugind.app import create_app
    from tests.fakes import FakeEngine

    fake, url = upstream
    config = hugind_config(url, openai([KEY_OK], models=["fake", "gpt-4o-mini", "gpt-*"]),
                           {"name": "backup", "api_keys": [KEY_OK], "models": ["gpt-4o-mini",
                                                                                 "o3"]})
    with serve_in_thread(create_app(config, engine=FakeEngine())) as base, \
            httpx.Client(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        listed = [(m["id"], m["owned_by"]) for m in client.get("/v1/models").json()["data"]]
        local = client.post("/v1/chat/completions", json=chat_body(model="fake"))
        remote = client.post("/v1/chat/completions", json=chat_body())
        speech = client.post("/v1/audio/speech", json={"model": "fake", "input": "x"})
    assert speech.status_code == 404  # a local model is never sent to a provider
    assert "'fake' is a local model" in speech.json()["error"]["message"]
    assert listed == [("fake", "hugind"), ("fake-alias", "hugind"), ("fake-embed", "hugind"),
                      ("gpt-4o-mini", "openai"), ("o3", "backup")]
    assert local.status_code == 200 and local.json()["model"] == "fake"
    assert remote.json()["choices"][0]["message"]["content"] == "hi"
    assert [json.loads(r["body"])["model"] for r in fake.requests] == ["gpt-4o"]  # not "fake"


def raw_request(
    base: str, method: str, target: str, body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` byte for byte (httpx would resolve its dot segments client-side)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@contextmanager
def hugind_base(url: str, *providers: dict[str, Any]) -> Iterator[str]:
    with serve_in_thread(build_app(hugind_config(url, *providers))) as base:
        yield base


@pytest.mark.parametrize("target", [
    "/v1/../admin/providers", "/v1/files/../../secret", "/v1/files/%2e%2e/%2E%2E/secret",
    "/v1/files/%252e%252e/x", "/v1/files/..%5c..%5cx", "/v1/files/..%2fx", "/v1/files/..;/x",
    "/files/../../x", "/images/%2e%2e/edits",
])
def test_dot_segments_are_a_400_and_never_reach_the_upstream(upstream, target: str) -> None:
    fake, url = upstream
    with hugind_base(url, openai([KEY_OK], endpoints=["files", "images"])) as base:
        status, _, body = raw_request(base, "POST", target, b'{"model": "gpt-4o"}')
    assert status == 400, (target, body)
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_path")
    assert fake.requests == []


def test_encoded_slash_and_question_mark_are_forwarded_as_sent(upstream) -> None:
    fake, url = upstream
    with hugind_base(url, openai([KEY_OK], endpoints=["files"])) as base:
        status, _, body = raw_request(base, "GET", "/v1/files/a%2Fb%3Fc?limit=2")
    assert status == 200, body
    sent = fake.requests[-1]
    assert sent["raw_path"] == b"/v1/files/a%2Fb%3Fc"
    assert sent["query"] == "limit=2"
    assert sent["key"] == KEY_OK


def test_5xx_moves_to_the_next_key_without_cooling_it(upstream) -> None:
    fake, url = upstream
    with hugind(url, openai([KEY_500, KEY_OK], backoff_s=0.05)) as client:
        response = client.post("/v1/chat/completions", json=chat_body())
        admin = client.get("/admin/providers").json()
    assert response.status_code == 200
    assert [r["key"] for r in fake.requests] == [KEY_500, KEY_OK]
    keys = {k["key"]: k for k in admin["keys"]}
    assert keys["..." + KEY_500[-4:]]["state"] == "ready"
    assert keys["..." + KEY_500[-4:]]["last_status"] == 500
    assert [e["event"] for e in admin["activity"]] == ["attempt_failed", "failover"]


def test_post_read_timeout_is_not_sent_again_unless_retry_reads(upstream) -> None:
    fake, url = upstream
    slow = {"connect_s": 1, "read_s": 0.5}
    with hugind(url, openai([KEY_HANG, KEY_OK], timeout=slow)) as client:
        response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 504
    assert "retry_reads" in response.json()["error"]["message"]
    assert [r["key"] for r in fake.requests] == [KEY_HANG]

    fake.requests.clear()
    with hugind(url, openai([KEY_HANG, KEY_OK], timeout=slow, retry_reads=True)) as client:
        response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert [r["key"] for r in fake.requests] == [KEY_HANG, KEY_OK]


def test_breaker_trips_answers_a_fast_503_then_a_trial_closes_it(upstream) -> None:
    fake, url = upstream
    provider = openai([KEY_500], backoff_s=0.01, backoff_max_s=0.02, breaker_open_s=1)
    with hugind(url, provider) as client:
        first = client.post("/v1/chat/completions", json=chat_body())
        assert first.status_code == 502
        assert len(fake.requests) == 3  # one key, max_retries 2: three failures in a row

        started = time.monotonic()
        fast = client.post("/v1/chat/completions", json=chat_body())
        assert time.monotonic() - started < 0.5
        assert fast.status_code == 503
        assert fast.headers["retry-after"] == "1"
        error = fast.json()["error"]
        assert set(error) == {"message", "type", "param", "code", "request_id"}
        assert error["code"] == "provider_unavailable"
        assert len(fake.requests) == 3  # nothing sent while tripped
        assert client.get("/admin/providers").json()["providers"][0]["breaker"]["state"] == "open"

        fake.modes[KEY_500] = "ok"
        time.sleep(1.1)
        trial = client.post("/v1/chat/completions", json=chat_body())
        admin = client.get("/admin/providers").json()
    assert trial.status_code == 200
    assert len(fake.requests) == 4
    assert admin["providers"][0]["breaker"]["state"] == "closed"
    assert [e["event"] for e in admin["activity"]][-3:] == [
        "provider_tripped", "provider_skipped", "provider_restored"]
