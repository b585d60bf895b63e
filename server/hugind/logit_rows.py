"""Passes over a logits row that the softmax draw and the logprobs share: one work buffer per
thread, and reductions over 1,024-logit blocks.

A softmax draw and a log-softmax each write a vocabulary's worth of floats (1 MiB for Gemma
3). One buffer per thread, not one per sequence or per call, stays in the core's cache from
row to row (measured: 8 rows of Gemma 3's logits 357 -> 281 us a row for the draw) and costs
one vocabulary's floats however many sequences there are. Summing float32 blocks (pairwise
within a block) and then the blocks' sums in float64 stays within ~1e-7 of a float64 sum at a
fraction of its cost.
"""

from __future__ import annotations

import threading

import numpy as np

BLOCK = 1024  # logits per block
_local = threading.local()


def work(n: int) -> np.ndarray:
    """This thread's float32 buffer, at least ``n`` long, as a view of ``n`` floats (its
    contents are whatever the last user left)."""
    buf: np.ndarray | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = _local.buf = np.empty(n, dtype=np.float32)
    return buf[:n]


def block_sums(x: np.ndarray) -> np.ndarray:
    """The sum of each ``BLOCK`` of ``x`` (the last block may be shorter), in ``x``'s dtype."""
    full = len(x) - len(x) % BLOCK
    sums = x[:full].reshape(-1, BLOCK).sum(axis=1)
    return np.append(sums, x[full:].sum()) if full < len(x) else sums


def block_maxes(x: np.ndarray) -> np.ndarray:
    """The maximum of each ``BLOCK`` of ``x`` (the last block may be shorter)."""
    full = len(x) - len(x) % BLOCK
    maxes = x[:full].reshape(-1, BLOCK).max(axis=1)
    return np.append(maxes, x[full:].max()) if full < len(x) else maxes
