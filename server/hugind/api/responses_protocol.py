"""OpenAI Responses wire request types (``POST /v1/responses`` and ``/input_tokens``).

The request extends the chat sampling fields, so llama.cpp's extras (``top_k``, ``min_p``,
``grammar``...) work here as in chat. ``input`` items stay plain mappings: their kinds are
told apart by ``type`` *or* by ``role`` (an easy message has no ``type``), which a tagged
union cannot express; :mod:`hugind.api.responses_input` validates them and names the item.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from hugind.api.protocol import MAX_NAME_CHARS, MaxTokens, Request, SamplingFields

MAX_INPUT_ITEMS = 4096  # a long agent transcript; each item is checked, so bound the loop
MAX_METADATA = 16  # OpenAI's bounds on metadata: 16 pairs, 64-char keys, 512-char values
ResponseId = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
MetadataKey = Annotated[str, Meta(max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]


class TextConfig(Request, kw_only=True):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponseCreateRequest(SamplingFields, kw_only=True):
    """``POST /v1/responses``; also the body of ``POST /v1/responses/input_tokens``."""

    input: str | Annotated[list[dict[str, Any]], Meta(max_length=MAX_INPUT_ITEMS)] | None = None
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    text: TextConfig | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=MAX_METADATA)] \
        | None = None
    store: bool = True
    previous_response_id: ResponseId | None = None
    truncation: Literal["disabled", "auto"] | None = None
    background: bool = False
    conversation: Any = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
