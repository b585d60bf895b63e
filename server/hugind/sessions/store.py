"""The RAM tier of conversation snapshots, spilling to the disk tier by LRU."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from hugind.sessions.disk import NO_STAMP, DiskTier, Stamp, Stored

log = logging.getLogger(__name__)

_TOKEN_BYTES = 4


@dataclass
class Snapshot:
    """One conversation's KV state (``llama_state_seq_get_data``) and the tokens it holds."""

    tenant: str
    name: str
    tokens: list[int]
    data: bytes
    last_used: float = field(default_factory=time.time)
    stamp: Stamp = NO_STAMP  # the turn it holds (see ``hugind.sessions.disk``)

    @property
    def nbytes(self) -> int:
        return len(self.data) + _TOKEN_BYTES * len(self.tokens)


@dataclass(frozen=True)
class StoreStats:
    ram_sessions: int
    ram_bytes: int
    disk_sessions: int
    disk_bytes: int
    discarded_files: int
    pending_writes: int = 0
    snapshots_written: int = 0
    disk_write_failures: int = 0
    version_conflicts: int = 0


class Persister(Protocol):
    """Writes snapshots to the disk tier in the background (``SnapshotWriter``)."""

    written: int
    failures: int

    def put(self, snap: Snapshot) -> None: ...

    def pending(self, tenant: str, name: str) -> Snapshot | None: ...

    def cancel(self, tenant: str, name: str) -> bool: ...

    def flush(self, timeout: float = 60.0) -> bool: ...

    def close(self, timeout: float = 60.0) -> None: ...

    @property
    def pending_count(self) -> int: ...


