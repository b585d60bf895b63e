"""Per-user KV sessions on the real model: resume == fresh, tiers, isolation, batching."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

KEYS = ["sess-key-one-1111", "sess-key-two-2222"]
ADMIN_KEY = "sess-admin-key-3333"  # engine counters span every tenant: admin keys only
# The first turn is long enough to hold several prefill quanta (16 tokens each) beyond the
# 64-row chunk the rest of a resumed prompt is read in with flash attention on the CPU: only
# whole quanta of a prompt are reused, so a resumed turn is bit-identical to a fresh one.
NOTES = ("My notes say that whales are large marine mammals that breathe air, sing long songs, "
         "travel across whole oceans every year and feed on krill and small fish. ")
QUESTIONS = [NOTES * 3 + "Tell me about whales.", "And about dolphins?", "Which one is bigger?"]


def _cfg(gemma_path: Path, *, parallel: int, ram_mb: int, max_queue: int = 16) -> dict[str, Any]:
    cfg = model_config(gemma_path, parallel=parallel, max_queue=max_queue)
    cfg["server"]["api_keys"] = KEYS
    cfg["server"]["admin_keys"] = [ADMIN_KEY]
    cfg["sessions"]["ram_budget_mb"] = ram_mb
    cfg["models"] = cfg["models"][:1]
    return cfg


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str,
           cfg: dict[str, Any]) -> Iterator[HugindProcess]:
    proc = HugindProcess(cfg, tmp_path_factory.mktemp(name), name=name).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def ram_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[HugindProcess]:
    """Two slots and a roomy RAM tier: a third user pushes the least recent one to RAM."""
    yield from _serve(tmp_path_factory, "ram", _cfg(gemma_path, parallel=2, ram_mb=256))


@pytest.fixture(scope="module")
def disk_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[HugindProcess]:
    """One slot and no RAM budget: every evicted conversation goes straight to disk."""
    yield from _serve(tmp_path_factory, "disk",
                      _cfg(gemma_path, parallel=1, ram_mb=0, max_queue=1))


def chat(url: str, messages: list[dict[str, str]], *, key: str = KEYS[0],
         user: str | None = None, cache: bool = True, max_tokens: int = 12,
         **extra: Any) -> dict[str, Any]:
    body = {"model": "gemma", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "cache_prompt": cache, **extra}
    if user is not None:
        body["user"] = user
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()


def stats(url: str) -> dict[str, Any]:
    r = httpx.get(url + "/v1/sessions/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return r.json()["gemma"]


def conversation(url: str, user: str, turns: int, **kw: Any,
                 ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    messages: list[dict[str, str]] = []
    replies = []
    for q in QUESTIONS[:turns]:
        messages.append({"role": "user", "content": q})
        r = chat(url, messages, user=user, **kw)
        replies.append(r)
        messages.append({"role": "assistant", "content": r["choices"][0]["message"]["content"]})
    return messages, replies


def cached(r: dict[str, Any]) -> int:
    return int(r["usage"]["prompt_tokens_details"]["cached_tokens"])


def test_resume_from_resident_equals_fresh(ram_server: HugindProcess) -> None:
    url = ram_server.url
    messages, replies = conversation(url, "alice", 3)
    assert cached(replies[0]) == 0
    assert all(cached(r) > 0 for r in replies[1:])
    for i in range(1, 3):
        prefix = messages[: 2 * i + 1]
        fresh = chat(url, prefix, user=None, cache=False)
        assert cached(fresh) == 0
        assert fresh["choices"][0]["message"] == replies[i]["choices"][0]["message"]


def test_resume_from_ram_equals_fresh(ram_server: HugindProcess) -> None:
    url = ram_server.url
    before = stats(url)
    messages, _ = conversation(url, "bob", 1)
    conversation(url, "carol", 1)
    conversation(url, "dave", 1)  # two slots: bob's KV goes to RAM
    messages.append({"role": "user", "content": QUESTIONS[1]})
    resumed = chat(url, messages, user="bob")
    after = stats(url)
    assert after["restored_ram"] > before["restored_ram"]
    assert cached(resumed) > 0
    fresh = chat(url, messages, cache=False)
    assert fresh["choices"][0]["message"] == resumed["choices"][0]["message"]


def test_flash_attention_resume_equals_fresh(gemma_path: Path,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """`flash_attn: true` on the CPU: prompts are read in chunks of 64+ rows, so a resumed
    turn still equals a fresh read, text and logprobs, and still reuses the cache."""
    cfg = _cfg(gemma_path, parallel=2, ram_mb=64)
    cfg["models"][0]["flash_attn"] = True
    proc = HugindProcess(cfg, tmp_path_factory.mktemp("fa"), name="fa").start()
    try:
        url = proc.url
        messages, _ = conversation(url, "fa-user", 1)
        messages.append({"role": "user", "content": QUESTIONS[1]})
        fresh = chat(url, messages, cache=False, logprobs=True)
        resumed = chat(url, messages, user="fa-user", logprobs=True)
    finally:
        proc.stop()
    assert cached(resumed) > 0
    assert resumed["choices"][0]["message"] == fresh["choices"][0]["message"]
    assert resumed["choices"][0]["logprobs"] == fresh["choices"][0]["logprobs"]


def test_keys_are_isolated(ram_server: HugindProcess) -> None:
    url = ram_server.url
    conversation(url, "shared-name", 2, key=KEYS[0])
    other = chat(url, [{"role": "user", "content": QUESTIONS[0]}], user="shared-name",
                 key=KEYS[1])
    assert cached(other) == 0
    h0 = {"Authorization": f"Bearer {KEYS[0]}"}
    h1 = {"Authorization": f"Bearer {KEYS[1]}"}
    mine = httpx.get(url + "/v1/sessions", headers=h0).json()["data"]
    assert any(s["name"] == "shared-name" and s["tokens"] > 0 for s in mine)
    theirs = httpx.get(url + "/v1/sessions", headers=h1).json()["data"]
    assert {s["name"] for s in theirs} == {"shared-name"}
    assert httpx.get(url + "/v1/sessions/alice", headers=h1).status_code == 404
    assert httpx.delete(url + "/v1/sessions/alice", headers=h1).status_code == 404
    assert httpx.get(url + "/v1/sessions/alice", headers=h0).status_code == 200
    assert httpx.delete(url + "/v1/sessions/alice", headers=h0).status_code == 200
    assert httpx.get(url + "/v1/sessions/alice", headers=h0).status_code == 404


LONG = "Rivers carry water from the hills down to the sea, and towns grow on their banks. " * 12
# Two long prompts: their prefill chunks (>= 8 rows) share steps with the others' decode rows,
# which is where ggml-cpu switches to another matmul kernel.
CONCURRENT_PROMPTS = ["The moon is", "My favourite food is", "In the year 2000,", "Cats like to",
                      LONG + "The river", "Once upon a time", LONG + "In short,", "Dear diary,"]
CONCURRENT_PARAMS = [{"temperature": 0}, {"temperature": 0.8, "seed": 5},
                     {"temperature": 1.2, "top_p": 0.9, "seed": 9},
                     {"temperature": 0.5, "top_k": 20, "seed": 3}, {"temperature": 0},
                     {"temperature": 0.7, "min_p": 0.1, "seed": 11}, {"temperature": 0},
                     {"temperature": 0, "frequency_penalty": 0.5}]


def solo_and_together(url: str) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Each prompt alone, then all at once: (text, token logprobs) per prompt, and how many
    steps and tokens the together run took."""
    def run(i: int) -> tuple[str, list[float]]:
        r = httpx.post(url + "/v1/completions", timeout=120,
                       headers={"Authorization": f"Bearer {KEYS[1]}"},
                       json={"model": "gemma", "prompt": CONCURRENT_PROMPTS[i], "max_tokens": 16,
                             "cache_prompt": False, "logprobs": 1, **CONCURRENT_PARAMS[i]})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        return str(choice["text"]), list(choice["logprobs"]["token_logprobs"])

    n = len(CONCURRENT_PROMPTS)
    solo = [run(i) for i in range(n)]
    before = stats(url)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        together = list(pool.map(run, range(n)))
    after = stats(url)
    delta = {k: after[k] - before[k] for k in ("steps", "generated_tokens")}
    return solo, together, delta


