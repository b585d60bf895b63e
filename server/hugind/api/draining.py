"""Shutdown without lost requests: an ASGI middleware that counts requests in flight (the
server waits for them before it exits) and, once the server drains, answers new ones with 503
so a balancer retries them elsewhere. Health probes always pass: readiness says draining."""

from __future__ import annotations

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from hugind.api.request_id import with_request_id
from hugind.api.runtime import Runtime
from hugind.errors import OverloadedError

# Probes and scrapes pass while draining: readiness says so, and the last counts are read.
_PROBES = frozenset({"/health", "/v1/health", "/health/live", "/health/ready", "/metrics"})


def track_in_flight(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await app(scope, receive, send)
            return
        rt: Runtime = scope["app"].state.runtime
        if rt.draining:
            err = OverloadedError("the server is shutting down; retry on another replica",
                                  code="shutting_down")
            await send({"type": "http.response.start", "status": int(err.status),
                        "headers": [(b"content-type", b"application/json"),
                                    (b"retry-after", b"5"), (b"connection", b"close")]})
            await send({"type": "http.response.body",
                        "body": msgspec.json.encode(with_request_id(err.to_dict()))})
            return
        rt.in_flight += 1
        try:
            await app(scope, receive, send)
        finally:
            rt.in_flight -= 1

    return middleware
