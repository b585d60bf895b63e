"""What the scheduler needs from a llama.cpp context and a sampler: ``hugind.llama`` implements
them, and the unit tests' fakes do too, so the scheduling, cancel, failure and crash paths are
tested without a model."""

from __future__ import annotations

import concurrent.futures
from typing import Protocol

import numpy as np


class Vocabulary(Protocol):
    n_vocab: int

    def piece(self, token: int, *, special: bool = False) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...


class ContextParams(Protocol):
    batch_invariant: bool


class Context(Protocol):
    """One llama.cpp context with ``n_seq`` sequences; used by one thread (the worker's)."""

    vocab: Vocabulary
    params: ContextParams
    n_seq: int
    n_threads: int
    n_ctx_seq: int
    n_batch: int
    n_ubatch: int
    min_chunk: int
    can_rewind: bool

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int],
               logits: list[bool]) -> int: ...

    def logits(self, idx: int) -> np.ndarray: ...

    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool: ...

    def seq_clear(self, seq: int) -> None: ...

    def state_get(self, seq: int) -> bytes: ...

    def state_set(self, seq: int, data: bytes) -> bool: ...

    def state_size(self, seq: int) -> int: ...

    def close(self) -> None: ...


class TokenSampler(Protocol):
    """One sequence's sampler. ``deferred`` samplers (grammars) may take long for a token: the
    scheduler runs them beside the step on a copy of their logits row (``sample_row``)."""

    @property
    def costly(self) -> bool: ...

    @property
    def deferred(self) -> bool: ...

    def sample(self, ctx: Context, idx: int) -> int: ...

    def sample_row(self, logits: np.ndarray) -> int: ...

    @property
    def prepared(self) -> bool:
        """Whether what ``prepare`` started is done (a draw now is quick)."""
        ...

    def prepare(self, pool: concurrent.futures.Executor) -> None:
        """Start on ``pool`` what the next ``sample_row`` needs before it has logits (a
        grammar's token mask), so it runs while ``llama_decode`` computes them."""
        ...

    def close(self) -> None: ...
