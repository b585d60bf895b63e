"""The disk tier: one file per conversation, written atomically, verified on read.

File layout (little-endian)::

    b"HGSN" | u32 format version | u32 header length | header JSON
    | i32 tokens[n_tokens] | state bytes[data_len] | sha256 of everything before

The header holds the tenant, the conversation name, the model fingerprint (file hash and the
context parameters that shape the KV state), ``n_tokens``, ``data_len`` and the conversation's
``stamp``: its version (one more each turn) and the replica that wrote it. A file that is
short, fails its checksum, has another version or another fingerprint is deleted with one log
line. Files are written to a temporary name, fsynced, renamed over the old one and the
directory fsynced, so a crash leaves either the old file or the new one, never a torn one.

``shared``: several replicas use the directory (a ReadWriteMany volume). A write is then a
compare-and-swap on the version under a lock (one of ``LOCK_STRIPES`` lock files, ``flock``ed,
so a lock file is never deleted under a waiter): a snapshot whose version is not above the
file's is not written (another replica wrote that turn or a later one first). Reads go to the
file, not the index, and the budget and TTL are enforced by one replica at a time (a
non-blocking directory lock) over a fresh scan, each deletion re-checked under its lock.

Threading contract: the index is guarded by a lock; ``save`` (the write-behind thread) and
``load``/``delete`` (the model's worker) may run at once; ``stamp`` from any thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
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
LOCK_DIR = ".locks"
LOCK_STRIPES = 64
_RESCAN_S = 5.0  # shared: how often the budget and TTL look at the other replicas' files


@dataclass(frozen=True, order=True)
class Stamp:
    """Which turn of a conversation a snapshot holds: ``version`` counts its saved turns,
    ``origin`` names the replica that wrote it (two replicas may each write version n)."""

    version: int = 0
    origin: str = ""


NO_STAMP = Stamp()  # a conversation never saved


class SessionFileError(Exception):
    """A session file that cannot be used; the message says why."""


def file_name(tenant: str, name: str, salt: str = "") -> str:
    """Conversation names are client text: hash them into a safe, fixed-length file name.
    ``salt`` (a shared directory: the model fingerprint) keeps replicas of other models apart."""
    digest = hashlib.sha256(f"{tenant}\0{name}{salt}".encode()).hexdigest()[:40]
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
           fingerprint: dict[str, Any], stamp: Stamp = NO_STAMP) -> bytes:
    return pack({"tenant": tenant, "name": name, "version": stamp.version,
                 "origin": stamp.origin}, tokens, data, fingerprint)


def header_stamp(header: dict[str, Any]) -> Stamp:
    try:
        return Stamp(int(header.get("version", 0)), str(header.get("origin", "")))
    except (TypeError, ValueError):
        return NO_STAMP


def decode_file(raw: bytes) -> tuple[dict[str, Any], list[int], bytes]:
    """A session file's header, tokens and state, verified (any model's)."""
    return decode(raw, None)


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
    stamp: Stamp = NO_STAMP


@dataclass(frozen=True)
class Stored:
    """A conversation read back from its file."""

    tokens: list[int]
    data: bytes
    stamp: Stamp
    last_used: float


class DiskTier:
    """Session files under ``root``; LRU by last use within ``budget_bytes``, none older than
    ``ttl_s``. Existing files are indexed at construction, so sessions survive a restart.
    ``shared``: other replicas write the directory too (see the module docstring)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], *, budget_bytes: int,
                 ttl_s: float, shared: bool = False, replica: str = "") -> None:
        self.root = Path(root)
        self.replica = replica  # this process's name in the stamps it writes
        self.fingerprint = fingerprint
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self.shared = shared
        self.discarded = 0
        self.conflicts = 0  # shared: snapshots not written, the file held that turn already
        self._canonical = canonical(fingerprint)
        self._salt = (hashlib.sha256(json.dumps(self._canonical, sort_keys=True).encode())
                      .hexdigest() if shared else "")
        self._bytes = 0  # kept as a counter so stats can be read from another thread
        self._entries: OrderedDict[tuple[str, str], DiskEntry] = OrderedDict()
        self._lock = threading.RLock()
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)] if shared else []
        self._pins: set[tuple[str, str]] = set()
        self._scanned_at = self._enforced_at = 0.0
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

    def path_of(self, tenant: str, name: str) -> Path:
        return self.root / file_name(tenant, name, self._salt)

    def entries(self) -> list[DiskEntry]:
        if self.shared and time.monotonic() - self._scanned_at > 1.0:
            with contextlib.suppress(OSError):
                self._scan()  # the other replicas' sessions too
        with self._lock:
            return list(self._entries.values())

    def get_entry(self, tenant: str, name: str) -> DiskEntry | None:
        if self.shared:  # the file is the truth: another replica may have written it
            return self._refresh((tenant, name))
        with self._lock:
            return self._entries.get((tenant, name))

    def stamp(self, tenant: str, name: str) -> Stamp | None:
        """The stored version of the conversation (a header read when shared), or None."""
        entry = self.get_entry(tenant, name)
        return entry.stamp if entry is not None else None

    def save(self, tenant: str, name: str, tokens: list[int], data: bytes,
             last_used: float | None = None, *,
             wanted: Callable[[], bool] | None = None, stamp: Stamp = NO_STAMP) -> bool:
        """Write the conversation's file (replacing any older one). ``wanted`` is asked,
        under the index lock, right before the new file takes the old one's place: False
        (the conversation was deleted meanwhile) discards it. Shared, the file is replaced
        only by a higher ``stamp.version``. Returns whether it was written; raises
        ``OSError``."""
        blob = encode(tenant, name, tokens, data, self.fingerprint, stamp)
        key = (tenant, name)
        if len(blob) > self.budget_bytes:
            self.delete(tenant, name)
            return False  # could never fit; keeping it would only evict everyone else
        self.root.mkdir(parents=True, exist_ok=True)  # it may have been removed
        path = self.path_of(tenant, name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            when = time.time() if last_used is None else last_used
            os.utime(tmp, (when, when))
            with self._claim(key):
                if self.shared:
                    held = _file_stamp(path)
                    if held is not None and held.version >= stamp.version:
                        self.conflicts += 1
                        log.info("a session snapshot was not written: another replica "
                                 "saved version %d of it first", held.version)
                        Path(tmp).unlink()
                        return False
                with self._lock:
                    if wanted is not None and not wanted():
                        Path(tmp).unlink()
                        return False
                    Path(tmp).replace(path)
                    self._index(key, DiskEntry(tenant, name, len(tokens), len(blob), when,
                                               path, stamp))
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise
        _fsync_dir(self.root)
        self.enforce()
        return True

    def load(self, tenant: str, name: str) -> Stored | None:
        key = (tenant, name)
        if self.shared:
            path = self.path_of(tenant, name)
        else:
            entry = self.get_entry(tenant, name)
            if entry is None:
                return None
            path = entry.path
        try:
            raw = path.read_bytes()
            when = path.stat().st_mtime
            header, tokens, data = decode(raw, self.fingerprint)
            if (header.get("tenant"), header.get("name")) != key:
                raise SessionFileError("belongs to another conversation")
        except FileNotFoundError:
            with self._lock:
                self._forget(key)
            return None
        except (OSError, SessionFileError) as exc:
            self._discard(path, str(exc))
            with self._lock:
                if (found := self._entries.get(key)) is not None and found.path == path:
                    self._forget(key)
            return None
        stamp = header_stamp(header)
        if self.shared:
            self._index(key, DiskEntry(tenant, name, len(tokens), len(raw), when, path, stamp))
        return Stored(tokens, data, stamp, when)

    def delete(self, tenant: str, name: str) -> bool:
        with self._lock:
            if (tenant, name) in self._pins:
                with contextlib.suppress(OSError):  # a stale pin only protects nothing
                    self.unpin(tenant, name)
        if not self.shared:
            return self._remove((tenant, name))
        with self._claim((tenant, name)):
            with self._lock:
                self._forget((tenant, name))
            try:
                self.path_of(tenant, name).unlink()
            except FileNotFoundError:
                return False
        return True

    # -- pins: sessions that budget and TTL never delete ---------------------------------------

    def pin(self, tenant: str, name: str, nbytes: int) -> bool:
        """Pin (tenant, name), ``nbytes`` large; False when the pinned files would then
        exceed the budget (a pinned file that grows later stays: only new pins are refused)."""
        key = (tenant, name)
        with self._lock, self._pins_claim():
            if key in self._pins:
                return True
            held = sum(e.size for k, e in self._entries.items() if k in self._pins)
            if held + nbytes > self.budget_bytes:
                return False
            self._pins.add(key)
            self._write_pins()
        return True

    def unpin(self, tenant: str, name: str) -> bool:
        with self._lock, self._pins_claim():
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
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".pins")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(sorted(self._pins)))
        Path(tmp).replace(self.root / PINS_NAME)

    @contextlib.contextmanager
    def _pins_claim(self) -> Iterator[None]:
        """Shared: pins.json is read, changed and written by one replica at a time."""
        if not self.shared:
            yield
            return
        with _flocked(self.root / LOCK_DIR / "pins.lock"):
            self._pins = self._read_pins()
            yield

    # -- budget and TTL --------------------------------------------------------------------------

    def enforce(self, now: float | None = None) -> None:
        """Delete unpinned files past their TTL, then the least recently used unpinned ones
        while over budget. Shared: at most every few seconds, by one replica at a time, over
        a fresh scan of the directory."""
        now = time.time() if now is None else now
        if self.shared:
            self._enforce_shared(now)
            return
        with self._lock:
            for key in self._victims(now):
                self._remove(key)

    def _victims(self, now: float) -> list[tuple[str, str]]:
        with self._lock:
            out = [k for k, e in self._entries.items()
                   if now - e.last_used > self.ttl_s and k not in self._pins]
            over = self._bytes - sum(self._entries[k].size for k in out) - self.budget_bytes
            for k, e in self._entries.items():  # least recently used first
                if over <= 0:
                    break
                if k not in self._pins and k not in out:
                    out.append(k)
                    over -= e.size
            return out

    def _enforce_shared(self, now: float) -> None:
        if time.monotonic() - self._enforced_at < _RESCAN_S:
            return
        self._enforced_at = time.monotonic()
        try:
            with _flocked(self.root / LOCK_DIR / "enforce.lock", wait=False):
                self._scan()
                self._pins = self._read_pins()
                for key in self._victims(now):
                    with self._claim(key):
                        with self._lock:
                            entry = self._entries.get(key)
                        if entry is None:
                            continue
                        try:  # rewritten since the scan (here or elsewhere): in use, keep
                            if entry.path.stat().st_mtime > entry.last_used:
                                continue
                            entry.path.unlink()
                        except FileNotFoundError:
                            pass
                        with self._lock:
                            self._forget(key)
        except BlockingIOError:
            return  # another replica is enforcing right now
        except OSError as exc:
            log.warning("could not enforce the session budget: %s", exc.strerror or exc)

    # -- the index ---------------------------------------------------------------------------

    def _index(self, key: tuple[str, str], entry: DiskEntry | None) -> None:
        """Make ``entry`` the index's entry of ``key`` (None: forget it), as the newest."""
        with self._lock:
            self._forget(key)
            if entry is not None:
                self._entries[key] = entry
                self._bytes += entry.size

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

    @contextlib.contextmanager
    def _claim(self, key: tuple[str, str]) -> Iterator[None]:
        """Shared: exclusive use of one conversation's file among this process's threads and
        the other replicas (a stripe of lock files, never deleted)."""
        if not self.shared:
            yield
            return
        i = int(file_name(*key, self._salt)[:8], 16) % LOCK_STRIPES
        with self._stripes[i], _flocked(self.root / LOCK_DIR / f"{i:02d}.lock"):
            yield

    def _read_entry(self, path: Path) -> DiskEntry | None:
        """The file's index entry from its header, or None (and the file discarded, unless
        shared and written for another model: that replica's to keep)."""
        try:
            stat = path.stat()
            with path.open("rb") as f:
                head = f.read(_PREFIX.size + _MAX_HEADER)
            header, offset = _read_header(head)
            if header.get("fingerprint") != self._canonical:
                if self.shared:
                    return None
                raise SessionFileError("written for another model or context configuration")
            n_tokens, data_len = int(header["n_tokens"]), int(header["data_len"])
            expected = offset + 4 * n_tokens + data_len + _DIGEST
            if stat.st_size != expected:
                raise SessionFileError(f"{stat.st_size} bytes, expected {expected} (torn?)")
            entry = DiskEntry(str(header["tenant"]), str(header["name"]), n_tokens,
                              stat.st_size, stat.st_mtime, path, header_stamp(header))
            if path.name != file_name(entry.tenant, entry.name, self._salt):
                raise SessionFileError("file name does not match its conversation")
        except FileNotFoundError:
            return None
        except (OSError, SessionFileError, KeyError, TypeError, ValueError) as exc:
            self._discard(path, str(exc) or type(exc).__name__)
            return None
        return entry

    def _refresh(self, key: tuple[str, str]) -> DiskEntry | None:
        """Shared: the index entry of one conversation, re-read from its file."""
        path = self.path_of(*key)
        with self._lock:
            known = self._entries.get(key)
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if known is not None and stat is not None and (
                stat.st_size, stat.st_mtime) == (known.size, known.last_used):
            return known
        entry = self._read_entry(path) if stat is not None else None
        self._index(key, entry)
        return entry

    def _scan(self) -> None:
        """Index the directory's files (shared: reusing entries whose file is unchanged)."""
        found: list[DiskEntry] = []
        with self._lock:
            known = {e.path.name: e for e in self._entries.values()}
        for path in self.root.glob("*" + SUFFIX):
            if path.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    # left by a crash mid-write; shared, it may be a write in progress
                    if not self.shared or time.time() - path.stat().st_mtime > 3600:
                        path.unlink()
                continue
            old = known.get(path.name)
            if old is not None:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if (stat.st_size, stat.st_mtime) == (old.size, old.last_used):
                    found.append(old)
                    continue
            entry = self._read_entry(path)
            if entry is not None:
                found.append(entry)
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            for e in sorted(found, key=lambda e: e.last_used):
                self._entries[(e.tenant, e.name)] = e
                self._bytes += e.size
        self._scanned_at = time.monotonic()


def _file_stamp(path: Path) -> Stamp | None:
    """The stamp in a session file's header; None when there is no readable file."""
    try:
        with path.open("rb") as f:
            head = f.read(_PREFIX.size + _MAX_HEADER)
        return header_stamp(_read_header(head)[0])
    except (OSError, SessionFileError):
        return None


@contextlib.contextmanager
def _flocked(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing). ``wait`` False: raises
    ``BlockingIOError`` when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # releases the lock


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
