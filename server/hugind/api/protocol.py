"""OpenAI wire request types. Unknown fields are accepted and ignored (SDKs send extras);
a known field with a wrong type or an out-of-range value is a 400 naming the field.

Bounds that OpenAI does not state are Hugind's, chosen so that no field can make one request
expensive for everyone else (``MAX_*`` below).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import numpy as np
from msgspec import Meta, Struct

from hugind.errors import InvalidRequestError

MAX_DEPTH = 64  # JSON nesting of a body; OpenAI's strict schemas allow 10 levels
MAX_STOPS = 16  # OpenAI allows 4; llama-server and clients written for it send more
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 1024  # entries; OpenAI takes about 300
MAX_NAME_CHARS = 256  # model ids and session names (prompt_cache_key, user, X-Session-Id)
INT64_MAX = 2**63 - 1

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
SessionName = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1, le=INT64_MAX)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
N = Annotated[int, Meta(ge=1, le=128)]
Stop = Annotated[str, Meta(max_length=MAX_STOP_CHARS)]
Bias = Annotated[float, Meta(ge=-100.0, le=100.0)]


class Request(Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class StreamOptions(Request, kw_only=True):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class SamplingFields(Request, kw_only=True):
    model: Name
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    min_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, Meta(gt=0.0, le=100.0)] | None = None
    logit_bias: Annotated[dict[str, Bias], Meta(max_length=MAX_LOGIT_BIAS)] | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=INT64_MAX)] | None = None
    stop: Stop | Annotated[list[Stop], Meta(max_length=MAX_STOPS)] | None = None
    n: N = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: SessionName | None = None
    prompt_cache_key: SessionName | None = None
    ignore_eos: bool = False
    grammar: str | None = None
    cache_prompt: bool = True


class ContentPart(Request, kw_only=True):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: Any = None
    input_audio: Any = None


class FunctionCall(Request, kw_only=True):
    name: str
    arguments: str | dict[str, Any] | None = None


class ToolCall(Request, kw_only=True):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Request, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | Annotated[list[ContentPart], Meta(min_length=1)] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None


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
    # 0 with echo: score the prompt only
    max_tokens: Annotated[int, Meta(ge=0, le=INT64_MAX)] | None = 16
    echo: bool = False
    suffix: str | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    best_of: N | None = None


class EmbeddingRequest(Request, kw_only=True):
    model: Name
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1, le=INT64_MAX)] | None = None
    user: SessionName | None = None


class TokenizeRequest(Request, kw_only=True):
    model: Name
    content: str | None = None
    prompt: str | None = None
    add_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(Request, kw_only=True):
    model: Name
    tokens: list[int]


T = TypeVar("T")

_AT = re.compile(r" - at `\$\.?(.*)`$")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _steps(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of ``text`` and the nesting depth after each of them."""
    chars = np.frombuffer(text, np.uint8)
    steps = np.zeros(len(chars), np.int32)
    steps[(chars == ord("[")) | (chars == ord("{"))] = 1
    steps[(chars == ord("]")) | (chars == ord("}"))] = -1
    return chars, np.cumsum(steps)


def nesting_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in JSON text (brackets inside strings don't count).

    Linear and C-speed (a regex, ``bytes.translate`` and a numpy cumulative sum), so it runs
    before decoding: the decoder and much downstream (templates, ``json.dumps``, the schema to
    grammar converter) recurse, and msgspec raises ``RecursionError`` near 1,000 levels.
    """
    opens = body.count(b"[") + body.count(b"{")
    if opens <= MAX_DEPTH:
        return opens
    _, depth = _steps(_STRING.sub(b"", body).translate(None, _NOT_BRACKET))
    return int(depth.max(initial=0))


def _deep_field(body: bytes) -> str | None:
    """The top-level key whose value nests too deeply, found without decoding."""
    blank = _STRING.sub(lambda m: b'"' + b"_" * (len(m[0]) - 2) + b'"', body)
    chars, depth = _steps(blank)
    over = (depth > MAX_DEPTH).nonzero()[0]
    colons = ((chars == ord(":")) & (depth == 1)).nonzero()[0]
    colons = colons[colons < over[0]] if over.size else colons[:0]
    if not colons.size:
        return None
    end = blank.rindex(b'"', 0, int(colons[-1]))
    try:
        return msgspec.json.decode(body[blank.rindex(b'"', 0, end):end + 1], type=str)
    except (msgspec.MsgspecError, ValueError):
        return None


def _too_deep(body: bytes) -> InvalidRequestError:
    param = _deep_field(body)
    where = f"'{param}'" if param else "the request body"
    return InvalidRequestError(f"{where} nests arrays and objects more than {MAX_DEPTH} levels "
                               "deep", param=param)


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body, turning failures into 400s that name the field."""
    if not body.strip():
        raise InvalidRequestError("the request body is empty; expected a JSON object")
    if nesting_depth(body) > MAX_DEPTH:
        raise _too_deep(body)
    try:
        return msgspec.json.decode(body, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid UTF-8: {exc.reason} at byte "
                                  f"{exc.start}") from None
    except RecursionError:  # unreachable after the depth check; kept as the last line
        raise _too_deep(body) from None


def _invalid(text: str) -> InvalidRequestError:
    match = _AT.search(text)
    path = match.group(1).replace("[...]", "") if match else None  # [...]: a dict value
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
