"""Session files under failure: write-behind coalescing and retries, torn files at startup,
deletes racing a write, a disk tier that goes away and comes back, the model fingerprint."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hugind.engine.embedding import EmbeddingWorker
from hugind.errors import QueueFullError
from hugind.sessions import DiskTier, Snapshot, SnapshotStore, SnapshotWriter, model_fingerprint
from hugind.sessions.disk import file_name

FP = {"model": "m"}


def disk(root: Path, budget: int = 1 << 20) -> DiskTier:
    return DiskTier(root, FP, budget_bytes=budget, ttl_s=3600)


def snap(name: str, n: int = 8, fill: int = 1) -> Snapshot:
    return Snapshot("t", name, list(range(n)), bytes([fill]) * 64)


def wait_until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class CountingDisk(DiskTier):
    def __init__(self, root: Path) -> None:
        super().__init__(root, FP, budget_bytes=1 << 20, ttl_s=3600)
        self.saves: list[tuple[str, bytes]] = []
        self.fail = False

    def save(self, tenant: str, name: str, tokens: list[int], data: bytes,
             last_used: float | None = None, **kw: Any) -> bool:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.saves.append((name, data))
        return super().save(tenant, name, tokens, data, last_used, **kw)


def test_turns_within_the_delay_coalesce_into_one_write(tmp_path: Path) -> None:
    d = CountingDisk(tmp_path)
    w = SnapshotWriter(d, delay_s=0.2, max_pending_bytes=1 << 20)
    for fill in range(5):
        w.put(snap("alice", fill=fill))
    assert w.pending("t", "alice") is not None  # readable before it is written
    wait_until(lambda: d.get_entry("t", "alice") is not None)
    w.close()
    assert d.saves == [("alice", bytes([4]) * 64)]  # only the newest was written
    stored = d.load("t", "alice")
    assert stored is not None and (stored.tokens, stored.data) == (list(range(8)),
                                                                  bytes([4]) * 64)


def test_a_failing_disk_is_counted_logged_once_and_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = CountingDisk(tmp_path)
    d.fail = True
    w = SnapshotWriter(d, delay_s=0.0, max_pending_bytes=1 << 20)
    with caplog.at_level(logging.ERROR, logger="hugind.sessions.writer"):
        w.put(snap("a"))
        w.put(snap("b"))
        wait_until(lambda: w.failures >= 2)
    assert len([r for r in caplog.records if "could not write" in r.message]) == 1
    assert w.pending("t", "a") is not None  # kept, readable, to be retried
    d.fail = False
    # The next retry: 1, 2, 5 ... s after the last failure; a file is in place a moment
    # before the writer counts it.
    wait_until(lambda: d.get_entry("t", "a") is not None and d.get_entry("t", "b") is not None
               and w.written == 2, timeout=20)
    assert w.written == 2 and w.pending("t", "a") is None
    w.close()


def test_a_removed_directory_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    d = disk(root)
    w = SnapshotWriter(d, delay_s=0.0, max_pending_bytes=1 << 20)
    os.rmdir(root)
    root.write_text("not a directory")  # the tier is gone: writes fail
    w.put(snap("a"))
    wait_until(lambda: w.failures >= 1)
    root.unlink()  # ... and comes back
    wait_until(lambda: d.get_entry("t", "a") is not None, timeout=20)
    assert (root / file_name("t", "a")).is_file()
    w.close()


def test_a_delete_during_a_write_is_not_undone(tmp_path: Path) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class SlowDisk(DiskTier):
        def save(self, *a: Any, **kw: Any) -> bool:
            entered.set()
            gate.wait(5)
            return super().save(*a, **kw)

    d = SlowDisk(tmp_path, FP, budget_bytes=1 << 20, ttl_s=3600)
    store = SnapshotStore(1 << 20, d, SnapshotWriter(d, delay_s=0.0,
                                                     max_pending_bytes=1 << 20))
    store.persist(snap("alice"))
    assert entered.wait(5)
    assert store.delete("t", "alice")  # while its file is being written
    gate.set()
    assert store.writer is not None
    store.writer.flush()
    assert d.get_entry("t", "alice") is None
    assert not list(tmp_path.glob("*.session"))


def test_write_behind_keeps_the_disk_copy_when_restored(tmp_path: Path) -> None:
    d = disk(tmp_path)
    store = SnapshotStore(1 << 20, d, SnapshotWriter(d, delay_s=0.0,
                                                     max_pending_bytes=1 << 20))
    store.persist(snap("alice"))
    assert store.writer is not None and store.writer.flush()
    found = store.take("t", "alice")
    assert found is not None and found[1] == "disk"
    assert d.get_entry("t", "alice") is not None  # what a crash falls back to
    store.put(snap("bob"), persisted=False)  # a RAM snapshot is written behind too
    assert store.writer.flush()
    assert d.get_entry("t", "bob") is not None
    assert [r[1] for r in store.listing()].count("bob") == 1  # listed once, from RAM


def test_a_torn_file_is_discarded_at_startup(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    d = disk(tmp_path)
    d.save("t", "whole", list(range(8)), b"x" * 100)
    d.save("t", "torn", list(range(8)), b"y" * 100)
    torn = tmp_path / file_name("t", "torn")
    torn.write_bytes(torn.read_bytes()[:-7])
    with caplog.at_level(logging.WARNING, logger="hugind.sessions.disk"):
        again = disk(tmp_path)
    assert again.get_entry("t", "whole") is not None
    assert again.get_entry("t", "torn") is None
    assert again.discarded == 1 and not torn.exists()
    assert len([r for r in caplog.records if "torn" in r.message]) == 1


def test_the_fingerprint_covers_the_whole_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    body = bytearray(os.urandom(3 << 20))
    a.write_bytes(bytes(body))
    body[(3 << 20) // 2] ^= 1  # same size, same first and last MiB: a "finetune"
    b.write_bytes(bytes(body))
    assert model_fingerprint(a) != model_fingerprint(b)


def test_the_fingerprint_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    model, cache = tmp_path / "m.gguf", tmp_path / "sessions"
    model.write_bytes(b"GGUF" + b"\0" * 4096)
    first = model_fingerprint(model, cache)
    assert (cache / "model-fingerprint.json").is_file()
    assert model_fingerprint(model, cache) == first
    with model.open("r+b") as f:  # rewritten in place: same inode and size
        f.seek(100)
        f.write(b"\1")
    assert model_fingerprint(model, cache) != first


class SlowEmbedder:
    def __init__(self) -> None:
        self.gate = threading.Event()

    def embed(self, inputs: list[list[int]]) -> list[Any]:
        self.gate.wait(5)
        return [[0.0] for _ in inputs]

    def close(self) -> None:
        pass


def test_the_embedding_queue_is_bounded_and_cancelled_requests_leave_it() -> None:
    emb = SlowEmbedder()
    w = EmbeddingWorker("e", lambda: emb, lambda _s, _e: None,  # type: ignore[arg-type,return-value]
                        max_queue=2)
    w.start()
    try:
        first = w.submit([[1]])
        second = w.submit([[2]])
        with pytest.raises(QueueFullError):
            w.submit([[3]])
        assert second.cancel()
        assert w.queue_depth == 1  # at once, not when its turn comes
        third = w.submit([[4]])
        emb.gate.set()
        assert first.result(5) == [[0.0]] and third.result(5) == [[0.0]]
        wait_until(lambda: w.queue_depth == 0)
        assert w.requests == 2
    finally:
        w.stop(5)


def test_without_write_behind_ram_overflow_still_spills_to_disk(tmp_path: Path) -> None:
    d = disk(tmp_path)
    store = SnapshotStore(100, d)  # sessions.flush_s: 0
    store.put(snap("alice"), persisted=True)  # "clean" means nothing without a writer
    store.put(snap("bob"))  # over the RAM budget: alice leaves RAM
    assert d.get_entry("t", "alice") is not None
    assert store.take("t", "alice") is not None
