"""/v1/responses: create (streamed or not), retrieve, delete, input_items and input_tokens.

A turn's prompt is the stored chain's input and output plus the new input, rendered through
the chat template; it generates through the chat engine path (tool plans, grammar-forced
formats, the caller's concurrency). A chain generates into one KV session, named by the client
(:func:`hugind.api.generation.session_name`) or else after the chain's first response, so a
turn naming ``previous_response_id`` resumes that KV instead of re-reading the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.response import Stream

from hugind.api.auth import tenant
from hugind.api.generation import collect, sampling, session_name, stops
from hugind.api.observe import local_facts, observed
from hugind.api.protocol import decode_body
from hugind.api.response_store import ResponseStore, StoredResponse
from hugind.api.responses_input import (
    chat_messages,
    format_schema,
    input_items,
    item_id,
    text_format,
    tools_request,
)
from hugind.api.responses_output import ResponseShell, output_items, status_of, usage_object
from hugind.api.responses_protocol import ResponseCreateRequest
from hugind.api.responses_stream import response_stream
from hugind.api.runtime import Runtime, json_response
from hugind.api.schema_check import enforceable, is_strict
from hugind.api.settings import Live
from hugind.api.throttle import submit
from hugind.api.tools import ToolPlan, plan_tools
from hugind.engine.types import GenerationRequest
from hugind.errors import InvalidRequestError, NotFoundError

MAX_PAGE = 100


def response_store(request: Request) -> ResponseStore:
    """The app's store, made on first use: ``<sessions.dir>/responses``."""
    state = request.app.state
    store: ResponseStore | None = getattr(state, "response_store", None)
    if store is None:
        live = Live.of(request)
        cfg = live.settings.config.sessions
        store = state.response_store = ResponseStore(
            live.folders()["sessions"] / "responses", max_count=cfg.responses_max,
            ttl_s=cfg.response_ttl_s)
    return store


@dataclass
class _Turn:
    previous: StoredResponse | None
    items: list[dict[str, Any]]  # the chain's input and output so far, then this input
    plan: ToolPlan
    text_format: dict[str, Any]
    messages: list[dict[str, Any]]
    prompt: list[int]


def _unsupported(req: ResponseCreateRequest) -> None:
    """Known fields Hugind cannot honour: a 400 rather than a silent drop."""
    for name, on in (("n", req.n != 1), ("background", req.background),
                     ("conversation", req.conversation is not None),
                     ("truncation", req.truncation == "auto")):
        if on:
            raise InvalidRequestError(f"'{name}' is not supported here", param=name)


async def _previous(request: Request, ident: str | None) -> StoredResponse | None:
    if ident is None:
        return None
    found = await response_store(request).get(tenant(request), ident)
    if found is None:
        raise NotFoundError(f"Previous response with id '{ident[:80]}' not found.",
                            param="previous_response_id", code="previous_response_not_found")
    return found


async def _turn(request: Request, rt: Runtime, req: ResponseCreateRequest,
                new: list[dict[str, Any]]) -> _Turn:
    _unsupported(req)
    previous = await _previous(request, req.previous_response_id)
    history = previous.input_items + previous.response["output"] if previous else []
    plan = plan_tools(tools_request(req))
    fmt = text_format(req)
    messages = chat_messages(req.instructions, history + new)
    _, prompt = await rt.engine.chat_prompt(req.model, messages, tools=plan.template_tools)
    return _Turn(previous, history + new, plan, fmt, messages, prompt)


def _session(request: Request, req: ResponseCreateRequest, turn: _Turn,
             shell: ResponseShell) -> str | None:
    """The client's name, else the chain's, else (when stored) one named after this response."""
    name = session_name(req, request.headers)
    if name is None and turn.previous is not None:
        name = turn.previous.session
    if name is None and req.store:
        name = f"resp-chain:{shell.ident}"
    return name


