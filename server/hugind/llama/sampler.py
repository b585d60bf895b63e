"""Per-sequence llama.cpp sampler chains.

Threading contract: a ``Sampler`` belongs to one sequence and is used by one thread at a time:
the owner thread of the context it samples from, or a helper the owner waits on while the
context only has its logits read (several samplers may then read one context's rows at once).
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from hugind.llama.context import GenerationContext, Vocab

_BAN = -math.inf
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


_BLOCK = 1024  # logits per block of the two-level cumulative sum in softmax_sample


def softmax_sample(logits: np.ndarray, temperature: float, u: float, work: np.ndarray) -> int:
    """The index drawn from softmax(logits / temperature) by a uniform ``u`` in [0, 1): the
    first one whose cumulative probability exceeds ``u``, as llama.cpp's temp + dist samplers
    draw. Vectorised exp and a two-level cumulative sum (block sums, then within one block)
    take ~0.4 ms for Gemma 3's 262k logits, where llama.cpp's scalar loops take ~2.3 ms.
    A zero-probability index is never drawn. ``work`` is a float32 buffer of the same size."""
    x = np.divide(logits, np.float32(temperature), out=work)
    x -= x.max()
    np.exp(x, out=x)
    starts = np.arange(0, len(x), _BLOCK)
    cum = np.cumsum(np.add.reduceat(x, starts, dtype=np.float64))
    target = u * cum[-1]
    b = min(int(np.searchsorted(cum, target, side="right")), len(cum) - 1)
    block = x[starts[b]:starts[b] + _BLOCK]
    inner = np.cumsum(block, dtype=np.float64)
    i = int(np.searchsorted(inner, target - (cum[b - 1] if b else 0.0), side="right"))
    if i >= len(block):  # rounding between the two sums: the block's last nonzero index
        i = int(np.flatnonzero(block)[-1])
    return int(starts[b]) + i


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
    seed: int = 0  # the worker draws one per request when the client sends none
    grammar: str | None = None


_U64 = 2**64 - 1
_LLAMA_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a random seed instead


def seed32(seed: int) -> int:
    """An OpenAI seed (any int64) as a 32-bit llama.cpp seed: both halves folded in, and never
    the value that llama.cpp replaces with a random seed (which -1 would be, masked)."""
    folded = ((seed & _U64) ^ ((seed & _U64) >> 32)) & 0xFFFFFFFF
    return folded if folded != _LLAMA_RANDOM_SEED else _LLAMA_RANDOM_SEED - 1


class Sampler:
    """An owned ``llama_sampler`` chain built from a :class:`SamplerSpec`.

    A grammar is kept out of the chain and checked last, as llama.cpp's own common sampler
    does: the chain picks a token, the grammar checks that one token, and only when it rejects
    it is the grammar applied to the whole vocabulary (262k tokens for Gemma 3, ~60 ms) and the
    token picked again. Greedy output is the same either way.
    """

    def __init__(self, vocab: Vocab, spec: SamplerSpec) -> None:
        """Built from the vocabulary alone (thread-safe), so a grammar is compiled off the
        context's owner thread."""
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        self._grammar: ctypes.c_void_p | None = None
        try:
            self._build(vocab, spec)
        except BaseException:
            self.close()
            raise
        # A chain of the greedy sampler alone needs no chain at all: argmax over the logits row
        # is what it returns (the first maximum), without building a 262k-entry candidate array.
        n_chain = llama_cpp.llama_sampler_chain_n(self._chain)
        self._argmax_only = spec.temperature <= 0.0 and self._grammar is None and n_chain == 1
        # Temperature alone (OpenAI's defaults) is a softmax draw: done in numpy, ~5x faster.
        self._softmax: tuple[np.random.Generator, np.ndarray] | None = None
        if spec.temperature > 0.0 and self._grammar is None and n_chain == 2:
            self._softmax = (np.random.Generator(np.random.PCG64(spec.seed & _U64)),
                             np.empty(vocab.n_vocab, dtype=np.float32))
        self._temperature = spec.temperature
        if self._grammar is not None:
            n_vocab = vocab.n_vocab
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._cur = np.zeros(n_vocab, dtype=_TOKEN_DATA)
            self._one = np.zeros(1, dtype=_TOKEN_DATA)
            self._cur_p = self._array(self._cur)
            self._one_p = self._array(self._one)

    @staticmethod
    def _array(buf: np.ndarray) -> llama_cpp.llama_token_data_array:
        data = ctypes.cast(buf.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data))
        return llama_cpp.llama_token_data_array(data=data, size=len(buf), selected=-1,
                                                sorted=False)

    def _add(self, smpl: ctypes.c_void_p) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, smpl)

    def _build(self, vocab: Vocab, spec: SamplerSpec) -> None:
        n_vocab = vocab.n_vocab
        if spec.logit_bias:
            items = list(spec.logit_bias.items())
            arr = (llama_cpp.llama_logit_bias * len(items))()
            for i, (tok, bias) in enumerate(items):
                arr[i].token = tok
                arr[i].bias = _BAN if bias <= -100 else bias
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(items), arr))
        if spec.grammar:
            g = llama_cpp.llama_sampler_init_grammar(vocab.handle, spec.grammar.encode(),
                                                     b"root")
            if not g:
                raise GrammarError("the grammar could not be parsed")
            self._grammar = g
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
        self._add(llama_cpp.llama_sampler_init_dist(seed32(spec.seed)))

    @property
    def costly(self) -> bool:
        """Whether sampling runs a llama.cpp chain over the whole vocabulary: ~2.3 ms a row
        for Gemma 3's 262k tokens on one core, against ~0.4 ms for a numpy softmax draw and
        ~0.05 ms for greedy argmax."""
        return not self._argmax_only and self._softmax is None

    @property
    def deferred(self) -> bool:
        """A grammar: one token may take far longer than a step (a rejected pick constrains
        the whole vocabulary), so the scheduler draws it beside the step (``sample_row``)."""
        return self._grammar is not None

    def sample(self, ctx: GenerationContext, idx: int) -> int:
        """Sample from the logits of batch row ``idx`` and accept the token."""
        if self._argmax_only:
            return int(np.argmax(ctx.logits(idx)))
        if self._softmax is not None:
            rng, work = self._softmax
            return softmax_sample(ctx.logits(idx), self._temperature, rng.random(), work)
        if self._grammar is None:
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx.raw_ctx, idx))
        return self.sample_row(ctx.logits(idx))

    def sample_row(self, logits: np.ndarray) -> int:
        """Sample a grammar-constrained token from a logits row (any thread, one at a time)."""
        if self._grammar is None:
            raise TypeError("sample_row is for grammar samplers")
        token = self._pick(logits, grammar_first=False)
        one = self._one
        one["id"], one["logit"], one["p"] = token, 0.0, 0.0
        self._reset(self._one_p, 1)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._one_p))
        if not np.isfinite(one["logit"][0]):  # rejected: constrain the whole vocabulary
            token = self._pick(logits, grammar_first=True)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _pick(self, logits: np.ndarray, *, grammar_first: bool) -> int:
        cur = self._cur
        cur["id"] = self._ids
        cur["logit"] = logits
        cur["p"] = 0.0
        self._reset(self._cur_p, len(cur))
        if grammar_first:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._cur_p))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(self._cur_p))
        return int(cur["id"][self._cur_p.selected])

    @staticmethod
    def _reset(arr: llama_cpp.llama_token_data_array, size: int) -> None:
        arr.size = size
        arr.selected = -1
        arr.sorted = False

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        self.close()
