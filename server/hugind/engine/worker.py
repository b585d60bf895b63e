"""One thread owns one llama.cpp context: its inbox, its scheduler, and a supervisor that
rebuilds both when the thread's loop dies.

Threading contract: ``ModelWorker`` methods without a leading underscore are called from the
event loop thread and only touch the inbox (a thread-safe queue), the waiting counter (under a
lock) and ``Job.cancelled``. Everything else, the context, the slots, the scheduler and the
session store, is used by the worker thread alone (see ``Scheduler`` for its helper pools).

If the loop raises (a fault no single job owns), every job and every pending call fails at once
with 503, the model shows ``restarting``, and the context is rebuilt after a backoff; sessions
come back from the disk tier. A model that cannot be loaded at all is ``failed``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from hugind.engine.chunking import QUANTUM
from hugind.engine.counters import Counters
from hugind.engine.jobs import Job, JobState
from hugind.engine.ports import Context
from hugind.engine.scheduler import Scheduler
from hugind.engine.slots import SlotTable
from hugind.engine.types import FinishReason, TokenEvent
from hugind.errors import InvalidRequestError, OverloadedError, QueueFullError
from hugind.sessions import DiskTier, SnapshotStore, StoreStats, canonical

log = logging.getLogger(__name__)

_STOP = object()
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def _restarting(name: str) -> OverloadedError:
    return OverloadedError(f"model '{name}' is restarting after an engine fault; retry shortly",
                           code="model_restarting", headers={"Retry-After": "2"})


class ModelWorker:
    """Owns a context on its own thread; see the module docstring."""

    def __init__(self, name: str, factory: Callable[[], Context], *, max_queue: int,
                 store_factory: Callable[[Context], SnapshotStore | None],
                 on_state: Callable[[str, str | None], None],
                 queue_timeout_s: float = 0.0, burst_wait_s: float = 0.0,
                 backoff_s: tuple[float, ...] = RESTART_BACKOFF_S) -> None:
        self.name = name
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.burst_wait_s = burst_wait_s
        self.counters = Counters()
        self.ctx: Context | None = None
        self.epoch = 0  # bumped on every restart; a job of an older epoch is failed
        self._factory = factory
        self._store_factory = store_factory
        self._on_state = on_state
        self._backoff_s = backoff_s
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._n_waiting = 0
        self._accepting = True
        self._sched: Scheduler | None = None
        self._store: SnapshotStore | None = None
        self._resident: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name=f"hugind-{name}", daemon=True)
        self.ready = threading.Event()

    # -- event-loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Job) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue all of ``jobs`` or none of them."""
        if len(jobs) > self.max_queue:
            raise InvalidRequestError(
                f"this request needs {len(jobs)} generations (n x prompts, or best_of) but "
                f"model '{self.name}' queues at most {self.max_queue}", param="n")
        with self._lock:
            if not self._accepting:
                raise _restarting(self.name)
            if self._n_waiting + len(jobs) > self.max_queue:
                raise QueueFullError(self.name, self.max_queue)
            self._n_waiting += len(jobs)
            for job in jobs:
                job.epoch = self.epoch
        for job in jobs:
            self._inbox.put(job)

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self._dequeued(job)  # a job still waiting leaves the queue's count at once
        self._inbox.put(None)  # wake the worker: it drops the job from wherever it is

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the worker thread between two steps."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self._thread.is_alive():
            fut.set_exception(_restarting(self.name))
            return fut
        self._inbox.put((fn, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    @property
    def shared_disk(self) -> DiskTier | None:
        """The disk tier when several replicas share it (``sessions.shared``)."""
        store = self._store
        disk = store.disk if store is not None else None
        return disk if disk is not None and disk.shared else None

    def stats(self) -> dict[str, Any]:
        store = self._store.stats() if self._store else None
        sched = self._sched
        return {
            "active_sequences": len(sched.active) if sched else 0,
            "queue_depth": self._n_waiting,
            "slots": len(self._resident),
            "resident_sessions": sum(1 for r in self._resident if r["name"]),
            **asdict(store or StoreStats(0, 0, 0, 0, 0)),
            **self.counters.__dict__,
        }

    def busy(self) -> int:
        """Jobs queued or running (read from any thread)."""
        sched = self._sched
        return self._n_waiting + (len(sched.active) if sched is not None else 0)

    def _dequeued(self, job: Job) -> None:
        with self._lock:
            if job.counted:
                job.counted = False
                self._n_waiting -= 1

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            try:
                sched = self._build()
            except Exception as exc:  # noqa: BLE001 - a load failure marks the model
                if not self.ready.is_set():
                    log.error("model %s failed to load: %s", self.name, exc)
                    self._on_state("failed", str(exc))
                    self._fail_inbox(exc)
                    return
                log.error("model %s could not be rebuilt: %s", self.name, exc)
                if not self._back_off(failures):
                    return
                failures += 1
                continue
            with self._lock:
                self._accepting = True
            self._on_state("ready", None)
            self.ready.set()
            started = time.monotonic()
            try:
                self._serve(sched)
            except BaseException:
                log.exception("the worker loop of model %s failed; restarting it", self.name)
                self._crashed(sched)
                if time.monotonic() - started > 60:
                    failures = 0  # it ran a while: not a crash loop
                if not self._back_off(failures):
                    return
                failures += 1
                continue
            self._shutdown(sched)
            return

    def _build(self) -> Scheduler:
        ctx = self._factory()
        try:
            store = self._store_factory(ctx)
        except BaseException:
            ctx.close()
            raise
        self.ctx, self._store = ctx, store
        min_chunk = max(QUANTUM, ctx.min_chunk)
        slots = SlotTable(ctx, store, self.counters, min_chunk=min_chunk)
        self._sched = Scheduler(self.name, ctx, slots, self.counters, dequeued=self._dequeued,
                                wake=lambda: self._inbox.put(None),
                                queue_timeout_s=self.queue_timeout_s)
        self._resident = slots.resident()
        return self._sched

    def _serve(self, sched: Scheduler) -> None:
        # Block on the inbox only with nothing to do: jobs waiting for the slots of the
        # streams that just ended start at once, not when the next item happens to arrive.
        while True:
            idle = not sched.busy
            if not self._drain(sched, block=not (sched.runnable or sched.admissible)):
                return
            if idle and sched.waiting and not self._gather(sched):
                return
            sched.admit()
            sched.collect_drawn()
            if sched.runnable:
                sched.step()
            sched.slots.persist_idle()
            self._resident = sched.slots.resident()

    def _drain(self, sched: Scheduler, *, block: bool) -> bool:
        """Take everything in the inbox (waiting for the first item if ``block``); False once
        told to stop."""
        try:
            item = self._inbox.get(timeout=1.0) if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while self._take(sched, item):
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True
        return False

    def _gather(self, sched: Scheduler) -> bool:
        """A request reached an idle model: take the ones arriving right behind it (until
        none came for ``burst_wait_s``, at most four times that, or until every slot has one)
        before any prompt is read. A burst's requests reach the worker a few milliseconds
        apart, each parsed in turn on the event loop; started alone, the first stream would
        be held up on its next step by the others' prompts, read together after it (on two
        CPU cores: ~100 ms for its prompt, then ~230 ms before its second token for three
        more), and it would stay a token ahead to the end, so the requests queued behind the
        burst would join one step apart too. False once told to stop."""
        wait = self.burst_wait_s
        deadline = time.monotonic() + 4 * wait
        while len(sched.waiting) < sched.ctx.n_seq:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                item = self._inbox.get(timeout=min(wait, left))
            except queue.Empty:
                return True
            if not self._take(sched, item):
                return False
        return True

    def _take(self, sched: Scheduler, item: Any) -> bool:
        """Handle one inbox item; False if it is the stop."""
        if item is _STOP:
            return False
        if isinstance(item, Job):
            if item.cancelled:
                item.state = JobState.DONE
                if item.sampler is not None:
                    item.sampler.close()
            else:
                sched.waiting.append(item)
        elif isinstance(item, tuple):
            fn, fut = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    fut.set_exception(exc)
        return True

    def _crashed(self, sched: Scheduler) -> None:
        """Fail everything in flight, then free the context (its KV may be inconsistent, so
        no sequence is snapshotted; RAM snapshots and the disk tier are kept)."""
        self.counters.restarts += 1
        with self._lock:
            self._accepting = False
            self.epoch += 1
        self._on_state("restarting", "the engine worker failed and is being rebuilt")
        err = _restarting(self.name)
        sched.fail_all(err)
        self._fail_queued(err)
        try:
            sched.close()
            if self._store is not None:
                self._store.flush_to_disk()
        except Exception:
            log.exception("could not save sessions of model %s while restarting", self.name)
        self._close_ctx()

    def _close_ctx(self) -> None:
        ctx, self.ctx, self._sched = self.ctx, None, None
        if ctx is not None:
            try:
                ctx.close()
            except Exception:
                log.exception("could not free the context of model %s", self.name)

    def _back_off(self, failures: int) -> bool:
        """Wait before a rebuild, failing whatever arrives; False if told to stop."""
        deadline = time.monotonic() + self._backoff_s[min(failures, len(self._backoff_s) - 1)]
        err = _restarting(self.name)
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if item is _STOP:
                return False
            self._fail_item(item, err)
        return True

    def _fail_queued(self, err: Exception) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                self._inbox.put(_STOP)  # seen again by the back-off wait
                return
            self._fail_item(item, err)

    def _fail_item(self, item: Any, err: Exception) -> None:
        if isinstance(item, Job):
            self._dequeued(item)
            item.state = JobState.DONE
            if item.sampler is not None:
                item.sampler.close()
            item.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=err))
        elif isinstance(item, tuple):
            item[1].set_exception(err)

    def _fail_inbox(self, exc: Exception) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            self._fail_item(item, exc)

    def _shutdown(self, sched: Scheduler) -> None:
        try:
            sched.close()
            sched.slots.save_all()
            if self._store is not None:
                self._store.close()
        except OSError as exc:
            log.warning("could not persist sessions for %s: %s", self.name, exc)
        self._close_ctx()

    # -- sessions (called through ``call``) --------------------------------------------------

    def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        return self._sched.slots.list_sessions(tenant) if self._sched else []

    def delete_session(self, tenant: str, name: str) -> bool:
        return self._sched.slots.delete_session(tenant, name) if self._sched else False

    def export_session(self, tenant: str, name: str) -> tuple[list[int], bytes] | None:
        return self._sched.slots.export_session(tenant, name) if self._sched else None

    def import_session(self, tenant: str, name: str, tokens: list[int], data: bytes) -> bool:
        return self._sched.slots.import_session(tenant, name, tokens, data) \
            if self._sched else False

    def pin_session(self, tenant: str, name: str, *, pinned: bool) -> bool:
        return self._sched.slots.pin_session(tenant, name, pinned=pinned) \
            if self._sched else False

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """What the model's session files are written for (None: sessions are off). Set once
        the context is built; read from any thread."""
        store = self._store
        disk = store.disk if store is not None else None
        return canonical(disk.fingerprint) if disk is not None else None
