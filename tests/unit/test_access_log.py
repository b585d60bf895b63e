"""The access line over a FakeEngine: its fields, the tenant fingerprint, never a key, prompt
text only with log_prompts, and a cut stream still logged."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from litestar.testing import TestClient

from hugind.api.auth import tenant_of
from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread

KEY = "client-key-secret-0001"
MARKER = "PROMPT-MARKER-7731"
CHAT = {"model": "fake-alias", "messages": [{"role": "user", "content": f"say {MARKER}"}]}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hugind.access"]


def run(caplog: pytest.LogCaptureFixture, body: dict[str, object], engine: FakeEngine | None = None,
        **server: object) -> logging.LogRecord:
    app = create_app(parse_config({"server": server}), engine=engine or FakeEngine())
    headers = {"x-request-id": "log-1"}
    if server.get("api_keys"):
        headers["authorization"] = f"Bearer {KEY}"
    with caplog.at_level(logging.DEBUG, logger="hugind.access"), TestClient(app) as c:
        r = c.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
    (line,) = [r for r in access_lines(caplog) if r.path == "/v1/chat/completions"]
    return line


def test_fields_of_a_chat_request(caplog: pytest.LogCaptureFixture) -> None:
    line = run(caplog, CHAT, api_keys=[KEY])
    assert line.levelno == logging.INFO
    assert line.getMessage() == "POST /v1/chat/completions 200"
    fields = {k: getattr(line, k) for k in (
        "request_id", "method", "path", "status", "model", "tenant", "prompt_tokens",
        "cached_tokens", "completion_tokens", "finish_reason")}
    assert fields == {"request_id": "log-1", "method": "POST", "path": "/v1/chat/completions",
                      "status": 200, "model": "fake", "tenant": tenant_of(KEY),
                      "prompt_tokens": fields["prompt_tokens"], "cached_tokens": 0,
                      "completion_tokens": 5, "finish_reason": "stop"}
    assert fields["prompt_tokens"] > 0
    assert line.ttft_ms >= 0 and line.duration_ms >= line.ttft_ms
    text = repr(vars(line))
    assert MARKER not in text and KEY not in text
    assert not hasattr(line, "prompt") and not hasattr(line, "completion")


def test_prompts_and_completions_only_with_log_prompts(caplog: pytest.LogCaptureFixture) -> None:
    line = run(caplog, CHAT, log_prompts=True)
    assert MARKER in line.prompt
    assert line.completion == ["Hello there, friend."]
    assert line.tenant == "anonymous"


def test_streamed_request_is_logged_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    line = run(caplog, {**CHAT, "stream": True, "n": 2})
    assert line.completion_tokens == 10 and line.finish_reason == "stop"
    assert not hasattr(line, "complete")


def test_a_stream_cut_by_the_client_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(["w"] * 200, delay_s=0.02)
    app = create_app(parse_config({}), engine=engine)
    with caplog.at_level(logging.INFO, logger="hugind.access"), serve_in_thread(app) as url:
        with httpx.stream("POST", url + "/v1/chat/completions",
                          json={**CHAT, "stream": True}, timeout=10) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n == 8:
                    break  # leave after a few tokens
        for _ in range(200):
            if any(r.path == "/v1/chat/completions" for r in access_lines(caplog)):
                break
            time.sleep(0.02)
    (line,) = [r for r in access_lines(caplog) if r.path == "/v1/chat/completions"]
    assert line.status == 200 and line.complete is False
    assert line.completion_tokens is None and line.ttft_ms is not None


def test_probes_are_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(parse_config({}), engine=FakeEngine())
    with caplog.at_level(logging.DEBUG, logger="hugind.access"), TestClient(app) as c:
        for path in ("/health", "/health/live", "/health/ready", "/metrics"):
            assert c.get(path).status_code == 200
        c.get("/v1/models")
    levels = {r.path: r.levelno for r in access_lines(caplog)}
    assert levels == {"/health": logging.DEBUG, "/health/live": logging.DEBUG,
                      "/health/ready": logging.DEBUG, "/metrics": logging.DEBUG,
                      "/v1/models": logging.INFO}


def test_log_prompts_follows_the_config_in_force(caplog: pytest.LogCaptureFixture) -> None:
    from hugind.api.settings import Settings

    app = create_app(parse_config({}), engine=FakeEngine())
    app.state.live.settings = Settings.from_config(parse_config({"server": {"log_prompts": True}}))
    with caplog.at_level(logging.INFO, logger="hugind.access"), TestClient(app) as c:
        c.post("/v1/chat/completions", json=CHAT)
    (line,) = [r for r in access_lines(caplog) if r.path == "/v1/chat/completions"]
    assert MARKER in line.prompt


def test_client_text_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    from hugind.logs import TextFormatter

    app = create_app(parse_config({}), engine=FakeEngine())
    with caplog.at_level(logging.INFO, logger="hugind.access"), TestClient(app) as c:
        c.get("/v1/x%0A2026-01-01 INFO hugind.access: forged")
    (line,) = [r for r in access_lines(caplog) if r.path.startswith("/v1/x")]
    assert line.path == "/v1/x\\x0a2026-01-01 INFO hugind.access: forged"
    assert "\n" not in TextFormatter().format(line)
