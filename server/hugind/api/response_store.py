"""Stored responses: one JSON file each, ``<root>/<tenant digest>/<response id>.json``.

Bounded by count (the oldest go first) and by age; scoped by tenant (a lookup under another
tenant finds nothing). Files are written to a temporary name, fsynced and renamed, so a crash
leaves the old file or the new one, never half of one. The index (id -> tenant, time, path)
is rebuilt from the folder names and file times at first use, without reading the files; a
file stored later by another replica sharing the folder (``sessions.shared``) is found on a
lookup that misses the index.

Threading: the async methods run the file IO in worker threads (``asyncio.to_thread``); the
index is guarded by a lock because those threads share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

_ID = re.compile(r"resp_[0-9a-f]{48}")  # ours only: an id is also a file name
_SUFFIX = ".json"
_TMP = ".tmp-"
_TMP_AGE_S = 3600.0


class StoredResponse(msgspec.Struct, kw_only=True):
    """A response and what continues it: the conversation input that led to it (history and
    the turn's own input, each item with an id) and the KV session it generated into."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    session: str | None = None

    @property
    def id(self) -> str:
        return str(self.response["id"])


@dataclass
class _Entry:
    tenant_dir: str
    created: float
    path: Path


def tenant_dir(tenant: str) -> str:
    return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:32]


class ResponseStore:
    """Responses on disk under ``root``, at most ``max_count``, each kept ``ttl_s``."""

    def __init__(self, root: Path, *, max_count: int, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.max_count = max_count
        self.ttl_s = ttl_s
        self._clock = clock
        self._index: dict[str, _Entry] | None = None  # oldest first
        self._lock = threading.Lock()

    async def put(self, tenant: str, record: StoredResponse) -> None:
        await asyncio.to_thread(self._put, tenant, record)

    async def get(self, tenant: str, ident: str) -> StoredResponse | None:
        return await asyncio.to_thread(self._get, tenant, ident)

    async def delete(self, tenant: str, ident: str) -> bool:
        return await asyncio.to_thread(self._delete, tenant, ident)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries())

    def _entries(self) -> dict[str, _Entry]:
        """The index, built on first use; call with the lock held."""
        if self._index is None:
            found = []
            for path in self.root.glob(f"t-*/*{_SUFFIX}"):
                if path.name.startswith(_TMP):
                    # left by a crash mid-write; a young one may be another replica's write
                    # in progress (sessions.shared)
                    with contextlib.suppress(OSError):
                        if time.time() - path.stat().st_mtime > _TMP_AGE_S:
                            path.unlink()
                    continue
                with contextlib.suppress(OSError):
                    found.append((path.stat().st_mtime, path))
            found.sort()
            self._index = {p.stem: _Entry(p.parent.name, t, p) for t, p in found}
        return self._index

    def _put(self, tenant: str, record: StoredResponse) -> None:
        folder = self.root / tenant_dir(tenant)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{record.id}{_SUFFIX}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP, suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.encode(record))
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise
        with self._lock:
            entries = self._entries()
            entries.pop(record.id, None)
            entries[record.id] = _Entry(folder.name, self._clock(), path)
            self._prune(entries)

    def _prune(self, entries: dict[str, _Entry]) -> None:
        """Drop expired entries and the oldest beyond ``max_count``; lock held."""
        cutoff = self._clock() - self.ttl_s
        doomed = [i for i, e in entries.items() if e.created < cutoff]
        rest = [i for i, e in entries.items() if e.created >= cutoff]
        doomed += rest[:max(0, len(rest) - self.max_count)]
        for ident in doomed:
            with contextlib.suppress(OSError):
                entries.pop(ident).path.unlink()

    def _live(self, tenant: str, ident: str) -> _Entry | None:
        """The entry of ``ident`` if ``tenant`` owns it and it has not expired; lock held."""
        if not _ID.fullmatch(ident):
            return None
        entries = self._entries()
        entry = entries.get(ident)
        if entry is None:  # stored since the index was built, by another replica
            entry = self._found(tenant, ident)
            if entry is not None:
                entries[ident] = entry
        if entry is None or entry.tenant_dir != tenant_dir(tenant):
            return None
        if entry.created < self._clock() - self.ttl_s:
            self._prune(entries)
            return None
        return entry

    def _found(self, tenant: str, ident: str) -> _Entry | None:
        """The tenant's file of ``ident`` written by another process sharing the folder."""
        path = self.root / tenant_dir(tenant) / f"{ident}{_SUFFIX}"
        try:
            return _Entry(path.parent.name, path.stat().st_mtime, path)
        except OSError:
            return None

    def _get(self, tenant: str, ident: str) -> StoredResponse | None:
        with self._lock:
            entry = self._live(tenant, ident)
        if entry is None:
            return None
        try:
            return msgspec.json.decode(entry.path.read_bytes(), type=StoredResponse)
        except FileNotFoundError:  # deleted meanwhile
            return None
        except (OSError, msgspec.MsgspecError) as exc:
            log.warning("stored response %s is unreadable (%s); dropping it", ident, exc)
            self._delete(tenant, ident)
            return None

    def _delete(self, tenant: str, ident: str) -> bool:
        with self._lock:
            entry = self._live(tenant, ident)
            if entry is None:
                return False
            del self._entries()[ident]
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
            return True
