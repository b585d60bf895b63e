"""Targets, requests and results, and the one request function every scenario and server shares.

``send_request`` speaks OpenAI's HTTP API (chat completions, completions, embeddings,
responses), streams when the spec says so, timestamps every SSE line, and never raises for a
failed request: failures are data (``RequestResult.ok`` False with ``error`` and
``status_code``), as in vLLM's ``endpoint_request_func``. Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx

from bench.sse import (
    StreamStats,
    apply_response,
    summarize_responses_stream,
    summarize_stream,
)

__all__ = [
    "HttpRunner",
    "RequestResult",
    "RequestSpec",
    "Runner",
    "Target",
    "build_request",
    "probe_capabilities",
    "probe_responses",
    "send_request",
]

OPTIONAL_FIELDS = ("ignore_eos", "prompt_cache_key", "stream_options")


@dataclass
class Target:
    """An OpenAI-compatible server to measure: base URL, model ids, optional API key.

    ``base_url`` may end in ``/v1`` or not. ``embed_model`` (and ``embed_url`` when embeddings are
    served elsewhere) enable the embeddings scenario. ``supports`` records which optional request
    fields the server accepts (filled by ``probe_capabilities``; unknown fields are sent).
    """

    name: str
    base_url: str
    model: str
    key: str | None = None
    embed_model: str | None = None
    embed_url: str | None = None
    supports: dict[str, bool] = field(default_factory=dict)

    @property
    def api_root(self) -> str:
        """The base URL normalized to end in ``/v1`` (no trailing slash)."""
        url = self.base_url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    @property
    def embed_root(self) -> str:
        """Where embeddings go: ``embed_url`` normalized, else ``api_root``."""
        if not self.embed_url:
            return self.api_root
        url = self.embed_url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (the key is never written, only whether there is one)."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "embed_model": self.embed_model,
            "embed_url": self.embed_url,
            "has_key": self.key is not None,
            "supports": dict(self.supports),
        }


@dataclass
class RequestSpec:
    """What to ask, independent of the server.

    ``kind`` is "chat", "completions", "embeddings" or "responses". For chat, ``messages``; for
    completions, ``prompt``; for embeddings, ``inputs``; for responses, ``messages`` are the
    ``input`` items (``{"role", "content"}``, plus ``"type": "message"`` on assistant items),
    with ``store`` and ``previous_response_id``. ``session`` sets both ``user`` and
    ``prompt_cache_key``. ``labels`` (scenario, step, round, user, turn...) are copied into the
    result.
    """

    kind: str = "chat"
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    inputs: list[str] = field(default_factory=list)
    max_tokens: int = 16
    ignore_eos: bool = True
    session: str | None = None
    stream: bool = True
    store: bool = False
    previous_response_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. X-Session-Id for a balancer
    labels: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def generation(cls, endpoint: str, text: str, **kwargs: Any) -> RequestSpec:
        """A generation request of ``text``: one user message ("chat") or a raw prompt
        ("completions", which applies no chat template and so is the same on every server)."""
        if endpoint == "chat":
            return cls(kind="chat", messages=[{"role": "user", "content": text}], **kwargs)
        if endpoint == "completions":
            return cls(kind="completions", prompt=text, **kwargs)
        raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")

    def prompt_text(self) -> str:
        """The prompt as plain text (messages' contents joined), for runners without templates."""
        if self.kind == "completions":
            return self.prompt
        return "\n".join(m.get("content", "") for m in self.messages)


@dataclass
class RequestResult:
    """One request's outcome. Times in ms; ``t_start_s`` from the run's start."""

    target: str
    ok: bool = False
    status_code: int | None = None
    error: str | None = None
    t_start_s: float = 0.0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    output_tokens: int = 0
    output_tokens_source: str = "chunks"
    content_chunks: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    done_seen: bool = False
    cut_off: bool = False
    decode_tokens_per_s: float | None = None
    inputs: int | None = None
    text: str = ""
    response_id: str | None = None
    served_by: str | None = None  # a balancer's X-Served-By header: the replica that answered
    labels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, text_chars: int = 80) -> dict[str, Any]:
        """JSON-safe dict; the reply text is cut to ``text_chars`` characters."""
        out = asdict(self)
        out["text"] = self.text[:text_chars]
        out["itl_ms"] = [round(x, 3) for x in self.itl_ms]
        return out

    def apply_stream(self, stats: StreamStats) -> None:
        """Copy a stream's measurements in."""
        self.ttft_ms = stats.ttft_ms
        self.itl_ms = stats.itl_ms
        self.output_tokens = stats.output_tokens
        self.output_tokens_source = stats.output_tokens_source
        self.content_chunks = stats.content_chunks
        self.prompt_tokens = stats.prompt_tokens
        self.cached_tokens = stats.cached_tokens
        self.finish_reason = stats.finish_reason
        self.done_seen = stats.done_seen
        self.cut_off = stats.cut_off
        self.decode_tokens_per_s = stats.decode_tokens_per_s
        self.text = stats.text
        self.response_id = stats.response_id
        if stats.error:
            self.error = stats.error


