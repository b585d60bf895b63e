"""Anthropic Messages request -> an OpenAI chat request, so one engine path serves both.

``system`` becomes a system message; ``text`` blocks the turn's content; an assistant's
``tool_use`` blocks its ``tool_calls``; a user's ``tool_result`` blocks ``tool`` messages (ahead
of the turn's text, where Anthropic requires them). Tools with ``input_schema`` become function
tools and ``tool_choice`` maps onto chat's (``any`` -> ``required``, ``tool`` -> a named one),
so forcing goes through the same grammar. Errors name Anthropic's fields.
"""

from __future__ import annotations

import json
from typing import Any

from hugind.api.anthropic_protocol import (
    Block,
    CountTokensRequest,
    MessageParam,
    MessagesRequest,
    Tool,
    ToolChoice,
)
from hugind.api.protocol import ChatCompletionRequest, FunctionCall, Message, ToolCall
from hugind.errors import InvalidRequestError

#: Block types a text model cannot take as input: refused with a 400, as chat refuses images.
_UNSUPPORTED = {"image", "document", "search_result", "container_upload"}
#: The model's own reasoning from earlier turns; the template has no place for it.
_SKIPPED = {"thinking", "redacted_thinking"}
#: Between a turn's text blocks, which Anthropic's clients write as separate paragraphs.
_JOIN = "\n"


def _need_text(block: Block, param: str) -> str:
    if block.text is None:
        raise InvalidRequestError("a text block needs 'text'", param=f"{param}.text")
    return block.text


def _check(block: Block, param: str, allowed: set[str]) -> bool:
    """Whether ``block`` is to be used; raises for types Hugind cannot use here."""
    if block.type in allowed:
        return True
    if block.type in _SKIPPED:
        return False
    if block.type in _UNSUPPORTED:
        raise InvalidRequestError(f"{block.type} blocks are not supported: this model takes "
                                  "text only", param=f"{param}.type")
    raise InvalidRequestError(f"a {block.type[:64]} block cannot be used here",
                              param=f"{param}.type")


def _text(content: str | list[Block] | None, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return _JOIN.join(_need_text(b, f"{param}[{j}]") for j, b in enumerate(content)
                      if _check(b, f"{param}[{j}]", {"text"}))


def _tool_result(block: Block, param: str) -> Message:
    if not block.tool_use_id:
        raise InvalidRequestError("a tool_result block needs 'tool_use_id'",
                                  param=f"{param}.tool_use_id")
    text = _text(block.content, f"{param}.content")
    if block.is_error:  # the template has no error flag: say it in the text
        text = f"Error: {text}"
    return Message(role="tool", content=text, tool_call_id=block.tool_use_id)


def _user(msg: MessageParam, param: str) -> list[Message]:
    if isinstance(msg.content, str):
        return [Message(role="user", content=msg.content)]
    out: list[Message] = []
    texts: list[str] = []
    for j, block in enumerate(msg.content):
        where = f"{param}.content[{j}]"
        if not _check(block, where, {"text", "tool_result"}):
            continue
        if block.type == "tool_result":
            out.append(_tool_result(block, where))
        else:
            texts.append(_need_text(block, where))
    if texts or not out:
        out.append(Message(role="user", content=_JOIN.join(texts)))
    return out


def _tool_call(block: Block, param: str) -> ToolCall:
    if not block.id or not block.name:
        raise InvalidRequestError("a tool_use block needs 'id' and 'name'", param=param)
    if not isinstance(block.input, dict):
        raise InvalidRequestError("a tool_use block's 'input' must be an object",
                                  param=f"{param}.input")
    args = json.dumps(block.input, ensure_ascii=False)
    return ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=args))


def _assistant(msg: MessageParam, param: str) -> Message:
    if isinstance(msg.content, str):
        return Message(role="assistant", content=msg.content)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(msg.content):
        where = f"{param}.content[{j}]"
        if not _check(block, where, {"text", "tool_use"}):
            continue
        if block.type == "tool_use":
            calls.append(_tool_call(block, where))
        else:
            texts.append(_need_text(block, where))
    return Message(role="assistant", content=_JOIN.join(texts) if texts or not calls else None,
                   tool_calls=calls or None)


def to_messages(req: CountTokensRequest) -> list[Message]:
    out: list[Message] = []
    if req.system:
        out.append(Message(role="system", content=_text(req.system, "system")))
    for i, msg in enumerate(req.messages):
        param = f"messages[{i}]"
        if msg.role == "user":
            out.extend(_user(msg, param))
        else:
            out.append(_assistant(msg, param))
    return out


def _tool(tool: Tool, i: int) -> dict[str, Any]:
    if tool.type not in (None, "custom"):
        raise InvalidRequestError(f"server tool '{tool.type[:64]}' is not available here; "
                                  "only custom tools (with input_schema) are",
                                  param=f"tools[{i}].type")
    if tool.input_schema is None:
        raise InvalidRequestError("a tool needs 'input_schema'", param=f"tools[{i}].input_schema")
    fn: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        fn["description"] = tool.description
    return {"type": "function", "function": fn}


def _tool_choice(choice: ToolChoice | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice of type 'tool' needs 'name'",
                                      param="tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def to_chat_request(req: CountTokensRequest) -> ChatCompletionRequest:
    """The chat request that generates what ``req`` asks for (a count request: its prompt)."""
    tools = [_tool(t, i) for i, t in enumerate(req.tools or [])] or None
    chat = ChatCompletionRequest(
        model=req.model, messages=to_messages(req), tools=tools,
        tool_choice=_tool_choice(req.tool_choice),
        parallel_tool_calls=False if req.tool_choice is not None
        and req.tool_choice.disable_parallel_tool_use else None,
    )
    if isinstance(req, MessagesRequest):
        chat.max_tokens = req.max_tokens
        chat.temperature = req.temperature
        chat.top_p = req.top_p
        chat.top_k = req.top_k
        chat.stop = list(req.stop_sequences or []) or None
        chat.stream = req.stream
    return chat
