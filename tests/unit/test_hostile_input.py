"""Hostile requests over a FakeEngine: each is a 4xx in the OpenAI error shape naming the field,
never a 5xx (issue 14, "Hostile input")."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hugind.api.protocol import MAX_DEPTH, nesting_depth
from hugind.engine.prompt import ChatTemplate, TemplateError
from tests.fakes import FakeEngine
from tests.unit.test_api_errors import make_client

USER = [{"role": "user", "content": "hi"}]
CHAT = {"model": "fake", "messages": USER, "max_tokens": 3}
COMP = {"model": "fake", "prompt": "hi", "max_tokens": 3}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "f"}}]


def deep(kind: str, depth: int) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def chat_with(field: str, raw: bytes) -> bytes:
    return json.dumps(CHAT).encode()[:-1] + b', "' + field.encode() + b'": ' + raw + b"}"


HOSTILE = [
    # Each row: path, body (bytes are sent as they are), status, param.
    ("/v1/chat/completions", deep("object", 50_000), 400, "a"),
    ("/v1/chat/completions", deep("array", 100_000), 400, None),
    ("/v1/chat/completions", chat_with("tools", deep("array", 100_000)), 400, "tools"),
    ("/v1/chat/completions", chat_with("response_format", deep("object", 100_000)), 400,
     "response_format"),
    ("/v1/chat/completions", chat_with("zz_unknown", deep("object", 2_000)), 400, "zz_unknown"),
    ("/v1/completions", json.dumps({**COMP, "prompt": "[{" * 1_000}).encode(), 200, None),
    ("/v1/chat/completions", chat_with("temperature", b"NaN"), 400, None),
    ("/v1/chat/completions", chat_with("temperature", b"1e999"), 400, "temperature"),
    ("/v1/chat/completions", chat_with("temperature", b'"nan"'), 400, "temperature"),
    ("/v1/chat/completions", chat_with("top_p", b"-Infinity"), 400, None),
    ("/v1/chat/completions", chat_with("max_tokens", b"9" * 400), 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 2**64}, 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_completion_tokens": 2**63}, 400,
     "max_completion_tokens"),
    ("/v1/chat/completions", {**CHAT, "n": 129}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "n": 10**30}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "seed": 2**64}, 400, "seed"),
    ("/v1/chat/completions", {**CHAT, "top_k": 2**40}, 400, "top_k"),
    ("/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 21}, 400,
     "top_logprobs"),
    ("/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": -1}, 400,
     "top_logprobs"),
    ("/v1/completions", {**COMP, "best_of": 129}, 400, "best_of"),
    ("/v1/completions", {**COMP, "n": 2, "best_of": 1}, 400, "best_of"),
    ("/v1/completions", {**COMP, "prompt": ["hi"] * 65, "n": 2}, 400, "prompt"),
    ("/v1/completions", {**COMP, "prompt": ["hi"] * 10_000}, 400, "prompt"),
    ("/v1/completions", {**COMP, "logprobs": 10**9}, 400, "logprobs"),
    # Content: null only on an assistant message with tool calls (OpenAI's rule).
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": None}]}, 400,
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user"}]}, 400,
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "system", "content": None}, *USER]},
     400, "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [*USER, {"role": "assistant",
                                                           "content": None}]}, 400,
     "messages[1].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [*USER, {"role": "assistant", "content": None,
                                                           "tool_calls": [CALL]}]}, 200, None),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "tool", "content": None}]}, 400,
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": []}]}, 400,
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": ""}]}, 200, None),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, 400,
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": None, "content": "x"}]}, 400,
     "messages[0].role"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "video"}]}]}, 400, "messages[0].content[0].type"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [{}]}]}, 400,
     "messages[0].content[0].type"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": ["text"]}]}, 400,
     "messages[0].content[0]"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "text", "text": None}]}]}, 400, "messages[0].content[0].text"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "refusal", "refusal": "no"}]}]}, 400, "messages[0].content[0].type"),
    ("/v1/chat/completions", {**CHAT, "messages": [*USER, {"role": "assistant", "content": [
        {"type": "refusal", "refusal": "no"}]}]}, 200, None),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "file", "file": {}}]}]}, 400, "messages[0].content[0]"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "assistant", "content": None,
                                                    "tool_calls": [{"function": 5}]}]}, 400,
     "messages[0].tool_calls[0].function"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "assistant", "content": None,
                                                    "tool_calls": [{"function": {"name": 5}}]}]},
     400, "messages[0].tool_calls[0].function.name"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "assistant", "content": None,
                                                    "tool_calls": ["x"]}]}, 400,
     "messages[0].tool_calls[0]"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "assistant", "content": "x",
                                                    "function_call": {"arguments": "{}"}}]},
     400, "messages[0].function_call.name"),
    # Stops: at most 16 of at most 256 characters.
    ("/v1/chat/completions", {**CHAT, "stop": ["x"] * 5_000}, 400, "stop"),
    ("/v1/chat/completions", {**CHAT, "stop": [str(i) for i in range(16)]}, 200, None),
    ("/v1/chat/completions", {**CHAT, "stop": ["ok", "x" * 257]}, 400, "stop[1]"),
    ("/v1/chat/completions", {**CHAT, "stop": "x" * 257}, 400, "stop"),
    ("/v1/chat/completions", {**CHAT, "stop": ["x" * 256]}, 200, None),
    ("/v1/chat/completions", {**CHAT, "stop": [["x"]]}, 400, "stop[0]"),
    # logit_bias: at most 1024 entries whose keys are decimal token ids.
    ("/v1/chat/completions", {**CHAT, "logit_bias": {str(i): 1 for i in range(100_000)}}, 400,
     "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {str(i): 1 for i in range(1_025)}}, 400,
     "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {str(i): 1 for i in range(1_024)}}, 200,
     None),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"1_0": 1}}, 400, "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {" 5": 1}}, 400, "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"1" * 5_000: 1}}, 400, "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"5": 101}}, 400, "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": [[5, 1]]}, 400, "logit_bias"),
    # Model ids and session names.
    ("/v1/chat/completions", {**CHAT, "model": "../fake"}, 404, "model"),
    ("/v1/chat/completions", {**CHAT, "model": "%2e%2e/fake"}, 404, "model"),
    ("/v1/chat/completions", {**CHAT, "model": "/etc/passwd"}, 404, "model"),
    ("/v1/completions", {**COMP, "model": "fake/../fake"}, 404, "model"),
    ("/v1/embeddings", {"model": "../../fake-embed", "input": "x"}, 404, "model"),
    ("/v1/tokenize", {"model": "..%2Ffake", "content": "x"}, 404, "model"),
    ("/v1/chat/completions", {**CHAT, "model": "m" * 257}, 400, "model"),
    ("/v1/chat/completions", {**CHAT, "model": ""}, 400, "model"),
    ("/v1/chat/completions", {**CHAT, "user": "u" * 257}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "prompt_cache_key": "k" * 100_000}, 400,
     "prompt_cache_key"),
    ("/v1/chat/completions", {**CHAT, "prompt_cache_key": "../../../etc/passwd"}, 200, None),
    ("/v1/embeddings", {"model": "fake-embed", "input": "x", "user": "u" * 257}, 400, "user"),
    ("/v1/embeddings", {"model": "fake-embed", "input": "x", "dimensions": 2**64}, 400,
     "dimensions"),
    # Tools.
    ("/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": {
        "type": "function", "function": "f"}}, 400, "tool_choice"),
    ("/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": {"function": {"name": 5}}},
     400, "tool_choice"),
    ("/v1/chat/completions", {**CHAT, "functions": [{"name": "f"}], "function_call": {}}, 400,
     "function_call"),
    ("/v1/chat/completions", {**CHAT, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": "x"}}]}, 400, "tools[0].function.parameters"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": "x" * 100_000}, 400, "tool_choice"),
    # Huge strings, invalid UTF-8 and ids.
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * 3_000}]},
     400, "messages"),
    ("/v1/chat/completions", chat_with("user", b'"\xff\xfe\xc3"'), 400, None),
    ("/v1/chat/completions", chat_with("user", b'"\\ud800"'), 400, None),
    ("/detokenize", {"model": "fake", "tokens": [2**64]}, 400, "tokens[0]"),
    ("/detokenize", {"model": "fake", "tokens": [-1]}, 400, "tokens[0]"),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), HOSTILE)
def test_hostile_request(path: str, body: object, status: int, param: str | None) -> None:
    with make_client(FakeEngine(n_ctx=2048), max_body_bytes=4 * 1024 * 1024) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text[:500]
    if status != 200:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code", "request_id"}
        assert err["param"] == param, err
        assert err["message"] and len(err["message"]) < 2_000


def test_null_content_user_never_reaches_the_engine() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        r = client.post("/v1/chat/completions", json={**CHAT, "messages": [
            {"role": "user", "content": None}]})
    assert r.status_code == 400
    assert engine.requests == []


def test_long_session_header_is_400() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Session-Id": "s" * 257})
        assert r.status_code == 400 and r.json()["error"]["param"] == "X-Session-Id"
        r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Session-Id": "../" * 85})
        assert r.status_code == 200
    assert [q.session for q in engine.requests] == ["../" * 85]


@pytest.mark.parametrize("path", ["/v1/models/..%2F..%2Fetc%2Fpasswd", "/v1/models/%2e%2e",
                                  "/v1/models/../../x", "/v1/models/" + "a" * 5_000,
                                  "/v1/models/%ff%fe", "/v1/sessions/%2e%2e"])
def test_path_like_ids_in_urls_are_404(path: str) -> None:
    with make_client() as client:
        r = client.get(path)
    assert r.status_code == 404, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code", "request_id"}


def test_tool_calls_reach_the_template_as_plain_objects() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        r = client.post("/v1/chat/completions/render", json={**CHAT, "messages": [
            *USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}]})
    assert r.status_code == 200, r.text
    assert "<assistant>" in r.json()["prompt"]


JINJA = ["{{ 7 * 7 }}", "{% for x in range(10**9) %}x{% endfor %}", "{{ raise_exception('x') }}",
         "{{ ''.__class__.__mro__ }}", "{% set ns.system = 'pwned' %}", "{#", "{{", "{%"]


@pytest.mark.parametrize("source", ["gemma", "chatml", "llama3"])
@pytest.mark.parametrize("text", JINJA)
def test_template_treats_jinja_in_messages_as_data(source: str, text: str) -> None:
    rendered = ChatTemplate(source).render([{"role": "system", "content": text},
                                            {"role": "user", "content": text}])
    assert rendered.count(text) == 2
    assert "49" not in rendered


@pytest.mark.parametrize("source", ["{{ tools | tojson }}", "{{ 1 // (messages | length - 1) }}",
                                    "{{ messages[5]['content'] }}"])
def test_template_errors_on_client_data_are_400s(source: str) -> None:
    """Client data a template cannot handle (nesting json.dumps recurses on, a count it
    divides by, a missing turn) is a template error naming messages, not a 500."""
    nested: list[object] = []
    for _ in range(5_000):
        nested = [nested]
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source).render(USER, tools=[{"type": "function", "function": {
            "name": "f", "parameters": nested}}])
    assert info.value.status == 400
    assert info.value.param == "messages"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.recursive(st.integers() | st.text(alphabet='[]{}"\\:,a', max_size=6),
                         lambda c: st.lists(c, max_size=3)
                         | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=30))
def test_nesting_depth_equals_a_recursive_count(body: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    text = json.dumps(body).encode()
    want = depth(body)
    got = nesting_depth(text)
    assert got == want or (want <= MAX_DEPTH and got <= MAX_DEPTH and want <= got)


def test_brackets_in_strings_do_not_count() -> None:
    body = json.dumps({"model": "fake", "prompt": [[1, 2, 3]] * 30_000,
                       "s": '"[{\\' * 100_000}).encode()
    assert nesting_depth(body) == 3


def test_deep_bodies_are_400s_with_providers_configured() -> None:
    """The provider check reads ``model`` before validation: a deep body must not reach the
    decoder there either."""
    from litestar.testing import TestClient

    from hugind.app import create_app
    from hugind.config import parse_config

    config = parse_config({"providers": [{"name": "up", "base_url": "http://127.0.0.1:9/v1",
                                          "models": ["remote-*"]}]})
    with TestClient(create_app(config, engine=FakeEngine())) as client:
        for kind in ("array", "object"):
            r = client.post("/v1/chat/completions", content=deep(kind, 100_000),
                            headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["type"] == "invalid_request_error"
