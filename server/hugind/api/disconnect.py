"""Stop work for clients that have gone: an ASGI middleware that, between the end of a request's
body and the start of its response (a non-streaming completion generating, a request queued),
listens for the client's disconnect and cancels the handler. Cancelling it closes the engine
streams, which frees their sequences at the next step. Once the response has started, the
streaming response watches for the disconnect itself."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send


def cancel_on_disconnect(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        watcher: asyncio.Task[Any] | None = None
        handler: asyncio.Task[Any] | None = None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    if handler is not None:
                        handler.cancel()
                    return

        async def receive_body() -> Message:
            nonlocal watcher
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def send_response(message: Message) -> None:
            if message["type"] == "http.response.start" and watcher is not None:
                watcher.cancel()
            await send(message)

        handler = asyncio.ensure_future(app(scope, receive_body, send_response))
        try:
            await asyncio.shield(handler)
        except asyncio.CancelledError:
            if not gone:  # the server itself is cancelling this request
                handler.cancel()
                raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    return middleware
