"""/v1/models: each local model's meta carries its state, limits and capabilities."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import TestClient

from hugind.api.model_meta import model_meta
from hugind.api.response_types import ModelList
from hugind.app import create_app
from hugind.config import parse_config
from hugind.engine.types import ModelInfo
from tests.fakes import FakeEngine

CAPABILITIES = ("chat", "completions", "embeddings", "tools", "json_schema", "vision")


def test_listed_models_carry_limits_and_capabilities() -> None:
    with TestClient(create_app(parse_config({}), engine=FakeEngine(n_ctx=64))) as client:
        body = client.get("/v1/models").content
    listed = {m.id: m for m in msgspec.json.decode(body, type=ModelList).data}
    raw = {m["id"]: m["meta"] for m in msgspec.json.decode(body)["data"]}
    assert raw["fake"] == {"kind": "generate", "state": "ready", "n_ctx": 64,
                           "max_output_tokens": 63, "alias_of": None, "chat": True,
                           "completions": True, "embeddings": False, "tools": True,
                           "json_schema": True, "vision": False}
    assert raw["fake-alias"] == {**raw["fake"], "alias_of": "fake"}
    embed = raw["fake-embed"]
    assert {k: embed[k] for k in CAPABILITIES} == {
        "chat": False, "completions": False, "embeddings": True, "tools": False,
        "json_schema": False, "vision": False}
    assert embed["max_output_tokens"] == 0 and embed["kind"] == "embed"
    assert listed["fake"].owned_by == "hugind"


@pytest.mark.parametrize(("state", "facts", "chat"), [
    ("ready", {"chat_template": True}, True),
    ("ready", {"chat_template": False}, False),  # the GGUF has none and none is configured
    ("unloaded", {"chat_template": False}, None),  # not known until it loads
    ("loading", {}, None),
    ("restarting", {"chat_template": True}, True),
])
def test_chat_follows_the_engine_chat_template_fact(state: str, facts: dict[str, bool],
                                                     chat: bool | None) -> None:
    info = ModelInfo("m", [], "generate", state, n_ctx=4096, n_ctx_train=32768, facts=facts)
    meta = model_meta(info, "m")
    assert meta["chat"] is chat and meta["tools"] is chat
    assert meta["completions"] and meta["json_schema"] and meta["vision"] is False
    assert (meta["n_ctx"], meta["n_ctx_train"], meta["max_output_tokens"]) == (4096, 32768, 4095)


def test_limits_unknown_until_loaded() -> None:
    meta = model_meta(ModelInfo("m", ["a"], "generate", "unloaded"), "a")
    assert meta["n_ctx"] == 0 and meta["max_output_tokens"] is None
    assert "n_ctx_train" not in meta and meta["alias_of"] == "m"
