"""Conversation KV snapshots kept outside the KV cache: pure bookkeeping, no llama.cpp.

``SnapshotStore`` holds the RAM tier and spills to a ``DiskTier`` by LRU when RAM is over its
budget; ``DiskTier`` keeps one checksummed file per conversation and enforces its own budget and
TTL. ``common_prefix`` is the prefix match that decides how much of a prompt is reused.

``SnapshotWriter`` writes snapshots behind the worker's back (write-behind), so a crash loses at
most the last ``sessions.flush_s`` of turns; ``model_fingerprint`` names the model file the KV
came from; ``export_bytes``/``read_export`` are the movable file of one conversation.

Threading contract: a store belongs to one engine worker thread; only ``SnapshotStore.stats()``
may be read from another thread (it reads plain counters). The disk tier's index is locked, so
the writer's thread and the worker may use it at once.
"""

from hugind.sessions.disk import (
    NO_STAMP,
    DiskEntry,
    DiskTier,
    SessionFileError,
    Stamp,
    Stored,
    canonical,
    decode_file,
)
from hugind.sessions.fingerprint import model_fingerprint
from hugind.sessions.prefix import common_prefix
from hugind.sessions.store import Snapshot, SnapshotStore, StoreStats
from hugind.sessions.transfer import SessionFile, export_bytes, read_export
from hugind.sessions.writer import SnapshotWriter

__all__ = [
    "NO_STAMP",
    "DiskEntry",
    "DiskTier",
    "SessionFile",
    "SessionFileError",
    "Snapshot",
    "SnapshotStore",
    "SnapshotWriter",
    "Stamp",
    "StoreStats",
    "Stored",
    "canonical",
    "common_prefix",
    "decode_file",
    "export_bytes",
    "model_fingerprint",
    "read_export",
]
