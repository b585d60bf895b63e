"""Hostile-input fuzzing of an OpenAI-compatible server over real HTTP.

Hypothesis strategies draw requests for the chat, completions, embeddings, tokenize, detokenize,
render, models and sessions routes: valid requests with small ``max_tokens`` and then a few
fields replaced by hostile values (nesting 100k levels deep, huge strings and numbers, invalid
UTF-8, NaN and Infinity, negative and enormous counts, null or empty content, unknown roles and
content parts, Jinja-looking text, thousands of stop strings, ``logit_bias`` with 100k entries,
path-like model ids and session names), or a whole body that is not a request at all.

Each request is sent with a deadline. A reply counts as bad when it is a 5xx, an in-band
``server_error`` in a stream, an error body that is not ``{"error": {message, type, param,
code}}``, a 2xx that is not JSON (or SSE ending in ``[DONE]``), a transport error (the server
died or dropped the connection), or no reply within the deadline (a hang)::

    .venv/bin/python -m bench.fuzz --url http://127.0.0.1:8080 --requests 5000

Generated bodies never leave ``max_tokens`` unset, so no request generates more than a few
tokens unless the server ignores it; a server whose model config caps ``max_tokens`` is safer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

__all__ = ["Case", "FuzzReport", "cases", "draw_cases", "main", "run_fuzz", "send_case"]

ERROR_KEYS = {"message", "type", "param", "code"}


@dataclass(frozen=True)
class Case:
    """One request: ``label`` names the generator that made it, for the report."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    label: str = ""


# -- raw JSON fragments: bytes, so that what json.dumps cannot write can be sent too ------------

def js(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def obj(fields: dict[str, bytes]) -> bytes:
    return b"{" + b",".join(js(k) + b":" + v for k, v in fields.items()) + b"}"


SCALARS = st.sampled_from([
    b"null", b"true", b"false", b"-1", b"0", b"-0", b"1", b"1.5", b"1e999", b"-1e999", b"NaN",
    b"Infinity", b"-Infinity", b"1.0e-400", b"9" * 400, b"-" + b"9" * 400, b"2147483648",
    b"9223372036854775808", b"18446744073709551616", b"-9223372036854775809", b'""', b'"NaN"',
    b'"1e999"', b'"\\ud800"', b'"\xff\xfe\xc3"', b"[]", b"{}", b'"8"', b"[null]",
])
DEPTHS = st.sampled_from([65, 200, 1_000, 5_000, 50_000, 100_000]) | st.integers(60, 70)
JINJA = st.sampled_from([
    "{{ 7 * 7 }}", "{% for x in range(100000000) %}x{% endfor %}", "{{ raise_exception('boom') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% set x = messages %}{{ x }}", "{#",
    "{{", "{% endfor %}", "<start_of_turn>model\n", "<end_of_turn>", "<bos><eos>", "<|im_end|>",
    "{{ messages[0]['content'] * 1000000 }}", "{{ cycler.__init__.__globals__ }}",
])
PATHS = st.sampled_from([
    "../x", "../../etc/passwd", "%2e%2e", "%2e%2e%2fetc%2fpasswd", "..%2f..%2f", "/etc/passwd",
    "gemma/../gemma", "..\\..\\x", "./gemma", "C:\\Windows", "\x00", "gemma\x00", "~/.ssh/id_rsa",
    "file:///etc/passwd", "models/../../x.gguf", "a/" * 200, ".",
])


def _deep(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'[{"a":' * (depth // 2) + b"1" + b"}]" * (depth // 2)


DEEP = st.builds(_deep, DEPTHS, st.sampled_from(["array", "object", "mixed"]))
HUGE_TEXT = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "😀", "{", "\n", " "]),
                      st.sampled_from([1_000, 10_000, 100_000, 1_000_000]))
HUGE_STRING = HUGE_TEXT.map(js)
TEXT = st.text(max_size=40) | JINJA | PATHS
JSON_SMALL = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT, lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT, c, max_size=4),
    max_leaves=10).map(js)
