"""``strict: false`` JSON schemas: what the grammar engine cannot enforce is taken out, and the
response says so in a header, instead of the 400 a strict schema gets."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hugind.api.state_headers import header_from_state, note
from hugind.engine.interface import Engine

RELAXED_HEADER = "x-hugind-schema-relaxed"
_SCOPE_KEY = "hugind_schema_relaxed"
_SAFE = " #/:;()~,.-_'"  # what stays readable; anything else is percent-encoded


async def enforceable(connection: Any, engine: Engine, schema: Any, *, strict: bool,
                      param: str) -> Any:
    """``schema`` as it will be enforced. ``strict`` (the default): unchanged, and what the
    engine cannot enforce is a 400 naming ``param`` (compiled now, on the grammar pool; the
    request's own compile then finds it cached). ``strict: false``: that is taken out and
    each removal is named in the response's ``x-hugind-schema-relaxed`` header."""
    if not isinstance(schema, dict):
        return schema
    relaxed, removed = await engine.check_schema(schema, strict=strict, param=param)
    if removed:
        note(connection, _SCOPE_KEY, removed)
    return relaxed


def is_strict(spec: dict[str, Any]) -> bool:
    """Only an explicit ``strict: false`` relaxes: a schema without ``strict`` keeps the
    promise that what comes back validates against it."""
    return spec.get("strict") is not False


def _listed(removed: list[str]) -> str:
    return "; ".join(quote(r, safe=_SAFE) for r in removed)


# ``before_send``: name what a ``strict: false`` schema lost, streamed or not.
add_relaxed_header = header_from_state(_SCOPE_KEY, RELAXED_HEADER, _listed)