class Runner(Protocol):
    """Anything that can run a ``RequestSpec``: an HTTP target, or the in-process engine."""

    name: str

    async def run(self, spec: RequestSpec, timeout_s: float) -> RequestResult:
        """Run one request; never raises for a failed request."""
        ...


def build_request(target: Target, spec: RequestSpec) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body of ``spec`` for ``target`` (honouring ``target.supports``)."""
    ok = target.supports
    body: dict[str, Any] = {}
    if spec.kind == "embeddings":
        body["model"] = target.embed_model or target.model
        body["input"] = list(spec.inputs)
        body.update(spec.extra)
        return target.embed_root + "/embeddings", body
    body["model"] = target.model
    if spec.kind == "responses":
        return target.api_root + "/responses", _responses_body(target, spec, body)
    if spec.kind == "chat":
        url = target.api_root + "/chat/completions"
        body["messages"] = spec.messages
    elif spec.kind == "completions":
        url = target.api_root + "/completions"
        body["prompt"] = spec.prompt
    else:
        raise ValueError(f"unknown request kind {spec.kind!r}")
    body["max_tokens"] = spec.max_tokens
    body["temperature"] = 0.0
    body["stream"] = spec.stream
    if spec.stream and ok.get("stream_options", True):
        body["stream_options"] = {"include_usage": True}
    if spec.ignore_eos and ok.get("ignore_eos", True):
        body["ignore_eos"] = True
    if spec.session is not None:
        body["user"] = spec.session
        if ok.get("prompt_cache_key", True):
            body["prompt_cache_key"] = spec.session
    body.update(spec.extra)
    return url, body


def _responses_body(target: Target, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
    """A Responses body: no ``stream_options`` (not part of that API; the final event always
    carries usage), and ``previous_response_id`` only when chaining (llama-server answers 400
    to any non-empty one)."""
    body["input"] = list(spec.messages)
    body["max_output_tokens"] = spec.max_tokens
    body["temperature"] = 0.0
    body["stream"] = spec.stream
    body["store"] = spec.store
    if spec.previous_response_id is not None:
        body["previous_response_id"] = spec.previous_response_id
    if spec.ignore_eos and target.supports.get("ignore_eos", True):
        body["ignore_eos"] = True
    if spec.session is not None:
        body["user"] = spec.session
        if target.supports.get("prompt_cache_key", True):
            body["prompt_cache_key"] = spec.session
    body.update(spec.extra)
    return body


def _headers(target: Target) -> dict[str, str]:
    headers = {"Accept": "text/event-stream, application/json"}
    if target.key:
        headers["Authorization"] = f"Bearer {target.key}"
    return headers


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            return str(err.get("message", err))[:200]
        return str(err)[:200]
    return str(data)[:200]


async def send_request(
    client: httpx.AsyncClient,
    target: Target,
    spec: RequestSpec,
    *,
    timeout_s: float = 120.0,
    epoch_s: float = 0.0,
) -> RequestResult:
    """Send ``spec`` to ``target`` and measure it. Failures come back as data, never raised.

    ``epoch_s`` is the run's start on the ``time.perf_counter`` clock, for ``t_start_s``.
    """
    url, body = build_request(target, spec)
    result = RequestResult(target=target.name, labels=dict(spec.labels))
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    t0 = time.perf_counter()
    result.t_start_s = t0 - epoch_s
    try:
        if body.get("stream"):
            lines: list[tuple[float, str]] = []
            broken: str | None = None
            async with client.stream(
                "POST", url, json=body, headers={**_headers(target), **spec.headers},
                timeout=timeout,
            ) as resp:
                result.status_code = resp.status_code
                result.served_by = resp.headers.get("x-served-by")
                if resp.status_code != 200:
                    result.error = f"HTTP {resp.status_code}: {_error_text(await resp.aread())}"
                else:
                    broken = await _read_lines(resp, lines)
            t1 = time.perf_counter()
            if result.error is None:
                summarize = (
                    summarize_responses_stream if spec.kind == "responses" else summarize_stream
                )
                result.apply_stream(summarize(lines, t0))
                if broken is not None and result.finish_reason is None:
                    # the server dropped a stream it had begun: cut off, not failed
                    result.cut_off = True
                    result.error = f"stream cut off: {broken}"
        else:
            resp = await client.post(url, json=body, headers={**_headers(target), **spec.headers},
                                     timeout=timeout)
            t1 = time.perf_counter()
            result.status_code = resp.status_code
            result.served_by = resp.headers.get("x-served-by")
            if resp.status_code != 200:
                result.error = f"HTTP {resp.status_code}: {_error_text(resp.content)}"
            else:
                _apply_json(result, resp.json())
        result.latency_ms = (t1 - t0) * 1000.0
    except asyncio.CancelledError:
        raise
    except (httpx.HTTPError, ValueError, OSError) as exc:
        result.latency_ms = (time.perf_counter() - t0) * 1000.0
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    result.ok = result.error is None and not result.cut_off
    if spec.kind != "embeddings" and result.ok and result.output_tokens == 0 and spec.stream:
        result.ok = False
        result.error = "stream carried no tokens"
    return result


async def _read_lines(resp: httpx.Response, lines: list[tuple[float, str]]) -> str | None:
    """Append timestamped lines until the stream ends; the error text if the connection broke
    after the reply began (what was read so far stays in ``lines``)."""
    try:
        async for line in resp.aiter_lines():
            lines.append((time.perf_counter(), line))
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def _apply_json(result: RequestResult, data: Any) -> None:
    """Fill a result from a non-streamed reply (embeddings or a completion)."""
    if not isinstance(data, dict):
        result.error = "reply is not a JSON object"
        return
    if data.get("object") == "response":
        _apply_response_json(result, data)
        return
    if isinstance(data.get("data"), list):
        result.inputs = len(data["data"])
    usage = data.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("prompt_tokens"), int):
            result.prompt_tokens = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            result.output_tokens = usage["completion_tokens"]
            result.output_tokens_source = "usage"
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            result.cached_tokens = details["cached_tokens"]
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        result.finish_reason = choice.get("finish_reason")
        msg = choice.get("message")
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            result.text = msg["content"]
        elif isinstance(choice.get("text"), str):
            result.text = choice["text"]


def _apply_response_json(result: RequestResult, data: dict[str, Any]) -> None:
    """Fill a result from a non-streamed Responses reply."""
    stats = StreamStats()
    out = apply_response(stats, data)
    result.response_id = stats.response_id
    result.prompt_tokens, result.cached_tokens = stats.prompt_tokens, stats.cached_tokens
    result.finish_reason = stats.finish_reason
    if out is not None:
        result.output_tokens, result.output_tokens_source = out, "usage"
    if stats.error:
        result.error = stats.error
    result.text = "".join(
        part.get("text", "")
        for item in data.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


@dataclass
class HttpRunner:
    """Runs specs against one HTTP target through ``send_request``."""

    target: Target
    client: httpx.AsyncClient
    epoch_s: float = 0.0

    @property
    def name(self) -> str:
        """The target's name."""
        return self.target.name

    async def run(self, spec: RequestSpec, timeout_s: float) -> RequestResult:
        """Send one request."""
        return await send_request(
            self.client, self.target, spec, timeout_s=timeout_s, epoch_s=self.epoch_s
        )


