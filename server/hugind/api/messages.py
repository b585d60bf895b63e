"""POST /v1/messages and /v1/messages/count_tokens: Anthropic Messages on the chat engine path.

A request for a model served here is converted into a chat request (``anthropic_convert``)
and runs exactly as ``/v1/chat/completions`` does; any other model is relayed to its provider
with the body as received. Errors on these routes take Anthropic's shape (``anthropic_errors``,
chosen by path in the app's one handler).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Request, Response, post
from litestar.response import Stream

from hugind.api.anthropic_convert import to_chat_request
from hugind.api.anthropic_protocol import CountTokensRequest, MessagesRequest
from hugind.api.anthropic_response import (
    content_blocks,
    message,
    new_message_id,
    stop_reason,
    usage_dict,
)
from hugind.api.anthropic_stream import event_stream, events
from hugind.api.chat import render, start
from hugind.api.generation import Choice, session_name
from hugind.api.observe import local_facts, observed
from hugind.api.protocol import decode_body
from hugind.api.runtime import Runtime, json_response
from hugind.api.tools import ToolPlan
from hugind.engine.types import TokenEvent


@post(["/v1/messages", "/messages"], status_code=200)
async def create_message(request: Request) -> Response[bytes] | Stream:
    """Anthropic Messages, streaming or not."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, MessagesRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    chat = to_chat_request(req)
    facts = local_facts(request, req.model, chat.messages)
    prompt, plan = await render(rt, chat)
    user_id = req.metadata.user_id if req.metadata is not None else None
    streams = await start(request, rt, chat, prompt, plan,
                          session_name(chat, request.headers, user_id=user_id))
    stream = observed(streams, facts, len(prompt))[0]
    ident = new_message_id()
    if req.stream:
        return event_stream(events(stream, ident, req.model, len(prompt), plan))
    return json_response(await _message(stream, ident, req.model, len(prompt), plan))


async def _message(stream: AsyncIterator[TokenEvent], ident: str, model: str, n_prompt: int,
                   plan: ToolPlan) -> dict[str, object]:
    choice, stop = Choice(0), None
    async for ev in stream:
        choice.add(ev)
        stop = ev.stop or stop
    blocks = content_blocks(choice.content, plan)
    why = stop_reason(choice.finish_reason, stop, blocks)
    return message(ident, model, blocks, why, stop, usage_dict(n_prompt, choice.usage))


@post(["/v1/messages/count_tokens", "/messages/count_tokens"], status_code=200)
async def count_tokens(request: Request) -> Response[bytes]:
    """The prompt's length in tokens, as ``/v1/messages`` would read it."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, CountTokensRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    local_facts(request, req.model)
    prompt, _ = await render(rt, to_chat_request(req))
    return json_response({"input_tokens": len(prompt)})


MESSAGES_HANDLERS = [create_message, count_tokens]
