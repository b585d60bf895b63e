"""The real server on the real Gemma model, driven by the official openai SDK."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from tests.conftest import API_KEYS
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

MSGS = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture
def client(server: HugindProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


def test_models_and_aliases(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gemma", "gemma-alias", "gemma-embed"} <= ids
    assert client.models.retrieve("gemma").id == "gemma"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_non_stream_and_stream_agree(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=24,
                                          temperature=0, seed=1)
    choice = full.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    u = full.usage
    assert u is not None and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details is not None
    stream = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=24,
                                            temperature=0, seed=1, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == choice.finish_reason and all(r is None for r in reasons[:-1])
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == u.completion_tokens
    assert text == choice.message.content


def test_max_completion_tokens_gives_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gemma", messages=MSGS, max_completion_tokens=3,
                                       temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_stop_never_leaks(client: openai.OpenAI) -> None:
    base = client.completions.create(model="gemma", prompt="The sea is", max_tokens=24,
                                     temperature=0).choices[0].text
    words = base.split()
    assert len(words) > 3, base
    stop = " " + words[2]
    cut = base[: base.index(stop)]
    r = client.completions.create(model="gemma", prompt="The sea is", max_tokens=24,
                                  temperature=0, stop=[stop, "\u2603"])
    assert r.choices[0].text == cut
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="gemma", prompt="The sea is", max_tokens=24, temperature=0, stop=stop,
        stream=True) if c.choices)
    assert streamed == cut


def test_completions_list_prompt_and_stream(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gemma", prompt=["Once upon a", "The capital of"],
                                  max_tokens=5, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    single = client.completions.create(model="gemma", prompt="The capital of", max_tokens=5,
                                       temperature=0)
    assert r.choices[1].text == single.choices[0].text
    chunks = list(client.completions.create(model="gemma", prompt="Once upon a", max_tokens=5,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_token_id_prompt(client: openai.OpenAI, server: HugindProcess) -> None:
    import httpx

    toks = httpx.post(server.url + "/tokenize", json={"model": "gemma",
                                                      "content": "Hello world"}).json()["tokens"]
    a = client.completions.create(model="gemma", prompt=toks, max_tokens=4, temperature=0)
    b = client.completions.create(model="gemma", prompt="Hello world", max_tokens=4,
                                  temperature=0)
    assert a.choices[0].text == b.choices[0].text


def test_seed_reproducible(client: openai.OpenAI) -> None:
    outs = [client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=12,
                                           temperature=1.0, seed=1234).choices[0].message.content
            for _ in range(2)]
    assert outs[0] == outs[1]


def test_embeddings(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="gemma-embed", input="hello there")
    vec = np.array(one.data[0].embedding)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    assert one.usage.prompt_tokens > 0
    many = client.embeddings.create(model="gemma-embed", input=["hello there", "goodbye"])
    assert [d.index for d in many.data] == [0, 1]
    assert np.allclose(many.data[0].embedding, vec, atol=1e-4)
    b64 = client.embeddings.create(model="gemma-embed", input="hello there",
                                   encoding_format="base64")
    raw = b64.data[0].embedding
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4") if isinstance(raw, str) \
        else np.array(raw)
    assert np.allclose(decoded, vec, atol=1e-6)
    small = client.embeddings.create(model="gemma-embed", input="hello there", dimensions=64)
    sv = np.array(small.data[0].embedding)
    assert sv.shape == (64,) and abs(float(np.linalg.norm(sv)) - 1) < 1e-4
    ids = client.embeddings.create(model="gemma-embed", input=[[2, 9259, 993]])
    assert len(ids.data[0].embedding) == len(vec)


def test_auth_on(auth_server: HugindProcess) -> None:
    good = openai.OpenAI(base_url=auth_server.url + "/v1", api_key=API_KEYS[1], max_retries=0)
    r = good.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2)
    assert r.choices[0].message.content is not None
    bad = openai.OpenAI(base_url=auth_server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="gemma-embed", input="x")
    assert API_KEYS[1] not in auth_server.logs()


def test_errors_through_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=MSGS)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=[
            {"role": "user", "content": "word " * 3000}])
    msg = info.value.body["message"]  # type: ignore[index]
    assert "1024" in msg and "tokens" in msg
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gemma", messages=MSGS, temperature=5)
