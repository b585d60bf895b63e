"""Server-sent events: parsing, and what one streamed reply says about timing and tokens.

Pure functions over ``(timestamp_s, line)`` pairs, so recorded streams can be replayed in tests.

Token counting: every chunk whose delta carries non-empty text counts as one token (servers
stream one token per chunk, except when they hold back an incomplete UTF-8 sequence or a
possible stop string). When the server reports ``usage.completion_tokens`` (OpenAI's
``stream_options.include_usage``), that number wins and ``output_tokens_source`` says "usage".

Timing follows vLLM's ``endpoint_request_func``: TTFT is the time from sending the request to the
first chunk with text; inter-token latencies (ITL) are the gaps between successive text chunks.

OpenAI Responses streams (``summarize_responses_stream``) are typed events instead of chunks:
``response.output_text.delta`` carries the text, and the final ``response.completed`` (or
``response.incomplete``) carries the response's id and usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SSEEvent",
    "StreamStats",
    "apply_response",
    "chunk_text",
    "iter_events",
    "summarize_responses_stream",
    "summarize_stream",
]


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
    response_id: str | None = None  # Responses API: the id a next turn names

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
            text_parts.append(text)
            prev_s = _timed(stats, ev.time_s, t_start_s, prev_s)
        usage_tokens = _apply_meta(stats, chunk, usage_tokens)
    return _closed(stats, text_parts, usage_tokens)


def _timed(stats: StreamStats, time_s: float, t_start_s: float, prev_s: float | None) -> float:
    """Count one content event at ``time_s``: TTFT for the first, an inter-token gap after.
    Returns ``time_s``, the next event's ``prev_s``."""
    stats.content_chunks += 1
    if prev_s is None:
        stats.ttft_ms = (time_s - t_start_s) * 1000.0
    else:
        stats.itl_ms.append((time_s - prev_s) * 1000.0)
    stats.last_token_ms = (time_s - t_start_s) * 1000.0
    return time_s


def _closed(stats: StreamStats, text_parts: list[str], usage_tokens: int | None,
            ) -> StreamStats:
    """The text, and output tokens from usage where the server reported them, else counted."""
    stats.text = "".join(text_parts)
    if usage_tokens is not None:
        stats.output_tokens = usage_tokens
        stats.output_tokens_source = "usage"
    else:
        stats.output_tokens = stats.content_chunks
    return stats


# Deltas that time a token. Reasoning counts as chat's ``reasoning_content`` does (it is
# generated output), but only output text is the reply a client would send back as history.
_TEXT_DELTA = "response.output_text.delta"
_TIMED_DELTAS = (_TEXT_DELTA, "response.reasoning_text.delta")
# A response that ended: "incomplete" is Hugind's (and OpenAI's) status at max_output_tokens;
# llama-server reports "completed" either way.
_FINAL = {"response.completed": "stop", "response.incomplete": "length"}


def apply_response(stats: StreamStats, response: Any) -> int | None:
    """Take id, status and usage from a Responses ``response`` object (the one a final event
    carries, or a non-streamed reply); returns ``usage.output_tokens`` when present."""
    if not isinstance(response, dict):
        return None
    if isinstance(response.get("id"), str):
        stats.response_id = response["id"]
    status = response.get("status")
    if status == "failed":
        err = response.get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        stats.error = f"response failed: {msg}"
    elif status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        stats.finish_reason = "length" if reason in (None, "max_output_tokens") else str(reason)
    elif status == "completed":
        stats.finish_reason = "stop"
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    if isinstance(usage.get("input_tokens"), int):
        stats.prompt_tokens = int(usage["input_tokens"])
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        stats.cached_tokens = int(details["cached_tokens"])
    out = usage.get("output_tokens")
    return int(out) if isinstance(out, int) else None


def _event_error(data: dict[str, Any]) -> str | None:
    """The message of an error event: OpenAI's (and Hugind's) ``{"type": "error", "message"}``,
    or llama-server's mid-stream ``{"error": {...}}`` (sent as a plain ``data:`` line)."""
    if data.get("type") == "error":
        return str(data.get("message") or data.get("code") or "error")
    if "error" in data and "type" not in data:
        err = data["error"]
        return str(err.get("message", err) if isinstance(err, dict) else err)
    return None


def summarize_responses_stream(lines: Iterable[tuple[float, str]], t_start_s: float) -> StreamStats:
    """Replay a timestamped Responses SSE stream into ``StreamStats``.

    TTFT is the first non-empty delta, the text is the ``response.output_text.delta`` deltas,
    and the final event's response gives ``response_id``, ``input_tokens`` (as
    ``prompt_tokens``), ``input_tokens_details.cached_tokens`` and ``output_tokens``. A
    ``response.failed`` or ``error`` event makes ``error``; a stream with no final event is cut
    off (``finish_reason`` stays None).
    """
    stats = StreamStats()
    text_parts: list[str] = []
    prev_s: float | None = None
    usage_tokens: int | None = None
    for ev in iter_events(lines):
        try:
            data = json.loads(ev.data)
        except ValueError:
            stats.error = f"bad SSE data: {ev.data[:120]!r}"
            continue
        if not isinstance(data, dict):
            continue
        kind = data.get("type", ev.event)
        err = _event_error(data)
        if err is not None:
            stats.error = f"stream error: {err}"
            continue
        if kind in _TIMED_DELTAS and isinstance(data.get("delta"), str) and data["delta"]:
            if kind == _TEXT_DELTA:
                text_parts.append(data["delta"])
            prev_s = _timed(stats, ev.time_s, t_start_s, prev_s)
        elif kind in _FINAL or kind == "response.failed":
            stats.done_seen = True
            usage_tokens = apply_response(stats, data.get("response"))
            if kind == "response.failed" and stats.error is None:
                stats.error = "response failed"
            elif kind in _FINAL and stats.finish_reason is None:
                stats.finish_reason = _FINAL[kind]
            if stats.cached_tokens is None:
                # llama-server puts its timings on the final event's data as in chat chunks
                stats.cached_tokens = _cached_tokens(data)
    return _closed(stats, text_parts, usage_tokens)
