"""Per-tenant rate limits: requests and tokens per window, and concurrent sequences.

Windows are ``limits``' fixed windows in its in-process memory storage: a window opens at a
tenant's first hit and resets a minute later. Fixed rather than moving windows because a
finished answer's tokens must count even when they overshoot the limit (a moving window refuses
such a hit and records nothing), and because a 100k tokens/minute window would otherwise be a
100k-entry log per key. Concurrency is a counter per tenant with waiters woken on release.

No HTTP here: :mod:`hugind.api.throttle` applies it to requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter

from hugind.aio import within
from hugind.config import RateLimitConfig
from hugind.errors import RateLimitError, RequestRateLimitError, TokenRateLimitError
from hugind.metrics import RATE_LIMITED

WINDOW_S = 60
Sleep = Callable[[float], Awaitable[None]]


def is_limited(limits: RateLimitConfig) -> bool:
    return any(v is not None for v in (limits.requests_per_minute, limits.tokens_per_minute,
                                       limits.max_concurrent))


def reset_text(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` form: ``20ms``, ``1s``, ``2.5s``, ``6m0s``."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True)
class Window:
    """A window's state for the response headers."""

    limit: int
    remaining: int
    reset_s: float


class RateLimiter:
    """Request and token windows and concurrency caps, per tenant.

    Args:
        window_s: the window length (a minute; tests shorten it).
        sleep: awaited while a request waits for its window (tests pass a fake).

    Threading: the server's event loop only (``limits``' async memory storage is loop-bound).
    """

    def __init__(self, *, window_s: int = WINDOW_S, sleep: Sleep = asyncio.sleep) -> None:
        self._window_s = window_s
        self._sleep = sleep
        self._storage = MemoryStorage()
        self._windows = FixedWindowRateLimiter(self._storage)
        self._active: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def _item(self, per_window: int) -> RateLimitItem:
        return RateLimitItemPerSecond(per_window, self._window_s)

    async def admit(self, tenant: str, limits: RateLimitConfig, deadline: float) -> None:
        """Count one request, waiting for the windows until ``deadline`` (``time.time()``).

        Raises:
            TokenRateLimitError: the tenant's token window is spent past ``deadline``.
            RequestRateLimitError: its request window is full past ``deadline``.
        """
        delayed = False
        while (blocked := await self._blocked(tenant, limits)) is not None:
            error, reset_s = blocked
            kind = "tokens" if isinstance(error, TokenRateLimitError) else "requests"
            if time.time() + reset_s > deadline:
                if not delayed:
                    RATE_LIMITED.labels(limit=kind).inc()
                error.headers["Retry-After"] = str(max(1, math.ceil(reset_s)))
                raise error
            if not delayed:
                RATE_LIMITED.labels(limit=kind).inc()
                delayed = True
            await self._sleep(max(reset_s, 0.01))

    async def _blocked(self, tenant: str, limits: RateLimitConfig,
                       ) -> tuple[RateLimitError, float] | None:
        """None once the request is counted; else why not and when its window resets."""
        if limits.tokens_per_minute is not None:
            item = self._item(limits.tokens_per_minute)
            if not await self._windows.test(item, "tokens", tenant):
                return await self._refusal(TokenRateLimitError, "tokens", item, tenant)
        if limits.requests_per_minute is not None:
            item = self._item(limits.requests_per_minute)
            if not await self._windows.hit(item, "requests", tenant):
                # A fixed-window hit always counts; a refused request must not.
                await self._storage.decr(item.key_for("requests", tenant))
                return await self._refusal(RequestRateLimitError, "requests", item, tenant)
        return None

    async def _refusal(self, cls: type[RateLimitError], kind: str, item: RateLimitItem,
                       tenant: str) -> tuple[RateLimitError, float]:
        stats = await self._windows.get_window_stats(item, kind, tenant)
        wait = stats.reset_time - time.time()
        short = "TPM" if kind == "tokens" else "RPM"
        return cls(f"Rate limit reached for {kind} per min ({short}) on this API key: limit "
                   f"{item.amount}, used {item.amount - stats.remaining}. Please try again in "
                   f"{reset_text(wait)}."), wait

    async def record_tokens(self, tenant: str, limits: RateLimitConfig, n: int) -> None:
        """Add a finished answer's tokens to the tenant's window, even past its limit."""
        if limits.tokens_per_minute is not None and n > 0:
            await self._windows.hit(self._item(limits.tokens_per_minute), "tokens", tenant,
                                    cost=n)

    async def windows(self, tenant: str, limits: RateLimitConfig) -> dict[str, Window]:
        """``{"requests": ..., "tokens": ...}`` for the limits the tenant has."""
        out: dict[str, Window] = {}
        for kind, amount in (("requests", limits.requests_per_minute),
                             ("tokens", limits.tokens_per_minute)):
            if amount is None:
                continue
            stats = await self._windows.get_window_stats(self._item(amount), kind, tenant)
            out[kind] = Window(amount, stats.remaining, stats.reset_time - time.time())
        return out

    async def acquire(self, tenant: str, limits: RateLimitConfig, n: int,
                      deadline: float) -> None:
        """Take ``n`` concurrent-sequence slots, waiting for releases until ``deadline``.

        Raises:
            RequestRateLimitError: ``n`` slots are not free by ``deadline``, or ``n`` exceeds
                the cap itself.
        """
        cap = limits.max_concurrent
        if cap is not None and n > cap:
            RATE_LIMITED.labels(limit="concurrent").inc()
            raise RequestRateLimitError(
                f"This request runs {n} sequences; this API key may run at most {cap} at once "
                "(max_concurrent)", param="n")
        delayed = False
        while cap is not None and self._active.get(tenant, 0) + n > cap:
            left = deadline - time.time()
            if left <= 0:
                if not delayed:
                    RATE_LIMITED.labels(limit="concurrent").inc()
                raise RequestRateLimitError(
                    f"This API key has {self._active.get(tenant, 0)} sequences running, its "
                    f"limit of {cap} (max_concurrent); retry when one ends",
                    headers={"Retry-After": "1"})
            if not delayed:
                RATE_LIMITED.labels(limit="concurrent").inc()
                delayed = True
            await self._wait_release(tenant, left)
        self._active[tenant] = self._active.get(tenant, 0) + n

    async def _wait_release(self, tenant: str, timeout_s: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(tenant, [])
        waiters.append(future)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await within(future, timeout_s)
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(tenant, None)

    def release(self, tenant: str, n: int) -> None:
        """Give back ``n`` slots taken by :meth:`acquire` and wake the tenant's waiters."""
        left = self._active.get(tenant, 0) - n
        if left > 0:
            self._active[tenant] = left
        else:
            self._active.pop(tenant, None)
        for future in self._waiters.get(tenant, []):
            if not future.done():
                future.set_result(None)

    def active(self, tenant: str) -> int:
        return self._active.get(tenant, 0)
