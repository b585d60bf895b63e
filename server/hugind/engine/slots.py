"""The sequence cache: which llama.cpp sequence holds whose conversation, which one a new
request gets (reuse, eviction), the snapshots that move conversations to and from the RAM and
disk tiers, and prompt prefixes shared between one API key's sequences.

Threading contract: a ``SlotTable`` belongs to its worker thread, like the context it manages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hugind.engine.chunking import reusable
from hugind.engine.counters import Counters
from hugind.engine.jobs import UNREAD, Job
from hugind.engine.ports import Context
from hugind.errors import ConflictError
from hugind.sessions import NO_STAMP, Snapshot, SnapshotStore, Stamp

# A prefix borrowed from another sequence must save at least this many tokens of prefill
# (copying a sequence's KV costs about what reading a few dozen tokens does on a CPU).
MIN_SHARED = 64
# RAM snapshots looked at for a borrowed prefix, newest first.
MAX_DONOR_SNAPSHOTS = 64

log = logging.getLogger(__name__)


def _busy(name: str) -> ConflictError:
    return ConflictError(f"session '{name}' is generating a turn; retry when it is over",
                         param="name", code="session_busy")


@dataclass(eq=False)
class Slot:
    """One llama.cpp sequence id and what its KV cells hold."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    exact: int = 0  # leading tokens whose KV a fresh prefill would reproduce bit for bit
    tenant: str | None = None
    session: str | None = None
    job: Job | None = None
    last_used: float = 0.0
    dirty: bool = False  # a named conversation whose last turn has not been sent to disk
    stamp: Stamp = NO_STAMP  # the stored turn its conversation descends from (or is)