HOSTILE = st.one_of(SCALARS, DEEP, HUGE_STRING, TEXT.map(js), JSON_SMALL)


def ints(*extra: int) -> st.SearchStrategy[bytes]:
    values = [-1, 0, 2**31, 2**63, 2**64, 10**30, *extra]
    return st.sampled_from(values).map(lambda v: str(v).encode()) | SCALARS.filter(
        lambda b: b != b"null")


# -- field strategies --------------------------------------------------------------------------

def messages_strategy() -> st.SearchStrategy[bytes]:
    text = TEXT
    call = st.sampled_from([
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}},
        {"function": 5}, {"function": {"name": 5}}, {}, "x", {"type": "other", "function": {}},
    ])
    part = st.sampled_from([
        {"type": "text", "text": "hi"}, {"type": "text", "text": None}, {"type": "text"},
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}, {"type": "video"},
        {"type": "input_audio", "input_audio": {}}, {"type": "refusal", "refusal": "no"},
        {"type": None}, {}, "text", {"type": "file", "file": {}},
    ])
    role = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])
    message = st.one_of(
        st.builds(lambda r, t: {"role": r, "content": t}, role, text),
        st.builds(lambda r: {"role": r, "content": None}, role),
        st.builds(lambda r: {"role": r}, role),
        st.builds(lambda c: {"role": "assistant", "content": None, "tool_calls": c},
                  st.lists(call, max_size=3)),
        st.builds(lambda r, t: {"role": r, "content": t},
                  st.sampled_from(["wizard", "", "USER", None, 5, "user "]), text),
        st.builds(lambda r, ps: {"role": r, "content": ps}, role, st.lists(part, max_size=3)),
        st.builds(lambda r, n, t: {"role": r, "content": t, "name": n, "tool_call_id": n},
                  role, TEXT, TEXT),
    ).map(js)
    listed = st.lists(message | HOSTILE, max_size=5).map(lambda ms: b"[" + b",".join(ms) + b"]")
    many = st.builds(lambda m, k: b"[" + b",".join([m] * k) + b"]", message,
                     st.sampled_from([100, 1_000, 10_000]))
    huge = st.builds(lambda r, t: js([{"role": r, "content": t}]), role, HUGE_TEXT)
    return st.one_of(listed, many, huge, HOSTILE)


def _bias(n: int, key: Callable[[int], str], value: bytes) -> bytes:
    return b"{" + b",".join(js(key(i)) + b":" + value for i in range(n)) + b"}"


STOP = st.one_of(
    st.builds(lambda s, k: js([s] * k), TEXT, st.sampled_from([5, 16, 17, 1_000, 5_000])),
    st.builds(lambda s: js([s]), HUGE_TEXT), st.lists(TEXT, max_size=6).map(js), TEXT.map(js),
    HOSTILE)
LOGIT_BIAS = st.one_of(
    st.builds(_bias, st.sampled_from([1, 1_024, 1_025, 100_000]),
              st.sampled_from([str, lambda i: f"x{i}", lambda i: str(i * 7919), lambda i: "-1",
                               lambda i: "٣", lambda i: f" {i}", lambda i: f"{i}_0"]),
              st.sampled_from([b"1", b"-100", b"101", b"NaN", b"1e999", b'"1"', b"null"])),
    st.sampled_from([b'{"' + b"1" * 5000 + b'": 1}', b'{"1e3": 1}', b'{"99999999999": 1}',
                     b'{"262144": 1}', b'{"-5": 1}', b"[[1, 5]]"]),
    HOSTILE)
