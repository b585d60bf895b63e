"""Anthropic's error shape for the ``/v1/messages`` routes:
``{"type": "error", "error": {"type", "message"}, "request_id"}``, typed by status."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Response

from hugind.errors import OpenAIError

PREFIXES = ("/v1/messages", "/messages")  # with and without /v1, as every route

#: Anthropic's error types by status; the status itself is kept (503 stays 503: a draining
#: server or a loading model, with its Retry-After, rather than Anthropic's 529).
_TYPES = {
    HTTPStatus.BAD_REQUEST: "invalid_request_error",
    HTTPStatus.UNAUTHORIZED: "authentication_error",
    HTTPStatus.FORBIDDEN: "permission_error",
    HTTPStatus.NOT_FOUND: "not_found_error",
    HTTPStatus.METHOD_NOT_ALLOWED: "invalid_request_error",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request_too_large",
    HTTPStatus.TOO_MANY_REQUESTS: "rate_limit_error",
    HTTPStatus.SERVICE_UNAVAILABLE: "overloaded_error",
    HTTPStatus.GATEWAY_TIMEOUT: "timeout_error",
    529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


def error_body(err: OpenAIError, request_id: str | None) -> dict[str, Any]:
    kind = _TYPES.get(int(err.status), "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": err.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_response(err: OpenAIError, request_id: str | None) -> Response[bytes]:
    return Response(content=msgspec.json.encode(error_body(err, request_id)),
                    status_code=int(err.status), media_type=MediaType.JSON,
                    headers=err.headers)
