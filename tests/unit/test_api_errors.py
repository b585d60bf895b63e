"""The HTTP layer over a FakeEngine: error shapes, SSE framing, auth, disconnect -> cancel."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread


def make_client(engine: FakeEngine | None = None, **server: object) -> TestClient:
    config = parse_config({"server": {"max_body_bytes": 4096, **server}})
    return TestClient(create_app(config, engine=engine or FakeEngine()))


CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}

ERROR_TABLE = [
    # Each row: path, body, status, error type, param.
    ("/v1/chat/completions", b"{not json", 400, "invalid_request_error", None),
    ("/v1/chat/completions", b"", 400, "invalid_request_error", None),
    ("/v1/chat/completions", b"[1,2]", 400, "invalid_request_error", None),
    ("/v1/completions", b'{"model": "fake", "prompt": "\xff\xfe"}', 400,
     "invalid_request_error", None),
    ("/v1/completions", b'\xff{"model": "fake"}', 400, "invalid_request_error", None),
    ("/v1/chat/completions", {"messages": CHAT["messages"]}, 400, "invalid_request_error",
     "model"),
    ("/v1/chat/completions", {"model": "fake"}, 400, "invalid_request_error", "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": []}, 400, "invalid_request_error",
     "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400,
     "invalid_request_error", "messages[0].role"),
    ("/v1/chat/completions", {**CHAT, "temperature": "hot"}, 400, "invalid_request_error",
     "temperature"),
    ("/v1/chat/completions", {**CHAT, "temperature": 3}, 400, "invalid_request_error",
     "temperature"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, 400, "invalid_request_error",
     "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "top_p": 1.5}, 400, "invalid_request_error", "top_p"),
    ("/v1/chat/completions", {**CHAT, "n": 0}, 400, "invalid_request_error", "n"),
    ("/v1/chat/completions", {**CHAT, "stop": [str(i) for i in range(17)]}, 400,
     "invalid_request_error", "stop"),
    ("/v1/chat/completions", {**CHAT, "stop": 5}, 400, "invalid_request_error", "stop"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"abc": 1}}, 400, "invalid_request_error",
     "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 3}, 400, "invalid_request_error",
     "logprobs"),
    ("/v1/chat/completions", {**CHAT, "model": "nope"}, 404, "invalid_request_error", "model"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * 200}]},
     400, "invalid_request_error", "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, 400,
     "invalid_request_error", "messages[0].content[0]"),
    ("/v1/completions", {"model": "fake"}, 400, "invalid_request_error", "prompt"),
    ("/v1/completions", {"model": "fake", "prompt": 5}, 400, "invalid_request_error", "prompt"),
    ("/v1/completions", {"model": "fake", "prompt": ["ok", 3]}, 400, "invalid_request_error",
     "prompt[1]"),
    ("/v1/completions", {"model": "fake", "prompt": "x", "suffix": "y"}, 400,
     "invalid_request_error", "suffix"),
    ("/v1/embeddings", {"model": "fake-embed"}, 400, "invalid_request_error", "input"),
    ("/v1/embeddings", {"model": "fake-embed", "input": []}, 400, "invalid_request_error",
     "input"),
    ("/v1/embeddings", {"model": "fake-embed", "input": "x",
                        "encoding_format": "hex"}, 400, "invalid_request_error",
     "encoding_format"),
    ("/v1/embeddings", {"model": "fake-embed", "input": ["x" * 100]}, 400,
     "invalid_request_error", "input[0]"),
    ("/v1/embeddings", {"model": "ghost", "input": "x"}, 404, "invalid_request_error", "model"),
    ("/detokenize", {"model": "fake", "tokens": [5000]}, 400, "invalid_request_error",
     "tokens[0]"),
]


@pytest.mark.parametrize(("path", "body", "status", "etype", "param"), ERROR_TABLE)
def test_error_table(path: str, body: object, status: int, etype: str, param: str | None,
                     ) -> None:
    with make_client() as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = client.post(path, content=content, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code", "request_id"}
        assert err["type"] == etype
        assert err["param"] == param
        assert err["message"]


def test_unknown_path_and_method_are_openai_errors() -> None:
    with make_client() as client:
        r = client.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        r = client.get("/v1/chat/completions")
        assert r.status_code == 405 and "error" in r.json()


def test_oversized_body_is_413() -> None:
    with make_client() as client:
        r = client.post("/v1/chat/completions", content=b"{" + b" " * 8000 + b"}",
                        headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


def test_unknown_model_get_is_404() -> None:
    with make_client() as client:
        assert client.get("/v1/models/fake").json()["id"] == "fake"
        assert client.get("/v1/models/fake-alias").status_code == 200
        r = client.get("/v1/models/ghost")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_auth_required_except_health() -> None:
    with make_client(api_keys=["sekrit-1", "sekrit-2"]) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert "wrong" not in r.text
        r = client.get("/v1/models", headers={"Authorization": "Bearer sekrit-2"})
        assert r.status_code == 200
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401


def test_sse_framing_and_usage() -> None:
    with make_client() as client:
        r = client.post("/v1/chat/completions", json={
            **CHAT, "stream": True, "stream_options": {"include_usage": True}})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = r.text.split("\n\n")
        assert frames[-1] == ""
        assert frames[-2] == "data: [DONE]"
        chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
        assert all(f.startswith("data: ") for f in frames[:-1])
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == []
        usage = chunks[-1]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
        assert text == "Hello there, friend."


def test_bare_paths_match_v1() -> None:
    with make_client() as client:
        a = client.post("/chat/completions", json=CHAT).json()
        b = client.post("/v1/chat/completions", json=CHAT).json()
        assert a["choices"][0]["message"] == b["choices"][0]["message"]
        assert client.get("/models").json()["data"] == client.get("/v1/models").json()["data"]
        assert client.post("/embeddings", json={"model": "fake-embed", "input": "x"}
                           ).status_code == 200


def test_n_choices_and_seed_offsets() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        r = client.post("/v1/chat/completions", json={**CHAT, "n": 3, "seed": 7})
        assert [c["index"] for c in r.json()["choices"]] == [0, 1, 2]
        assert [q.sampling.seed for q in engine.requests] == [7, 8, 9]
        assert r.json()["usage"]["completion_tokens"] == 15


def test_session_name_from_prompt_cache_key_user_or_header() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        client.post("/v1/chat/completions", json={**CHAT, "user": "u", "prompt_cache_key": "k"})
        client.post("/v1/chat/completions", json={**CHAT, "user": "u"})
        client.post("/v1/chat/completions", json=CHAT, headers={"X-Session-Id": "h"})
        client.post("/v1/chat/completions", json=CHAT)
    assert [r.session for r in engine.requests] == ["k", "u", "h", None]


def test_tenant_is_derived_from_key_and_never_the_key() -> None:
    engine = FakeEngine()
    with make_client(engine, api_keys=["alpha-key", "beta-key"]) as client:
        for key in ("alpha-key", "beta-key"):
            client.post("/v1/chat/completions", json={**CHAT, "user": "same"},
                        headers={"Authorization": f"Bearer {key}"})
    a, b = (r.tenant for r in engine.requests)
    assert a != b and "alpha" not in a and "beta" not in b


def test_disconnect_cancels_generation() -> None:
    engine = FakeEngine(["w"] * 300, delay_s=0.01)
    app = create_app(parse_config({}), engine=engine)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        with client.stream("POST", "/v1/chat/completions",
                           json={**CHAT, "stream": True, "max_tokens": 300}) as r:
            for line in r.iter_lines():
                if '"w"' in line:
                    break
        deadline = time.monotonic() + 5
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    assert engine.cancelled, "the generation was not cancelled after the client left"
    assert not engine.finished


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["model", "messages", "temperature", "max_tokens", "stop", "n",
                          "stream", "logit_bias", "top_p", "seed", "prompt", "input", "user",
                          "response_format", "tools", "tool_choice", "logprobs"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(FIELDS, JSON_VALUES, max_size=6),
       path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]))
def test_any_json_gets_200_or_openai_4xx(body: dict[str, object], path: str) -> None:
    with make_client() as client:
        r = client.post(path, json=body)
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code", "request_id"}