SESSION = st.one_of(PATHS, TEXT, st.sampled_from(["a" * 257, "a" * 100_000, ""])).map(js) | SCALARS
SAMPLING: dict[str, st.SearchStrategy[bytes]] = {
    "max_tokens": ints(1, 8, 1024, 10**6), "n": ints(1, 2, 4, 16, 128, 129),
    "temperature": SCALARS, "top_p": SCALARS, "top_k": ints(1, 40, 2**31 - 1),
    "min_p": SCALARS, "presence_penalty": SCALARS, "frequency_penalty": SCALARS,
    "repeat_penalty": SCALARS, "seed": ints(2**63 - 1, -(2**63)), "stop": STOP,
    "logit_bias": LOGIT_BIAS, "user": SESSION, "prompt_cache_key": SESSION,
    "stream": st.sampled_from([b"true", b"false"]) | SCALARS,
    "stream_options": st.sampled_from([b'{"include_usage": true}', b'{"include_usage": 5}'])
    | HOSTILE,
    "grammar": st.sampled_from(['root ::= "a"', "root ::= (", "", "x ::= y"]).map(js) | HOSTILE,
    "ignore_eos": st.sampled_from([b"true", b"false"]) | SCALARS, "cache_prompt": SCALARS,
    "model": PATHS.map(js) | SCALARS | HUGE_STRING | JINJA.map(js),
    "zz_unknown": HOSTILE,
}
SCHEMA = st.sampled_from([
    {"type": "object", "properties": {"a": {"type": "string"}}}, {"$ref": "#"},
    {"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/a"}}},
    {"type": "string", "pattern": "(a+)+$"}, {"enum": [f"v{i}" for i in range(200)]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1000000}, {"type": 5}, [], "x",
]).map(js) | HOSTILE
TOOLS = st.one_of(
    st.builds(lambda p: b'[{"type": "function", "function": {"name": "f", "parameters": '
              + p + b"}}]", SCHEMA),
    st.lists(JSON_SMALL, max_size=3).map(lambda xs: b"[" + b",".join(xs) + b"]"), HOSTILE)
CHAT: dict[str, st.SearchStrategy[bytes]] = {
    **SAMPLING, "messages": messages_strategy(), "max_completion_tokens": ints(1, 8),
    "logprobs": SCALARS, "top_logprobs": ints(0, 5, 20, 21),
    "response_format": st.one_of(
        st.builds(lambda s: b'{"type": "json_schema", "json_schema": {"name": "x", "schema": '
                  + s + b"}}", SCHEMA),
        st.sampled_from([b'{"type": "json_object"}', b'{"type": "xml"}', b'{"type": null}',
                         b'{"type": "json_schema", "json_schema": "x"}']), HOSTILE),
    "tools": TOOLS, "functions": TOOLS,
    "tool_choice": st.sampled_from([b'"required"', b'"none"', b'"auto"', b'"sometimes"',
                                    b'{"type": "function", "function": {"name": "f"}}',
                                    b'{"type": "function", "function": "f"}',
                                    b'{"function": {"name": 5}}']) | HOSTILE,
    "function_call": st.sampled_from([b'{"name": "f"}', b'{"name": 5}', b'"auto"']) | HOSTILE,
    "parallel_tool_calls": SCALARS, "modalities": HOSTILE, "audio": HOSTILE,
}
PROMPT = st.one_of(
    TEXT.map(js), HUGE_STRING, st.lists(TEXT, max_size=4).map(js),
    st.lists(st.integers(-5, 300_000), min_size=0, max_size=20).map(js),
    st.builds(lambda k: js(["hi"] * k), st.sampled_from([2, 128, 129, 10_000])),
    st.lists(st.lists(st.integers(0, 1000), max_size=4), max_size=3).map(js),
    st.sampled_from([b"[2**64]", b"[18446744073709551616]", b"[true, false]", b"[[]]",
                     b'[[1, "x"]]', b"[-1]", b"[1e999]"]), HOSTILE)
