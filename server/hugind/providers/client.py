"""One configured upstream: its routes, its keys and its httpx client."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import httpx

from hugind.config import ProviderConfig
from hugind.providers.breaker import CircuitBreaker
from hugind.providers.headers import upstream_request_headers
from hugind.providers.keys import Clock, KeyPool, KeyState
from hugind.providers.routing import Route, normalize_path
from hugind.providers.urls import upstream_url

#: RFC 9110 section 9.2.2: sending these twice has the effect of sending them once.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: The breaker trips after this many failed attempts in a row, or one per key if more.
MIN_BREAKER_FAILURES = 3

_MULTIPART_MODEL = re.compile(
    rb'Content-Disposition:[^\r\n]*name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]{1,512})\r\n',
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ForwardRequest:
    """What the client sent, ready to be replayed against any provider.

    Attributes:
        method: HTTP method.
        path: the request path as received, percent-encoding intact (``/v1/images/edits``
            or ``/images/edits``).
        query: the raw query string, without ``?``.
        headers: the client's headers (hop-by-hop and credentials are dropped later).
        body: the raw body, replayed unchanged on every attempt except for a model rename.
        client_keys: values of the providers' ``client_key_header`` headers (lower-cased
            names), taken out of ``headers``; never printed.
    """

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client_keys: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The request's own keys, scrubbed from what Hugind relays or says."""
        return tuple(self.client_keys.values())

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value.lower()
        return ""


def model_from_body(body: bytes, content_type: str) -> str | None:
    """The ``model`` field of a JSON or multipart body, or ``None``."""
    content_type = content_type.lower()
    if "multipart/form-data" in content_type:
        match = _MULTIPART_MODEL.search(body)
        return match.group(1).decode("utf-8", "replace") if match else None
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def rename_model(body: bytes, content_type: str, upstream_model: str) -> bytes:
    """``body`` with its ``model`` field set to ``upstream_model`` (JSON or multipart)."""
    if "multipart/form-data" in content_type.lower():
        match = _MULTIPART_MODEL.search(body)
        if match is None:
            return body
        start, end = match.span(1)
        return body[:start] + upstream_model.encode() + body[end:]
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or "model" not in data:
        return body
    data["model"] = upstream_model
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class Provider:
    """A provider from the config, with its key pool and a pooled httpx client.

    Args:
        config: the provider's config; keys are read from it (and its key files) once, here.
        transport: an httpx transport to use instead of the network (tests).
        clock: monotonic clock for key cooldowns.
    """

    def __init__(
        self, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = config.name
        self.config = config
        self.route = Route.from_config(config.models, config.endpoints)
        keys = config.all_api_keys()
        self.pool = KeyPool(keys, config.cooldown_s, clock)
        # Long extra header values may be credentials too (Azure's ``api-key``).
        self._header_secrets = tuple(v for v in config.headers.values() if len(v) >= 16)
        self.breaker = CircuitBreaker(
            config.breaker_failures or max(len(self.pool), MIN_BREAKER_FAILURES),
            config.breaker_open_s, clock,
        )
        self._base_url = httpx.URL(config.base_url.rstrip("/"))
        t = config.timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.read_s,
                                  pool=t.connect_s),
            transport=transport,
            follow_redirects=False,
        )

    def request_key(self, request: ForwardRequest) -> KeyState | None:
        """The key the request brought for this provider (``client_key_header``), if any."""
        header = self.config.client_key_header
        key = request.client_keys.get(header.lower()) if header else None
        return KeyState(key, id="request", source="request") if key else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every key of the pool (YAML and runtime) and long extra header values."""
        keys = tuple(s.key for s in self.pool.states if s.key is not None)
        return keys + self._header_secrets

    @property
    def max_attempts(self) -> int:
        return 1 + self.config.max_retries

    def url_for(self, path: str, query: str) -> httpx.URL:
        """``base_url`` (which includes ``/v1``, as in the OpenAI SDK) plus the endpoint.

        Raises:
            InvalidRequestError: ``path`` would leave ``base_url`` (a ``.``/``..`` segment).
        """
        return upstream_url(self._base_url, normalize_path(path), query)

    def may_retry_after_start(self, method: str) -> bool:
        """Whether a request may be sent again once the upstream may have started on it."""
        return self.config.retry_reads or method.upper() in IDEMPOTENT_METHODS

    async def send(self, request: ForwardRequest, body: bytes, key: str | None) -> httpx.Response:
        """Send one attempt and return once the status and headers are in (body unread)."""
        upstream = self.client.build_request(
            request.method,
            self.url_for(request.path, request.query),
            headers=upstream_request_headers(request.headers, key, self.config.headers),
            content=body or None,
        )
        return await self.client.send(upstream, stream=True)

    async def aclose(self) -> None:
        await self.client.aclose()
