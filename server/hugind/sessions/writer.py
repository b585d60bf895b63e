"""Write-behind: conversation snapshots reach the disk tier from a thread of their own, so a
crash loses at most the last ``delay_s`` (plus one write) of turns and no worker thread waits
on a disk.

Threading contract: ``put``, ``pending``, ``cancel`` and ``stats`` may be called from any
thread (the model's worker in practice); the writes happen on the writer's thread. A snapshot
waits ``delay_s`` before it is written, and a newer one of the same conversation replaces it
(coalesced per conversation). A failed write (disk full, read-only, removed) is counted, logged
once until a write succeeds again, and retried with backoff; the snapshot stays readable here
meanwhile. Pending bytes are bounded: past ``max_pending_bytes`` the oldest are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from hugind.sessions.disk import DiskTier
from hugind.sessions.store import Snapshot

log = logging.getLogger(__name__)

Key = tuple[str, str]
_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class _Item:
    snap: Snapshot
    due: float


class SnapshotWriter:
    def __init__(self, disk: DiskTier, *, delay_s: float, max_pending_bytes: int,
                 name: str = "sessions") -> None:
        self.disk = disk
        self.delay_s = delay_s
        self.max_pending_bytes = max_pending_bytes
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._pending: dict[Key, _Item] = {}  # insertion order: oldest first
        self._pending_bytes = 0
        self._in_flight: dict[Key, Snapshot] = {}
        self._cancelled: set[Key] = set()
        self._failing = 0  # consecutive failed writes
        self._closing = False
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name=f"hugind-{name}-writer",
                                        daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------------

    def put(self, snap: Snapshot) -> None:
        key = (snap.tenant, snap.name)
        with self._cond:
            old = self._pending.pop(key, None)
            if old is not None:
                self._pending_bytes -= old.snap.nbytes
            self._cancelled.discard(key)
            self._pending[key] = _Item(snap, time.monotonic() + self.delay_s)
            self._pending_bytes += snap.nbytes
            while self._pending_bytes > self.max_pending_bytes and len(self._pending) > 1:
                oldest = next(iter(self._pending))
                self._pending_bytes -= self._pending.pop(oldest).snap.nbytes
                self.dropped += 1
            self._cond.notify_all()

    def pending(self, tenant: str, name: str) -> Snapshot | None:
        """The newest snapshot not yet on disk, if any."""
        key = (tenant, name)
        with self._cond:
            item = self._pending.get(key)
            return item.snap if item is not None else self._in_flight.get(key)

    def cancel(self, tenant: str, name: str) -> bool:
        """Forget the conversation's unwritten snapshot; one being written is deleted after."""
        key = (tenant, name)
        with self._cond:
            item = self._pending.pop(key, None)
            if item is not None:
                self._pending_bytes -= item.snap.nbytes
            if key in self._in_flight:
                self._cancelled.add(key)
            return item is not None or key in self._in_flight

    def flush(self, timeout: float = 60.0) -> bool:
        """Write everything pending now; True when nothing is left unwritten."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(left, 0.5))
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 60.0) -> None:
        if not self.flush(timeout):
            with self._cond:
                left = len(self._pending)
            log.warning("%d session snapshots could not be written before shutdown", left)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def pending_count(self) -> int:
        return len(self._pending) + len(self._in_flight)

    # -- the writer thread -----------------------------------------------------------------

    def _next(self) -> tuple[Key, Snapshot] | None:
        with self._cond:
            while True:
                if self._closing:
                    return None
                now = time.monotonic()
                if self._pending:
                    ready = [k for k, i in self._pending.items()
                             if self._flushing or i.due <= now]
                    if ready:
                        item = self._pending.pop(ready[0])
                        self._pending_bytes -= item.snap.nbytes
                        self._in_flight[ready[0]] = item.snap
                        return ready[0], item.snap
                    self._cond.wait(min(i.due for i in self._pending.values()) - now)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (nxt := self._next()) is not None:
            key, snap = nxt
            try:
                written = self.disk.save(snap.tenant, snap.name, snap.tokens, snap.data,
                                         snap.last_used, wanted=lambda k=key: self._wanted(k),
                                         stamp=snap.stamp)
            except OSError as exc:
                self._failed(key, snap, exc)
            else:
                self.written += written
                if self._failing:
                    log.warning("session snapshots are being written again")
                self._failing = 0
            finally:
                with self._cond:
                    self._in_flight.pop(key, None)
                    cancelled = key in self._cancelled
                    self._cancelled.discard(key)
                    self._cond.notify_all()
            if cancelled:
                self.disk.delete(*key)

    def _wanted(self, key: Key) -> bool:
        with self._cond:
            return key not in self._cancelled

    def _failed(self, key: Key, snap: Snapshot, exc: OSError) -> None:
        self.failures += 1
        if not self._failing:
            log.error("could not write session snapshots (%s); conversations stay in memory "
                      "and writes are retried", exc.strerror or type(exc).__name__)
        self._failing += 1
        retry = _RETRY_S[min(self._failing, len(_RETRY_S)) - 1]
        with self._cond:
            if key in self._pending or key in self._cancelled or self._flushing:
                return  # a newer snapshot replaced it, or it was deleted, or shutting down
            self._pending[key] = _Item(snap, time.monotonic() + retry)
            self._pending_bytes += snap.nbytes
