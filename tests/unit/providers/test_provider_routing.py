from __future__ import annotations

import pytest

from hugind.providers.routing import (
    ModelRule,
    Route,
    is_native_endpoint,
    is_openai_path,
    normalize_path,
    select,
)


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [("gpt-4o", "exact"), ("gpt-4o*", "glob"), ("claude-?", "glob"), ("o[13]", "glob"),
     ("openai/", "prefix"), ("org/model", "exact")],
)
def test_rule_kinds(pattern: str, kind: str) -> None:
    assert ModelRule.parse(pattern).kind == kind


@pytest.mark.parametrize(
    ("pattern", "model", "upstream"),
    [
        ("gpt-4o", "gpt-4o", "gpt-4o"),
        ("gpt-4o", "gpt-4o-mini", None),
        ("gpt-4o*", "gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o*", "GPT-4o", None),
        ("openai/", "openai/gpt-4o", "gpt-4o"),
        ("openai/", "openai/", None),
        ("openai/", "gpt-4o", None),
        ("openai/", "openai/org/model", "org/model"),
    ],
)
def test_rule_matching(pattern: str, model: str, upstream: str | None) -> None:
    assert ModelRule.parse(pattern).upstream_name(model) == upstream


@pytest.mark.parametrize(
    ("path", "norm"),
    [("/v1/images/edits", "images/edits"), ("/images/edits", "images/edits"),
     ("v1/audio/speech/", "audio/speech"), ("/v1", ""), ("/v1x/a", "v1x/a")],
)
def test_normalize_path(path: str, norm: str) -> None:
    assert normalize_path(path) == norm


def test_native_and_openai_paths() -> None:
    assert is_native_endpoint("/v1/chat/completions")
    assert is_native_endpoint("/embeddings")
    assert not is_native_endpoint("/v1/chat/completions/abc")
    assert is_openai_path("/images/generations")
    assert is_openai_path("/v1/responses")
    assert not is_openai_path("/favicon.ico")
    assert not is_openai_path("/admin/secret")


def test_default_endpoints_are_all_non_native() -> None:
    route = Route.from_config([], None)
    assert route.takes_endpoint("/v1/images/generations")
    assert route.takes_endpoint("/v1/anything/else")
    assert not route.takes_endpoint("/v1/chat/completions")
    assert not route.takes_endpoint("/v1/embeddings")


def test_empty_endpoints_means_models_only() -> None:
    route = Route.from_config(["gemma"], [])
    assert not route.takes_endpoint("/v1/images/generations")
    assert not route.takes_endpoint("/v1/anything/else")
    assert route.upstream_model("gemma") == "gemma"


def test_explicit_endpoints_globs_and_subtrees() -> None:
    route = Route.from_config([], ["/v1/images/*", "audio", "moderations"])
    assert route.takes_endpoint("/v1/images/edits")
    assert route.takes_endpoint("/audio/speech")
    assert route.takes_endpoint("/v1/audio")
    assert route.takes_endpoint("/v1/moderations")
    assert not route.takes_endpoint("/v1/files")
    assert not route.takes_endpoint("/v1/audiox")


def test_exact_models_skip_globs_and_prefixes() -> None:
    route = Route.from_config(["gpt-4o", "gpt-4o*", "openai/", "whisper-1"], None)
    assert route.exact_models() == ["gpt-4o", "whisper-1"]


def test_first_matching_rule_decides() -> None:
    route = Route.from_config(["openai/", "openai/*"], None)
    assert route.upstream_model("openai/gpt-4o") == "gpt-4o"


def test_select_native_endpoint_by_model_in_order() -> None:
    routes = [
        Route.from_config(["gpt-*"], None),
        Route.from_config(["claude-*"], None),
        Route.from_config(["openai/", "gpt-4o"], None),
    ]
    assert select(routes, "/v1/chat/completions", "gpt-4o") == [(0, "gpt-4o"), (2, "gpt-4o")]
    assert select(routes, "/v1/chat/completions", "openai/gpt-4o") == [(2, "gpt-4o")]
    assert select(routes, "/v1/chat/completions", "llama") == []
    assert select(routes, "/v1/chat/completions", None) == []


def test_select_non_native_prefers_providers_serving_the_model() -> None:
    routes = [
        Route.from_config(["gpt-*"], ["images"]),
        Route.from_config(["dall-e-*"], None),
        Route.from_config([], ["images/*"]),
    ]
    assert select(routes, "/v1/images/generations", "dall-e-3") == [(1, "dall-e-3")]
    # No provider serves the model: the explicit claims win, `images/*` before `images`.
    assert select(routes, "/v1/images/generations", "unknown") == [(2, None), (0, None)]
    assert select(routes, "/v1/images/generations", None) == [(2, None), (0, None)]
    assert select(routes, "/v1/files", None) == [(1, None)]


def test_explicit_endpoint_beats_a_default_taker_listed_first() -> None:
    # Issue 18: A takes every non-native endpoint by default and is listed first; B names images.
    routes = [Route.from_config(["gpt-4o*"], None),
              Route.from_config([], ["/v1/images/*", "/v1/moderations"])]
    assert select(routes, "/v1/images/generations", "dall-e-3") == [(1, None)]
    assert select(routes, "/v1/moderations", None) == [(1, None)]
    assert select(routes, "/v1/audio/speech", "tts-1") == [(0, None)]  # only A takes it


@pytest.mark.parametrize(
    ("patterns", "path", "order"),
    [
        # the most specific claim first, whatever the config order
        ([["images"], ["images/*"], ["images/generations"]], "images/generations", [2, 1, 0]),
        ([["images/gen*"], ["images/*"]], "images/generations", [0, 1]),
        ([["images/*"], ["images/gen*"]], "images/generations", [1, 0]),
        # equal claims keep config order
        ([["images/*"], ["images/*"], ["audio"]], "images/edits", [0, 1]),
        ([["audio"], ["audio"]], "audio/speech", [0, 1]),
        # a provider's best pattern is its claim
        ([["images", "images/edits"], ["images/*"]], "images/edits", [0, 1]),
    ],
)
def test_most_specific_claim_then_config_order(
    patterns: list[list[str]], path: str, order: list[int]
) -> None:
    routes = [Route.from_config([], p) for p in patterns]
    assert [i for i, _ in select(routes, path, None)] == order


def test_a_provider_serving_the_model_comes_before_endpoint_claims() -> None:
    routes = [Route.from_config([], ["images/generations"]),
              Route.from_config(["dall-e-*"], None),
              Route.from_config(["dall-e-3"], ["images"])]
    assert select(routes, "/v1/images/generations", "dall-e-3") == [(2, "dall-e-3")]
    assert select(routes, "/v1/images/generations", "dall-e-2") == [(1, "dall-e-2")]
