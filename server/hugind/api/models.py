"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from hugind.api.model_meta import model_meta
from hugind.api.runtime import Runtime, json_response
from hugind.errors import ModelNotFoundError


def _entries(rt: Runtime) -> list[dict[str, Any]]:
    out = []
    for m in rt.engine.models():
        for name in [m.id, *m.aliases]:
            out.append({"id": name, "object": "model", "created": m.created,
                        "owned_by": "hugind", "meta": model_meta(m, name)})
    if rt.remote_models is not None:
        local = {entry["id"] for entry in out}
        for model_id, provider in rt.remote_models():
            if model_id not in local:  # a local model answers under its name
                out.append({"id": model_id, "object": "model", "created": 0,
                            "owned_by": provider})
    return out


@get(["/v1/models", "/models"])
async def list_models(request: Request) -> Response[bytes]:
    """Local and remote models."""
    return json_response({"object": "list", "data": _entries(Runtime.of(request))})


@get(["/v1/models/{model_id:path}", "/models/{model_id:path}"])
async def get_model(request: Request, model_id: str) -> Response[bytes]:
    """One model by id or alias."""
    model_id = model_id.lstrip("/")
    for entry in _entries(Runtime.of(request)):
        if entry["id"] == model_id:
            return json_response(entry)
    raise ModelNotFoundError(model_id)
