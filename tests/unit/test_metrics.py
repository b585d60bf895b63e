"""/metrics over a FakeEngine: who may read it, bounded labels, engine gauges, counters moving."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import ModelInfo
from hugind.metrics import PROVIDER_FAILOVERS, PROVIDER_REQUESTS
from tests.fakes import FakeEngine
from tests.unit.providers.mock_upstream import Upstream, err, make_router, ok, provider

CLIENT, ADMIN = "client-key-0001", "admin-key-0001"
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "SECRET-PROMPT-TEXT"}]}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


class StatsEngine(FakeEngine):
    def models(self) -> list[ModelInfo]:
        gen, embed = super().models()
        return [ModelInfo(gen.id, gen.aliases, gen.kind, "ready", load_seconds=1.5),
                ModelInfo(embed.id, embed.aliases, embed.kind, "loading", preload=False)]

    def stats(self) -> dict[str, object]:
        return {"fake": {"queue_depth": 3, "active_sequences": 2, "resident_sessions": 1,
                         "ram_sessions": 4, "ram_bytes": 4096, "disk_sessions": 5,
                         "disk_bytes": 8192, "restored_ram": 6, "restored_disk": 7},
                "fake-embed": {"queue_depth": 0, "requests": 1}}


def client(engine: FakeEngine | None = None, **server: object) -> TestClient:
    config = parse_config({"server": server})
    return TestClient(create_app(config, engine=engine or StatsEngine()))


def test_engine_gauges_at_scrape_time() -> None:
    with client() as c:
        text = c.get("/metrics").text
    assert value(text, "hugind_queue_depth", model="fake") == 3
    assert value(text, "hugind_active_sequences", model="fake") == 2
    assert value(text, "hugind_sessions", model="fake", tier="ram") == 4
    assert value(text, "hugind_sessions", model="fake", tier="disk") == 5
    assert value(text, "hugind_sessions", model="fake", tier="resident") == 1
    assert value(text, "hugind_session_bytes", model="fake", tier="disk") == 8192
    assert value(text, "hugind_session_restores_total", model="fake", tier="ram") == 6
    assert value(text, "hugind_session_restores_total", model="fake", tier="disk") == 7
    assert value(text, "hugind_model_load_seconds", model="fake") == 1.5
    states = {s: value(text, "hugind_model_state", model="fake-embed", state=s)
              for s in ("unloaded", "loading", "ready", "restarting", "failed")}
    assert states == {"unloaded": 0, "loading": 1, "ready": 0, "restarting": 0, "failed": 0}


def test_requests_are_counted_by_route_template_and_known_model() -> None:
    with client() as c:
        before = c.get("/metrics").text
        c.post("/v1/chat/completions", json=CHAT)
        c.post("/v1/chat/completions", json={**CHAT, "model": "someone-elses-model"})
        c.get("/v1/models/fake-embed")
        c.get("/no/such/path/42")
        after = c.get("/metrics").text

    def moved(**labels: str) -> float:
        return value(after, "hugind_requests_total", **labels) - \
            value(before, "hugind_requests_total", **labels)

    assert moved(endpoint="/v1/chat/completions", model="fake", status="200") == 1
    assert moved(endpoint="/v1/chat/completions", model="other", status="404") == 1
    assert moved(endpoint="/v1/models/{model_id}", model="other", status="200") == 1
    assert moved(endpoint="other", model="other", status="404") == 1
    assert value(after, "hugind_prompt_tokens_total", model="fake") > \
        value(before, "hugind_prompt_tokens_total", model="fake")
    assert value(after, "hugind_generation_tokens_total", model="fake") - \
        value(before, "hugind_generation_tokens_total", model="fake") == 5
    labels = {v for (_, ls) in samples(after) for _, v in ls}
    assert "someone-elses-model" not in labels and "/no/such/path/42" not in labels
    assert "SECRET-PROMPT-TEXT" not in after


@pytest.mark.parametrize(("headers", "public", "status"), [
    ({}, False, 401),
    ({"authorization": f"Bearer {CLIENT}"}, False, 403),
    ({"authorization": f"Bearer {ADMIN}"}, False, 200),
    ({}, True, 200),
])
def test_metrics_need_an_admin_key_unless_public(headers: dict[str, str], public: bool,
                                                 status: int) -> None:
    with client(api_keys=[CLIENT], admin_keys=[ADMIN], metrics_public=public) as c:
        r = c.get("/metrics", headers=headers)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "hugind_queue_depth" in r.text
        assert CLIENT not in r.text and ADMIN not in r.text


def test_openmetrics_when_the_scraper_asks() -> None:
    with client() as c:
        r = c.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.count("# EOF") == 1 and r.text.endswith("# EOF\n")
    assert "hugind_model_state" in r.text and "hugind_requests_total" in r.text


def test_tenants_and_keys_never_appear() -> None:
    with client(api_keys=[CLIENT], admin_keys=[ADMIN]) as c:
        c.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {CLIENT}"})
        text = c.get("/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    from hugind.api.auth import tenant_of

    assert CLIENT not in text and tenant_of(CLIENT) not in text


def test_provider_attempts_and_failovers_are_counted() -> None:
    upstream = Upstream({"up-key-1": [err(429)], "up-key-2": [ok({"object": "chat.completion"})]})
    config = parse_config({"providers": [provider("metrics-up", ["up-key-1", "up-key-2"],
                                                  models=["remote-model"])]})
    app = create_app(config, engine=FakeEngine())
    app.state.live.providers.current = make_router(config.providers, upstream,
                                                   native=("fake", "fake-alias", "fake-embed"))

    def counts() -> list[float]:
        return [PROVIDER_REQUESTS.labels("metrics-up", "429")._value.get(),
                PROVIDER_REQUESTS.labels("metrics-up", "200")._value.get(),
                PROVIDER_FAILOVERS.labels("metrics-up")._value.get()]

    before = counts()
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "model": "remote-model"})
        text = c.get("/metrics").text
    assert r.status_code == 200 and upstream.keys_used() == ["up-key-1", "up-key-2"]
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 1, 1]
    assert value(text, "hugind_provider_requests_total", provider="metrics-up",
                 status="429") >= 1
    assert "up-key" not in text
    assert value(text, "hugind_requests_total", endpoint="/v1/chat/completions",
                 model="remote-model", status="200") >= 1


def test_metrics_off_keeps_no_series_and_hides_the_endpoint() -> None:
    from hugind.metrics import REGISTRY

    def requests_total() -> float:
        return sum(s.value for fam in REGISTRY.collect() for s in fam.samples
                   if s.name == "hugind_requests_total")

    before = requests_total()
    with client(metrics=False) as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        r = c.get("/metrics")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    assert requests_total() == before
