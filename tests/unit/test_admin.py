"""Admin keys and the admin API over a FakeEngine: who may call what, and what it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from hugind.api.auth import auth_guard
from hugind.api.handlers import to_openai_error
from hugind.api.settings import Live, Settings
from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import ModelInfo
from hugind.errors import ModelNotFoundError
from tests.fakes import FakeEngine

CLIENT = "client-key-0001"
ADMIN = "admin-key-0001"


class LifecycleEngine(FakeEngine):
    """A FakeEngine whose models load and unload on request."""

    def __init__(self) -> None:
        super().__init__()
        self.states = {"fake": "ready", "fake-embed": "unloaded"}

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(m.id, m.aliases, m.kind, self.states[m.id], size_bytes=1234,
                          preload=m.id == "fake", load_seconds=0.5)
                for m in super().models()]

    async def load_model(self, model: str) -> ModelInfo:
        return self._set(model, "ready")

    async def unload_model(self, model: str) -> ModelInfo:
        return self._set(model, "unloaded")

    def _set(self, model: str, state: str) -> ModelInfo:
        found = self.resolve_model(model)
        if found is None:
            raise ModelNotFoundError(model)
        self.states[found.id] = state
        return next(m for m in self.models() if m.id == found.id)


def _client(server: dict[str, Any], tmp_path: Path | None = None) -> TestClient[Litestar]:
    return TestClient(create_app(parse_config({"server": server}), engine=LifecycleEngine(),
                                 base_dir=tmp_path))


def _bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


ADMIN_PATHS = [("GET", "/admin/models"), ("GET", "/admin/system"),
               ("POST", "/admin/models/fake/load"), ("POST", "/admin/models/fake/unload"),
               ("GET", "/v1/sessions/stats")]


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
@pytest.mark.parametrize(("key", "status", "code"), [
    (None, 401, "missing_api_key"), ("wrong-key", 401, "invalid_api_key"),
    (CLIENT, 403, "admin_key_required"), (ADMIN, 200, None)])
def test_admin_endpoints_need_an_admin_key(method: str, path: str, key: str | None,
                                           status: int, code: str | None,
                                           tmp_path: Path) -> None:
    with _client({"api_keys": [CLIENT], "admin_keys": [ADMIN]}, tmp_path) as client:
        r = client.request(method, path, headers=_bearer(key))
    assert r.status_code == status, r.text
    if code is not None:
        error = r.json()["error"]
        assert error["code"] == code
        assert error["type"] == ("permission_error" if status == 403
                                 else "authentication_error")
        assert CLIENT not in r.text and ADMIN not in r.text


def test_an_admin_key_is_no_client_key() -> None:
    with _client({"api_keys": [CLIENT], "admin_keys": [ADMIN]}) as client:
        r = client.get("/v1/models", headers=_bearer(ADMIN))
        assert r.status_code == 401
        assert client.get("/v1/models", headers=_bearer(CLIENT)).status_code == 200


def test_client_keys_without_admin_keys_close_admin_with_a_hint() -> None:
    with _client({"api_keys": [CLIENT]}) as client:
        r = client.get("/admin/models", headers=_bearer(CLIENT))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "admin_keys_not_set"
        assert "server.admin_keys" in r.json()["error"]["message"]
        assert client.get("/admin/models").status_code == 401


def test_no_keys_at_all_leaves_admin_open() -> None:
    with _client({}) as client:
        assert client.get("/admin/models").status_code == 200
        assert client.get("/v1/sessions/stats").status_code == 200


def test_admin_keys_alone_guard_admin_but_leave_clients_anonymous() -> None:
    with _client({"admin_keys": [ADMIN]}) as client:
        assert client.get("/admin/models").status_code == 401
        assert client.get("/admin/models", headers=_bearer(ADMIN)).status_code == 200
        assert client.get("/v1/models").status_code == 200


@pytest.mark.parametrize(("public", "status"), [(True, 200), (False, 401)])
def test_open_when_follows_the_server_flag(public: bool, status: int) -> None:
    @get("/scrape", opt={"admin": True, "open_when": "metrics_public"}, sync_to_thread=False)
    def scrape() -> str:
        return "ok"

    config = parse_config({"server": {"api_keys": [CLIENT], "admin_keys": [ADMIN],
                                      "metrics_public": public}})
    app = Litestar([scrape], guards=[auth_guard], exception_handlers={Exception: to_openai_error})
    app.state.live = Live(Settings.from_config(config), Path.cwd())
    with TestClient(app) as client:
        assert client.get("/scrape").status_code == status
        assert client.get("/scrape", headers=_bearer(ADMIN)).status_code == 200


def test_admin_models_lists_lifecycle_fields() -> None:
    with _client({}) as client:
        rows = client.get("/admin/models").json()["data"]
    assert [r["id"] for r in rows] == ["fake", "fake-embed"]
    assert rows[1] == {"id": "fake-embed", "object": "model", "aliases": [], "kind": "embed",
                       "state": "unloaded", "preload": False, "size_bytes": 1234,
                       "loaded_since": None, "last_used": None, "load_seconds": 0.5,
                       "error": None}


def test_load_and_unload_call_the_engine() -> None:
    with _client({}) as client:
        r = client.post("/admin/models/fake-embed/load")
        assert r.status_code == 200 and r.json()["state"] == "ready"
        r = client.post("/admin/models/fake-alias/unload")
        assert r.status_code == 200 and r.json()["id"] == "fake"
        assert r.json()["state"] == "unloaded"
        r = client.post("/admin/models/nope/load")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_admin_system_reports_host_figures(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"x" * 1000)
    with _client({}, tmp_path) as client:
        body = client.get("/admin/system").json()
    assert body["uptime_s"] >= 0 and body["uptime"].count(":") == 2
    assert body["cpu"]["count"] >= 1 and body["cpu"]["percent"] >= 0
    assert body["memory"]["process_rss_bytes"] > 10_000_000
    assert body["memory"]["total_bytes"] >= body["memory"]["available_bytes"] > 0
    models, sessions = body["disk"]["models"], body["disk"]["sessions"]
    assert models["size_bytes"] == 1000 and models["exists"]
    assert not sessions["exists"] and sessions["size_bytes"] == 0
    assert models["disk_free_bytes"] > 0 and models["disk_total_bytes"] > 0
    assert "gpus" in body  # null on a box without an NVIDIA GPU


def test_admin_paths_are_never_forwarded() -> None:
    cfg = {"server": {}, "providers": [{"name": "up", "base_url": "http://127.0.0.1:9",
                                        "models": ["*"]}]}
    with TestClient(create_app(parse_config(cfg), engine=LifecycleEngine())) as client:
        r = client.get("/admin/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
        assert client.get("/admin/providers").status_code == 200
