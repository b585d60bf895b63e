"""The RAM tier of conversation snapshots, spilling to the disk tier by LRU."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from hugind.sessions.disk import DiskTier

_TOKEN_BYTES = 4


@dataclass
class Snapshot:
    """One conversation's KV state (``llama_state_seq_get_data``) and the tokens it holds."""

    tenant: str
    name: str
    tokens: list[int]
    data: bytes
    last_used: float = field(default_factory=time.time)

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


class SnapshotStore:
    """RAM snapshots within ``ram_budget_bytes``; the least recently used spill to ``disk``
    (or are dropped when there is no disk tier). A conversation lives in at most one tier."""

    def __init__(self, ram_budget_bytes: int, disk: DiskTier | None) -> None:
        self.ram_budget_bytes = ram_budget_bytes
        self.disk = disk
        self._ram: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._ram_bytes = 0

    def put(self, snap: Snapshot) -> None:
        key = (snap.tenant, snap.name)
        self.delete(*key)
        if snap.nbytes > self.ram_budget_bytes:
            self._spill(snap)
            return
        self._ram[key] = snap
        self._ram_bytes += snap.nbytes
        while self._ram_bytes > self.ram_budget_bytes:
            _, oldest = self._ram.popitem(last=False)
            self._ram_bytes -= oldest.nbytes
            self._spill(oldest)

    def take(self, tenant: str, name: str) -> tuple[Snapshot, str] | None:
        """Remove and return the conversation's snapshot and the tier it came from."""
        snap = self._ram.pop((tenant, name), None)
        if snap is not None:
            self._ram_bytes -= snap.nbytes
            return snap, "ram"
        if self.disk is None:
            return None
        entry = self.disk.get_entry(tenant, name)
        loaded = self.disk.load(tenant, name)
        if loaded is None or entry is None:
            return None
        self.disk.delete(tenant, name)
        tokens, data = loaded
        return Snapshot(tenant, name, tokens, data, entry.last_used), "disk"

    def delete(self, tenant: str, name: str) -> bool:
        snap = self._ram.pop((tenant, name), None)
        if snap is not None:
            self._ram_bytes -= snap.nbytes
        on_disk = self.disk.delete(tenant, name) if self.disk is not None else False
        return snap is not None or on_disk

    def flush_to_disk(self) -> None:
        """Write every RAM snapshot to disk (at shutdown, so sessions survive a restart)."""
        while self._ram:
            _, snap = self._ram.popitem(last=False)
            self._ram_bytes -= snap.nbytes
            self._spill(snap)

    def listing(self) -> Iterator[tuple[str, str, int, str, int, float]]:
        """(tenant, name, tokens, tier, bytes, last_used) of every stored conversation."""
        for s in self._ram.values():
            yield s.tenant, s.name, len(s.tokens), "ram", s.nbytes, s.last_used
        if self.disk is not None:
            for e in self.disk.entries():
                yield e.tenant, e.name, e.n_tokens, "disk", e.size, e.last_used

    def stats(self) -> StoreStats:
        disk = self.disk
        return StoreStats(
            ram_sessions=len(self._ram), ram_bytes=self._ram_bytes,
            disk_sessions=disk.n_entries if disk else 0,
            disk_bytes=disk.total_bytes if disk else 0,
            discarded_files=disk.discarded if disk else 0,
        )

    def _spill(self, snap: Snapshot) -> None:
        if self.disk is not None:
            self.disk.save(snap.tenant, snap.name, snap.tokens, snap.data, snap.last_used)
