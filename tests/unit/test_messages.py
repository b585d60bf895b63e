"""Anthropic Messages over a FakeEngine: request conversion, the Message object, stream events,
Anthropic's error shape, session identity."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from hugind.api.anthropic_convert import to_chat_request
from hugind.api.anthropic_protocol import MessagesRequest
from hugind.api.anthropic_response import content_blocks, stop_reason
from hugind.api.anthropic_stream import TextUntilCall, events
from hugind.api.chat import to_template_messages
from hugind.api.tools import plan_tools
from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import FinishReason, GenerationRequest, TokenEvent, Usage
from hugind.errors import InvalidRequestError, OverloadedError
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread

MSG = {"model": "fake", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
CALL_TEXT = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def make_client(engine: FakeEngine | None = None, **server: object) -> TestClient:
    return TestClient(create_app(parse_config({"server": server}),
                                 engine=engine or FakeEngine()))


def convert(**fields: Any) -> Any:
    return to_chat_request(msgspec.convert({**MSG, **fields}, MessagesRequest))


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- conversion ---------------------------------------------------------------------------------

def test_a_tool_conversation_becomes_chat_messages() -> None:
    chat = convert(system=[{"type": "text", "text": "Be brief."},
                           {"type": "text", "text": "Use tools.", "cache_control": {}}],
                   messages=[
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "down",
             "is_error": True},
            {"type": "text", "text": "And tomorrow?"}]},
    ])
    assert to_template_messages(chat) == [
        {"role": "system", "content": "Be brief.\nUse tools."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "Error: down", "tool_call_id": "toolu_2"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_sampling_fields_carry_over() -> None:
    chat = convert(temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["END"], stream=True)
    assert (chat.max_tokens, chat.temperature, chat.top_p, chat.top_k, chat.stop,
            chat.stream) == (50, 0.5, 0.9, 40, ["END"], True)


@pytest.mark.parametrize(("choice", "forced", "parallel"), [
    (None, False, True),
    ({"type": "auto"}, False, True),
    ({"type": "any"}, True, True),
    ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}, True, False),
])
def test_tool_choice_maps_onto_chat(choice: Any, forced: bool, parallel: bool) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER]}
    if choice is not None:
        fields["tool_choice"] = choice
    plan = plan_tools(convert(**fields))
    assert plan.template_tools == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"],
        "description": "Weather in a city"}}]
    assert (plan.json_schema is not None) is forced
    assert plan.parse_calls and plan.parallel is parallel


def test_tool_choice_none_offers_no_tools() -> None:
    plan = plan_tools(convert(tools=[WEATHER], tool_choice={"type": "none"}))
    assert plan.template_tools is None and not plan.parse_calls


@pytest.mark.parametrize(("fields", "param"), [
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]},
     "messages[0].content[0].input"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "messages[0].content[0].tool_use_id"),
    ({"tools": [{"name": "web_search", "type": "web_search_20250305"}]}, "tools[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
])
def test_unusable_input_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        convert(**fields)
    assert err.value.param == param


# -- over HTTP ----------------------------------------------------------------------------------

def test_message_object() -> None:
    with make_client() as client:
        r = client.post("/v1/messages", json=MSG, headers={"anthropic-version": "2023-06-01"})
        count = client.post("/v1/messages/count_tokens", json={
            k: v for k, v in MSG.items() if k != "max_tokens"}).json()
    body = r.json()
    assert r.status_code == 200 and body["id"].startswith("msg_")
    assert body | {"id": None} == {
        "id": None, "type": "message", "role": "assistant", "model": "fake",
        "content": [{"type": "text", "text": "Hello there, friend."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": count["input_tokens"], "output_tokens": 5,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


def test_stream_events_and_text_equal_the_message() -> None:
    with make_client() as client:
        whole = client.post("/v1/messages", json=MSG).json()
        r = client.post("/v1/messages", json={**MSG, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names == ["message_start", "ping", "content_block_start",
                     *["content_block_delta"] * 5, "content_block_stop", "message_delta",
                     "message_stop"]
    assert all(data["type"] == name for name, data in events)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == whole["content"][0]["text"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == whole["usage"]


def test_max_tokens_is_the_stop_reason() -> None:
    with make_client() as client:
        body = client.post("/v1/messages", json={**MSG, "max_tokens": 2}).json()
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 2


class _StoppingEngine(FakeEngine):
    """Ends every sequence on the stop string ``END``, with 3 prompt tokens read from KV."""

    async def _events(self, req: GenerationRequest) -> AsyncIterator[TokenEvent]:
        yield TokenEvent("one", [1])
        yield TokenEvent("", [2], finish_reason=FinishReason.STOP, stop="END",
                         usage=Usage(len(req.prompt_tokens), 2, cached_tokens=3))


def test_stop_sequence_and_cache_reads() -> None:
    with make_client(_StoppingEngine()) as client:
        body = client.post("/v1/messages", json={**MSG, "stop_sequences": ["END"]}).json()
        events = sse_events(client.post("/v1/messages", json={
            **MSG, "stop_sequences": ["END"], "stream": True}).text)
        n_prompt = client.post("/v1/messages/count_tokens", json=MSG).json()["input_tokens"]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    assert body["usage"]["cache_read_input_tokens"] == 3
    assert body["usage"]["input_tokens"] + 3 == n_prompt  # reads from KV are counted apart
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_tool_use_block_streamed_and_not() -> None:
    req = {**MSG, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}}
    with make_client(FakeEngine([CALL_TEXT])) as client:
        body = client.post("/v1/messages", json=req).json()
        events = sse_events(client.post("/v1/messages", json={**req, "stream": True}).text)
    [block] = body["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"], body["stop_reason"]) == (
        "get_weather", {"city": "Paris"}, "tool_use")
    start = next(d for n, d in events if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events
                      if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_session_from_metadata_user_id_after_headers() -> None:
    engine = FakeEngine()
    with make_client(engine) as client:
        client.post("/v1/messages", json={**MSG, "metadata": {"user_id": "u-1"}})
        client.post("/v1/messages", json={**MSG, "metadata": {"user_id": "u-1"}},
                    headers={"x-claude-code-session-id": "cc-9"})
        client.post("/v1/messages", json=MSG)
    assert [r.session for r in engine.requests] == ["u-1", "cc-9", None]


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({k: v for k, v in MSG.items() if k != "max_tokens"}, 400, "invalid_request_error"),
    ({**MSG, "model": "nope"}, 404, "not_found_error"),
    ({**MSG, "temperature": 1.5}, 400, "invalid_request_error"),
    ({**MSG, "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error"),
    (b"{not json", 400, "invalid_request_error"),
])
def test_errors_take_anthropics_shape(body: Any, status: int, kind: str) -> None:
    with make_client() as client:
        r = (client.post("/v1/messages", content=body) if isinstance(body, bytes)
             else client.post("/v1/messages", json=body))
    assert r.status_code == status
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == kind
    assert err["error"]["message"] and err["request_id"] == r.headers["x-request-id"]


def test_auth_by_x_api_key_or_bearer_and_anthropic_shaped_401() -> None:
    with make_client(api_keys=["k-alpha"]) as client:
        bad = client.post("/v1/messages", json=MSG, headers={"x-api-key": "wrong"})
        missing = client.post("/v1/messages/count_tokens", json=MSG)
        ok = client.post("/v1/messages", json=MSG, headers={"x-api-key": "k-alpha"})
        bearer = client.post("/v1/messages", json=MSG,
                             headers={"Authorization": "Bearer k-alpha"})
        chat = client.post("/v1/chat/completions", json={"model": "fake", "messages": [
            {"role": "user", "content": "hi"}]}, headers={"x-api-key": "wrong"})
    assert [r.status_code for r in (bad, missing, ok, bearer)] == [401, 401, 200, 200]
    assert bad.json()["error"]["type"] == "authentication_error"
    assert missing.json()["type"] == "error"
    assert chat.status_code == 401 and chat.json()["error"]["code"] == "invalid_api_key"


class _FailingEngine(FakeEngine):
    async def _events(self, req: GenerationRequest) -> AsyncIterator[TokenEvent]:
        yield TokenEvent("partial", [1])
        raise OverloadedError("the model is restarting")


def test_an_error_mid_stream_is_an_error_event() -> None:
    with make_client(_FailingEngine()) as client:
        events = sse_events(client.post("/v1/messages", json={**MSG, "stream": True}).text)
    name, data = events[-1]
    assert name == "error" and data["error"] == {"type": "overloaded_error",
                                                 "message": "the model is restarting"}
    assert "message_stop" not in [n for n, _ in events]


def test_disconnect_cancels_generation() -> None:
    engine = FakeEngine(["w"] * 300, delay_s=0.01)
    with serve_in_thread(create_app(parse_config({}), engine=engine)) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        with client.stream("POST", "/v1/messages",
                           json={**MSG, "stream": True, "max_tokens": 300}) as r:
            for line in r.iter_lines():
                if '"w"' in line:
                    break
        deadline = time.monotonic() + 5
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    assert engine.cancelled and not engine.finished


def test_the_sdk_parses_events_and_errors() -> None:
    with serve_in_thread(create_app(parse_config({}), engine=_FailingEngine())) as url:
        client = anthropic.Anthropic(base_url=url, api_key="any", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="nope", max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        texts: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as failed, client.messages.stream(
                model="fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            texts.extend(stream.text_stream)
    assert texts == ["partial"] and "restarting" in str(failed.value)


def test_bare_paths_answer_too() -> None:
    with make_client() as client:
        assert client.post("/messages", json=MSG).json()["type"] == "message"
        assert client.post("/messages/count_tokens", json=MSG).json()["input_tokens"] > 0
        assert client.post("/messages", json={**MSG, "model": "x"}).json()["type"] == "error"


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An upstream that answers any request with its path and body."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    out = json.dumps({"path": scope["path"], "body": body.decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})


def test_remote_models_are_relayed_unchanged() -> None:
    raw = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {}}]}], "beta_field": 1})
    with serve_in_thread(_echo) as upstream:
        config = parse_config({"providers": [{"name": "up", "base_url": upstream + "/v1",
                                              "models": ["claude-*"]}]})
        with TestClient(create_app(config, engine=FakeEngine())) as client:
            sent = client.post("/v1/messages", content=raw,
                               headers={"content-type": "application/json"}).json()
            counted = client.post("/v1/messages/count_tokens", content=raw,
                                  headers={"content-type": "application/json"}).json()
    assert sent == {"path": "/v1/messages", "body": raw}
    assert counted["path"] == "/v1/messages/count_tokens"


FRAGMENTS = ["Sure", " ", "\n", "<tool", "_call>", "<tool_call>", CALL_TEXT, "</tool_call>",
             "{", "[", "```", "<b>", "ok", '"x"']


async def _replay(pieces: list[str]) -> AsyncIterator[TokenEvent]:
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        yield TokenEvent(piece, [i], finish_reason=FinishReason.STOP if last else None,
                         usage=Usage(3, len(pieces)) if last else None)


def _streamed_blocks(pieces: list[str], plan: Any) -> tuple[list[dict[str, Any]], str]:
    async def run() -> list[tuple[str, dict[str, Any]]]:
        return [e async for e in events(_replay(pieces), "msg_x", "fake", 3, plan)]

    out: list[dict[str, Any]] = []
    evs = asyncio.run(run())
    for name, data in evs:
        if name == "content_block_start":
            assert data["index"] == len(out)
            out.append(dict(data["content_block"]))
            if out[-1]["type"] == "tool_use":
                out[-1]["json"] = ""
        elif name == "content_block_delta":
            block, delta = out[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                block["json"] += delta["partial_json"]
    for block in out:
        if block["type"] == "tool_use":
            block["input"] = json.loads(block.pop("json"))
    return out, evs[-2][1]["delta"]["stop_reason"]


def _without_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k != "id"} for b in blocks]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8),
       choice=st.sampled_from([None, {"type": "auto"}, {"type": "any"}]))
def test_a_stream_gives_the_blocks_of_the_message(pieces: list[str], choice: Any) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER]} if choice else {}
    if choice:
        fields["tool_choice"] = choice
    plan = plan_tools(convert(**fields))
    whole = content_blocks("".join(pieces), plan)
    streamed, reason = _streamed_blocks(pieces, plan)
    assert _without_ids(streamed) == _without_ids(whole)
    assert reason == stop_reason(FinishReason.STOP, None, whole)


def test_text_streams_before_a_tool_call() -> None:
    plan = plan_tools(convert(tools=[WEATHER]))
    split = TextUntilCall(plan)
    assert [split.feed(p) for p in ["Let me", " check <to", "ol_call>", CALL_TEXT]] == [
        "Let me", " check ", "", ""]
    streamed, reason = _streamed_blocks(["Let me check ", "<tool_call>", CALL_TEXT], plan)
    assert [b["type"] for b in streamed] == ["text", "tool_use"] and reason == "tool_use"
    assert streamed[0]["text"] == "Let me check "
