"""JSON schema -> GBNF, via llama-cpp-python's port of llama.cpp's converter. Thread-safe."""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf


class SchemaError(ValueError):
    """The schema uses something the grammar converter cannot express."""


def grammar_for(schema: Any) -> str:
    """A GBNF grammar for ``schema``; ``True`` means any JSON object."""
    if schema is True:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except (KeyError, ValueError, TypeError, AttributeError, NotImplementedError,
            RecursionError, AssertionError) as exc:  # the converter asserts on what it rejects
        raise SchemaError(f"{type(exc).__name__}: {exc}") from None
