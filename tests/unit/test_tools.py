from __future__ import annotations

import json

from hugind.api.tools import parse_tool_calls


def test_tagged_and_bare_calls() -> None:
    names = {"get_weather"}
    text = 'ok <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    calls = parse_tool_calls(text, names)
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    bare = parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Rome"}}', names)
    assert json.loads(bare[0]["function"]["arguments"]) == {"city": "Rome"}


def test_unknown_names_and_prose_are_not_calls() -> None:
    assert parse_tool_calls('{"name": "rm_rf", "arguments": {}}', {"get_weather"}) == []
    assert parse_tool_calls("The weather is nice.", {"get_weather"}) == []
