"""Forwarding to remote providers: catch-all routes, the native handlers' hand-off, admin view.

Litestar prefers static paths over path parameters, so ``/v1/{path:path}`` and ``/{path:path}``
never shadow the native routes (``/v1/chat/completions``, ``/v1/models/{id}``, ``/health``...).
A bare path is forwarded only when its first segment is an OpenAI resource (``/images/...``);
anything else is a 404 and never reaches a provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, route
from litestar.background_tasks import BackgroundTask
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from hugind.api.facts import RequestFacts
from hugind.api.provider_swap import LiveRouter
from hugind.errors import NotFoundError, OpenAIError
from hugind.providers import (
    ProviderRouter,
    UpstreamResponse,
    is_openai_path,
    model_from_body,
)

logger = logging.getLogger("hugind.api.forward")

FORWARD_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
#: Status logged (nginx's convention) when the client left before the upstream answered.
CLIENT_CLOSED_REQUEST = 499
#: The app relays through the reloadable :class:`LiveRouter`; tests may pass a bare router.
Router = ProviderRouter | LiveRouter


def forward_route_handlers(router: Router) -> list[HTTPRouteHandler]:
    """Route handlers for ``/v1/{path}``, bare OpenAI paths and ``GET /admin/providers``."""

    @route("/v1/{path:path}", http_method=FORWARD_METHODS, include_in_schema=False,
           name="forward_v1")
    async def forward_v1(request: Request[Any, Any, Any], path: str) -> Response[Any]:
        """Any ``/v1`` endpoint Hugind does not serve natively."""
        return await _forward_raw(request, router)

    @route("/{path:path}", http_method=FORWARD_METHODS, include_in_schema=False,
           name="forward_bare")
    async def forward_bare(request: Request[Any, Any, Any], path: str) -> Response[Any]:
        """OpenAI endpoints without the ``/v1`` prefix."""
        if not is_openai_path(path):
            raise NotFoundError(f"Unknown path: {request.method} {request.url.path}",
                                code="unknown_url")
        return await _forward_raw(request, router)

    @get("/admin/providers", name="admin_providers", opt={"admin": True})
    async def admin_providers(
        limit: int | None = 500, provider: str | None = None
    ) -> dict[str, Any]:
        """Providers, each key's state by fingerprint, and the failover activity log."""
        return {
            "providers": router.describe(),
            "keys": router.key_states(),
            "activity": router.activity(limit, provider),
        }

    return [forward_v1, forward_bare, admin_providers]


async def forward_to_provider(
    request: Request[Any, Any, Any], router: Router, body: bytes, model: str,
) -> Response[Any]:
    """Relay a native endpoint's request for a non-local ``model`` to its provider.

    Args:
        request: the incoming request (path, query and headers are forwarded).
        router: the app's provider router.
        body: the raw request body, exactly as received (``await request.body()``).
        model: the requested model id.

    Returns:
        A streamed response with the upstream's status and headers.

    Raises:
        OpenAIError: no provider serves ``model`` (404), or every attempt failed (502/504).
    """
    return await _relay(request, router, body, model)


async def _forward_raw(request: Request[Any, Any, Any], router: Router) -> Response[Any]:
    body = await request.body()
    model = model_from_body(body, request.headers.get("content-type", ""))
    return await _relay(request, router, body, model)


async def _relay(
    request: Request[Any, Any, Any], router: Router, body: bytes, model: str | None,
) -> Response[Any]:
    configured = model is not None and any(m == model for m, _ in router.remote_models())
    RequestFacts.of(request).remote(model, configured)  # a model label only if configured
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    query = request.scope.get("query_string", b"").decode("latin-1")
    upstream = await _until_disconnect(
        request, router.forward(request.method, raw_path(request.scope), query, headers, body,
                                model)
    )
    if upstream is None:
        logger.info("client left before %s %s was answered upstream; cancelled",
                    request.method, request.url.path)
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    return _stream(upstream)


def raw_path(scope: Any) -> str:
    """The path as the client sent it, percent-encoding intact (ASGI ``raw_path``).

    The decoded ``path`` would turn ``%2F`` into a separator and ``%3F`` into a query; the
    provider layer checks the raw form for dot segments in every spelling. Bytes that are not
    UTF-8 survive as surrogate escapes and are re-encoded unchanged.
    """
    raw = scope.get("raw_path")
    if not raw:
        return quote(scope["path"], safe="/!$&'()*+,;=:@~")
    return bytes(raw).split(b"?", 1)[0].decode("utf-8", "surrogateescape")


async def _until_disconnect(
    request: Request[Any, Any, Any], work: Awaitable[UpstreamResponse]
) -> UpstreamResponse | None:
    """Await ``work``, cancelling it if the client disconnects first (then ``None``)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _stream(upstream: UpstreamResponse) -> Stream:
    # The content type goes in the headers, not ``media_type``: Litestar lets the handler's
    # default media type win over a response's, and would append a charset to text types.
    headers: dict[str, str] = {"content-type": "application/octet-stream"}
    seen: set[str] = set()
    for name, value in upstream.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in seen else value
        seen.add(key)
    return Stream(
        content=_relay_body(upstream),
        status_code=upstream.status,
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )


async def _relay_body(upstream: UpstreamResponse) -> AsyncIterator[bytes]:
    """The upstream body; a break-off mid-stream ends an SSE stream with an error event."""
    try:
        async for chunk in upstream:
            yield chunk
    except OpenAIError as exc:
        if not upstream.is_event_stream:
            raise
        yield b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n"
