"""The provider router in force, swapped by a config reload without cutting relays.

A reload builds a new :class:`ProviderRouter` and swaps it in; requests already relayed by the
old one keep its connection pools, which close once the last of those responses is closed. The
new router gets the old one's activity log and key store, so keys added through the admin API
(and the selected key) stay in force across reloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from hugind.config import ProviderConfig
from hugind.providers import ProviderRouter, UpstreamResponse
from hugind.providers.key_admin import KeyAdmin

log = logging.getLogger(__name__)


class LiveRouter:
    """Delegates to the current router and counts each router's open upstream responses.

    Threading: the server's event loop only.
    """

    def __init__(self, router: ProviderRouter, native_model_ids: Iterable[str]) -> None:
        self.current = router
        self._native = frozenset(native_model_ids)
        self._open: dict[int, int] = {}
        self._retired: dict[int, ProviderRouter] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def build(self, configs: list[ProviderConfig]) -> ProviderRouter:
        """A router for ``configs`` with the same local names, activity log and key store
        (raises ``ConfigError``)."""
        return ProviderRouter(configs, self._native, activity=self.current.activity_log,
                              keystore=self.current.keystore)

    def swap(self, router: ProviderRouter) -> None:
        old, self.current = self.current, router
        self._retired[id(old)] = old
        self._close_if_idle(old)

    async def forward(self, *args: Any, **kwargs: Any) -> UpstreamResponse:
        router = self.current
        key = id(router)
        self._open[key] = self._open.get(key, 0) + 1
        try:
            upstream = await router.forward(*args, **kwargs)
        except BaseException:
            self._done(router)
            raise
        upstream.on_close(lambda: self._done(router))
        return upstream

    def _done(self, router: ProviderRouter) -> None:
        key = id(router)
        self._open[key] = self._open.get(key, 1) - 1
        self._close_if_idle(router)

    def _close_if_idle(self, router: ProviderRouter) -> None:
        key = id(router)
        if key not in self._retired or self._open.get(key, 0) > 0:
            return
        del self._retired[key]
        self._open.pop(key, None)
        task = asyncio.get_running_loop().create_task(router.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        log.debug("closed a replaced provider router")

    @property
    def retired(self) -> int:
        """Replaced routers still relaying (closed when their last response closes)."""
        return len(self._retired)

    def remote_models(self) -> list[tuple[str, str]]:
        return self.current.remote_models()

    def describe(self) -> list[dict[str, Any]]:
        return self.current.describe()

    def key_states(self) -> list[dict[str, Any]]:
        return self.current.key_states()

    def activity(self, limit: int | None = None, provider: str | None = None,
                 **filters: Any) -> list[dict[str, Any]]:
        return self.current.activity(limit, provider, **filters)

    @property
    def keys(self) -> KeyAdmin:
        return self.current.keys

    async def aclose(self) -> None:
        """Close the current router and any replaced one still open (shutdown)."""
        routers = [self.current, *self._retired.values()]
        self._retired.clear()
        for router in routers:
            await router.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
