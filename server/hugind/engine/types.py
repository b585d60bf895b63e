"""Engine-side request and event types. No HTTP or wire names here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class FinishReason(str, Enum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class SessionKey:
    """Who is talking: the caller's identity (a hash of the API key) and the conversation name."""

    tenant: str
    name: str


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    grammar: str | None = None
    json_schema: Any = None  # a JSON schema dict, or True for any JSON object


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate. ``prompt_tokens`` is already tokenized and length-checked."""

    model: str
    prompt_tokens: list[int]
    max_tokens: int
    sampling: SamplingParams = SamplingParams()
    stop: list[str] = field(default_factory=list)
    tenant: str = "anonymous"
    session: str | None = None
    top_logprobs: int | None = None
    ignore_eos: bool = False
    use_cache: bool = True  # False: prefill everything, reuse nothing
    # Set: prefill the whole prompt (no prefix reuse) and report each prompt token's logprob
    # with this many alternatives, once, in ``TokenEvent.prompt_logprobs``.
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability. ``logprob`` is None only for the first prompt token, which
    nothing predicts."""

    token: str
    logprob: float | None
    bytes: list[int]
    top: list[TopLogprob]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenEvent:
    """A piece of output. ``finish_reason`` is set on the last event of a sequence only."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: Exception | None = None
    prompt_logprobs: list[TokenLogprob] | None = None  # once, when the request asked for them
    stop: str | None = None  # on the last event: the stop string that ended it, if one did


@dataclass(frozen=True)
class FimTokens:
    """A model's fill-in-the-middle token ids; ``bos`` is None when it adds no BOS."""

    prefix: int
    suffix: int
    middle: int
    bos: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    aliases: list[str]
    kind: str  # "generate" | "embed"
    state: str  # "unloaded" | "loading" | "ready" | "restarting" | "failed"
    error: str | None = None
    n_ctx: int = 0
    created: int = 0
    preload: bool = True
    size_bytes: int = 0  # the GGUF file's size, once known
    loaded_since: float | None = None  # unix time
    last_used: float | None = None  # unix time of the last request's end
    load_seconds: float | None = None  # how long the last load took
    n_ctx_train: int = 0
    facts: dict[str, Any] = field(default_factory=dict)
