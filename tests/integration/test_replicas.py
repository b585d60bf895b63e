"""Sessions across replicas on the real model: two servers sharing one session directory
(``sessions.shared``) continue each other's conversations exactly, and concurrent turns of
one conversation on both leave one consistent session; a prompt prefix is shared between one
API key's conversations (exactly, never across keys); a client that leaves during a long
prefill leaves what was read for its retry."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hugind.sessions import decode_file
from tests.integration.test_reliability import stats, wait_for
from tests.integration.test_sessions import (
    KEYS,
    NOTES,
    QUESTIONS,
    _cfg,
    cached,
    chat,
    conversation,
)
from tests.servers import HugindProcess, running

pytestmark = pytest.mark.model


def written(*urls: str) -> None:
    for url in urls:
        wait_for(lambda u=url: stats(u)["pending_writes"] == 0, 10, "write-behind")


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-sessions")


@pytest.fixture(scope="module")
def replicas(gemma_path: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, HugindProcess]]:
    procs = {}
    for name in ("a", "b"):
        cfg = _cfg(gemma_path, parallel=2, ram_mb=64)
        cfg["models"][0]["n_ctx"] = 4096
        cfg["sessions"].update(dir=str(shared_dir), shared=True, flush_s=0.5, replica_id=name)
        procs[name] = HugindProcess(cfg, tmp_path_factory.mktemp(f"replica-{name}"),
                                    name=f"replica-{name}")
    with running(procs):
        yield procs


def _reply(r: dict[str, Any]) -> dict[str, str]:
    return {"role": "assistant", "content": r["choices"][0]["message"]["content"]}


def _same_as_fresh(url: str, messages: list[dict[str, str]], r: dict[str, Any]) -> None:
    fresh = chat(url, messages, cache=False)
    assert cached(fresh) == 0
    assert fresh["choices"][0]["message"] == r["choices"][0]["message"]


def test_a_session_moves_between_replicas_both_ways(replicas: dict[str, HugindProcess]) -> None:
    a, b = replicas["a"].url, replicas["b"].url
    messages, _ = conversation(a, "ann", 2)
    written(a)
    messages.append({"role": "user", "content": QUESTIONS[2]})
    before = stats(b)
    on_b = chat(b, messages, user="ann")  # b never saw ann: it reads a's file
    assert cached(on_b) > 0
    assert stats(b)["restored_disk"] == before["restored_disk"] + 1
    _same_as_fresh(b, messages, on_b)
    written(b)
    # back on a, which still holds turn 2 in its KV: b's turn 3 is newer, a drops its copy
    messages += [_reply(on_b), {"role": "user", "content": "Say that again, shorter."}]
    stale = stats(a)["stale_dropped"]
    on_a = chat(a, messages, user="ann")
    assert stats(a)["stale_dropped"] == stale + 1
    assert cached(on_a) > cached(on_b)  # it resumed from b's longer conversation
    _same_as_fresh(a, messages, on_a)


def _stored(shared_dir: Path, name: str) -> dict[str, Any]:
    for path in (shared_dir / "gemma").glob("[!.]*.session"):
        header, _, _ = decode_file(path.read_bytes())
        if header["name"] == name:
            return header
    raise AssertionError(f"no stored session {name}")


def test_concurrent_turns_on_two_replicas_leave_one_consistent_session(
        replicas: dict[str, HugindProcess], shared_dir: Path) -> None:
    a, b = replicas["a"].url, replicas["b"].url
    first, _ = conversation(a, "bea", 1)
    written(a)
    branches = {"a": [*first, {"role": "user", "content": QUESTIONS[1]}],
                "b": [*first, {"role": "user", "content": "And about sharks?"}]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {n: pool.submit(chat, replicas[n].url, m, user="bea")
                   for n, m in branches.items()}
        replies = {n: f.result() for n, f in futures.items()}
    written(a, b)
    header = _stored(shared_dir, "bea")
    winner = header["origin"]
    loser = "b" if winner == "a" else "a"
    assert header["version"] == 2 or stats(replicas[winner].url)["version_conflicts"] == 0
    # the stored session is the winner's whole conversation: its next turn resumes past the
    # winner's own second question on either replica, and equals a fresh read
    history = [*branches[winner], _reply(replies[winner]),
               {"role": "user", "content": QUESTIONS[2]}]
    for name in (loser, winner):
        url = replicas[name].url
        r = chat(url, history, user="bea")
        assert cached(r) > cached(replies[winner]), name
        _same_as_fresh(url, history, r)
        written(url)
        history = [*history, _reply(r), {"role": "user", "content": "Thanks."}]


SYSTEM = "You are a marine biology tutor. " + NOTES * 8


def _tutor(url: str, question: str, *, user: str, key: str = KEYS[0]) -> dict[str, Any]:
    return chat(url, [{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": question}], user=user, key=key)


def test_a_keys_conversations_share_a_prefix_exactly_never_across_keys(
        replicas: dict[str, HugindProcess]) -> None:
    url = replicas["a"].url
    first = _tutor(url, "What do whales eat?", user="tutor-1")
    assert cached(first) == 0
    before = stats(url)
    second = _tutor(url, "How long do dolphins live?", user="tutor-2")
    assert cached(second) >= 256  # the system prompt, read once for both
    after = stats(url)
    assert after["shared_prefixes"] == before["shared_prefixes"] + 1
    _same_as_fresh(url, [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": "How long do dolphins live?"}], second)
    other_key = _tutor(url, "How long do dolphins live?", user="tutor-3", key=KEYS[1])
    assert cached(other_key) == 0
    assert other_key["choices"][0]["message"] == second["choices"][0]["message"]


def test_a_client_leaving_a_long_prefill_leaves_it_for_the_retry(
        replicas: dict[str, HugindProcess]) -> None:
    url = replicas["b"].url
    messages = [{"role": "user", "content": "Sum this up. " + NOTES * 70}]
    body = {"model": "gemma", "messages": messages, "max_tokens": 8, "temperature": 0,
            "stream": True}
    start = stats(url)["prefilled_tokens"]
    with httpx.Client(timeout=60) as client, client.stream(
            "POST", url + "/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {KEYS[0]}"}) as r:
        assert r.status_code == 200
        wait_for(lambda: stats(url)["prefilled_tokens"] - start >= 1024, 30, "a part read")
    # the client left before its first token
    wait_for(lambda: stats(url)["active_sequences"] == 0, 10, "the sequence freed")
    assert stats(url)["prefilled_tokens"] - start < 2500, "the whole prompt was read"
    retry = chat(url, messages)
    assert cached(retry) >= 1024
    _same_as_fresh(url, messages, retry)


def test_a_response_stored_on_one_replica_is_continued_on_the_other(
        replicas: dict[str, HugindProcess]) -> None:
    a, b = (openai.OpenAI(base_url=replicas[n].url + "/v1", api_key=KEYS[0], max_retries=0,
                          timeout=120) for n in ("a", "b"))
    first = a.responses.create(model="gemma", input=QUESTIONS[0], max_output_tokens=12,
                               temperature=0)
    wait_for(lambda: stats(replicas["a"].url)["pending_writes"] == 0, 10, "write-behind")
    second = b.responses.create(model="gemma", input=QUESTIONS[1], max_output_tokens=12,
                                temperature=0, previous_response_id=first.id)
    assert first.usage is not None and second.usage is not None
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens_details.cached_tokens > 0  # a's KV, from the store
    fresh = b.responses.create(model="gemma", max_output_tokens=12, temperature=0, store=False,
                               input=[{"role": "user", "content": QUESTIONS[0]},
                                      {"role": "assistant", "content": first.output_text},
                                      {"role": "user", "content": QUESTIONS[1]}])
    assert fresh.output_text == second.output_text
