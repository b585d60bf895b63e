"""Config reload (what SIGHUP runs) over real HTTP with a FakeEngine: keys, admin keys, limits
and providers change in place; a broken file changes nothing; models need a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from litestar import Request, post

from hugind.api.reload import reload_config
from hugind.api.settings import Live
from hugind.app import create_app
from hugind.config import load_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread

OLD, NEW, ADMIN = "reload-old-key-0001", "reload-new-key-0002", "reload-admin-0003"
CHAT = {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}]}


@post("/test/reload", opt={"public": True}, status_code=200)
async def trigger_reload(request: Request) -> dict[str, bool]:
    """Test-only: run the SIGHUP path on the server's loop (signals need the main thread)."""
    return {"ok": reload_config(Live.of(request), request.app.state.test_config_path)}


@contextmanager
def _server(tmp_path: Path, cfg: dict[str, Any]) -> Iterator[tuple[httpx.Client, Path]]:
    with _app_server(tmp_path, cfg) as (client, path, _live):
        yield client, path


@contextmanager
def _app_server(tmp_path: Path, cfg: dict[str, Any]) -> Iterator[tuple[httpx.Client, Path,
                                                                         Live]]:
    path = tmp_path / "hugind.yaml"
    path.write_text(yaml.safe_dump(cfg))
    app = create_app(load_config(path), engine=FakeEngine(), base_dir=tmp_path,
                     config_path=path)
    app.register(trigger_reload)
    app.state.test_config_path = path
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        yield client, path, app.state.live


def _reload(client: httpx.Client, path: Path, cfg: dict[str, Any] | str) -> bool:
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return bool(client.post("/test/reload").json()["ok"])


def _models(client: httpx.Client, key: str) -> int:
    return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def test_reload_rotates_client_and_admin_keys_and_limits(tmp_path: Path) -> None:
    with _app_server(tmp_path, {"server": {"api_keys": [OLD]}}) as (client, path, live):
        assert _models(client, OLD) == 200 and _models(client, NEW) == 401
        assert client.get("/admin/models", headers={"Authorization": f"Bearer {OLD}"}
                          ).status_code == 403
        new = {"server": {"api_keys": [NEW], "admin_keys": [ADMIN], "log_prompts": True,
                          "metrics_public": True, "rate_limits": {"requests_per_minute": 2}}}
        assert _reload(client, path, new)
        server = live.settings.config.server
        assert server.log_prompts and server.metrics_public
        assert _models(client, OLD) == 401
        assert _models(client, NEW) == 200
        assert client.get("/admin/models", headers={"Authorization": f"Bearer {ADMIN}"}
                          ).status_code == 200
        assert _models(client, NEW) == 200
        assert _models(client, NEW) == 429  # the new limit holds at once


def test_a_broken_config_is_refused_and_the_old_one_stays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _server(tmp_path, {"server": {"api_keys": [OLD]}}) as (client, path):
        caplog.set_level(logging.INFO, logger="hugind.reload")
        assert not _reload(client, path, {"server": {"api_keys": [NEW], "port": "eighty"}})
        assert not _reload(client, path, "server: [unclosed\n")
        assert not _reload(client, path, {"server": {"api_key_files": ["missing.keys"]}})
        assert _models(client, OLD) == 200 and _models(client, NEW) == 401
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    first = errors[0].getMessage()
    assert first.startswith(f"hugind: config error: {path}: server.port: ")
    assert "\n" not in first and NEW not in caplog.text and OLD not in caplog.text
    assert "invalid YAML" in errors[1].getMessage()
    assert "server.api_key_files[0]" in errors[2].getMessage()


def test_model_and_bind_changes_wait_for_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _server(tmp_path, {"server": {"api_keys": [OLD]}}) as (client, path):
        caplog.set_level(logging.INFO, logger="hugind.reload")
        changed = {"server": {"api_keys": [NEW], "port": 9999},
                   "models": [{"id": "other", "path": "other.gguf"}]}
        assert _reload(client, path, changed)
        assert _models(client, NEW) == 200  # the keys changed all the same
        ids = [m["id"] for m in client.get(
            "/v1/models", headers={"Authorization": f"Bearer {NEW}"}).json()["data"]]
        assert "other" not in ids
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("server.port" in w and "models" in w and "restart" in w for w in warnings)


class Upstream:
    """An OpenAI-ish upstream that streams five chunks named after itself; with ``gated`` the
    first stream waits at its third chunk until ``gate`` is set."""

    def __init__(self, name: str, *, gated: bool = False) -> None:
        self.name = name
        self.gated = gated
        self.gate = threading.Event()
        self.midway = threading.Event()
        self.seen = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.seen += 1
        gated = self.gated and self.seen == 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(5):
            if gated and i == 2:
                self.midway.set()
                await asyncio.to_thread(self.gate.wait, 30)
            data = json.dumps({"choices": [{"delta": {"content": f"{self.name}{i}"}}]})
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _provider(url: str) -> dict[str, Any]:
    return {"name": "up", "base_url": url + "/v1", "models": ["remote-model"]}


def test_providers_swap_without_cutting_a_running_relay(tmp_path: Path) -> None:
    first, second = Upstream("a", gated=True), Upstream("b")
    with serve_in_thread(first) as url_a, serve_in_thread(second) as url_b, \
            _app_server(tmp_path, {"providers": [_provider(url_a)]}) as (client, path, live):
        result: dict[str, str] = {}

        def stream() -> None:
            with client.stream("POST", "/v1/chat/completions",
                               json={**CHAT, "stream": True}) as r:
                result["body"] = r.read().decode()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.midway.wait(10)
        assert _reload(client, path, {"providers": [_provider(url_b)]})
        assert live.providers is not None and live.providers.retired == 1  # still relaying
        r = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert "b0" in r.text and second.seen == 1  # new requests go to the new provider
        first.gate.set()
        reader.join(10)
        assert all(f"a{i}" in result["body"] for i in range(5))
        assert result["body"].rstrip().endswith("data: [DONE]")
        assert first.seen == 1
        deadline = time.monotonic() + 5
        while live.providers.retired and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.providers.retired == 0  # closed once its last relay ended
