"""POST /v1/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
from hugind.api.protocol import CompletionRequest, decode_body
from hugind.api.runtime import Runtime, json_response
from hugind.api.streaming import sse_response
from hugind.api.throttle import submit
from hugind.engine.interface import Engine
from hugind.engine.types import FimTokens, GenerationRequest, TokenLogprob
from hugind.errors import InvalidRequestError


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                           for t in value)


async def prompts(engine: Engine, model: str, prompt: Any, *, add_special: bool = True,
                  ) -> list[tuple[str | None, list[int]]]:
    """(text, tokens) for each prompt: a string, strings, token ids or lists of token ids."""
    if isinstance(prompt, str):
        return [(prompt, await engine.tokenize(model, prompt, add_special=add_special))]
    if _is_token_list(prompt) and prompt:
        return [(None, list(prompt))]
    if isinstance(prompt, list) and prompt:
        out: list[tuple[str | None, list[int]]] = []
        for i, item in enumerate(prompt):
            if isinstance(item, str):
                out.append((item, await engine.tokenize(model, item, add_special=add_special)))
            elif _is_token_list(item) and item:
                out.append((None, list(item)))
            else:
                raise InvalidRequestError("each prompt must be a string or a list of token ids",
                                          param=f"prompt[{i}]")
        return out
    raise InvalidRequestError("'prompt' must be a string, a list of strings, a list of token "
                              "ids or a list of token-id lists", param="prompt")


def legacy_logprobs(lps: list[TokenLogprob], offset: int) -> dict[str, Any]:
    """The completions ``logprobs`` object; a prompt's first token has no logprob or tops."""
    tokens, token_lps, tops, offsets = [], [], [], []
    for lp in lps:
        tokens.append(lp.token)
        token_lps.append(lp.logprob)
        tops.append(None if lp.logprob is None else {t.token: t.logprob for t in lp.top})
        offsets.append(offset)
        offset += len(lp.token)
    return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops,
            "text_offset": offsets}


def fim_prompt(fim: FimTokens, prefix: list[int], suffix: list[int]) -> list[int]:
    """llama.cpp's infill layout: [BOS] FIM_PRE prefix FIM_SUF suffix FIM_MID."""
    head = [fim.bos] if fim.bos is not None else []
    return [*head, fim.prefix, *prefix, fim.suffix, *suffix, fim.middle]


MAX_SEQUENCES = 128  # per request: prompts x best_of (or n), the bound OpenAI puts on n


def candidates(req: CompletionRequest) -> int:
    """How many sequences to generate per prompt: ``best_of`` (>= n) or ``n``, checked so that
    all prompts together ask for at most ``MAX_SEQUENCES``."""
    per_prompt = req.n if req.best_of is None else req.best_of
    n_prompts = len(req.prompt) if isinstance(req.prompt, list) and req.prompt \
        and not _is_token_list(req.prompt) else 1
    if n_prompts * per_prompt > MAX_SEQUENCES:
        param = "prompt" if n_prompts > 1 else "n" if req.best_of is None else "best_of"
        raise InvalidRequestError(f"{n_prompts} prompt(s) x {per_prompt} choices is more than "
                                  f"the {MAX_SEQUENCES} sequences one request may generate",
                                  param=param)
    if req.best_of is None:
        return req.n
    if req.best_of < req.n:
        raise InvalidRequestError(f"best_of ({req.best_of}) must be at least n ({req.n})",
                                  param="best_of")
    if req.stream and req.best_of > 1:
        raise InvalidRequestError("best_of > 1 cannot be streamed; set stream to false",
                                  param="best_of")
    return req.best_of


def best(choices: list[Choice], per_prompt: int, n: int) -> list[Choice]:
    """For each prompt's ``per_prompt`` candidates, the ``n`` best by mean token logprob."""
    out: list[Choice] = []
    for start in range(0, len(choices), per_prompt):
        group = choices[start:start + per_prompt]
        if per_prompt > n:
            group = sorted(group, key=lambda c: c.score, reverse=True)[:n]
        out.extend(group)
    return out


async def _detokenized(engine: Engine, model: str, tokens: list[int], param: str) -> str:
    """The prompt's text; a bad token id is reported at its place in ``prompt``."""
    try:
        return await engine.detokenize(model, tokens)
    except InvalidRequestError as exc:
        if exc.param and exc.param.startswith("tokens"):
            exc.param = param + exc.param.removeprefix("tokens")
        raise


async def _fim_items(rt: Runtime, req: CompletionRequest,
                     ) -> list[tuple[str | None, list[int]]] | None:
    if not req.suffix:
        return None
    fim = rt.engine.fim_tokens(req.model)
    if fim is None:
        raise InvalidRequestError(f"model '{req.model}' has no fill-in-the-middle tokens, so "
                                  "'suffix' is not supported", param="suffix")
    if req.echo:
        raise InvalidRequestError("'echo' cannot be combined with 'suffix'", param="echo")
    suffix = await rt.engine.tokenize(req.model, req.suffix, add_special=False)
    items = await prompts(rt.engine, req.model, req.prompt, add_special=False)
    return [(text, fim_prompt(fim, tokens, suffix)) for text, tokens in items]


