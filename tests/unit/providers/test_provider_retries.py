"""Backoff, read-timeout safety and the circuit breaker: ProviderRouter on a mock transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.unit.providers.mock_upstream import (
    KEY_A,
    KEY_B,
    KEY_C,
    Broken,
    FakeClock,
    Upstream,
    err,
    make_router,
    ok,
    provider,
    providers,
    read,
    sse,
)

from hugind.errors import OverloadedError, UpstreamError, UpstreamTimeoutError
from hugind.providers import ProviderRouter
from hugind.providers.breaker import CircuitBreaker

GPT = {"model": "gpt-4o", "messages": []}


async def post(router: ProviderRouter, path: str = "/v1/chat/completions",
               method: str = "POST") -> tuple[int, bytes]:
    body = json.dumps(GPT).encode() if method == "POST" else b""
    response = await router.forward(method, path, "", [], body, "gpt-4o")
    return response.status, await read(response)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_backoff_doubles_is_capped_and_retries_a_lone_key() -> None:
    sleeps: list[float] = []
    upstream = Upstream({KEY_A: [err(500), err(502), err(503), err(500), ok()]})
    config = provider("p", [KEY_A], max_retries=4, backoff_s=1, backoff_max_s=2.5,
                      breaker_failures=10)
    router = make_router(providers(config), upstream, sleeps=sleeps)
    status, _ = run(post(router))
    assert status == 200
    assert upstream.keys_used() == [KEY_A] * 5
    # steps 1, 2, 2.5 (cap), 2.5; jitter 0.5 keeps 0.75 of each
    assert sleeps == pytest.approx([0.75, 1.5, 1.875, 1.875])
    run(router.aclose())


def test_jitter_spreads_the_backoff_between_half_and_all_of_the_step() -> None:
    for jitter, expected in ((0.0, 0.125), (0.999999, 0.25)):
        sleeps: list[float] = []

        async def sleep(seconds: float, into: list[float] = sleeps) -> None:
            into.append(seconds)

        upstream = Upstream({KEY_A: [err(500)], KEY_B: [ok()]})
        router = ProviderRouter(providers(provider("p", [KEY_A, KEY_B])),
                                transport=httpx.MockTransport(upstream), clock=FakeClock(),
                                sleep=sleep, jitter=lambda j=jitter: j)
        assert run(post(router))[0] == 200
        assert sleeps == [pytest.approx(expected, rel=1e-5)]
        run(router.aclose())


def test_a_cooled_key_then_a_5xx_waits_only_after_the_5xx() -> None:
    sleeps: list[float] = []
    upstream = Upstream({KEY_A: [err(429)], KEY_B: [err(500)], KEY_C: [ok()]})
    router = make_router(providers(provider("p", [KEY_A, KEY_B, KEY_C], breaker_failures=5)),
                         upstream, sleeps=sleeps)
    assert run(post(router))[0] == 200
    assert upstream.keys_used() == [KEY_A, KEY_B, KEY_C]
    assert sleeps == [pytest.approx(0.1875)]
    run(router.aclose())


def test_retry_after_as_http_date_sets_the_cooldown() -> None:
    from email.utils import formatdate
    from time import time

    clock = FakeClock()
    date = formatdate(time() + 120, usegmt=True)
    upstream = Upstream({KEY_A: [err(429, **{"retry-after": date})], KEY_B: [ok()]})
    router = make_router(providers(provider("p", [KEY_A, KEY_B])), upstream, clock)
    assert run(post(router))[0] == 200
    cooling = router.key_states()[0]
    assert cooling["state"] == "cooling_down"
    assert 118 <= cooling["cooldown_remaining_s"] <= 120
    run(router.aclose())


def test_a_post_read_timeout_is_not_sent_again_anywhere() -> None:
    upstream = Upstream({KEY_A: [httpx.ReadTimeout("slow")], KEY_B: [ok()], KEY_C: [ok()]})
    router = make_router(providers(provider("first", [KEY_A, KEY_B]),
                                   provider("second", [KEY_C])), upstream)
    with pytest.raises(UpstreamTimeoutError) as info:
        run(post(router))
    assert info.value.status == 504
    assert "timed out (waiting for the answer)" in info.value.message
    assert "retry_reads" in info.value.message
    assert upstream.keys_used() == [KEY_A]
    run(router.aclose())


@pytest.mark.parametrize("lost", [httpx.ReadTimeout("slow"), httpx.ReadError("reset"),
                                  httpx.RemoteProtocolError("closed")])
def test_retry_reads_lets_a_post_be_sent_again(lost: Exception) -> None:
    upstream = Upstream({KEY_A: [lost], KEY_B: [ok()]})
    router = make_router(providers(provider("p", [KEY_A, KEY_B], retry_reads=True)), upstream)
    assert run(post(router))[0] == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    run(router.aclose())


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_idempotent_methods_are_retried_after_a_read_timeout(method: str) -> None:
    upstream = Upstream({KEY_A: [httpx.ReadTimeout("slow")], KEY_B: [ok()]})
    router = make_router(providers(provider("p", [KEY_A, KEY_B], endpoints=["files"])),
                         upstream)
    assert run(post(router, "/v1/files/file-1", method))[0] == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    run(router.aclose())


@pytest.mark.parametrize("unsent", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused"),
                                    httpx.PoolTimeout("busy")])
def test_a_post_that_never_reached_the_upstream_is_retried(unsent: Exception) -> None:
    upstream = Upstream({KEY_A: [unsent], KEY_B: [ok()]})
    router = make_router(providers(provider("p", [KEY_A, KEY_B])), upstream)
    assert run(post(router))[0] == 200
    assert upstream.keys_used() == [KEY_A, KEY_B]
    run(router.aclose())


def tripped_router(clock: FakeClock, upstream: Upstream, **extra: Any) -> ProviderRouter:
    """Two keys, breaker after 3 failures in a row, resting 10 s."""
    return make_router(providers(provider("p", [KEY_A, KEY_B], **extra)), upstream, clock)


def test_breaker_trips_answers_503_fast_then_half_open_trial_closes_it() -> None:
    clock = FakeClock()
    upstream = Upstream({KEY_A: [err(500)], KEY_B: [err(503)]})
    router = tripped_router(clock, upstream)

    async def scenario() -> None:
        with pytest.raises(UpstreamError) as first:
            await post(router)
        assert first.value.headers["Retry-After"] == "10"
        assert upstream.keys_used() == [KEY_A, KEY_B, KEY_A]
        assert router.describe()[0]["breaker"]["state"] == "open"

        clock.now += 4
        with pytest.raises(OverloadedError) as fast:
            await post(router)
        assert len(upstream.seen) == 3  # nothing sent while tripped
        assert fast.value.status == 503
        assert fast.value.headers["Retry-After"] == "6"
        assert fast.value.to_dict()["error"]["code"] == "provider_unavailable"
        assert "tripped" in fast.value.message

        clock.now += 6  # half-open: one trial with one attempt
        upstream.script[KEY_A] = [ok({"back": True})]
        status, body = await post(router)
        assert (status, json.loads(body)) == (200, {"back": True})
        assert router.describe()[0]["breaker"]["state"] == "closed"
        await router.aclose()

    run(scenario())
    events = [e["event"] for e in router.activity()]
    assert events == ["attempt_failed", "attempt_failed", "attempt_failed", "provider_tripped",
                      "provider_skipped", "provider_restored"]


def test_a_failed_trial_reopens_the_breaker_after_one_attempt() -> None:
    clock = FakeClock()
    upstream = Upstream({KEY_A: [err(500)], KEY_B: [err(500)]})
    router = tripped_router(clock, upstream)

    async def scenario() -> None:
        with pytest.raises(UpstreamError):
            await post(router)
        clock.now += 10
        with pytest.raises(UpstreamError):
            await post(router)
        assert len(upstream.seen) == 4  # the trial made a single attempt
        with pytest.raises(OverloadedError):
            await post(router)
        assert len(upstream.seen) == 4
        await router.aclose()

    run(scenario())
    assert [e["event"] for e in router.activity()].count("provider_tripped") == 2


def test_any_answer_resets_the_count_of_failures_in_a_row() -> None:
    # Without the reset, the second 500 would be the second failure in a row and trip it.
    upstream = Upstream({KEY_A: [err(500), err(400), err(500), err(400)]})
    router = make_router(providers(provider("p", [KEY_A], max_retries=0, breaker_failures=2)),
                         upstream)

    async def scenario() -> list[int]:
        statuses = []
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await post(router)
            statuses.append((await post(router))[0])  # a 400 passed through counts as an answer
        await router.aclose()
        return statuses

    assert run(scenario()) == [400, 400]
    assert router.describe()[0]["breaker"]["state"] == "closed"


def test_a_tripped_provider_is_skipped_for_the_next_one() -> None:
    clock = FakeClock()
    upstream = Upstream({KEY_A: [err(500)], KEY_B: [err(500)], KEY_C: [ok({"from": "c"})]})
    configs = providers(provider("first", [KEY_A, KEY_B], breaker_failures=2, max_retries=1),
                        provider("second", [KEY_C]))
    router = make_router(configs, upstream, clock)

    async def scenario() -> None:
        assert (await post(router))[0] == 200  # A, B fail: first trips; C serves
        upstream.seen.clear()
        _, body = await post(router)
        assert json.loads(body) == {"from": "c"}
        assert upstream.keys_used() == [KEY_C]
        await router.aclose()

    run(scenario())
    skipped = [e for e in router.activity() if e["event"] == "provider_skipped"]
    assert "tripped" in skipped[-1]["description"]


def test_only_one_trial_is_in_flight_and_a_cancelled_trial_frees_the_slot() -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    trial_sent = asyncio.Event()
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        if clock.now < 1010:
            return err(500)
        trial_sent.set()
        await gate.wait()
        return ok()

    router = make_router(providers(provider("p", [KEY_A, KEY_B])), handler, clock)

    async def scenario() -> None:
        with pytest.raises(UpstreamError):
            await post(router)
        clock.now += 10
        trial = asyncio.ensure_future(post(router))
        await trial_sent.wait()
        with pytest.raises(OverloadedError) as info:
            await post(router)  # half-open with a trial in flight: fast 503
        assert info.value.headers["Retry-After"] == "1"
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        gate.set()
        assert (await post(router))[0] == 200  # the slot was freed: a new trial went through
        await router.aclose()

    run(scenario())
    assert len(calls) == 5


def test_breaker_open_s_zero_never_trips() -> None:
    upstream = Upstream({KEY_A: [err(500)]})
    router = make_router(providers(provider("p", [KEY_A], breaker_open_s=0)), upstream)

    async def scenario() -> None:
        for _ in range(4):
            with pytest.raises(UpstreamError):
                await post(router)
        await router.aclose()

    run(scenario())
    assert len(upstream.seen) == 12
    assert router.describe()[0]["breaker"]["trips"] == 0


def test_a_stream_breaking_mid_body_counts_for_the_breaker_but_cools_nothing() -> None:
    upstream = Upstream({KEY_A: [sse(Broken(1)), err(500)]})
    router = make_router(providers(provider("p", [KEY_A], breaker_failures=2, max_retries=0)),
                         upstream)

    async def scenario() -> None:
        response = await router.forward("POST", "/v1/chat/completions", "", [], b"{}", "gpt-4o")
        with pytest.raises(UpstreamError):
            await read(response)
        assert router.describe()[0]["breaker"]["failures_in_a_row"] == 1
        assert router.key_states()[0]["state"] == "ready"
        with pytest.raises(UpstreamError):
            await post(router)  # the second failure in a row trips it
        with pytest.raises(OverloadedError):
            await post(router)
        await router.aclose()

    run(scenario())
    assert [e["event"] for e in router.activity()] == [
        "attempt_failed", "attempt_failed", "provider_tripped", "provider_skipped"]


def test_breaker_unit_states() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, open_s=5, clock=clock)
    assert breaker.admit() == "normal"
    assert breaker.record_failure() is False
    assert breaker.record_failure() is True
    assert (breaker.state, breaker.admit(), breaker.retry_in_s()) == ("open", None, 5)
    clock.now += 5
    assert breaker.admit() == "trial"
    assert breaker.admit() is None
    breaker.end_trial()
    assert breaker.admit() == "trial"
    assert breaker.record_success() is True
    assert (breaker.state, breaker.admit()) == ("closed", "normal")
