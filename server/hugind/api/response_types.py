"""Response wire types, in OpenAI's names, for the OpenAPI document.

Handlers build their answers as builtins (the encoder is fastest on those); these Structs
describe the same shapes so ``/openapi.json`` can publish them, and the unit tests decode real
answers with them, which keeps the two in step. Fields OpenAI sends as explicit ``null`` are
``X | None``; fields that may be absent are ``UNSET``.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


class Wire(Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class ErrorObject(Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Struct, kw_only=True):
    error: ErrorObject


# -- usage and logprobs ----------------------------------------------------------------------

class PromptTokensDetails(Wire, kw_only=True):
    cached_tokens: int
    audio_tokens: int = 0


class CompletionTokensDetails(Wire, kw_only=True):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class CompletionUsage(Wire, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class TopLogprob(Wire, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Wire, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Wire, kw_only=True):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


# -- chat ------------------------------------------------------------------------------------

class CalledFunction(Wire, kw_only=True):
    name: str
    arguments: str  # JSON text


class ChatCompletionMessageToolCall(Wire, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatCompletionMessage(Wire, kw_only=True):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | UnsetType = UNSET
    function_call: CalledFunction | UnsetType = UNSET


class ChatChoice(Wire, kw_only=True):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(Wire, kw_only=True):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChatChoice]
    usage: CompletionUsage


class ToolCallDelta(Wire, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: CalledFunction | UnsetType = UNSET


class ChoiceDelta(Wire, kw_only=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    refusal: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET
    function_call: CalledFunction | UnsetType = UNSET


class ChunkChoice(Wire, kw_only=True):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(Wire, kw_only=True):
    """One ``data:`` event of a streamed chat completion; the stream ends ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChunkChoice]
    usage: CompletionUsage | UnsetType | None = UNSET  # with stream_options.include_usage


# -- completions -----------------------------------------------------------------------------

class CompletionLogprobs(Wire, kw_only=True):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(Wire, kw_only=True):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(Wire, kw_only=True):
    """A completion, or (streamed) one ``data:`` event of one."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[CompletionChoice]
    usage: CompletionUsage | UnsetType | None = UNSET


# -- embeddings ------------------------------------------------------------------------------

class Embedding(Wire, kw_only=True):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(Wire, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(Wire, kw_only=True):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- models ----------------------------------------------------------------------------------

class ModelMeta(Wire, kw_only=True):
    """Hugind's additions to a local model: its state, limits and capabilities."""

    kind: Literal["generate", "embed"]
    state: str  # unloaded | loading | ready | restarting | failed
    n_ctx: int  # context per sequence; 0 until the model has loaded
    n_ctx_train: int | UnsetType = UNSET  # the context the model was trained with, when known
    max_output_tokens: int | None  # generated tokens a request may ask for (n_ctx - 1)
    alias_of: str | None
    chat: bool | None  # null until a model without a configured template has loaded
    completions: bool
    embeddings: bool
    tools: bool | None
    json_schema: bool
    vision: bool


class Model(Wire, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str  # "hugind", or the provider's name for a remote model
    meta: ModelMeta | UnsetType = UNSET  # local models only


class ModelList(Wire, kw_only=True):
    object: Literal["list"]
    data: list[Model]


# -- tokenizer and template ------------------------------------------------------------------

class TokenPiece(Wire, kw_only=True):
    id: int
    piece: str


class TokenizeResponse(Wire, kw_only=True):
    model: str
    tokens: list[int | TokenPiece]  # ids; pieces with ``with_pieces: true``
    count: int


class DetokenizeResponse(Wire, kw_only=True):
    model: str
    content: str


class ChatRender(Wire, kw_only=True):
    model: str
    prompt: str
    tokens: list[int]
    count: int


# -- sessions --------------------------------------------------------------------------------

class Session(Wire, kw_only=True):
    object: Literal["session"]
    name: str
    model: str
    tier: str  # kv (resident) | ram | disk
    tokens: int
    bytes: int
    last_used: float | None
    pinned: bool = False  # kept through budget and TTL eviction


class SessionList(Wire, kw_only=True):
    object: Literal["list"]
    data: list[Session]


class SessionDeleted(Wire, kw_only=True):
    object: Literal["session.deleted"]
    name: str
    deleted: bool


# -- health and operations -------------------------------------------------------------------

class ModelState(Struct, kw_only=True):
    id: str
    kind: str
    state: str


class Health(Struct, kw_only=True):
    status: str  # ok | loading | restarting | failed
    models: list[ModelState]


class Probe(Wire, kw_only=True):
    """/health/live and /health/ready."""

    status: str  # ok | loading | restarting | failed | draining


class AdminModel(Wire, kw_only=True):
    id: str
    object: Literal["model"]
    aliases: list[str]
    kind: str
    state: str
    preload: bool
    size_bytes: int
    loaded_since: float | None  # unix time
    last_used: float | None
    load_seconds: float | None
    error: str | None  # names no server path


class AdminModelList(Wire, kw_only=True):
    object: Literal["list"]
    data: list[AdminModel]


#: Schemas for answers whose shape is a free-form object (counters, admin views).
AnyObject = dict[str, Any]
