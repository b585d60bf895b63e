"""The caller's own KV sessions: list, inspect, delete, export, import, and engine counters."""

from __future__ import annotations

from litestar import Request, Response, delete, get, post, put

from hugind.api.auth import tenant
from hugind.api.protocol import MAX_NAME_CHARS
from hugind.api.runtime import Runtime, json_response
from hugind.api.settings import Live
from hugind.errors import InvalidRequestError, NotFoundError, RequestTooLargeError


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


@post(["/v1/sessions/{name:str}/pin", "/sessions/{name:str}/pin"], status_code=200)
async def pin_session(request: Request, name: str) -> Response[bytes]:
    """Keep one of the caller's sessions through budget and TTL eviction (409 when pinned
    sessions would exceed the disk budget)."""
    if not await Runtime.of(request).engine.pin_session(tenant(request), name, pinned=True):
        raise _not_found(name)
    return json_response({"object": "session", "name": name, "pinned": True})


@post(["/v1/sessions/{name:str}/unpin", "/sessions/{name:str}/unpin"], status_code=200)
async def unpin_session(request: Request, name: str) -> Response[bytes]:
    """Let a pinned session be evicted again."""
    if not await Runtime.of(request).engine.pin_session(tenant(request), name, pinned=False):
        raise _not_found(name)
    return json_response({"object": "session", "name": name, "pinned": False})


@get(["/v1/sessions/{name:str}/export", "/sessions/{name:str}/export"])
async def export_session(request: Request, name: str) -> Response[bytes]:
    """One of the caller's sessions as a file another server can import (any API key)."""
    blob = await Runtime.of(request).engine.export_session(tenant(request), name)
    if blob is None:
        raise _not_found(name)
    return Response(blob, media_type="application/octet-stream",
                    headers={"Content-Disposition": 'attachment; filename="session.hgsx"'})


# An export file is bounded by sessions.max_import_mb, not server.max_body_bytes (it can be
# many MiB): Litestar's own limit is off on this route and the body is counted here.
@put(["/v1/sessions/{name:str}", "/sessions/{name:str}"], status_code=200,
     request_max_body_size=None)
async def import_session(request: Request, name: str) -> Response[bytes]:
    """Import an exported session file as the caller's session ``name``, replacing it."""
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(f"session names are at most {MAX_NAME_CHARS} characters",
                                  param="name")
    limit = Live.of(request).settings.config.sessions.max_import_mb << 20
    blob = await _body(request, limit)
    row = await Runtime.of(request).engine.import_session(tenant(request), name, blob)
    return json_response({"object": "session", **row})


async def _body(request: Request, limit: int) -> bytes:
    too_large = RequestTooLargeError(
        f"the session file is larger than sessions.max_import_mb ({limit >> 20})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)
