"""A cancel is never lost to a time limit: a client that leaves the moment a token arrives
still frees its sequence (Python 3.11's ``asyncio.wait_for`` dropped that cancel and the
request ran to its last token)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hugind.aio import _within_by_wait, within
from hugind.engine.jobs import Job
from hugind.engine.local import LocalEngine
from hugind.engine.types import GenerationRequest, TokenEvent

WAYS = [within, _within_by_wait]


@pytest.mark.parametrize("way", WAYS)
def test_within_returns_the_result_and_times_out(way: Any) -> None:
    async def main() -> None:
        assert await way(asyncio.sleep(0, "x"), 1.0) == "x"
        with pytest.raises(asyncio.TimeoutError):
            await way(asyncio.sleep(5), 0.01)

    asyncio.run(main())


@pytest.mark.parametrize("way", WAYS)
def test_a_cancel_as_the_awaited_item_arrives_is_kept(way: Any) -> None:
    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        task = asyncio.create_task(way(queue.get(), 5.0))
        await asyncio.sleep(0.01)
        queue.put_nowait(1)
        task.cancel()  # same loop pass as the item
        with pytest.raises(asyncio.CancelledError):
            await task
        if way is within:  # asyncio.timeout: the cancelled wait took nothing
            assert queue.get_nowait() == 1

    asyncio.run(main())


class _Worker:
    name, alive, epoch = "m", True, 0

    def __init__(self) -> None:
        self.cancelled: list[Job] = []

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job)


def test_a_client_leaving_as_its_token_arrives_cancels_the_job() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        job = Job(GenerationRequest(model="m", prompt_tokens=[1], max_tokens=9), loop,
                  asyncio.Queue())
        worker = _Worker()
        seen: list[str] = []

        async def handler() -> None:
            async for ev in LocalEngine._events(None, worker, job):  # type: ignore[arg-type]
                seen.append(ev.text)

        task = asyncio.create_task(handler())
        job.events.put_nowait(TokenEvent("a"))
        await asyncio.sleep(0.01)
        job.events.put_nowait(TokenEvent("b"))
        task.cancel()  # the disconnect lands in the same loop pass as the token
        await asyncio.wait({task}, timeout=2.0)
        assert task.cancelled(), "the handler went on waiting for tokens"
        assert seen == ["a"]
        assert worker.cancelled == [job]

    asyncio.run(main())
