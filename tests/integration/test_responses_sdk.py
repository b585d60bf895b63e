"""/v1/responses on the real Gemma model, driven by the official openai SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import API_KEYS, model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

PROMPT = "Write one sentence about the sea."
NOTES = ("My notes say that whales are large marine mammals that breathe air, sing long songs, "
         "travel across whole oceans every year and feed on krill and small fish. ")
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}
CITY = {"type": "object", "properties": {  # bounded, so the tiny model closes the object
    "name": {"type": "string", "maxLength": 20},
    "population": {"type": "integer", "minimum": 0, "maximum": 99_999_999}},
        "required": ["name", "population"], "additionalProperties": False}


def sdk(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture
def client(server: HugindProcess) -> openai.OpenAI:
    return sdk(server.url)


def test_stream_equals_non_stream(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": "gemma", "input": PROMPT, "max_output_tokens": 24,
                            "temperature": 0, "extra_body": {"seed": 1}, "store": False}
    full = client.responses.create(**args)
    assert full.id.startswith("resp_") and full.object == "response"
    assert full.status in ("completed", "incomplete") and full.output_text
    assert [o.type for o in full.output] == ["message"]
    u = full.usage
    assert u is not None and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details.reasoning_tokens == 0
    events = list(client.responses.create(**args, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", f"response.{full.status}"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == full.output_text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == full.output_text
    assert {e.item_id for e in deltas} == {final.output[0].id}
    assert {e.response.id for e in events if hasattr(e, "response")} == {final.id}


def test_stream_helper_and_incomplete(client: openai.OpenAI) -> None:
    # A stop string (a llama.cpp extension) ends the tiny model's reply before the limit.
    with client.responses.stream(model="gemma", input="Say hello.", max_output_tokens=200,
                                 temperature=0, extra_body={"stop": ["\n"]}) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()  # the helper needs response.completed
    assert final.status == "completed" and final.output_text == text
    cut = list(client.responses.create(model="gemma", input=PROMPT, max_output_tokens=3,
                                       temperature=0, stream=True))
    assert cut[-1].type == "response.incomplete"
    response = cut[-1].response
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert response.usage is not None and response.usage.output_tokens == 3
    assert client.responses.retrieve(response.id).status == "incomplete"


def test_forced_tool_then_its_result(client: openai.OpenAI) -> None:
    r = client.responses.create(model="gemma", input="What is the weather in Paris?",
                                tools=[WEATHER], max_output_tokens=64, temperature=0,
                                tool_choice={"type": "function", "name": "get_weather"})
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].call_id and calls[0].id
    args = json.loads(calls[0].arguments)
    jsonschema.validate(args, WEATHER["parameters"])  # type: ignore[arg-type]
    answer = client.responses.create(
        model="gemma", previous_response_id=r.id, tools=[WEATHER], max_output_tokens=24,
        temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                "output": "Sunny, 21 C"}])
    assert answer.status in ("completed", "incomplete") and answer.output
    assert answer.usage is not None and r.usage is not None
    assert answer.usage.input_tokens > r.usage.input_tokens
    items = client.responses.input_items.list(answer.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]


def test_streamed_tool_call_and_stateless_tool_turn(client: openai.OpenAI) -> None:
    events = list(client.responses.create(
        model="gemma", input="Weather in Rome?", tools=[WEATHER], tool_choice="required",
        max_output_tokens=64, temperature=0, stream=True, store=False))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    jsonschema.validate(json.loads(done.arguments), WEATHER["parameters"])  # type: ignore
    final = events[-1].response  # type: ignore[union-attr]
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == done.arguments
    # The same turn replayed by the client, without a stored chain.
    r = client.responses.create(model="gemma", tools=[WEATHER], max_output_tokens=16,
                                temperature=0, store=False, input=[
        {"role": "user", "content": "Weather in Rome?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Rainy"}])
    assert r.output and r.status in ("completed", "incomplete")


def test_structured_text(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model="gemma", input="Name a large city and its population.", max_output_tokens=200,
        temperature=0, text={"format": {"type": "json_schema", "name": "city", "schema": CITY,
                                        "strict": True}})
    assert r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), CITY)
    assert r.text is not None and r.text.format is not None
    assert r.text.format.type == "json_schema"
    obj = client.responses.create(model="gemma", input="A JSON object about a cat.",
                                  max_output_tokens=48, temperature=0,
                                  text={"format": {"type": "json_object"}})
    if obj.status == "completed":
        assert isinstance(json.loads(obj.output_text), dict)


def cell_aligned(client: openai.OpenAI, text: str, **args: Any) -> str:
    """``text``, padded so that its prompt is whole 16-token cells: the engine reuses only
    whole cells of a prompt it read (never decoded tokens; engine/chunking.py), so only then
    can the next turn reuse every token of this one's input."""
    for _ in range(64):
        n = client.responses.input_tokens.count(model="gemma", input=text, **args).input_tokens
        if n % 16 == 0:
            return text
        text += " Yes."
    raise AssertionError("no padding gave whole cells")


