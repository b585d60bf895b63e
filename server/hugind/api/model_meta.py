"""A local model's ``meta`` in /v1/models: state, limits and capabilities (as the Copilot
proxy's ``capabilities``: what a client may ask of the model before it asks)."""

from __future__ import annotations

from typing import Any

from hugind.engine.types import ModelInfo

_LOADED = ("ready", "restarting")


def _has_chat_template(m: ModelInfo) -> bool | None:
    """The engine's ``chat_template`` fact (an engine without it: yes); None while the model
    is not loaded, since its GGUF decides."""
    fact = m.facts.get("chat_template")
    if m.state not in _LOADED and not fact:
        return None
    return True if fact is None else bool(fact)


def model_meta(m: ModelInfo, name: str) -> dict[str, Any]:
    """``meta`` for ``m`` listed under ``name`` (its id or an alias)."""
    generates = m.kind == "generate"
    chat = _has_chat_template(m) if generates else False
    meta: dict[str, Any] = {"kind": m.kind, "state": m.state, "n_ctx": m.n_ctx}
    if m.n_ctx_train:
        meta["n_ctx_train"] = m.n_ctx_train
    # A prompt needs at least one token, so a request may ask for n_ctx - 1 new ones.
    meta["max_output_tokens"] = (m.n_ctx - 1 if m.n_ctx else None) if generates else 0
    meta["alias_of"] = m.id if name != m.id else None
    meta |= {"chat": chat, "completions": generates, "embeddings": m.kind == "embed",
             # tool calls work with any chat template (inlined when it has no tool syntax)
             "tools": chat, "json_schema": generates, "vision": False}
    return meta
