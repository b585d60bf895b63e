"""The caller's own KV sessions: list, inspect, delete, and engine counters."""

from __future__ import annotations

from litestar import Request, Response, delete, get

from hugind.api.auth import tenant
from hugind.api.runtime import Runtime, json_response
from hugind.errors import NotFoundError


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"No session named '{name}' for this API key", param="name",
                         code="session_not_found")


@get(["/v1/sessions", "/sessions"])
async def list_sessions(request: Request) -> Response[bytes]:
    """The caller's sessions."""
    rows = await Runtime.of(request).engine.list_sessions(tenant(request))
    return json_response({"object": "list", "data": [{"object": "session", **r} for r in rows]})


@get(["/v1/sessions/stats", "/sessions/stats"], opt={"admin": True})
async def session_stats(request: Request) -> Response[bytes]:
    """Engine counters per model (admin keys only: they span every tenant)."""
    return json_response(Runtime.of(request).engine.stats())


@get(["/v1/sessions/{name:str}", "/sessions/{name:str}"])
async def get_session(request: Request, name: str) -> Response[bytes]:
    """One of the caller's sessions."""
    rows = await Runtime.of(request).engine.list_sessions(tenant(request))
    found = [r for r in rows if r["name"] == name]
    if not found:
        raise _not_found(name)
    return json_response({"object": "session", **found[0]})


@delete(["/v1/sessions/{name:str}", "/sessions/{name:str}"], status_code=200)
async def delete_session(request: Request, name: str) -> Response[bytes]:
    """Forget one of the caller's sessions in every tier."""
    if not await Runtime.of(request).engine.delete_session(tenant(request), name):
        raise _not_found(name)
    return json_response({"object": "session.deleted", "name": name, "deleted": True})
