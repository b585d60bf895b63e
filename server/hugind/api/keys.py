"""Key sets and tenant identities; no HTTP here, so the settings holder can build them."""

from __future__ import annotations

import hashlib
import hmac

from hugind.errors import AuthenticationError

ANONYMOUS = "anonymous"


def tenant_of(key: str) -> str:
    """A stable, non-reversible identity for an API key."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def presented_key(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The key a client sent: ``Authorization: Bearer KEY``, else ``x-api-key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


def missing_key() -> AuthenticationError:
    return AuthenticationError("Missing API key: send it as 'Authorization: Bearer YOUR_KEY'",
                               code="missing_api_key")


class KeyChecker:
    """One set of keys (client or admin); immutable, so a reload swaps in a new one."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def matches(self, presented: str) -> bool:
        candidate = presented.encode()
        matched = False
        for key in self._keys:  # no early exit: timing does not tell which key matched
            matched |= hmac.compare_digest(candidate, key)
        return matched

    def tenant(self, authorization: str | None, x_api_key: str | None = None) -> str:
        if not self._keys:
            return ANONYMOUS
        presented = presented_key(authorization, x_api_key)
        if presented is None:
            raise missing_key()
        if not self.matches(presented):
            raise AuthenticationError("Incorrect API key provided")
        return tenant_of(presented)