COMPLETION: dict[str, st.SearchStrategy[bytes]] = {
    **SAMPLING, "prompt": PROMPT, "echo": SCALARS, "suffix": TEXT.map(js) | HOSTILE,
    "logprobs": ints(0, 5, 6), "best_of": ints(1, 2, 4, 128, 129),
}
EMBEDDING: dict[str, st.SearchStrategy[bytes]] = {
    "model": SAMPLING["model"], "input": PROMPT | st.builds(
        lambda k: js(["x"] * k), st.sampled_from([1, 64, 2_049])),
    "encoding_format": st.sampled_from([b'"base64"', b'"hex"']) | SCALARS,
    "dimensions": ints(1, 8, 100_000), "user": SESSION, "zz_unknown": HOSTILE,
}
TOKENIZE: dict[str, st.SearchStrategy[bytes]] = {
    "model": SAMPLING["model"], "content": TEXT.map(js) | HUGE_STRING | HOSTILE,
    "prompt": HOSTILE, "add_special": SCALARS, "with_pieces": SCALARS,
}
DETOKENIZE: dict[str, st.SearchStrategy[bytes]] = {
    "model": SAMPLING["model"], "tokens": PROMPT,
}


# -- whole requests ----------------------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn, path: str, base: dict[str, bytes],
            fields: dict[str, st.SearchStrategy[bytes]], label: str) -> Case:
    """``base`` with up to three fields replaced by hostile values, or a required one dropped."""
    body = dict(base)
    names = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
    for name in names:
        body[name] = draw(fields[name])
    if draw(st.integers(0, 9)) == 0:
        body.pop(draw(st.sampled_from(sorted(base))), None)
    if body.get("max_tokens") == b"null" or (path != "/v1/completions"
                                            and "max_tokens" not in body):
        body["max_tokens"] = b"4"  # never a long generation
    headers = {"content-type": "application/json"}
    if draw(st.integers(0, 7)) == 0:
        headers["x-session-id"] = draw(st.sampled_from(["../../x", "%2e%2e", "s" * 300, "",
                                                        "ok-session", "a/b\\c"]))
    return Case("POST", path, obj(body), headers, label + ("" if not names else ":" + names[0]))


@st.composite
def raw_body(draw: st.DrawFn, model: str) -> Case:
    """A body that is not a request: truncated, not an object, deep, binary, empty."""
    valid = obj({"model": js(model), "messages": js([{"role": "user", "content": "hi"}]),
                 "max_tokens": b"2"})
    body = draw(st.one_of(
        st.integers(0, len(valid)).map(lambda k: valid[:k]), SCALARS, DEEP, st.binary(max_size=64),
        st.just(b"\xef\xbb\xbf" + valid), st.just(valid.decode().encode("utf-16")),
        st.just(valid[:-1] + b',"model": 5}'), st.just(b" " * 1000)))
    path = draw(st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                 "/v1/tokenize", "/v1/detokenize", "/v1/chat/completions/render"]))
    ctype = draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-"
                                  "urlencoded", "multipart/form-data; boundary=x"]))
    return Case("POST", path, body, {"content-type": ctype}, "raw")


@st.composite
def url_case(draw: st.DrawFn) -> Case:
    """Path-like model ids and session names in URLs, unknown routes and methods."""
    name = draw(PATHS | st.sampled_from(["a" * 10_000, "%00", "%ff%fe", "gemma", "..%2F..%2F"]))
    route = draw(st.sampled_from(["/v1/models/", "/v1/sessions/", "/models/", "/v1/", "/"]))
    method = draw(st.sampled_from(["GET", "GET", "DELETE", "POST", "PUT", "PATCH"]))
    return Case(method, route + quote(name, safe="/%.~\\"), None, {}, "url")


