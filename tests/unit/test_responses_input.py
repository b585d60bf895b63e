"""Responses input items -> stored items -> chat messages; tools, tool_choice, text.format."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hugind.api.responses_input import (
    chat_messages,
    format_schema,
    input_items,
    text_format,
    tools_request,
)
from hugind.api.responses_protocol import ResponseCreateRequest
from hugind.api.tools import plan_tools
from hugind.errors import InvalidRequestError

TOOL = {"type": "function", "name": "get_weather", "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**body: Any) -> ResponseCreateRequest:
    return msgspec.convert({"model": "m", **body}, ResponseCreateRequest)


def test_a_string_is_one_user_message() -> None:
    [item] = input_items("Hello")
    assert item["id"].startswith("msg_") and item["type"] == "message"
    assert item["role"] == "user" and item["status"] == "completed"
    assert item["content"] == [{"type": "input_text", "text": "Hello"}]


def test_items_keep_their_ids_and_take_the_listed_shapes() -> None:
    items = input_items([
        {"role": "developer", "content": "Be terse."},
        {"type": "message", "role": "user", "id": "msg_mine",
         "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "42"}]},
    ])
    assert [i["id"].split("_")[0] for i in items] == ["msg", "msg", "msg", "fc", "fco"]
    assert items[1]["id"] == "msg_mine"
    assert items[1]["content"] == [{"type": "input_text", "text": "ab"}]
    assert items[2]["content"] == [{"type": "output_text", "text": "c", "annotations": []}]
    assert items[3] == {"id": items[3]["id"], "type": "function_call", "call_id": "call_1",
                        "name": "f", "arguments": "{}", "status": "completed"}
    assert items[4]["output"] == "42" and items[4]["call_id"] == "call_1"


def test_chat_messages_fold_calls_into_one_assistant_turn() -> None:
    items = input_items([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "rain"},
    ])
    messages = chat_messages("Be brief.", items)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "user", "content": "Weather in Paris and Rome?"}
    assert messages[2]["role"] == "assistant" and messages[2]["content"] == ""
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["c1", "c2"]
    assert messages[2]["tool_calls"][1]["function"] == {"name": "w",
                                                        "arguments": '{"city":"Rome"}'}
    assert messages[3:] == [{"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                            {"role": "tool", "content": "rain", "tool_call_id": "c2"}]


def test_replayed_output_continues_the_conversation() -> None:
    output = [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Hi!", "annotations": []}]}]
    messages = chat_messages(None, input_items("Hello") + output + input_items("More"))
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "Hi!"


@pytest.mark.parametrize(("value", "param", "code"), [
    (None, "input", None),
    ([{"type": "reasoning", "summary": []}], "input[0].type", None),
    ([{"content": "no role or type"}], "input[0].type", None),
    ([{"role": "tool", "content": "x"}], "input[0].role", None),
    ([{"role": "user", "content": 5}], "input[0].content", None),
    ([{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}],
     "input[0].content[0]", "unsupported_content"),
    ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text", None),
    ([{"role": "user", "content": [{"type": "weird", "text": "x"}]}],
     "input[0].content[0].type", None),
    ([{"role": "user", "content": "ok"}, {"type": "function_call", "name": "f",
                                          "arguments": "{}"}], "input[1].call_id", None),
    ([{"type": "function_call_output", "call_id": "c", "output": 3}], "input[0].content", None),
])
def test_bad_items_name_themselves(value: Any, param: str, code: str | None) -> None:
    with pytest.raises(InvalidRequestError) as err:
        input_items(value)
    assert err.value.param == param and err.value.code == code


def test_function_tools_become_chat_tools_and_the_named_choice_forces_one() -> None:
    req = request(tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"},
                  parallel_tool_calls=False)
    chat = tools_request(req)
    assert chat.tools == [{"type": "function", "function": {
        k: TOOL[k] for k in ("name", "description", "parameters")}}]
    plan = plan_tools(chat)
    assert plan.json_schema["properties"]["name"] == {"const": "get_weather"}
    assert plan.parse_calls and not plan.parallel
    assert plan_tools(tools_request(request(tools=[TOOL]))).json_schema is None  # auto
    assert plan_tools(tools_request(request(tools=[TOOL], tool_choice="none"))) \
        .template_tools is None


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
    ({"tools": [TOOL], "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
])
def test_bad_tools_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        plan_tools(tools_request(request(**body)))
    assert err.value.param == param


def test_text_formats() -> None:
    assert text_format(request()) == {"type": "text"}
    assert format_schema(text_format(request())) is None
    assert format_schema(text_format(request(text={"format": {"type": "json_object"}}))) is True
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = text_format(request(text={"format": {"type": "json_schema", "name": "n",
                                               "schema": schema, "strict": True}}))
    assert format_schema(fmt) == schema
    for bad, param in [({"type": "yaml"}, "text.format.type"),
                       ({"type": "json_schema", "schema": schema}, "text.format.name"),
                       ({"type": "json_schema", "name": "n"}, "text.format.schema")]:
        with pytest.raises(InvalidRequestError) as err:
            text_format(request(text={"format": bad}))
        assert err.value.param == param
