"""JSON schema and GBNF -> llguidance grammars, without a model: what compiles, what is a
SchemaError naming the keyword and where it is, and which objects are closed."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from hugind.llama.grammar import (
    GrammarError,
    SchemaError,
    _closed,
    grammar_for,
    grammar_from_gbnf,
    relaxed,
)
from hugind.llama.schema_paths import exclusive, without
from hugind.llama.schema_rewrites import FRACTION, INT_BOUND, unique_arrays


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


def test_relaxed_takes_out_and_names_what_cannot_be_enforced() -> None:
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "not": {"type": "string", "format": "colour"},  # a property named "not" is data
        "n": {"type": "integer", "minimum": 0}}}
    before = copy.deepcopy(schema)
    out, removed = relaxed(schema)
    assert schema == before  # the request's schema is left alone
    assert sorted(removed) == ["format at #/properties/not", "uniqueItems at #/properties/tags"]
    assert out["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert out["properties"]["n"] == {"type": "integer", "minimum": 0}
    assert grammar_for(out)


def test_relaxed_leaves_an_enforceable_schema_as_it_is() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}
    assert relaxed(schema) == (schema, [])


def test_relaxed_still_refuses_a_broken_schema() -> None:
    with pytest.raises(SchemaError, match="/nowhere"):
        relaxed({"properties": {"a": {"$ref": "#/nowhere"}}})


def test_an_exclusive_one_of_is_enforced_as_any_of() -> None:
    by_type = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    tagged = {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
         "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"enum": ["b", "c"]}}, "required": ["kind"]}]}
    for schema in (by_type, tagged):
        assert exclusive(schema["oneOf"])
        assert grammar_for(schema)
        assert relaxed(schema) == (schema, [])


@pytest.mark.parametrize("branches", [
    [{"type": "number"}, {"type": "integer"}],  # number holds every integer
    [{"type": "string"}, {"minLength": 2}],  # no type: anything
    [{"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]},
     {"type": "object", "properties": {"k": {"const": 1.0}}, "required": ["k"]}],  # 1 == 1.0
    [{"type": "object", "properties": {"k": {"const": "a"}}},  # not required: may be absent
     {"type": "object", "properties": {"k": {"const": "b"}}}],
])
def test_overlapping_one_of_branches_are_not_exclusive(branches: list[Any]) -> None:
    assert not exclusive(branches)


def test_without_copies_only_the_way_to_the_keyword() -> None:
    schema = {"properties": {"a": {"type": "array", "uniqueItems": True}, "b": {"type": "x"}}}
    out = without(schema, "#/properties/a", "uniqueItems")
    assert out["properties"]["a"] == {"type": "array"}
    assert schema["properties"]["a"]["uniqueItems"] is True
    assert out["properties"]["b"] is schema["properties"]["b"]
    merged = without({"anyOf": [{"type": "string"}], "oneOf": [{}, {}]}, "#", "oneOf")
    assert merged == {"anyOf": [{"type": "string"}], "allOf": [{"anyOf": [{}, {}]}]}


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


def test_unique_items_over_a_few_values_lists_the_arrays_without_duplicates() -> None:
    node = {"type": "array", "items": {"enum": ["a", "b", "c", "a"]}, "uniqueItems": True,
            "minItems": 2, "maxItems": 3}
    arrays = unique_arrays(node)
    assert arrays is not None
    listed = [tuple(p["const"] for p in a["prefixItems"]) for a in arrays]
    assert len(listed) == 6 + 6  # ordered pairs and triples of three distinct values
    assert all(len(set(t)) == len(t) for t in listed)
    assert unique_arrays({"items": {"type": "boolean"}, "uniqueItems": True}) is not None
    assert unique_arrays({"items": {"type": "integer", "minimum": 0, "maximum": 3},
                          "uniqueItems": True}) is not None
    for wide in ({"items": {"type": "string"}}, {"items": {"type": "integer", "minimum": 0,
                                                           "maximum": 1000}},
                 {"items": {"enum": list(range(12))}}):  # 12! orderings: too many
        assert unique_arrays({**wide, "uniqueItems": True}) is None


def test_unique_items_compile_where_finite_and_name_the_place_where_not() -> None:
    assert grammar_for({"type": "object", "properties": {"xs": {
        "type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True}}})
    assert grammar_for({"type": "array", "items": {"type": "string"}, "uniqueItems": False})
    with pytest.raises(SchemaError, match="'uniqueItems' at #/properties/b"):
        grammar_for({"properties": {
            "a": {"type": "array", "items": {"const": 1}, "uniqueItems": True},
            "b": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}})


def test_unbounded_numbers_get_llama_cpp_like_digit_bounds() -> None:
    out = _closed({"type": "object", "properties": {
        "n": {"type": "integer"}, "x": {"type": ["number", "null"]},
        "kept": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "multipleOf": 0.5},
        "e": {"type": "integer", "enum": [1, 2]}}})
    props = out["properties"]
    assert props["n"] == {"type": "integer", "minimum": -INT_BOUND, "maximum": INT_BOUND}
    assert props["x"]["multipleOf"] == FRACTION
    assert props["kept"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                             "multipleOf": 0.5}
    assert props["e"] == {"type": "integer", "enum": [1, 2]}
    assert grammar_for(out)
    huge = _closed({"type": "integer", "minimum": 10**17})  # no maximum below its minimum
    assert huge == {"type": "integer", "minimum": 10**17}
    fine = _closed({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e-12})
    assert "multipleOf" not in fine and "minimum" not in fine


@pytest.mark.parametrize(("fmt", "good", "bad"), [
    ("date", ["2024-02-29", "2000-02-29", "0001-01-01", "2023-12-31"],
     ["2023-02-29", "1900-02-29", "0000-01-01", "2023-04-31", "2023-13-01"]),
    ("time", ["12:30:00Z", "23:59:59.123456789+01:00", "00:00:00.5z"],
     ["12:30:00", "24:00:00Z", "12:30:00.1234567890Z", "12:30:60Z"]),
    ("date-time", ["2024-02-29T12:00:00Z", "2024-02-29t12:00:00.5-05:30"],
     ["2023-02-29T12:00:00Z", "2024-02-29 12:00:00Z"]),
])
def test_date_formats_are_patterns_the_2020_12_checker_agrees_with(
        fmt: str, good: list[str], bad: list[str]) -> None:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    out = _closed({"type": "string", "format": fmt})
    assert "format" not in out
    assert grammar_for(out)
    for text in good:
        assert re.fullmatch(out["pattern"].strip("^$"), text), text
        assert checker.conforms(text, fmt), text
    for text in bad:
        assert not re.fullmatch(out["pattern"].strip("^$"), text), text
    kept = _closed({"type": "string", "format": "date", "pattern": "^2024"})
    assert kept == {"type": "string", "format": "date", "pattern": "^2024"}


def test_an_all_of_object_is_closed_over_its_members_keys() -> None:
    out = _closed({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                             {"properties": {"b": {}, "a": {}}}]})
    assert out["properties"] == {"a": True, "b": True}
    assert out["additionalProperties"] is False
    assert grammar_for(out)
    open_member = {"allOf": [{"properties": {"a": {}}, "additionalProperties": True}]}
    assert "additionalProperties" not in _closed(open_member)