async def probe_embeddings(
    client: httpx.AsyncClient, target: Target, timeout_s: float = 60.0
) -> RequestResult:
    """One tiny embeddings request: the probe of a target that only embeds."""
    spec = RequestSpec(kind="embeddings", inputs=["probe"], stream=False,
                       labels={"scenario": "probe"})
    return await send_request(client, target, spec, timeout_s=timeout_s)


async def probe_capabilities(
    client: httpx.AsyncClient, target: Target, timeout_s: float = 60.0, endpoint: str = "chat"
) -> RequestResult:
    """Find which optional request fields ``target`` accepts; also serves as warm-up.

    Sends a tiny streamed chat request with every optional field; on a 4xx reply drops them one
    at a time (``ignore_eos``, ``prompt_cache_key``, ``stream_options``) and records the verdict
    in ``target.supports``. Servers that silently ignore a field are marked as supporting it.
    Returns the last probe's result (check ``ok`` to see whether the target works at all).
    """
    spec = RequestSpec.generation(
        endpoint,
        "Once upon a time, in a small village by the sea, there lived",
        max_tokens=4,
        session="bench-probe",
        labels={"scenario": "probe"},
    )
    for f in OPTIONAL_FIELDS:
        target.supports.setdefault(f, True)
    result = await send_request(client, target, spec, timeout_s=timeout_s)
    for f in OPTIONAL_FIELDS:
        if result.ok or result.status_code is None or not 400 <= result.status_code < 500:
            break
        target.supports[f] = False
        result = await send_request(client, target, spec, timeout_s=timeout_s)
    return result


