"""SIGHUP: re-read the config file and put its keys, admin keys, limits, flags and providers in
force without a restart; running requests and streams keep what they started with.

A config that no longer loads is refused with the line ``hugind serve`` prints at start, and
the running one stays. Models, sessions, host and port need a restart: a change to them is
named in a warning and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import msgspec

from hugind.api.settings import Live, Settings
from hugind.config import Config, ConfigError, ServerConfig, load_config
from hugind.providers import ProviderRouter

log = logging.getLogger("hugind.reload")

#: ``server`` fields a reload applies; the others are read once at start.
RELOADABLE = frozenset({"api_keys", "api_key_files", "admin_keys", "admin_key_files",
                        "rate_limits", "metrics_public", "log_prompts"})


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    changed = [f"server.{name}" for name in ServerConfig.__struct_fields__
               if name not in RELOADABLE
               and getattr(old.server, name) != getattr(new.server, name)]
    changed += [name for name in ("models", "sessions", "models_dir")
                if getattr(old, name) != getattr(new, name)]
    return changed


def _load(path: Path, live: Live) -> tuple[Settings, ProviderRouter | None]:
    """The new settings and provider router (raises ``ConfigError``; changes nothing)."""
    config = load_config(path)
    old = live.settings.config
    changed = _restart_only_changes(old, config)
    if changed:
        log.warning("config reload: %s changed; that needs a restart and is ignored until then",
                    ", ".join(changed))
    # Only the reloadable parts change; the rest stays as started, for every reader.
    server = msgspec.structs.replace(
        old.server, **{name: getattr(config.server, name) for name in RELOADABLE})
    kept = msgspec.structs.replace(old, server=server, providers=config.providers)
    settings = Settings.from_config(kept)
    router = None
    if live.providers is not None:
        router = live.providers.build(list(config.providers))
    elif config.providers:
        log.warning("config reload: providers were added to a server started without any; "
                    "they need a restart")
    return settings, router


def reload_config(live: Live, path: Path) -> bool:
    """Apply the config at ``path``; ``False`` (and an error line) when it does not load."""
    loaded = _try_load(path, live)
    if loaded is None:
        return False
    _apply(live, path, *loaded)
    return True


def install_sighup(live: Live, path: Path) -> Callable[[], None]:
    """Reload on SIGHUP (POSIX); returns the function that removes the handler."""
    loop = asyncio.get_running_loop()
    if not hasattr(signal, "SIGHUP"):
        return lambda: None
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def run() -> None:
        async with lock:  # one reload at a time, in signal order
            # The file is read off the loop; the swap itself happens on it.
            settings_router = await asyncio.to_thread(_try_load, path, live)
            if settings_router is not None:
                _apply(live, path, *settings_router)

    def on_signal() -> None:
        task = loop.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_signal)
    except (RuntimeError, ValueError) as exc:  # not the main thread (an embedded server)
        log.warning("SIGHUP config reload is off: %s", exc)
        return lambda: None

    def remove() -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # the loop is already closed
            loop.remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()

    return remove


def _try_load(path: Path, live: Live) -> tuple[Settings, ProviderRouter | None] | None:
    try:
        return _load(path, live)
    except ConfigError as exc:
        log.error("hugind: config error: %s (reload refused; the running config stays)", exc)
        return None


def _apply(live: Live, path: Path, settings: Settings, router: ProviderRouter | None) -> None:
    live.settings = settings
    if router is not None and live.providers is not None:
        live.providers.swap(router)
    log.info("config reloaded from %s: %d client keys, %d admin keys, %d providers", path,
             len(settings.clients), len(settings.admins), len(settings.config.providers))
