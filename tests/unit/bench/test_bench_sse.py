"""SSE parsing, token counting, TTFT and ITL from timestamped streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.sse import chunk_text, iter_events, summarize_stream

STREAMS = Path(__file__).parent / "streams"


def _chat(content: str | None = None, finish: str | None = None, **extra: object) -> str:
    delta = {} if content is None else {"content": content}
    chunk = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return "data: " + json.dumps(chunk)  # fmt: skip


def _timed(*pairs: tuple[float, str]) -> list[tuple[float, str]]:
    """Each event line followed by the blank line that ends it, at the same time."""
    out: list[tuple[float, str]] = []
    for t, line in pairs:
        out += [(t, line), (t, "")]
    return out


def load_recorded(name: str) -> list[tuple[float, str]]:
    """A recorded stream: one ``<seconds since request>\\t<line>`` per line."""
    out = []
    for raw in (STREAMS / name).read_text().splitlines():
        t, _, line = raw.partition("\t")
        out.append((float(t), line))
    return out


def test_iter_events_follows_sse_rules() -> None:
    lines = [
        (0.1, ": ping"),
        (0.2, "event: message"),
        (0.3, 'data: {"a":'),
        (0.4, "data:1}"),
        (0.4, ""),
        (0.5, "data: [DONE]\r\n"),
    ]
    events = list(iter_events(lines))
    assert [e.data for e in events] == ['{"a":\n1}', "[DONE]"]
    assert events[0].event == "message"
    assert events[0].time_s == 0.4
    assert events[1].time_s == 0.5  # an unterminated last event still counts


def test_ttft_itl_and_tokens_from_timestamps() -> None:
    lines = _timed(
        (10.05, _chat(None)),  # role-only first chunk: not a token
        (10.20, _chat("Hel")),
        (10.25, _chat("lo")),
        (10.40, _chat(",")),
        (10.41, _chat("", finish="length")),
        (10.42, "data: [DONE]"),
    )
    s = summarize_stream(lines, t_start_s=10.0)
    assert s.ttft_ms == pytest.approx(200.0)
    assert s.itl_ms == pytest.approx([50.0, 150.0])
    assert s.output_tokens == 3
    assert s.output_tokens_source == "chunks"
    assert s.content_chunks == 3
    assert s.text == "Hello,"
    assert s.finish_reason == "length"
    assert s.done_seen
    assert not s.cut_off
    assert s.last_token_ms == pytest.approx(400.0)
    # 2 tokens after the first, in 200 ms
    assert s.decode_tokens_per_s == pytest.approx(10.0)


def test_usage_wins_over_chunk_count_and_cached_tokens_are_read() -> None:
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": 4,
        "total_tokens": 54,
        "prompt_tokens_details": {"cached_tokens": 32},
    }
    lines = _timed(
        (1.0, _chat("ab")),  # two tokens held back in one chunk
        (1.1, _chat("c")),
        (1.2, _chat("d", finish="stop")),
        (1.3, "data: " + json.dumps({"choices": [], "usage": usage})),
        (1.3, "data: [DONE]"),
    )  # fmt: skip
    s = summarize_stream(lines, t_start_s=0.5)
    assert s.content_chunks == 3
    assert s.output_tokens == 4
    assert s.output_tokens_source == "usage"
    assert s.prompt_tokens == 50
    assert s.cached_tokens == 32
    assert s.decode_tokens_per_s == pytest.approx(3 / 0.2)


def test_llama_server_timings_cache_n() -> None:
    lines = _timed((0.1, _chat("x", finish="stop", timings={"cache_n": 17, "prompt_n": 3})))
    assert summarize_stream(lines, 0.0).cached_tokens == 17


def test_completions_chunks_count_text() -> None:
    chunk = {"object": "text_completion", "choices": [{"text": "hi", "finish_reason": None}]}
    assert chunk_text(chunk) == "hi"
    lines = _timed((0.3, "data: " + json.dumps(chunk)))
    s = summarize_stream(lines, 0.0)
    assert s.output_tokens == 1
    assert s.cut_off  # no finish reason: the server dropped the stream


def test_error_event_and_bad_json_are_errors_not_exceptions() -> None:
    s = summarize_stream(_timed((0.1, 'data: {"error": {"message": "boom"}}')), 0.0)
    assert s.error == "stream error: boom"
    assert not s.cut_off
    s = summarize_stream(_timed((0.1, "data: {not json")), 0.0)
    assert s.error is not None and s.error.startswith("bad SSE data")


def test_single_token_has_no_decode_rate() -> None:
    s = summarize_stream(_timed((0.1, _chat("x", finish="length"))), 0.0)
    assert s.output_tokens == 1
    assert s.itl_ms == []
    assert s.decode_tokens_per_s is None


def test_empty_stream() -> None:
    s = summarize_stream([], 0.0)
    assert s.output_tokens == 0
    assert s.ttft_ms is None
    assert s.cut_off


@pytest.mark.parametrize("name", sorted(p.name for p in STREAMS.glob("*.sse")))
def test_recorded_streams_are_consistent(name: str) -> None:
    lines = load_recorded(name)
    s = summarize_stream(lines, 0.0)
    assert s.error is None
    assert s.finish_reason is not None
    assert s.done_seen
    assert s.content_chunks > 1
    assert len(s.itl_ms) == s.content_chunks - 1
    assert all(x >= 0 for x in s.itl_ms)
    assert s.ttft_ms is not None and s.ttft_ms > 0
    assert s.last_token_ms == pytest.approx(s.ttft_ms + sum(s.itl_ms))
    if s.output_tokens_source == "usage":
        assert s.output_tokens >= s.content_chunks
    else:
        assert s.output_tokens == s.content_chunks


def test_recorded_llama_server_completions_with_usage() -> None:
    s = summarize_stream(load_recorded("llama_server_completions_usage.sse"), 0.0)
    assert s.output_tokens_source == "usage"
    assert s.output_tokens == 12 == s.content_chunks
    assert s.prompt_tokens == 15
    assert s.cached_tokens == 0
    assert s.finish_reason == "length"
    assert s.ttft_ms == pytest.approx(142.586)


def test_recorded_llama_cpp_python_completions_count_chunks() -> None:
    s = summarize_stream(load_recorded("llama_cpp_python_completions.sse"), 0.0)
    assert s.output_tokens_source == "chunks"
    assert s.output_tokens == 12
    assert s.prompt_tokens is None
    assert s.text.startswith(" a little")
    assert s.ttft_ms == pytest.approx(197.387)
    assert s.itl_ms[0] == pytest.approx(223.049 - 197.387)


def test_recorded_llama_server_chat_skips_role_chunk() -> None:
    lines = load_recorded("llama_server_chat.sse")
    s = summarize_stream(lines, 0.0)
    first_data_t = next(t for t, line in lines if line.startswith("data:"))
    assert s.ttft_ms is not None and s.ttft_ms >= first_data_t * 1000
    assert s.output_tokens == 12
