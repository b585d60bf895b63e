"""OpenAI wire request types. Unknown fields are accepted and ignored (SDKs send extras);
a known field with a wrong type or an out-of-range value is a 400 naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from hugind.errors import InvalidRequestError

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
N = Annotated[int, Meta(ge=1, le=128)]


class Request(Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class StreamOptions(Request, kw_only=True):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class SamplingFields(Request, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, Meta(gt=0.0)] | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: N = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    ignore_eos: bool = False
    grammar: str | None = None
    cache_prompt: bool = True


class ContentPart(Request, kw_only=True):
    type: str
    text: str | None = None
    image_url: Any = None
    input_audio: Any = None


class Message(Request, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None


class CompletionRequest(SamplingFields, kw_only=True):
    prompt: Any
    max_tokens: Annotated[int, Meta(ge=0)] | None = 16  # 0 with echo: score the prompt only
    echo: bool = False
    suffix: str | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    best_of: N | None = None


class EmbeddingRequest(Request, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None


class TokenizeRequest(Request, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    content: str | None = None
    prompt: str | None = None
    add_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(Request, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    tokens: list[int]


T = TypeVar("T")

_AT = re.compile(r" - at `\$\.?(.*)`$")


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body, turning failures into 400s that name the field."""
    if not body.strip():
        raise InvalidRequestError("the request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(body, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid UTF-8: {exc.reason} at byte "
                                  f"{exc.start}") from None


def _invalid(text: str) -> InvalidRequestError:
    match = _AT.search(text)
    path = match.group(1) if match else None
    message = text[: match.start()] if match else text
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        field = missing.group(1)
        path = f"{path}.{field}" if path else field
        return InvalidRequestError(f"missing required field: '{path}'", param=path)
    if message.startswith("Expected `object`") and not path:
        return InvalidRequestError("the request body must be a JSON object")
    return InvalidRequestError(f"invalid value for '{path}': {message.replace('`', '')}",
                               param=path)
