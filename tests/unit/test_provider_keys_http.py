"""The key-management and activity endpoints over HTTP: admin keys only, no key ever echoed or
logged, runtime keys kept across a SIGHUP reload and a restart, ``client_key_header``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hugind.app import create_app
from hugind.config import ConfigError, load_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread
from tests.unit.test_reload import _app_server

CLIENT = "client-key-0001"
ADMIN = "admin-key-0001"
SECRET = "http-test-secret-000001"
YAML_KEY = "sk-yaml-YYYYYYYYYYYYYYYYYYYY-y001"
RUNTIME = "sk-runtime-RRRRRRRRRRRRRRRR-r002"
REQUEST_KEY = "sk-request-QQQQQQQQQQQQQQQ-q003"
HEADER = "X-OpenAI-API-Key"


class Echo:
    """An upstream that answers 200 and records the key and headers of each request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        body = json.dumps({"id": "x", "object": "chat.completion", "choices": []}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def keys(self) -> list[str]:
        return [h.get("authorization", "").removeprefix("Bearer ") for h in self.seen]


def _config(url: str, **server: Any) -> dict[str, Any]:
    return {"server": {"api_keys": [CLIENT], "admin_keys": [ADMIN], "secret_key": SECRET,
                       **server},
            "providers": [{"name": "openai", "base_url": f"{url}/v1", "api_keys": [YAML_KEY],
                           "models": ["gpt-*"], "client_key_header": HEADER}]}


@contextmanager
def _hugind(tmp_path: Path, cfg: dict[str, Any]) -> Iterator[httpx.Client]:
    """Hugind on a FakeEngine, from a config file that ``/test/reload`` re-reads."""
    with _app_server(tmp_path, cfg) as (client, _path, _live):
        yield client


@pytest.fixture
def upstream() -> Iterator[tuple[Echo, str]]:
    echo = Echo()
    with serve_in_thread(echo) as url:
        yield echo, url


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={**_as(CLIENT), **headers},
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


ROUTES = [("GET", "/admin/providers/openai/keys", None),
          ("POST", "/admin/providers/openai/keys", {"api_key": RUNTIME}),
          ("PATCH", "/admin/providers/openai/keys/key_x", {"is_selected": True}),
          ("DELETE", "/admin/providers/openai/keys/key_x", None),
          ("DELETE", "/admin/providers/openai/keys", None),
          ("GET", "/admin/activity", None)]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_client_keys_are_refused(upstream: tuple[Echo, str], tmp_path: Path, method: str,
                                 path: str, body: dict[str, Any] | None) -> None:
    with _hugind(tmp_path, _config(upstream[1])) as client:
        r = client.request(method, path, headers=_as(CLIENT), json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required"
        assert client.request(method, path, json=body).status_code == 401
    assert not (tmp_path / "sessions" / "provider-keys.json").exists()


def test_add_select_delete_and_the_activity_log(upstream: tuple[Echo, str], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo, url = upstream
    with _hugind(tmp_path, _config(url)) as client:
        added = client.post("/admin/providers/openai/keys", headers=_as(ADMIN),
                            json={"api_key": RUNTIME, "name": "spare"})
        assert added.status_code == 201, added.text
        row = added.json()
        assert row["source"] == "runtime" and row["fingerprint"] == "..." + RUNTIME[-4:]
        assert set(row) == {"id", "name", "fingerprint", "selected", "state", "cooldown_until",
                            "created_at", "source"}
        listed = client.get("/admin/providers/openai/keys", headers=_as(ADMIN)).json()["data"]
        assert [k["source"] for k in listed] == ["yaml", "runtime"]
        patched = client.patch(f"/admin/providers/openai/keys/{row['id']}", headers=_as(ADMIN),
                               json={"is_selected": True, "name": "primary"})
        assert patched.json()["selected"] is True and patched.json()["name"] == "primary"
        assert _chat(client).status_code == 200
        assert echo.keys()[-1] == RUNTIME  # the selected key is tried first
        yaml_id = listed[0]["id"]
        assert client.delete(f"/admin/providers/openai/keys/{yaml_id}",
                             headers=_as(ADMIN)).status_code == 409
        assert client.patch(f"/admin/providers/openai/keys/{yaml_id}", headers=_as(ADMIN),
                            json={"name": "x"}).json()["error"]["code"] == "read_only_key"
        assert client.delete(f"/admin/providers/openai/keys/{row['id']}",
                             headers=_as(ADMIN)).json() == {"id": row["id"], "deleted": True}
        activity = client.get("/admin/activity", headers=_as(ADMIN)).json()["data"]
        assert [e["action"] for e in activity] == ["ADD", "SELECT", "DELETE"]
        assert set(activity[0]) == {"time", "action", "provider", "key", "description"}
        only = client.get("/admin/activity", headers=_as(ADMIN),
                          params={"action": "select", "provider": "openai"}).json()["data"]
        assert [e["action"] for e in only] == ["SELECT"]
        later = client.get("/admin/activity", headers=_as(ADMIN),
                           params={"from": time.time() + 60}).json()["data"]
        assert later == []
        iso = client.get("/admin/activity", headers=_as(ADMIN),
                         params={"to": "2000-01-01T00:00:00Z", "limit": 5}).json()["data"]
        assert iso == []
        bad = client.get("/admin/activity", headers=_as(ADMIN), params={"action": "nope"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "action"
        assert client.get("/admin/providers", headers=_as(ADMIN)).status_code == 200
        everything = [client.get(p, headers=_as(ADMIN)).text for p in
                      ("/admin/providers", "/admin/activity", "/admin/providers/openai/keys")]
    store = (tmp_path / "sessions" / "provider-keys.json").read_bytes()
    for secret in (RUNTIME, YAML_KEY):
        assert secret not in caplog.text and secret not in "".join(everything)
        assert secret.encode() not in store


def test_adding_without_a_secret_key_is_refused(upstream: tuple[Echo, str],
                                                tmp_path: Path) -> None:
    cfg = _config(upstream[1])
    del cfg["server"]["secret_key"]
    with _hugind(tmp_path, cfg) as client:
        r = client.post("/admin/providers/openai/keys", headers=_as(ADMIN),
                        json={"api_key": RUNTIME})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "secret_key_not_set"
    assert "server.secret_key" in r.json()["error"]["message"]
    assert RUNTIME not in r.text


def test_runtime_keys_survive_a_reload_and_a_restart(upstream: tuple[Echo, str],
                                                     tmp_path: Path) -> None:
    echo, url = upstream
    cfg = _config(url)
    with _hugind(tmp_path, cfg) as client:
        key_id = client.post("/admin/providers/openai/keys", headers=_as(ADMIN),
                             json={"api_key": RUNTIME}).json()["id"]
        client.patch(f"/admin/providers/openai/keys/{key_id}", headers=_as(ADMIN),
                     json={"is_selected": True})
        cfg["providers"][0]["cooldown_s"] = 5  # a real change: a new router
        (tmp_path / "hugind.yaml").write_text(yaml.safe_dump(cfg))
        assert client.post("/test/reload").json()["ok"] is True
        rows = client.get("/admin/providers/openai/keys", headers=_as(ADMIN)).json()["data"]
        assert [(r["id"], r["selected"]) for r in rows][1] == (key_id, True)
        assert _chat(client).status_code == 200 and echo.keys()[-1] == RUNTIME
    with _hugind(tmp_path, cfg) as client:  # a restart
        rows = client.get("/admin/providers/openai/keys", headers=_as(ADMIN)).json()["data"]
        assert [(r["id"], r["selected"]) for r in rows][1] == (key_id, True)
        actions = [e["action"] for e in
                   client.get("/admin/activity", headers=_as(ADMIN)).json()["data"]]
        assert actions == ["ADD", "SELECT"]


def test_a_restart_with_another_secret_is_a_config_error(upstream: tuple[Echo, str],
                                                         tmp_path: Path) -> None:
    cfg = _config(upstream[1])
    with _hugind(tmp_path, cfg) as client:
        client.post("/admin/providers/openai/keys", headers=_as(ADMIN), json={"api_key": RUNTIME})
    cfg["server"]["secret_key"] = "some-other-secret-00001"
    (tmp_path / "hugind.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"server\.secret_key: does not decrypt"):
        create_app(load_config(tmp_path / "hugind.yaml"), engine=FakeEngine(),
                   base_dir=tmp_path)


def test_request_key_first_never_forwarded_logged_or_echoed(
    upstream: tuple[Echo, str], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo, url = upstream
    with _hugind(tmp_path, _config(url, log_prompts=True)) as client:
        r = _chat(client, **{HEADER: REQUEST_KEY})
        metrics = client.get("/metrics", headers=_as(ADMIN)).text
        admin = client.get("/admin/providers", headers=_as(ADMIN)).text
    assert r.status_code == 200
    assert echo.keys() == [REQUEST_KEY]
    assert HEADER.lower() not in echo.seen[0]
    access = [rec for rec in caplog.records if rec.name == "hugind.access"]
    assert access  # the access line was written, and holds no key
    for text in (caplog.text, metrics, admin, r.text, repr(dict(r.headers)),
                 repr([vars(rec) for rec in access])):
        assert REQUEST_KEY not in text and REQUEST_KEY[-4:] not in text
