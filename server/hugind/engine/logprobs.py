"""Token log-probabilities from a logits row, in a few vectorised passes.

A row is Gemma 3's 262,144 logits. Copied to float64 and ``argpartition``-ed whole, one
token's logprob and top 5 took ~1 ms on the worker: every stream that asked for logprobs added
that to every stream's step, and prompt logprobs added it per prompt token. Here the exp runs
in float32 in this thread's work buffer and is summed by blocks (``hugind.logit_rows``), and
the top tokens are sorted from the few logits at or above the k-th largest block maximum:
~0.3 ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hugind import logit_rows
from hugind.engine.types import TokenLogprob, TopLogprob

__all__ = ["log_softmax_at", "token_logprob", "top_tokens"]


def log_softmax_at(logits: np.ndarray, ids: np.ndarray | list[int],
                   maxes: np.ndarray | None = None) -> list[float]:
    """log softmax(logits) at ``ids`` (``maxes``: the row's block maxima, if known)."""
    mx = float((maxes if maxes is not None else logit_rows.block_maxes(logits)).max())
    x = np.subtract(logits, np.float32(mx), out=logit_rows.work(len(logits)))
    np.exp(x, out=x)
    total = float(logit_rows.block_sums(x).sum(dtype=np.float64))
    lse = mx + math.log(total) if total > 0 else math.inf  # 0: a row of NaN or -inf
    return [float(logits[i]) - lse for i in ids]


def top_tokens(logits: np.ndarray, k: int, maxes: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` highest logits' ids, highest first, ties by lower id. Every one of them is at
    or above the k-th largest block maximum (k blocks reach it), so only those few are
    sorted."""
    k = min(k, len(logits))
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    maxes = maxes if maxes is not None else logit_rows.block_maxes(logits)
    b = len(maxes)
    ids = np.flatnonzero(logits >= np.partition(maxes, b - k)[b - k]) if k < b else None
    if ids is None or len(ids) < k:  # a short row, or NaN in it
        ids = np.arange(len(logits))
    order = np.lexsort((ids, -logits[ids]))
    return ids[order[:k]]


def token_logprob(logits: np.ndarray, token: int, top_n: int,
                  piece: Callable[[int], bytes]) -> TokenLogprob:
    """``token``'s logprob in ``logits`` and the ``top_n`` likeliest alternatives, with their
    text and bytes from ``piece``."""
    maxes = logit_rows.block_maxes(logits)
    top = top_tokens(logits, top_n, maxes)
    lps = log_softmax_at(logits, [token, *top.tolist()], maxes)
    alts: list[TopLogprob] = []
    for t, lp in zip(top.tolist(), lps[1:], strict=True):
        p = piece(t)
        alts.append(TopLogprob(p.decode("utf-8", "replace"), lp, list(p)))
    p = piece(token)
    return TokenLogprob(p.decode("utf-8", "replace"), lps[0], list(p), alts)
