"""Remote providers against a real upstream: a second Hugind serving the real Gemma model.

The back instance is ``hugind serve`` with the real Gemma 3 270M (the session's ``auth_server``,
which only accepts ``tests.conftest.API_KEYS``). The front is the Hugind app in a uvicorn thread
with no local models and one provider pointing at the back. The provider's first key comes from
``${ENV}`` and is one the back rejects (401); the second comes from a key file and works, so
every fresh front shows key failover on a real upstream. Clients talk to the front with the
official ``openai`` SDK and get what the back answers directly for the same greedy request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hugind.app import create_app
from hugind.config import parse_config
from tests.conftest import API_KEYS
from tests.servers import HugindProcess, free_port, serve_in_thread

pytestmark = pytest.mark.model

PROVIDER = "back-hugind"
BAD_KEY = "sk-front-wrong-key-for-back-dead"  # the back answers 401 to it
GOOD_KEY = API_KEYS[1]
BAD_FP, GOOD_FP = "..." + BAD_KEY[-4:], "..." + GOOD_KEY[-4:]
MSGS = [{"role": "user", "content": "Name one colour."}]
FRESH = {"cache_prompt": False}  # no prefix reuse between the direct and the forwarded run
GREEDY: dict[str, Any] = {"max_tokens": 6, "temperature": 0, "seed": 7, "extra_body": FRESH}


@dataclass
class Front:
    url: str
    client: openai.OpenAI
    http: httpx.Client

    def activity(self) -> list[dict[str, Any]]:
        return list(self.http.get("/admin/providers").json()["activity"])


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=120)


def back_provider(back_url: str, key_file: Path, **extra: Any) -> dict[str, Any]:
    """The provider for the back: first key from ``${ENV}`` (rejected), second from a file."""
    return {
        "name": PROVIDER, "base_url": f"{back_url}/v1",
        "api_keys": ["${HUGIND_TEST_BACK_KEY}"], "api_key_files": [str(key_file)],
        "models": ["gemma", "gemma-embed", "back/"],
        "timeout": {"connect_s": 5, "read_s": 120}, "cooldown_s": 600, **extra,
    }


@contextmanager
def running_front(tmp_path: Path, *providers: dict[str, Any]) -> Iterator[Front]:
    config = parse_config({"sessions": {"enabled": False}, "providers": list(providers)})
    app = create_app(config, base_dir=tmp_path)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        # The client's own key: the back would reject it, so every success below also shows
        # that the front replaced it with the provider's key.
        yield Front(url, sdk(url, "front-client-key"), http)


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HUGIND_TEST_BACK_KEY", BAD_KEY)
    path = tmp_path / "back.keys"
    path.write_text(f"# keys for the back instance\n{GOOD_KEY}\n")
    return path


@pytest.fixture
def front(auth_server: HugindProcess, key_file: Path, tmp_path: Path) -> Iterator[Front]:
    with running_front(tmp_path, back_provider(auth_server.url, key_file)) as f:
        yield f


@pytest.fixture
def back(auth_server: HugindProcess) -> openai.OpenAI:
    return sdk(auth_server.url, API_KEYS[0])


def chunk_view(chunks: list[Any]) -> list[Any]:
    """What a stream says, without ids and timestamps: each choice's delta and finish reason."""
    return [[(c.index, c.model_dump(exclude_none=True).get("delta"), c.finish_reason)
             for c in chunk.choices] + [chunk.usage.model_dump() if chunk.usage else None]
            for chunk in chunks]


def test_models_lists_the_remote_models_owned_by_the_provider(front: Front) -> None:
    listed = {m.id: m.owned_by for m in front.client.models.list()}
    assert listed == {"gemma": PROVIDER, "gemma-embed": PROVIDER}  # no local models on the front
    assert front.client.models.retrieve("gemma-embed").owned_by == PROVIDER


