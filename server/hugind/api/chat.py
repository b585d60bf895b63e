"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from hugind.api.auth import tenant
from hugind.api.generation import (
    Choice,
    collect,
    finish_reason,
    merged,
    new_id,
    now,
    sampling,
    session_name,
    stops,
    usage_dict,
)
from hugind.api.observe import local_facts, observed
from hugind.api.protocol import ChatCompletionRequest, Message, decode_body
from hugind.api.runtime import Runtime, json_response
from hugind.api.schema_check import enforceable, is_strict
from hugind.api.streaming import sse_response
from hugind.api.throttle import submit
from hugind.api.tools import ToolPlan, plan_tools
from hugind.engine.types import GenerationRequest, TokenEvent, TokenLogprob
from hugind.errors import InvalidRequestError


def _null_content(msg: Message, i: int) -> None:
    """OpenAI: only an assistant message with tool_calls (or function_call), and the legacy
    function role, may have null content."""
    if msg.role == "function" or (msg.role == "assistant" and (msg.tool_calls
                                                                or msg.function_call)):
        return
    needs = " unless it has tool_calls" if msg.role == "assistant" else ""
    raise InvalidRequestError(f"a '{msg.role}' message needs 'content'{needs}",
                              param=f"messages[{i}].content")


def _content(msg: Message, i: int, model: str) -> str | None:
    if msg.content is None:
        _null_content(msg, i)
        return None
    if isinstance(msg.content, str):
        return msg.content
    parts = []
    for j, part in enumerate(msg.content):
        if part.type == "text" or (part.type == "refusal" and msg.role == "assistant"):
            text = part.text if part.type == "text" else part.refusal
            if text is None:
                raise InvalidRequestError(f"a {part.type} part needs '{part.type}' text",
                                          param=f"messages[{i}].content[{j}].{part.type}")
            parts.append(text)
        elif part.type in ("image_url", "input_image", "input_audio", "file"):
            raise InvalidRequestError(
                f"model '{model}' does not support {part.type.replace('_url', '')} input; "
                f"send text only", param=f"messages[{i}].content[{j}]",
                code="unsupported_content")
        else:
            raise InvalidRequestError(f"unknown content part type '{part.type[:64]}'",
                                      param=f"messages[{i}].content[{j}].type")
    return "".join(parts)


def to_template_messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(req.messages):
        item: dict[str, Any] = {"role": msg.role, "content": _content(msg, i, req.model) or ""}
        if msg.name is not None:
            item["name"] = msg.name
        if msg.tool_calls:
            item["tool_calls"] = msgspec.to_builtins(msg.tool_calls)
        if msg.tool_call_id is not None:
            item["tool_call_id"] = msg.tool_call_id
        if msg.role == "function":
            item["role"] = "tool"
        if msg.function_call:
            item["tool_calls"] = [{"type": "function",
                                   "function": msgspec.to_builtins(msg.function_call)}]
        out.append(item)
    return out


def logprobs_dict(lps: list[TokenLogprob]) -> dict[str, Any]:
    return {"content": [
        {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
         "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes}
                          for t in lp.top]}
        for lp in lps
    ], "refusal": None}


async def render(rt: Runtime, req: ChatCompletionRequest) -> tuple[list[int], ToolPlan]:
    """The prompt tokens of ``req`` through the model's chat template, and its tool plan.
    Shared with the APIs that are converted into chat requests (Anthropic Messages)."""
    messages = to_template_messages(req)
    plan = plan_tools(req)
    _, prompt = await rt.engine.chat_prompt(req.model, messages, tools=plan.template_tools)
    return prompt, plan


async def start(request: Request, rt: Runtime, req: ChatCompletionRequest, prompt: list[int],
                plan: ToolPlan, session: str | None) -> list[AsyncIterator[TokenEvent]]:
    """Length-check and submit every choice of a rendered chat request (the key's
    ``max_concurrent`` and tokens counted); only the first choice continues ``session``."""
    max_tokens = rt.engine.check_length(req.model, len(prompt),
                                        req.max_completion_tokens or req.max_tokens, "messages")
    schema = plan.json_schema
    if schema is None:
        schema, strict = _format_schema(req)
        schema = await enforceable(request, rt.engine, schema, strict=strict,
                                   param="response_format")
    gen = [GenerationRequest(
        model=req.model, prompt_tokens=prompt, max_tokens=max_tokens,
        sampling=sampling(req, seed_offset=i, json_schema=schema),
        stop=stops(req), tenant=tenant(request), session=session if i == 0 else None,
        top_logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        ignore_eos=req.ignore_eos, use_cache=req.cache_prompt,
    ) for i in range(req.n)]
    return await submit(request, rt.engine, gen)


