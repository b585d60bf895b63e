"""API keys -> tenant identity. Keys are compared in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from hugind.errors import AuthenticationError

ANONYMOUS = "anonymous"


def tenant_of(key: str) -> str:
    """A stable, non-reversible identity for an API key."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def tenant(self, authorization: str | None, x_api_key: str | None = None) -> str:
        if not self._keys:
            return ANONYMOUS
        presented = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                presented = value.strip()
        if presented is None and x_api_key:
            presented = x_api_key.strip()
        if presented is None:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer YOUR_KEY'",
                code="missing_api_key")
        candidate = presented.encode()
        matched = False
        for key in self._keys:  # no early exit: timing does not tell which key matched
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise AuthenticationError("Incorrect API key provided")
        return tenant_of(presented)


def auth_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    if handler.opt.get("public"):
        return
    checker: KeyChecker = connection.app.state.key_checker
    connection.state.tenant = checker.tenant(connection.headers.get("authorization"),
                                             connection.headers.get("x-api-key"))


def tenant(connection: ASGIConnection) -> str:
    return str(getattr(connection.state, "tenant", ANONYMOUS))
