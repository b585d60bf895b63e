"""API keys -> tenant identity; admin keys -> the admin endpoints.

Keys are compared in constant time and never logged. Client keys and admin keys are separate
sets: an admin key is no client key and a client key opens no admin endpoint. A handler marks
itself with ``opt={"public": True}`` (no key), ``opt={"admin": True}`` (an admin key), and
``opt={"admin": True, "open_when": "metrics_public"}`` (public while that ``server`` flag is on).
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from hugind.api.keys import ANONYMOUS, KeyChecker, missing_key, presented_key, tenant_of
from hugind.api.settings import Live, Settings
from hugind.errors import AuthenticationError, PermissionDeniedError

__all__ = ["ANONYMOUS", "KeyChecker", "auth_guard", "check_admin", "tenant", "tenant_of"]


def check_admin(settings: Settings, presented: str | None) -> None:
    """Raise unless ``presented`` opens the admin endpoints under ``settings``.

    Neither client nor admin keys configured (a loopback dev box): open to anyone. Client keys
    but no admin keys: closed (403) until ``server.admin_keys`` is set, so adding client keys
    never leaves admin open by accident.
    """
    if not settings.admins.enabled and not settings.clients.enabled:
        return
    if presented is None:
        raise missing_key()
    if settings.admins.matches(presented):
        return
    if settings.clients.matches(presented):
        if not settings.admins.enabled:
            raise PermissionDeniedError("Admin endpoints are off: set server.admin_keys (or "
                                        "server.admin_key_files) to use them",
                                        code="admin_keys_not_set")
        raise PermissionDeniedError("This endpoint needs an admin key (server.admin_keys); "
                                    "client keys cannot use it", code="admin_key_required")
    raise AuthenticationError("Incorrect API key provided")


def auth_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    opt = handler.opt
    if opt.get("public"):
        return
    settings = Live.of(connection).settings
    if opt.get("admin"):
        flag = opt.get("open_when")
        if flag and getattr(settings.config.server, flag, False) is True:
            return
        check_admin(settings, presented_key(connection.headers.get("authorization"),
                                            connection.headers.get("x-api-key")))
        connection.state.admin = True
        return
    connection.state.tenant = settings.clients.tenant(connection.headers.get("authorization"),
                                                      connection.headers.get("x-api-key"))


def tenant(connection: ASGIConnection) -> str:
    return str(getattr(connection.state, "tenant", ANONYMOUS))