def cases(model: str = "gemma", embed_model: str = "gemma-embed") -> st.SearchStrategy[Case]:
    """Every kind of hostile request, weighted towards the generation routes."""
    msgs = js([{"role": "user", "content": "Say hi."}])
    chat = {"model": js(model), "messages": msgs, "max_tokens": b"4", "temperature": b"0"}
    completion = {"model": js(model), "prompt": js("Once upon"), "max_tokens": b"4"}
    return st.one_of(
        mutated("/v1/chat/completions", chat, CHAT, "chat"),
        mutated("/v1/chat/completions", chat, CHAT, "chat"),
        mutated("/v1/completions", completion, COMPLETION, "completions"),
        mutated("/v1/embeddings", {"model": js(embed_model), "input": js("hi")}, EMBEDDING,
                "embeddings"),
        mutated("/v1/tokenize", {"model": js(model), "content": js("hi")}, TOKENIZE, "tokenize"),
        mutated("/v1/detokenize", {"model": js(model), "tokens": b"[1, 2]"}, DETOKENIZE,
                "detokenize"),
        mutated("/v1/chat/completions/render", {"model": js(model), "messages": msgs}, CHAT,
                "render"),
        raw_body(model), url_case())


def draw_cases(strategy: st.SearchStrategy[Case], count: int, seed: int) -> list[Case]:
    """``count`` cases drawn by Hypothesis (generation only: no shrinking, no database)."""
    out: list[Case] = []
    checks = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
              HealthCheck.large_base_example]
    while len(out) < count:  # Hypothesis may stop early when it thinks it has seen enough
        @hypothesis_seed(seed)
        @settings(max_examples=count - len(out), database=None, phases=[Phase.generate],
                  deadline=None, suppress_health_check=checks)
        @given(strategy)
        def collect(case: Case) -> None:
            out.append(case)

        collect()
        seed += 1_000_003
    return out[:count]


# -- sending and judging -----------------------------------------------------------------------

@dataclass
class Outcome:
    status: int | None  # None: no HTTP reply (hang or transport error)
    problem: str | None = None  # "5xx", "hang", "transport", "malformed"
    detail: str = ""


def _is_openai_error(payload: Any) -> bool:
    err = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(err, dict) and set(err) >= ERROR_KEYS and isinstance(err["message"], str)


def _judge(status: int, content_type: str, body: bytes) -> Outcome:
    if status >= 500:
        return Outcome(status, "5xx", body[:300].decode("utf-8", "replace"))
    if content_type.startswith("text/event-stream"):
        return _judge_stream(status, body)
    try:
        payload = json.loads(body)
    except ValueError:
        return Outcome(status, "malformed", "not JSON: " + body[:200].decode("utf-8", "replace"))
    if status >= 400 and not _is_openai_error(payload):
        return Outcome(status, "malformed", body[:300].decode("utf-8", "replace"))
    return Outcome(status)


def _judge_stream(status: int, body: bytes) -> Outcome:
    frames = [f for f in body.decode("utf-8", "replace").split("\n\n") if f.strip()]
    if not frames or frames[-1] != "data: [DONE]":
        return Outcome(status, "malformed", "stream without [DONE]: " + body[-200:].decode(
            "utf-8", "replace"))
    for f in frames[:-1]:
        try:
            payload = json.loads(f.removeprefix("data: "))
        except ValueError:
            return Outcome(status, "malformed", "bad SSE frame: " + f[:200])
        if isinstance(payload, dict) and "error" in payload:
            if not _is_openai_error(payload):
                return Outcome(status, "malformed", f[:300])
            if payload["error"]["type"] == "server_error":
                return Outcome(status, "5xx", "in-band: " + f[:300])
    return Outcome(status)


