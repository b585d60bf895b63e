"""The shared request function, on a mock transport (no network)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from bench.cli import parse_target
from bench.client import RequestSpec, Target, build_request, probe_capabilities, send_request


def _sse(*chunks: dict) -> bytes:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return body.encode()


def _delta(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def _run(handler, target: Target, spec: RequestSpec):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send_request(client, target, spec, timeout_s=5)

    return asyncio.run(go())


def test_base_url_is_normalized() -> None:
    assert Target("a", "http://h:1", "m").api_root == "http://h:1/v1"
    assert Target("a", "http://h:1/v1/", "m").api_root == "http://h:1/v1"
    t = Target("a", "http://h:1", "m", embed_url="http://h:2")
    assert t.embed_root == "http://h:2/v1"


def test_build_request_honours_supports() -> None:
    t = Target("a", "http://h:1", "m")
    spec = RequestSpec(messages=[{"role": "user", "content": "x"}], max_tokens=8, session="u1")
    url, body = build_request(t, spec)
    assert url == "http://h:1/v1/chat/completions"
    assert body["model"] == "m" and body["max_tokens"] == 8 and body["temperature"] == 0.0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True
    assert body["user"] == "u1" and body["prompt_cache_key"] == "u1"
    t.supports.update(ignore_eos=False, prompt_cache_key=False, stream_options=False)
    _, body = build_request(t, spec)
    assert "ignore_eos" not in body and "prompt_cache_key" not in body
    assert "stream_options" not in body and body["user"] == "u1"


def test_build_request_embeddings() -> None:
    t = Target("a", "http://h:1", "m", embed_model="e")
    url, body = build_request(t, RequestSpec(kind="embeddings", inputs=["a", "b"], stream=False))
    assert url == "http://h:1/v1/embeddings"
    assert body == {"model": "e", "input": ["a", "b"]}


def test_streamed_request_is_measured() -> None:
    seen: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(
            200,
            content=_sse(_delta("a"), _delta("b"), _delta("c", "length")),
            headers={"content-type": "text/event-stream"},
        )

    spec = RequestSpec(
        messages=[{"role": "user", "content": "x"}], max_tokens=3, labels={"scenario": "t"}
    )
    r = _run(handler, Target("a", "http://h", "m", key="sk-1"), spec)
    assert r.ok, r.error
    assert r.output_tokens == 3 and r.content_chunks == 3 and len(r.itl_ms) == 2
    assert r.ttft_ms is not None and r.latency_ms is not None and r.latency_ms >= r.ttft_ms
    assert r.finish_reason == "length" and r.done_seen and not r.cut_off
    assert r.labels == {"scenario": "t"}
    assert seen["auth"] == "Bearer sk-1"
    assert seen["body"]["model"] == "m"
    assert r.to_dict()["text"] == "abc"  # fmt: skip


def test_failures_are_data() -> None:
    def http_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"message": "queue full"}})

    r = _run(http_error, Target("a", "http://h", "m"), RequestSpec(messages=[]))
    assert not r.ok and r.status_code == 429 and r.error == "HTTP 429: queue full"

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    r = _run(refused, Target("a", "http://h", "m"), RequestSpec(messages=[]))
    assert not r.ok and r.status_code is None and r.error is not None
    assert r.error.startswith("ConnectError")

    def cut(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n')

    r = _run(cut, Target("a", "http://h", "m"), RequestSpec(messages=[]))
    assert not r.ok and r.cut_off and r.output_tokens == 1


def test_embeddings_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["input"])
        return httpx.Response(
            200, json={"data": [{"embedding": [0.1]}] * n, "usage": {"prompt_tokens": 6}}
        )

    spec = RequestSpec(kind="embeddings", inputs=["a", "b", "c"], stream=False)
    r = _run(handler, Target("a", "http://h", "m", embed_model="e"), spec)
    assert r.ok and r.inputs == 3 and r.prompt_tokens == 6


def test_probe_drops_rejected_fields() -> None:
    def strict(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "ignore_eos" in body:
            return httpx.Response(422, json={"detail": "unknown field ignore_eos"})
        return httpx.Response(200, content=_sse(_delta("hi", "stop")))

    async def go():  # type: ignore[no-untyped-def]
        t = Target("a", "http://h", "m")
        async with httpx.AsyncClient(transport=httpx.MockTransport(strict)) as client:
            return t, await probe_capabilities(client, t)

    t, r = asyncio.run(go())
    assert r.ok
    assert t.supports == {"ignore_eos": False, "prompt_cache_key": True, "stream_options": True}


def test_parse_target() -> None:
    t = parse_target("hugind=http://127.0.0.1:8080,model=gemma-3-270m,key=sk-x,embed-model=e")
    assert (t.name, t.base_url, t.model, t.key, t.embed_model) == (
        "hugind",
        "http://127.0.0.1:8080",
        "gemma-3-270m",
        "sk-x",
        "e",
    )
    with pytest.raises(Exception, match="NAME=URL"):
        parse_target("http://127.0.0.1:8080")
    with pytest.raises(Exception, match="unknown target option"):
        parse_target("a=http://h,colour=red")  # fmt: skip


def test_connection_dropped_mid_stream_is_cut_off_not_failed() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
            raise httpx.RemoteProtocolError("peer closed connection")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Broken())

    r = _run(handler, Target("a", "http://h", "m"), RequestSpec(messages=[]))
    assert not r.ok and r.cut_off and r.output_tokens == 1
    assert r.error is not None and r.error.startswith("stream cut off")