@post(["/v1/completions", "/completions"], status_code=200)
async def completions(request: Request) -> Response[bytes] | Stream:
    """Text completions, streaming or not."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, CompletionRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    facts = local_facts(request, req.model, req.prompt)
    per_prompt = candidates(req)
    items = await _fim_items(rt, req) or await prompts(rt.engine, req.model, req.prompt)
    session = session_name(req, request.headers)
    # Ranking best_of candidates needs their logprobs even when the client did not ask.
    top = req.logprobs if req.logprobs is not None else 0 if per_prompt > req.n else None
    prompt_top = req.logprobs if req.echo else None
    gens: list[GenerationRequest] = []
    texts: list[str] = []
    n_prompt = 0
    for p, (text, tokens) in enumerate(items):
        param = "prompt" if len(items) == 1 else f"prompt[{p}]"
        max_tokens = rt.engine.check_length(req.model, len(tokens), req.max_tokens, param)
        n_prompt += len(tokens)
        if text is None:
            text = await _detokenized(rt.engine, req.model, tokens, param)
        for i in range(per_prompt):
            texts.append(text)
            gens.append(GenerationRequest(
                model=req.model, prompt_tokens=tokens, max_tokens=max_tokens,
                sampling=sampling(req, seed_offset=i), stop=stops(req), tenant=tenant(request),
                session=session if (p, i) == (0, 0) else None,
                top_logprobs=top, ignore_eos=req.ignore_eos, use_cache=req.cache_prompt,
                prompt_logprobs=prompt_top))
    streams = await submit(request, rt.engine, gens)  # the key's max_concurrent, tokens
    streams = observed(streams, facts, n_prompt)
    ident, created = new_id("cmpl"), now()
    echo = texts if req.echo else None
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(streams, ident, created, req.model, n_prompt, include_usage,
                                    echo, req.logprobs is not None, rt.fingerprint))
    choices = await collect(rt.engine, streams)
    chosen = best(choices, per_prompt, req.n)
    return json_response({
        "id": ident, "object": "text_completion", "created": created, "model": req.model,
        "system_fingerprint": rt.fingerprint,
        "choices": [_choice(k, c, echo[c.index] if echo else "", req.logprobs is not None)
                    for k, c in enumerate(chosen)],
        "usage": usage_dict(choices, n_prompt),
    })


def _choice(index: int, c: Choice, prefix: str, logprobs: bool) -> dict[str, Any]:
    return {"text": prefix + c.content, "index": index,
            "logprobs": _choice_logprobs(c, prefix) if logprobs else None,
            "finish_reason": finish_reason(c.finish_reason)}


def _choice_logprobs(c: Choice, prefix: str) -> dict[str, Any]:
    if c.prompt_logprobs is None:
        return legacy_logprobs(c.logprobs, len(prefix))
    out = legacy_logprobs(c.prompt_logprobs, 0)
    gen = legacy_logprobs(c.logprobs, len(prefix))
    for key, values in gen.items():
        out[key].extend(values)
    return out


async def _chunks(streams: list[AsyncIterator[Any]], ident: str, created: int, model: str,
                  n_prompt: int, include_usage: bool, echo: list[str] | None, logprobs: bool,
                  fingerprint: str) -> AsyncIterator[dict[str, Any]]:
    def chunk(index: int, text: str, reason: str | None = None, lps: Any = None,
              ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": ident, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"text": text, "index": index, "logprobs": lps, "finish_reason": reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    choices = [Choice(i) for i in range(len(streams))]
    offsets = [len(echo[i]) if echo else 0 for i in range(len(streams))]
    if echo and not logprobs:
        for i, text in enumerate(echo):
            yield chunk(i, text)
    async for i, ev in merged(streams):
        choices[i].add(ev)
        if echo and logprobs and ev.prompt_logprobs is not None:
            yield chunk(i, echo[i], lps=legacy_logprobs(ev.prompt_logprobs, 0))
        lps = legacy_logprobs(ev.logprobs, offsets[i]) if logprobs else None
        offsets[i] += len(ev.text)
        if ev.text or (logprobs and ev.logprobs):
            yield chunk(i, ev.text, lps=lps)
        if ev.finish_reason is not None:
            yield chunk(i, "", finish_reason(ev.finish_reason))
    if include_usage:
        yield {"id": ident, "object": "text_completion", "created": created, "model": model,
               "system_fingerprint": fingerprint, "choices": [],
               "usage": usage_dict(choices, n_prompt)}
