"""The one exception handler: every failure becomes the OpenAI error shape."""

from __future__ import annotations

import logging
from http import HTTPStatus

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from hugind.api.anthropic_errors import error_response as anthropic_error_response
from hugind.api.anthropic_errors import is_anthropic_path
from hugind.api.request_id import request_id_of, with_request_id
from hugind.errors import (
    InternalError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OpenAIError,
    RequestTooLargeError,
)

log = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[OpenAIError]] = {
    HTTPStatus.BAD_REQUEST: InvalidRequestError,
    HTTPStatus.NOT_FOUND: NotFoundError,
    HTTPStatus.METHOD_NOT_ALLOWED: MethodNotAllowedError,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: RequestTooLargeError,
}


def as_openai_error(request: Request, exc: Exception) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, HTTPException):
        cls = _BY_STATUS.get(exc.status_code)
        if exc.status_code == HTTPStatus.NOT_FOUND:
            return NotFoundError(f"Unknown path: {request.method} {request.url.path}",
                                 code="unknown_url")
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            return MethodNotAllowedError(
                f"Method {request.method} is not allowed on {request.url.path}")
        if exc.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            return RequestTooLargeError("the request body is larger than the server accepts "
                                        "(server.max_body_bytes)")
        if cls is not None:
            return cls(str(exc.detail))
        if exc.status_code < 500:
            err = InvalidRequestError(str(exc.detail))
            return err
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return InternalError("The server had an error while processing your request.")


def error_response(err: OpenAIError, request_id: str | None = None) -> Response[bytes]:
    import msgspec

    return Response(
        content=msgspec.json.encode(with_request_id(err.to_dict(), request_id)),
        status_code=int(err.status),
        media_type=MediaType.JSON,
        headers=err.headers,
    )


def to_openai_error(request: Request, exc: Exception) -> Response[bytes]:
    err, rid = as_openai_error(request, exc), request_id_of(request.scope)
    if is_anthropic_path(request.url.path):  # Anthropic's SDKs parse only their own shape
        return anthropic_error_response(err, rid)
    return error_response(err, rid)
