"""The pure chunking rules that keep resumed conversations exact: how much of a prompt each
step reads and which cached tokens count as reusable. No llama.cpp, no state."""

from __future__ import annotations

from collections.abc import Sequence

from hugind.sessions import common_prefix

# Prefill runs in chunks whose starts and lengths (all but the last) are multiples of QUANTUM,
# each holding at least ``min_chunk`` rows when the prompt (or the part not reused) has that
# many; only whole QUANTUM cells of a prompt read that way count as reusable. llama.cpp's CPU
# kernels change with a chunk's row count (4-row GEMM or 1-row GEMV with weight repacking, a
# tiled K-quant matmul from 8 rows, flash attention's tiled kernel from 64): under these rules
# every reusable position takes the same kernels whether its prompt was read whole, resumed
# from a session or split across steps, so a resumed conversation gives exactly the output of
# a fresh one. Decoded tokens (1-row steps) are never reused for the same reason: the next turn
# re-reads the previous reply.
QUANTUM = 16


def chunk_size(pending: int, n_ubatch: int, min_chunk: int) -> int:
    """How many of ``pending`` prompt tokens the next chunk reads (see QUANTUM): all of them
    if they fit one ubatch, else whole cells, leaving at least ``min_chunk`` for later."""
    if pending <= n_ubatch:
        return pending
    size = max(QUANTUM, n_ubatch - n_ubatch % QUANTUM)  # an n_ubatch under QUANTUM: one cell
    while size > min_chunk and pending - size < min_chunk:
        size -= QUANTUM
    return size


def plan_packed(pending: list[int], cells_budget: int, tails_budget: int,
                ) -> tuple[list[int], list[int]]:
    """How many prompt tokens each of several prefilling jobs reads this step, in two calls:
    whole cells (``cells``: multiples of QUANTUM, at least one cell, ``cells_budget`` in all,
    shortest prompts first), then the rest of every prompt left with under a cell
    (``tails``, ``tails_budget`` in all). Measured in-process on Gemma 3 (CPU): prompts read
    together in whole cells give KV bit-identical to reading each alone, and a tail read
    beside others does not (it is never reused: only whole cells are)."""
    cells = [0] * len(pending)
    budget = cells_budget - cells_budget % QUANTUM
    for i in sorted(range(len(pending)), key=lambda i: pending[i]):
        take = min(pending[i] - pending[i] % QUANTUM, budget)
        if take >= QUANTUM:
            cells[i] = take
            budget -= take
    tails = [0] * len(pending)
    for i, n in enumerate(pending):
        rest = n - cells[i]
        if 0 < rest < QUANTUM and rest <= tails_budget:
            tails[i] = rest
            tails_budget -= rest
    return cells, tails


def reusable(tokens: Sequence[int], exact: int, prompt: Sequence[int], min_chunk: int) -> int:
    """How many leading tokens of ``prompt`` a sequence holding ``tokens`` (the first ``exact``
    of them exactly reproducible) can give: whole cells of the exact common prefix, leaving
    the rest at least one chunk of ``min_chunk`` rows."""
    n = min(common_prefix(tokens, prompt), len(prompt) - 1, exact)
    n -= n % QUANTUM
    while n > 0 and len(prompt) - n < min_chunk:
        n -= QUANTUM
    return n
