"""JSON schema and GBNF -> llguidance grammars, without a model: what compiles, what is a
SchemaError naming the keyword and where it is, and which objects are closed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hugind.llama.grammar import (
    GrammarError,
    SchemaError,
    _closed,
    grammar_for,
    grammar_from_gbnf,
)


@pytest.mark.parametrize("schema", [
    True,
    {"type": "integer", "minimum": 0, "maximum": 9},
    {"$defs": {"n": {"type": "object", "properties": {"k": {"type": "array",
                                                              "items": {"$ref": "#/$defs/n"}}}}},
     "$ref": "#/$defs/n"},
    {"type": "object", "properties": {"d": {"type": "string", "format": "date-time"},
                                      "u": {"type": "string", "format": "uuid"},
                                      "e": {"type": "string", "format": "email"}}},
    {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[a-z]+$"}]},
    {"type": "object", "title": "t", "description": "d",
     "properties": {"a": {"type": "number", "default": 1, "examples": [2]}}},
])
def test_schemas_compile(schema: Any) -> None:
    assert grammar_for(schema)


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
     "unsupported keyword 'uniqueItems' at #/properties/tags"),
    ({"items": [{"type": "object", "properties": {"a/b": {"format": "colour"}}}]},
     "unsupported format 'colour' at #/items/0/properties/a~1b"),
    ({"not": {"type": "string"}}, "unsupported keyword 'not' at #"),
    ({"type": "weird"}, "Invalid type: weird"),
    ({"properties": {"a": {"$ref": "#/nowhere"}}}, "Pointer '/nowhere' does not exist"),
    ({"type": "string", "pattern": "(("}, "unclosed group"),
    ([1], ""),
])
def test_what_cannot_be_enforced_is_a_schema_error_naming_it(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        grammar_for(schema)
    assert message in str(info.value)


def test_strict_false_ignores_what_it_cannot_enforce() -> None:
    assert grammar_for({"type": "array", "uniqueItems": True}, strict=False)


def test_listed_properties_close_an_object_as_llama_cpp_did() -> None:
    schema = {"type": "object", "properties": {
        "properties": {"type": "object", "properties": {"x": {}}},  # a key named "properties"
        "open": {"type": "object", "properties": {"y": {}}, "additionalProperties": True},
        "both": {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
        "any": {"type": "object"},
    }, "$defs": {"n": {"properties": {"k": {}}}}}
    before = copy.deepcopy(schema)
    out = _closed(schema)
    assert schema == before  # a copy: the request's schema is left alone
    props = out["properties"]
    assert out["additionalProperties"] is False
    assert props["properties"]["additionalProperties"] is False
    assert "additionalProperties" not in props["properties"]["properties"]
    assert props["open"]["additionalProperties"] is True
    assert all("additionalProperties" not in m for m in props["both"]["allOf"])
    assert "additionalProperties" not in props["any"]
    assert out["$defs"]["n"]["additionalProperties"] is False


def test_a_deep_schema_is_closed_without_recursion() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(5000):
        schema = {"type": "object", "properties": {"a": schema}}
    out = _closed(schema)
    assert out["additionalProperties"] is False


@pytest.mark.parametrize("gbnf", ['root ::= "yes" | "no"', 'start: "a"+',
                                  'root ::= [0-9]{1,3} ("," [0-9]{1,3})*'])
def test_gbnf_and_lark_grammars_convert(gbnf: str) -> None:
    assert grammar_from_gbnf(gbnf)


@pytest.mark.parametrize("gbnf", ["root ::= (", "::=", "x ::= y"])
def test_bad_gbnf_is_a_grammar_error(gbnf: str) -> None:
    with pytest.raises(GrammarError):
        grammar_from_gbnf(gbnf)
