"""Anthropic Messages wire request types (``/v1/messages``, ``/v1/messages/count_tokens``).

As with the OpenAI types, unknown fields are accepted and ignored (``cache_control`` on blocks,
``thinking``, ``service_tier``...), and a known field of the wrong type or range is a 400 that
names it. Content blocks are one permissive Struct rather than a tagged union, so a block type
Hugind cannot use gets a message saying so instead of msgspec's "invalid tag".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from hugind.api.protocol import (
    MAX_STOPS,
    MaxTokens,
    Name,
    Probability,
    Request,
    SessionName,
    Stop,
)

#: Anthropic's temperature range is 0..1 (OpenAI's is 0..2).
Temperature = Annotated[float, Meta(ge=0.0, le=1.0)]


class Block(Request, kw_only=True):
    """One content block: ``text``, ``tool_use``, ``tool_result`` (others are refused or, for
    the model's own ``thinking``, skipped when converted)."""

    type: str
    text: str | None = None
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: Any = None  # tool_use: the call's arguments, an object
    tool_use_id: str | None = None  # tool_result
    content: str | list[Block] | None = None  # tool_result
    is_error: bool = False  # tool_result


class MessageParam(Request, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(Request, kw_only=True):
    name: Name
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None  # "custom" or absent; server tools (web_search...) are refused


class ToolChoice(Request, kw_only=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class Metadata(Request, kw_only=True):
    user_id: SessionName | None = None


class CountTokensRequest(Request, kw_only=True):
    """What the prompt is made of; ``/v1/messages/count_tokens`` takes just this."""

    model: Name
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[Block] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    max_tokens: MaxTokens  # required, as Anthropic has it
    stop_sequences: Annotated[list[Stop], Meta(max_length=MAX_STOPS)] | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    metadata: Metadata | None = None
    stream: bool = False
