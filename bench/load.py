"""A bounded load test on loopback: many clients mixing chat, completions and embeddings,
streamed and not, some leaving mid-stream, for a fixed time; then the server's own counters
are checked back to idle and its RSS compared with the RSS after warm-up.

Correctness: greedy requests are drawn from a fixed set of prompts whose answers are taken
solo before the load starts; with ``batch_invariant: true`` on the server every completed
answer under load must equal its solo answer exactly (embeddings: cosine > 0.999).

    .venv/bin/python -m bench.load --url http://127.0.0.1:8080 --model gemma \\
        --embed-model gemma-embed --pid PID --clients 32 --duration 600

Prints a JSON report; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROMPTS = [
    "Name three rivers.", "What is the capital of France?", "Say hello in Spanish.",
    "Count from one to five.", "Describe the sea in one sentence.", "Give me a colour.",
]
TEXTS = ["The sea is", "Once upon a time", "def fibonacci(n):", "Rivers flow into"]
EMBED = ["a small red apple", "the ocean at night", "a fast car on a road"]
KINDS = ("chat", "chat_stream", "completion", "completion_stream", "embedding")


@dataclass
class Report:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_warm_mib: float = 0.0
    rss_end_mib: float = 0.0
    after: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["statuses"] = dict(self.statuses)
        out["kinds"] = dict(self.kinds)
        out["wrong"] = self.wrong[:20]
        out["errors"] = self.errors[:20]
        return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    def __init__(self, url: str, model: str, embed_model: str | None, *, key: str | None,
                 max_tokens: int, disconnect: float, seed: int,
                 admin_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.embed_model = embed_model
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Engine counters need an admin key once a server has client keys.
        self.admin_headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.max_tokens = max_tokens
        self.disconnect = disconnect
        self.rng = random.Random(seed)
        self.expected: dict[tuple[str, int], Any] = {}
        self.report = Report()
        self.sessions: set[str] = set()

    # -- requests ------------------------------------------------------------------------------

    def body(self, kind: str, i: int, session: str | None) -> tuple[str, dict[str, Any]]:
        if kind == "embedding":
            return "/v1/embeddings", {"model": self.embed_model, "input": EMBED[i % len(EMBED)]}
        common = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                  "stream": kind.endswith("stream")}
        if kind.startswith("chat"):
            body = {**common, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
            if session:
                body["prompt_cache_key"] = session
            return "/v1/chat/completions", body
        return "/v1/completions", {**common, "prompt": TEXTS[i % len(TEXTS)]}

    async def send(self, client: httpx.AsyncClient, kind: str, i: int, *,
                   session: str | None = None, leave: bool = False) -> tuple[int, Any]:
        """(status, answer): the text of a completion, the vector of an embedding; status 0
        when this client left on purpose."""
        path, body = self.body(kind, i, session)
        if not body.get("stream"):
            r = await client.post(self.url + path, json=body, headers=self.headers)
            if r.status_code != 200:
                return r.status_code, r.text[:300]
            data = r.json()
            if kind == "embedding":
                return 200, data["data"][0]["embedding"]
            choice = data["choices"][0]
            text = choice["message"]["content"] if kind == "chat" else choice["text"]
            return 200, (text, choice["finish_reason"], data["usage"]["completion_tokens"])
        async with client.stream("POST", self.url + path, json=body,
                                 headers=self.headers) as r:
            if r.status_code != 200:
                return r.status_code, (await r.aread()).decode()[:300]
            parts: list[str] = []
            finish, usage, done, n = None, None, False, 0
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                n += 1
                if leave and n >= 2:
                    return 0, None  # leaves mid-stream: the context manager closes it
                if chunk.get("usage"):
                    usage = chunk["usage"]["completion_tokens"]
                for c in chunk.get("choices", []):
                    delta = c.get("delta", {}).get("content") if kind == "chat_stream" \
                        else c.get("text")
                    parts.append(delta or "")
                    finish = c.get("finish_reason") or finish
            if not done:
                return -1, "the stream ended without [DONE]"
            return 200, ("".join(parts), finish, usage)

    def check(self, kind: str, i: int, answer: Any) -> str | None:
        ref = self.expected.get((kind.removesuffix("_stream"), i))
        if kind == "embedding":
            dot = sum(a * b for a, b in zip(answer, ref, strict=True))
            return None if dot > 0.999 else f"embedding {i}: cosine {dot:.4f} to solo"
        text, finish, used = answer
        if finish not in ("stop", "length"):
            return f"{kind} {i}: finish_reason {finish!r}"
        if used is not None and not 0 <= used <= self.max_tokens:
            return f"{kind} {i}: completion_tokens {used}"
        if ref is not None and text != ref[0]:
            return f"{kind} {i}: {text!r} under load, {ref[0]!r} solo"
        return None

    # -- phases -------------------------------------------------------------------------------

    async def references(self, client: httpx.AsyncClient) -> None:
        for kind, n in (("chat", len(PROMPTS)), ("completion", len(TEXTS)),
                        ("embedding", len(EMBED) if self.embed_model else 0)):
            for i in range(n):
                status, answer = await self.send(client, kind, i)
                if status != 200:
                    raise RuntimeError(f"solo {kind} {i} answered {status}: {answer}")
                self.expected[(kind, i)] = answer

    async def client_loop(self, client: httpx.AsyncClient, c: int, until: float) -> None:
        kinds = [k for k in KINDS if k != "embedding" or self.embed_model]
        while time.monotonic() < until:
            kind = self.rng.choice(kinds)
            i = self.rng.randrange(12)
            i %= {"chat": len(PROMPTS), "completion": len(TEXTS),
                  "embedding": len(EMBED)}[kind.removesuffix("_stream")]
            session = f"load-{c}" if kind.startswith("chat") and self.rng.random() < 0.25 \
                else None
            leave = kind.endswith("stream") and self.rng.random() < self.disconnect * 2.5
            rep = self.report
            try:
                status, answer = await self.send(client, kind, i, session=session, leave=leave)
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                rep.requests += 1
                rep.statuses["transport"] += 1
                rep.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            rep.requests += 1
            rep.kinds[kind] += 1
            if session and status in (0, 200):  # one that left mid-stream may hold one too
                self.sessions.add(session)
            if status == 0:
                rep.disconnects += 1
                continue
            rep.statuses[str(status)] += 1
            if status == 200:
                problem = self.check(kind, i, answer)
                if problem:
                    rep.wrong.append(problem)
            elif status != 429:
                rep.errors.append(f"{kind}: {status} {answer}")
            else:
                await asyncio.sleep(1.0)  # a client told to back off does (Retry-After: 1)

    async def idle_after(self, client: httpx.AsyncClient, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = (await client.get(self.url + "/v1/sessions/stats",
                                      headers=self.admin_headers)).json()
            if all(m.get("active_sequences", 0) == 0 and m.get("queue_depth", 0) == 0
                   for m in stats.values()):
                break
            await asyncio.sleep(0.2)
        self.report.after = stats
        for name, m in stats.items():
            if m.get("active_sequences", 0) or m.get("queue_depth", 0):
                self.report.failures.append(f"{name} not idle after the load: {m}")
        listed = (await client.get(self.url + "/v1/sessions", headers=self.headers)).json()
        names = {r["name"] for r in listed["data"]}
        if not names <= self.sessions:
            self.report.failures.append(f"sessions nobody made: {sorted(names - self.sessions)}")
        for name in names:
            await client.delete(self.url + f"/v1/sessions/{name}", headers=self.headers)
        left = (await client.get(self.url + "/v1/sessions", headers=self.headers)).json()
        if left["data"]:
            self.report.failures.append(f"sessions left after deleting: {left['data']}")


async def run(url: str, model: str, embed_model: str | None, *, clients: int, duration: float,
              warmup: float, pid: int | None, key: str | None = None, max_tokens: int = 12,
              disconnect: float = 0.1, seed: int = 0, rss_slack: float = 0.05,
              timeout: float = 120.0, admin_key: str | None = None) -> Report:
    load = Load(url, model, embed_model, key=key, max_tokens=max_tokens,
                disconnect=disconnect, seed=seed, admin_key=admin_key)
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await load.references(client)
        warm_until = time.monotonic() + warmup
        until = warm_until + duration
        tasks = [asyncio.create_task(load.client_loop(client, c, until)) for c in range(clients)]
        await asyncio.sleep(max(warm_until - time.monotonic(), 0))
        if pid is not None:
            load.report.rss_warm_mib = rss_mib(pid)
        await asyncio.gather(*tasks)
        await load.idle_after(client)
    rep = load.report
    rep.wall_s = round(time.monotonic() - start, 1)
    if pid is not None:
        rep.rss_end_mib = rss_mib(pid)
        if rep.rss_end_mib > rep.rss_warm_mib * (1 + rss_slack):
            rep.failures.append(f"RSS grew {rep.rss_warm_mib:.0f} -> {rep.rss_end_mib:.0f} MiB")
    if rep.wrong:
        rep.failures.append(f"{len(rep.wrong)} answers differ from their solo answers")
    if rep.errors:
        rep.failures.append(f"{len(rep.errors)} requests failed other than with 429")
    if any(s.startswith("5") for s in rep.statuses):
        rep.failures.append(f"5xx answers: {dict(rep.statuses)}")
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--embed-model")
    p.add_argument("--key")
    p.add_argument("--admin-key", help="for /v1/sessions/stats when the server has keys")
    p.add_argument("--pid", type=int, help="the server's pid, to compare its RSS")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load after warm-up")
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--disconnect", type=float, default=0.1,
                   help="share of all requests whose client leaves mid-stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    rep = asyncio.run(run(args.url, args.model, args.embed_model, clients=args.clients,
                          duration=args.duration, warmup=args.warmup, pid=args.pid,
                          key=args.key, admin_key=args.admin_key, max_tokens=args.max_tokens,
                          disconnect=args.disconnect, seed=args.seed))
    text = json.dumps(rep.to_dict(), indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
