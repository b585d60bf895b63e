"""The documented response Structs match what the handlers send: real answers decode with
them (unknown fields are refused), so /openapi.json cannot drift from the code."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from hugind.api import response_types as res
from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
SESSION = {"name": "alice", "tokens": 12, "tier": "ram", "bytes": 4096, "last_used": 1.5,
           "model": "fake"}


class SessionEngine(FakeEngine):
    async def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        return [dict(SESSION)]

    async def delete_session(self, tenant: str, name: str) -> bool:
        return name == "alice"


@pytest.fixture
def client() -> Any:
    with TestClient(create_app(parse_config({}), engine=SessionEngine())) as c:
        yield c


def events(body: str) -> list[bytes]:
    data = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [d.encode() for d in data[:-1]]


@pytest.mark.parametrize(("method", "path", "body", "kind"), [
    ("post", "/v1/chat/completions", CHAT, res.ChatCompletion),
    ("post", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2, "n": 2},
     res.ChatCompletion),
    ("post", "/v1/chat/completions", {**CHAT, "tool_choice": "required", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
     res.ChatCompletion),
    ("post", "/v1/completions", {"model": "fake", "prompt": "hi", "logprobs": 2, "echo": True},
     res.Completion),
    ("post", "/v1/embeddings", {"model": "fake-embed", "input": ["a", "b"]},
     res.CreateEmbeddingResponse),
    ("post", "/v1/embeddings", {"model": "fake-embed", "input": "a",
                                "encoding_format": "base64"}, res.CreateEmbeddingResponse),
    ("get", "/v1/models", None, res.ModelList),
    ("get", "/v1/models/fake-alias", None, res.Model),
    ("post", "/tokenize", {"model": "fake", "content": "hi"}, res.TokenizeResponse),
    ("post", "/tokenize", {"model": "fake", "content": "hi", "with_pieces": True},
     res.TokenizeResponse),
    ("post", "/detokenize", {"model": "fake", "tokens": [104, 105]}, res.DetokenizeResponse),
    ("post", "/v1/chat/completions/render", CHAT, res.ChatRender),
    ("get", "/v1/sessions", None, res.SessionList),
    ("get", "/v1/sessions/alice", None, res.Session),
    ("delete", "/v1/sessions/alice", None, res.SessionDeleted),
    ("get", "/health", None, res.Health),
    ("get", "/v1/models/ghost", None, res.ErrorResponse),
])
def test_answers_decode_with_their_documented_type(client: Any, method: str, path: str,
                                                   body: Any, kind: type) -> None:
    r = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    msgspec.json.decode(r.content, type=kind)


@pytest.mark.parametrize(("path", "body", "kind"), [
    ("/v1/chat/completions", {**CHAT, "logprobs": True,
                              "stream_options": {"include_usage": True}},
     res.ChatCompletionChunk),
    ("/v1/chat/completions", {**CHAT, "tool_choice": "required", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
     res.ChatCompletionChunk),
    ("/v1/completions", {"model": "fake", "prompt": "hi", "logprobs": 1, "echo": True,
                         "stream_options": {"include_usage": True}}, res.Completion),
])
def test_stream_events_decode_as_chunks(client: Any, path: str, body: dict[str, Any],
                                        kind: type) -> None:
    r = client.post(path, json={**body, "stream": True})
    chunks = [msgspec.json.decode(e, type=kind) for e in events(r.text)]
    assert len(chunks) > 1
    assert json.loads(events(r.text)[0])["id"] == chunks[-1].id


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("legacy", [False, True])
def test_tool_call_answers_decode(stream: bool, legacy: bool) -> None:
    engine = FakeEngine(words=['<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'])
    fn = {"name": "f", "parameters": {"type": "object"}}
    tools = {"functions": [fn]} if legacy else {"tools": [{"type": "function", "function": fn}]}
    with TestClient(create_app(parse_config({}), engine=engine)) as client:
        r = client.post("/v1/chat/completions", json={**CHAT, **tools, "stream": stream})
    if stream:
        chunks = [msgspec.json.decode(e, type=res.ChatCompletionChunk) for e in events(r.text)]
        reasons = [c.choices[0].finish_reason for c in chunks]
    else:
        reasons = [msgspec.json.decode(r.content, type=res.ChatCompletion)
                   .choices[0].finish_reason]
    assert reasons[-1] == ("function_call" if legacy else "tool_calls")


def test_probe_and_admin_answers_decode() -> None:
    config = parse_config({"server": {"admin_keys": ["adm-1"]}})
    admin = {"Authorization": "Bearer adm-1"}
    with TestClient(create_app(config, engine=SessionEngine())) as client:
        for path in ("/health/live", "/health/ready"):
            msgspec.json.decode(client.get(path).content, type=res.Probe)
        r = client.get("/admin/models", headers=admin)
        assert r.status_code == 200
        listed = msgspec.json.decode(r.content, type=res.AdminModelList)
    assert {m.id for m in listed.data} == {"fake", "fake-embed"}
