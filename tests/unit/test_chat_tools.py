"""Tool calls over a FakeEngine: legacy function_call streaming, parallel_tool_calls, and how
tool turns render for templates that know nothing of tools."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.prompt import ChatTemplate, inline_tool_turns
from tests.fakes import FakeEngine

FN = {"name": "weather", "parameters": {"type": "object",
                                        "properties": {"city": {"type": "string"}}}}
CALL = '<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
USER = [{"role": "user", "content": "weather?"}]


def client(words: list[str]) -> TestClient:
    return TestClient(create_app(parse_config({}), engine=FakeEngine(words)))


def sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


def test_legacy_function_call_streams_as_function_call() -> None:
    with client([CALL]) as c:
        r = c.post("/v1/chat/completions", json={
            "model": "fake", "messages": USER, "functions": [FN], "stream": True,
            "function_call": {"name": "weather"}, "max_tokens": 5})
    chunks = sse(r.text)
    deltas = [ch["choices"][0]["delta"] for ch in chunks]
    assert not any("tool_calls" in d for d in deltas)
    calls = [d["function_call"] for d in deltas if "function_call" in d]
    assert calls == [{"name": "weather", "arguments": '{"city": "Paris"}'}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


@pytest.mark.parametrize(("parallel", "n_calls"), [(None, 2), (True, 2), (False, 1)])
def test_parallel_tool_calls(parallel: bool | None, n_calls: int) -> None:
    body: dict[str, Any] = {"model": "fake", "messages": USER, "max_tokens": 5,
                            "tools": [{"type": "function", "function": FN}]}
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    with client([CALL, CALL.replace("Paris", "Rome")]) as c:
        r = c.post("/v1/chat/completions", json=body)
    msg = r.json()["choices"][0]["message"]
    assert len(msg["tool_calls"]) == n_calls
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("body", "param"), [
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
])
def test_audio_output_is_rejected(body: dict[str, Any], param: str) -> None:
    with client(["x"]) as c:
        r = c.post("/v1/chat/completions", json={"model": "fake", "messages": USER, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_text_modality_is_fine() -> None:
    with client(["x"]) as c:
        r = c.post("/v1/chat/completions", json={"model": "fake", "messages": USER,
                                                 "modalities": ["text"]})
    assert r.status_code == 200


def test_inline_tool_turns() -> None:
    msgs = [
        *USER,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function",
             "function": {"name": "weather", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    out = inline_tool_turns(msgs)
    assert out[0] == USER[0]
    assert "tool_calls" not in out[1]
    assert out[1]["content"] == CALL + CALL.replace("Paris", "Rome")
    assert out[2]["content"] == "<tool_response>sunny</tool_response>"
    assert msgs[1]["tool_calls"]  # the input is not modified
    rendered = ChatTemplate("gemma").render(out)
    assert "<start_of_turn>model\n" + CALL in rendered
    assert "<start_of_turn>user\n<tool_response>sunny</tool_response>" in rendered


@pytest.mark.parametrize(("words", "key"), [(["It is ", "sunny."], "content"),
                                            ([CALL], "tool_calls")])
def test_streamed_logprobs_survive_tool_buffering(words: list[str], key: str) -> None:
    """With tools the reply is buffered to be parsed; its logprobs still arrive, as many as
    the tokens, on the chunk that carries the reply (as in the unstreamed response)."""
    body = {"model": "fake", "messages": USER, "max_tokens": 5, "stream": True,
            "logprobs": True, "tools": [{"type": "function", "function": FN}]}
    with client(words) as c:
        streamed = sse(c.post("/v1/chat/completions", json=body).text)
        whole = c.post("/v1/chat/completions", json={**body, "stream": False}).json()
    carrying = [ch["choices"][0] for ch in streamed if ch["choices"][0]["delta"].get(key)]
    assert carrying[0]["logprobs"] == whole["choices"][0]["logprobs"]
    assert [lp["token"] for lp in carrying[0]["logprobs"]["content"]] == words