@post(["/v1/chat/completions", "/chat/completions"], status_code=200)
async def chat_completions(request: Request) -> Response[bytes] | Stream:
    """Chat completions, streaming or not."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, ChatCompletionRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    facts = local_facts(request, req.model, req.messages)
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError("'top_logprobs' requires 'logprobs': true", param="logprobs")
    if req.audio is not None or set(req.modalities or ["text"]) - {"text"}:
        raise InvalidRequestError(f"model '{req.model}' only produces text",
                                  param="modalities" if req.audio is None else "audio")
    prompt, plan = await render(rt, req)
    streams = await start(request, rt, req, prompt, plan, session_name(req, request.headers))
    streams = observed(streams, facts, len(prompt))
    ident, created = new_id("chatcmpl"), now()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(streams, ident, created, req.model, len(prompt),
                                    include_usage, plan, rt.fingerprint))
    choices = await collect(rt.engine, streams)
    return json_response({
        "id": ident, "object": "chat.completion", "created": created, "model": req.model,
        "system_fingerprint": rt.fingerprint,
        "choices": [_choice(c, req.logprobs, plan) for c in choices],
        "usage": usage_dict(choices, len(prompt)),
    })


def _format_schema(req: ChatCompletionRequest) -> tuple[Any, bool]:
    """What ``response_format`` forces (a JSON schema, True: any JSON object, None), and
    whether it is strict."""
    fmt = req.response_format
    if not fmt:
        return None, True
    kind = fmt.get("type")
    if kind == "text":
        return None, True
    if kind == "json_object":
        return True, True
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidRequestError("response_format.json_schema must be an object with a "
                                      "'schema' object", param="response_format.json_schema")
        return spec.get("schema") or True, is_strict(spec)
    raise InvalidRequestError(f"unknown response_format type '{kind}'",
                              param="response_format.type")


def _choice(c: Choice, logprobs: bool, plan: ToolPlan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.content, "refusal": None}
    reason = finish_reason(c.finish_reason)
    calls = plan.parse(c.content)
    if calls:
        message["content"] = None
        message["tool_calls"] = calls
        reason = "tool_calls"
        if plan.legacy:
            message["function_call"] = calls[0]["function"]
            del message["tool_calls"]
            reason = "function_call"
    return {"index": c.index, "message": message,
            "logprobs": logprobs_dict(c.logprobs) if logprobs else None,
            "finish_reason": reason}


async def _chunks(streams: list[AsyncIterator[Any]], ident: str, created: int, model: str,
                  n_prompt: int, include_usage: bool, plan: ToolPlan, fingerprint: str,
                  ) -> AsyncIterator[dict[str, Any]]:
    def chunk(index: int, delta: dict[str, Any], reason: str | None = None,
              logprobs: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                         "finish_reason": reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    choices = [Choice(i) for i in range(len(streams))]
    for c in choices:
        yield chunk(c.index, {"role": "assistant", "content": "", "refusal": None})
    async for i, ev in merged(streams):
        c = choices[i]
        c.add(ev)
        lps = logprobs_dict(ev.logprobs) if ev.logprobs else None
        if plan.buffers:  # the whole reply, parsed once it is done; logprobs as unstreamed
            if ev.finish_reason is None:
                continue
            calls = plan.parse(c.content)
            all_lps = logprobs_dict(c.logprobs) if c.logprobs else None
            if calls and plan.legacy:
                yield chunk(i, {"function_call": calls[0]["function"]}, logprobs=all_lps)
                yield chunk(i, {}, "function_call")
                continue
            if calls:
                for k, call in enumerate(calls):
                    yield chunk(i, {"tool_calls": [{"index": k, **call}]},
                                logprobs=all_lps if k == 0 else None)
                yield chunk(i, {}, "tool_calls")
                continue
            if c.content or all_lps:
                yield chunk(i, {"content": c.content}, logprobs=all_lps)
        elif ev.text or lps:
            yield chunk(i, {"content": ev.text}, logprobs=lps)
        if ev.finish_reason is not None:
            yield chunk(i, {}, finish_reason(ev.finish_reason))
    if include_usage:
        yield {"id": ident, "object": "chat.completion.chunk", "created": created,
               "model": model, "system_fingerprint": fingerprint, "choices": [],
               "usage": usage_dict(choices, n_prompt)}
