"""Completions logic without a model: FIM prompt layout, best_of ranking, echo logprobs."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from hugind.api.completions import best, candidates, fim_prompt, legacy_logprobs
from hugind.api.generation import Choice
from hugind.api.protocol import CompletionRequest
from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import FimTokens, TokenEvent, TokenLogprob, TopLogprob
from hugind.errors import InvalidRequestError
from tests.fakes import FakeEngine

FIM = FimTokens(prefix=900, suffix=901, middle=902, bos=1)


def client(engine: FakeEngine) -> TestClient:
    return TestClient(create_app(parse_config({}), engine=engine))


def test_fim_prompt_layout() -> None:
    assert fim_prompt(FIM, [10, 11], [20]) == [1, 900, 10, 11, 901, 20, 902]
    no_bos = FimTokens(prefix=900, suffix=901, middle=902)
    assert fim_prompt(no_bos, [10], []) == [900, 10, 901, 902]


def test_suffix_builds_the_infill_prompt() -> None:
    engine = FakeEngine(fim=FIM)
    with client(engine) as c:
        r = c.post("/v1/completions", json={"model": "fake", "prompt": "ab", "suffix": "c",
                                            "max_tokens": 2})
    assert r.status_code == 200, r.text
    # FakeEngine tokenizes a character to its code point.
    assert engine.requests[0].prompt_tokens == [1, 900, 97, 98, 901, 99, 902]


def test_suffix_token_prompts_and_several_prompts() -> None:
    engine = FakeEngine(fim=FIM)
    with client(engine) as c:
        r = c.post("/v1/completions", json={"model": "fake", "prompt": [[5, 6], "a"],
                                            "suffix": "z", "max_tokens": 1})
    assert r.status_code == 200, r.text
    assert [q.prompt_tokens for q in engine.requests] == [[1, 900, 5, 6, 901, 122, 902],
                                                           [1, 900, 97, 901, 122, 902]]


@pytest.mark.parametrize(("engine", "body", "param"), [
    (FakeEngine(), {"suffix": "c"}, "suffix"),
    (FakeEngine(fim=FIM), {"suffix": "c", "echo": True}, "echo"),
    (FakeEngine(), {"best_of": 1, "n": 2}, "best_of"),
    (FakeEngine(), {"best_of": 2, "stream": True}, "best_of"),
    (FakeEngine(), {"best_of": 0}, "best_of"),
    (FakeEngine(), {"max_tokens": -1}, "max_tokens"),
    (FakeEngine(), {"logprobs": 6}, "logprobs"),
])
def test_completion_errors(engine: FakeEngine, body: dict[str, Any], param: str) -> None:
    with client(engine) as c:
        r = c.post("/v1/completions", json={"model": "fake", "prompt": "ab", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if param == "suffix":
        assert "fake" in err["message"] and "fill-in-the-middle" in err["message"]
    assert engine.requests == []


def test_best_of_requests_logprobs_and_candidates() -> None:
    engine = FakeEngine()
    with client(engine) as c:
        r = c.post("/v1/completions", json={"model": "fake", "prompt": ["a", "b"], "n": 2,
                                            "best_of": 3, "max_tokens": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(engine.requests) == 6 and all(q.top_logprobs == 0 for q in engine.requests)
    assert [q.sampling.seed for q in engine.requests] == [None] * 6
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert all(c["logprobs"] is None for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 12


def test_candidates() -> None:
    assert candidates(CompletionRequest(model="m", prompt="x", n=2)) == 2
    assert candidates(CompletionRequest(model="m", prompt="x", n=2, best_of=5)) == 5
    assert candidates(CompletionRequest(model="m", prompt="x", best_of=1, stream=True)) == 1
    with pytest.raises(InvalidRequestError):
        candidates(CompletionRequest(model="m", prompt="x", n=3, best_of=2))


def _choice(index: int, lps: list[float]) -> Choice:
    c = Choice(index)
    c.add(TokenEvent("x" * len(lps), logprobs=[TokenLogprob("x", v, [120], []) for v in lps]))
    return c


def test_best_ranks_by_mean_logprob_per_token_per_prompt() -> None:
    choices = [_choice(0, [-1, -1]), _choice(1, [-0.5]), _choice(2, [-3]),
               _choice(3, [-2]), _choice(4, [-0.1, -0.1]), _choice(5, [-9])]
    assert [c.index for c in best(choices, 3, 1)] == [1, 4]
    assert [c.index for c in best(choices, 3, 2)] == [1, 0, 4, 3]
    assert [c.index for c in best(choices, 2, 2)] == [0, 1, 2, 3, 4, 5]
    # longer but likelier per token beats shorter: the mean, not the sum, decides
    longer = [_choice(0, [-0.5]), _choice(1, [-0.4, -0.4])]
    assert [c.index for c in best(longer, 2, 1)] == [1]


def test_echo_logprobs_mark_the_first_prompt_token() -> None:
    top = [TopLogprob("b", -0.2, [98])]
    lps = [TokenLogprob("<s>", None, [], []), TokenLogprob("ab", -0.5, [97, 98], top),
           TokenLogprob("c", -1.0, [99], top)]
    out = legacy_logprobs(lps, 0)
    assert out == {"tokens": ["<s>", "ab", "c"], "token_logprobs": [None, -0.5, -1.0],
                   "top_logprobs": [None, {"b": -0.2}, {"b": -0.2}],
                   "text_offset": [0, 3, 5]}


def test_echo_with_logprobs_asks_for_prompt_logprobs() -> None:
    engine = FakeEngine()
    with client(engine) as c:
        c.post("/v1/completions", json={"model": "fake", "prompt": "ab", "echo": True,
                                        "logprobs": 3, "max_tokens": 1})
        c.post("/v1/completions", json={"model": "fake", "prompt": "ab", "echo": True,
                                        "max_tokens": 1})
        c.post("/v1/completions", json={"model": "fake", "prompt": "ab", "logprobs": 3,
                                        "max_tokens": 1})
    assert [q.prompt_logprobs for q in engine.requests] == [3, None, None]
