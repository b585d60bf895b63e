"""The Responses objects Hugind answers with: the response (with its echoed request fields),
its output items and usage, in the field order of OpenAI's reference."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hugind.api.generation import Choice
from hugind.api.responses_input import item_id
from hugind.api.responses_protocol import ResponseCreateRequest
from hugind.api.tools import ToolPlan
from hugind.engine.types import FinishReason


def _tool_echo(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": tool["name"], "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict")}


@dataclass
class ResponseShell:
    """What every object of one response carries: its id, time and the request's echo."""

    req: ResponseCreateRequest
    text_format: dict[str, Any]
    ident: str = field(default_factory=lambda: item_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def render(self, status: str, output: list[dict[str, Any]] | None = None,
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
        req = self.req
        return {
            "id": self.ident, "object": "response", "created_at": self.created_at,
            "status": status, "background": False, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "max_tool_calls": None, "model": req.model, "output": output or [],
            "parallel_tool_calls": req.parallel_tool_calls,
            "previous_response_id": req.previous_response_id,
            "prompt_cache_key": req.prompt_cache_key,
            "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
            "service_tier": "default", "store": req.store,
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "text": {"format": self.text_format,
                     "verbosity": req.text.verbosity if req.text and req.text.verbosity
                     else "medium"},
            "tool_choice": req.tool_choice or "auto",
            "tools": [_tool_echo(t) for t in req.tools or []], "top_logprobs": 0,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "truncation": req.truncation or "disabled", "usage": usage, "user": req.user,
            "metadata": req.metadata or {},
            **({"completed_at": int(time.time())} if status == "completed" else {}),
        }


def status_of(choice: Choice) -> str:
    return "incomplete" if choice.finish_reason == FinishReason.LENGTH else "completed"


def usage_object(choice: Choice, n_prompt: int) -> dict[str, Any]:
    output = choice.usage.completion_tokens if choice.usage else len(choice.token_ids)
    cached = choice.usage.cached_tokens if choice.usage else 0
    return {"input_tokens": n_prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": n_prompt + output}


def message_item(msg_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] \
        if status != "in_progress" else []
    return {"id": msg_id, "type": "message", "status": status, "role": "assistant",
            "content": content}


def function_call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A parsed chat tool call (:meth:`ToolPlan.parse`) as a ``function_call`` output item."""
    fn = call["function"]
    return {"id": item_id("fc"), "type": "function_call", "status": status,
            "arguments": fn["arguments"], "call_id": call["id"], "name": fn["name"]}


def output_items(choice: Choice, plan: ToolPlan, msg_id: str) -> list[dict[str, Any]]:
    """The model's reply: its tool calls when it made any (as chat reports them), else one
    assistant message."""
    calls = plan.parse(choice.content)
    if calls:
        return [function_call_item(c) for c in calls]
    return [message_item(msg_id, choice.content, status_of(choice))]
