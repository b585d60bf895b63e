"""One short, bounded bench run against a real Hugind started by the test.

The harness (``python -m bench``) runs as a subprocess, exactly as a user runs it, against
``hugind serve config/default.yaml`` on a free port; the test then checks the JSON report's
structure and that every measured number is positive.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hugind_bin() -> str:
    local = Path(sys.executable).parent / "hugind"
    found = str(local) if local.exists() else shutil.which("hugind")
    if not found:
        pytest.fail("the hugind command is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def hugind_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Hugind on a free port, ready (``/health`` answers 200), stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("hugind") / "hugind.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_hugind_bin(), "serve", "config/default.yaml", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"hugind exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"hugind not ready after 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and x > 0


@pytest.mark.model
def test_short_bench_run_against_hugind(hugind_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cmd = [
        sys.executable, "-m", "bench", "run",
        "--target", f"hugind={hugind_url},model=gemma-3-270m,embed-model=gemma-3-270m-embed",
        "--scenarios", "decode,prefill,concurrency,sessions,embeddings",
        "--rounds", "1",
        "--decode-tokens", "8",
        "--prefill-sizes", "32",
        "--levels", "1,2",
        "--concurrency-rounds", "1",
        "--concurrency-tokens", "4",
        "--users", "2",
        "--turns", "2",
        "--doc-words", "40",
        "--reply-tokens", "4",
        "--embed-batches", "1,4",
        "--max-time-s", "180",
        "--request-timeout-s", "60",
        "--no-plots",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decode round 1/1 hugind" in proc.stderr  # progress lines

    report = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# Bench results")
    assert report["schema"] == "hugind-bench/1"
    assert report["subject"] == "hugind"
    assert [t["name"] for t in report["targets"]] == ["hugind"]
    assert report["unavailable"] == []
    assert report["machine"]["logical_cpus"] >= 1
    assert report["duration_s"] < 240
    sc = report["scenarios"]
    assert set(sc) == {"decode", "prefill", "concurrency", "sessions", "embeddings"}
    for name, data in sc.items():
        assert data["slots_run"] == data["slots_planned"] > 0, name
        assert data["samples"], name
        assert all(s["ok"] for s in data["samples"]), (name, [s["error"] for s in data["samples"]])

    dec = sc["decode"]["summary"]["hugind"]
    assert dec["requests_ok"] == 1
    assert _positive(dec["mean_output_tokens_per_s"])
    assert _positive(dec["p50_ttft_ms"])
    assert _positive(dec["p50_itl_ms"])
    sample = sc["decode"]["samples"][0]
    assert sample["output_tokens"] > 1
    assert len(sample["itl_ms"]) == sample["content_chunks"] - 1

    pre = sc["prefill"]["summary"]["hugind"]["32"]
    assert _positive(pre["mean_prompt_tokens_per_s"]) and _positive(pre["mean_prompt_tokens"])

    for level in ("1", "2"):
        c = sc["concurrency"]["summary"]["hugind"][level]
        assert _positive(c["mean_aggregate_output_tokens_per_s"])
        assert c["requests_failed"] == 0 and c["requests_cut_off"] == 0
        assert c["requests"] == int(level)

    ses = sc["sessions"]["summary"]["hugind"]
    assert ses["requests_failed"] == 0
    assert _positive(ses["mean_ttft_turn1_ms"]) and _positive(ses["mean_ttft_later_turns_ms"])
    assert _positive(ses["later_over_first_ttft_ratio"])
    assert [p["turn"] for p in ses["per_turn"]] == [1, 2]

    for batch in ("1", "4"):
        assert _positive(sc["embeddings"]["summary"]["hugind"][batch]["mean_inputs_per_s"])

    metrics = {row["metric"] for row in report["headline"]}
    assert "decode: output tokens/s (mean)" in metrics
    assert "sessions: later / turn-1 TTFT" in metrics
