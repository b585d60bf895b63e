"""The disk tier: one file per conversation, written atomically, verified on read.

File layout (little-endian)::

    b"HGSN" | u32 format version | u32 header length | header JSON
    | i32 tokens[n_tokens] | state bytes[data_len] | sha256 of everything before

The header holds the tenant, the conversation name, the model fingerprint (file hash and the
context parameters that shape the KV state), ``n_tokens`` and ``data_len``. A file that is short,
fails its checksum, has another version or another fingerprint is deleted with one log line.
Files are written to a temporary name, fsynced, renamed over the old one and the directory
fsynced, so a crash leaves either the old file or the new one, never a torn one.

Threading contract: the index is guarded by a lock; ``save`` (the write-behind thread) and
``load``/``delete`` (the model's worker) may run at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"HGSN"
VERSION = 1
SUFFIX = ".session"
PINS_NAME = "pins.json"
_PREFIX = struct.Struct("<4sII")
_DIGEST = 32
_MAX_HEADER = 1 << 20


class SessionFileError(Exception):
    """A session file that cannot be used; the message says why."""


def file_name(tenant: str, name: str) -> str:
    """Conversation names are client text: hash them into a safe, fixed-length file name."""
    digest = hashlib.sha256(f"{tenant}\0{name}".encode()).hexdigest()[:40]
    return digest + SUFFIX


def canonical(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint as it reads back from JSON, so a written and a live one compare."""
    return dict(json.loads(json.dumps(fingerprint, sort_keys=True)))


def pack(fields: dict[str, Any], tokens: list[int], data: bytes, fingerprint: dict[str, Any],
         *, magic: bytes = MAGIC) -> bytes:
    """The file for ``tokens`` and ``data``: ``fields`` join the header's fingerprint and
    sizes, a sha256 of everything closes it."""
    header = json.dumps({
        **fields, "fingerprint": canonical(fingerprint),
        "n_tokens": len(tokens), "data_len": len(data),
    }, sort_keys=True).encode()
    body = b"".join([
        _PREFIX.pack(magic, VERSION, len(header)), header,
        np.asarray(tokens, dtype="<i4").tobytes(), data,
    ])
    return body + hashlib.sha256(body).digest()


def encode(tenant: str, name: str, tokens: list[int], data: bytes,
           fingerprint: dict[str, Any]) -> bytes:
    return pack({"tenant": tenant, "name": name}, tokens, data, fingerprint)


def _read_header(raw: bytes, magic: bytes = MAGIC) -> tuple[dict[str, Any], int]:
    if len(raw) < _PREFIX.size:
        raise SessionFileError("too short")
    found, version, n_header = _PREFIX.unpack_from(raw)
    if found != magic:
        raise SessionFileError("not a Hugind session file")
    if version != VERSION:
        raise SessionFileError(f"format version {version}, expected {VERSION}")
    if n_header > _MAX_HEADER or len(raw) < _PREFIX.size + n_header:
        raise SessionFileError("truncated header")
    try:
        header = json.loads(raw[_PREFIX.size:_PREFIX.size + n_header])
    except ValueError:
        raise SessionFileError("unreadable header") from None
    if not isinstance(header, dict):
        raise SessionFileError("unreadable header")
    return header, _PREFIX.size + n_header


def decode(raw: bytes, fingerprint: dict[str, Any] | None, *, magic: bytes = MAGIC,
           ) -> tuple[dict[str, Any], list[int], bytes]:
    """Verify and split a file; raises ``SessionFileError`` saying why it is unusable.
    ``fingerprint`` None: any model's file (the caller compares ``header["fingerprint"]``)."""
    header, offset = _read_header(raw, magic)
    try:
        n_tokens, data_len = int(header["n_tokens"]), int(header["data_len"])
    except (KeyError, TypeError, ValueError):
        raise SessionFileError("header lacks sizes") from None
    if n_tokens < 0 or data_len < 0:
        raise SessionFileError("header has negative sizes")
    end = offset + 4 * n_tokens + data_len
    if len(raw) != end + _DIGEST:
        raise SessionFileError(f"{len(raw)} bytes, expected {end + _DIGEST} (truncated?)")
    if hashlib.sha256(raw[:end]).digest() != raw[end:]:
        raise SessionFileError("checksum mismatch")
    if fingerprint is not None and header.get("fingerprint") != canonical(fingerprint):
        raise SessionFileError("written for another model or context configuration")
    tokens = np.frombuffer(raw, dtype="<i4", count=n_tokens, offset=offset).tolist()
    return header, tokens, raw[offset + 4 * n_tokens:end]


