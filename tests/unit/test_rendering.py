"""Drafts: a token's text made by the outbox's publisher thread, beside the step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hugind.engine.outbox import Outbox
from hugind.engine.rendering import Draft
from hugind.engine.stops import TextStream
from hugind.engine.types import FinishReason, TokenEvent, Usage


class _Job:
    """What the outbox reads and writes of a job."""

    def __init__(self, loop: asyncio.AbstractEventLoop, text: Any) -> None:
        self.loop = loop
        self.events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self.text = text
        self.cancelled = False


def test_a_character_split_across_tokens_comes_whole() -> None:
    stream = TextStream([])
    euro = "€".encode()
    first = Draft(euro[:1], [1], []).render(stream)
    second = Draft(euro[1:] + b"!", [2], []).render(stream)
    assert (first.text, second.text) == ("", "€!")
    assert second.token_ids == [2] and second.finish_reason is None


def test_the_last_draft_flushes_what_is_held() -> None:
    stream = TextStream([])
    Draft(b"a\xe2\x82", [1], []).render(stream)  # a cut-off character stays held
    usage = Usage(3, 2, 0)
    last = Draft(None, [], [], FinishReason.STOP, usage).render(stream)
    assert last.text == "\ufffd"  # flushed, as an incomplete character is at the end
    assert last.finish_reason is FinishReason.STOP and last.usage is usage and last.stop is None


async def _received(job: _Job, n: int) -> list[TokenEvent]:
    return [await asyncio.wait_for(job.events.get(), 5) for _ in range(n)]


@pytest.mark.anyio
async def test_the_outbox_renders_drafts_in_order_beside_ready_events() -> None:
    loop = asyncio.get_running_loop()
    job = _Job(loop, TextStream([]))
    box = Outbox("test")
    try:
        box.open()
        box.put(job, Draft(b"Hel", [1], []))
        box.put(job, TokenEvent("", prompt_logprobs=[]))  # made ready by the worker
        box.put(job, Draft(b"lo", [2], [], FinishReason.LENGTH, Usage(1, 2, 0)))
        box.flush()
        got = await _received(job, 3)
    finally:
        box.close()
    assert [e.text for e in got] == ["Hel", "", "lo"]
    assert got[1].prompt_logprobs == [] and got[2].finish_reason is FinishReason.LENGTH


class _Broken:
    def push(self, piece: bytes) -> str:
        raise UnicodeError("bad piece")


@pytest.mark.anyio
async def test_a_text_that_fails_fails_its_job_alone(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    bad, good = _Job(loop, _Broken()), _Job(loop, TextStream([]))
    box = Outbox("test")
    try:
        box.open()
        box.put(bad, Draft(b"x", [1], []))
        box.put(good, Draft(b"ok", [1], []))
        box.put(bad, Draft(b"y", [2], []))  # after the failure: dropped
        box.flush()
        (err,) = await _received(bad, 1)
        (fine,) = await _received(good, 1)
        await asyncio.sleep(0.05)
    finally:
        box.close()
    assert err.finish_reason is FinishReason.ERROR and err.error is not None
    assert "bad piece" not in str(err.error)  # internals stay in the log
    assert bad.cancelled and bad.events.empty()  # the worker ends it at its next step
    assert fine.text == "ok" and not good.cancelled
    assert "could not detokenize" in caplog.text
