"""Model lifecycle on the real model, through `hugind serve`: models loaded on first use,
unloaded after ``ttl_s`` idle (the process's RSS drops) or least-recently-used first under
``max_loaded_models``, a broken file failing alone, request timeouts, and SIGTERM draining."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"


def _states(url: str) -> dict[str, str]:
    r = httpx.get(url + "/v1/models", timeout=5)
    return {m["id"]: m["meta"]["state"] for m in r.json()["data"]
            if "meta" in m and not m["meta"].get("alias_of")}


def _wait_state(url: str, model: str, state: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _states(url).get(model) == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{model} never became {state}: {_states(url)}")


def _complete(url: str, model: str = "gemma", **extra: Any) -> httpx.Response:
    body = {"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(url + "/v1/completions", json=body, timeout=120)


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _settled(url: str) -> bool:
    try:
        states = _states(url)
    except httpx.HTTPError:
        return False
    return bool(states) and all(s not in ("loading", "restarting") for s in states.values())


def test_idle_model_unloads_frees_memory_and_reloads(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path, ttl_s=2)
    cfg["models"] = cfg["models"][:1]
    proc = HugindProcess(cfg, tmp_path, name="ttl").start()
    try:
        assert proc.proc is not None
        first = _complete(proc.url)
        assert first.status_code == 200, first.text
        loaded = _rss_mib(proc.proc.pid)
        _wait_state(proc.url, "gemma", "unloaded", timeout_s=30)
        time.sleep(0.5)
        unloaded = _rss_mib(proc.proc.pid)
        # The weights (~240 MiB) and the KV cache leave the process.
        assert loaded - unloaded > 150, (loaded, unloaded)
        again = _complete(proc.url)
        assert again.status_code == 200, again.text
        assert again.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
        assert _states(proc.url)["gemma"] == "ready"
    finally:
        proc.stop()


def test_lazy_load_and_lru_eviction(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path, preload=False)
    second = {**cfg["models"][0], "id": "gemma-b", "aliases": []}
    cfg["models"] = [cfg["models"][0], second]
    cfg["server"]["max_loaded_models"] = 1
    proc = HugindProcess(cfg, tmp_path, name="lazy").start(ready=_settled)
    try:
        assert _states(proc.url) == {"gemma": "unloaded", "gemma-b": "unloaded"}
        a = _complete(proc.url, "gemma")  # one slow request: it loads the model
        assert a.status_code == 200, a.text
        assert _states(proc.url) == {"gemma": "ready", "gemma-b": "unloaded"}
        b = _complete(proc.url, "gemma-b")
        assert b.status_code == 200, b.text
        assert _states(proc.url) == {"gemma": "unloaded", "gemma-b": "ready"}
        assert b.json()["choices"][0]["text"] == a.json()["choices"][0]["text"]
        assert _complete(proc.url, "gemma").status_code == 200
        assert _states(proc.url) == {"gemma": "ready", "gemma-b": "unloaded"}
    finally:
        proc.stop()


def test_broken_model_fails_alone(gemma_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "secret-dir" / "broken.gguf"
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\0" * 4096)
    cfg = model_config(gemma_path)
    cfg["models"] = [cfg["models"][0],
                     {"id": "broken", "path": str(broken), "n_ctx": 512},
                     {"id": "missing", "path": str(tmp_path / "secret-dir" / "gone.gguf")}]
    proc = HugindProcess(cfg, tmp_path, name="broken").start(ready=_settled)
    try:
        states = _states(proc.url)
        assert states == {"gemma": "ready", "broken": "failed", "missing": "failed"}
        assert _complete(proc.url).status_code == 200
        for model in ("broken", "missing"):
            r = _complete(proc.url, model)
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "model_not_ready"
            assert "secret-dir" not in r.text and str(tmp_path) not in r.text, r.text
        assert "gone.gguf" in _complete(proc.url, "missing").text
        assert "secret-dir" not in httpx.get(proc.url + "/v1/models").text
    finally:
        proc.stop()


def test_request_timeout_ends_generation_with_length(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path, parallel=1, max_queue=4)
    cfg["models"] = cfg["models"][:1]
    cfg["server"]["request_timeout_s"] = 1.5
    proc = HugindProcess(cfg, tmp_path, name="timeout").start()
    try:
        long = {"max_tokens": 900, "ignore_eos": True}
        results: dict[str, httpx.Response] = {}

        def first() -> None:
            results["first"] = _complete(proc.url, **long)

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.3)
        # The one sequence is busy: this one starts when the first is cut off at its
        # deadline, and is cut off at its own.
        queued = _complete(proc.url, **long)
        t.join()
        for r in (results["first"], queued):
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["finish_reason"] == "length"
            assert 0 < r.json()["usage"]["completion_tokens"] < 900
        # Two generations on one sequence: the second waits in the queue past the request's
        # deadline, while the first is cut off there.
        both = _complete(proc.url, n=2, **long)
        assert both.status_code == 504, both.text
        assert both.json()["error"]["code"] == "request_timeout"
        # Streamed: the stream ends in time with finish_reason length.
        started = time.monotonic()
        finish = None
        with httpx.stream("POST", proc.url + "/v1/completions", timeout=60,
                          json={"model": "gemma", "prompt": PROMPT, "stream": True,
                                **long}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    finish = json.loads(line[6:])["choices"][0]["finish_reason"] or finish
        assert finish == "length"
        assert time.monotonic() - started < 10
    finally:
        proc.stop()


def test_sigterm_drains_then_saves_sessions(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path)
    cfg["models"] = cfg["models"][:1]
    cfg["server"]["shutdown_grace_s"] = 60
    cfg["sessions"]["flush_s"] = 0  # sessions reach disk only at shutdown
    proc = HugindProcess(cfg, tmp_path, name="drain").start()
    assert proc.proc is not None
    finish: list[str] = []
    n_chunks = 0
    # Long enough to hold whole prefill quanta: only an exactly resumable prefix is saved.
    prompt = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(30))
    body = {"model": "gemma", "prompt": prompt, "stream": True, "max_tokens": 60,
            "ignore_eos": True, "temperature": 0, "prompt_cache_key": "drain-user"}
    with httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            n_chunks += 1
            if n_chunks == 3:
                proc.proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                ready = httpx.get(proc.url + "/health/ready", timeout=5)
                assert ready.status_code == 503
                refused = _complete(proc.url)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "shutting_down"
            reason = json.loads(line[6:])["choices"][0]["finish_reason"]
            if reason:
                finish.append(reason)
    assert finish == ["length"]
    assert proc.proc.wait(60) == 0
    saved = list((tmp_path / "sessions" / "gemma").glob("**/*"))
    assert any(f.is_file() and f.stat().st_size > 100_000 for f in saved), saved
    assert "draining" in proc.logs()


def test_second_signal_exits_at_once(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path)
    cfg["models"] = cfg["models"][:1]
    cfg["server"]["shutdown_grace_s"] = 300
    proc = HugindProcess(cfg, tmp_path, name="twice").start()
    assert proc.proc is not None
    body = {"model": "gemma", "prompt": PROMPT, "stream": True, "max_tokens": 900,
            "ignore_eos": True}
    with httpx.stream("POST", proc.url + "/v1/completions", json=body, timeout=120) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.proc.poll() is None  # draining: the stream goes on
        proc.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.proc.wait(15)
    assert time.monotonic() - started < 5
    assert "again: exiting now" in proc.logs()
