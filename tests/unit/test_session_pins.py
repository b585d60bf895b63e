"""Pinned sessions in the disk tier: budget and TTL skip them, pins within the budget only,
and they survive a restart."""

from __future__ import annotations

import time
from pathlib import Path

from hugind.sessions import DiskTier

FP = {"model": "m", "n_ctx": 256}


def _tier(root: Path, budget: int) -> DiskTier:
    return DiskTier(root, FP, budget_bytes=budget, ttl_s=3600)


def test_pinned_files_outlive_budget_and_ttl(tmp_path: Path) -> None:
    disk = _tier(tmp_path, 10_000)
    disk.save("t", "keep", [1] * 10, b"x" * 3000)
    size = disk.get_entry("t", "keep").size  # type: ignore[union-attr]
    assert disk.pin("t", "keep", size)
    for i in range(5):  # pressure: five more files of the same size
        disk.save("t", f"s{i}", [1] * 10, b"x" * 3000)
    assert disk.get_entry("t", "keep") is not None
    assert disk.get_entry("t", "s0") is None  # the oldest unpinned went
    assert disk.total_bytes <= 10_000
    disk.enforce(now=time.time() + 7200)  # past the TTL of everything
    assert [e.name for e in disk.entries()] == ["keep"]
    assert _tier(tmp_path, 10_000).is_pinned("t", "keep")  # the pins file is read back


def test_pins_over_budget_are_refused_and_unpin_frees(tmp_path: Path) -> None:
    disk = _tier(tmp_path, 10_000)
    assert disk.pin("t", "a", 6000)
    disk.save("t", "a", [1] * 10, b"x" * 5900)
    assert not disk.pin("t", "b", 6000)
    assert disk.unpin("t", "a") and not disk.unpin("t", "a")
    assert disk.pin("t", "b", 6000)
    assert disk.delete("t", "b") is False and not disk.is_pinned("t", "b")
