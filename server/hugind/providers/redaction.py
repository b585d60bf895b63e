"""Keys out of everything Hugind says: messages, logs and relayed error bodies."""

from __future__ import annotations

import json
import re

_REASON_CHARS = 200
_TOKEN_RE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}|(?i:bearer)\s+[^\s\"',]+")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every configured key, and anything shaped like a key, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_RE.sub("[redacted]", text)


def redact_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode(), b"[redacted]")
    return body


def upstream_reason(body: bytes, secrets: tuple[str, ...]) -> str:
    """A short, key-free summary of an upstream error body."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or ""
        text = err if isinstance(err, str) else json.dumps(err)
    text = " ".join(redact(text, secrets).split())
    return text[:_REASON_CHARS] + ("..." if len(text) > _REASON_CHARS else "")
