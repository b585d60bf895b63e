"""A model's engine counters: written by its worker thread, read anywhere (plain ints)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    steps: int = 0
    requests: int = 0
    cache_hits: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    restored_ram: int = 0
    restored_disk: int = 0
    snapshots: int = 0
    cancelled: int = 0
    packed_reads: int = 0  # steps that read several prompts together
    failed_jobs: int = 0  # requests that ended with an engine error, alone
    queue_timeouts: int = 0
    restarts: int = 0  # the worker rebuilt its context after a crash
    shared_prefixes: int = 0  # prompts that borrowed a prefix of another of the key's sequences
    shared_prefix_tokens: int = 0  # prefill tokens those borrowed prefixes saved
    stale_dropped: int = 0  # copies dropped because another replica saved a later turn