@dataclass
class DiskEntry:
    tenant: str
    name: str
    n_tokens: int
    size: int
    last_used: float
    path: Path


class DiskTier:
    """Session files under ``root``; LRU by last use within ``budget_bytes``, none older than
    ``ttl_s``. Existing files are indexed at construction, so sessions survive a restart."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], *, budget_bytes: int,
                 ttl_s: float) -> None:
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self.discarded = 0
        self._bytes = 0  # kept as a counter so stats can be read from another thread
        self._entries: OrderedDict[tuple[str, str], DiskEntry] = OrderedDict()
        self._lock = threading.RLock()
        self._pins: set[tuple[str, str]] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._scan()
            self._pins = self._read_pins()
        except OSError as exc:  # the disk tier is unusable for now; writes retry later
            log.error("session directory %s is not usable: %s", self.root.name,
                      exc.strerror or exc)
        self.enforce()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def n_entries(self) -> int:
        return len(self._entries)

    def entries(self) -> list[DiskEntry]:
        with self._lock:
            return list(self._entries.values())

    def get_entry(self, tenant: str, name: str) -> DiskEntry | None:
        with self._lock:
            return self._entries.get((tenant, name))

    def save(self, tenant: str, name: str, tokens: list[int], data: bytes,
             last_used: float | None = None, *,
             wanted: Callable[[], bool] | None = None) -> None:
        """Write the conversation's file (replacing any older one). ``wanted`` is asked,
        under the index lock, right before the new file takes the old one's place: False
        (the conversation was deleted meanwhile) discards it. Raises ``OSError``."""
        blob = encode(tenant, name, tokens, data, self.fingerprint)
        key = (tenant, name)
        if len(blob) > self.budget_bytes:
            self._remove(key)
            return  # could never fit; keeping it would only evict everyone else
        self.root.mkdir(parents=True, exist_ok=True)  # it may have been removed
        path = self.root / file_name(tenant, name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            when = time.time() if last_used is None else last_used
            os.utime(tmp, (when, when))
            with self._lock:
                if wanted is not None and not wanted():
                    Path(tmp).unlink()
                    return
                Path(tmp).replace(path)
                self._forget(key)
                self._entries[key] = DiskEntry(tenant, name, len(tokens), len(blob), when, path)
                self._bytes += len(blob)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise
        _fsync_dir(self.root)
        self.enforce()

    def load(self, tenant: str, name: str) -> tuple[list[int], bytes] | None:
        entry = self.get_entry(tenant, name)
        if entry is None:
            return None
        try:
            raw = entry.path.read_bytes()
            header, tokens, data = decode(raw, self.fingerprint)
            if (header.get("tenant"), header.get("name")) != (tenant, name):
                raise SessionFileError("belongs to another conversation")
        except (OSError, SessionFileError) as exc:
            self._discard(entry.path, str(exc))
            with self._lock:
                if self._entries.get((tenant, name)) is entry:
                    self._forget((tenant, name))
            return None
        return tokens, data

    def delete(self, tenant: str, name: str) -> bool:
        with self._lock:
            if (tenant, name) in self._pins:
                with contextlib.suppress(OSError):  # a stale pin only protects nothing
                    self.unpin(tenant, name)
            return self._remove((tenant, name))

    # -- pins: sessions that budget and TTL never delete ---------------------------------------

    def pin(self, tenant: str, name: str, nbytes: int) -> bool:
        """Pin (tenant, name), ``nbytes`` large; False when the pinned files would then
        exceed the budget (a pinned file that grows later stays: only new pins are refused)."""
        key = (tenant, name)
        with self._lock:
            if key in self._pins:
                return True
            held = sum(e.size for k, e in self._entries.items() if k in self._pins)
            if held + nbytes > self.budget_bytes:
                return False
            self._pins.add(key)
            self._write_pins()
        return True

    def unpin(self, tenant: str, name: str) -> bool:
        with self._lock:
            if (tenant, name) not in self._pins:
                return False
            self._pins.discard((tenant, name))
            self._write_pins()
        return True

    def is_pinned(self, tenant: str, name: str) -> bool:
        return (tenant, name) in self._pins

    def _read_pins(self) -> set[tuple[str, str]]:
        try:
            rows = json.loads((self.root / PINS_NAME).read_text())
            return {(str(t), str(n)) for t, n in rows}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", PINS_NAME, exc)
            return set()

    def _write_pins(self) -> None:
        """Atomically, so a crash leaves the old pins or the new ones. Raises ``OSError``."""
        tmp = self.root / (PINS_NAME + ".tmp")
        tmp.write_text(json.dumps(sorted(self._pins)))
        tmp.replace(self.root / PINS_NAME)

    def enforce(self, now: float | None = None) -> None:
        """Delete unpinned files past their TTL, then the least recently used unpinned ones
        while over budget."""
        now = time.time() if now is None else now
        with self._lock:
            for key, e in list(self._entries.items()):
                if now - e.last_used > self.ttl_s and key not in self._pins:
                    self._remove(key)
            while self._bytes > self.budget_bytes:
                victim = next((k for k in self._entries if k not in self._pins), None)
                if victim is None:
                    break
                self._remove(victim)

    def _forget(self, key: tuple[str, str]) -> DiskEntry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry

    def _remove(self, key: tuple[str, str]) -> bool:
        with self._lock:
            entry = self._forget(key)
            if entry is None:
                return False
            with contextlib.suppress(OSError):
                entry.path.unlink()
        return True

    def _discard(self, path: Path, why: str) -> None:
        log.warning("discarding session file %s: %s", path.name, why)
        self.discarded += 1
        with contextlib.suppress(OSError):
            path.unlink()

    def _scan(self) -> None:
        found: list[DiskEntry] = []
        for path in self.root.glob("*" + SUFFIX):
            if path.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    path.unlink()  # left by a crash mid-write
                continue
            try:
                stat = path.stat()
                with path.open("rb") as f:
                    head = f.read(_PREFIX.size + _MAX_HEADER)
                header, offset = _read_header(head)
                if header.get("fingerprint") != canonical(self.fingerprint):
                    raise SessionFileError("written for another model or context configuration")
                n_tokens, data_len = int(header["n_tokens"]), int(header["data_len"])
                expected = offset + 4 * n_tokens + data_len + _DIGEST
                if stat.st_size != expected:
                    raise SessionFileError(f"{stat.st_size} bytes, expected {expected} (torn?)")
                entry = DiskEntry(str(header["tenant"]), str(header["name"]),
                                  n_tokens, stat.st_size, stat.st_mtime, path)
                if path.name != file_name(entry.tenant, entry.name):
                    raise SessionFileError("file name does not match its conversation")
            except (OSError, SessionFileError, KeyError, TypeError, ValueError) as exc:
                self._discard(path, str(exc) or type(exc).__name__)
                continue
            found.append(entry)
        for e in sorted(found, key=lambda e: e.last_used):
            self._entries[(e.tenant, e.name)] = e
            self._bytes += e.size


def _fsync_dir(root: Path) -> None:
    """Make a rename durable: fsync the directory that holds it (where the OS allows)."""
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename stands regardless
    finally:
        os.close(fd)
