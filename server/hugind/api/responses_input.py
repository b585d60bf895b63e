"""Responses ``input`` -> stored items -> chat messages; tools, tool_choice and text.format in
the chat shapes that :mod:`hugind.api.tools` and the structured-output path take.

Items are normalized once, on the way in, into the shapes ``input_items`` lists (each with an
id), so a stored chain replays exactly what the client sent.
"""

from __future__ import annotations

import secrets
from typing import Any

from hugind.api.protocol import ChatCompletionRequest
from hugind.api.responses_protocol import ResponseCreateRequest
from hugind.errors import InvalidRequestError

_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text")
_UNSUPPORTED_PARTS = ("input_image", "input_file", "input_audio")


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _id(item: dict[str, Any], prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else item_id(prefix)


def _str(item: dict[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{param}.{key}' must be a string", param=f"{param}.{key}")
    return value


def _text(part: Any, param: str, role: str) -> str:
    if not isinstance(part, dict):
        raise InvalidRequestError("a content part must be an object", param=param)
    kind = part.get("type")
    if kind in _UNSUPPORTED_PARTS:
        raise InvalidRequestError(f"{kind} is not supported: send text only", param=param,
                                  code="unsupported_content")
    if kind == "refusal" and role == "assistant":
        return _str(part, "refusal", param)
    if kind not in _TEXT_PARTS:
        raise InvalidRequestError(f"unknown content part type '{str(kind)[:64]}'",
                                  param=f"{param}.type")
    return _str(part, "text", param)


def _content_text(content: Any, param: str, role: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError("'content' must be a string or a list of parts",
                                  param=f"{param}.content")
    return "".join(_text(p, f"{param}.content[{j}]", role) for j, p in enumerate(content))


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(f"'{param}.role' must be one of {', '.join(_ROLES)}",
                                  param=f"{param}.role")
    text = _content_text(item.get("content"), param, role)
    if role == "assistant":  # replayed output: OpenAI's output message shape
        return {"id": _id(item, "msg"), "type": "message", "role": role,
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
    return {"id": _id(item, "msg"), "type": "message", "role": role,
            "status": "completed", "content": [{"type": "input_text", "text": text}]}


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    return {"id": _id(item, "fc"), "type": "function_call",
            "call_id": _str(item, "call_id", param), "name": _str(item, "name", param),
            "arguments": _str(item, "arguments", param), "status": "completed"}


def _function_output(item: dict[str, Any], param: str) -> dict[str, Any]:
    output = item.get("output")
    text = output if isinstance(output, str) else _content_text(output, param, "tool")
    return {"id": _id(item, "fco"), "type": "function_call_output",
            "call_id": _str(item, "call_id", param), "output": text, "status": "completed"}


_KINDS = {"message": _message, "function_call": _function_call,
          "function_call_output": _function_output}


def input_items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items; a string is one user message."""
    if value is None:
        raise InvalidRequestError("missing required field: 'input'", param="input")
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, "input")]
    out = []
    for i, item in enumerate(value):
        kind = item.get("type", "message" if "role" in item else None)
        convert = _KINDS.get(kind) if isinstance(kind, str) else None
        if convert is None:
            raise InvalidRequestError(
                f"unsupported input item type '{str(kind)[:64]}': send message, "
                "function_call or function_call_output items", param=f"input[{i}].type")
        out.append(convert(item, f"input[{i}]"))
    return out


def _item_text(item: dict[str, Any]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in item["content"])


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items (history and new input) as chat template messages; consecutive function
    calls become one assistant turn with several ``tool_calls``."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            out.append({"role": item["role"], "content": _item_text(item)})
        elif kind == "function_call_output":
            out.append({"role": "tool", "content": item["output"],
                        "tool_call_id": item["call_id"]})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
    return out


def _chat_tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequestError(f"only function tools are supported, got '{str(kind)[:64]}'",
                                  param=f"tools[{i}].type")
    if not isinstance(tool.get("name"), str):
        raise InvalidRequestError("a function tool needs a 'name'", param=f"tools[{i}].name")
    params = tool.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidRequestError("'parameters' must be a JSON schema object",
                                  param=f"tools[{i}].parameters")
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": fn}


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice  # plan_tools checks the words, naming tool_choice
    if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
        raise InvalidRequestError("tool_choice must be 'none', 'auto', 'required' or "
                                  '{"type": "function", "name": NAME}', param="tool_choice")
    return {"type": "function", "function": {"name": choice["name"]}}


def tools_request(req: ResponseCreateRequest) -> ChatCompletionRequest:
    """The request's tools as a chat request, for :func:`hugind.api.tools.plan_tools`."""
    tools = [_chat_tool(t, i) for i, t in enumerate(req.tools or [])]
    return ChatCompletionRequest(model=req.model, messages=[], tools=tools or None,
                                 tool_choice=_chat_tool_choice(req.tool_choice),
                                 parallel_tool_calls=req.parallel_tool_calls)


def text_format(req: ResponseCreateRequest) -> dict[str, Any]:
    """``text.format``, checked; ``{"type": "text"}`` when absent (as OpenAI echoes it)."""
    fmt = (req.text.format if req.text is not None else None) or {"type": "text"}
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequestError(f"unknown text.format type '{str(kind)[:64]}'",
                                  param="text.format.type")
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise InvalidRequestError("a json_schema format needs a 'name'",
                                      param="text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequestError("a json_schema format needs a 'schema' object",
                                      param="text.format.schema")
    return fmt


def format_schema(fmt: dict[str, Any]) -> Any:
    """What the grammar engine forces: a JSON schema, True (any JSON object) or None."""
    if fmt["type"] == "json_object":
        return True
    if fmt["type"] == "json_schema":
        return fmt["schema"] or True
    return None
