"""/health, /health/live, /health/ready: public, states only, readiness follows preload."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from hugind.api.runtime import Runtime
from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import ModelInfo
from tests.fakes import FakeEngine


class StatesEngine(FakeEngine):
    """Models in given states; the second is not preloaded."""

    def __init__(self, first: str, second: str = "unloaded") -> None:
        super().__init__()
        self.first, self.second = first, second

    def models(self) -> list[ModelInfo]:
        gen, embed = super().models()
        return [ModelInfo(gen.id, gen.aliases, gen.kind, self.first, preload=True,
                          error="/srv/models/x.gguf: bad magic" if self.first == "failed"
                          else None),
                ModelInfo(embed.id, embed.aliases, embed.kind, self.second, preload=False)]

    def stats(self) -> dict[str, object]:
        return {"fake": {"queue_depth": 3, "ram_bytes": 12345}}


def client(engine: FakeEngine, **server: object) -> TestClient:
    return TestClient(create_app(parse_config({"server": server}), engine=engine))


@pytest.mark.parametrize(("first", "second", "ready"), [
    ("ready", "unloaded", 200),  # a model loaded on demand never blocks readiness
    ("ready", "ready", 200),
    ("ready", "loading", 200),
    ("loading", "ready", 503),
    ("restarting", "unloaded", 503),
    ("failed", "unloaded", 503),
    ("unloaded", "unloaded", 503),  # preloaded but not loaded yet
])
def test_ready_follows_the_preloaded_models(first: str, second: str, ready: int) -> None:
    with client(StatesEngine(first, second)) as c:
        live = c.get("/health/live")
        r = c.get("/health/ready")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert r.status_code == ready
    if ready == 503:
        assert r.headers["retry-after"] == "5"
        assert r.json()["status"] in {"loading", "restarting", "failed"}
    else:
        assert r.json() == {"status": "ok"}


def test_ready_says_draining_while_live_stays_up() -> None:
    app = create_app(parse_config({}), engine=StatesEngine("ready", "ready"))
    with TestClient(app) as c:
        Runtime.of(c).draining = True  # type: ignore[arg-type]
        assert c.get("/health/live").status_code == 200
        r = c.get("/health/ready")
    assert r.status_code == 503 and r.json() == {"status": "draining"}
    assert r.headers["retry-after"]


def test_health_reveals_states_only() -> None:
    with client(StatesEngine("failed")) as c:
        r = c.get("/health")
    assert r.status_code == 503
    assert r.json() == {"status": "failed", "models": [
        {"id": "fake", "kind": "generate", "state": "failed"},
        {"id": "fake-embed", "kind": "embed", "state": "unloaded"}]}
    assert "/srv" not in r.text and "12345" not in r.text


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_probes_need_no_key(path: str) -> None:
    with client(StatesEngine("ready", "ready"), api_keys=["client-0001"],
                admin_keys=["admin-0001"]) as c:
        assert c.get(path).status_code == 200
