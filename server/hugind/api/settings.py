"""The settings in force (keys, admin keys, rate limits, flags) and what outlives a reload.

Handlers and guards read ``Live.of(connection).settings`` on every request, so a SIGHUP swap
(:mod:`hugind.api.reload`) takes effect at the next request while running ones keep going.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hugind.api.keys import ANONYMOUS, KeyChecker, tenant_of
from hugind.api.ratelimit import RateLimiter
from hugind.config import Config, RateLimitConfig
from hugind.sysstats import SystemMonitor

if TYPE_CHECKING:
    from hugind.api.provider_swap import LiveRouter


def merged_limits(override: RateLimitConfig | None, default: RateLimitConfig) -> RateLimitConfig:
    """A key's override, each unset field taken from ``server.rate_limits``."""
    if override is None:
        return default
    return RateLimitConfig(**{
        name: value if (value := getattr(override, name)) is not None else getattr(default, name)
        for name in RateLimitConfig.__struct_fields__
    })


@dataclass(frozen=True)
class Settings:
    """One config's reloadable part, built once per (re)load; immutable."""

    config: Config
    clients: KeyChecker
    admins: KeyChecker
    limits: dict[str, RateLimitConfig]  # tenant -> its limits, for keys with an override

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        """Raises:
            ConfigError: a key file cannot be read or holds no key.
        """
        keys = config.server.client_keys()
        default = config.server.rate_limits
        limits = {tenant_of(key): merged_limits(override, default)
                  for key, override in keys if override is not None}
        return cls(config=config, clients=KeyChecker([k for k, _ in keys]),
                   admins=KeyChecker(config.server.all_admin_keys()), limits=limits)

    def limits_for(self, tenant: str) -> RateLimitConfig:
        """The limits of ``tenant`` (``ANONYMOUS`` gets ``server.rate_limits`` as one key)."""
        if tenant != ANONYMOUS and tenant in self.limits:
            return self.limits[tenant]
        return self.config.server.rate_limits


@dataclass
class Live:
    """The settings in force plus the state kept across reloads (limiter windows, providers).

    Threading: read and swapped on the server's event loop only.
    """

    settings: Settings
    base_dir: Path
    limiter: RateLimiter = field(default_factory=RateLimiter)
    providers: LiveRouter | None = None
    system: SystemMonitor = field(default_factory=SystemMonitor)

    @staticmethod
    def of(connection: Any) -> Live:
        return connection.app.state.live  # type: ignore[no-any-return]

    def folders(self) -> dict[str, Path]:
        """The models and sessions folders, resolved as the engine resolves them."""
        config = self.settings.config
        return {"models": self.base_dir / config.models_dir,
                "sessions": self.base_dir / config.sessions.dir}
