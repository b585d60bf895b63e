"""The attempt loop: keys of a provider in turn, then the next provider, then a typed error.

Retried (the key cools down): 401, 403, 408, 429, 5xx, connection errors, timeouts, and a body
that breaks off before its first byte. Passed through once: every other answer, including the
client's own 4xx mistakes (400, 404, 413, 422). Nothing is retried after the first byte.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

import anyio
import httpx

from hugind.errors import OpenAIError, UpstreamError, UpstreamTimeoutError
from hugind.providers.activity import ActivityLog
from hugind.providers.client import ForwardRequest, Provider, rename_model
from hugind.providers.headers import client_response_headers, retry_after_s
from hugind.providers.keys import KeyState
from hugind.providers.response import StreamErrorHook, UpstreamResponse, mid_stream_error

logger = logging.getLogger("hugind.providers")

#: Statuses that say "this key or this provider, not this request": try the next one.
RETRY_STATUSES: frozenset[int] = frozenset({
    HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.REQUEST_TIMEOUT,
    HTTPStatus.TOO_MANY_REQUESTS,
})
ERROR_BODY_LIMIT = 1024 * 1024
_REASON_CHARS = 200
_TOKEN_RE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}|(?i:bearer)\s+[^\s\"',]+")


def is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= HTTPStatus.INTERNAL_SERVER_ERROR


@dataclass(frozen=True)
class Failure:
    """One failed attempt, described without any key."""

    provider: str
    reason: str
    status: int | None = None
    timed_out: bool = False
    attempted: bool = True


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every configured key, and anything shaped like a key, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_RE.sub("[redacted]", text)


def redact_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode(), b"[redacted]")
    return body


def upstream_reason(body: bytes, secrets: tuple[str, ...]) -> str:
    """A short, key-free summary of an upstream error body."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or ""
        text = err if isinstance(err, str) else json.dumps(err)
    text = " ".join(redact(text, secrets).split())
    return text[:_REASON_CHARS] + ("..." if len(text) > _REASON_CHARS else "")


