"""Streamed Responses: the engine's events as OpenAI's typed SSE events, each with its
``sequence_number``, framed ``event: TYPE`` + ``data: JSON`` with no ``[DONE]`` (as OpenAI).

Text streams as it comes. With tools in play the reply is buffered and parsed once it is done
(as chat does), then sent as ``function_call`` items or as one message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from litestar.response import Stream

from hugind.api.generation import Choice, merged
from hugind.api.request_id import with_request_id
from hugind.api.responses_input import item_id
from hugind.api.responses_output import (
    ResponseShell,
    message_item,
    output_items,
    status_of,
    usage_object,
)
from hugind.api.tools import ToolPlan
from hugind.engine.types import TokenEvent
from hugind.errors import InternalError, OpenAIError

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
Event = dict[str, Any]


class _Sequencer:
    """Numbers events in the order they are sent."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self.n}
        self.n += 1
        return event


def _open_message(ev: _Sequencer, msg_id: str, index: int) -> list[Event]:
    where = {"item_id": msg_id, "output_index": index, "content_index": 0}
    return [ev("response.output_item.added", output_index=index,
               item=message_item(msg_id, "", "in_progress")),
            ev("response.content_part.added", **where,
               part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})]


def _delta(ev: _Sequencer, msg_id: str, index: int, text: str) -> Event:
    return ev("response.output_text.delta", item_id=msg_id, output_index=index, content_index=0,
              delta=text, logprobs=[])


def _close_message(ev: _Sequencer, item: dict[str, Any], index: int) -> list[Event]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    return [ev("response.output_text.done", **where, text=part["text"], logprobs=[]),
            ev("response.content_part.done", **where, part=part),
            ev("response.output_item.done", output_index=index, item=item)]


def _call(ev: _Sequencer, item: dict[str, Any], index: int) -> list[Event]:
    where = {"item_id": item["id"], "output_index": index}
    return [ev("response.output_item.added", output_index=index,
               item={**item, "status": "in_progress", "arguments": ""}),
            ev("response.function_call_arguments.delta", **where, delta=item["arguments"]),
            ev("response.function_call_arguments.done", **where, name=item["name"],
               arguments=item["arguments"]),
            ev("response.output_item.done", output_index=index, item=item)]


async def _events(ev: _Sequencer, streams: list[AsyncIterator[TokenEvent]],
                  shell: ResponseShell, plan: ToolPlan, n_prompt: int,
                  done: Callable[[Event], Awaitable[None]]) -> AsyncIterator[Event]:
    yield ev("response.created", response=shell.render("in_progress"))
    yield ev("response.in_progress", response=shell.render("in_progress"))
    msg_id, choice, is_open = item_id("msg"), Choice(0), not plan.buffers
    if is_open:
        for event in _open_message(ev, msg_id, 0):
            yield event
    async for _, token in merged(streams):
        choice.add(token)
        if is_open and token.text:
            yield _delta(ev, msg_id, 0, token.text)
    items = output_items(choice, plan, msg_id)
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            for event in _call(ev, item, index):
                yield event
            continue
        if not is_open:  # buffered: the whole text in one delta
            for event in [*_open_message(ev, msg_id, index), _delta(ev, msg_id, index,
                                                                    choice.content)]:
                yield event
        for event in _close_message(ev, item, index):
            yield event
    response = shell.render(status_of(choice), items, usage_object(choice, n_prompt))
    await done(response)  # stored before the client can name it as previous_response_id
    yield ev(f"response.{response['status']}", response=response)


def _error(ev: _Sequencer, exc: Exception) -> Event:
    if not isinstance(exc, OpenAIError):
        log.exception("error while streaming a response", exc_info=exc)
        exc = InternalError("The server had an error while streaming.")
    body = with_request_id(exc.to_dict())["error"]
    return ev("error", code=body["code"], message=body["message"], param=body["param"],
              **({"request_id": body["request_id"]} if "request_id" in body else {}))


async def _frames(streams: list[AsyncIterator[TokenEvent]], shell: ResponseShell,
                  plan: ToolPlan, n_prompt: int,
                  done: Callable[[Event], Awaitable[None]]) -> AsyncIterator[bytes]:
    ev = _Sequencer()
    try:
        async for event in _events(ev, streams, shell, plan, n_prompt, done):
            yield b"event: " + event["type"].encode() + b"\ndata: " + _encode(event) + b"\n\n"
    except Exception as exc:  # noqa: BLE001 - after the first byte, errors go in-band
        event = _error(ev, exc)
        yield b"event: error\ndata: " + _encode(event) + b"\n\n"
    finally:
        for stream in streams:  # a client that left: cancel the sequence on the worker
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):
                    await aclose()


def response_stream(streams: list[AsyncIterator[TokenEvent]], shell: ResponseShell,
                    plan: ToolPlan, n_prompt: int,
                    done: Callable[[Event], Awaitable[None]]) -> Stream:
    """The SSE response; ``done(response)`` runs with the final response before it is sent."""
    return Stream(_frames(streams, shell, plan, n_prompt, done), media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
