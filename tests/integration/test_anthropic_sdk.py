"""The real server on the real Gemma model, driven by the official anthropic SDK."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.conftest import API_KEYS
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

ASK = [{"role": "user", "content": "Write one sentence about the sea."}]
# anthropic 2.x no longer takes sampling arguments (newer Claude models refuse them); the
# server still does, Anthropic's default being temperature 1.
GREEDY: dict[str, Any] = {"extra_body": {"temperature": 0}}
WEATHER: dict[str, Any] = {
    "name": "get_weather", "description": "The current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]}}


@pytest.fixture
def client(server: HugindProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0,
                               timeout=120)


def text_of(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def test_message_and_stream_agree(client: anthropic.Anthropic) -> None:
    full = client.messages.create(model="gemma", max_tokens=24, **GREEDY, messages=ASK)
    assert full.id.startswith("msg_") and full.type == "message" and full.role == "assistant"
    assert full.model == "gemma" and text_of(full)
    assert full.stop_reason in ("end_turn", "max_tokens")
    assert full.usage.output_tokens > 0 and full.usage.input_tokens > 0
    assert full.usage.cache_read_input_tokens is not None
    with client.messages.stream(model="gemma", max_tokens=24, **GREEDY,
                                messages=ASK) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == text_of(full) == text_of(final)
    assert final.stop_reason == full.stop_reason
    assert final.usage.output_tokens == full.usage.output_tokens


def test_system_as_string_and_as_blocks(client: anthropic.Anthropic) -> None:
    system = "You answer in French."
    as_text = client.messages.create(model="gemma", max_tokens=16, **GREEDY,
                                     system=system, messages=ASK)
    as_blocks = client.messages.create(model="gemma", max_tokens=16, **GREEDY,
                                       system=[{"type": "text", "text": system}], messages=ASK)
    plain = client.messages.create(model="gemma", max_tokens=16, **GREEDY, messages=ASK)
    assert text_of(as_text) == text_of(as_blocks)
    assert as_text.usage.input_tokens + (as_text.usage.cache_read_input_tokens or 0) > \
        plain.usage.input_tokens + (plain.usage.cache_read_input_tokens or 0)


def test_stop_sequence(client: anthropic.Anthropic) -> None:
    free = text_of(client.messages.create(model="gemma", max_tokens=24, **GREEDY,
                                          messages=ASK))
    word = free.split()[2]
    cut = client.messages.create(model="gemma", max_tokens=24, **GREEDY, messages=ASK,
                                 stop_sequences=[word])
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", word)
    assert text_of(cut) == free[:free.index(word)]


def test_max_tokens(client: anthropic.Anthropic) -> None:
    r = client.messages.create(model="gemma", max_tokens=3, **GREEDY, messages=ASK)
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_forced_tool_gives_a_tool_use_block(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.messages.create(model="gemma", max_tokens=64, **GREEDY, messages=ask,
                               tools=[WEATHER], tool_choice={"type": "tool",
                                                             "name": "get_weather"})
    [block] = r.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.id.startswith("toolu_") and r.stop_reason == "tool_use"
    jsonschema.validate(block.input, WEATHER["input_schema"])
    with client.messages.stream(model="gemma", max_tokens=64, **GREEDY, messages=ask,
                                tools=[WEATHER], tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    [streamed] = final.content
    assert streamed.type == "tool_use" and final.stop_reason == "tool_use"
    jsonschema.validate(streamed.input, WEATHER["input_schema"])


def test_a_tool_result_turn(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 C"}]},
    ]
    r = client.messages.create(model="gemma", max_tokens=32, **GREEDY, tools=[WEATHER],
                               messages=messages)
    assert r.stop_reason in ("end_turn", "max_tokens", "tool_use") and r.content


def test_second_turn_reads_the_session_kv(client: anthropic.Anthropic) -> None:
    user = {"user_id": f"anthropic-{uuid.uuid4().hex}"}
    first = client.messages.create(model="gemma", max_tokens=16, **GREEDY, messages=ASK,
                                   metadata=user)
    history: list[Any] = [*ASK, {"role": "assistant", "content": text_of(first)},
                          {"role": "user", "content": "And one about the mountains."}]
    second = client.messages.create(model="gemma", max_tokens=16, **GREEDY,
                                    messages=history, metadata=user)
    first_prompt = first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= first_prompt


def test_count_tokens_equals_the_prompt_read(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {"model": "gemma", "system": "Be brief.", "messages": ASK,
                              "tools": [WEATHER]}
    counted = client.messages.count_tokens(**kwargs)
    r = client.messages.create(max_tokens=4, **GREEDY, **kwargs)
    # Anthropic counts prompt tokens read from the cache apart from input_tokens.
    assert counted.input_tokens == r.usage.input_tokens + (r.usage.cache_read_input_tokens or 0)


def test_error_shapes(server: HugindProcess, client: anthropic.Anthropic) -> None:
    r = httpx.post(server.url + "/v1/messages", json={"model": "gemma", "messages": ASK},
                   headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=4, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_auth_by_x_api_key(auth_server: HugindProcess) -> None:
    bad = anthropic.Anthropic(base_url=auth_server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model="gemma", max_tokens=4, messages=ASK)
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    good = anthropic.Anthropic(base_url=auth_server.url, api_key=API_KEYS[0], max_retries=0,
                               timeout=120)
    assert good.messages.create(model="gemma", max_tokens=4, messages=ASK).content
