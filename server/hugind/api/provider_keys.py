"""Admin API for provider keys and the activity log. Admin keys only (``opt`` below).

A key is sent once (``POST``) and never comes back: every answer names it by id and
fingerprint. The work is in :mod:`hugind.providers.key_admin`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler

from hugind.api.protocol import decode_body
from hugind.api.provider_swap import LiveRouter
from hugind.api.runtime import json_response
from hugind.errors import InvalidRequestError
from hugind.providers import ProviderRouter

ADMIN = {"admin": True}
#: Most events one ``GET /admin/activity`` answers with (the log keeps up to 10,000).
MAX_LIMIT = 10_000
Router = ProviderRouter | LiveRouter


class AddKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    api_key: str
    name: str | None = None


class UpdateKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    is_selected: bool | None = None


def provider_admin_handlers(router: Router) -> list[HTTPRouteHandler]:
    """``/admin/providers/{name}/keys[/{key_id}]`` and ``GET /admin/activity``."""

    @get("/admin/providers/{name:str}/keys", opt=ADMIN, name="admin_keys_list")
    async def list_keys(name: str) -> Response[bytes]:
        """The provider's keys (YAML ones read-only), by id and fingerprint."""
        return json_response({"object": "list", "data": router.keys.list(name)})

    @post("/admin/providers/{name:str}/keys", status_code=201, opt=ADMIN,
          name="admin_keys_add")
    async def add_key(request: Request, name: str) -> Response[bytes]:
        """Add a key, stored encrypted with ``server.secret_key``."""
        req = decode_body(await request.body(), AddKeyRequest)
        return json_response(router.keys.add(name, req.api_key, req.name), status=201)

    @patch("/admin/providers/{name:str}/keys/{key_id:str}", opt=ADMIN,
           name="admin_keys_update")
    async def update_key(request: Request, name: str, key_id: str) -> Response[bytes]:
        """Rename a runtime key; select one (tried first) or unselect it."""
        req = decode_body(await request.body(), UpdateKeyRequest)
        rename = req.name is not msgspec.UNSET
        label = None if isinstance(req.name, msgspec.UnsetType) else req.name
        return json_response(router.keys.update(name, key_id, label=label, rename=rename,
                                                is_selected=req.is_selected))

    @delete("/admin/providers/{name:str}/keys/{key_id:str}", status_code=200, opt=ADMIN,
            name="admin_keys_delete")
    async def delete_key(name: str, key_id: str) -> Response[bytes]:
        """Delete one runtime key."""
        return json_response(router.keys.delete(name, key_id))

    @delete("/admin/providers/{name:str}/keys", status_code=200, opt=ADMIN,
            name="admin_keys_delete_runtime")
    async def delete_runtime_keys(name: str) -> Response[bytes]:
        """Delete every runtime key of the provider (YAML keys stay)."""
        return json_response(router.keys.delete_runtime(name))

    @get("/admin/activity", opt=ADMIN, name="admin_activity")
    async def activity(request: Request) -> Response[bytes]:
        """Key and failover actions, oldest first; ``limit``, ``provider``, ``action``,
        ``from``, ``to`` (unix seconds or ISO 8601)."""
        q = request.query_params
        events = router.activity(
            _limit(q.get("limit")), q.get("provider"), action=_action(q.get("action")),
            since=_when(q.get("from"), "from"), until=_when(q.get("to"), "to"),
            actions_only=True,
        )
        return json_response({"object": "list", "data": [_row(e) for e in events]})

    return [list_keys, add_key, update_key, delete_key, delete_runtime_keys, activity]


def _row(event: dict[str, Any]) -> dict[str, Any]:
    return {"time": event["time"], "action": event["action"], "provider": event["provider"],
            "key": event.get("key"), "description": event["description"]}


def _limit(value: str | None) -> int:
    if value is None:
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise InvalidRequestError("limit must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIMIT}", param="limit")
    return limit


_ACTIONS = ("ADD", "DELETE", "SELECT", "UNSELECT", "COOLDOWN", "RESTORE", "FAILOVER")


def _action(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in _ACTIONS:
        raise InvalidRequestError(f"action must be one of {', '.join(_ACTIONS)}", param="action")
    return value.upper()


def _when(value: str | None, param: str) -> float | None:
    """Unix seconds (``1700000000``, ``1700000000.5``) or ISO 8601 (UTC unless it says)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"{param} must be unix seconds or an ISO 8601 time",
                                  param=param) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
