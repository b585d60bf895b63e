"""When local models are in memory: loaded at start (``preload``) or by the first request
that names them, unloaded after ``ttl_s`` idle, on an admin call, or least-recently-used first
when ``server.max_loaded_models`` would be passed.

Threading contract: ``ensure_loaded`` runs on the event loop and only polls states; loads and
unloads run on threads (``asyncio.to_thread`` or the idle reaper) under the model's lock, so a
model is never loaded twice nor unloaded while it is being loaded.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from hugind.engine.handle import ModelHandle
from hugind.errors import ModelNotReadyError, OverloadedError

log = logging.getLogger(__name__)

_POLL_S = 0.05


def public_reason(exc: BaseException) -> str:
    """A load failure as clients may read it: file names kept, folders dropped."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s:'\"]+)+[\\/]([^\\/\s:'\"]+)", r"\1", text)


def settle_heap() -> None:
    """Move every object alive now (modules, the app, a model's vocabulary) out of the cyclic
    collector's reach. A full collection walks all tracked objects with the GIL held: in a
    loaded server one took 46 ms, every stream's tokens waiting behind it; after this it walks
    only what requests made since. Called once a model is loaded, not per request."""
    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Hand freed heap pages back to the OS, so an unload shows in the process's RSS (glibc
    keeps small freed blocks otherwise)."""
    gc.unfreeze()  # the unloaded model's cycles are among the frozen objects
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    gc.freeze()


class Lifecycle:
    """See the module docstring. ``spawn`` starts a handle's worker (which loads on its own
    thread and reports through the state callback); ``halt`` stops it and frees it."""

    def __init__(self, handles: Sequence[ModelHandle], *, spawn: Callable[[ModelHandle], None],
                 halt: Callable[[ModelHandle], None], max_loaded: int | None,
                 load_timeout_s: float, unload_grace_s: float) -> None:
        self._handles = list(handles)
        self._spawn = spawn
        self._halt = halt
        self.max_loaded = max_loaded
        self.load_timeout_s = load_timeout_s
        self.unload_grace_s = unload_grace_s
        self._admission = threading.Lock()  # one eviction decision at a time
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        for h in self._handles:
            if h.cfg.preload:
                self.load(h)
        if any(h.cfg.ttl_s > 0 for h in self._handles):
            self._reaper = threading.Thread(target=self._reap, name="hugind-idle-unload",
                                            daemon=True)
            self._reaper.start()

    def close(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(5)
        for h in self._handles:
            with h.lock:
                if h.worker is not None or h.embedder is not None:
                    self._halt(h)

    # -- transitions (blocking: call on a thread) -------------------------------------------

    def load(self, h: ModelHandle, *, retry_failed: bool = False) -> None:
        """Start loading ``h`` unless it is loaded or loading; evict LRU idle models first
        when the loaded count would pass ``max_loaded``."""
        with self._admission:
            if h.state == "failed" and retry_failed:
                self.unload(h, grace_s=0)
            if h.state != "unloaded":
                return
            self._make_room(h)
            with h.lock:
                if h.state != "unloaded":
                    return
                h.generation += 1
                h.state, h.error = "loading", None
                h.load_started = time.monotonic()
                self._spawn(h)

    def unload(self, h: ModelHandle, *, grace_s: float | None = None,
               idle_for_s: float | None = None) -> bool:
        """Stop serving ``h`` (new requests for it wait, then load it again), let its running
        requests finish for up to ``grace_s``, save its sessions and free its memory. With
        ``idle_for_s``, only if it is ready, has nothing running and was unused that long."""
        with h.lock:
            if h.state == "unloaded":
                return False
            if idle_for_s is not None and not (
                    h.state == "ready" and h.busy() == 0
                    and time.time() - (h.last_used or 0.0) >= idle_for_s):
                return False
            was_failed = h.state == "failed"
            h.state = "unloading"
            deadline = time.monotonic() + (self.unload_grace_s if grace_s is None else grace_s)
            while h.busy() > 0 and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            self._halt(h)
            h.generation += 1
            h.state = "unloaded"
            h.error = None
            h.loaded_since = None
        release_memory()
        if not was_failed:
            log.info("model %s unloaded", h.cfg.id)
        return True

    def _make_room(self, h: ModelHandle) -> None:
        if self.max_loaded is None:
            return
        while sum(1 for o in self._handles if o.loaded and o is not h) >= self.max_loaded:
            idle = [o for o in self._handles
                    if o is not h and o.state == "ready" and o.busy() == 0]
            if not idle:
                raise OverloadedError(
                    f"model '{h.cfg.id}' needs loading, but all {self.max_loaded} loaded "
                    f"models (server.max_loaded_models) are busy; retry shortly",
                    code="models_busy", headers={"Retry-After": "5"})
            victim = min(idle, key=lambda o: o.last_used or 0.0)
            log.info("unloading model %s (least recently used) to load %s", victim.cfg.id,
                     h.cfg.id)
            self.unload(victim, grace_s=0, idle_for_s=0)

    # -- the event-loop side ---------------------------------------------------------------

    async def ensure_loaded(self, h: ModelHandle, *, retry_failed: bool = False) -> None:
        """Return once ``h`` is ready (loading it if needed), failed or restarting (the
        caller's readiness check then answers); 503 past ``load_timeout_s``."""
        deadline = time.monotonic() + self.load_timeout_s
        while True:
            state = h.state
            if state == "ready":
                h.touch()  # so neither the reaper nor an eviction picks it right now
                return
            if state == "restarting" or (state == "failed" and not retry_failed):
                return
            if state in ("unloaded", "failed"):
                await asyncio.to_thread(self.load, h, retry_failed=retry_failed)
                retry_failed = False
                continue
            if time.monotonic() > deadline:
                raise ModelNotReadyError(
                    f"model '{h.cfg.id}' is still loading after {self.load_timeout_s:g} s "
                    "(server.load_timeout_s); retry shortly", headers={"Retry-After": "5"})
            await asyncio.sleep(_POLL_S)

    # -- idle unloads ------------------------------------------------------------------------

    def _reap(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            for h in self._handles:
                ttl = h.cfg.ttl_s
                if h.busy() > 0:
                    h.touch()  # idle time counts from the end of the last request
                    continue
                if (ttl > 0 and h.state == "ready" and h.busy() == 0
                        and now - (h.last_used or now) >= ttl):
                    log.info("model %s idle for %d s (ttl_s): unloading", h.cfg.id, ttl)
                    try:
                        self.unload(h, grace_s=0, idle_for_s=ttl)
                    except Exception:
                        log.exception("could not unload model %s", h.cfg.id)
