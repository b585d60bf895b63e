"""One thread owns one embedding context; requests reach it through a bounded queue.

Threading contract: ``submit`` is called from the event loop; the ``Embedder`` is touched only
by the worker thread. A request whose future is cancelled (its client left) stops counting
against the queue at once and is skipped when its turn comes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from hugind.errors import QueueFullError
from hugind.llama import Embedder

log = logging.getLogger(__name__)

_STOP = object()


class EmbeddingWorker:
    def __init__(self, name: str, factory: Callable[[], Embedder],
                 on_state: Callable[[str, str | None], None], *, max_queue: int = 64) -> None:
        self.name = name
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._queued = 0
        self.embedder: Embedder | None = None
        self._factory = factory
        self._on_state = on_state
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"hugind-{name}", daemon=True)
        self.ready = threading.Event()
        self.requests = 0
        self.inputs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return self._queued

    def submit(self, inputs: list[list[int]]) -> concurrent.futures.Future[list[np.ndarray]]:
        with self._lock:
            if self._queued >= self.max_queue:
                raise QueueFullError(self.name, self.max_queue)
            self._queued += 1
        fut: concurrent.futures.Future[list[np.ndarray]] = concurrent.futures.Future()
        fut.add_done_callback(self._left)  # done, failed or cancelled: it no longer waits
        self._inbox.put((inputs, fut))
        return fut

    def _left(self, fut: concurrent.futures.Future[list[np.ndarray]]) -> None:
        with self._lock:
            self._queued -= 1

    def _run(self) -> None:
        try:
            self.embedder = self._factory()
        except Exception as exc:  # noqa: BLE001 - any load failure marks the model failed
            log.error("embedding model %s failed to load: %s", self.name, exc)
            self._on_state("failed", str(exc))
            self._drain_failing(exc)
            return
        self._on_state("ready", None)
        self.ready.set()
        while True:
            item = self._inbox.get()
            if item is _STOP:
                break
            inputs, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self.embedder.embed(inputs))
                self.requests += 1
                self.inputs += len(inputs)
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                fut.set_exception(exc)
        self.embedder.close()

    def _drain_failing(self, exc: Exception) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            if item[1].set_running_or_notify_cancel():
                item[1].set_exception(exc)
