"""softmax_sample: the numpy temperature draw that stands in for llama.cpp's temp + dist."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hugind.llama.sampler import seed32, softmax_sample


def reference_cdf(logits: np.ndarray, temperature: float) -> np.ndarray:
    x = logits.astype(np.float64) / temperature
    p = np.exp(x - x.max())
    return np.cumsum(p) / p.sum()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5000),
    temperature=st.floats(0.2, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_draw_follows_the_softmax_cdf(n: int, temperature: float, seed: int) -> None:
    """A uniform in the middle of token i's slice of the CDF draws token i, for every token
    whose slice is wide enough to tell apart from float rounding, across block edges."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(n) * 4).astype(np.float32)
    cdf = reference_cdf(logits, temperature)
    lo = np.concatenate(([0.0], cdf[:-1]))
    wide = np.flatnonzero(cdf - lo > 1e-5)
    work = np.empty(n, dtype=np.float32)
    for i in rng.choice(wide, size=min(len(wide), 40), replace=False):
        u = (lo[i] + cdf[i]) / 2
        assert softmax_sample(logits, temperature, u, work) == i


def test_zero_probability_tokens_are_never_drawn() -> None:
    logits = np.full(3000, -math.inf, dtype=np.float32)
    logits[[1500, 2999]] = [1.0, 1.0]  # two live tokens, in the second and third blocks
    work = np.empty_like(logits)
    draws = {softmax_sample(logits, 1.0, u, work) for u in np.linspace(0.0, 0.999999, 101)}
    assert draws == {1500, 2999}


def test_draw_frequencies_match_probabilities() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    work = np.empty_like(logits)
    rng = np.random.default_rng(1)
    n = 20000
    counts = np.bincount([softmax_sample(logits, 1.0, rng.random(), work) for _ in range(n)],
                         minlength=4)
    expected = np.array([0.5, 0.3, 0.15, 0.05]) * n
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))  # within 4 sigma


def test_temperature_sharpens_and_flattens() -> None:
    logits = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    work = np.empty_like(logits)
    u = 0.8  # beyond token 0's share at T=1 (0.665), within it at T=0.5 (0.867)
    assert softmax_sample(logits, 1.0, u, work) == 1
    assert softmax_sample(logits, 0.5, u, work) == 0


@given(st.integers(min_value=-2**63, max_value=2**63 - 1))
def test_seed32_is_never_llama_random_seed(seed: int) -> None:
    s = seed32(seed)
    assert 0 <= s < 0xFFFFFFFF  # 0xFFFFFFFF asks llama.cpp for a random seed


def test_seed32_keeps_high_bits() -> None:
    assert seed32(1) != seed32(1 + 2**32)
    assert seed32(-1) != seed32(2**63 - 1)
