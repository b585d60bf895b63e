"""Composition root: config + engine (+ providers) -> a Litestar app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar

from hugind import __version__
from hugind.api.access import access_log
from hugind.api.admin import ADMIN_HANDLERS
from hugind.api.auth import auth_guard
from hugind.api.chat import chat_completions
from hugind.api.completions import completions
from hugind.api.cors import cors_config
from hugind.api.disconnect import cancel_on_disconnect
from hugind.api.draining import track_in_flight
from hugind.api.embeddings import embeddings
from hugind.api.handlers import to_openai_error
from hugind.api.health import health, health_live, health_ready
from hugind.api.messages import MESSAGES_HANDLERS
from hugind.api.models import get_model, list_models
from hugind.api.openapi import openapi_json
from hugind.api.prometheus import metrics
from hugind.api.reload import install_sighup
from hugind.api.request_id import request_ids
from hugind.api.responses import RESPONSES_HANDLERS
from hugind.api.runtime import Runtime
from hugind.api.schema_check import add_relaxed_header
from hugind.api.session_warm import warm_session
from hugind.api.sessions import (
    delete_session,
    export_session,
    get_session,
    import_session,
    list_sessions,
    pin_session,
    session_stats,
    unpin_session,
)
from hugind.api.settings import Live, Settings
from hugind.api.sticky import add_session_header
from hugind.api.throttle import add_ratelimit_headers, rate_limit_guard
from hugind.api.tokenize import detokenize, render_chat, tokenize
from hugind.config import Config
from hugind.engine.interface import Engine

log = logging.getLogger(__name__)

NATIVE_HANDLERS = [
    health, health_live, health_ready, metrics,
    list_models, get_model, chat_completions, completions, embeddings, tokenize,
    detokenize, render_chat, list_sessions, session_stats, get_session, delete_session,
    export_session, import_session, pin_session, unpin_session, warm_session,
    openapi_json, *ADMIN_HANDLERS, *RESPONSES_HANDLERS, *MESSAGES_HANDLERS,
]


def create_app(config: Config, *, engine: Engine | None = None,
               base_dir: Path | None = None, config_path: Path | None = None) -> Litestar:
    """Build the app. Without ``engine`` a ``LocalEngine`` for ``config.models`` is made and
    started with the app (models load on their worker threads; /health says when ready).
    With ``config_path``, SIGHUP re-reads that file (keys, limits, providers)."""
    owned = engine is None
    live = Live(Settings.from_config(config), base_dir or Path.cwd())
    if engine is None:
        from hugind.engine.local import LocalEngine

        engine = LocalEngine(config, base_dir=base_dir)
    runtime = Runtime(engine=engine, fingerprint=f"hugind-{__version__}")
    handlers: list[Any] = list(NATIVE_HANDLERS)
    provider_router = None
    if config.providers:
        from hugind.api.forward import forward_route_handlers, forward_to_provider
        from hugind.api.provider_keys import provider_admin_handlers
        from hugind.api.provider_swap import LiveRouter
        from hugind.providers import ProviderRouter
        from hugind.providers.state import open_state

        # Local names come from the engine (an injected one may serve other models than the
        # config lists); a local name is never forwarded nor listed as remote.
        local_names = {n for m in engine.models() for n in (m.id, *m.aliases)}
        local_names |= {n for m in config.models for n in m.names}
        # Through a LiveRouter, so a SIGHUP can swap providers under running relays.
        # Runtime keys and the activity log outlive reloads (via LiveRouter) and, for a served
        # app (a base_dir or config_path), restarts; an app embedded bare keeps them in memory.
        persist = base_dir is not None or config_path is not None
        state = open_state(config, live.base_dir if persist else None)
        router = provider_router = LiveRouter(
            ProviderRouter(list(config.providers), local_names, activity=state.activity,
                           keystore=state.keystore), local_names)
        live.providers = router

        async def forward(request: Any, model: str) -> Any:
            return await forward_to_provider(request, router, await request.body(), model)

        runtime.forwarder = forward
        runtime.remote_models = provider_router.remote_models
        handlers += forward_route_handlers(provider_router)
        handlers += provider_admin_handlers(provider_router)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if owned:
            engine.start()  # type: ignore[attr-defined]
        remove_sighup = install_sighup(live, config_path) if config_path is not None else None
        try:
            yield
        finally:
            if remove_sighup is not None:
                remove_sighup()
            if provider_router is not None:
                await provider_router.aclose()
            if owned:
                await asyncio.to_thread(engine.close)

    app = Litestar(
        route_handlers=handlers,
        exception_handlers={Exception: to_openai_error},
        guards=[auth_guard, rate_limit_guard],
        before_send=[add_ratelimit_headers, add_relaxed_header, add_session_header],
        middleware=[track_in_flight, cancel_on_disconnect],
        cors_config=cors_config(list(config.server.cors_origins)),
        request_max_body_size=config.server.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )
    # Litestar runs app middleware for matched routes only: wrap its whole handler so 404s,
    # 405s and CORS preflights get a request id and an access line too.
    app.asgi_handler = request_ids(access_log(app.asgi_handler))
    app.state.runtime = runtime
    app.state.live = live
    app.state.config = config
    return app
