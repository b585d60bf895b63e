"""Remote providers: routing, key failover and streaming passthrough to OpenAI-compatible APIs.

Independent of the HTTP framework and of the local engine (import-linter keeps it so): the API
layer hands it raw requests and relays the :class:`UpstreamResponse` it gets back.
"""

from __future__ import annotations

from hugind.providers.client import model_from_body
from hugind.providers.keys import fingerprint
from hugind.providers.response import UpstreamResponse
from hugind.providers.router import ProviderRouter
from hugind.providers.routing import is_native_endpoint, is_openai_path, normalize_path

__all__ = [
    "ProviderRouter",
    "UpstreamResponse",
    "fingerprint",
    "is_native_endpoint",
    "is_openai_path",
    "model_from_body",
    "normalize_path",
]
