"""The answer of the provider that took a request, relayed as its bytes arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx

from hugind.errors import OpenAIError, UpstreamError, UpstreamTimeoutError

StreamErrorHook = Callable[[httpx.HTTPError], Awaitable[OpenAIError]]


class UpstreamResponse:
    """Status, headers and body of an upstream answer, not yet read past its first chunk.

    Iterate it once (``async for chunk in response``) to relay the body; iteration always closes
    the upstream connection at the end, on error, or when the consumer is cancelled (a client
    disconnect), which cancels the upstream request. A transport error after the first chunk is
    raised as :class:`~hugind.errors.UpstreamError` or :class:`~hugind.errors.UpstreamTimeoutError`:
    nothing is retried once bytes may have reached the client.

    Threading: one event loop; iterate from one task.

    Attributes:
        status: the upstream HTTP status.
        headers: end-to-end headers to send back (hop-by-hop, length and encoding removed).
        provider: the name of the provider that answered.
    """

    def __init__(
        self, *, status: int, headers: list[tuple[str, str]], provider: str,
        first_chunk: bytes, chunks: AsyncIterator[bytes] | None,
        closer: Callable[[], Awaitable[None]], on_stream_error: StreamErrorHook,
    ) -> None:
        self.status = status
        self.headers = headers
        self.provider = provider
        self._first = first_chunk
        self._chunks_left = chunks
        self._closer = closer
        self._on_stream_error = on_stream_error
        self._closed = False
        self._close_callbacks: list[Callable[[], None]] = []

    @property
    def media_type(self) -> str | None:
        """The upstream ``content-type``, if any."""
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value
        return None

    @property
    def is_event_stream(self) -> bool:
        media = self.media_type or ""
        return media.split(";", 1)[0].strip().lower() == "text/event-stream"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._first:
                yield self._first
            if self._chunks_left is None:
                return
            try:
                async for chunk in self._chunks_left:
                    if chunk:
                        yield chunk
            except httpx.HTTPError as exc:
                raise await self._on_stream_error(exc) from None
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._closer()
        finally:
            for callback in self._close_callbacks:
                callback()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the upstream connection is closed."""
        if self._closed:
            callback()
        else:
            self._close_callbacks.append(callback)


def mid_stream_error(provider: str, exc: httpx.HTTPError) -> OpenAIError:
    """The error raised when a body breaks off after it started."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"Provider '{provider}' stopped sending mid-response (timeout)")
    return UpstreamError(
        f"Provider '{provider}' broke off the response mid-body ({type(exc).__name__})"
    )
