"""A scripted upstream on httpx.MockTransport, and a ProviderRouter in front of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from hugind.config import ProviderConfig, parse_config
from hugind.providers import ProviderRouter, UpstreamResponse

KEY_A = "sk-test-aaaaaaaaaaaaaaaa-A001"
KEY_B = "sk-test-bbbbbbbbbbbbbbbb-B002"
KEY_C = "sk-test-cccccccccccccccc-C003"
ALL_KEYS = (KEY_A, KEY_B, KEY_C)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def providers(*specs: dict[str, Any]) -> list[ProviderConfig]:
    return parse_config({"providers": list(specs)}).providers


def provider(name: str, keys: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": f"http://{name}.test/v1", "api_keys": keys,
            "models": ["gpt-*"], **extra}


class Upstream:
    """Answers by key: a list of responses per key, consumed in order (last one repeats)."""

    def __init__(self, script: dict[str | None, list[httpx.Response | Exception]]) -> None:
        self.script = script
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        auth = request.headers.get("authorization")
        key = auth.removeprefix("Bearer ") if auth else None
        answers = self.script[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def keys_used(self) -> list[str | None]:
        out = []
        for r in self.seen:
            auth = r.headers.get("authorization")
            out.append(auth.removeprefix("Bearer ") if auth else None)
        return out


def ok(body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body or {"ok": True}, headers=headers)


def err(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x"}},
                          headers=headers)


def make_router(
    configs: list[ProviderConfig], upstream: Handler, clock: FakeClock | None = None,
    native: tuple[str, ...] = (), sleeps: list[float] | None = None,
) -> ProviderRouter:
    """A router on a mock transport; backoffs are recorded in ``sleeps``, never slept."""
    recorded = [] if sleeps is None else sleeps

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    return ProviderRouter(configs, native, transport=httpx.MockTransport(upstream),
                          clock=clock or FakeClock(), sleep=sleep, jitter=lambda: 0.5)


async def read(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response])


class Broken(httpx.AsyncByteStream):
    """A body that sends ``chunks_before`` SSE events, then loses its connection."""

    def __init__(self, chunks_before: int) -> None:
        self.chunks_before = chunks_before

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for i in range(self.chunks_before):
            yield f"data: {i}\n\n".encode()
        raise httpx.RemoteProtocolError("peer closed connection")


def sse(stream: httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})
