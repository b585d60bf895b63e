"""Per-sequence llama.cpp sampler chains.

Threading contract: a ``Sampler`` belongs to one sequence and is used only by the owner thread of
the context it samples from.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field

import llama_cpp

from hugind.llama.context import GenerationContext

_BAN = -math.inf


class GrammarError(ValueError):
    """llama.cpp rejected a GBNF grammar."""


@dataclass(frozen=True)
class SamplerSpec:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int = 0xFFFFFFFF
    grammar: str | None = None


class Sampler:
    """An owned ``llama_sampler`` chain built from a :class:`SamplerSpec`."""

    def __init__(self, ctx: GenerationContext, spec: SamplerSpec) -> None:
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        try:
            self._build(ctx, spec)
        except BaseException:
            llama_cpp.llama_sampler_free(self._chain)
            raise

    def _add(self, smpl: ctypes.c_void_p) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, smpl)

    def _build(self, ctx: GenerationContext, spec: SamplerSpec) -> None:
        n_vocab = ctx.vocab.n_vocab
        if spec.logit_bias:
            items = list(spec.logit_bias.items())
            arr = (llama_cpp.llama_logit_bias * len(items))()
            for i, (tok, bias) in enumerate(items):
                arr[i].token = tok
                arr[i].bias = _BAN if bias <= -100 else bias
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(items), arr))
        if spec.grammar:
            vocab = llama_cpp.llama_model_get_vocab(ctx._model)
            g = llama_cpp.llama_sampler_init_grammar(vocab, spec.grammar.encode(), b"root")
            if not g:
                raise GrammarError("the grammar could not be parsed")
            self._add(g)
        penalized = (spec.repeat_penalty != 1.0 or spec.frequency_penalty != 0.0
                     or spec.presence_penalty != 0.0)
        if penalized:
            self._add(llama_cpp.llama_sampler_init_penalties(  # this build's signature
                n_vocab, spec.penalty_last_n, spec.repeat_penalty, spec.frequency_penalty,
                spec.presence_penalty))
        if spec.temperature <= 0.0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if spec.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(spec.top_k))
        if spec.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(spec.top_p, 1))
        if spec.min_p > 0.0:
            self._add(llama_cpp.llama_sampler_init_min_p(spec.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(spec.temperature))
        self._add(llama_cpp.llama_sampler_init_dist(spec.seed & 0xFFFFFFFF))

    def sample(self, ctx: GenerationContext, idx: int) -> int:
        """Sample from the logits of batch row ``idx`` and accept the token."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx.raw_ctx, idx))

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()
