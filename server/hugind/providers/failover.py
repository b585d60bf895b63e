"""The attempt loop: keys of a provider in turn, then the next provider, then a typed error.

- 401, 403, 429: the key cools down (``Retry-After`` wins over ``cooldown_s``) and the next
  key is tried at once.
- 408, 5xx, connection errors and timeouts: the next key (the same one, for a one-key
  provider) is tried after a short jittered backoff; nothing cools down.
- A request the upstream may have started on (a read timeout or a connection lost while
  waiting for the answer, or a 2xx whose body broke off before its first byte) is sent again
  only for idempotent methods or a provider with ``retry_reads``: never a second POST.
- Every failed attempt counts towards the provider's :class:`CircuitBreaker`; a tripped
  provider is skipped at once, and a 503 with ``Retry-After`` comes back when all are.
- Every other answer (the client's own 400, 404, 413, 422...) passes through once. Nothing is
  retried after the first byte of a body.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import anyio
import httpx

from hugind.errors import OpenAIError, OverloadedError, UpstreamError, UpstreamTimeoutError
from hugind.metrics import PROVIDER_FAILOVERS, PROVIDER_REQUESTS
from hugind.providers.activity import ActivityLog
from hugind.providers.client import ForwardRequest, Provider, rename_model
from hugind.providers.headers import client_response_headers, retry_after_s
from hugind.providers.keys import KeyState
from hugind.providers.redaction import redact_bytes, upstream_reason
from hugind.providers.response import StreamErrorHook, UpstreamResponse, mid_stream_error

logger = logging.getLogger("hugind.providers")

#: Statuses that say "this key": it cools down and the next key is tried at once.
KEY_STATUSES: frozenset[int] = frozenset({
    HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS,
})
Sleep = Callable[[float], Awaitable[None]]
ERROR_BODY_LIMIT = 1024 * 1024


def is_transient(status: int) -> bool:
    """408 and 5xx: the upstream failed this time; another try may work, the key is fine."""
    return status == HTTPStatus.REQUEST_TIMEOUT or status >= HTTPStatus.INTERNAL_SERVER_ERROR


def is_retryable(status: int) -> bool:
    return status in KEY_STATUSES or is_transient(status)


@dataclass(frozen=True)
class Failure:
    """One failed attempt (or a provider skipped without one), described without any key.

    Attributes:
        cooled: the key cooled down (401, 403, 429): the next key is tried without a backoff.
        started: the upstream may have started on the request (see the module docstring).
        tripped: the provider was skipped because its breaker is open.
    """

    provider: str
    reason: str
    status: int | None = None
    timed_out: bool = False
    attempted: bool = True
    cooled: bool = False
    started: bool = False
    tripped: bool = False


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
        sleep: awaited for each backoff (tests pass a recorder).
        jitter: returns a float in ``[0, 1)``; a backoff is ``(0.5 + jitter / 2)`` of its step.

    Threading: one event loop; shares the providers' key pools and breakers with concurrent
    requests.
    """

    def __init__(
        self, activity: ActivityLog, secrets: tuple[str, ...], *, sleep: Sleep = anyio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._activity = activity
        #: Every configured key; the router replaces it when keys are added or deleted.
        self.secrets = secrets
        self._sleep = sleep
        self._jitter = jitter

    async def run(
        self, candidates: list[tuple[Provider, str | None]], request: ForwardRequest,
        model: str | None,
    ) -> UpstreamResponse:
        """Try each candidate provider in order; the first usable answer is returned.

        Raises:
            UpstreamTimeoutError: every attempt timed out.
            OverloadedError: every candidate's breaker is open (503 with ``Retry-After``).
            UpstreamError: every attempt failed otherwise, or every key is cooling down.
        """
        failures: list[Failure] = []
        for index, (provider, upstream_model) in enumerate(candidates):
            body = request.body
            if upstream_model is not None and upstream_model != model:
                body = rename_model(body, request.content_type, upstream_model)
            admission = provider.breaker.admit()
            if admission is None:
                wait_s = provider.breaker.retry_in_s()
                failures.append(Failure(
                    provider.name, f"tripped after failures in a row (retry in {wait_s:.0f}s)",
                    attempted=False, tripped=True,
                ))
                self._skipped(provider, failures[-1])
                continue
            try:
                answer = await self._try_provider(
                    provider, request, body, failures, trial=admission == "trial",
                )
            finally:
                if admission == "trial":
                    provider.breaker.end_trial()
            if answer is not None:
                return answer
            last = failures[-1]
            if last.started and not provider.may_retry_after_start(request.method):
                raise self._final_error([p for p, _ in candidates], failures, stopped=True)
            if not last.attempted or index < len(candidates) - 1:
                self._skipped(provider, last)
        raise self._final_error([p for p, _ in candidates], failures)

    async def _try_provider(
        self, provider: Provider, request: ForwardRequest, body: bytes,
        failures: list[Failure], *, trial: bool,
    ) -> UpstreamResponse | None:
        """Up to ``max_attempts`` attempts (one for a breaker trial); failures are appended."""
        max_attempts = 1 if trial else provider.max_attempts
        # The request's own key (client_key_header) first, then the pool's, selected first.
        request_key = provider.request_key(request)
        state: KeyState | None = None
        attempts = transient = 0
        while attempts < max_attempts and (
            state := request_key if state is None and request_key else provider.pool.pick(state)
        ) is not None:
            if attempts and not failures[-1].cooled:
                transient += 1
                await self._backoff(provider, transient)
            attempts += 1
            outcome = await self._attempt(provider, state, request, body)
            PROVIDER_REQUESTS.labels(provider.name, _status_label(outcome)).inc()
            if isinstance(outcome, UpstreamResponse):
                if failures:
                    self._record_failover(provider, state, failures)
                return outcome
            failures.append(outcome)
            if self._breaker_failed(provider):
                break
            if outcome.started and not provider.may_retry_after_start(request.method):
                break
        if attempts == 0:
            wait_s = provider.pool.next_ready_in_s()
            failures.append(Failure(
                provider.name, f"all keys cooling down (next ready in {wait_s:.0f}s)",
                attempted=False,
            ))
        return None

    async def _backoff(self, provider: Provider, n: int) -> None:
        """Wait before the ``n``-th retry after a transient failure: doubling, capped, jittered."""
        config = provider.config
        step = min(config.backoff_max_s, config.backoff_s * 2 ** min(n - 1, 30))
        delay = step * (0.5 + self._jitter() / 2)
        if delay > 0:
            await self._sleep(delay)

    async def _attempt(
        self, provider: Provider, state: KeyState, request: ForwardRequest, body: bytes,
    ) -> UpstreamResponse | Failure:
        try:
            response = await provider.send(request, body, state.key)
        except httpx.TimeoutException as exc:
            return self._fail(provider, state, f"timed out ({_phase(exc)})", timed_out=True,
                              started=isinstance(exc, httpx.ReadTimeout))
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            return self._fail(provider, state, f"connection lost waiting for the answer "
                              f"({type(exc).__name__})", started=True)
        except httpx.HTTPError as exc:
            return self._fail(provider, state, f"connection failed ({type(exc).__name__})")
        try:
            return await self._read_head(provider, state, response,
                                         self.secrets + request.secrets)
        except httpx.TimeoutException:
            await response.aclose()
            return self._fail(provider, state, "timed out before the first byte", timed_out=True,
                              started=True)
        except httpx.HTTPError as exc:
            await response.aclose()
            return self._fail(
                provider, state, f"connection broke before the first byte ({type(exc).__name__})",
                started=True,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise

    async def _read_head(
        self, provider: Provider, state: KeyState, response: httpx.Response,
        secrets: tuple[str, ...],
    ) -> UpstreamResponse | Failure:
        """Classify the answer; read an error body whole, or a good body's first chunk."""
        status = response.status_code
        chunks: AsyncIterator[bytes] | None = None
        if is_retryable(status):
            try:
                detail = upstream_reason(await read_bounded(response, 64 * 1024), secrets)
            except httpx.HTTPError:
                detail = ""
            finally:
                await response.aclose()
            reason = f"HTTP {status}" + (f": {detail}" if detail else "")
            if status in KEY_STATUSES and state.source == "request":
                # A request's own key is not the pool's: nothing to cool, the next key now.
                failure = self._fail(provider, state, reason, status=status)
                return dataclasses.replace(failure, cooled=True)
            if status in KEY_STATUSES:
                return self._cool(provider, state, reason, status=status,
                                  retry_after=retry_after_s(response.headers))
            return self._fail(provider, state, reason, status=status)
        if status >= HTTPStatus.BAD_REQUEST:
            try:
                head = redact_bytes(await read_bounded(response), secrets)
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
        if provider.breaker.record_success():
            self._activity.record(
                "provider_restored", provider.name,
                f"Provider '{provider.name}' answered its trial request; no longer tripped",
                key=state.fingerprint, status=status,
            )
            logger.info("provider %s: answered again, breaker closed", provider.name)

    def _cool(
        self, provider: Provider, state: KeyState, reason: str, *, status: int,
        retry_after: float | None,
    ) -> Failure:
        """A 401, 403 or 429: this key rests; the next one is tried at once."""
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
        return Failure(provider.name, reason, status=status, cooled=True)

    def _fail(
        self, provider: Provider, state: KeyState, reason: str, *, status: int | None = None,
        timed_out: bool = False, started: bool = False,
    ) -> Failure:
        """A 408, 5xx, timeout or connection error: nothing cools down."""
        provider.pool.mark_error(state, reason, status=status)
        self._activity.record(
            "attempt_failed", provider.name,
            f"Key {state.fingerprint} of '{provider.name}' got {reason} (not cooled down)",
            key=state.fingerprint, status=status,
        )
        logger.warning("provider %s: attempt with key %s failed (%s)",
                       provider.name, state.fingerprint, reason)
        return Failure(provider.name, reason, status=status, timed_out=timed_out,
                       started=started)

    def _breaker_failed(self, provider: Provider) -> bool:
        """Count a failed attempt; returns ``True`` if it tripped the provider."""
        if not provider.breaker.record_failure():
            return False
        open_s = provider.breaker.open_s
        self._activity.record(
            "provider_tripped", provider.name,
            f"Provider '{provider.name}' tripped after failed attempts in a row; skipped for "
            f"{open_s:g}s, then one trial request",
            retry_after_s=open_s,
        )
        logger.warning("provider %s: tripped after failures in a row; resting %gs",
                       provider.name, open_s)
        return True

    def _skipped(self, provider: Provider, failure: Failure) -> None:
        self._activity.record(
            "provider_skipped", provider.name,
            f"Provider '{provider.name}' skipped: {failure.reason}", status=failure.status,
        )

    def _record_failover(
        self, provider: Provider, state: KeyState, failures: list[Failure]
    ) -> None:
        n = len([f for f in failures if f.attempted])
        for name in dict.fromkeys(f.provider for f in failures if f.attempted):
            PROVIDER_FAILOVERS.labels(name).inc()
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
            self._breaker_failed(provider)
            return mid_stream_error(provider.name, exc)

        return hook

    def _final_error(
        self, providers: list[Provider], failures: list[Failure], *, stopped: bool = False,
    ) -> OpenAIError:
        names = ", ".join(f"'{p.name}'" for p in providers)
        shown = failures[-6:]
        detail = "; ".join(f"{f.provider}: {f.reason}" for f in shown)
        more = f" (and {len(failures) - len(shown)} earlier)" if len(failures) > len(shown) else ""
        waits = [max(p.pool.next_ready_in_s(), p.breaker.retry_in_s()) for p in providers]
        headers = {"Retry-After": str(math.ceil(min(waits)))} if waits and min(waits) > 0 else {}
        message = f"No provider could answer (tried {names}): {detail}{more}"
        if stopped:
            message += (". Not sent again: the upstream may have started on it (a provider "
                        "with retry_reads: true is retried)")
        if failures and all(f.tripped for f in failures):
            return OverloadedError(message, code="provider_unavailable", headers=headers)
        attempted = [f for f in failures if f.attempted]
        if attempted and all(f.timed_out for f in attempted):
            return UpstreamTimeoutError(message, headers=headers)
        return UpstreamError(message, headers=headers)


def _status_label(outcome: UpstreamResponse | Failure) -> str:
    """An attempt's HTTP status, or ``timeout`` / ``error`` when none came back."""
    if outcome.status is not None:
        return str(outcome.status)
    return "timeout" if isinstance(outcome, Failure) and outcome.timed_out else "error"


def _phase(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.PoolTimeout):
        return "waiting for a connection"
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request"
    return "waiting for the answer"
