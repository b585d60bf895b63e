"""Where things sit in a JSON schema: the schema objects under a schema with their JSON
pointers, a keyword's first place, the schema with one keyword taken out, which ``oneOf``
lists are provably exclusive (so ``anyOf`` enforces them exactly).

Pure functions on JSON values; iterative, so any depth is fine. Only schema positions are
walked: a property *named* ``not`` or an ``enum`` value holding ``uniqueItems`` is data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from hugind.llama.schema_rewrites import unique_arrays, value_key

# Keywords whose value is a map of schemas, a list of schemas, or one schema.
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_LISTS = ("prefixItems", "anyOf", "oneOf", "allOf", "items")
SCHEMAS = ("items", "additionalProperties", "additionalItems", "contains", "not", "if", "then",
           "else", "propertyNames", "unevaluatedProperties", "unevaluatedItems")


def escape(part: str) -> str:
    """One JSON-pointer reference token (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


def _children(node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, sub in node.items():
        if key in SCHEMA_MAPS and isinstance(sub, dict):
            yield from ((f"{escape(key)}/{escape(str(k))}", v) for k, v in sub.items())
        elif key in SCHEMA_LISTS and isinstance(sub, list):
            yield from ((f"{escape(key)}/{i}", v) for i, v in enumerate(sub))
        elif key in SCHEMAS and isinstance(sub, dict):
            yield escape(key), sub


def schema_nodes(schema: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in ``schema``, breadth first, with its pointer (``#``, then
    ``#/properties/a``...)."""
    todo: deque[tuple[str, Any]] = deque([("#", schema)])
    while todo:
        path, node = todo.popleft()
        if isinstance(node, dict):
            yield path, node
            todo.extend((f"{path}/{rel}", sub) for rel, sub in _children(node))


def find_keyword(schema: Any, key: str, value: Any = None) -> str | None:
    """The pointer of the first schema object holding ``key`` (equal to ``value`` where one
    is given); for ``oneOf`` and ``uniqueItems``, the first that cannot be rewritten into
    what llguidance enforces."""
    for path, node in schema_nodes(schema):
        if key not in node or (value is not None and node[key] != value):
            continue
        if key == "oneOf" and exclusive(node[key]):
            continue
        if key == "uniqueItems" and (node[key] is False or unique_arrays(node) is not None):
            continue
        return path
    return None


def without(schema: Any, pointer: str, key: str) -> Any:
    """A copy of ``schema`` with ``key`` taken out of the schema object at ``pointer`` (a
    ``oneOf`` becomes an ``anyOf``, its closest enforceable form). Only the objects on the
    way there are copied."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    root: Any = _shallow(schema)
    node = root
    for part in parts:
        child = node[int(part)] if isinstance(node, list) else node[part]
        child = _shallow(child)
        if isinstance(node, list):
            node[int(part)] = child
        else:
            node[part] = child
        node = child
    value = node.pop(key)
    if key == "oneOf" and "anyOf" not in node:
        node["anyOf"] = value
    elif key == "oneOf":  # both: the oneOf joins as one more condition
        node["allOf"] = [*node.get("allOf", []), {"anyOf": value}]
    return root


def _shallow(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) \
        if isinstance(value, list) else value


def exclusive(branches: Any) -> bool:
    """Whether no instance can match two of ``branches``: each names its ``type`` and no two
    share one (``number`` includes ``integer``), or each is an object that requires one
    property held to a ``const``/``enum`` of values no other branch allows (a tagged union)."""
    if not isinstance(branches, list) or not all(isinstance(b, dict) for b in branches):
        return False
    return _by_type(branches) or _by_tag(branches)


def _types(branch: dict[str, Any]) -> set[str] | None:
    kind = branch.get("type")
    names = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else None
    if names is not None and "number" in names:
        names.add("integer")
    return names


def _by_type(branches: list[dict[str, Any]]) -> bool:
    seen: set[str] = set()
    for branch in branches:
        names = _types(branch)
        if names is None or names & seen:
            return False
        seen |= names
    return True


def _by_tag(branches: list[dict[str, Any]]) -> bool:
    if not all(_types(b) == {"object"} for b in branches):
        return False
    common = set.intersection(*(set(b.get("required") or []) for b in branches))
    return any(_tag_values_disjoint(branches, name) for name in common if isinstance(name, str))


def _tag_values_disjoint(branches: list[dict[str, Any]], name: str) -> bool:
    seen: set[tuple[str, str]] = set()
    for branch in branches:
        prop = (branch.get("properties") or {}).get(name)
        if not isinstance(prop, dict):
            return False
        values = [prop["const"]] if "const" in prop else prop.get("enum")
        if not isinstance(values, list):
            return False
        keys = {value_key(v) for v in values}
        if keys & seen:
            return False
        seen |= keys
    return True