def test_previous_response_reuses_the_kv(client: openai.OpenAI) -> None:
    brief = {"instructions": "Be brief."}
    question = cell_aligned(client, NOTES + "Whales?", **brief)
    first = client.responses.create(model="gemma", input=question, max_output_tokens=16,
                                    temperature=0, **brief)
    second = client.responses.create(model="gemma", input=NOTES + "And about dolphins?",
                                     previous_response_id=first.id, max_output_tokens=16,
                                     temperature=0, **brief)
    assert first.usage is not None and second.usage is not None
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    third = client.responses.create(model="gemma", input=NOTES + "Which is bigger?",
                                    previous_response_id=second.id, max_output_tokens=8,
                                    temperature=0, **brief)
    assert third.usage is not None
    assert third.usage.input_tokens_details.cached_tokens > second.usage.input_tokens - 16
    # The resumed turn answers as a fresh read of the whole conversation does.
    fresh = client.responses.create(model="gemma", max_output_tokens=16, temperature=0,
                                    store=False, input=[
        {"role": "user", "content": question},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": NOTES + "And about dolphins?"}], **brief)
    assert fresh.usage is not None and fresh.usage.input_tokens == second.usage.input_tokens
    assert fresh.output_text == second.output_text


def test_input_tokens_count_matches_usage(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gemma", input="Hi there.", max_output_tokens=8,
                                    temperature=0)
    args: dict[str, Any] = {"model": "gemma", "input": "What did I say?",
                            "instructions": "Answer in French.", "tools": [WEATHER],
                            "previous_response_id": first.id}
    count = client.responses.input_tokens.count(**args)
    assert count.object == "response.input_tokens"
    r = client.responses.create(**args, max_output_tokens=4, temperature=0)
    assert r.usage is not None and count.input_tokens == r.usage.input_tokens


def test_retrieve_delete_and_key_scoping(auth_server: HugindProcess) -> None:
    alice, bob = sdk(auth_server.url, API_KEYS[0]), sdk(auth_server.url, API_KEYS[1])
    r = alice.responses.create(model="gemma", input=PROMPT, max_output_tokens=8,
                               temperature=0, metadata={"topic": "sea"})
    got = alice.responses.retrieve(r.id)
    assert got.output_text == r.output_text and got.metadata == {"topic": "sea"}
    items = alice.responses.input_items.list(r.id).data
    assert len(items) == 1 and items[0].type == "message" and items[0].id
    for call in (lambda: bob.responses.retrieve(r.id), lambda: bob.responses.delete(r.id),
                 lambda: bob.responses.input_items.list(r.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as err:
        bob.responses.create(model="gemma", input="More.", previous_response_id=r.id)
    assert isinstance(err.value.body, dict)
    assert err.value.body["param"] == "previous_response_id"
    alice.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(r.id)
    unstored = alice.responses.create(model="gemma", input=PROMPT, max_output_tokens=4,
                                      store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unstored.id)


def test_stored_chain_survives_a_restart(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path)
    cfg["models"] = cfg["models"][:1]
    proc = HugindProcess(cfg, tmp_path, name="responses-restart").start()
    try:
        client = sdk(proc.url)
        first = client.responses.create(model="gemma", input=cell_aligned(client, NOTES),
                                        max_output_tokens=16, temperature=0)
        proc.stop()
        proc.start()
        client = sdk(proc.url)
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(model="gemma", input=NOTES + "And dolphins?",
                                         previous_response_id=first.id, max_output_tokens=8,
                                         temperature=0)
        assert first.usage is not None and second.usage is not None
        assert second.usage.input_tokens > first.usage.input_tokens
        assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    finally:
        proc.stop()
    assert list((tmp_path / "sessions" / "responses").glob("t-*/resp_*.json"))


@pytest.mark.parametrize(("body", "status", "param", "code"), [
    ({"input": "x", "previous_response_id": "resp_unknown"}, 404, "previous_response_id",
     "previous_response_not_found"),
    ({}, 400, "input", None),
    ({"input": []}, 400, "input", None),
    ({"input": [{"type": "reasoning"}]}, 400, "input[0].type", None),
    ({"input": [{"role": "wizard", "content": "x"}]}, 400, "input[0].role", None),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     400, "input[0].content[0]", "unsupported_content"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, 400,
     "input[0].call_id", None),
    ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type", None),
    ({"input": "x", "tool_choice": "required"}, 400, "tool_choice", None),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, 400,
     "text.format.schema", None),
    ({"input": "x", "temperature": 3}, 400, "temperature", None),
    ({"input": "x", "background": True}, 400, "background", None),
])
def test_error_shapes(server: HugindProcess, body: dict[str, Any], status: int,
                      param: str, code: str | None) -> None:
    r = httpx.post(server.url + "/v1/responses", json={"model": "gemma", **body}, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == code and error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
