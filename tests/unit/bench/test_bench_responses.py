"""The Responses request kind and the multi-turn responses scenario, on mock transports.

The streams follow the two servers' framing: llama-server's (vendored llama.cpp
``tools/server/server-task.cpp``: ``event:`` + ``data:`` lines, no ``sequence_number``, no
``[DONE]``, ``timings`` on the final event, always ``response.completed``) and Hugind's
(``sequence_number`` on every event, ``response.incomplete`` at ``max_output_tokens``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest
from bench.cli import DEFAULT_SCENARIOS, build_parser
from bench.client import (
    HttpRunner,
    RequestSpec,
    Target,
    build_request,
    probe_responses,
    send_request,
)
from bench.report import headline_rows, render_markdown
from bench.scenarios import Budget, Progress, run_sessions
from bench.sse import summarize_responses_stream

Event = dict[str, Any]


def _frames(events: list[Event], *, typed_error: bool = True) -> bytes:
    out = []
    for e in events:
        if "type" in e or typed_error:
            out.append(f"event: {e.get('type', 'error')}\ndata: {json.dumps(e)}\n\n")
        else:  # llama-server's mid-stream error: a bare data line
            out.append(f"data: {json.dumps(e)}\n\n")
    return "".join(out).encode()


def _completed(rid: str, n_in: int, cached: int, n_out: int, status: str = "completed") -> Event:
    response: Event = {
        "id": rid, "object": "response", "status": status, "output": [],
        "usage": {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out,
                  "input_tokens_details": {"cached_tokens": cached}},
    }  # fmt: skip
    if status == "incomplete":
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    return {"type": f"response.{status}", "response": response}


def _reply(rid: str, words: list[str], n_in: int, cached: int, status: str = "completed") -> bytes:
    head: list[Event] = [
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", "item": {"id": "msg_1", "type": "message"}},
    ]
    deltas: list[Event] = [
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": w} for w in words
    ]
    tail = [{"type": "response.output_text.done", "text": "".join(words)},
            _completed(rid, n_in, cached, len(words), status)]  # fmt: skip
    return _frames(head + deltas + tail)


def _timed(body: bytes, step_s: float = 0.01) -> list[tuple[float, str]]:
    """Each line of ``body``, an event every ``step_s`` seconds from 1.0."""
    out: list[tuple[float, str]] = []
    t = 1.0
    for line in body.decode().split("\n"):
        out.append((t, line))
        if line == "":
            t += step_s
    return out


def _run(handler: Any, target: Target, spec: RequestSpec) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send_request(client, target, spec, timeout_s=5)

    return asyncio.run(go())


def _sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


# --------------------------------------------------------------------------- parsing


def test_stream_ttft_text_usage_and_id() -> None:
    body = _reply("resp_1", ["Hel", "lo", "!"], n_in=120, cached=100)
    stats = summarize_responses_stream(_timed(body), 1.0)
    # created, in_progress and output_item.added come first: TTFT is the 4th event (t=1.03)
    assert stats.ttft_ms == pytest.approx(30.0)
    assert stats.itl_ms == pytest.approx([10.0, 10.0])
    assert stats.text == "Hello!"
    assert stats.response_id == "resp_1"
    assert (stats.prompt_tokens, stats.cached_tokens) == (120, 100)
    assert stats.output_tokens == 3 and stats.output_tokens_source == "usage"
    assert stats.finish_reason == "stop" and stats.done_seen and not stats.cut_off


def test_incomplete_is_length_and_timings_fill_cached_tokens() -> None:
    # Hugind: "response.incomplete" at max_output_tokens
    stats = summarize_responses_stream(_timed(_reply("r", ["a"], 9, 4, "incomplete")), 1.0)
    assert stats.finish_reason == "length" and stats.cached_tokens == 4 and stats.error is None
    # a final event without input_tokens_details: llama-server's timings.cache_n stands in
    final = {
        "type": "response.completed",
        "timings": {"cache_n": 7},
        "response": {"id": "r", "status": "completed", "usage": {"input_tokens": 9}},
    }
    delta = {"type": "response.output_text.delta", "delta": "x"}
    stats = summarize_responses_stream(_timed(_frames([delta, final])), 1.0)
    assert stats.cached_tokens == 7 and stats.output_tokens == 1
    assert stats.output_tokens_source == "chunks"


def test_stream_without_final_event_is_cut_off() -> None:
    delta = {"type": "response.output_text.delta", "delta": "x"}
    stats = summarize_responses_stream(_timed(_frames([delta])), 1.0)
    assert stats.cut_off and stats.response_id is None


def test_request_body_and_measured_result() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["body"] = json.loads(request.content)
        return _sse_response(_reply("resp_9", ["a", "b"], 50, 0))

    spec = RequestSpec(
        kind="responses", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        store=True, previous_response_id="resp_8", labels={"scenario": "t"},
    )  # fmt: skip
    r = _run(handler, Target("a", "http://h", "m"), spec)
    assert seen["url"] == "http://h/v1/responses"
    assert seen["body"] == {
        "model": "m", "input": [{"role": "user", "content": "hi"}], "max_output_tokens": 2,
        "temperature": 0.0, "stream": True, "store": True, "previous_response_id": "resp_8",
        "ignore_eos": True,
    }  # fmt: skip
    assert r.ok, r.error
    assert (r.response_id, r.text, r.prompt_tokens, r.cached_tokens) == ("resp_9", "ab", 50, 0)
    assert r.to_dict()["response_id"] == "resp_9"
    # a stateless spec names no previous response (llama-server 400s on any non-empty one)
    _, body = build_request(Target("a", "http://h", "m"), RequestSpec(kind="responses"))
    assert "previous_response_id" not in body and body["store"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # OpenAI's and Hugind's error event
        (_frames([{"type": "response.output_text.delta", "delta": "a"},
                  {"type": "error", "code": "server_error", "message": "boom"}]), "boom"),
        # llama-server's mid-stream error: data: {"error": {...}} with no event line
        (_frames([{"type": "response.output_text.delta", "delta": "a"},
                  {"error": {"code": 500, "message": "kv full"}}], typed_error=False),
         "kv full"),
        (_frames([{"type": "response.failed",
                   "response": {"id": "r", "status": "failed",
                                "error": {"code": "server_error", "message": "oom"}}}]),
         "oom"),
    ],
)  # fmt: skip
def test_error_events_fail_the_request(body: bytes, message: str) -> None:
    r = _run(
        lambda _req: _sse_response(body),
        Target("a", "http://h", "m"),
        RequestSpec(kind="responses", messages=[{"role": "user", "content": "x"}]),
    )
    assert not r.ok and not r.cut_off
    assert r.error is not None and message in r.error


def test_http_error_fails_the_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": {"message": "llama.cpp does not support 'previous_response_id'."}}
        )

    spec = RequestSpec(
        kind="responses", messages=[{"role": "user", "content": "x"}], previous_response_id="resp_1"
    )
    r = _run(handler, Target("a", "http://h", "m"), spec)
    assert not r.ok and r.status_code == 400
    assert r.error == "HTTP 400: llama.cpp does not support 'previous_response_id'."


# --------------------------------------------------------------------------- chains


class FakeResponsesServer:
    """A /v1/responses server: with ``chains`` it stores responses and prepends a chain's
    history; without, it 400s on ``previous_response_id`` as llama-server does."""

    def __init__(self, chains: bool) -> None:
        self.chains = chains
        self.bodies: list[Event] = []
        self.stored: dict[str, int] = {}  # id -> input + output tokens of the chain so far
        self.ids = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        prev = body.get("previous_response_id")
        if prev is not None and not self.chains:
            return httpx.Response(400, json={"error": {"message": "no previous_response_id"}})
        if prev is not None and prev not in self.stored:
            return httpx.Response(404, json={"error": {"message": "not found"}})
        history = self.stored.get(prev, 0) if prev else 0
        n_in = history + sum(len(str(i["content"]).split()) for i in body["input"])
        rid = f"resp_{next(self.ids)}"
        words = ["w"] * body["max_output_tokens"]
        if self.chains and body.get("store"):
            self.stored[rid] = n_in + len(words)
        return _sse_response(_reply(rid, words, n_in, history))


def _runners(*servers: tuple[str, FakeResponsesServer]) -> tuple[list[HttpRunner], Any]:
    routes = dict(servers)

    def handler(request: httpx.Request) -> httpx.Response:
        return routes[request.url.host](request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return [HttpRunner(Target(name, f"http://{name}", "m"), client) for name in routes], client


def test_probe_tells_a_chaining_server_from_a_stateless_one() -> None:
    chaining, stateless = FakeResponsesServer(True), FakeResponsesServer(False)
    runners, client = _runners(("hugind", chaining), ("llama", stateless))

    async def go() -> None:
        async with client:
            for r in runners:
                assert (await probe_responses(client, r.target)).ok

    asyncio.run(go())
    assert runners[0].target.supports == {"responses": True, "previous_response_id": True}
    assert runners[1].target.supports == {"responses": True, "previous_response_id": False}
    assert chaining.bodies[0]["store"] is True
    assert chaining.bodies[1]["previous_response_id"] == "resp_1"


def test_probe_does_not_trust_a_server_that_drops_the_chain() -> None:
    def forgetful(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        n_in = sum(len(str(i["content"]).split()) for i in body["input"])
        return _sse_response(_reply("resp_x", ["w"], n_in, 0))

    async def go() -> Target:
        t = Target("a", "http://h", "m")
        async with httpx.AsyncClient(transport=httpx.MockTransport(forgetful)) as client:
            await probe_responses(client, t)
        return t

    assert asyncio.run(go()).supports["previous_response_id"] is False


def test_responses_scenario_chains_or_resends_history() -> None:
    chaining, stateless = FakeResponsesServer(True), FakeResponsesServer(False)
    runners, client = _runners(("hugind", chaining), ("llama", stateless))
    runners[0].target.supports["previous_response_id"] = True
    runners[1].target.supports["previous_response_id"] = False

    async def go() -> Any:
        async with client:
            return await run_sessions(
                runners, run_id="t", budget=Budget(time.perf_counter() + 60),
                progress=Progress(0, True), users=2, turns=3, doc_words=20, reply_tokens=2,
                endpoint="responses",
            )  # fmt: skip

    res = asyncio.run(go())
    assert res.name == "responses" and res.slots_run == 12
    # the chaining target: turn 1 the document alone (stored), then only the new question
    # naming the same user's previous response (the server got one request per sample)
    mine = [x for x in res.samples if x["target"] == "hugind"]
    ids = {(x["labels"]["user"], x["labels"]["turn"]): x["response_id"] for x in mine}
    assert len(mine) == len(chaining.bodies) == 6
    for sample, body in zip(mine, chaining.bodies, strict=True):
        user, turn = sample["labels"]["user"], sample["labels"]["turn"]
        assert body["store"] is True and len(body["input"]) == 1
        if turn == 1:
            assert "previous_response_id" not in body
            assert body["input"][0]["content"].startswith(f"Session t-user-{user}.")
        else:
            assert body["previous_response_id"] == ids[(user, turn - 1)]
            assert body["input"][0]["content"].startswith(f"Question {turn}:")
            # no session hint on chained turns: the id alone must find the chain
            assert "prompt_cache_key" not in body and "user" not in body
    # the stateless target: the whole history every turn, assistant items typed, never stored
    last = stateless.bodies[-1]
    assert [i["role"] for i in last["input"]] == ["user", "assistant"] * 2 + ["user"]
    assert all(i.get("type") == "message" for i in last["input"] if i["role"] == "assistant")
    assert last["input"][1]["content"] == "ww"  # the previous reply's text
    assert all(b["store"] is False and "previous_response_id" not in b for b in stateless.bodies)
    s_chain, s_hist = res.summary["hugind"], res.summary["llama"]
    assert s_chain["input"] == "previous_response_id" and s_chain["requests_chained"] == 4
    assert s_hist["input"] == "full history" and s_hist["requests_chained"] == 0
    assert s_chain["requests_failed"] == s_hist["requests_failed"] == 0
    # the fake caches the chain's history: later turns report it as cached tokens
    assert s_chain["per_turn"][0]["mean_cached_tokens"] == 0
    assert s_chain["per_turn"][2]["mean_cached_tokens"] > s_chain["per_turn"][1][
        "mean_cached_tokens"] > 0  # fmt: skip
    assert s_chain["later_over_first_ttft_ratio"] is not None


def test_a_failed_turn_restarts_the_chain_with_the_history() -> None:
    chaining = FakeResponsesServer(True)
    calls = itertools.count()

    def flaky(request: httpx.Request) -> httpx.Response:
        if next(calls) == 1:  # turn 2 fails
            return httpx.Response(500, json={"error": {"message": "down"}})
        return chaining(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    runner = HttpRunner(
        Target("h", "http://h", "m", supports={"previous_response_id": True}), client
    )

    async def go() -> Any:
        async with client:
            return await run_sessions(
                [runner], run_id="t", budget=Budget(time.perf_counter() + 60),
                progress=Progress(0, True), users=1, turns=3, doc_words=5, reply_tokens=1,
                endpoint="responses",
            )  # fmt: skip

    res = asyncio.run(go())
    assert res.summary["h"]["requests_failed"] == 1
    turn3 = chaining.bodies[-1]
    assert "previous_response_id" not in turn3 and turn3["store"] is True
    assert [i["role"] for i in turn3["input"]] == ["user", "assistant", "user", "assistant",
                                                    "user"]  # fmt: skip
    assert [s["labels"]["input"] for s in res.samples] == ["history", "previous_response_id",
                                                           "history"]  # fmt: skip


# --------------------------------------------------------------------------- CLI and report


def test_cli_offers_responses_but_does_not_run_it_by_default() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--start", "hugind", "--scenarios", "responses"])
    assert args.scenarios == ["responses"]
    assert "responses" not in parser.parse_args(["run"]).scenarios
    assert "responses" not in DEFAULT_SCENARIOS


def test_report_has_responses_rows() -> None:
    summary = {
        "requests": 8,
        "requests_failed": 0,
        "mean_ttft_turn1_ms": 100.0,
        "mean_ttft_later_turns_ms": 20.0,
        "later_over_first_ttft_ratio": 0.2,
        "input": "previous_response_id",
        "requests_chained": 6,
        "per_turn": [
            {
                "turn": 1,
                "requests_ok": 2,
                "mean_ttft_ms": 100.0,
                "mean_prompt_tokens": 700,
                "mean_cached_tokens": 0,
            }
        ],
    }
    report = {
        "run_id": "x",
        "subject": "a",
        "machine": {},
        "targets": [{"name": "a", "base_url": "u", "model": "m"}],
        "scenarios": {"responses": {"params": {"turns": 1}, "summary": {"a": summary}}},
    }
    rows = {r["metric"]: r["values"] for r in headline_rows(report)}
    assert rows["responses: later / turn-1 TTFT"] == {"a": 0.2}
    md = render_markdown(report)
    assert "## responses" in md and "input previous_response_id, 6 chained requests" in md
    assert "| a | 1 | 2 | 100.0 | 700 | 0 |" in md
