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
from hugind.api.anthropic_response import (
    TOOL_CALL,
    content_blocks,
    message,
    stop_reason,
    usage_dict,
)
from hugind.api.request_id import current_request_id
from hugind.api.tools import ToolPlan
from hugind.engine.types import FinishReason, TokenEvent, Usage
from hugind.errors import InternalError, OpenAIError

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

Event = tuple[str, dict[str, Any]]


def frame(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class TextUntilCall:
    """Which part of a reply streams as text while it is generated.

    No tools offered: all of it. A forced tool: none (the reply is the call). Tools offered
    (``auto``, ``any`` without a grammar): text streams until a tool call may be starting, a
    reply that opens like a call (``{``, ``[``, a code fence, ``<tool_call>``) is held whole,
    and a text's tail that could begin ``<tool_call>`` waits for the next piece; from a
    ``<tool_call>`` on, everything is held, to be parsed once the reply is done.
    """

    def __init__(self, plan: ToolPlan) -> None:
        self.mode = ("hold" if plan.json_schema is not None else "watch" if plan.parse_calls
                     else "text")
        self.sent = ""  # streamed so far
        self.held = ""  # not (yet) streamed

    def feed(self, piece: str) -> str:
        """Take the next piece of the reply; return what may be streamed now."""
        if self.mode == "text":
            self.sent += piece
            return piece
        self.held += piece
        if self.mode == "watch" and not self.sent:
            head = self.held.lstrip()[:len(TOOL_CALL)]
            if head[:1] in ("{", "[", "`") or head == TOOL_CALL:
                self.mode = "hold"
            if not head or self.mode == "hold" or TOOL_CALL.startswith(head):
                return ""  # nothing yet, a call, or maybe one
        if self.mode != "watch":
            return ""
        i = self.held.find(TOOL_CALL)
        if i >= 0:
            self.mode = "hold"
        else:
            i = len(self.held) - _partial_mark(self.held)
        out, self.held = self.held[:i], self.held[i:]
        self.sent += out
        return out


def _partial_mark(text: str) -> int:
    """The length of the longest tail of ``text`` that begins ``<tool_call>``."""
    return next((n for n in range(min(len(TOOL_CALL) - 1, len(text)), 0, -1)
                 if TOOL_CALL.startswith(text[-n:])), 0)


class _Blocks:
    """Numbers content blocks and writes their events; a text block opens at its first text."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.open = False

    def text(self, piece: str, *, always: bool = False) -> list[Event]:
        out: list[Event] = []
        if not self.open and (piece or always):
            out.append(self._start({"type": "text", "text": ""}))
            self.open = True
        if piece or always:
            out.append(self._delta({"type": "text_delta", "text": piece}))
        return out

    def close(self) -> list[Event]:
        if not self.open:
            return []
        self.open = False
        return [("content_block_stop", {"type": "content_block_stop",
                                        "index": len(self.kinds) - 1})]

    def whole(self, block: dict[str, Any]) -> list[Event]:
        """A finished block: an empty start, one delta, a stop."""
        if block["type"] == "text":
            return [*self.close(), *self.text(block["text"], always=True), *self.close()]
        partial = json.dumps(block["input"], ensure_ascii=False)
        return [*self.close(), self._start({**block, "input": {}}),
                self._delta({"type": "input_json_delta", "partial_json": partial}),
                ("content_block_stop", {"type": "content_block_stop",
                                        "index": len(self.kinds) - 1})]

    def _start(self, block: dict[str, Any]) -> Event:
        self.kinds.append(block["type"])
        return ("content_block_start", {"type": "content_block_start",
                                        "index": len(self.kinds) - 1, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta",
                                        "index": len(self.kinds) - 1, "delta": delta})


def _rest(split: TextUntilCall, blocks: _Blocks, plan: ToolPlan) -> list[Event]:
    """The blocks of what was held, once the reply is done; as ``content_blocks`` gives them
    for the whole reply, so a stream and a message agree."""
    if not split.sent:
        return [e for block in content_blocks(split.held, plan) for e in blocks.whole(block)]
    calls = content_blocks(split.held, plan) if split.mode == "hold" else []
    calls = [b for b in calls if b["type"] == "tool_use"]
    if not calls:
        return [*blocks.text(split.held), *blocks.close()]
    return [e for block in calls for e in blocks.whole(block)]


async def events(stream: AsyncIterator[TokenEvent], ident: str, model: str, n_prompt: int,
                 plan: ToolPlan) -> AsyncIterator[Event]:
    """One message's events (see :class:`TextUntilCall` for what streams as it comes)."""
    start = message(ident, model, [], None, None, usage_dict(n_prompt, None))
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    split, blocks = TextUntilCall(plan), _Blocks()
    reason: FinishReason | None = None
    usage: Usage | None = None
    stop: str | None = None
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for ev in stream:
            for item in blocks.text(split.feed(ev.text)):
                yield item
            if ev.finish_reason is not None:
                reason, usage, stop = ev.finish_reason, ev.usage, ev.stop
    for item in _rest(split, blocks, plan):
        yield item
    why = stop_reason(reason, stop, [{"type": kind} for kind in blocks.kinds])
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
