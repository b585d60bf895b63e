"""The worker and scheduler on a fake context: faults stay with their job, a dying loop fails
everything at once and is rebuilt, cancelled and expired jobs leave the queue, a slow grammar
token holds nobody else, and finished turns are written behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hugind.engine.jobs import Job
from hugind.engine.types import FinishReason, GenerationRequest, TokenEvent
from hugind.engine.worker import ModelWorker
from hugind.errors import InternalError, OverloadedError
from hugind.sessions import DiskTier, SnapshotStore, SnapshotWriter
from tests.fake_llama import FakeContext, FakeSampler


class Harness:
    def __init__(self, ctx: FakeContext, *, store: Callable[[Any], Any] | None = None,
                 max_queue: int = 16, queue_timeout_s: float = 0.0,
                 burst_wait_s: float = 0.0) -> None:
        self.ctx = ctx
        self.states: list[str] = []
        self.worker = ModelWorker(
            "m", lambda: ctx, max_queue=max_queue, store_factory=store or (lambda _c: None),
            on_state=lambda s, _e: self.states.append(s), queue_timeout_s=queue_timeout_s,
            burst_wait_s=burst_wait_s, backoff_s=(0.05,))
        self.worker.start()
        assert self.worker.ready.wait(5)

    def job(self, prompt: list[int], *, max_tokens: int = 4, sampler: FakeSampler | None = None,
            session: str | None = None) -> Job:
        req = GenerationRequest(model="m", prompt_tokens=prompt, max_tokens=max_tokens,
                                tenant="t", session=session)
        return Job(req, asyncio.get_running_loop(), asyncio.Queue(),
                   sampler=sampler or FakeSampler())

    def close(self) -> None:
        self.worker.stop(5)


async def events(job: Job, timeout: float = 10.0) -> list[TokenEvent]:
    out: list[TokenEvent] = []
    while True:
        ev = await asyncio.wait_for(job.events.get(), timeout)
        out.append(ev)
        if ev.finish_reason is not None:
            return out


def text(evs: list[TokenEvent]) -> str:
    return "".join(e.text for e in evs)


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_failing_sampler_fails_its_job_alone() -> None:
    async def run() -> None:
        h = Harness(FakeContext())
        try:
            bad = h.job([1, 2, 3], max_tokens=8, sampler=FakeSampler(fail_after=2))
            good = h.job([10, 11], max_tokens=8)
            h.worker.submit_many([bad, good])
            bad_evs, good_evs = await asyncio.gather(events(bad), events(good))
            assert bad_evs[-1].finish_reason is FinishReason.ERROR
            assert isinstance(bad_evs[-1].error, InternalError)
            assert good_evs[-1].finish_reason is FinishReason.LENGTH
            assert text(good_evs) == "".join(f"<{t}>" for t in range(12, 20))
            assert h.worker.counters.failed_jobs == 1
            again = h.job([20], max_tokens=2)  # the model keeps serving
            h.worker.submit(again)
            assert text(await events(again)) == "<21><22>"
        finally:
            h.close()
    asyncio.run(run())


def test_a_failed_decode_fails_only_the_jobs_in_that_batch() -> None:
    async def run() -> None:
        ctx = FakeContext()
        h = Harness(ctx)
        try:
            a = h.job([1, 2], max_tokens=30)
            h.worker.submit(a)
            first = await asyncio.wait_for(a.events.get(), 5)  # a is decoding on seq 0
            assert first.text == "<3>"
            ctx.fail_seq, ctx.fail_decode = 1, -3  # the next batch holding seq 1 fails
            b = h.job([40, 41, 42], max_tokens=4)
            h.worker.submit(b)
            b_evs = await events(b)
            assert b_evs[-1].finish_reason is FinishReason.ERROR
            rest = await events(a)
            assert rest[-1].finish_reason is FinishReason.LENGTH
            assert a.n_generated == 30
            assert ctx.kv[1] == []  # b's sequence was cleared
        finally:
            h.close()
    asyncio.run(run())


def test_a_dying_loop_fails_everything_and_is_rebuilt() -> None:
    async def run() -> None:
        ctx = FakeContext(decode_delay_s=0.01)
        h = Harness(ctx, max_queue=16)
        try:
            running = [h.job([i], max_tokens=200) for i in range(1, 7)]  # 4 run, 2 wait
            h.worker.submit_many(running)
            await asyncio.wait_for(running[0].events.get(), 5)
            ctx.raise_on_decode = RuntimeError("a fault no job owns")
            for job in running:
                evs = await events(job)
                assert evs[-1].finish_reason is FinishReason.ERROR
                assert isinstance(evs[-1].error, OverloadedError)
                assert evs[-1].error.status == 503
            wait_until(lambda: h.states[-1] == "ready" and h.worker.ready.is_set())
            assert h.states[-2:] == ["restarting", "ready"]
            assert h.worker.counters.restarts == 1
            assert h.worker.stats()["queue_depth"] == 0
            after = h.job([50], max_tokens=3)
            h.worker.submit(after)
            assert text(await events(after)) == "<51><52><53>"
        finally:
            h.close()
    asyncio.run(run())


def test_cancelled_waiting_jobs_leave_the_queue_at_once() -> None:
    async def run() -> None:
        ctx = FakeContext(n_seq=1, decode_delay_s=0.01)
        h = Harness(ctx, max_queue=3)
        try:
            running = h.job([1], max_tokens=100)
            h.worker.submit(running)
            await asyncio.wait_for(running.events.get(), 5)
            waiting = [h.job([i], max_tokens=2) for i in (10, 20, 30)]
            h.worker.submit_many(waiting)
            assert h.worker.stats()["queue_depth"] == 3
            for job in waiting[:2]:
                h.worker.cancel(job)
            assert h.worker.stats()["queue_depth"] == 1  # before the worker even looked
            more = h.job([40], max_tokens=2)
            h.worker.submit(more)  # room again: no QueueFullError
            h.worker.cancel(running)
            assert text(await events(waiting[2])) == "<31><32>"
            assert text(await events(more)) == "<41><42>"
            assert waiting[0].events.empty() and waiting[1].events.empty()
            wait_until(lambda: h.worker.stats()["active_sequences"] == 0)
            assert h.worker.stats()["queue_depth"] == 0
        finally:
            h.close()
    asyncio.run(run())


def test_a_job_waiting_past_the_queue_timeout_gets_503() -> None:
    async def run() -> None:
        ctx = FakeContext(n_seq=1, decode_delay_s=0.01)
        h = Harness(ctx, queue_timeout_s=0.2)
        try:
            long = h.job([1], max_tokens=100)
            late = h.job([5], max_tokens=2)
            h.worker.submit_many([long, late])
            evs = await events(late)
            assert isinstance(evs[-1].error, OverloadedError)
            assert evs[-1].error.code == "queue_timeout"
            assert h.worker.counters.queue_timeouts == 1
            h.worker.cancel(long)
        finally:
            h.close()
    asyncio.run(run())


def test_a_slow_grammar_token_holds_no_other_stream() -> None:
    """Each token of the grammar job takes 0.3 s to draw; 40 tokens of its neighbour take
    ~0.4 s of steps and must not wait for it."""
    async def run() -> None:
        ctx = FakeContext(decode_delay_s=0.01)
        h = Harness(ctx)
        try:
            slow = h.job([1], max_tokens=3, sampler=FakeSampler(deferred=True, delay_s=0.3))
            fast = h.job([10], max_tokens=40)
            h.worker.submit_many([slow, fast])
            start = time.monotonic()
            fast_evs = await events(fast)
            fast_s = time.monotonic() - start
            slow_evs = await events(slow)
            assert text(slow_evs) == "<2><3><4>"  # the drawn tokens, in order
            assert text(fast_evs) == "".join(f"<{t}>" for t in range(11, 51))
            assert fast_s < 0.6, f"the fast stream took {fast_s:.2f} s"
        finally:
            h.close()
    asyncio.run(run())


def test_each_grammar_mask_is_prepared_before_the_decode_that_needs_it() -> None:
    """The first mask while the prompt is read, then each next one as soon as a token is
    drawn (before the worker sees it, so during the next decode)."""
    async def run() -> None:
        h = Harness(FakeContext(decode_delay_s=0.01))
        try:
            for ready in (False, True):  # drawn beside the step, or inline once prepared
                sampler = FakeSampler(deferred=True, ready=ready)
                job = h.job([1, 2, 3], max_tokens=3, sampler=sampler)
                h.worker.submit(job)
                assert text(await events(job)) == "<4><5><6>"
                assert sampler.calls == ["prepare", "draw"] * 3 + ["prepare"]
        finally:
            h.close()
    asyncio.run(run())


def test_cancelling_a_job_while_its_token_is_drawn_frees_the_sampler_after() -> None:
    async def run() -> None:
        h = Harness(FakeContext())
        try:
            sampler = FakeSampler(deferred=True, delay_s=0.3)
            job = h.job([1], max_tokens=5, sampler=sampler)
            h.worker.submit(job)
            await asyncio.sleep(0.1)  # drawing its first token
            h.worker.cancel(job)
            wait_until(lambda: sampler.closed, 3)
            assert h.worker.counters.cancelled == 1
            wait_until(lambda: h.worker.stats()["active_sequences"] == 0)
        finally:
            h.close()
    asyncio.run(run())


def test_finished_turns_are_written_behind(tmp_path: Path) -> None:
    disks: list[DiskTier] = []

    def store(_ctx: Any) -> SnapshotStore:
        disk = DiskTier(tmp_path, {"m": 1}, budget_bytes=1 << 20, ttl_s=3600)
        disks.append(disk)
        return SnapshotStore(1 << 20, disk, SnapshotWriter(disk, delay_s=0.05,
                                                           max_pending_bytes=1 << 20))

    async def run() -> None:
        h = Harness(FakeContext(), store=store)
        try:
            prompt = list(range(1, 40))
            job = h.job(prompt, max_tokens=3, session="alice")
            h.worker.submit(job)
            await events(job)
            wait_until(lambda: disks[0].get_entry("t", "alice") is not None, 2)
            stored = disks[0].load("t", "alice")
            tokens, data = (stored.tokens, stored.data) if stored else ([], b"")
            assert tokens == prompt[:32]  # whole cells of the prompt: what resumes exactly
            assert json.loads(data) == prompt[:32]  # the KV trimmed to them
        finally:
            h.close()
    asyncio.run(run())


@pytest.mark.parametrize("rc", [1, -3])
def test_decode_status_names_the_cause(rc: int) -> None:
    async def run() -> None:
        ctx = FakeContext()
        h = Harness(ctx)
        try:
            ctx.fail_decode = rc
            job = h.job([1, 2], max_tokens=3)
            h.worker.submit(job)
            evs = await events(job)
            assert isinstance(evs[-1].error, InternalError)
            assert ("KV cache is full" in evs[-1].error.message) == (rc == 1)
        finally:
            h.close()
    asyncio.run(run())


def test_a_steps_events_reach_the_loop_in_one_call_in_order() -> None:
    """Four streams decoding together: each step hands its events over at once (one loop
    callback a step, not one a token), and every stream still sees its own in order."""
    async def run() -> None:
        h = Harness(FakeContext(decode_delay_s=0.005))
        calls = 0
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kw)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        try:
            jobs = [h.job([10 * (i + 1)], max_tokens=20) for i in range(4)]
            h.worker.submit_many(jobs)
            results = await asyncio.gather(*(events(j) for j in jobs))
            for i, evs in enumerate(results):
                start = 10 * (i + 1) + 1
                assert text(evs) == "".join(f"<{t}>" for t in range(start, start + 20))
            assert calls < 4 * 20 / 2, calls  # ~one a step, well under one a token
        finally:
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            h.close()
    asyncio.run(run())