class SlotTable:
    def __init__(self, ctx: Context, store: SnapshotStore | None, counters: Counters, *,
                 min_chunk: int) -> None:
        self.ctx = ctx
        self.store = store
        self.counters = counters
        self.min_chunk = min_chunk
        self.slots = [Slot(seq=i) for i in range(ctx.n_seq)]

    # -- choosing a sequence -----------------------------------------------------------------

    def pick(self, job: Job) -> Slot | None:
        req = job.req
        idle = [s for s in self.slots if s.job is None]
        if not idle:
            return None
        if req.session is not None:
            for s in self.slots:
                if (s.tenant, s.session) == (req.tenant, req.session):
                    if s.job is None:
                        return s
                    job.store_session = False  # same conversation already running
                    break
        else:  # the idle anonymous sequence of this caller with the most reusable tokens
            best, best_len = None, 0
            for s in idle:
                if s.tenant == req.tenant and s.session is None:
                    n = self.reusable(s, req.prompt_tokens)
                    if n > best_len:
                        best, best_len = s, n
            if best is not None:
                return best
        empty = [s for s in idle if not s.tokens]
        if empty:
            return min(empty, key=self.runs_with)
        # Prefer evicting anonymous sequences, then keeping the busy ones contiguous, then
        # the least recently used.
        return min(idle, key=lambda s: (s.session is not None, self.runs_with(s), s.last_used))

    def runs_with(self, slot: Slot) -> int:
        """Runs of consecutive sequence ids among the busy slots if ``slot`` became busy.

        llama.cpp puts only consecutive sequence ids in one ubatch, and each ubatch reads all
        the weights once (measured: decode rows on sequences 0, 1, 3 take 47 ms a step, on
        0, 1, 2 34-38 ms)."""
        busy = sorted(s.seq for s in self.slots if s.job is not None or s is slot)
        return sum(1 for i, q in enumerate(busy) if i == 0 or q != busy[i - 1] + 1)

    def reusable(self, slot: Slot, prompt: list[int]) -> int:
        return reusable(slot.tokens, slot.exact, prompt, self.min_chunk)

    @property
    def replica(self) -> str:
        disk = self.store.disk if self.store is not None else None
        return disk.replica if disk is not None else ""

    def bind(self, job: Job, slot: Slot) -> None:
        """Give ``slot`` to ``job``: evict or restore conversations as needed, keep the
        reusable prefix (its own, or one borrowed from a sequence of the same API key) and
        set the job's prompt tokens still to read."""
        ctx = self.ctx
        req = job.req
        named = req.session is not None and job.store_session
        if named:
            self.drop_stale(job)
        owned = (slot.tenant, slot.session) == (req.tenant, req.session) and named
        if owned:
            self.persist(slot)  # the previous turn reaches disk before this one changes it
        elif slot.session is not None or slot.tenant != req.tenant:
            self.evict(slot)
        if named and not owned:
            assert req.session is not None
            self.restore(slot, req.tenant, req.session)
        prompt = req.prompt_tokens
        # Prompt logprobs need every prompt token's logits, so such a request reuses nothing.
        reuse = req.use_cache and req.prompt_logprobs is None
        n = self.reusable(slot, prompt) if reuse else 0
        if n < len(slot.tokens) and not (ctx.can_rewind and ctx.seq_rm(slot.seq, n, -1)):
            ctx.seq_clear(slot.seq)
            n = 0
        slot.tokens = slot.tokens[:n]
        slot.exact = n
        if reuse and ctx.can_rewind:
            n = self._borrow_prefix(slot, req.tenant, prompt, n)
        slot.tenant = req.tenant
        slot.session = req.session if named else None
        slot.job = job
        job.slot = slot
        job.pending = list(prompt[n:])
        job.cached_tokens = n
        self.counters.requests += 1
        if n:
            self.counters.cache_hits += 1
            self.counters.reused_tokens += n

    def release(self, job: Job, *, keep: bool, turn: bool) -> None:
        """The job is over: ``turn`` when it finished a turn (to be saved), ``keep`` False
        when its KV may be damaged (a failed batch)."""
        slot = job.slot
        if slot is None:
            return
        slot.job = None
        slot.last_used = time.time()
        if not keep:
            self.clear(slot)
        elif turn and slot.session is not None and job.store_session and self.store is not None:
            slot.dirty = True
            slot.stamp = Stamp(slot.stamp.version + 1, self.replica)

    # -- prefixes shared within one API key -------------------------------------------------

    def _borrow_prefix(self, slot: Slot, tenant: str, prompt: list[int], n: int) -> int:
        """When another sequence of ``tenant`` (resident, or a RAM snapshot) holds a longer
        exact prefix of ``prompt`` than ``slot``'s ``n`` tokens, copy its KV into ``slot``
        and keep that prefix. Returns the tokens ``slot`` now gives. Never across API keys."""
        best, tokens, state = n + MIN_SHARED - 1, None, None

        def could_beat(held: list[int]) -> bool:  # a cheap test before the prefix match
            return len(held) > best < len(prompt) and held[best] == prompt[best] \
                and held[0] == prompt[0]

        for s in self.slots:
            if s is not slot and s.tenant == tenant and could_beat(s.tokens):
                m = self.reusable(s, prompt)
                if m > best:
                    best, tokens, state = m, s.tokens, lambda seq=s.seq: self.ctx.state_get(seq)
        if self.store is not None:
            for snap in self.store.recent(tenant, MAX_DONOR_SNAPSHOTS):
                if not could_beat(snap.tokens):
                    continue
                m = reusable(snap.tokens, len(snap.tokens), prompt, self.min_chunk)
                if m > best:
                    best, tokens, state = m, snap.tokens, lambda data=snap.data: data
        if tokens is None or state is None:
            return n
        ctx = self.ctx
        ctx.seq_clear(slot.seq)
        if not (ctx.state_set(slot.seq, state()) and ctx.seq_rm(slot.seq, best, -1)):
            log.warning("a shared prompt prefix could not be copied; reading it")
            ctx.seq_clear(slot.seq)
            slot.tokens, slot.exact = [], 0
            return 0
        slot.tokens, slot.exact = list(tokens[:best]), best
        self.counters.shared_prefixes += 1
        self.counters.shared_prefix_tokens += best - n
        return best

    # -- a store shared by several replicas -------------------------------------------------

    def drop_stale(self, job: Job) -> None:
        """Shared store: forget this replica's copy (KV or RAM) of the job's conversation
        when another replica saved a later turn of it, or deleted it; the store's version is
        then the one restored. A turn of ours not yet written is current: it is written only
        if no other replica saved that turn first (see ``DiskTier.save``)."""
        assert job.req.session is not None
        self._drop_stale(job.req.tenant, job.req.session, job.stored_stamp)

    def _drop_stale(self, tenant: str, name: str, stored: Stamp | object | None) -> None:
        store = self.store
        disk = store.disk if store is not None else None
        if store is None or disk is None or not disk.shared:
            return
        if stored is UNREAD:
            stored = disk.stamp(tenant, name)
        assert stored is None or isinstance(stored, Stamp)
        unwritten = store.unwritten(tenant, name)
        for s in self.slots:
            if (s.tenant, s.session) == (tenant, name) and s.job is None and not self._current(
                    s.stamp, stored, unwritten or s.dirty):
                self.clear(s)
                self.counters.stale_dropped += 1
        held = store.ram_stamp(tenant, name)
        if held is not None and not self._current(held, stored, unwritten):
            store.drop_ram(tenant, name)
            self.counters.stale_dropped += 1

    def _current(self, local: Stamp, stored: Stamp | None, unwritten: bool) -> bool:
        if unwritten:
            return True
        if stored is None:
            return False  # deleted (or evicted) by another replica
        # Our own later write may have landed after ``stored`` was read.
        return stored == local or (local.origin == self.replica
                                   and stored.version < local.version)

    # -- moving conversations between tiers -------------------------------------------------

    def evict(self, slot: Slot) -> None:
        if slot.session is not None and self.store is not None:
            tokens = self.exact_prefix(slot)
            if tokens:
                self.store.put(self._snapshot(slot, tokens), persisted=not slot.dirty)
                self.counters.snapshots += 1
        self.clear(slot)

    def persist(self, slot: Slot) -> None:
        """Send a finished turn of a named conversation to the disk tier (write-behind)."""
        if not slot.dirty or slot.session is None or self.store is None:
            return
        if not self.store.writes_behind:
            return  # it reaches disk when it leaves RAM or at shutdown
        slot.dirty = False
        tokens = self.exact_prefix(slot)
        if tokens:
            self.store.persist(self._snapshot(slot, tokens))

    def persist_idle(self) -> None:
        for s in self.slots:
            if s.dirty and s.job is None:
                self.persist(s)

    def _snapshot(self, slot: Slot, tokens: list[int]) -> Snapshot:
        return Snapshot(slot.tenant or "", slot.session or "", tokens,
                        self.ctx.state_get(slot.seq), slot.last_used, slot.stamp)

    def clear(self, slot: Slot) -> None:
        """Empty the slot's KV and forget whose it was."""
        self.ctx.seq_clear(slot.seq)
        slot.tokens, slot.exact = [], 0
        slot.tenant = slot.session = None
        slot.dirty = False
        slot.stamp = NO_STAMP

    def exact_prefix(self, slot: Slot) -> list[int]:
        """Trim the slot's KV to its exactly reusable prefix (when the cache can rewind) and
        return those tokens: what a snapshot of it may keep."""
        if slot.exact < len(slot.tokens) and self.ctx.can_rewind and self.ctx.seq_rm(
                slot.seq, slot.exact, -1):
            slot.tokens = slot.tokens[:slot.exact]
        return list(slot.tokens)

    def restore(self, slot: Slot, tenant: str, name: str) -> None:
        if self.store is None:
            return
        found = self.store.take(tenant, name)
        if found is None:
            return
        snap, tier = found
        if self.ctx.state_set(slot.seq, snap.data):
            slot.tokens = list(snap.tokens)
            slot.exact = len(slot.tokens)
            slot.stamp = snap.stamp
            if tier == "ram":
                self.counters.restored_ram += 1
            else:
                self.counters.restored_disk += 1
        else:
            log.warning("a session snapshot could not be restored; starting fresh")
            self.ctx.seq_clear(slot.seq)

    # -- the sessions API ---------------------------------------------------------------------

    def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        rows = [{"name": s.session, "tokens": len(s.tokens), "tier": "kv",
                 "bytes": self.ctx.state_size(s.seq), "last_used": s.last_used}
                for s in self.slots if s.tenant == tenant and s.session is not None]
        if self.store is not None:
            seen = {r["name"] for r in rows}
            for t, name, n, tier, size, last in self.store.listing():
                if t == tenant and name not in seen:
                    rows.append({"name": name, "tokens": n, "tier": tier, "bytes": size,
                                 "last_used": last})
        disk = self.store.disk if self.store is not None else None
        for r in rows:
            r["pinned"] = disk is not None and disk.is_pinned(tenant, r["name"])
        return rows

    def delete_session(self, tenant: str, name: str) -> bool:
        found = False
        for s in self.slots:
            if (s.tenant, s.session) == (tenant, name):
                if s.job is not None:
                    s.job.store_session = False
                    s.session = None
                    s.dirty = False
                else:
                    self.clear(s)
                found = True
        if self.store is not None and self.store.delete(tenant, name):
            found = True
        return found

    def export_session(self, tenant: str, name: str) -> tuple[list[int], bytes] | None:
        """The conversation's tokens and KV state from whichever tier holds it (a resident
        one is snapshotted from its sequence); None when there is no such session."""
        self._drop_stale(tenant, name, UNREAD)
        for s in self.slots:
            if (s.tenant, s.session) == (tenant, name):
                if s.job is not None:
                    raise _busy(name)
                tokens = self.exact_prefix(s)
                if tokens:
                    return tokens, self.ctx.state_get(s.seq)
        snap = self.store.peek(tenant, name) if self.store is not None else None
        return (list(snap.tokens), snap.data) if snap is not None else None

    def import_session(self, tenant: str, name: str, tokens: list[int], data: bytes) -> bool:
        """Make (tenant, name) hold ``tokens`` and ``data``, replacing what it held. The state
        is loaded into an idle empty sequence when there is one (it stays resident), so a
        state llama.cpp refuses changes nothing: False."""
        if self.store is None:
            return False
        mine = [s for s in self.slots if (s.tenant, s.session) == (tenant, name)]
        if any(s.job is not None for s in mine):
            raise _busy(name)
        spare = next((s for s in self.slots if s.job is None and not s.tokens), None)
        if spare is not None and not self.ctx.state_set(spare.seq, data):
            self.ctx.seq_clear(spare.seq)
            return False
        # Above every version stored so far, so a shared store takes it.
        held = [s.stamp.version for s in mine]
        if self.store.disk is not None and (on_disk := self.store.disk.stamp(tenant, name)):
            held.append(on_disk.version)
        stamp = Stamp(max(held, default=0) + 1, self.replica)
        for s in mine:
            self.clear(s)
        self.store.delete(tenant, name)
        if spare is None:
            self.store.put(Snapshot(tenant, name, list(tokens), data, stamp=stamp))
            return True
        spare.tokens, spare.exact = list(tokens), len(tokens)
        spare.tenant, spare.session = tenant, name
        spare.stamp = stamp
        spare.last_used = time.time()
        spare.dirty = True  # reaches disk like a finished turn
        return True

    def pin_session(self, tenant: str, name: str, *, pinned: bool) -> bool:
        """Pin or unpin a stored session in the disk tier (where write-behind keeps every
        session); False when there is no such session (or, unpinning, no such pin)."""
        disk = self.store.disk if self.store is not None else None
        if disk is None:
            raise ConflictError("pinned sessions live in the disk tier, and this model "
                                "has none", param="name", code="no_disk_tier")
        if not pinned:
            return disk.unpin(tenant, name)
        size = self._stored_size(tenant, name)
        if size is None:
            return False
        if not disk.pin(tenant, name, size):
            raise ConflictError(
                f"pinning session '{name}' would put pinned sessions over "
                f"sessions.disk_budget_mb ({disk.budget_bytes >> 20})", param="name",
                code="pins_over_budget")
        return True

    def _stored_size(self, tenant: str, name: str) -> int | None:
        assert self.store is not None and self.store.disk is not None
        entry = self.store.disk.get_entry(tenant, name)
        if entry is not None:
            return entry.size
        for s in self.slots:
            if (s.tenant, s.session) == (tenant, name):
                return self.ctx.state_size(s.seq) + 4 * len(s.tokens)
        snap = self.store.peek(tenant, name)
        return snap.nbytes if snap is not None else None

    def save_all(self) -> None:
        """At shutdown: every idle named conversation to disk, RAM snapshots too."""
        if self.store is None or self.store.disk is None:
            return
        for s in self.slots:
            if s.session is not None and s.job is None:
                tokens = self.exact_prefix(s)
                if tokens and (s.dirty or not self.store.has_on_disk(s.tenant or "",
                                                                     s.session)):
                    self.store.persist(self._snapshot(s, tokens))
                s.dirty = False
        self.store.flush_to_disk()

    def resident(self) -> list[dict[str, Any]]:
        return [{"tenant": s.tenant, "name": s.session, "tokens": len(s.tokens),
                 "last_used": s.last_used, "busy": s.job is not None} for s in self.slots]

