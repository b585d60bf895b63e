"""Logprobs from a logits row: the vectorised passes against a float64 reference."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from hugind import logit_rows
from hugind.engine.logprobs import log_softmax_at, token_logprob, top_tokens


def reference(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    mx = x.max()
    return x - (mx + math.log(np.exp(x - mx).sum()))


@pytest.mark.parametrize("n", [1, 7, 1000, 1024, 5000, 262_144])
def test_logprobs_match_float64(n: int) -> None:
    rng = np.random.default_rng(n)
    logits = (rng.standard_normal(n) * 4).astype(np.float32)
    ref = reference(logits)
    ids = rng.integers(0, n, size=min(n, 50)).tolist()
    got = log_softmax_at(logits, ids)
    assert np.allclose(got, ref[ids], rtol=0, atol=2e-6)


@pytest.mark.parametrize("n", [3, 1000, 5000, 262_144])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_tokens_are_the_highest_in_order(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    logits = (rng.standard_normal(n) * 4).astype(np.float32)
    want = np.argsort(-logits.astype(np.float64), kind="stable")[:k]
    assert top_tokens(logits, k).tolist() == want.tolist()


def test_ties_go_to_the_lower_id_and_a_flat_row_still_has_k() -> None:
    logits = np.zeros(5000, dtype=np.float32)
    logits[[4000, 17, 2500]] = 3.0
    assert top_tokens(logits, 2).tolist() == [17, 2500]
    assert top_tokens(np.zeros(3000, dtype=np.float32), 4).tolist() == [0, 1, 2, 3]
    nan = np.zeros(3000, dtype=np.float32)
    nan[5] = np.nan
    assert len(top_tokens(nan, 4)) == 4  # a NaN logit never leaves the list short


def test_all_top_tokens_fall_in_one_block() -> None:
    """The floor is the k-th largest block maximum, so k winners in one block are all kept."""
    logits = np.full(262_144, -5.0, dtype=np.float32)
    logits[2048:2058] = np.arange(10, 0, -1, dtype=np.float32)
    assert top_tokens(logits, 10).tolist() == list(range(2048, 2058))


def test_token_logprob_carries_text_and_alternatives() -> None:
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(300_000) * 3).astype(np.float32)
    ref = reference(logits)
    best = int(np.argmax(logits))
    lp = token_logprob(logits, 42, 3, lambda t: f"<{t}>".encode())
    assert lp.token == "<42>" and lp.bytes == list(b"<42>")
    assert lp.logprob == pytest.approx(ref[42], abs=2e-6)
    assert lp.top[0].token == f"<{best}>"
    assert len(lp.top) == 3
    assert all(a.logprob >= b.logprob for a, b in zip(lp.top, lp.top[1:], strict=False))
    assert token_logprob(logits, 42, 0, lambda t: b"x").top == []


def test_each_thread_has_its_own_work_buffer() -> None:
    """Softmax draws and logprobs share one buffer per thread, so work on the worker and on a
    pool thread at once never write into each other's."""
    mine = logit_rows.work(4096)
    assert logit_rows.work(100).ctypes.data == mine.ctypes.data  # reused, not reallocated
    theirs: list[int] = []
    t = threading.Thread(target=lambda: theirs.append(logit_rows.work(4096).ctypes.data))
    t.start()
    t.join()
    assert theirs and theirs[0] != mine.ctypes.data
    assert len(logit_rows.work(10_000)) == 10_000  # grown on demand
