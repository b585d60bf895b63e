"""Constrained decoding grammars on llguidance: JSON Schema and GBNF in, token matchers out.

Thread-safe: every function may be called from any thread. A model's llguidance tokenizer is
built once (the first grammar request pays for it) and compiled grammars are kept per model,
keyed by their text, so a schema sent again, or for ``n`` choices, compiles once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import llama_cpp
import llguidance
from llguidance.gbnf_to_lark import any_to_lark
from llguidance.llamacpp import lltokenizer_from_vocab

from hugind.llama.schema_paths import (
    SCHEMA_LISTS,
    SCHEMA_MAPS,
    SCHEMAS,
    exclusive,
    find_keyword,
    without,
)
from hugind.llama.schema_rewrites import rewrite

if TYPE_CHECKING:
    from hugind.llama.context import Vocab


class SchemaError(ValueError):
    """The JSON schema is invalid, or uses something the grammar engine cannot enforce:
    then ``keyword`` names it and ``pointer`` is where it is (``#/properties/tags``)."""

    def __init__(self, message: str, *, keyword: str | None = None,
                 pointer: str | None = None) -> None:
        super().__init__(message)
        self.keyword = keyword
        self.pointer = pointer


class GrammarError(ValueError):
    """A grammar (GBNF, Lark, or one compiled from a schema) could not be compiled."""


# The JSON a schema produces: one fixed layout (`{"a": 1, "b": [2, 3]}`), as json.dumps writes
# it. Free whitespace lets a small model wander into newlines until max_tokens; a schema's own
# "x-guidance" options still override these.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ",
                                "key_separator": ": "}
MAX_COMPILED = 32  # compiled grammars kept per model
MAX_VALID = 1024  # hashes of schema grammars known to compile
_valid: OrderedDict[bytes, None] = OrderedDict()
_valid_lock = threading.Lock()


