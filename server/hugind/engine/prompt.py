"""Chat templates: render OpenAI-style messages into a prompt string.

Templates are Jinja, rendered in a sandbox the way Hugging Face and llama.cpp do (``messages``,
``tools``, ``add_generation_prompt``, ``bos_token``, ``eos_token``, ``raise_exception``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hugind.errors import InvalidRequestError

BUILTIN_TEMPLATES: dict[str, str] = {
    # Gemma's turn format; system text is folded into the first user turn.
    "gemma": (
        "{{ bos_token }}"
        "{%- set ns = namespace(system='') -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] in ['system', 'developer'] -%}"
        "{%- set ns.system = ns.system + m['content'] + '\n\n' -%}"
        "{%- else -%}"
        "{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}"
        "<start_of_turn>{{ role ~ '\\n' }}"
        "{%- if role == 'user' and ns.system %}{{ ns.system }}{% set ns.system = '' %}{% endif -%}"
        "{{ m['content'] | trim }}<end_of_turn>{{ '\\n' }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt %}<start_of_turn>model{{ '\\n' }}{% endif -%}"
    ),
    "chatml": (
        "{%- for m in messages -%}"
        "<|im_start|>{{ m['role'] ~ '\\n' ~ m['content'] }}<|im_end|>{{ '\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif -%}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{%- for m in messages -%}"
        "<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ '\\n\\n' }}"
        "{{ m['content'] | trim }}<|eot_id|>"
        "{%- endfor -%}"
        "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>"
        "{{ '\\n\\n' }}{% endif -%}"
    ),
}


class TemplateError(InvalidRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(f"chat template error: {message}", param="messages",
                         code="template_error")


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """A compiled chat template. Thread-safe: rendering has no shared mutable state."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        text = BUILTIN_TEMPLATES.get(source, source)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            undefined=jinja2.StrictUndefined)
        env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, indent=indent,
                                                                       ensure_ascii=False)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = text
        self.name = source if source in BUILTIN_TEMPLATES else "custom"
        self._template = env.from_string(text)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True, **extra: Any) -> str:
        try:
            return self._template.render(
                messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                bos_token=self._bos, eos_token=self._eos, **extra,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(str(exc)) from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError,
                RecursionError) as exc:  # client data the template did not expect
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None


def compile_template(source: str, *, bos_token: str, eos_token: str) -> ChatTemplate:
    """Compile at load; a broken configured template is a load error, not a request error."""
    try:
        return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"chat_template does not compile: {exc}") from None


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def inline_tool_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that know nothing of tool calls: an assistant's calls become the
    ``<tool_call>`` text the model was asked to write, a tool result a ``<tool_response>``."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [c.get("function", c) for c in m["tool_calls"]]
            text = "".join(
                "<tool_call>" + json.dumps({"name": c.get("name"),
                                            "arguments": _arguments(c.get("arguments"))},
                                           ensure_ascii=False) + "</tool_call>"
                for c in calls)
            m = {k: v for k, v in m.items() if k != "tool_calls"}
            m["content"] = (m.get("content") or "") + text
        elif m.get("role") == "tool":
            m = {**m, "content": f"<tool_response>{m.get('content') or ''}</tool_response>"}
        out.append(m)
    return out


def with_tool_instructions(messages: list[dict[str, Any]],
                           tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that ignore ``tools``: describe them in a system message instead."""
    specs = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
    text = (
        "You can call these functions:\n" + specs + "\n"
        "To call one, reply with only <tool_call>{\"name\": NAME, \"arguments\": {...}}"
        "</tool_call>. Otherwise, answer normally."
    )
    return [{"role": "system", "content": text}, *messages]