async def read_bounded(response: httpx.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """Up to ``limit`` bytes of a (small, error) body."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


async def first_chunk(response: httpx.Response) -> tuple[bytes, AsyncIterator[bytes]]:
    """Read the first non-empty chunk; returns it and the iterator for the rest."""
    iterator = response.aiter_bytes()
    async for chunk in iterator:
        if chunk:
            return chunk, iterator
    return b"", iterator


class Failover:
    """Runs one request across candidate providers and keys.

    Args:
        activity: where failover events are recorded.
        secrets: every configured key, scrubbed from messages and relayed error bodies.

    Threading: one event loop; shares the providers' key pools with concurrent requests.
    """

    def __init__(self, activity: ActivityLog, secrets: tuple[str, ...]) -> None:
        self._activity = activity
        self._secrets = secrets

    async def run(
        self, candidates: list[tuple[Provider, str | None]], request: ForwardRequest,
        model: str | None,
    ) -> UpstreamResponse:
        """Try each candidate provider in order; the first usable answer is returned.

        Raises:
            UpstreamTimeoutError: every attempt timed out.
            UpstreamError: every attempt failed otherwise, or every key is cooling down.
        """
        failures: list[Failure] = []
        for index, (provider, upstream_model) in enumerate(candidates):
            body = request.body
            if upstream_model is not None and upstream_model != model:
                body = rename_model(body, request.content_type, upstream_model)
            attempts = 0
            for state in provider.pool.ready():
                if attempts >= provider.max_attempts:
                    break
                attempts += 1
                outcome = await self._attempt(provider, state, request, body)
                if isinstance(outcome, UpstreamResponse):
                    if failures:
                        self._record_failover(provider, state, failures)
                    return outcome
                failures.append(outcome)
            if attempts == 0:
                wait_s = provider.pool.next_ready_in_s()
                failures.append(Failure(
                    provider.name, f"all keys cooling down (next ready in {wait_s:.0f}s)",
                    attempted=False,
                ))
            if attempts == 0 or index < len(candidates) - 1:
                self._activity.record(
                    "provider_skipped", provider.name,
                    f"Provider '{provider.name}' skipped: {failures[-1].reason}",
                    status=failures[-1].status,
                )
        raise self._final_error([p for p, _ in candidates], failures)

    async def _attempt(
        self, provider: Provider, state: KeyState, request: ForwardRequest, body: bytes,
    ) -> UpstreamResponse | Failure:
        try:
            response = await provider.send(request, body, state.key)
        except httpx.TimeoutException as exc:
            return self._fail(provider, state, f"timed out ({_phase(exc)})", timed_out=True)
        except httpx.HTTPError as exc:
            return self._fail(provider, state, f"connection failed ({type(exc).__name__})")
        try:
            return await self._read_head(provider, state, response)
        except httpx.TimeoutException:
            await response.aclose()
            return self._fail(provider, state, "timed out before the first byte", timed_out=True)
        except httpx.HTTPError as exc:
            await response.aclose()
            return self._fail(
                provider, state, f"connection broke before the first byte ({type(exc).__name__})"
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise

    async def _read_head(
        self, provider: Provider, state: KeyState, response: httpx.Response
    ) -> UpstreamResponse | Failure:
        """Classify the answer; read an error body whole, or a good body's first chunk."""
        status = response.status_code
        chunks: AsyncIterator[bytes] | None = None
        if is_retryable(status):
            try:
                detail = upstream_reason(await read_bounded(response, 64 * 1024), self._secrets)
            except httpx.HTTPError:
                detail = ""
            finally:
                await response.aclose()
            return self._fail(
                provider, state, f"HTTP {status}" + (f": {detail}" if detail else ""),
                status=status, retry_after=retry_after_s(response.headers),
            )
        if status >= HTTPStatus.BAD_REQUEST:
            try:
                head = redact_bytes(await read_bounded(response), self._secrets)
            finally:
                await response.aclose()
        else:
            head, chunks = await first_chunk(response)
        self._succeed(provider, state, status)
        return UpstreamResponse(
            status=status, headers=client_response_headers(response.headers.multi_items()),
            provider=provider.name, first_chunk=head, chunks=chunks, closer=response.aclose,
            on_stream_error=self._stream_error_hook(provider, state),
        )

    def _succeed(self, provider: Provider, state: KeyState, status: int) -> None:
        if provider.pool.mark_success(state, status):
            self._activity.record(
                "key_restored", provider.name,
                f"Key {state.fingerprint} of '{provider.name}' answered again after cooling down",
                key=state.fingerprint, status=status,
            )
            logger.info("provider %s: key %s restored", provider.name, state.fingerprint)

    def _fail(
        self, provider: Provider, state: KeyState, reason: str, *, status: int | None = None,
        retry_after: float | None = None, timed_out: bool = False,
    ) -> Failure:
        rest_s = provider.pool.mark_failure(state, reason, status=status, retry_after_s=retry_after)
        honoured = " (Retry-After)" if retry_after is not None else ""
        self._activity.record(
            "key_cooled_down", provider.name,
            f"Key {state.fingerprint} of '{provider.name}' cooled down for {rest_s:g}s"
            f"{honoured} after {reason}",
            key=state.fingerprint, status=status, retry_after_s=retry_after,
        )
        logger.warning(
            "provider %s: key %s failed (%s); cooling down %gs",
            provider.name, state.fingerprint, reason, rest_s,
        )
        return Failure(provider.name, reason, status=status, timed_out=timed_out)

    def _record_failover(
        self, provider: Provider, state: KeyState, failures: list[Failure]
    ) -> None:
        n = len([f for f in failures if f.attempted])
        self._activity.record(
            "failover", provider.name,
            f"Request served by '{provider.name}' with key {state.fingerprint} after "
            f"{n} failed attempt{'s' if n != 1 else ''}",
            key=state.fingerprint,
        )
        logger.info("failover: served by %s key %s after %d failed attempts",
                    provider.name, state.fingerprint, n)

    def _stream_error_hook(self, provider: Provider, state: KeyState) -> StreamErrorHook:
        async def hook(exc: httpx.HTTPError) -> OpenAIError:
            timed_out = isinstance(exc, httpx.TimeoutException)
            what = "timed out" if timed_out else f"broke off ({type(exc).__name__})"
            self._fail(provider, state, f"response {what} mid-body", timed_out=timed_out)
            return mid_stream_error(provider.name, exc)

        return hook

    def _final_error(self, providers: list[Provider], failures: list[Failure]) -> OpenAIError:
        names = ", ".join(f"'{p.name}'" for p in providers)
        shown = failures[-6:]
        detail = "; ".join(f"{f.provider}: {f.reason}" for f in shown)
        more = f" (and {len(failures) - len(shown)} earlier)" if len(failures) > len(shown) else ""
        waits = [p.pool.next_ready_in_s() for p in providers]
        headers = {"Retry-After": str(math.ceil(min(waits)))} if waits and min(waits) > 0 else {}
        attempted = [f for f in failures if f.attempted]
        message = f"No provider could answer (tried {names}): {detail}{more}"
        if attempted and all(f.timed_out for f in attempted):
            return UpstreamTimeoutError(message, headers=headers)
        return UpstreamError(message, headers=headers)


def _phase(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.PoolTimeout):
        return "waiting for a connection"
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request"
    return "waiting for the answer"
