"""Conversation KV snapshots kept outside the KV cache: pure bookkeeping, no llama.cpp.

``SnapshotStore`` holds the RAM tier and spills to a ``DiskTier`` by LRU when RAM is over its
budget; ``DiskTier`` keeps one checksummed file per conversation and enforces its own budget and
TTL. ``common_prefix`` is the prefix match that decides how much of a prompt is reused.

Threading contract: a store and its disk tier belong to one engine worker thread; only
``SnapshotStore.stats()`` may be read from another thread (it reads plain counters).
"""

from hugind.sessions.disk import DiskEntry, DiskTier
from hugind.sessions.prefix import common_prefix
from hugind.sessions.store import Snapshot, SnapshotStore, StoreStats

__all__ = [
    "DiskEntry",
    "DiskTier",
    "Snapshot",
    "SnapshotStore",
    "StoreStats",
    "common_prefix",
]
