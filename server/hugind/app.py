"""Composition root: config + engine (+ providers) -> a Litestar app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig

from hugind import __version__
from hugind.api.auth import KeyChecker, auth_guard
from hugind.api.chat import chat_completions
from hugind.api.completions import completions
from hugind.api.disconnect import cancel_on_disconnect
from hugind.api.draining import track_in_flight
from hugind.api.embeddings import embeddings
from hugind.api.handlers import to_openai_error
from hugind.api.health import health
from hugind.api.models import get_model, list_models
from hugind.api.openapi import openapi_json
from hugind.api.runtime import Runtime
from hugind.api.sessions import delete_session, get_session, list_sessions, session_stats
from hugind.api.tokenize import detokenize, render_chat, tokenize
from hugind.config import Config
from hugind.engine.interface import Engine

log = logging.getLogger(__name__)

NATIVE_HANDLERS = [
    health, list_models, get_model, chat_completions, completions, embeddings, tokenize,
    detokenize, render_chat, list_sessions, session_stats, get_session, delete_session,
    openapi_json,
]


def create_app(config: Config, *, engine: Engine | None = None,
               base_dir: Path | None = None) -> Litestar:
    """Build the app. Without ``engine`` a ``LocalEngine`` for ``config.models`` is made and
    started with the app (models load on their worker threads; /health says when ready)."""
    owned = engine is None
    if engine is None:
        from hugind.engine.local import LocalEngine

        engine = LocalEngine(config, base_dir=base_dir)
    runtime = Runtime(engine=engine, fingerprint=f"hugind-{__version__}")
    handlers: list[Any] = list(NATIVE_HANDLERS)
    provider_router = None
    if config.providers:
        from hugind.api.forward import forward_route_handlers, forward_to_provider
        from hugind.providers import ProviderRouter

        # Local names come from the engine (an injected one may serve other models than the
        # config lists); a local name is never forwarded nor listed as remote.
        local_names = {n for m in engine.models() for n in (m.id, *m.aliases)}
        provider_router = ProviderRouter(
            list(config.providers), local_names | {n for m in config.models for n in m.names})
        router = provider_router

        async def forward(request: Any, model: str) -> Any:
            return await forward_to_provider(request, router, await request.body(), model)

        runtime.forwarder = forward
        runtime.remote_models = provider_router.remote_models
        handlers += forward_route_handlers(provider_router)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if owned:
            engine.start()  # type: ignore[attr-defined]
        try:
            yield
        finally:
            if provider_router is not None:
                await provider_router.aclose()
            if owned:
                await asyncio.to_thread(engine.close)

    cors = CORSConfig(allow_origins=list(config.server.cors_origins)) \
        if config.server.cors_origins else None
    app = Litestar(
        route_handlers=handlers,
        exception_handlers={Exception: to_openai_error},
        guards=[auth_guard],
        middleware=[track_in_flight, cancel_on_disconnect],
        cors_config=cors,
        request_max_body_size=config.server.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )
    app.state.runtime = runtime
    app.state.key_checker = KeyChecker([k for k, _ in config.server.client_keys()])
    app.state.config = config
    return app