def send_case(client: httpx.Client, case: Case, timeout_s: float) -> Outcome:
    """Send ``case`` and judge the reply; the whole exchange must end within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        with client.stream(case.method, case.path, content=case.body, headers=case.headers,
                           timeout=timeout_s) as r:
            chunks = []
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    return Outcome(r.status_code, "hang", "stream still open at the deadline")
            return _judge(r.status_code, r.headers.get("content-type", ""), b"".join(chunks))
    except httpx.TimeoutException as exc:
        return Outcome(None, "hang", type(exc).__name__)
    except httpx.HTTPError as exc:
        return Outcome(None, "transport", f"{type(exc).__name__}: {exc}")


@dataclass
class FuzzReport:
    """What a run found. ``ok`` means no 5xx, hang, transport error or malformed reply, and the
    server still answered a normal chat afterwards."""

    url: str
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    max_request_s: float = 0.0
    healthy_after: bool = False
    seed: int = 0

    @property
    def server_errors(self) -> int:
        return self.problems["5xx"]

    @property
    def hangs(self) -> int:
        return self.problems["hang"]

    @property
    def ok(self) -> bool:
        return not self.problems and self.healthy_after

    def add(self, case: Case, outcome: Outcome, elapsed_s: float) -> None:
        self.requests += 1
        self.statuses[str(outcome.status or outcome.problem)] += 1
        self.labels[case.label.split(":")[0]] += 1
        self.max_request_s = max(self.max_request_s, elapsed_s)
        if outcome.problem:
            self.problems[outcome.problem] += 1
            if len(self.failures) < 20:
                body = (case.body or b"")[:300].decode("utf-8", "replace")
                self.failures.append({"problem": outcome.problem, "status": outcome.status,
                                      "method": case.method, "path": case.path[:200],
                                      "label": case.label, "body": body,
                                      "detail": outcome.detail, "elapsed_s": round(elapsed_s, 2)})

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "seed": self.seed, "requests": self.requests, "ok": self.ok,
                "server_errors": self.server_errors, "hangs": self.hangs,
                "statuses": dict(sorted(self.statuses.items())),
                "problems": dict(self.problems), "labels": dict(sorted(self.labels.items())),
                "wall_s": round(self.wall_s, 1), "max_request_s": round(self.max_request_s, 2),
                "healthy_after": self.healthy_after, "failures": self.failures}


def _still_answers(client: httpx.Client, model: str) -> bool:
    try:
        r = client.post("/v1/chat/completions", timeout=60, json={
            "model": model, "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4, "temperature": 0})
        return r.status_code == 200 and isinstance(
            r.json()["choices"][0]["message"]["content"], str)
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return False


def _batches(strategy: st.SearchStrategy[Case], requests: int, seed: int,
             size: int = 250) -> Iterator[list[Case]]:
    for k, start in enumerate(range(0, requests, size)):
        yield draw_cases(strategy, min(size, requests - start), seed + k)


def run_fuzz(url: str, requests: int, *, seed: int = 0, concurrency: int = 1,
             timeout_s: float = 30.0, model: str = "gemma", embed_model: str = "gemma-embed",
             api_key: str | None = None,
             progress: Callable[[FuzzReport], None] | None = None) -> FuzzReport:
    """Send ``requests`` hostile requests to ``url`` and report what came back."""
    report = FuzzReport(url=url, seed=seed)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 1)
    started = time.monotonic()
    with httpx.Client(base_url=url, headers=headers, limits=limits) as client, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        def one(case: Case) -> tuple[Case, Outcome, float]:
            t0 = time.monotonic()
            return case, send_case(client, case, timeout_s), time.monotonic() - t0

        for batch in _batches(cases(model, embed_model), requests, seed):
            for case, outcome, elapsed in pool.map(one, batch):
                report.add(case, outcome, elapsed)
            if progress is not None:
                progress(report)
        report.healthy_after = _still_answers(client, model)
    report.wall_s = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=30.0,
                        help="a request with no complete reply by then is a hang")
    parser.add_argument("--model", default="gemma")
    parser.add_argument("--embed-model", default="gemma-embed")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args(argv)

    def progress(r: FuzzReport) -> None:
        print(f"{r.requests} requests, {dict(r.statuses)}, problems {dict(r.problems)}",
              file=sys.stderr, flush=True)

    report = run_fuzz(args.url, args.requests, seed=args.seed, concurrency=args.concurrency,
                      timeout_s=args.timeout_s, model=args.model, embed_model=args.embed_model,
                      api_key=args.api_key, progress=progress)
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:  # noqa: PTH123
            f.write(text + "\n")
    print(text)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
