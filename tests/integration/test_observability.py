"""Metrics and logs on the real model and real HTTP: /metrics moves after a chat and a streamed
completion, every log line of `hugind serve` in JSON mode parses and carries the request id,
and prompt text is logged only with log_prompts."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start(gemma_path: Path, workdir: Path, name: str, **server: Any) -> HugindProcess:
    cfg = model_config(gemma_path, parallel=2)
    cfg["models"] = cfg["models"][:1]
    cfg["server"].update({"log_format": "json", "metrics_public": True, **server})
    return HugindProcess(cfg, workdir, name=name).start()


@pytest.fixture(scope="module")
def json_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[HugindProcess]:
    proc = start(gemma_path, tmp_path_factory.mktemp("obs"), "hugind-json")
    yield proc
    proc.stop()


def scrape(url: str) -> Samples:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def chat(url: str, text: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "gemma", "messages": [{"role": "user", "content": text}],
        "max_tokens": 8, "temperature": 0})


def streamed_completion(url: str) -> dict[str, Any]:
    usage: dict[str, Any] = {}
    with httpx.stream("POST", url + "/v1/completions", timeout=60, json={
            "model": "gemma", "prompt": "Once upon a time", "max_tokens": 12,
            "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    return usage


def access_line(proc: HugindProcess, request_id: str) -> dict[str, Any]:
    for _ in range(100):
        for line in proc.logs().splitlines():
            entry = json.loads(line)
            if entry["logger"] == "hugind.access" and entry.get("request_id") == request_id:
                return entry  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def test_metrics_move_after_a_chat_and_a_streamed_completion(json_server: HugindProcess,
                                                             ) -> None:
    url = json_server.url
    before = scrape(url)
    answer = chat(url, "Name a colour.").json()["usage"]
    streamed = streamed_completion(url)
    after = scrape(url)
    assert streamed["completion_tokens"] == 12
    for endpoint in ("/v1/chat/completions", "/v1/completions"):
        assert delta(before, after, "hugind_requests_total", endpoint=endpoint, model="gemma",
                     status="200") == 1
        assert delta(before, after, "hugind_request_duration_seconds_count",
                     endpoint=endpoint) == 1
    assert delta(before, after, "hugind_time_to_first_token_seconds_count", model="gemma") == 2
    assert delta(before, after, "hugind_time_to_first_token_seconds_sum", model="gemma") > 0
    # every token after a sequence's first is one inter-token gap
    gaps = answer["completion_tokens"] - 1 + streamed["completion_tokens"] - 1
    assert delta(before, after, "hugind_inter_token_latency_seconds_count", model="gemma") \
        == gaps
    assert delta(before, after, "hugind_generation_tokens_total", model="gemma") == \
        answer["completion_tokens"] + streamed["completion_tokens"]
    assert delta(before, after, "hugind_prompt_tokens_total", model="gemma") == \
        answer["prompt_tokens"] + streamed["prompt_tokens"]
    assert after[("hugind_model_state", frozenset({"model": "gemma", "state": "ready"}.items()))] \
        == 1
    assert ("hugind_queue_depth", frozenset({"model": "gemma"}.items())) in after
    assert after[("hugind_model_load_seconds", frozenset({"model": "gemma"}.items()))] > 0


def test_json_log_lines_parse_carry_the_request_id_and_no_prompt(json_server: HugindProcess,
                                                                 ) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    r = chat(json_server.url, f"Repeat {marker}", **{"X-Request-Id": "it-trace-0001"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "it-trace-0001"
    bad = chat(json_server.url, "hi", **{"X-Request-Id": "not valid, has spaces"})
    generated = bad.headers["x-request-id"]
    assert re.fullmatch(r"req-[0-9a-f]{24}", generated)
    line = access_line(json_server, "it-trace-0001")
    usage = r.json()["usage"]
    assert (line["method"], line["path"], line["status"], line["model"]) == \
        ("POST", "/v1/chat/completions", 200, "gemma")
    assert (line["prompt_tokens"], line["completion_tokens"], line["cached_tokens"]) == \
        (usage["prompt_tokens"], usage["completion_tokens"], 0)
    assert line["finish_reason"] == "length" and line["tenant"] == "anonymous"
    assert 0 < line["ttft_ms"] <= line["duration_ms"]
    assert access_line(json_server, generated)["status"] == 200
    logs = json_server.logs()
    entries = [json.loads(raw) for raw in logs.splitlines()]  # every line, llama.cpp's too
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert marker not in logs
    assert "attach_threadpool" not in logs  # llama.cpp's debug chatter is below info
    assert any(e["logger"] == "llama.cpp" for e in entries)  # its warnings come through


def test_log_prompts_puts_prompt_and_completion_in_the_access_line(
        gemma_path: Path, tmp_path: Path) -> None:
    proc = start(gemma_path, tmp_path, "hugind-prompts", log_prompts=True)
    try:
        marker = f"MARKER-{uuid.uuid4().hex}"
        r = chat(proc.url, f"Repeat {marker}", **{"X-Request-Id": "it-prompts-1"})
        line = access_line(proc, "it-prompts-1")
    finally:
        proc.stop()
    assert marker in line["prompt"]
    assert line["completion"] == [r.json()["choices"][0]["message"]["content"]]