@pytest.fixture(scope="module")
def exact_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[HugindProcess]:
    """`batch_invariant: true`, eight slots."""
    cfg = _cfg(gemma_path, parallel=8, ram_mb=64)
    cfg["models"][0]["batch_invariant"] = True
    yield from _serve(tmp_path_factory, "exact", cfg)


def test_batched_streams_equal_solo(exact_server: HugindProcess) -> None:
    """Eight streams with different sampling parameters, two with long prompts prefilled
    beside the others' decoding, each equal their solo runs bit for bit: the same text and
    the same logprob floats."""
    solo, together, delta = solo_and_together(exact_server.url)
    assert together == solo
    assert delta["generated_tokens"] >= 2 * delta["steps"]


@pytest.fixture(scope="module")
def burst_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[HugindProcess]:
    """Default kernels (no ``batch_invariant``), four slots: bursts of prompts are packed."""
    yield from _serve(tmp_path_factory, "burst", _cfg(gemma_path, parallel=4, ram_mb=64))


def test_prompts_read_together_resume_exactly(burst_server: HugindProcess) -> None:
    """Four first turns sent at once are read in one step (``packed_reads``); each user's
    second turn then reuses that KV and equals the same prompt read fresh, alone: the same
    text and logprob floats."""
    url = burst_server.url
    firsts: dict[str, list[dict[str, str]]] = {}
    for attempt in range(3):
        users = [f"burst-{attempt}-{i}" for i in range(4)]
        batch = {u: [{"role": "user", "content": f"I am user {u}. " + NOTES * (i + 1)
                      + "Tell me about whales." + " Please." * i}]
                 for i, u in enumerate(users)}
        before = stats(url)["packed_reads"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futs = {u: pool.submit(chat, url, batch[u], user=u) for u in users}
        replies = {u: f.result() for u, f in futs.items()}
        for u in users:
            firsts[u] = [*batch[u], {"role": "assistant",
                                     "content": replies[u]["choices"][0]["message"]["content"]}]
        if stats(url)["packed_reads"] > before:
            break
    else:
        pytest.fail("four simultaneous requests were never read in one step")
    for u in users:
        msgs = [*firsts[u], {"role": "user", "content": QUESTIONS[1]}]
        fresh = chat(url, msgs, cache=False, max_tokens=16, logprobs=True)
        resumed = chat(url, msgs, user=u, max_tokens=16, logprobs=True)
        assert cached(resumed) > 0
        assert resumed["choices"][0]["message"] == fresh["choices"][0]["message"]
        assert resumed["choices"][0]["logprobs"] == fresh["choices"][0]["logprobs"]


def _background(url: str, n: int) -> list[concurrent.futures.Future[Any]]:
    pool = concurrent.futures.ThreadPoolExecutor(n)
    futs = [pool.submit(httpx.post, url + "/v1/completions", timeout=120,
                        headers={"Authorization": f"Bearer {KEYS[1]}"},
                        json={"model": "gemma", "prompt": f"Background story {i}:",
                              "max_tokens": 48, "ignore_eos": True, "temperature": 0})
            for i in range(n)]
    pool.shutdown(wait=False)
    return futs


def test_resume_under_load_equals_fresh(exact_server: HugindProcess) -> None:
    """A session's second turn, resumed while seven other streams decode, equals the same
    prompt read fresh with nothing else running: same text, same logprobs."""
    url = exact_server.url
    for trial in range(4):
        user = f"under-load-{trial}"
        first = [{"role": "user", "content": f"Take {trial}. " + QUESTIONS[0] * (trial + 1)}]
        r1 = chat(url, first, user=user)
        msgs = [*first, {"role": "assistant", "content": r1["choices"][0]["message"]["content"]},
                {"role": "user", "content": QUESTIONS[1]}]
        fresh = chat(url, msgs, cache=False, max_tokens=16, logprobs=True)
        busy = _background(url, 7)
        time.sleep(0.15 * trial)
        resumed = chat(url, msgs, user=user, max_tokens=16, logprobs=True)
        assert all(f.result().status_code == 200 for f in busy)
        assert cached(resumed) > 0
        assert resumed["choices"][0]["message"] == fresh["choices"][0]["message"]
        assert resumed["choices"][0]["logprobs"] == fresh["choices"][0]["logprobs"]


def test_disconnect_frees_sequence(ram_server: HugindProcess) -> None:
    url = ram_server.url
    before = stats(url)["cancelled"]
    with httpx.stream("POST", url + "/v1/completions", timeout=60,
                      headers={"Authorization": f"Bearer {KEYS[0]}"},
                      json={"model": "gemma", "prompt": "Count: 1, 2,", "max_tokens": 400,
                            "ignore_eos": True, "stream": True}) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n > 6:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        s = stats(url)
        if s["active_sequences"] == 0 and s["cancelled"] > before:
            break
        time.sleep(0.1)
    assert s["active_sequences"] == 0
    assert s["cancelled"] > before
    assert s["generated_tokens"] < 10_000


def test_disk_tier_and_restart(disk_server: HugindProcess) -> None:
    url = disk_server.url
    messages, _ = conversation(url, "erin", 1)
    conversation(url, "frank", 1)  # one slot, no RAM budget: erin goes to disk
    deadline = time.monotonic() + 10  # written behind, within sessions.flush_s
    while stats(url)["disk_sessions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats(url)["disk_sessions"] >= 1
    messages.append({"role": "user", "content": QUESTIONS[1]})
    resumed = chat(url, messages, user="erin")
    assert stats(url)["restored_disk"] >= 1
    assert cached(resumed) > 0
    fresh = chat(url, messages, cache=False)
    assert fresh["choices"][0]["message"] == resumed["choices"][0]["message"]
    messages.append({"role": "assistant", "content": resumed["choices"][0]["message"]["content"]})
    messages.append({"role": "user", "content": QUESTIONS[2]})
    chat(url, messages[:-2], user="erin")  # erin's session now holds turn 2
    disk_server.stop()
    disk_server.start()
    after_restart = chat(disk_server.url, messages, user="erin")
    assert cached(after_restart) > 0
    assert stats(disk_server.url)["restored_disk"] == 1
    fresh = chat(disk_server.url, messages, cache=False)
    assert fresh["choices"][0]["message"] == after_restart["choices"][0]["message"]


def test_full_queue_gives_429(disk_server: HugindProcess) -> None:
    url = disk_server.url

    def run(_: int) -> httpx.Response:
        return httpx.post(url + "/v1/completions", timeout=120,
                          headers={"Authorization": f"Bearer {KEYS[0]}"},
                          json={"model": "gemma", "prompt": "List of numbers:", "max_tokens": 48,
                                "ignore_eos": True})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(run, range(6)))
    codes = [r.status_code for r in results]
    assert 429 in codes and 200 in codes, codes
    limited = next(r for r in results if r.status_code == 429)
    assert limited.headers.get("retry-after")
    assert limited.json()["error"]["type"] == "rate_limit_error"
