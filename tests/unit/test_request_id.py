"""X-Request-Id: a valid client id is echoed, anything else replaced; on every response and in
every error body, streamed or not."""

from __future__ import annotations

import json
import re

import pytest
from litestar.testing import TestClient

from hugind.api.request_id import MAX_CHARS, is_valid
from hugind.app import create_app
from hugind.config import parse_config
from hugind.errors import InternalError
from tests.fakes import FakeEngine

GENERATED = re.compile(r"req-[0-9a-f]{24}")
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


def client(**server: object) -> TestClient:
    return TestClient(create_app(parse_config({"server": server}), engine=FakeEngine()))


@pytest.mark.parametrize("value", ["abc", "client-7f3a:9", "A" * MAX_CHARS, "~!#$%&*+=?^_|"])
def test_valid_ids_are_echoed(value: str) -> None:
    with client() as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": value})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == value


@pytest.mark.parametrize("value", ["", "has space", "A" * (MAX_CHARS + 1), "tab\there",
                                   "caf\u00e9", "nul\x7f"])
def test_invalid_ids_are_replaced(value: str) -> None:
    assert not is_valid(value)
    with client() as c:
        r = c.get("/v1/models", headers={"x-request-id": value.encode("utf-8")})  # type: ignore[dict-item]
    assert r.status_code == 200
    assert GENERATED.fullmatch(r.headers["x-request-id"])


def test_each_request_gets_its_own_id() -> None:
    with client() as c:
        ids = {c.get("/health/live").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5 and all(GENERATED.fullmatch(i) for i in ids)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/no/such/path", None, 404),  # no route: outside Litestar's route middleware
    ("DELETE", "/v1/chat/completions", None, 405),
    ("POST", "/v1/chat/completions", {**CHAT, "model": "nope"}, 404),
    ("POST", "/v1/chat/completions", {"model": "fake"}, 400),
])
def test_errors_carry_the_id_in_header_and_body(method: str, path: str, body: object,
                                                status: int) -> None:
    with client() as c:
        r = c.request(method, path, json=body, headers={"x-request-id": "trace-42"})
    assert r.status_code == status
    assert r.headers["x-request-id"] == "trace-42"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code", "request_id"}
    assert err["request_id"] == "trace-42"


def test_generated_id_in_body_matches_the_header() -> None:
    with client() as c:
        r = c.get("/nope")
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_auth_errors_carry_the_id() -> None:
    with client(api_keys=["k-secret-0001"]) as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "auth-1"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "auth-1"
    assert r.json()["error"]["request_id"] == "auth-1"


class FailingEngine(FakeEngine):
    async def submit_many(self, reqs):  # type: ignore[no-untyped-def]
        streams = await super().submit_many(reqs)

        async def broken():  # type: ignore[no-untyped-def]
            async for ev in streams[0]:
                yield ev
                raise InternalError("engine fell over")

        return [broken()]


def test_streams_carry_the_id_and_mid_stream_errors_too() -> None:
    app = create_app(parse_config({}), engine=FailingEngine())
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "stream": True},
                   headers={"x-request-id": "stream-9"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "stream-9"
    events = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: {")]
    assert events[-1]["error"]["request_id"] == "stream-9"
    assert events[-1]["error"]["message"] == "engine fell over"


def test_the_draining_503_carries_the_id() -> None:
    app = create_app(parse_config({}), engine=FakeEngine())
    with TestClient(app) as c:
        app.state.runtime.draining = True
        r = c.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "drain-3"})
    assert r.status_code == 503
    assert r.headers["x-request-id"] == "drain-3"
    assert r.json()["error"]["request_id"] == "drain-3"
