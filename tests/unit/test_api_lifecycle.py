"""The HTTP layer's part in fault containment, over a FakeEngine: a client that leaves a
non-streaming request cancels it, and /health reports a restarting model."""

from __future__ import annotations

import time

import httpx
import pytest
from litestar.testing import TestClient

from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import ModelInfo
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread


def test_a_client_leaving_a_non_streaming_request_cancels_it() -> None:
    engine = FakeEngine(["w"] * 50, delay_s=0.05)  # 2.5 s to answer in full
    app = create_app(parse_config({}), engine=engine)
    with serve_in_thread(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/completions", timeout=0.5,
                       json={"model": "fake", "prompt": "hi", "max_tokens": 50})
        deadline = time.monotonic() + 3
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(engine.cancelled) == 1 and not engine.finished
        r = httpx.post(url + "/v1/completions", timeout=10,  # the server is fine after
                       json={"model": "fake", "prompt": "hi", "max_tokens": 3})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "www"
        assert len(engine.finished) == 1


class RestartingEngine(FakeEngine):
    def models(self) -> list[ModelInfo]:
        ready, embed = super().models()
        return [ModelInfo(ready.id, ready.aliases, ready.kind, "restarting",
                          error="the engine worker failed and is being rebuilt"), embed]


def test_health_says_restarting() -> None:
    with TestClient(create_app(parse_config({}), engine=RestartingEngine())) as client:
        r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "restarting"
    assert r.json()["models"][0]["state"] == "restarting"
