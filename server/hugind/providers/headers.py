"""Header rules for forwarding: what goes upstream, what comes back, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from datetime import timezone

#: RFC 9110 section 7.6.1 hop-by-hop headers, plus ``proxy-connection`` seen in the wild.
HOP_BY_HOP: frozenset[str] = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

#: The longest ``Retry-After`` honoured (a day): a buggy upstream cannot retire a key for good.
MAX_RETRY_AFTER_S = 86400.0

# Client credentials for Hugind never travel upstream; the body is re-framed by httpx and
# decoded by us, so length and encoding headers are recomputed.
_DROP_REQUEST: frozenset[str] = HOP_BY_HOP | {
    "host", "content-length", "authorization", "api-key", "x-api-key", "cookie",
    "accept-encoding", "expect",
}

# The body is relayed decoded and re-framed; ``date`` and ``server`` are set by our server;
# upstream cookies and alt-svc belong to the upstream's origin, not ours.
_DROP_RESPONSE: frozenset[str] = HOP_BY_HOP | {
    "content-length", "content-encoding", "date", "server", "set-cookie", "alt-svc",
}


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def upstream_request_headers(
    client_headers: Iterable[tuple[str, str]], key: str | None, extra: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The client's end-to-end headers, the provider's extra headers, and its key.

    Args:
        client_headers: the incoming request's headers (any case).
        key: the provider key for this attempt, or ``None`` to send no ``Authorization``.
        extra: the provider's configured headers; they replace client headers of the same name.
    """
    pairs = list(client_headers)
    drop = _DROP_REQUEST | _connection_tokens(pairs) | {name.lower() for name in extra}
    out = [(name, value) for name, value in pairs if name.lower() not in drop]
    out.extend(extra.items())
    if key is not None:
        out.append(("authorization", f"Bearer {key}"))
    return out


def client_response_headers(upstream_headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's end-to-end headers (status, content type, rate limits). Its request id
    comes back as ``x-upstream-request-id``: ``x-request-id`` is Hugind's own, the one its
    logs carry."""
    pairs = list(upstream_headers)
    drop = _DROP_RESPONSE | _connection_tokens(pairs)
    return [("x-upstream-request-id" if name.lower() == "x-request-id" else name, value)
            for name, value in pairs if name.lower() not in drop]


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    Values are clamped to ``[0, MAX_RETRY_AFTER_S]``; ``inf``, ``nan`` and junk count as absent.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            bounded = _bounded(float(ms) / 1000.0)
        except ValueError:
            bounded = None
        if bounded is not None:
            return bounded
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return _bounded(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as UTC
        when = when.replace(tzinfo=timezone.utc)
    return _bounded(when.timestamp() - (time.time() if now is None else now))