def test_failover_from_a_rejected_key_is_shown_in_the_activity_log(front: Front) -> None:
    r = front.client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                             temperature=0)
    assert r.choices[0].message.content is not None
    events = front.activity()
    assert [(e["event"], e["key"], e["status"]) for e in events] == [
        ("key_cooled_down", BAD_FP, 401), ("failover", GOOD_FP, None)]
    assert events[0]["provider"] == PROVIDER
    assert "HTTP 401" in events[0]["description"]
    assert "Incorrect API key" in events[0]["description"]
    # The rejected key now rests: the next request goes straight to the good one.
    front.client.completions.create(model="gemma", prompt="Hi", max_tokens=1, temperature=0)
    assert len(front.activity()) == 2
    keys = {k["key"]: k for k in front.http.get("/admin/providers").json()["keys"]}
    assert keys[BAD_FP]["state"] == "cooling_down" and keys[BAD_FP]["last_status"] == 401
    assert keys[GOOD_FP]["state"] == "ready" and keys[GOOD_FP]["successes"] == 2
    admin = front.http.get("/admin/providers", params={"limit": 1, "provider": PROVIDER})
    assert [e["event"] for e in admin.json()["activity"]] == ["failover"]
    assert front.http.get("/admin/providers", params={"provider": "x"}).json()["activity"] == []


def test_chat_through_the_front_equals_the_back(front: Front, back: openai.OpenAI) -> None:
    direct = back.chat.completions.create(model="gemma", messages=MSGS, **GREEDY)
    forwarded = front.client.chat.completions.create(model="gemma", messages=MSGS, **GREEDY)
    assert forwarded.choices[0].message.content
    assert forwarded.choices[0].message == direct.choices[0].message
    assert forwarded.choices[0].finish_reason == direct.choices[0].finish_reason
    assert forwarded.usage == direct.usage
    assert forwarded.model == "gemma"

    kw: dict[str, Any] = {**GREEDY, "stream_options": {"include_usage": True}}
    direct_chunks = list(back.chat.completions.create(
        model="gemma", messages=MSGS, stream=True, **kw))
    forwarded_chunks = list(front.client.chat.completions.create(
        model="gemma", messages=MSGS, stream=True, **kw))
    assert len(forwarded_chunks) > 2
    assert len({c.id for c in forwarded_chunks}) == 1
    assert chunk_view(forwarded_chunks) == chunk_view(direct_chunks)
    text = "".join(c.choices[0].delta.content or "" for c in forwarded_chunks if c.choices)
    assert text == forwarded.choices[0].message.content


def test_completions_through_the_front_equal_the_back(
    front: Front, back: openai.OpenAI
) -> None:
    prompt = "The sea is"
    direct = back.completions.create(model="gemma", prompt=prompt, **GREEDY)
    forwarded = front.client.completions.create(model="gemma", prompt=prompt, **GREEDY)
    assert forwarded.choices[0].text
    assert forwarded.choices[0].text == direct.choices[0].text
    assert forwarded.choices[0].finish_reason == direct.choices[0].finish_reason
    assert forwarded.usage == direct.usage

    direct_chunks = list(back.completions.create(model="gemma", prompt=prompt, stream=True,
                                                 **GREEDY))
    forwarded_chunks = list(front.client.completions.create(model="gemma", prompt=prompt,
                                                            stream=True, **GREEDY))
    assert len(forwarded_chunks) > 2

    def texts(chunks: list[Any]) -> list[tuple[str, str | None]]:
        return [(c.choices[0].text, c.choices[0].finish_reason) for c in chunks if c.choices]

    assert texts(forwarded_chunks) == texts(direct_chunks)
    assert "".join(t for t, _ in texts(forwarded_chunks)) == forwarded.choices[0].text


def test_embeddings_through_the_front_equal_the_back(front: Front, back: openai.OpenAI) -> None:
    inputs = ["a red boat", "the sea"]
    direct = back.embeddings.create(model="gemma-embed", input=inputs)
    forwarded = front.client.embeddings.create(model="gemma-embed", input=inputs)
    assert [d.embedding for d in forwarded.data] == [d.embedding for d in direct.data]
    assert len(forwarded.data) == 2 and len(forwarded.data[0].embedding) > 100
    assert forwarded.usage == direct.usage
    # The SDK asks for base64 unless told otherwise; JSON floats pass through unchanged too.
    floats = front.client.embeddings.create(model="gemma-embed", input=inputs,
                                            encoding_format="float")
    direct_floats = back.embeddings.create(model="gemma-embed", input=inputs,
                                           encoding_format="float")
    assert [d.embedding for d in floats.data] == [d.embedding for d in direct_floats.data]


