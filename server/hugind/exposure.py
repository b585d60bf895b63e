"""Secure default: no open bind without keys. Without client keys anyone who reaches the port
can use the API (and, with providers set, relay through their keys), so only loopback."""

from __future__ import annotations

import ipaddress

from hugind.config import Config


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (also ``[::1]``); any other name or address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def open_bind_error(host: str, config: Config, *, insecure: bool = False) -> str | None:
    """The one-line refusal when ``host`` is reachable from outside and no client keys are
    set, else None. Reads key files (raises ``ConfigError`` as ``load_config`` would)."""
    if insecure or is_loopback(host) or config.server.client_keys():
        return None
    return (f"refusing to serve on {host} without API keys (anyone who reaches it could use "
            "it): set server.api_keys (e.g. [\"${HUGIND_API_KEY}\"]) or server.api_key_files, "
            "bind 127.0.0.1, or pass --insecure")
