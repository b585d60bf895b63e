"""POST /v1/embeddings."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from litestar import Request, Response, post

from hugind.api.completions import _is_token_list
from hugind.api.observe import local_facts
from hugind.api.protocol import EmbeddingRequest, decode_body
from hugind.api.runtime import Runtime, json_response
from hugind.api.throttle import record_tokens
from hugind.engine.interface import Engine
from hugind.errors import ContextLengthError, InvalidRequestError

MAX_INPUTS = 2048


async def _inputs(engine: Engine, model: str, value: Any) -> list[list[int]]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif _is_token_list(value) and value:
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise InvalidRequestError("'input' must be a non-empty string, list of strings, list of "
                                  "token ids or list of token-id lists", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequestError(f"at most {MAX_INPUTS} inputs per request, got {len(items)}",
                                  param="input")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise InvalidRequestError("input strings must not be empty", param=f"input[{i}]")
            out.append(await engine.tokenize(model, item))
        elif _is_token_list(item) and item:
            await engine.detokenize(model, item)  # validates the ids
            out.append(list(item))
        else:
            raise InvalidRequestError("each input must be a string or a list of token ids",
                                      param=f"input[{i}]")
    return out


def _encode(vec: np.ndarray, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(vec.astype("<f4").tobytes()).decode()
    return vec.tolist()


@post(["/v1/embeddings", "/embeddings"], status_code=200)
async def embeddings(request: Request) -> Response[bytes]:
    """Embeddings, L2-normalised; float or base64."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, EmbeddingRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    facts = local_facts(request, req.model, req.input)
    inputs = await _inputs(rt.engine, req.model, req.input)
    limit = rt.engine.embed_context(req.model)
    for i, toks in enumerate(inputs):
        if len(toks) > limit:
            raise ContextLengthError(len(toks), limit, param=f"input[{i}]" if
                                     isinstance(req.input, list) and not _is_token_list(req.input)
                                     else "input")
    vectors = await rt.engine.embed(req.model, inputs)
    data = []
    for i, vec in enumerate(vectors):
        if req.dimensions is not None:
            if req.dimensions > vec.shape[0]:
                raise InvalidRequestError(f"dimensions must be at most {vec.shape[0]} for model "
                                          f"'{req.model}'", param="dimensions")
            vec = vec[: req.dimensions]
            norm = float(np.linalg.norm(vec))
            vec = vec / norm if norm > 0 else vec
        data.append({"object": "embedding", "index": i,
                     "embedding": _encode(vec, req.encoding_format)})
    n = facts.prompt_tokens = sum(len(t) for t in inputs)
    await record_tokens(request, n)
    return json_response({"object": "list", "data": data, "model": req.model,
                          "usage": {"prompt_tokens": n, "total_tokens": n}})
