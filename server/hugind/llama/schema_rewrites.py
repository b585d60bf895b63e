"""JSON Schema rewritten into what llguidance enforces exactly, or enforces with an end.

- ``uniqueItems`` over a few values: the arrays without duplicates, listed (llguidance has no
  ``uniqueItems``; a grammar cannot count duplicates, but it can list the arrays that have
  none).
- Numbers: at most 16 integral and 10 fractional digits where the schema sets no bound (as
  llama.cpp's converter bounds them), so a model sampling digits at temperature 1 ends its
  number instead of writing digits until ``max_tokens``.
- ``format`` date, time and date-time as patterns: RFC 3339 with real month lengths, leap
  years, years 0001-9999, at most 9 fractional second digits and no leap second (llguidance's
  formats let a model write fractions until ``max_tokens``; validators disagree on ``:60``).

Pure functions on one schema object; ``grammar._closed`` applies them to every node.
"""

from __future__ import annotations

import json
from typing import Any

MAX_UNIQUE_ARRAYS = 2000  # orderings uniqueItems may expand into before it is refused
INT_BOUND = 10**16 - 1  # 16 digits, as llama.cpp's converter
FRACTION = 1e-10  # the finest multipleOf llguidance takes (1e-12 has "too many digits")

_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
DATE = f"(?:{_YEAR}-{_DAY}|{_LEAP}-02-29)"
TIME = ("(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?"
        "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
FORMATS = {"date": f"^{DATE}$", "time": f"^{TIME}$", "date-time": f"^{DATE}[Tt]{TIME}$"}


def rewrite(node: dict[str, Any]) -> None:
    """Rewrite one schema object (a copy) in place."""
    if node.get("uniqueItems") is False:
        del node["uniqueItems"]  # no constraint at all
    elif node.get("uniqueItems") is True and (arrays := unique_arrays(node)) is not None:
        for key in ("uniqueItems", "items", "minItems", "maxItems"):
            node.pop(key, None)
        if "anyOf" in node:
            node["allOf"] = [*node.get("allOf", []), {"anyOf": arrays}]
        else:
            node["anyOf"] = arrays
    _bound_numbers(node)
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in FORMATS and "pattern" not in node:
        node["pattern"] = FORMATS[node.pop("format")]


def _bound_numbers(node: dict[str, Any]) -> None:
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if not kinds & {"integer", "number"} or "enum" in node or "const" in node:
        return
    bounds = [node[k] for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
              if isinstance(node.get(k), int | float) and not isinstance(node.get(k), bool)]
    low = [node[k] for k in ("minimum", "exclusiveMinimum") if k in node]
    high = [node[k] for k in ("maximum", "exclusiveMaximum") if k in node]
    if not high and all(isinstance(b, int | float) and b < INT_BOUND for b in low):
        node["maximum"] = INT_BOUND
    if not low and all(isinstance(b, int | float) and b > -INT_BOUND for b in high):
        node["minimum"] = -INT_BOUND
    # Not where a bound itself is finer than the step (it would leave nothing to write).
    if "number" in kinds and "multipleOf" not in node and all(
            round(b, 10) == b for b in bounds):
        node["multipleOf"] = FRACTION


def unique_arrays(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``uniqueItems`` over a finite item domain as the arrays it allows: one ``prefixItems``
    of ``const`` per ordering of distinct values, within ``minItems`` and ``maxItems``.
    None: the domain is not finite and small (strings, wide ranges), or the array has other
    item keywords."""
    if any(k in node for k in ("prefixItems", "contains", "additionalItems",
                               "unevaluatedItems")):
        return None
    values = _finite(node.get("items", True))
    if values is None:
        return None
    low = node.get("minItems", 0)
    high = min(node.get("maxItems", len(values)), len(values))
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    count, total = 1, 0
    for n in range(high + 1):  # orderings of n distinct values: k! / (k - n)!
        total += count if n >= low else 0
        count *= len(values) - n
    if total > MAX_UNIQUE_ARRAYS:
        return None
    out: list[dict[str, Any]] = []

    def extend(prefix: list[Any], left: list[Any]) -> None:
        if len(prefix) >= low:
            out.append({"prefixItems": [{"const": v} for v in prefix], "items": False,
                        "minItems": len(prefix)})
        if len(prefix) < high:
            for i, v in enumerate(left):
                extend([*prefix, v], left[:i] + left[i + 1:])

    extend([], values)
    return out


def _finite(items: Any) -> list[Any] | None:
    """The values an item schema allows when it lists them (``enum``, ``const``, boolean, a
    bounded integer range), distinct as JSON Schema compares them; else None."""
    if not isinstance(items, dict):
        return None
    extra = set(items) - {"enum", "const", "type", "minimum", "maximum", "title",
                          "description"}
    if extra:
        return None
    if "const" in items:
        values = [items["const"]]
    elif "enum" in items:
        values = items["enum"] if isinstance(items["enum"], list) else None
    elif items.get("type") == "boolean":
        values = [False, True]
    elif items.get("type") == "integer" and all(
            isinstance(items.get(k), int) and not isinstance(items.get(k), bool)
            for k in ("minimum", "maximum")):
        if items["maximum"] - items["minimum"] > 16:
            return None
        values = list(range(items["minimum"], items["maximum"] + 1))
    else:
        return None
    if values is None:
        return None
    kind = items.get("type")
    if kind is not None and ("enum" in items or "const" in items):
        values = [v for v in values if _is_type(v, kind)]
    seen: dict[tuple[str, str], Any] = {}
    for v in values:
        seen.setdefault(value_key(v), v)
    return list(seen.values())


_TYPES: dict[str, Any] = {"string": str, "boolean": bool, "null": type(None), "object": dict,
                          "array": list}


def _is_type(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, list) else [kind]
    for k in kinds:
        if k in ("number", "integer") and isinstance(value, int | float) \
                and not isinstance(value, bool):
            if k == "number" or float(value).is_integer():
                return True
        elif k in _TYPES and isinstance(value, _TYPES[k]):
            return True
    return False


def value_key(value: Any) -> tuple[str, str]:
    """JSON equality as JSON Schema reads it: 1 == 1.0, but true is not 1."""
    if isinstance(value, bool) or value is None:
        return "literal", json.dumps(value)
    if isinstance(value, int | float):
        return "number", repr(float(value))
    return "json", json.dumps(value, sort_keys=True)
