"""Run the app under uvicorn with a graceful shutdown.

On SIGTERM or SIGINT the server drains: readiness turns 503 and new requests get 503 at once
(the listener stays open, so a balancer sees the 503s rather than refused connections), the
requests already running finish for up to ``server.shutdown_grace_s``, then whatever is left is
cancelled, the models are closed (sessions saved) and the process exits 0. A second signal
exits at once.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import time
from types import FrameType
from typing import Any

import uvicorn

from hugind.api.runtime import Runtime

log = logging.getLogger(__name__)

_CANCEL_AFTER_S = 2.0  # past the grace: how long cancelled requests get to unwind


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime, *, grace_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.grace_s = grace_s
        self._drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs inside whatever the main thread was doing: a fresh context
        # keeps that request's id off these log lines.
        contextvars.Context().run(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        # uvicorn would re-raise the signal after shutting down (exit status 143): not kept,
        # so a graceful stop exits 0.
        if self._drain_started is not None:
            log.warning("%s again: exiting now", signal.Signals(sig).name)
            self.force_exit = self.should_exit = True
            return
        self._drain_started = time.monotonic()
        rt = self.runtime
        log.info("%s: draining (%d requests running, up to %g s)", signal.Signals(sig).name,
                 rt.in_flight, self.grace_s)
        rt.draining = True
        rt.engine.drain()

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None and not self.should_exit:
            rt = self.runtime
            if rt.in_flight == 0 and rt.engine.busy() == 0:
                self.should_exit = True
            elif time.monotonic() - self._drain_started >= self.grace_s:
                log.warning("shutdown grace (%g s) over: cancelling %d requests",
                            self.grace_s, rt.in_flight)
                self.should_exit = True
        return await super().on_tick(counter)


def serve(app: Any, *, host: str, port: int, log_level: str, grace_s: float) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            log_config=None, timeout_graceful_shutdown=int(_CANCEL_AFTER_S))
    GracefulServer(config, app.state.runtime, grace_s=grace_s).run()
