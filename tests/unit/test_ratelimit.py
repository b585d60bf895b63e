"""The rate limiter on a fake clock: request and token windows, waiting, concurrency caps."""

from __future__ import annotations

import asyncio
import time

import limits.aio.storage.memory as limits_memory
import pytest

import hugind.api.ratelimit as ratelimit
from hugind.api.ratelimit import RateLimiter, reset_text
from hugind.config import RateLimitConfig
from hugind.errors import RequestRateLimitError, TokenRateLimitError
from hugind.metrics import RATE_LIMITED


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(limits_memory, "time", fake)
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def _count(kind: str) -> float:
    return RATE_LIMITED.labels(limit=kind)._value.get()


@pytest.mark.parametrize(("seconds", "text"), [
    (0.02, "20ms"), (0, "0ms"), (1, "1s"), (2.45, "2.5s"), (59.9, "59.9s"), (360, "6m0s"),
    (61.4, "1m1s")])
def test_reset_text_is_openais_form(seconds: float, text: str) -> None:
    assert reset_text(seconds) == text


def test_requests_over_the_window_are_refused_until_it_resets(clock: FakeTime) -> None:
    async def run() -> None:
        limiter = RateLimiter(sleep=clock.sleep)
        rules = RateLimitConfig(requests_per_minute=2)
        before = _count("requests")
        for _ in range(2):
            await limiter.admit("t", rules, clock.now)
        with pytest.raises(RequestRateLimitError) as caught:
            await limiter.admit("t", rules, clock.now)
        assert caught.value.headers["Retry-After"] == "60"
        assert caught.value.to_dict()["error"]["type"] == "requests"
        assert caught.value.to_dict()["error"]["code"] == "rate_limit_exceeded"
        assert _count("requests") == before + 1
        await limiter.admit("other", rules, clock.now)  # tenants do not share windows
        windows = await limiter.windows("t", rules)
        assert windows["requests"].remaining == 0 and windows["requests"].limit == 2
        clock.now += 30
        assert round((await limiter.windows("t", rules))["requests"].reset_s) == 30
        clock.now += 30.5
        await limiter.admit("t", rules, clock.now)  # a new window
        assert (await limiter.windows("t", rules))["requests"].remaining == 1

    asyncio.run(run())


def test_a_refused_request_does_not_count(clock: FakeTime) -> None:
    async def run() -> None:
        limiter = RateLimiter(sleep=clock.sleep)
        rules = RateLimitConfig(requests_per_minute=1)
        await limiter.admit("t", rules, clock.now)
        for _ in range(3):
            with pytest.raises(RequestRateLimitError):
                await limiter.admit("t", rules, clock.now)
        clock.now += 61
        assert (await limiter.windows("t", rules))["requests"].remaining == 1

    asyncio.run(run())


def test_a_request_waits_for_the_window_within_max_wait(clock: FakeTime) -> None:
    async def run() -> None:
        limiter = RateLimiter(sleep=clock.sleep)
        rules = RateLimitConfig(requests_per_minute=1, max_wait_s=90)
        await limiter.admit("t", rules, clock.now + 90)
        start = clock.now
        await limiter.admit("t", rules, clock.now + 90)
        assert 59 <= clock.now - start <= 61 and len(clock.slept) == 1
        with pytest.raises(RequestRateLimitError):  # 60 s more would pass a 10 s deadline
            await limiter.admit("t", rules, clock.now + 10)
        assert len(clock.slept) == 1

    asyncio.run(run())


def test_tokens_count_after_the_answer_and_refuse_once_spent(clock: FakeTime) -> None:
    async def run() -> None:
        limiter = RateLimiter(sleep=clock.sleep)
        rules = RateLimitConfig(tokens_per_minute=100)
        await limiter.admit("t", rules, clock.now)
        await limiter.record_tokens("t", rules, 60)
        await limiter.admit("t", rules, clock.now)  # 40 left: admitted
        await limiter.record_tokens("t", rules, 70)  # overshoots: counted all the same
        assert (await limiter.windows("t", rules))["tokens"].remaining == 0
        with pytest.raises(TokenRateLimitError) as caught:
            await limiter.admit("t", rules, clock.now)
        assert caught.value.to_dict()["error"]["type"] == "tokens"
        clock.now += 61
        await limiter.admit("t", rules, clock.now)

    asyncio.run(run())


def test_concurrency_caps_sequences_and_wakes_waiters() -> None:
    async def run() -> None:
        limiter = RateLimiter()
        rules = RateLimitConfig(max_concurrent=2)
        await limiter.acquire("t", rules, 2, time.time())
        with pytest.raises(RequestRateLimitError) as caught:
            await limiter.acquire("t", rules, 1, 0)  # deadline passed: no wait
        assert caught.value.headers["Retry-After"] == "1"
        with pytest.raises(RequestRateLimitError) as too_many:
            await limiter.acquire("t", rules, 3, 0)
        assert too_many.value.param == "n"
        waiter = asyncio.create_task(limiter.acquire("t", rules, 1, time.time() + 5))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        limiter.release("t", 1)
        await asyncio.wait_for(waiter, 1)
        assert limiter.active("t") == 2
        limiter.release("t", 2)
        assert limiter.active("t") == 0

    asyncio.run(run())
