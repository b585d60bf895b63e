"""Which sequence slot the scheduler gives a new request, and how it chunks a prompt (pure
logic, no model)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from hugind.engine.chunking import QUANTUM, chunk_size, plan_packed
from hugind.engine.counters import Counters
from hugind.engine.jobs import Job
from hugind.engine.slots import SlotTable
from hugind.engine.types import GenerationRequest
from tests.fake_llama import FakeContext


def _worker(n: int) -> SlotTable:
    return SlotTable(FakeContext(n_seq=n), None, Counters(), min_chunk=QUANTUM)


def _job(prompt: list[int], *, tenant: str = "t", session: str | None = None) -> Job:
    loop = asyncio.new_event_loop()
    try:
        return Job(GenerationRequest(model="m", prompt_tokens=prompt, max_tokens=4,
                                     tenant=tenant, session=session), loop, asyncio.Queue())
    finally:
        loop.close()


def _busy(w: SlotTable, *seqs: int) -> None:
    for q in seqs:
        w.slots[q].job = _job([1, 2, 3])


def test_empty_slot_next_to_the_busy_ones() -> None:
    w = _worker(4)
    _busy(w, 0, 1)
    assert w.pick(_job([5, 6])) is w.slots[2]
    w = _worker(4)
    _busy(w, 2, 3)
    assert w.pick(_job([5, 6])) is w.slots[1]


def test_eviction_keeps_busy_sequences_contiguous() -> None:
    w = _worker(4)
    for s, used in zip(w.slots, (3.0, 4.0, 5.0, 1.0), strict=True):
        s.tokens, s.tenant, s.last_used = [9] * 20, "other", used
    _busy(w, 1)
    # slot 3 is the least recently used, but evicting 0 or 2 keeps one run of busy ids
    assert w.pick(_job([5, 6])) in (w.slots[0], w.slots[2])


def test_named_sessions_are_evicted_last() -> None:
    w = _worker(3)
    w.slots[0].tokens, w.slots[0].tenant, w.slots[0].session = [9] * 20, "t", "alice"
    w.slots[2].tokens, w.slots[2].tenant = [9] * 20, "t"
    _busy(w, 1)
    assert w.pick(_job([5, 6])) is w.slots[2]


def test_prefix_reuse_needs_a_whole_quantum() -> None:
    prompt = list(range(100, 100 + 3 * QUANTUM))
    w = _worker(4)
    _busy(w, 0)
    far = w.slots[3]
    far.tokens, far.exact, far.tenant = [*prompt[:QUANTUM], 1], QUANTUM, "t"
    assert w.pick(_job(prompt)) is far  # 16 reusable tokens beat adjacency
    far.tokens, far.exact = [*prompt[:QUANTUM - 1], 1], QUANTUM - 1
    assert w.pick(_job(prompt)) is w.slots[1]  # 15 reuse nothing
    far.tokens, far.exact = [*prompt[:QUANTUM], 1], QUANTUM
    assert w.pick(_job(prompt, tenant="u")) is w.slots[1]  # another caller's


def test_chunk_sizes() -> None:
    assert chunk_size(100, 512, QUANTUM) == 100  # fits one ubatch: read whole
    assert chunk_size(520, 512, QUANTUM) == 496  # leaves 24, not 8
    assert chunk_size(600, 512, 64) == 512  # leaves 88
    assert chunk_size(520, 512, 64) == 448  # leaves 72, not 8
    assert chunk_size(100, 8, QUANTUM) == QUANTUM  # a tiny n_ubatch still moves a whole cell


@given(st.lists(st.integers(1, 3000), min_size=2, max_size=16), st.sampled_from([16, 64, 512]))
def test_packed_reads(pending: list[int], n_ubatch: int) -> None:
    """Whole cells within the ubatch, then the sub-cell rest of each prompt: every piece is
    either whole cells or a prompt's last few tokens, and every prompt makes progress or
    waits for a cell budget the shorter ones used up."""
    cells, tails = plan_packed(pending, n_ubatch, 512)
    assert sum(cells) <= n_ubatch
    for p, c, t in zip(pending, cells, tails, strict=True):
        assert c % QUANTUM == 0 and 0 <= c <= p
        rest = p - c - t
        assert t == 0 or (0 < t < QUANTUM and rest == 0)  # a tail ends its prompt
        assert rest == 0 or rest >= QUANTUM  # nothing under a cell left for later
    left = n_ubatch - sum(cells)
    for p, c in zip(pending, cells, strict=True):
        if c == 0 and p >= QUANTUM:  # a prompt read nothing only when the budget ran out
            assert left < QUANTUM
    assert sum(tails) <= 512 and (sum(cells) + sum(tails)) > 0


def test_packed_reads_short_prompts_first() -> None:
    assert plan_packed([2000, 20, 5], 512, 512) == ([496, 16, 0], [0, 4, 5])
    assert plan_packed([20, 21, 19, 22], 512, 512) == ([16, 16, 16, 16], [4, 5, 3, 6])
    assert plan_packed([10, 12], 512, 8) == ([0, 0], [0, 0])  # tails over the batch wait
