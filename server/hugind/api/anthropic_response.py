"""The Anthropic ``Message`` object: content blocks, ``stop_reason`` and ``usage`` from what the
engine produced."""

from __future__ import annotations

import json
import secrets
from typing import Any

from hugind.api.tools import ToolPlan
from hugind.engine.types import FinishReason, Usage

#: Where a tool call in the reply's text starts (api/tools.py parses what follows).
TOOL_CALL = "<tool_call>"


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def tool_use_blocks(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat's parsed ``tool_calls`` as ``tool_use`` blocks (arguments parsed back to objects)."""
    return [{"type": "tool_use", "id": f"toolu_{secrets.token_hex(12)}",
             "name": c["function"]["name"], "input": json.loads(c["function"]["arguments"])}
            for c in calls]


def content_blocks(text: str, plan: ToolPlan) -> list[dict[str, Any]]:
    """The reply's blocks: its text (one block, even when empty, as a stream sends one), or its
    tool calls, after the text that came before the first ``<tool_call>`` if there was any."""
    calls = plan.parse(text)
    if not calls:
        return [{"type": "text", "text": text}]
    lead = text[:max(text.find(TOOL_CALL), 0)]
    return ([{"type": "text", "text": lead}] if lead.strip() else []) + tool_use_blocks(calls)


def stop_reason(reason: FinishReason | None, stop: str | None,
                blocks: list[dict[str, Any]]) -> str:
    if any(b["type"] == "tool_use" for b in blocks):
        return "tool_use"
    if reason is FinishReason.LENGTH:
        return "max_tokens"
    return "stop_sequence" if stop is not None else "end_turn"


def usage_dict(n_prompt: int, usage: Usage | None) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens`` (their sum is the prompt), so
    clients that add them up to size the context get the prompt's length."""
    cached = usage.cached_tokens if usage is not None else 0
    return {"input_tokens": n_prompt - cached,
            "output_tokens": usage.completion_tokens if usage is not None else 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def message(ident: str, model: str, blocks: list[dict[str, Any]], reason: str | None,
            stop: str | None, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": ident, "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": reason,
            "stop_sequence": stop if reason == "stop_sequence" else None, "usage": usage}