def test_prefix_rule_strips_the_prefix_on_a_real_upstream(
    front: Front, back: openai.OpenAI
) -> None:
    direct = back.chat.completions.create(model="gemma", messages=MSGS, **GREEDY)
    prefixed = front.client.chat.completions.create(model="back/gemma", messages=MSGS, **GREEDY)
    assert prefixed.choices[0].message.content == direct.choices[0].message.content
    assert prefixed.model == "gemma"  # the back answered for the stripped name


def test_client_errors_from_the_real_upstream_pass_through_once(front: Front) -> None:
    front.client.completions.create(model="gemma", prompt="Hi", max_tokens=1)  # failover done
    before = front.activity()
    with pytest.raises(openai.NotFoundError) as missing:
        front.client.chat.completions.create(model="back/no-such-model", messages=MSGS,
                                             max_tokens=2)
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "no-such-model" in missing.value.body["message"]  # type: ignore[index]
    # The front cannot know the remote model's context; the back says the prompt is too long.
    long = [{"role": "user", "content": "sea " * 1500}]
    with pytest.raises(openai.BadRequestError) as bad:
        front.client.chat.completions.create(model="gemma", messages=long, max_tokens=2)
    assert bad.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert "1024" in bad.value.body["message"]  # type: ignore[index]
    assert front.activity() == before  # neither was retried nor cooled a key down
    keys = {k["key"]: k for k in front.http.get("/admin/providers").json()["keys"]}
    assert keys[GOOD_FP]["state"] == "ready"


def test_unreachable_provider_fails_over_to_the_next_provider(
    auth_server: HugindProcess, key_file: Path, tmp_path: Path,
) -> None:
    dead = {"name": "dead", "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_keys": ["sk-dead-provider-key-0000-beef"], "models": ["gemma"],
            "timeout": {"connect_s": 2, "read_s": 5}}
    with running_front(tmp_path, dead, back_provider(auth_server.url, key_file)) as f:
        r = f.client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                             temperature=0)
        assert r.choices[0].message.content is not None
        events = f.activity()
        listed = {m.id: m.owned_by for m in f.client.models.list()}
    # A connection failure cools no key: the one key is tried max_retries + 1 times with a
    # backoff, the breaker trips the provider, and the next provider answers.
    assert [(e["provider"], e["event"]) for e in events] == [
        *[("dead", "attempt_failed")] * 3, ("dead", "provider_tripped"),
        ("dead", "provider_skipped"), (PROVIDER, "key_cooled_down"), (PROVIDER, "failover")]
    assert "connection failed" in events[0]["description"]
    assert listed == {"gemma": "dead", "gemma-embed": PROVIDER}  # the first provider wins


def test_no_key_appears_in_the_front_logs_or_responses(
    front: Front, auth_server: HugindProcess, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def keep(r: httpx.Response) -> None:
        seen.append(r.text + json.dumps(dict(r.headers)))

    chat = {"model": "gemma", "messages": MSGS, "max_tokens": 3, "temperature": 0}
    keep(front.http.post("/v1/chat/completions", json=chat))  # the failover happens here
    keep(front.http.post("/v1/chat/completions", json={**chat, "stream": True}))
    keep(front.http.post("/v1/embeddings", json={"model": "gemma-embed", "input": "x"}))
    keep(front.http.post("/v1/chat/completions", json={**chat, "model": "back/nope"}))
    keep(front.http.get("/admin/providers"))
    keep(front.http.get("/v1/models"))
    assert '"key_cooled_down"' in seen[-2]
    logged = caplog.text + "".join(record.getMessage() for record in caplog.records)
    assert "failover" in logged  # the front did log what happened, by fingerprint
    for key in (BAD_KEY, GOOD_KEY):
        assert key not in logged
        assert key not in auth_server.logs()
        for text in seen:
            assert key not in text
