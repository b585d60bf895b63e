"""Per-sequence samplers: llama.cpp sampler chains, and llguidance matchers for grammars.

Threading contract: a ``Sampler`` belongs to one sequence and is used by one thread at a time:
the owner thread of the context it samples from, or a helper the owner waits on while the
context only has its logits read (several samplers may then read one context's rows at once).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import math
from dataclasses import dataclass, field

import llama_cpp
import llguidance
import llguidance.numpy
import numpy as np

from hugind import logit_rows
from hugind.llama.context import GenerationContext, Vocab
from hugind.llama.grammar import GrammarError, matcher_for

__all__ = ["GrammarError", "Sampler", "SamplerSpec", "seed32", "softmax_sample"]

FEW_TOKENS = 8  # allowed sets up to 1/8 of the vocabulary are drawn among alone
_BAN = -math.inf
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


def softmax_sample(logits: np.ndarray, temperature: float, u: float, work: np.ndarray) -> int:
    """The index drawn from softmax(logits / temperature) by a uniform ``u`` in [0, 1): the
    first one whose cumulative probability exceeds ``u``, as llama.cpp's temp + dist samplers
    draw. Vectorised exp and a two-level cumulative sum (float32 sums of 1,024-logit blocks,
    pairwise and so within ~1e-7 of exact, accumulated in float64; then float64 within one
    block) take ~0.25 ms for Gemma 3's 262k logits, where llama.cpp's scalar loops take ~2.3
    ms. A zero-probability index is never drawn. ``work`` is a float32 buffer of the same
    size."""
    if temperature == 1.0:  # x / 1 is x: skip a pass over the row
        x = np.subtract(logits, logits.max(), out=work)
    else:
        x = np.divide(logits, np.float32(temperature), out=work)
        x -= x.max()
    np.exp(x, out=x)
    cum = np.cumsum(logit_rows.block_sums(x), dtype=np.float64)
    target = u * cum[-1]
    b = min(int(np.searchsorted(cum, target, side="right")), len(cum) - 1)
    start = b * logit_rows.BLOCK
    block = x[start:start + logit_rows.BLOCK]
    inner = np.cumsum(block, dtype=np.float64)
    i = int(np.searchsorted(inner, target - (cum[b - 1] if b else 0.0), side="right"))
    if i >= len(block):  # rounding between the two sums: the block's last nonzero index
        i = int(np.flatnonzero(block)[-1])
    return start + i


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
    grammar: str | None = None  # an llguidance grammar (hugind.llama.grammar)


_U64 = 2**64 - 1
_LLAMA_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a random seed instead


def seed32(seed: int) -> int:
    """An OpenAI seed (any int64) as a 32-bit llama.cpp seed: both halves folded in, and never
    the value that llama.cpp replaces with a random seed (which -1 would be, masked)."""
    folded = ((seed & _U64) ^ ((seed & _U64) >> 32)) & 0xFFFFFFFF
    return folded if folded != _LLAMA_RANDOM_SEED else _LLAMA_RANDOM_SEED - 1



class Sampler:
    """An owned ``llama_sampler`` chain built from a :class:`SamplerSpec`, and an llguidance
    matcher where the spec has a grammar.

    A grammar masks the logits row before the chain draws: the matcher computes the allowed
    tokens (~0.1-0.3 ms for Gemma 3's 262k tokens, the GIL released; ``prepare`` starts it
    while the decode runs), the rest are banned, and the same greedy, softmax or chain draw as
    without a grammar picks among the others, over just the allowed ones when they are few.
    Once the grammar is complete, or can go no further, the model's end-of-generation tokens
    are allowed.
    """

    def __init__(self, vocab: Vocab, spec: SamplerSpec) -> None:
        """Built from the vocabulary alone (thread-safe), so a grammar is compiled off the
        context's owner thread. Raises :class:`GrammarError`."""
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        self._matcher: llguidance.LLMatcher | None = None
        self._preparing: concurrent.futures.Future[np.ndarray] | None = None
        try:
            self._build(vocab, spec)
            if spec.grammar:
                self._matcher, eog = matcher_for(vocab, spec.grammar)
                self._eog = np.array(sorted(eog), dtype=np.intp)
        except BaseException:
            self.close()
            raise
        # A chain of the greedy sampler alone needs no chain at all: argmax over the logits row
        # is what it returns (the first maximum), without building a 262k-entry candidate array.
        n_chain = llama_cpp.llama_sampler_chain_n(self._chain)
        self._argmax_only = spec.temperature <= 0.0 and n_chain == 1
        # Temperature alone (OpenAI's defaults) is a softmax draw: done in numpy, ~5x faster.
        self._rng: np.random.Generator | None = None  # a softmax draw's, when it is one
        if spec.temperature > 0.0 and n_chain == 2:
            self._rng = np.random.Generator(np.random.PCG64(spec.seed & _U64))
        self._temperature = spec.temperature
        if self._matcher is not None:
            n_vocab = vocab.n_vocab
            self._bitmask = llguidance.numpy.allocate_token_bitmask(1, n_vocab)
            self._row = np.empty(n_vocab, dtype=np.float32)
            self._n_vocab = n_vocab
        if not self._argmax_only and self._rng is None:
            n_vocab = vocab.n_vocab
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._cur = np.zeros(n_vocab, dtype=_TOKEN_DATA)
            self._cur_p = self._array(self._cur)

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
        for Gemma 3's 262k tokens on one core, against ~0.25 ms for a numpy softmax draw and
        ~0.05 ms for greedy argmax."""
        return not self._argmax_only and self._rng is None

    @property
    def deferred(self) -> bool:
        """A grammar: a mask is quick, but an Earley step over a hard grammar has no useful
        bound, so the scheduler draws the token beside the step (``sample_row``)."""
        return self._matcher is not None

    def sample(self, ctx: GenerationContext, idx: int) -> int:
        """Sample from the logits of batch row ``idx`` and accept the token."""
        if self._matcher is not None:
            return self.sample_row(ctx.logits(idx))
        if self._argmax_only:
            return int(np.argmax(ctx.logits(idx)))
        if self._rng is not None:
            row = ctx.logits(idx)
            return softmax_sample(row, self._temperature, self._rng.random(),
                                  logit_rows.work(len(row)))
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx.raw_ctx, idx))

    def sample_row(self, logits: np.ndarray) -> int:
        """Sample a grammar-constrained token from a logits row, which is left as it is (any
        thread, one at a time)."""
        matcher = self._matcher
        if matcher is None:
            raise TypeError("sample_row is for grammar samplers")
        preparing, self._preparing = self._preparing, None
        allowed = preparing.result() if preparing is not None else self._allowed(matcher)
        if allowed.dtype == np.bool_:  # most of the vocabulary: mask the whole row
            row = self._row
            row.fill(_BAN)
            np.copyto(row, logits, where=allowed)
            token = self._draw(None, row)
        else:  # a few tokens (a number, a key, an enum): draw among them alone
            token = self._draw(allowed, logits[allowed])
        matcher.consume_token(token)  # a refused token (an EOG past a dead end) stops it
        return token

    def _draw(self, ids: np.ndarray | None, logits: np.ndarray) -> int:
        """The same greedy, softmax or chain draw as without a grammar, over the candidate
        ``logits`` of tokens ``ids`` (None: the whole vocabulary, in order). Tokens outside
        them have probability zero either way, so the distribution is the same."""
        if self._argmax_only:
            i = int(np.argmax(logits))
        elif self._rng is not None:
            i = softmax_sample(logits, self._temperature, self._rng.random(),
                               logit_rows.work(len(logits)))
        else:
            token = self._pick(logits, ids)
            llama_cpp.llama_sampler_accept(self._chain, token)
            return token
        return int(ids[i]) if ids is not None else i

    @property
    def prepared(self) -> bool:
        """Whether the next token's mask is computed (drawing it is then a bounded ~0.05-0.7
        ms, as without a grammar)."""
        return self._preparing is not None and self._preparing.done()

    def prepare(self, pool: concurrent.futures.Executor) -> None:
        """Compute the next token's mask on ``pool`` (the GIL released), while the decode that
        gives its logits runs; ``sample_row`` then only applies it. The matcher has consumed
        every token drawn so far, so the mask is the one the next row needs."""
        if self._matcher is not None and self._preparing is None:
            try:
                self._preparing = pool.submit(self._allowed, self._matcher)
            except RuntimeError:  # the pool is shutting down: the draw computes it itself
                pass

    def _allowed(self, matcher: llguidance.LLMatcher) -> np.ndarray:
        """The tokens the grammar allows next: their ids when they are few (a softmax over
        262k logits takes ~0.7 ms, over a few dozen ~0.03 ms), else a boolean mask. One that
        allows nothing (an unsatisfiable schema, a matcher in error) allows the EOG tokens,
        so the sequence ends instead of drawing from an empty distribution."""
        llguidance.numpy.fill_next_token_bitmask(matcher, self._bitmask)
        allowed = np.unpackbits(self._bitmask.view(np.uint8), count=self._n_vocab,
                                bitorder="little").view(np.bool_)
        n = int(np.count_nonzero(allowed))
        if n == 0:
            return self._eog
        return np.flatnonzero(allowed) if n <= self._n_vocab // FEW_TOKENS else allowed

    def _pick(self, logits: np.ndarray, ids: np.ndarray | None) -> int:
        """The chain's token among ``logits`` (of tokens ``ids``; None: all of them)."""
        n = len(logits)
        cur = self._cur[:n]
        cur["id"] = self._ids[:n] if ids is None else ids
        cur["logit"] = logits
        cur["p"] = 0.0
        arr = self._cur_p
        arr.size, arr.selected, arr.sorted = n, -1, False
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(arr))
        return int(cur["id"][arr.selected])

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        self._matcher = None

    def __del__(self) -> None:
        self.close()
