"""/v1/responses over HTTP on a FakeEngine: what the SDK parses, the chain's session name,
what ``store`` keeps, and remote models forwarded as sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from litestar.testing import TestClient

from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine
from tests.servers import serve_in_thread


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(n_ctx=4096)


@pytest.fixture
def http(engine: FakeEngine, tmp_path: Path) -> Iterator[TestClient[Any]]:
    app = create_app(parse_config({"sessions": {"dir": "s"}}), engine=engine, base_dir=tmp_path)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(http: TestClient[Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver.local/v1", api_key="unused",
                         http_client=http, max_retries=0)


def test_events_come_in_order_and_end_as_the_stored_response(client: openai.OpenAI,
                                                             http: TestClient[Any]) -> None:
    events = list(client.responses.create(model="fake", input="Hi", stream=True))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 5,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.status == "completed" and final.output_text == "Hello there, friend."
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]
    stored = client.responses.retrieve(final.id)
    assert stored.model_dump() == final.model_dump()
    raw = http.post("/v1/responses", json={"model": "fake", "input": "Hi", "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.startswith("event: response.created\ndata: {")
    assert "[DONE]" not in raw.text  # as OpenAI: the stream ends with response.completed


def test_the_response_echoes_the_request(client: openai.OpenAI) -> None:
    r = client.responses.create(model="fake", input="Hi", instructions="Be kind.",
                                temperature=0.5, top_p=0.9, max_output_tokens=50,
                                metadata={"k": "v"}, parallel_tool_calls=False,
                                tools=[{"type": "function", "name": "f", "parameters": {}}])
    assert (r.instructions, r.temperature, r.top_p, r.max_output_tokens) == \
        ("Be kind.", 0.5, 0.9, 50)
    assert r.metadata == {"k": "v"} and r.parallel_tool_calls is False
    assert r.tool_choice == "auto" and r.tools[0].name == "f"  # type: ignore[union-attr]
    assert r.truncation == "disabled" and r.store is True and r.previous_response_id is None
    assert r.text is not None and r.text.format is not None and r.text.format.type == "text"
    message = r.output[0]
    assert message.type == "message" and message.content[0].annotations == []  # type: ignore


def test_a_chain_generates_into_one_session(client: openai.OpenAI, engine: FakeEngine) -> None:
    first = client.responses.create(model="fake", input="Hi")
    second = client.responses.create(model="fake", input="More", previous_response_id=first.id)
    third = client.responses.create(model="fake", input="Again", previous_response_id=second.id)
    assert {r.session for r in engine.requests} == {f"resp-chain:{first.id}"}
    assert third.usage is not None and second.usage is not None
    assert third.usage.input_tokens > second.usage.input_tokens
    items = client.responses.input_items.list(third.id, order="asc").data
    assert [getattr(i, "role", None) for i in items] == ["user", "assistant", "user",
                                                         "assistant", "user"]
    assert [i.id for i in client.responses.input_items.list(third.id).data] == \
        [i.id for i in items][::-1]  # desc by default, as OpenAI
    page = client.responses.input_items.list(third.id, order="asc", limit=2)
    assert [i.id for i in page] == [i.id for i in items]  # the SDK follows has_more/after


def test_a_client_name_wins_and_unstored_responses_leave_nothing(
        client: openai.OpenAI, engine: FakeEngine, tmp_path: Path) -> None:
    named = client.responses.create(model="fake", input="Hi", prompt_cache_key="conv-1")
    client.responses.create(model="fake", input="More", previous_response_id=named.id)
    client.responses.create(model="fake", input="Hi", store=False)
    assert [r.session for r in engine.requests] == ["conv-1", "conv-1", None]
    assert len(list((tmp_path / "s" / "responses").glob("t-*/*.json"))) == 2


def test_input_tokens_and_not_found(client: openai.OpenAI, http: TestClient[Any]) -> None:
    count = client.responses.input_tokens.count(model="fake", input="Hi", instructions="X")
    r = client.responses.create(model="fake", input="Hi", instructions="X")
    assert r.usage is not None and count.input_tokens == r.usage.input_tokens
    assert http.get("/v1/responses/resp_nope").status_code == 404
    gone = http.delete(f"/v1/responses/{r.id}")
    assert gone.status_code == 200
    assert gone.json() == {"id": r.id, "object": "response", "deleted": True}
    for method, path in [("GET", f"/v1/responses/{r.id}"), ("DELETE", f"/v1/responses/{r.id}"),
                         ("GET", f"/v1/responses/{r.id}/input_items")]:
        error = http.request(method, path).json()["error"]
        assert error["code"] == "response_not_found" and error["type"] == "not_found_error"
    assert http.get(f"/v1/responses/{r.id}/input_items?limit=0").status_code == 400


class Upstream:
    """Records the body of each request and answers with a fixed response."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": "resp_up"}'})


def test_remote_models_are_forwarded_as_sent(tmp_path: Path) -> None:
    upstream = Upstream()
    body = {"model": "remote-model", "input": "Hi", "unknown_field": [1, 2], "temperature": 9}
    with serve_in_thread(upstream) as url:
        cfg = parse_config({"providers": [{"name": "up", "base_url": url + "/v1",
                                           "models": ["remote-model"]}]})
        app = create_app(cfg, engine=FakeEngine(), base_dir=tmp_path)
        with serve_in_thread(app) as hugind:
            r = httpx.post(hugind + "/v1/responses", content=json.dumps(body), timeout=20)
    assert r.status_code == 200 and r.json() == {"id": "resp_up"}
    assert [json.loads(b) for b in upstream.bodies] == [body]


def test_a_client_that_leaves_cancels_the_generation(tmp_path: Path) -> None:
    engine = FakeEngine(["w"] * 300, delay_s=0.01, n_ctx=4096)
    app = create_app(parse_config({}), engine=engine, base_dir=tmp_path)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        with client.stream("POST", "/v1/responses",
                           json={"model": "fake", "input": "Hi", "stream": True}) as r:
            for line in r.iter_lines():
                if '"delta":"w"' in line:
                    break
        deadline = time.monotonic() + 5
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    assert engine.cancelled and not engine.finished
    assert not list(tmp_path.rglob("resp_*.json"))  # an unfinished response is not stored
