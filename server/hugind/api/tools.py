"""Tool calling: which tools the prompt offers, whether output is grammar-forced, and parsing
the model's tool-call syntax back into OpenAI ``tool_calls``."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from hugind.api.protocol import ChatCompletionRequest
from hugind.errors import InvalidRequestError

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass
class ToolPlan:
    template_tools: list[dict[str, Any]] | None = None
    json_schema: Any = None
    parse_calls: bool = False
    legacy: bool = False
    parallel: bool = True
    names: set[str] = field(default_factory=set)

    @property
    def buffers(self) -> bool:
        return self.parse_calls

    def parse(self, text: str) -> list[dict[str, Any]]:
        if not self.parse_calls:
            return []
        calls = parse_tool_calls(text, self.names)
        return calls if self.parallel and not self.legacy else calls[:1]


def _tools(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], bool]:
    if req.tools:
        for i, tool in enumerate(req.tools):
            fn = tool.get("function")
            if tool.get("type", "function") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str):
                raise InvalidRequestError("each tool needs type 'function' and function.name",
                                          param=f"tools[{i}]")
            _check_parameters(fn, f"tools[{i}].function.parameters")
        return req.tools, False
    if req.functions:
        for i, fn in enumerate(req.functions):
            if not isinstance(fn.get("name"), str):
                raise InvalidRequestError("each function needs a name", param=f"functions[{i}]")
            _check_parameters(fn, f"functions[{i}].parameters")
        return [{"type": "function", "function": f} for f in req.functions], True
    return [], False


def _check_parameters(fn: dict[str, Any], param: str) -> None:
    if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
        raise InvalidRequestError("a function's parameters must be a JSON schema object",
                                  param=param)


def _choice(req: ChatCompletionRequest, legacy: bool) -> str | dict[str, Any]:
    choice = req.function_call if legacy else req.tool_choice
    if choice is None:
        return "auto"
    param = "function_call" if legacy else "tool_choice"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequestError(f"unknown {param} '{choice[:64]}'", param=param)
        return choice
    fn = choice if legacy else choice.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        shape = '{"name": NAME}' if legacy else '{"type": "function", "function": {"name": NAME}}'
        raise InvalidRequestError(f"{param} must be 'none', 'auto', 'required' or {shape}",
                                  param=param)
    return choice


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
            "required": ["name", "arguments"]}


def plan_tools(req: ChatCompletionRequest) -> ToolPlan:
    tools, legacy = _tools(req)
    if not tools:
        if req.tool_choice not in (None, "none", "auto"):
            raise InvalidRequestError("tool_choice needs 'tools'", param="tool_choice")
        return ToolPlan()
    choice = _choice(req, legacy)
    names = {t["function"]["name"] for t in tools}
    parallel = req.parallel_tool_calls is not False
    if choice == "none":
        return ToolPlan(template_tools=None)
    if choice == "auto":
        return ToolPlan(template_tools=tools, parse_calls=True, legacy=legacy, names=names,
                        parallel=parallel)
    if isinstance(choice, dict):
        name = choice["name"] if legacy else choice["function"]["name"]
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise InvalidRequestError(f"tool_choice names '{name[:64]}', which is not in tools",
                                      param="function_call" if legacy else "tool_choice")
        schema = _call_schema(chosen[0])
    else:  # required
        schemas = [_call_schema(t) for t in tools]
        schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return ToolPlan(template_tools=tools, json_schema=schema, parse_calls=True, legacy=legacy,
                    names=names, parallel=parallel)


def _as_call(obj: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or name not in names:
        return None
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def parse_tool_calls(text: str, names: set[str]) -> list[dict[str, Any]]:
    """Tool calls in ``text``: ``<tool_call>{json}</tool_call>`` blocks or one bare JSON call."""
    candidates: list[Any] = []
    blocks = _TAGGED.findall(text)
    for block in blocks or [text.strip()]:
        block = block.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
        try:
            candidates.append(json.loads(block))
        except ValueError:
            continue
    calls = []
    for cand in candidates:
        items = cand.get("tool_calls") if isinstance(cand, dict) and "tool_calls" in cand \
            else cand if isinstance(cand, list) else [cand]
        for item in items or []:
            call = _as_call(item, names)
            if call is not None:
                calls.append(call)
    return calls
