"""``ProviderRouter``: the one object the API layer talks to about remote providers."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import anyio
import httpx

from hugind.config import ConfigError, ProviderConfig
from hugind.errors import ConflictError, InvalidRequestError, ModelNotFoundError, NotFoundError
from hugind.providers.activity import ActivityLog
from hugind.providers.client import ForwardRequest, Provider
from hugind.providers.failover import Failover, Sleep
from hugind.providers.key_admin import KeyAdmin, apply_stored
from hugind.providers.keys import Clock
from hugind.providers.keystore import KeyStore
from hugind.providers.response import UpstreamResponse
from hugind.providers.routing import is_native_endpoint, normalize_path, select
from hugind.providers.urls import check_path


class ProviderRouter:
    """Routes non-local models and non-native endpoints to providers, with key failover.

    Args:
        configs: the ``providers`` section, in the order providers are tried.
        native_model_ids: ids and aliases of local models; these are never forwarded.
        transport: an httpx transport for every provider instead of the network (tests).
        clock: monotonic clock for key cooldowns and circuit breakers (tests).
        max_events: how many activity-log events are kept (when ``activity`` is not given).
        sleep: awaited for each backoff between attempts (tests).
        jitter: ``[0, 1)`` source for the backoff jitter (tests).
        activity: the activity log to record into (a reload hands the old router's on).
        keystore: runtime keys and selections, applied to the pools here; without one the
            key-management methods refuse.

    Threading: create and use it on the server's event loop; call :meth:`aclose` on shutdown.
    """

    def __init__(
        self, configs: Iterable[ProviderConfig], native_model_ids: Iterable[str] = (), *,
        transport: httpx.AsyncBaseTransport | None = None, clock: Clock = time.monotonic,
        max_events: int = 10_000, sleep: Sleep = anyio.sleep,
        jitter: Callable[[], float] = random.random, activity: ActivityLog | None = None,
        keystore: KeyStore | None = None,
    ) -> None:
        self._providers: list[Provider] = []
        for i, config in enumerate(configs):
            try:
                self._providers.append(Provider(config, transport=transport, clock=clock))
            except ConfigError as exc:  # an unreadable key file: name it as the YAML does
                raise ConfigError(f"providers[{i}].{exc.key_path}", exc.message) from None
        self._native = frozenset(native_model_ids)
        self._log = activity if activity is not None else ActivityLog(max_events)
        self.keystore = keystore
        if keystore is not None:
            for provider in self._providers:
                apply_stored(provider, keystore)
        # Lower-cased client_key_header names: read into ForwardRequest, never sent upstream.
        self._key_headers = frozenset(h.lower() for p in self._providers
                                      if (h := p.config.client_key_header))
        self._failover = Failover(self._log, self._secrets(), sleep=sleep, jitter=jitter)

    def _secrets(self) -> tuple[str, ...]:
        return tuple(k for p in self._providers for k in p.secrets)

    def _refresh_secrets(self) -> None:
        self._failover.secrets = self._secrets()

    @property
    def activity_log(self) -> ActivityLog:
        return self._log

    @property
    def keys(self) -> KeyAdmin:
        """Runtime key management (the admin API).

        Raises:
            ConflictError: the router was built without a key store.
        """
        if self.keystore is None:
            raise ConflictError("Runtime key management is off on this server",
                                code="key_store_off")
        return KeyAdmin({p.name: p for p in self._providers}, self.keystore, self._log,
                        self._refresh_secrets)

    @property
    def providers(self) -> list[Provider]:
        return list(self._providers)

    def serves_model(self, model: str) -> bool:
        """Whether ``model`` is not local and some provider's model rules match it."""
        if model in self._native:
            return False
        return any(p.route.upstream_model(model) is not None for p in self._providers)

    def takes_endpoint(self, path: str) -> bool:
        """Whether some provider takes ``path`` (a non-native endpoint) regardless of model."""
        return any(p.route.takes_endpoint(path) for p in self._providers)

    def remote_models(self) -> list[tuple[str, str]]:
        """``(model id, provider name)`` for every exact id in the config, first provider wins.

        Globs and prefixes cannot be listed; local ids are left out (local wins).
        """
        seen: set[str] = set(self._native)
        out: list[tuple[str, str]] = []
        for provider in self._providers:
            for model in provider.route.exact_models():
                if model not in seen:
                    seen.add(model)
                    out.append((model, provider.name))
        return out

    async def forward(
        self, method: str, path: str, query: str, headers: Iterable[tuple[str, str]],
        body: bytes, model: str | None = None,
    ) -> UpstreamResponse:
        """Send the request to the first provider that answers usably.

        Args:
            method: HTTP method.
            path: the request path as received (percent-encoding intact), with or without
                ``/v1``; it is routed decoded and forwarded as it came.
            query: raw query string without ``?``.
            headers: the client's headers; credentials and hop-by-hop headers are not forwarded.
            body: the raw body, forwarded unchanged (JSON, multipart or binary) except that a
                prefix rule (``openai/``) renames ``model``.
            model: the requested model, if the request names one.

        Returns:
            The upstream answer; iterate it to relay the body, it closes itself at the end.

        Raises:
            InvalidRequestError: ``path`` holds a ``.``/``..`` segment, raw or encoded (400).
            ModelNotFoundError: a native endpoint for a model no provider serves.
            NotFoundError: no provider takes this endpoint, or it is local-only for ``model``.
            UpstreamError: every key of every candidate failed (502).
            UpstreamTimeoutError: every attempt timed out (504).
            OverloadedError: every candidate provider is tripped (503 with ``Retry-After``).
        """
        check_path(path)
        # Routed (and named in errors) decoded; bytes that are not UTF-8 show as U+FFFD.
        route_path = unquote(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if model is not None and model in self._native and not is_native_endpoint(route_path):
            raise NotFoundError(
                f"'{model}' is a local model and /v1/{normalize_path(route_path)} is not served "
                "locally", param="model",
            )
        picked = select([p.route for p in self._providers], route_path, model)
        if not picked:
            raise self._no_route(method, route_path, model)
        sent, client_keys = self._split_key_headers(headers)
        request = ForwardRequest(method.upper(), path, query, sent, body, client_keys)
        candidates = [(self._providers[i], name) for i, name in picked]
        return await self._failover.run(candidates, request, model)

    def _split_key_headers(
        self, headers: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The headers to forward, and the ``client_key_header`` values taken out of them."""
        sent: list[tuple[str, str]] = []
        keys: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in self._key_headers:
                if value.strip():
                    keys[lower] = value.strip()
            else:
                sent.append((name, value))
        return sent, keys

    @staticmethod
    def _no_route(method: str, path: str, model: str | None) -> Exception:
        if is_native_endpoint(path):
            if model is None:
                return InvalidRequestError("you must provide a model parameter", param="model")
            return ModelNotFoundError(model)
        return NotFoundError(
            f"Unknown path: {method.upper()} /v1/{normalize_path(path)} (not served locally, "
            "and no provider takes it)", code="unknown_url",
        )

    def activity(
        self, limit: int | None = None, provider: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Events, oldest first; keys appear only as fingerprints. ``filters`` go to
        :meth:`ActivityLog.events` (``action``, ``since``, ``until``, ``actions_only``)."""
        return self._log.events(limit, provider, **filters)

    def key_states(self) -> list[dict[str, Any]]:
        """Each key of each provider, by fingerprint, with its cooldown and counters."""
        return [{"provider": p.name, **state} for p in self._providers
                for state in p.pool.describe()]

    def describe(self) -> list[dict[str, Any]]:
        """Providers as configured (no keys), for the admin endpoint."""
        return [
            {
                "name": p.name,
                "base_url": p.config.base_url,
                "models": list(p.config.models),
                "endpoints": p.config.endpoints,
                "keys": p.pool.describe(),
                "breaker": p.breaker.describe(),
            }
            for p in self._providers
        ]

    async def aclose(self) -> None:
        """Close every provider's connection pool."""
        for provider in self._providers:
            await provider.aclose()
