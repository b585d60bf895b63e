"""CORS: local pages by default (as Ollama), ``server.cors_origins`` adds more.

Litestar's own ``*`` matching turns ``http://localhost:*`` into ``http://localhost:.*``, which
also admits ``http://localhost:1@evil.example``-like strings; origins are matched with a regex
built here instead, where ``:*`` means "any port, or none".
"""

from __future__ import annotations

import re

from litestar.config.cors import CORSConfig

from hugind.config import DEFAULT_CORS_ORIGINS

#: Response headers a browser page may read: limits, retry hints, the request id.
EXPOSED_HEADERS = [
    "x-request-id", "retry-after", "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-session-id",
    "x-hugind-schema-relaxed",
]


def origin_pattern(origin: str) -> str:
    """A regex for one configured origin: exact, ``scheme://host:*`` (any port or none), and
    ``*`` inside the host for one run of host characters (``https://*.example.com``)."""
    origin = origin.rstrip("/")
    port = ""
    if origin.endswith(":*"):
        origin, port = origin[:-2], r"(?::[0-9]{1,5})?"
    parts = [re.escape(p) for p in origin.split("*")]
    return "(?:" + "[A-Za-z0-9.-]*".join(parts) + port + ")"


def cors_config(origins: list[str]) -> CORSConfig:
    """Preflights are answered by Litestar's middleware before routing, so without a key;
    requested headers (``authorization`` among them) are echoed back as allowed."""
    if "*" in origins:
        return CORSConfig(allow_origins=["*"], expose_headers=EXPOSED_HEADERS)
    wanted = list(dict.fromkeys([*DEFAULT_CORS_ORIGINS, *origins]))
    return CORSConfig(allow_origins=[], expose_headers=EXPOSED_HEADERS,
                      allow_origin_regex="|".join(origin_pattern(o) for o in wanted))
