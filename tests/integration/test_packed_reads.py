"""The rule behind reading several prompts in one step, checked on llama.cpp directly: whole
16-token cells of several sequences read in one ``llama_decode`` leave KV bit-identical to
each sequence read alone (the engine reuses only whole cells, so resumes stay exact)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hugind.engine.chunking import QUANTUM
from hugind.llama import GenerationContext, ModelParams

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def ctx(gemma_path: Path) -> Iterator[GenerationContext]:
    c = GenerationContext(ModelParams(path=str(gemma_path), n_seq=4, n_ctx=1024, device="cpu"))
    yield c
    c.close()


def _logits_after(ctx: GenerationContext, calls: list[list[tuple[int, list[int]]]],
                  probe: list[list[int]]) -> list[np.ndarray]:
    """Read ``calls`` (each one llama_decode of (seq, tokens) pieces), then each sequence's
    ``probe`` alone: the probe's last logits show whether the KV before it differs."""
    for s in range(4):
        ctx.seq_clear(s)
    pos = [0] * 4
    for call in calls:
        tokens, positions, seqs = [], [], []
        for s, toks in call:
            tokens += toks
            positions += range(pos[s], pos[s] + len(toks))
            seqs += [s] * len(toks)
            pos[s] += len(toks)
        assert ctx.decode(tokens, positions, seqs, [False] * (len(tokens) - 1) + [True]) == 0
    out = []
    for s in range(4):
        p = probe[s]
        assert ctx.decode(p, list(range(pos[s], pos[s] + len(p))), [s] * len(p),
                          [False] * (len(p) - 1) + [True]) == 0
        out.append(ctx.logits(len(p) - 1).copy())
    return out


@pytest.mark.parametrize("cells", [(2, 1, 3, 1), (1, 1, 1, 1), (4, 2, 1, 8)])
def test_cells_read_together_equal_cells_read_alone(ctx: GenerationContext,
                                                    cells: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(cells))
    prompts = [[int(t) for t in rng.integers(1000, 20000, n * QUANTUM)] for n in cells]
    probe = [[int(t) for t in rng.integers(1000, 20000, QUANTUM)] for _ in range(4)]
    alone = _logits_after(ctx, [[(s, prompts[s])] for s in range(4)], probe)
    together = _logits_after(ctx, [[(s, prompts[s]) for s in range(4)]], probe)
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a, b)
