"""Hostile input against the real model over HTTP (issue 14): 400s naming the field instead of
500s or runaway generations, stop strings cut exactly, and a short fuzz run."""

from __future__ import annotations

import time

import httpx
import pytest
from bench.fuzz import run_fuzz

from tests.servers import HugindProcess

pytestmark = pytest.mark.model

MSGS = [{"role": "user", "content": "Tell me a short story about a cat."}]
CHAT = {"model": "gemma", "messages": MSGS, "max_tokens": 8, "temperature": 0}


def post(server: HugindProcess, path: str, body: object = None, *, content: bytes | None = None,
         timeout_s: float = 60) -> httpx.Response:
    return httpx.post(server.url + path, json=body, content=content, timeout=timeout_s,
                      headers={"content-type": "application/json"})


def assert_error(r: httpx.Response, status: int, param: str | None) -> None:
    assert r.status_code == status, r.text[:300]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code", "request_id"}
    assert err["param"] == param


@pytest.mark.parametrize(("content", "param"), [
    (b'{"model": "gemma", "a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", "a"),
    (b"[" * 100_000 + b"]" * 100_000, None),
    (b'{"model": "gemma", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "messages"),
])
def test_deep_json_is_400_not_500(server: HugindProcess, content: bytes,
                                  param: str | None) -> None:
    assert_error(post(server, "/v1/chat/completions", content=content), 400, param)


def test_null_user_content_is_400_at_once(server: HugindProcess) -> None:
    started = time.monotonic()
    r = post(server, "/v1/chat/completions", {"model": "gemma", "messages": [
        {"role": "user", "content": None}]})
    assert_error(r, 400, "messages[0].content")
    assert time.monotonic() - started < 10  # measured on main: accepted, 55 s to the context end


def test_assistant_tool_calls_may_have_null_content(server: HugindProcess) -> None:
    msgs = [*MSGS, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}]
    r = post(server, "/v1/chat/completions", {**CHAT, "messages": msgs})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["choices"][0]["message"]["content"], str)


def test_jinja_in_messages_is_data(server: HugindProcess) -> None:
    text = "{{ 7 * 7 }} {% for x in range(10**9) %}x{% endfor %} {{ raise_exception('no') }}"
    r = post(server, "/v1/chat/completions/render", {"model": "gemma", "messages": [
        {"role": "system", "content": text}, {"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"].count(text) == 2
    assert post(server, "/v1/chat/completions", {**CHAT, "messages": [
        {"role": "user", "content": text}]}).status_code == 200


@pytest.mark.parametrize(("body", "status", "param"), [
    ({**CHAT, "stop": ["x"] * 5_000}, 400, "stop"),
    ({**CHAT, "stop": ["x" * 257]}, 400, "stop[0]"),
    ({**CHAT, "logit_bias": {str(i): -1 for i in range(100_000)}}, 400, "logit_bias"),
    ({**CHAT, "logit_bias": {str(i): -1 for i in range(1_024)}}, 200, None),
    ({**CHAT, "logit_bias": {"262144": 1}}, 400, "logit_bias"),
    ({**CHAT, "max_tokens": 2**64}, 400, "max_tokens"),
    ({**CHAT, "max_tokens": 10**6}, 400, "messages"),
    ({**CHAT, "n": 129}, 400, "n"),
    ({**CHAT, "logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
    ({**CHAT, "model": "../gemma"}, 404, "model"),
    ({**CHAT, "model": "%2e%2e/%2e%2e/gemma"}, 404, "model"),
    ({**CHAT, "prompt_cache_key": "k" * 257}, 400, "prompt_cache_key"),
    ({**CHAT, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, 400,
     "messages[0].content[0].type"),
    ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
])
def test_bounded_fields(server: HugindProcess, body: dict[str, object], status: int,
                        param: str | None) -> None:
    r = post(server, "/v1/chat/completions", body)
    if status == 200:
        assert r.status_code == 200, r.text[:300]
    else:
        assert_error(r, status, param)


def test_completions_bounds(server: HugindProcess) -> None:
    base = {"model": "gemma", "prompt": "Once upon", "max_tokens": 4}
    assert_error(post(server, "/v1/completions", {**base, "best_of": 129}), 400, "best_of")
    assert_error(post(server, "/v1/completions", {**base, "prompt": ["a"] * 129}), 400, "prompt")
    assert_error(post(server, "/v1/completions", {**base, "prompt": [2**64]}), 400, "prompt[0]")


def test_path_like_session_names_are_plain_names(server: HugindProcess) -> None:
    key = "../../../../tmp/hugind-escape"
    r = post(server, "/v1/chat/completions", {**CHAT, "prompt_cache_key": key})
    assert r.status_code == 200, r.text
    names = [s["name"] for s in httpx.get(server.url + "/v1/sessions").json()["data"]]
    assert key in names


def test_sixteen_long_stops_cut_the_real_output_at_the_first(server: HugindProcess) -> None:
    body = {"model": "gemma", "prompt": "The list of colors: red, green,", "max_tokens": 24,
            "temperature": 0}
    text = post(server, "/v1/completions", body).json()["choices"][0]["text"]
    assert len(text) > 12, text
    stop = text[5:9]
    stops = [stop, *("z" * 250 + str(i) for i in range(15))]
    cut = post(server, "/v1/completions", {**body, "stop": stops}).json()["choices"][0]
    assert cut["text"] == text[: text.index(stop)]
    assert cut["finish_reason"] == "stop"


def test_short_fuzz_run(server: HugindProcess) -> None:
    """200 hostile requests, 4 at a time: no 5xx, no hang, every error in OpenAI's shape, and
    a normal chat still works afterwards."""
    report = run_fuzz(server.url, 200, seed=14, concurrency=4, timeout_s=30)
    assert report.requests == 200
    assert report.server_errors == 0, report.failures
    assert report.hangs == 0, report.failures
    assert not report.problems, report.failures
    assert report.healthy_after
    assert set(report.statuses) <= {"200", "400", "404", "405", "413", "429"}, report.statuses
    r = post(server, "/v1/chat/completions", CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
