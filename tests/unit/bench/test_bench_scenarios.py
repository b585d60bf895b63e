"""Scenario bookkeeping and report rendering, with a fake runner (no server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from bench.client import RequestResult, RequestSpec
from bench.report import add_comparisons, render_markdown, write_report
from bench.scenarios import Budget, Progress, make_text, run_concurrency, run_decode, run_sessions


class FakeRunner:
    """Replies instantly with fixed timings; ``speed`` scales its token rate."""

    def __init__(self, name: str, speed: float) -> None:
        self.name = name
        self.speed = speed
        self.specs: list[RequestSpec] = []

    async def run(self, spec: RequestSpec, timeout_s: float) -> RequestResult:
        self.specs.append(spec)
        await asyncio.sleep(0.001)
        n = spec.max_tokens
        itl = [1000.0 / self.speed] * (n - 1)
        turn = spec.labels.get("turn", 1)
        return RequestResult(
            target=self.name, ok=True, ttft_ms=100.0 / turn, itl_ms=itl, output_tokens=n,
            content_chunks=n, finish_reason="length", done_seen=True,
            decode_tokens_per_s=self.speed, prompt_tokens=10 * turn,
            cached_tokens=5 * (turn - 1), latency_ms=100.0 + sum(itl),
            labels=dict(spec.labels), text="ok",
        )  # fmt: skip


def _common() -> dict:
    return {
        "run_id": "t",
        "budget": Budget(time.perf_counter() + 60),
        "progress": Progress(0, True),
    }


def test_make_text_is_deterministic() -> None:
    assert make_text(50, seed=1) == make_text(50, seed=1)
    assert make_text(50, seed=1) != make_text(50, seed=2)
    assert len(make_text(50, seed=1).split()) == 50


def test_decode_summary() -> None:
    a, b = FakeRunner("a", 50.0), FakeRunner("b", 25.0)
    res = asyncio.run(run_decode([a, b], rounds=2, max_tokens=5, **_common()))
    assert res.slots_run == res.slots_planned == 4
    assert res.summary["a"]["mean_output_tokens_per_s"] == 50.0
    assert res.summary["b"]["p50_itl_ms"] == 40.0
    assert res.summary["a"]["requests_ok"] == 2
    assert len(a.specs) == len(b.specs) == 3  # one warm-up, two measured
    assert [len(x["itl_ms"]) for x in res.samples] == [4, 4, 4, 4]  # warm-up not recorded
    assert a.specs[1].kind == "completions"
    assert a.specs[1].prompt != a.specs[2].prompt


def test_concurrency_bursts() -> None:
    a = FakeRunner("a", 50.0)
    res = asyncio.run(run_concurrency([a], levels=[1, 3], rounds=1, max_tokens=4, **_common()))
    assert [s["labels"]["concurrency"] for s in res.samples] == [1, 3, 3, 3]
    s3 = res.summary["a"]["3"]
    assert s3["requests"] == 3 and s3["requests_failed"] == 0
    assert s3["mean_aggregate_output_tokens_per_s"] > 0


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_sessions_turn_ratio_and_history_growth(endpoint: str) -> None:
    a = FakeRunner("a", 50.0)
    ends: list[int] = []

    async def hook(turn: int) -> None:
        ends.append(turn)

    res = asyncio.run(
        run_sessions(
            [a], users=3, turns=3, doc_words=20, reply_tokens=2, on_turn_end=hook,
            endpoint=endpoint, **_common(),
        )
    )  # fmt: skip
    s = res.summary["a"]
    assert s["mean_ttft_turn1_ms"] == 100.0
    assert s["mean_ttft_later_turns_ms"] == pytest.approx((50.0 + 100 / 3) / 2)
    assert s["later_over_first_ttft_ratio"] == pytest.approx(((50.0 + 100 / 3) / 2) / 100)
    assert [p["mean_cached_tokens"] for p in s["per_turn"]] == [0, 5, 10]
    assert ends == [0, 1]
    mine = [sp for sp in a.specs if sp.labels["user"] == 0]
    assert all(sp.session is not None and sp.session.endswith("u0") for sp in mine)
    # each turn's prompt extends the previous one (history + reply + new question)
    texts = [sp.prompt_text() for sp in mine]
    assert texts[0] in texts[1] and texts[1] in texts[2]
    if endpoint == "chat":
        assert [m["role"] for m in mine[2].messages] == ["user", "assistant"] * 2 + ["user"]
    else:
        assert mine[2].prompt.startswith(mine[1].prompt + "ok")


def test_expired_budget_stops_early() -> None:
    a = FakeRunner("a", 50.0)
    common = _common()
    common["budget"] = Budget(time.perf_counter() - 1)
    res = asyncio.run(run_decode([a], rounds=3, max_tokens=3, **common))
    assert res.stopped_early and res.slots_run == 0


def test_report_ratios_and_markdown(tmp_path: Path) -> None:
    a, b = FakeRunner("a", 50.0), FakeRunner("b", 25.0)
    dec = asyncio.run(run_decode([a, b], rounds=1, max_tokens=5, **_common()))
    report = {
        "run_id": "x", "subject": "a", "duration_s": 1.0, "machine": {},
        "targets": [{"name": "a", "base_url": "u", "model": "m"},
                    {"name": "b", "base_url": "u", "model": "m"}],
        "scenarios": {"decode": dec.to_dict()},
    }  # fmt: skip
    add_comparisons(report)
    row = report["headline"][0]
    assert row["metric"].startswith("decode: output tokens/s")
    assert row["values"] == {"a": 50.0, "b": 25.0}
    assert row["subject_over_peer"] == {"b": 2.0}
    md = render_markdown(report)
    assert "| decode: output tokens/s (mean) | tok/s | 50.0 | 25.0 | 2.00 |" in md
    paths = write_report(report, tmp_path, plots=False)
    assert (tmp_path / "results.json").exists() and paths[1].read_text().startswith("# Bench")
