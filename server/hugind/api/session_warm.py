"""``POST /v1/sessions/{name}/warm``: read a conversation into a session without generating,
so a known user's first turn starts from cached KV."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, post
from msgspec import Meta

from hugind.api.auth import tenant
from hugind.api.chat import render
from hugind.api.generation import collect
from hugind.api.protocol import MAX_NAME_CHARS, ChatCompletionRequest, Message, decode_body
from hugind.api.protocol import Request as Body
from hugind.api.runtime import Runtime, json_response
from hugind.api.throttle import submit
from hugind.engine.types import GenerationRequest, SamplingParams
from hugind.errors import InvalidRequestError


class WarmRequest(Body, kw_only=True):
    model: str
    messages: Annotated[list[Message], Meta(min_length=1)] | None = None
    prompt: str | None = None
    tools: list[dict[str, Any]] | None = None


@post(["/v1/sessions/{name:str}/warm", "/sessions/{name:str}/warm"], status_code=200)
async def warm_session(request: Request, name: str) -> Response[bytes]:
    """Prefill ``messages`` (through the chat template, with ``tools``) or a raw ``prompt``
    as the caller's session ``name``, generating nothing; the next turn that starts with
    them reads only what follows."""
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(f"a session name is at most {MAX_NAME_CHARS} characters",
                                  param="name")
    rt = Runtime.of(request)
    req = decode_body(await request.body(), WarmRequest)
    if (req.messages is None) == (req.prompt is None):
        raise InvalidRequestError("send either 'messages' or 'prompt'", param="messages")
    if not await rt.local(req.model):
        raise InvalidRequestError(f"model '{req.model}' is not served here: only local "
                                  "models keep sessions", param="model",
                                  code="model_not_found")
    if req.messages is not None:
        prompt, _ = await render(rt, ChatCompletionRequest(
            model=req.model, messages=req.messages, tools=req.tools))
        param = "messages"
    else:
        assert req.prompt is not None
        prompt = await rt.engine.tokenize(req.model, req.prompt, add_special=True)
        param = "prompt"
    rt.engine.check_length(req.model, len(prompt), 0, param)
    streams = await submit(request, rt.engine, [GenerationRequest(
        model=req.model, prompt_tokens=prompt, max_tokens=0, sampling=SamplingParams(),
        tenant=tenant(request), session=name)])
    choice = (await collect(rt.engine, streams))[0]
    cached = choice.usage.cached_tokens if choice.usage else 0
    return json_response({"object": "session", "name": name, "model": req.model,
                          "prompt_tokens": len(prompt), "cached_tokens": cached})
