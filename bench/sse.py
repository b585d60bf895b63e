"""Server-sent events: parsing, and what one streamed reply says about timing and tokens.

Pure functions over ``(timestamp_s, line)`` pairs, so recorded streams can be replayed in tests.

Token counting: every chunk whose delta carries non-empty text counts as one token (servers
stream one token per chunk, except when they hold back an incomplete UTF-8 sequence or a
possible stop string). When the server reports ``usage.completion_tokens`` (OpenAI's
``stream_options.include_usage``), that number wins and ``output_tokens_source`` says "usage".

Timing follows vLLM's ``endpoint_request_func``: TTFT is the time from sending the request to the
first chunk with text; inter-token latencies (ITL) are the gaps between successive text chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SSEEvent", "StreamStats", "chunk_text", "iter_events", "summarize_stream"]


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its ``data`` (lines joined by newlines) and when it was complete."""

    data: str
    time_s: float
    event: str | None = None


def iter_events(lines: Iterable[tuple[float, str]]) -> Iterator[SSEEvent]:
    """Group timestamped SSE lines into events.

    Follows the SSE rules that matter here: ``data:`` lines accumulate (one optional space after
    the colon is dropped), a blank line ends the event, lines starting with ``:`` are comments.
    An event not ended by a blank line before the stream ends is still yielded. The event's time
    is the time of its last data line (when its content arrived).
    """
    data: list[str] = []
    event: str | None = None
    last_t = 0.0
    for t, raw in lines:
        line = raw.rstrip("\r\n")
        if line == "":
            if data:
                yield SSEEvent("\n".join(data), last_t, event)
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
            last_t = t
        elif name == "event":
            event = value
    if data:
        yield SSEEvent("\n".join(data), last_t, event)


def chunk_text(chunk: dict[str, Any]) -> str:
    """The generated text a chat or completions chunk carries (empty when none)."""
    parts: list[str] = []
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("content", "reasoning_content"):
                value = delta.get(key)
                if isinstance(value, str):
                    parts.append(value)
        text = choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


@dataclass
class StreamStats:
    """What one streamed reply measured. Times in milliseconds from sending the request."""

    ttft_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    last_token_ms: float | None = None
    content_chunks: int = 0
    output_tokens: int = 0
    output_tokens_source: str = "chunks"
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    done_seen: bool = False
    error: str | None = None
    text: str = ""

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first, per second of the time they took (TTFT excluded)."""
        if self.ttft_ms is None or self.last_token_ms is None or self.output_tokens < 2:
            return None
        span_ms = self.last_token_ms - self.ttft_ms
        if span_ms <= 0:
            return None
        return (self.output_tokens - 1) / (span_ms / 1000.0)

    @property
    def cut_off(self) -> bool:
        """True when the stream ended without a finish reason (the server dropped it)."""
        return self.error is None and self.finish_reason is None


def _cached_tokens(chunk: dict[str, Any]) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens``, else llama-server's ``timings.cache_n``."""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            return int(details["cached_tokens"])
    timings = chunk.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
        return int(timings["cache_n"])
    return None


def _apply_meta(stats: StreamStats, chunk: dict[str, Any], usage_tokens: int | None) -> int | None:
    """Take finish reason, usage and cached tokens from a chunk; returns the usage token count."""
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict) and choice.get("finish_reason"):
            stats.finish_reason = str(choice["finish_reason"])
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            usage_tokens = int(usage["completion_tokens"])
        if isinstance(usage.get("prompt_tokens"), int):
            stats.prompt_tokens = int(usage["prompt_tokens"])
    cached = _cached_tokens(chunk)
    if cached is not None:
        stats.cached_tokens = cached
    return usage_tokens


def summarize_stream(lines: Iterable[tuple[float, str]], t_start_s: float) -> StreamStats:
    """Replay a timestamped SSE stream (times from ``time.perf_counter``) into ``StreamStats``."""
    stats = StreamStats()
    text_parts: list[str] = []
    prev_s: float | None = None
    usage_tokens: int | None = None
    for ev in iter_events(lines):
        if ev.data.strip() == "[DONE]":
            stats.done_seen = True
            continue
        try:
            chunk = json.loads(ev.data)
        except ValueError:
            stats.error = f"bad SSE data: {ev.data[:120]!r}"
            continue
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            stats.error = f"stream error: {msg}"
            continue
        text = chunk_text(chunk)
        if text:
            stats.content_chunks += 1
            text_parts.append(text)
            if prev_s is None:
                stats.ttft_ms = (ev.time_s - t_start_s) * 1000.0
            else:
                stats.itl_ms.append((ev.time_s - prev_s) * 1000.0)
            prev_s = ev.time_s
            stats.last_token_ms = (ev.time_s - t_start_s) * 1000.0
        usage_tokens = _apply_meta(stats, chunk, usage_tokens)
    stats.text = "".join(text_parts)
    if usage_tokens is not None:
        stats.output_tokens = usage_tokens
        stats.output_tokens_source = "usage"
    else:
        stats.output_tokens = stats.content_chunks
    return stats
