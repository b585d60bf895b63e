"""Every OpenAI request parameter Hugind claims, end to end on the real Gemma 3 270M, through
the official openai SDK (streaming and not). Outputs are short: max_tokens stays <= 24."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from tests.servers import HugindProcess

pytestmark = pytest.mark.model

MSGS = [{"role": "user", "content": "Write one sentence about the sea."}]
# A one-shot example keeps the tiny model's JSON short enough to finish within max_tokens.
JSON_MSGS = [
    {"role": "user", "content": "The sky's color, as JSON."},
    {"role": "assistant", "content": '{"color": "blue"}'},
    {"role": "user", "content": "Grass's color, as JSON."},
]
COLOR_SCHEMA = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]},
                   "ok": {"type": "boolean"}},
    "required": ["color", "ok"],
    "additionalProperties": False,
}
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "time", "description": "Local time in a city",
                                      "parameters": WEATHER_PARAMS}},
]
TOOL_MSGS = [{"role": "user", "content": "What is the weather in Paris?"}]
# Reusing a cached prompt prefix prefills the rest in a different batch shape, which changes
# the logits' low bits on the CPU; runs compared for equality therefore prefill from scratch.
FRESH = {"cache_prompt": False}


@pytest.fixture
def client(server: HugindProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=180)


def tokenize(server: HugindProcess, text: str, **extra: Any) -> Any:
    r = httpx.post(server.url + "/tokenize", json={"model": "gemma", "content": text, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    return body


# -- chat: n, seed, logprobs, logit_bias ---------------------------------------------------------


def test_chat_n_counts_every_choice(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gemma", messages=MSGS, n=3, max_tokens=6,
                                       temperature=1.0, seed=7, logprobs=True,
                                       extra_body=FRESH)
    assert [c.index for c in r.choices] == [0, 1, 2]
    generated = [len(c.logprobs.content or []) for c in r.choices if c.logprobs]
    assert len(generated) == 3 and all(0 < g <= 6 for g in generated)
    assert r.usage is not None and r.usage.completion_tokens == sum(generated)
    chunks = list(client.chat.completions.create(
        model="gemma", messages=MSGS, n=3, max_tokens=6, temperature=1.0, seed=7, stream=True,
        stream_options={"include_usage": True}, extra_body=FRESH))
    texts = ["", "", ""]
    finished = set()
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finished.add(c.index)
    assert finished == {0, 1, 2}
    assert texts == [c.message.content for c in r.choices]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_seed_reproducible_and_distinct(client: openai.OpenAI) -> None:
    def run(seed: int) -> list[str | None]:
        r = client.chat.completions.create(model="gemma", messages=MSGS, n=2, max_tokens=12,
                                           temperature=1.0, seed=seed, extra_body=FRESH)
        return [c.message.content for c in r.choices]

    first = run(42)
    assert run(42) == first
    assert run(43) != first
    texts = [client.completions.create(model="gemma", prompt="Once upon a time", max_tokens=12,
                                       temperature=1.0, seed=9, extra_body=FRESH).choices[0].text
             for _ in range(2)]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("seed", [-1, -2**63, 2**63 - 1])
@pytest.mark.parametrize("extra", [{}, {"top_p": 0.9}])  # numpy softmax draw, llama.cpp chain
def test_any_int64_seed_samples(client: openai.OpenAI, seed: int, extra: dict[str, float]) -> None:
    def run() -> str:
        return client.completions.create(
            model="gemma", prompt="Once upon a time", max_tokens=6, temperature=1.0, seed=seed,
            extra_body={**FRESH, **extra}).choices[0].text

    first = run()
    assert first and run() == first


@pytest.mark.parametrize("top", [0, 5, 20])
def test_top_logprobs_lengths(client: openai.OpenAI, top: int) -> None:
    r = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=top)
    content = r.choices[0].logprobs.content if r.choices[0].logprobs else None
    assert content
    for item in content:
        assert len(item.top_logprobs) == top
        assert item.logprob <= 0
        assert bytes(item.bytes or []).decode("utf-8", "replace") == item.token
        if top:
            assert item.top_logprobs[0].logprob >= item.logprob - 1e-6  # greedy = the best
    assert "".join(item.token for item in content) == r.choices[0].message.content


def test_top_logprobs_streamed(client: openai.OpenAI) -> None:
    items = []
    for ch in client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=4,
                                             temperature=0, logprobs=True, top_logprobs=3,
                                             stream=True):
        if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            items.extend(ch.choices[0].logprobs.content)
    assert 0 < len(items) <= 4
    assert all(len(i.top_logprobs) == 3 for i in items)


def test_top_logprobs_bounds(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       logprobs=True, top_logprobs=21)
    assert error_of(info.value)["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       top_logprobs=2)
    assert error_of(info.value)["param"] == "logprobs"


def test_logit_bias_bans_and_forces(client: openai.OpenAI, server: HugindProcess) -> None:
    base = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=8,
                                          temperature=0, logprobs=True)
    assert base.choices[0].logprobs and base.choices[0].logprobs.content
    first = base.choices[0].logprobs.content[0].token
    ids = tokenize(server, first, add_special=False)["tokens"]
    assert len(ids) == 1, (first, ids)
    banned = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=8,
                                            temperature=0, logprobs=True,
                                            logit_bias={str(ids[0]): -100})
    assert banned.choices[0].logprobs and banned.choices[0].logprobs.content
    assert first not in [t.token for t in banned.choices[0].logprobs.content]
    forced_id = tokenize(server, " ocean", add_special=False)["tokens"]
    assert len(forced_id) == 1
    forced = client.completions.create(model="gemma", prompt="The sea is", max_tokens=4,
                                       temperature=1.0, logit_bias={str(forced_id[0]): 100})
    assert forced.choices[0].text == " ocean" * 4
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       logit_bias={"999999999": 5})
    assert error_of(info.value)["param"] == "logit_bias"


@pytest.mark.parametrize(("penalty", "prompt", "word"), [
    ("frequency_penalty", "List: apple, apple, apple,", "apple"),
    ("presence_penalty", "I like cats. I like dogs. I like", "like"),
])
def test_penalties_curb_repetition(client: openai.OpenAI, penalty: str, prompt: str,
                                   word: str) -> None:
    kw: Any = {"model": "gemma", "prompt": prompt, "max_tokens": 16, "temperature": 0,
               "extra_body": FRESH}
    base = client.completions.create(**kw).choices[0].text
    assert base.count(word) >= 3, base
    text = client.completions.create(**kw, **{penalty: 2.0}).choices[0].text
    assert text.count(word) < base.count(word), (base, text)


# -- chat: structured output and tools -----------------------------------------------------------


def test_json_object(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gemma", messages=JSON_MSGS, max_tokens=24,
                                       temperature=0, response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_validates(client: openai.OpenAI, stream: bool) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "pick", "schema": COLOR_SCHEMA}}
    msgs = [{"role": "user", "content": "Pick a color."}]
    if stream:
        text = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
            model="gemma", messages=msgs, max_tokens=24, temperature=0.8, seed=3,
            response_format=fmt, stream=True) if ch.choices)
    else:
        text = client.chat.completions.create(
            model="gemma", messages=msgs, max_tokens=24, temperature=0.8, seed=3,
            response_format=fmt).choices[0].message.content or ""
    jsonschema.validate(json.loads(text), COLOR_SCHEMA)


def test_bad_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x",
                                                                        "schema": "nope"}})
    assert error_of(info.value)["param"].startswith("response_format")


def _check_call(name: str, arguments: str) -> None:
    assert name in {"weather", "time"}
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)


def test_tool_choice_required(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gemma", messages=TOOL_MSGS, max_tokens=24,
                                       temperature=0, tools=TOOLS, tool_choice="required")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].id.startswith("call_") and calls[0].type == "function"
    _check_call(calls[0].function.name, calls[0].function.arguments)


def test_tool_choice_named_streamed(client: openai.OpenAI) -> None:
    choice: Any = {"type": "function", "function": {"name": "time"}}
    with client.chat.completions.stream(model="gemma", messages=TOOL_MSGS, max_tokens=24,
                                        temperature=0, tools=TOOLS,
                                        tool_choice=choice) as stream:
        final = stream.get_final_completion()
    c = final.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "time"
    _check_call("time", calls[0].function.arguments)


def test_legacy_functions(client: openai.OpenAI) -> None:
    functions: Any = [t["function"] for t in TOOLS]
    r = client.chat.completions.create(model="gemma", messages=TOOL_MSGS, max_tokens=24,
                                       temperature=0, functions=functions,
                                       function_call={"name": "weather"})
    c = r.choices[0]
    assert c.finish_reason == "function_call"
    assert c.message.function_call is not None and c.message.tool_calls is None
    _check_call(c.message.function_call.name, c.message.function_call.arguments)
    chunks = [ch for ch in client.chat.completions.create(
        model="gemma", messages=TOOL_MSGS, max_tokens=24, temperature=0, functions=functions,
        function_call={"name": "weather"}, stream=True) if ch.choices]
    deltas = [ch.choices[0].delta.function_call for ch in chunks
              if ch.choices[0].delta.function_call]
    assert len(deltas) == 1 and deltas[0].name == "weather"
    assert chunks[-1].choices[0].finish_reason == "function_call"


def test_tool_follow_up_turn(client: openai.OpenAI, server: HugindProcess) -> None:
    msgs: Any = [
        *TOOL_MSGS,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
    ]
    body = {"model": "gemma", "messages": msgs, "tools": TOOLS}
    rendered = httpx.post(server.url + "/v1/chat/completions/render", json=body).json()
    prompt = rendered["prompt"]
    call = '<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
    result = "<tool_response>Sunny, 24 C</tool_response>"
    assert prompt.index("What is the weather") < prompt.index(call) < prompt.index(result)
    r = client.chat.completions.create(model="gemma", messages=msgs, tools=TOOLS,
                                       tool_choice="none", max_tokens=8, temperature=0)
    assert r.choices[0].message.content is not None


def test_developer_role_and_render(client: openai.OpenAI, server: HugindProcess) -> None:
    msgs = [{"role": "developer", "content": "Answer in French."}, *MSGS]
    rendered = httpx.post(server.url + "/v1/chat/completions/render",
                          json={"model": "gemma", "messages": msgs}).json()
    assert "Answer in French." in rendered["prompt"]
    assert rendered["prompt"].startswith("<bos><start_of_turn>user\n")
    assert rendered["count"] == len(rendered["tokens"])
    again = tokenize(server, rendered["prompt"], add_special=False)
    assert again["tokens"] == rendered["tokens"]
    r = client.chat.completions.create(model="gemma", messages=msgs,  # type: ignore[arg-type]
                                       max_tokens=4, temperature=0)
    assert r.usage is not None and r.usage.prompt_tokens == rendered["count"]


# -- chat: rejected and ignored fields -----------------------------------------------------------


def test_image_parts_name_the_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", max_tokens=2, messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    err = error_of(info.value)
    assert "gemma" in err["message"] and err["param"] == "messages[0].content[1]"


def test_text_parts_accepted(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gemma", max_tokens=3, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "Say hi"}]}])
    assert r.choices[0].message.content is not None


def test_audio_output_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       modalities=["text", "audio"])
    assert error_of(info.value)["param"] == "modalities"


def test_stop_limit_unknown_fields_and_types(client: openai.OpenAI,
                                             server: HugindProcess) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       stop=[str(i) for i in range(17)])
    assert error_of(info.value)["param"] == "stop"
    r = client.chat.completions.create(model="gemma", messages=MSGS, max_tokens=2,
                                       store=True, metadata={"k": "v"},
                                       extra_body={"no_such_field": {"x": 1}})
    assert r.choices[0].message.content is not None
    for field, value in [("n", "three"), ("temperature", "hot"), ("logprobs", "yes"),
                         ("max_tokens", 1.5), ("messages", "hi"), ("seed", "x")]:
        body = {"model": "gemma", "messages": MSGS, "max_tokens": 2, field: value}
        resp = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert resp.status_code == 400, (field, resp.text)
        assert resp.json()["error"]["param"] == field


# -- completions: best_of, echo + logprobs, suffix ------------------------------------------------


def test_best_of_picks_highest_logprob(client: openai.OpenAI) -> None:
    kw: Any = {"model": "gemma", "prompt": "The sea is", "max_tokens": 4, "temperature": 1.0,
               "seed": 11, "extra_body": {"ignore_eos": True, **FRESH}}
    every = client.completions.create(n=3, logprobs=0, **kw)
    scores = {c.text: sum(c.logprobs.token_logprobs or []) for c in every.choices if c.logprobs}
    assert len(every.choices) == 3
    best = client.completions.create(n=1, best_of=3, **kw)
    assert len(best.choices) == 1 and best.choices[0].logprobs is None
    assert best.choices[0].text == max(scores, key=scores.__getitem__)
    assert best.usage is not None and best.usage.completion_tokens == 12  # all 3 candidates
    two = client.completions.create(n=2, best_of=3, logprobs=1, **kw)
    assert [c.index for c in two.choices] == [0, 1]
    ranked = sorted(scores.values(), reverse=True)[:2]
    got = [sum(c.logprobs.token_logprobs or []) for c in two.choices if c.logprobs]
    assert np.allclose(got, ranked, atol=1e-4)


def test_best_of_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gemma", prompt="x", n=3, best_of=2, max_tokens=2)
    assert error_of(info.value)["param"] == "best_of"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gemma", prompt="x", best_of=2, max_tokens=2,
                                  stream=True)
    assert error_of(info.value)["param"] == "best_of"


def _check_echo(lp: Any, prompt: str, text: str, n_prompt: int, top: int) -> None:
    assert text.startswith(prompt)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert all(len(t) <= top for t in lp.top_logprobs[1:])
    assert "".join(lp.tokens) == text
    if n_prompt < len(lp.tokens):
        assert lp.text_offset[n_prompt] == len(prompt)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]


def test_echo_logprobs_cover_the_prompt(client: openai.OpenAI, server: HugindProcess) -> None:
    prompt = "The sea is"
    ids = tokenize(server, prompt)["tokens"]
    r = client.completions.create(model="gemma", prompt=prompt, max_tokens=3, temperature=0,
                                  echo=True, logprobs=2)
    c = r.choices[0]
    assert c.logprobs is not None
    assert len(c.logprobs.tokens or []) == len(ids) + 3
    _check_echo(c.logprobs, prompt, c.text, len(ids), 2)
    # A prompt token's logprob is what generating it after the tokens before it would give.
    k = len(ids) - 1
    step = client.completions.create(model="gemma", prompt=ids[:k], max_tokens=1,
                                     temperature=0, logprobs=2, extra_body=FRESH)
    assert step.choices[0].logprobs is not None
    want = step.choices[0].logprobs.top_logprobs[0]
    got = c.logprobs.top_logprobs[k]
    assert set(want) == set(got)
    assert all(abs(want[t] - got[t]) < 1e-2 for t in want)
    # Streaming: the echoed prompt arrives first, with its logprobs.
    chunks = [ch for ch in client.completions.create(
        model="gemma", prompt=prompt, max_tokens=3, temperature=0, echo=True, logprobs=2,
        stream=True) if ch.choices]
    first = chunks[0].choices[0]
    assert first.text == prompt and first.logprobs is not None
    assert first.logprobs.token_logprobs == c.logprobs.token_logprobs[:len(ids)]
    assert "".join(ch.choices[0].text for ch in chunks) == c.text


def test_echo_scoring_only(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gemma", prompt=["The sea is", "A cat"], max_tokens=0,
                                  echo=True, logprobs=0)
    assert [c.text for c in r.choices] == ["The sea is", "A cat"]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage is not None and r.usage.completion_tokens == 0
    for c in r.choices:
        assert c.logprobs is not None
        _check_echo(c.logprobs, c.text, c.text, len(c.logprobs.tokens or []), 0)
    plain = client.completions.create(model="gemma", prompt="The sea is", max_tokens=3,
                                      temperature=0, echo=True)
    assert plain.choices[0].text.startswith("The sea is") and plain.choices[0].logprobs is None


def test_suffix_needs_fim_tokens(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gemma", prompt="def add(a, b):", suffix="return c",
                                  max_tokens=4)
    err = error_of(info.value)
    assert err["param"] == "suffix" and "fill-in-the-middle" in err["message"]
    assert "gemma" in err["message"]


# -- embeddings ---------------------------------------------------------------------------------


def _vec(raw: Any) -> np.ndarray:
    if isinstance(raw, str):
        return np.frombuffer(base64.b64decode(raw), dtype="<f4")
    return np.array(raw, dtype=np.float32)


def test_embeddings_batch_base64_dimensions(client: openai.OpenAI) -> None:
    texts = ["the sea", "a mountain", "hello there", "goodbye", "the sea"]
    batch = client.embeddings.create(model="gemma-embed", input=texts)
    vecs = [_vec(d.embedding) for d in batch.data]
    assert [d.index for d in batch.data] == list(range(5))
    # One decode for the whole batch: a batch's shape can move the CPU kernels' low bits, so a
    # vector matches the same input embedded alone closely, not bit for bit.
    for text, vec in zip(texts, vecs, strict=True):
        alone = _vec(client.embeddings.create(model="gemma-embed", input=text).data[0].embedding)
        assert float(alone @ vec) > 0.999
    assert np.allclose(vecs[0], vecs[4], atol=1e-6)
    assert float(vecs[0] @ vecs[1]) < 0.99
    b64 = client.embeddings.create(model="gemma-embed", input=texts, encoding_format="base64")
    raw = b64.data[1].embedding
    # The SDK decodes base64 itself; the wire must carry a string.
    assert isinstance(raw, (str, list))
    assert np.allclose(_vec(raw), vecs[1], atol=1e-6)
    small = client.embeddings.create(model="gemma-embed", input=texts[:2], dimensions=32)
    for d, full in zip(small.data, vecs, strict=False):
        v = _vec(d.embedding)
        assert v.shape == (32,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
        assert np.allclose(v, full[:32] / np.linalg.norm(full[:32]), atol=1e-5)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemma-embed", input="x", dimensions=100000)
    assert error_of(info.value)["param"] == "dimensions"


def test_embeddings_base64_on_the_wire(server: HugindProcess) -> None:
    body = {"model": "gemma-embed", "input": ["the sea", "a cat"]}
    floats = httpx.post(server.url + "/v1/embeddings", json=body).json()["data"]
    b64 = httpx.post(server.url + "/v1/embeddings",
                     json={**body, "encoding_format": "base64"}).json()["data"]
    for f, b in zip(floats, b64, strict=True):
        assert isinstance(b["embedding"], str)
        assert np.array_equal(_vec(b["embedding"]), np.array(f["embedding"], dtype=np.float32))


def test_embedding_input_too_long_names_index(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemma-embed", input=["short", "word " * 700])
    err = error_of(info.value)
    assert err["param"] == "input[1]" and "512" in err["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemma-embed", input=["short", ""])
    assert error_of(info.value)["param"] == "input[1]"


# -- tokenize / detokenize ----------------------------------------------------------------------


def test_tokenize_detokenize_pieces(server: HugindProcess) -> None:
    out = tokenize(server, "The sea is blue", with_pieces=True)
    ids = [t["id"] for t in out["tokens"]]
    assert "".join(t["piece"] for t in out["tokens"]) == "The sea is blue"
    assert out["count"] == len(ids)
    plain = tokenize(server, "The sea is blue")
    assert plain["tokens"] == ids
    back = httpx.post(server.url + "/detokenize", json={"model": "gemma", "tokens": ids})
    assert back.json()["content"] == "The sea is blue"
    bad = httpx.post(server.url + "/v1/detokenize", json={"model": "gemma", "tokens": [-1]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens[0]"


def test_unconvertible_schemas_and_oversized_n_are_400s(client: openai.OpenAI) -> None:
    """What the grammar converter rejects, and more choices than the queue holds, are client
    errors naming the field, never 500s."""
    bad_ref = {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gemma", messages=MSGS, max_tokens=4,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": bad_ref}})
    assert info.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gemma", messages=MSGS, max_tokens=4, tool_choice="required",
            tools=[{"type": "function",
                    "function": {"name": "f", "parameters": {"type": "weird"}}}])
    with pytest.raises(openai.BadRequestError) as info:  # the server fixture queues 16
        client.completions.create(model="gemma", prompt="Hi", max_tokens=1, n=17)
    assert info.value.body["param"] == "n"  # type: ignore[index]
    ok = client.completions.create(model="gemma", prompt="Hi", max_tokens=1, n=16)
    assert len(ok.choices) == 16