class SnapshotStore:
    """RAM snapshots within ``ram_budget_bytes`` in front of the ``disk`` tier.

    Without a ``writer`` a conversation lives in one tier: the least recently used RAM
    snapshots spill to disk (or are dropped when there is no disk tier). With one
    (write-behind), every finished turn is also sent to disk in the background, so the disk
    holds the newest saved version of every conversation, RAM and KV are caches in front of it,
    and a RAM snapshot already on disk leaves RAM without a write.
    """

    def __init__(self, ram_budget_bytes: int, disk: DiskTier | None,
                 writer: Persister | None = None) -> None:
        self.ram_budget_bytes = ram_budget_bytes
        self.disk = disk
        self.writer = writer if disk is not None else None
        self._ram: OrderedDict[tuple[str, str], tuple[Snapshot, bool]] = OrderedDict()
        self._ram_bytes = 0

    @property
    def writes_behind(self) -> bool:
        return self.writer is not None

    def put(self, snap: Snapshot, *, persisted: bool = False) -> None:
        """Keep ``snap`` in RAM; ``persisted``: its disk copy (or a pending write) is current."""
        key = (snap.tenant, snap.name)
        self._drop_ram(key)
        persisted = persisted and self.writer is not None  # without one, disk holds no copy
        if self.writer is not None and not persisted:
            self.writer.put(snap)
            persisted = True
        if snap.nbytes > self.ram_budget_bytes:
            if not persisted:
                self._spill(snap)
            return
        self._ram[key] = (snap, persisted)
        self._ram_bytes += snap.nbytes
        while self._ram_bytes > self.ram_budget_bytes:
            _, (oldest, on_disk) = self._ram.popitem(last=False)
            self._ram_bytes -= oldest.nbytes
            if not on_disk:
                self._spill(oldest)

    def persist(self, snap: Snapshot) -> None:
        """Send a conversation's newest snapshot to disk (in the background with a writer)."""
        if self.writer is not None:
            self.writer.put(snap)
        else:
            self._spill(snap)

    def take(self, tenant: str, name: str) -> tuple[Snapshot, str] | None:
        """Remove and return the conversation's snapshot and the tier it came from. With
        write-behind its disk file stays: it is the copy a crash falls back to."""
        key = (tenant, name)
        held = self._ram.pop(key, None)
        if held is not None:
            self._ram_bytes -= held[0].nbytes
            return held[0], "ram"
        if self.disk is None:
            return None
        if self.writer is not None:
            unwritten = self.writer.pending(tenant, name)
            if unwritten is not None:
                return unwritten, "ram"
        loaded = self.disk.load(tenant, name)
        if loaded is None:
            return None
        if self.writer is None:
            self.disk.delete(tenant, name)
        return self._from_disk(tenant, name, loaded), "disk"

    def peek(self, tenant: str, name: str) -> Snapshot | None:
        """The conversation's newest stored snapshot, left where it is (for an export)."""
        held = self._ram.get((tenant, name))
        if held is not None:
            return held[0]
        if self.disk is None:
            return None
        if self.writer is not None and (unwritten := self.writer.pending(tenant, name)):
            return unwritten
        loaded = self.disk.load(tenant, name)
        return self._from_disk(tenant, name, loaded) if loaded is not None else None

    @staticmethod
    def _from_disk(tenant: str, name: str, stored: Stored) -> Snapshot:
        return Snapshot(tenant, name, stored.tokens, stored.data, stored.last_used, stored.stamp)

    def drop_ram(self, tenant: str, name: str) -> None:
        """Forget the RAM copy (a stale one: another replica saved a later turn)."""
        self._drop_ram((tenant, name))

    def recent(self, tenant: str, limit: int) -> list[Snapshot]:
        """Up to ``limit`` of ``tenant``'s RAM snapshots, most recently used first."""
        out: list[Snapshot] = []
        for snap, _ in reversed(self._ram.values()):
            if snap.tenant == tenant:
                out.append(snap)
                if len(out) == limit:
                    break
        return out

    def ram_stamp(self, tenant: str, name: str) -> Stamp | None:
        held = self._ram.get((tenant, name))
        return held[0].stamp if held is not None else None

    def unwritten(self, tenant: str, name: str) -> bool:
        """Whether a snapshot of the conversation is still waiting for (or in) its write."""
        return self.writer is not None and self.writer.pending(tenant, name) is not None

    def has_on_disk(self, tenant: str, name: str) -> bool:
        if self.disk is None:
            return False
        return self.unwritten(tenant, name) or self.disk.get_entry(tenant, name) is not None

    def delete(self, tenant: str, name: str) -> bool:
        found = self._drop_ram((tenant, name))
        if self.writer is not None and self.writer.cancel(tenant, name):
            found = True
        if self.disk is not None and self.disk.delete(tenant, name):
            found = True
        return found

    def flush_to_disk(self) -> None:
        """Write every RAM snapshot not yet on disk, and wait for pending writes (at
        shutdown, so sessions survive a restart)."""
        while self._ram:
            _, (snap, on_disk) = self._ram.popitem(last=False)
            self._ram_bytes -= snap.nbytes
            if not on_disk:
                self._spill(snap)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Write what is pending and stop the writer (the store is done with)."""
        self.flush_to_disk()
        if self.writer is not None:
            self.writer.close()

    def listing(self) -> Iterator[tuple[str, str, int, str, int, float]]:
        """(tenant, name, tokens, tier, bytes, last_used) of every stored conversation, in
        the fastest tier that holds it."""
        for s, _ in self._ram.values():
            yield s.tenant, s.name, len(s.tokens), "ram", s.nbytes, s.last_used
        if self.disk is not None:
            for e in self.disk.entries():
                if (e.tenant, e.name) not in self._ram:
                    yield e.tenant, e.name, e.n_tokens, "disk", e.size, e.last_used

    def stats(self) -> StoreStats:
        disk, writer = self.disk, self.writer
        return StoreStats(
            ram_sessions=len(self._ram), ram_bytes=self._ram_bytes,
            disk_sessions=disk.n_entries if disk else 0,
            disk_bytes=disk.total_bytes if disk else 0,
            discarded_files=disk.discarded if disk else 0,
            pending_writes=writer.pending_count if writer else 0,
            snapshots_written=writer.written if writer else 0,
            disk_write_failures=(writer.failures if writer else 0),
            version_conflicts=disk.conflicts if disk else 0,
        )

    def _drop_ram(self, key: tuple[str, str]) -> bool:
        held = self._ram.pop(key, None)
        if held is not None:
            self._ram_bytes -= held[0].nbytes
        return held is not None

    def _spill(self, snap: Snapshot) -> None:
        if self.disk is None:
            return
        try:
            self.disk.save(snap.tenant, snap.name, snap.tokens, snap.data, snap.last_used,
                           stamp=snap.stamp)
        except OSError as exc:  # the disk tier failing must not take the model down
            log.warning("could not write a session snapshot to disk: %s", exc.strerror or exc)
