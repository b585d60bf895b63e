"""Prefixes shared within one API key, stale copies of a shared store's conversations, and
what a prompt read part way leaves reusable (the sequence table on a fake context)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hugind.engine.chunking import QUANTUM
from hugind.engine.counters import Counters
from hugind.engine.jobs import Job
from hugind.engine.slots import MIN_SHARED, SlotTable
from hugind.sessions import DiskTier, Snapshot, SnapshotStore, SnapshotWriter, Stamp
from tests.fake_llama import FakeContext
from tests.unit.test_slot_choice import _job
from tests.unit.test_worker_faults import Harness, events, wait_until

SYSTEM = list(range(1, 161))  # ten cells
TAIL = list(range(900, 920))  # what follows it: at least one chunk's rows (QUANTUM)


def _table(store: SnapshotStore | None = None) -> tuple[SlotTable, FakeContext]:
    ctx = FakeContext(n_seq=4)
    return SlotTable(ctx, store, Counters(), min_chunk=QUANTUM), ctx


def _hold(table: SlotTable, seq: int, tokens: list[int], tenant: str,
          session: str | None = None) -> None:
    slot = table.slots[seq]
    table.ctx.state_set(seq, json.dumps(tokens).encode())
    slot.tokens, slot.exact, slot.tenant, slot.session = list(tokens), len(tokens), tenant, session


def _start(table: SlotTable, job: Job) -> int:
    slot = table.pick(job)
    assert slot is not None
    table.bind(job, slot)
    return slot.seq


def test_a_new_sequence_borrows_the_keys_longest_prefix() -> None:
    table, ctx = _table()
    _hold(table, 0, [*SYSTEM, 500, 501], "t", "alice")
    job = _job([*SYSTEM, *TAIL], session="bob")
    seq = _start(table, job)
    assert seq != 0
    assert job.cached_tokens == len(SYSTEM)
    assert ctx.kv[seq] == SYSTEM  # the donor's KV, cut to the shared prefix
    assert job.pending == TAIL
    assert ctx.kv[0] == [*SYSTEM, 500, 501]  # the donor keeps its own
    assert table.counters.shared_prefix_tokens == len(SYSTEM)


def test_prefixes_never_cross_api_keys() -> None:
    table, ctx = _table()
    _hold(table, 0, [*SYSTEM, 500], "other-key", "alice")
    job = _job([*SYSTEM, *TAIL], tenant="t", session="bob")
    seq = _start(table, job)
    assert job.cached_tokens == 0 and ctx.kv[seq] == []
    assert table.counters.shared_prefixes == 0


def test_a_short_common_prefix_is_read_rather_than_copied() -> None:
    table, _ = _table()
    short = SYSTEM[:MIN_SHARED - QUANTUM]
    _hold(table, 0, [*short, 500], "t")
    job = _job([*short, *TAIL], session="bob")
    _start(table, job)
    assert job.cached_tokens == 0


def test_a_ram_snapshot_of_the_key_lends_its_prefix() -> None:
    store = SnapshotStore(1 << 20, None)
    store.put(Snapshot("t", "alice", [*SYSTEM, 7], json.dumps([*SYSTEM, 7]).encode()))
    store.put(Snapshot("u", "carl", [*SYSTEM, 8], json.dumps([*SYSTEM, 8]).encode()))
    table, ctx = _table(store)
    job = _job([*SYSTEM, *TAIL], session="bob")
    seq = _start(table, job)
    assert job.cached_tokens == len(SYSTEM) and ctx.kv[seq] == SYSTEM


def _shared_store(root: Path, replica: str, *, writer: bool = False) -> SnapshotStore:
    disk = DiskTier(root, {"model": "m"}, budget_bytes=1 << 20, ttl_s=3600, shared=True,
                    replica=replica)
    behind = SnapshotWriter(disk, delay_s=0.0, max_pending_bytes=1 << 20) if writer else None
    return SnapshotStore(1 << 20, disk, behind)


def test_a_copy_older_than_the_shared_stores_is_dropped(tmp_path: Path) -> None:
    here = _shared_store(tmp_path, "a")
    table, ctx = _table(here)
    _hold(table, 0, [*SYSTEM, 1], "t", "alice")
    table.slots[0].stamp = Stamp(1, "a")
    # replica b saved turn 2 of alice
    elsewhere = _shared_store(tmp_path, "b")
    newer = [*SYSTEM, 1, 2, 3]
    assert elsewhere.disk is not None
    elsewhere.disk.save("t", "alice", newer, json.dumps(newer).encode(), stamp=Stamp(2, "b"))
    job = _job([*newer, *TAIL], session="alice")
    seq = _start(table, job)
    assert table.counters.stale_dropped == 1
    assert ctx.kv[seq] == newer[:len(newer) - len(newer) % QUANTUM]
    assert table.slots[seq].stamp == Stamp(2, "b")
    assert job.cached_tokens == len(SYSTEM)


def test_a_current_copy_is_kept_and_a_deleted_one_dropped(tmp_path: Path) -> None:
    here = _shared_store(tmp_path, "a", writer=True)
    assert here.disk is not None and here.writer is not None
    held = [*SYSTEM, 1]
    here.disk.save("t", "alice", held, json.dumps(held).encode(), stamp=Stamp(1, "a"))
    table, _ = _table(here)
    _hold(table, 0, held, "t", "alice")
    table.slots[0].stamp = Stamp(1, "a")
    job = _job([*held, *TAIL], session="alice")
    assert _start(table, job) == 0 and table.counters.stale_dropped == 0
    table.release(job, keep=True, turn=True)
    assert table.slots[0].stamp == Stamp(2, "a") and table.slots[0].dirty
    table.persist(table.slots[0])
    assert here.writer.flush(5)
    assert here.disk.stamp("t", "alice") == Stamp(2, "a")
    assert here.disk.delete("t", "alice")  # as another replica's DELETE would
    job = _job([*held, *TAIL, 3], session="alice")
    _start(table, job)
    assert table.counters.stale_dropped == 1 and job.cached_tokens == 0
    here.close()


def test_a_client_leaving_mid_prompt_leaves_the_read_cells_reusable() -> None:
    ctx = FakeContext(n_seq=2, n_ubatch=64, n_ctx_seq=1024, decode_delay_s=0.05)

    async def run() -> None:
        h = Harness(ctx)
        try:
            prompt = list(range(1, 600))
            job = h.job(prompt, max_tokens=2)
            h.worker.submit(job)
            wait_until(lambda: len(ctx.kv[0]) >= 256, 5)
            h.worker.cancel(job)
            wait_until(lambda: job.done, 5)
            retry = h.job(prompt, max_tokens=2)
            h.worker.submit(retry)
            await events(retry)
            assert retry.cached_tokens >= 256
            assert retry.cached_tokens % QUANTUM == 0
        finally:
            h.close()
    asyncio.run(run())
