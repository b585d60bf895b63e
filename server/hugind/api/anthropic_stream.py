"""Anthropic's streamed events, as SSE with ``event:`` lines (the SDK skips frames without one).

``message_start``, ``ping``, then per block ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop
reason, final usage) and ``message_stop``. After the first byte a failure is an ``error``
event in Anthropic's shape, and the stream ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream

from hugind.api.anthropic_errors import error_body
from hugind.api.anthropic_response import content_blocks, message, stop_reason, usage_dict
from hugind.api.request_id import current_request_id
from hugind.api.tools import ToolPlan
from hugind.engine.types import FinishReason, TokenEvent, Usage
from hugind.errors import InternalError, OpenAIError

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

Event = tuple[str, dict[str, Any]]


def frame(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


def _block_events(index: int, block: dict[str, Any]) -> list[Event]:
    """A finished block, sent whole: an empty start, one delta, a stop."""
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        delta = {"type": "input_json_delta",
                 "partial_json": json.dumps(block["input"], ensure_ascii=False)}
    else:
        start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
    return [("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": index,
                                     "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": index})]


async def events(stream: AsyncIterator[TokenEvent], ident: str, model: str, n_prompt: int,
                 plan: ToolPlan) -> AsyncIterator[Event]:
    """One message's events. Text streams as it comes; a reply that may be a tool call is
    buffered and parsed once done (the tool-call syntax is no text to show)."""
    start = message(ident, model, [], None, None, usage_dict(n_prompt, None))
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    if not plan.buffers:
        yield "content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}
    text: list[str] = []
    reason: FinishReason | None = None
    usage: Usage | None = None
    stop: str | None = None
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for ev in stream:
            text.append(ev.text)
            if ev.text and not plan.buffers:
                yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": ev.text}}
            if ev.finish_reason is not None:
                reason, usage, stop = ev.finish_reason, ev.usage, ev.stop
    if plan.buffers:
        blocks = content_blocks("".join(text), plan)
        for i, block in enumerate(blocks):
            for item in _block_events(i, block):
                yield item
    else:
        blocks = [{"type": "text"}]
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    why = stop_reason(reason, stop, blocks)
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": why,
                                      "stop_sequence": stop if why == "stop_sequence" else None},
                            "usage": usage_dict(n_prompt, usage)}
    yield "message_stop", {"type": "message_stop"}


async def _frames(items: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    try:
        async for name, payload in items:
            yield frame(name, payload)
    except OpenAIError as exc:
        yield frame("error", error_body(exc, current_request_id.get()))
    except Exception:
        log.exception("error while streaming a message")
        err = InternalError("The server had an error while streaming.")
        yield frame("error", error_body(err, current_request_id.get()))


def event_stream(items: AsyncIterator[Event]) -> Stream:
    return Stream(_frames(items), media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
