"""POST /tokenize, /detokenize and /v1/chat/completions/render (template debugging)."""

from __future__ import annotations

from litestar import Request, Response, post

from hugind.api.chat import to_template_messages
from hugind.api.protocol import (
    ChatCompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    decode_body,
)
from hugind.api.runtime import Runtime, json_response
from hugind.api.tools import plan_tools
from hugind.errors import InvalidRequestError, ModelNotFoundError


async def _local(rt: Runtime, model: str) -> None:
    if not await rt.local(model):
        raise ModelNotFoundError(model)


@post(["/tokenize", "/v1/tokenize"], status_code=200)
async def tokenize(request: Request) -> Response[bytes]:
    """Text -> token ids (and pieces)."""
    rt = Runtime.of(request)
    req = decode_body(await request.body(), TokenizeRequest)
    await _local(rt, req.model)
    text = req.content if req.content is not None else req.prompt
    if text is None:
        raise InvalidRequestError("send the text as 'content'", param="content")
    tokens = await rt.engine.tokenize(req.model, text, add_special=req.add_special,
                                      parse_special=True)
    body: dict[str, object] = {"model": req.model, "tokens": tokens, "count": len(tokens)}
    if req.with_pieces:
        pieces = await rt.engine.token_pieces(req.model, tokens)
        body["tokens"] = [{"id": t, "piece": p.decode("utf-8", "replace")}
                          for t, p in zip(tokens, pieces, strict=True)]
    return json_response(body)


@post(["/detokenize", "/v1/detokenize"], status_code=200)
async def detokenize(request: Request) -> Response[bytes]:
    """Token ids -> text."""
    rt = Runtime.of(request)
    req = decode_body(await request.body(), DetokenizeRequest)
    await _local(rt, req.model)
    return json_response({"model": req.model,
                          "content": await rt.engine.detokenize(req.model, req.tokens)})


@post(["/v1/chat/completions/render", "/chat/completions/render"], status_code=200)
async def render_chat(request: Request) -> Response[bytes]:
    """The prompt a chat request would produce, without generating."""
    rt = Runtime.of(request)
    req = decode_body(await request.body(), ChatCompletionRequest)
    await _local(rt, req.model)
    plan = plan_tools(req)
    text, tokens = await rt.engine.chat_prompt(req.model, to_template_messages(req),
                                               tools=plan.template_tools)
    return json_response({"model": req.model, "prompt": text, "tokens": tokens,
                          "count": len(tokens)})