async def probe_responses(
    client: httpx.AsyncClient, target: Target, timeout_s: float = 60.0
) -> RequestResult:
    """Whether ``target`` serves ``/v1/responses`` and chains stored responses; also a warm-up.

    Sends a stored response, then a short one naming it as ``previous_response_id``, and
    records ``supports["responses"]`` and ``supports["previous_response_id"]``. A chain counts
    only if the second turn succeeded *and* read more input tokens than the first (so a server
    that accepted the field but dropped the history is not taken for one that chains);
    llama-server answers the second with a 400. Returns the second result if it succeeded,
    else the first (whose ``ok`` says whether the target serves ``/v1/responses`` at all).
    """
    story = "Once upon a time, in a small village by the sea, there lived a fisherman and his"
    first = RequestSpec(
        kind="responses",
        messages=[{"role": "user", "content": story}],
        max_tokens=4,
        store=True,
        labels={"scenario": "probe"},
    )
    r1 = await send_request(client, target, first, timeout_s=timeout_s)
    target.supports["responses"] = r1.ok
    if not r1.ok or r1.response_id is None:
        target.supports["previous_response_id"] = False
        return r1
    second = RequestSpec(
        kind="responses",
        messages=[{"role": "user", "content": "Go on."}],
        max_tokens=4,
        previous_response_id=r1.response_id,
        labels={"scenario": "probe"},
    )
    r2 = await send_request(client, target, second, timeout_s=timeout_s)
    known = r1.prompt_tokens is not None and r2.prompt_tokens is not None
    grew = not known or (r2.prompt_tokens or 0) > (r1.prompt_tokens or 0)
    target.supports["previous_response_id"] = r2.ok and grew
    return r2 if r2.ok else r1
