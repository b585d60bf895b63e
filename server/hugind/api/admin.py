"""Admin API: model states and load/unload, host figures. Admin keys only (``opt`` below)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post

from hugind.api.runtime import Runtime, json_response
from hugind.api.settings import Live
from hugind.engine.types import ModelInfo

ADMIN = {"admin": True}


def model_row(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "aliases": list(m.aliases), "kind": m.kind,
            "state": m.state, "preload": m.preload, "size_bytes": m.size_bytes,
            "loaded_since": m.loaded_since, "last_used": m.last_used,
            "load_seconds": m.load_seconds, "error": m.error}


@get("/admin/models", opt=ADMIN)
async def admin_models(request: Request) -> Response[bytes]:
    """Every local model with its lifecycle state."""
    models = Runtime.of(request).engine.models()
    return json_response({"object": "list", "data": [model_row(m) for m in models]})


@post("/admin/models/{model_id:str}/load", status_code=200, opt=ADMIN)
async def admin_load(request: Request, model_id: str) -> Response[bytes]:
    """Load a model now (waits until it is ready or failed)."""
    return json_response(model_row(await Runtime.of(request).engine.load_model(model_id)))


@post("/admin/models/{model_id:str}/unload", status_code=200, opt=ADMIN)
async def admin_unload(request: Request, model_id: str) -> Response[bytes]:
    """Unload a model and free its memory; the next request for it loads it again."""
    return json_response(model_row(await Runtime.of(request).engine.unload_model(model_id)))


@get("/admin/system", opt=ADMIN)
async def admin_system(request: Request) -> Response[bytes]:
    """Uptime, CPU, memory, disk of the models and sessions folders, GPU memory."""
    live = Live.of(request)
    return json_response(await asyncio.to_thread(live.system.snapshot, live.folders()))


ADMIN_HANDLERS = [admin_models, admin_load, admin_unload, admin_system]