def grammar_for(schema: Any) -> str:
    """The llguidance grammar for a JSON ``schema`` (``True``: any JSON object). A keyword
    the engine cannot enforce is a :class:`SchemaError` naming it and where it is."""
    if schema is True:
        schema = {"type": "object"}
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(_closed(schema),
                                                                 defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{exc}") from None
    key = hashlib.sha256(grammar.encode()).digest()
    with _valid_lock:
        if key in _valid:
            _valid.move_to_end(key)
            return grammar
    # Compiling is the check (the GIL released); a schema sent again skips it.
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise _located(schema, messages[0] if messages else "invalid schema")
    with _valid_lock:
        _valid[key] = None
        while len(_valid) > MAX_VALID:
            _valid.popitem(last=False)
    return grammar


MAX_RELAXED = 32  # keywords strict: false may take out of one schema


def relaxed(schema: Any) -> tuple[Any, list[str]]:
    """``schema`` without what the engine cannot enforce (``strict: false``), and what was
    taken out, each as ``"uniqueItems at #/properties/tags"`` (a ``oneOf`` that cannot be
    proven exclusive stays as an ``anyOf``). Anything else wrong is still a SchemaError."""
    notes: list[str] = []
    for _ in range(MAX_RELAXED + 1):
        try:
            grammar_for(schema)
        except SchemaError as exc:
            if exc.keyword is None or exc.pointer is None or len(notes) == MAX_RELAXED:
                raise
            schema = without(schema, exc.pointer, exc.keyword)
            as_any = " (as anyOf)" if exc.keyword == "oneOf" else ""
            notes.append(f"{exc.keyword} at {exc.pointer}{as_any}")
        else:
            return schema, notes
    raise AssertionError("unreachable")  # pragma: no cover


_OPEN = ("additionalProperties", "patternProperties", "unevaluatedProperties")


def _closed(schema: Any) -> Any:
    """A copy of ``schema`` in which an object schema that lists ``properties`` and says
    nothing of others allows no others, as llama.cpp's converter and OpenAI's strict mode
    read it: the model keeps to the listed keys instead of inventing more until max_tokens.
    The members of an ``allOf`` stay open, since each one only lists its share of the keys.
    A ``oneOf`` whose branches cannot overlap (by type, or by a tag property) is an
    ``anyOf``, which llguidance enforces exactly; see ``schema_rewrites`` for the rest.
    Only schema objects are copied (an enum's
    values are shared); iterative, any depth."""
    if not isinstance(schema, dict):
        return schema
    root = dict(schema)
    todo: list[tuple[dict[str, Any], bool]] = [(root, True)]
    while todo:
        node, close = todo.pop()
        if close and "properties" in node and not any(k in node for k in _OPEN):
            node["additionalProperties"] = False
        elif close and (names := _all_of_names(node)):
            # The object an allOf builds is closed over its members' keys, as llama.cpp's
            # converter merges them (each member stays open: it lists only its share).
            node["properties"] = dict.fromkeys(names, True)
            node["additionalProperties"] = False
        if "anyOf" not in node and exclusive(node.get("oneOf")):
            node["anyOf"] = node.pop("oneOf")
        rewrite(node)
        for key, sub in list(node.items()):
            if key in SCHEMA_MAPS and isinstance(sub, dict):
                node[key] = {k: _copy(v, todo, close=True) for k, v in sub.items()}
            elif key in SCHEMA_LISTS and isinstance(sub, list):
                node[key] = [_copy(v, todo, close=key != "allOf") for v in sub]
            elif key in SCHEMAS and isinstance(sub, dict):
                node[key] = _copy(sub, todo, close=True)
    return root


def _all_of_names(node: dict[str, Any]) -> list[str]:
    """The property names of an ``allOf`` whose members list properties and say nothing of
    other keys (nor does ``node``); empty when it is not such an ``allOf``."""
    members = node.get("allOf")
    if not isinstance(members, list) or any(k in node for k in (*_OPEN, "properties")) or \
            not all(isinstance(m, dict) and "properties" in m and isinstance(
                m["properties"], dict) and not any(k in m for k in _OPEN) for m in members):
        return []
    return list(dict.fromkeys(str(k) for m in members for k in m["properties"]))


def _copy(sub: Any, todo: list[tuple[dict[str, Any], bool]], *, close: bool) -> Any:
    if not isinstance(sub, dict):
        return sub
    out = dict(sub)
    todo.append((out, close))
    return out


def grammar_from_gbnf(text: str) -> str:
    """The llguidance grammar for a GBNF (or Lark) grammar, as llama.cpp's ``grammar`` field
    takes it."""
    try:
        lark = any_to_lark(text)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare Exceptions too
        raise GrammarError(f"{exc}") from None
    return llguidance.LLMatcher.grammar_from_lark(lark)


def _located(schema: Any, message: str) -> SchemaError:
    """llguidance's ``message`` as a SchemaError naming the keyword (or format) and where
    it is, where the message names one ("Unimplemented keys: [\"uniqueItems\"]", "Unknown
    format: foo", "oneOf constraints are not supported...")."""
    key: str | None = None
    value: str | None = None
    if message.startswith("Unimplemented keys: "):
        try:
            names = json.loads(message.removeprefix("Unimplemented keys: "))
            key = str(names[0])
        except (ValueError, IndexError, TypeError):
            return SchemaError(message)
        message = f"unsupported keyword '{key}'"
    elif message.startswith("Unknown format: "):
        key, value = "format", message.removeprefix("Unknown format: ")
        message = f"unsupported format '{value}'"
    elif message.startswith("oneOf constraints are not supported"):
        key = "oneOf"
        message = "unsupported keyword 'oneOf' (branches that may overlap)"
    if key is None:
        return SchemaError(message)
    where = find_keyword(schema, key, value)
    if where is None:
        return SchemaError(message)
    return SchemaError(f"{message} at {where}", keyword=key, pointer=where)


class _ModelGrammars:
    """One model's llguidance tokenizer and its compiled grammars (an LRU of matchers in
    their start state, copied for each sequence)."""

    def __init__(self, vocab: Vocab) -> None:
        handle = vocab.handle
        eog = [t for t in range(vocab.n_vocab) if llama_cpp.llama_vocab_is_eog(handle, t)]
        self.eog = eog or [vocab.eos]
        # Every end-of-generation token ends a finished grammar: chat turns end on
        # <end_of_turn>, not on the vocabulary's single EOS.
        self.tokenizer = lltokenizer_from_vocab(handle, eos_token=self.eog)
        self._compiled: OrderedDict[bytes, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        key = hashlib.sha256(grammar.encode()).digest()
        with self._lock:
            proto = self._compiled.get(key)
            if proto is not None:
                self._compiled.move_to_end(key)
                return proto.deep_copy()
        proto = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)  # GIL released
        if proto.is_error():
            raise GrammarError(proto.get_error())
        with self._lock:
            self._compiled[key] = proto
            while len(self._compiled) > MAX_COMPILED:
                self._compiled.popitem(last=False)
            return proto.deep_copy()


_models: weakref.WeakKeyDictionary[Vocab, _ModelGrammars] = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def model_grammars(vocab: Vocab) -> _ModelGrammars:
    """``vocab``'s grammar state, built on first use (seconds for a 262k vocabulary; a
    second caller waits for the first)."""
    with _models_lock:
        state = _models.get(vocab)
        if state is None:
            state = _models[vocab] = _ModelGrammars(vocab)
        return state


def matcher_for(vocab: Vocab, grammar: str) -> tuple[llguidance.LLMatcher, list[int]]:
    """A fresh matcher for ``grammar`` (from :func:`grammar_for` or :func:`grammar_from_gbnf`)
    and the model's end-of-generation tokens. Raises :class:`GrammarError`."""
    state = model_grammars(vocab)
    return state.matcher(grammar), state.eog