@post(["/v1/responses", "/responses"], status_code=200)
async def create_response(request: Request) -> Response[bytes] | Stream:
    """Create a model response, streaming or not."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, ResponseCreateRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    new = input_items(req.input)
    if not new:
        raise InvalidRequestError("'input' must not be empty", param="input")
    turn = await _turn(request, rt, req, new)
    facts = local_facts(request, req.model, turn.messages)
    n_prompt = len(turn.prompt)
    max_tokens = rt.engine.check_length(req.model, n_prompt,
                                        req.max_output_tokens or req.max_tokens, "input")
    shell = ResponseShell(req, turn.text_format)
    session = _session(request, req, turn, shell)
    schema = turn.plan.json_schema
    if schema is None:
        schema = await enforceable(request, rt.engine, format_schema(turn.text_format),
                                   strict=is_strict(turn.text_format), param="text.format")
    who = tenant(request)
    gen = GenerationRequest(
        model=req.model, prompt_tokens=turn.prompt, max_tokens=max_tokens,
        sampling=sampling(req, json_schema=schema), stop=stops(req), tenant=who,
        session=session, ignore_eos=req.ignore_eos, use_cache=req.cache_prompt)
    streams = observed(await submit(request, rt.engine, [gen]), facts, n_prompt)

    async def done(response: dict[str, Any]) -> None:
        if req.store:
            await response_store(request).put(who, StoredResponse(
                response=response, input_items=turn.items, session=session))

    if req.stream:
        return response_stream(streams, shell, turn.plan, n_prompt, done)
    choice = (await collect(rt.engine, streams))[0]
    response = shell.render(status_of(choice), output_items(choice, turn.plan, item_id("msg")),
                            usage_object(choice, n_prompt))
    await done(response)
    return json_response(response)


@post(["/v1/responses/input_tokens", "/responses/input_tokens"], status_code=200)
async def count_input_tokens(request: Request) -> Response[bytes]:
    """Count a response request's input tokens without generating."""
    rt = Runtime.of(request)
    body = await request.body()
    remote = rt.remote_model(body)
    if remote is not None:
        return await rt.forward(request, remote)
    req = decode_body(body, ResponseCreateRequest)
    if not await rt.local(req.model):
        return await rt.forward(request, req.model)
    new = input_items(req.input) if req.input is not None else []
    turn = await _turn(request, rt, req, new)
    return json_response({"object": "response.input_tokens", "input_tokens": len(turn.prompt)})


async def _stored(request: Request, response_id: str) -> StoredResponse:
    found = await response_store(request).get(tenant(request), response_id)
    if found is None:
        raise NotFoundError(f"Response with id '{response_id[:80]}' not found.",
                            code="response_not_found")
    return found


@get(["/v1/responses/{response_id:str}", "/responses/{response_id:str}"])
async def get_response(request: Request, response_id: str,
                       stream: bool = False) -> Response[bytes]:
    """A stored response."""
    if stream:
        raise InvalidRequestError("replaying a stored response as a stream is not supported",
                                  param="stream")
    return json_response((await _stored(request, response_id)).response)


@delete(["/v1/responses/{response_id:str}", "/responses/{response_id:str}"], status_code=200)
async def delete_response(request: Request, response_id: str) -> Response[bytes]:
    """Delete a stored response."""
    if not await response_store(request).delete(tenant(request), response_id):
        raise NotFoundError(f"Response with id '{response_id[:80]}' not found.",
                            code="response_not_found")
    return json_response({"id": response_id, "object": "response", "deleted": True})


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequestError(f"no input item with id '{after[:80]}'", param="after")
        start = ids.index(after) + 1
    page = items[start:start + limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items)}


@get(["/v1/responses/{response_id:str}/input_items",
      "/responses/{response_id:str}/input_items"])
async def list_input_items(request: Request, response_id: str, limit: int = 20,
                           order: str = "desc", after: str | None = None) -> Response[bytes]:
    """The input items of a stored response: the chain's history, then its own input."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"'limit' must be between 1 and {MAX_PAGE}", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("'order' must be 'asc' or 'desc'", param="order")
    items = (await _stored(request, response_id)).input_items
    return json_response(_page(items if order == "asc" else items[::-1], after, limit))


RESPONSES_HANDLERS = [create_response, count_input_tokens, get_response, delete_response,
                      list_input_items]
