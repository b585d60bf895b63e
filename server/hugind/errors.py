"""The one error type every layer raises, and its OpenAI wire shape.

Exception tree (status in brackets)::

    OpenAIError
    ├── InvalidRequestError           [400] invalid_request_error
    │   └── ContextLengthError        [400] code=context_length_exceeded
    ├── AuthenticationError           [401] authentication_error
    ├── PermissionDeniedError         [403] permission_error
    ├── NotFoundError                 [404] not_found_error
    │   └── ModelNotFoundError        [404] code=model_not_found
    ├── MethodNotAllowedError         [405]
    ├── ConflictError                 [409] conflict (e.g. a read-only YAML key)
    ├── RequestTooLargeError          [413]
    ├── RateLimitError                [429] rate_limit_error
    │   ├── QueueFullError            [429] code=queue_full (carries retry_after_s)
    │   ├── RequestRateLimitError     [429] requests, code=rate_limit_exceeded (a key's limit)
    │   └── TokenRateLimitError       [429] tokens, code=rate_limit_exceeded (a key's limit)
    ├── InternalError                 [500] server_error (message is generic)
    ├── UpstreamError                 [502] upstream_error
    ├── OverloadedError               [503] service_unavailable
    │   └── ModelNotReadyError        [503] code=model_not_ready
    └── UpstreamTimeoutError          [504] upstream_timeout

This module imports nothing from hugind so every layer can raise these.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar


class OpenAIError(Exception):
    """An error with an HTTP status and the OpenAI ``{"error": {...}}`` body."""

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(OpenAIError):
    status = HTTPStatus.BAD_REQUEST
    type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    default_code = "context_length_exceeded"

    def __init__(self, n_prompt: int, n_ctx: int, *, n_max_tokens: int = 0,
                 param: str | None = "messages") -> None:
        fits = n_ctx - n_max_tokens
        extra = f" plus max_tokens={n_max_tokens}" if n_max_tokens else ""
        super().__init__(
            f"This model's maximum context length is {n_ctx} tokens. The prompt is "
            f"{n_prompt} tokens{extra}; at most {max(fits, 0)} prompt tokens fit.",
            param=param,
        )
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx


class AuthenticationError(OpenAIError):
    status = HTTPStatus.UNAUTHORIZED
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(OpenAIError):
    status = HTTPStatus.FORBIDDEN
    type = "permission_error"


class NotFoundError(OpenAIError):
    status = HTTPStatus.NOT_FOUND
    type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class ConflictError(OpenAIError):
    """The request is valid but conflicts with the server's state or setup."""

    status = HTTPStatus.CONFLICT
    type = "invalid_request_error"
    default_code = "conflict"


class MethodNotAllowedError(OpenAIError):
    status = HTTPStatus.METHOD_NOT_ALLOWED
    type = "invalid_request_error"


class RequestTooLargeError(OpenAIError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(OpenAIError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    type = "rate_limit_error"


class QueueFullError(RateLimitError):
    default_code = "queue_full"

    def __init__(self, model: str, max_queue: int, retry_after_s: int = 1) -> None:
        super().__init__(
            f"Model '{model}' has {max_queue} requests waiting, its queue limit; retry shortly",
            headers={"Retry-After": str(retry_after_s)},
        )


class RequestRateLimitError(RateLimitError):
    """A key's requests-per-minute or concurrency cap; OpenAI's body names the limit kind."""

    type = "requests"
    default_code = "rate_limit_exceeded"


class TokenRateLimitError(RateLimitError):
    """A key's tokens-per-minute window is spent."""

    type = "tokens"
    default_code = "rate_limit_exceeded"


class InternalError(OpenAIError):
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    type = "server_error"


class UpstreamError(OpenAIError):
    status = HTTPStatus.BAD_GATEWAY
    type = "upstream_error"


class OverloadedError(OpenAIError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    type = "service_unavailable"


class ModelNotReadyError(OverloadedError):
    default_code = "model_not_ready"


class RequestTimeoutError(OpenAIError):
    status = HTTPStatus.GATEWAY_TIMEOUT
    type = "timeout_error"
    default_code = "request_timeout"


class UpstreamTimeoutError(OpenAIError):
    status = HTTPStatus.GATEWAY_TIMEOUT
    type = "upstream_timeout"
