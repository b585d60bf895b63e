"""Admission on a fake context: a burst reaching an idle model starts on one step, and jobs
waiting for slots start as soon as the streams before them end."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from hugind.engine.types import FinishReason
from tests.fake_llama import FakeContext
from tests.unit.test_worker_faults import Harness, events, text


@dataclass
class RecordingContext(FakeContext):
    calls: list[tuple[int, ...]] = field(default_factory=list)  # each decode's sequences

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int],
               logits: list[bool]) -> int:
        self.calls.append(tuple(sorted(set(seqs))))
        return super().decode(tokens, pos, seqs, logits)


def test_a_burst_reaching_an_idle_model_is_read_in_one_step() -> None:
    async def run() -> None:
        ctx = RecordingContext()
        h = Harness(ctx, burst_wait_s=0.1)
        try:
            jobs = [h.job([10 * i + 1, 10 * i + 2], max_tokens=3) for i in range(1, 4)]
            for job in jobs:  # as the event loop hands them over: one by one
                h.worker.submit(job)
                await asyncio.sleep(0.005)
            outs = await asyncio.gather(*(events(j) for j in jobs))
            # One read for all three prompts, then their tokens together: no stream was
            # started ahead of the others.
            assert ctx.calls[0] == (0, 1, 2)
            assert set(ctx.calls[1:]) == {(0, 1, 2)}
            for i, evs in enumerate(outs, start=1):
                assert text(evs) == f"<{10 * i + 3}><{10 * i + 4}><{10 * i + 5}>"
                assert evs[-1].finish_reason is FinishReason.LENGTH
        finally:
            h.close()
    asyncio.run(run())


def test_the_burst_window_ends_when_every_slot_has_a_job() -> None:
    async def run() -> None:
        ctx = RecordingContext()
        h = Harness(ctx, burst_wait_s=30.0)  # never reached: four jobs fill the four slots
        try:
            jobs = [h.job([i], max_tokens=2) for i in range(1, 5)]
            for job in jobs:
                h.worker.submit(job)
            outs = await asyncio.gather(*(events(j, timeout=5) for j in jobs))
            assert all(evs[-1].finish_reason is FinishReason.LENGTH for evs in outs)
            assert ctx.calls[0] == (0, 1, 2, 3)
        finally:
            h.close()
    asyncio.run(run())


def test_jobs_waiting_for_slots_start_when_the_streams_before_them_end() -> None:
    async def run() -> None:
        ctx = RecordingContext()
        h = Harness(ctx)
        try:
            jobs = [h.job([i], max_tokens=3) for i in range(1, 9)]  # 4 slots: 4 run, 4 wait
            h.worker.submit_many(jobs)
            t0 = time.monotonic()
            outs = await asyncio.gather(*(events(j) for j in jobs))
            elapsed = time.monotonic() - t0
            assert all(evs[-1].finish_reason is FinishReason.LENGTH for evs in outs)
            # The first four end on one step; the worker used to sleep on its empty inbox
            # (a 1 s timeout) before starting the next four.
            assert elapsed < 0.5, f"the waiting jobs started {elapsed:.2f} s later"
            assert [len(c) for c in ctx.calls] == [4, 4, 4, 4, 4, 4]
        finally:
            h.close()
    asyncio.run(run())
