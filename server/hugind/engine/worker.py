"""One thread owns one llama.cpp context and runs a continuous-batching scheduler over it.

Threading contract: ``ModelWorker`` methods without a leading underscore are called from the
event loop thread and only touch the inbox (a thread-safe queue), the waiting counter (under a
lock) and ``Job.cancelled``. Everything else, the context, the slots and the session store, is
used by the worker thread alone, except that while it waits, the threads of its sampling pool
may each run one sequence's sampler (see ``_sample_ahead``).

Each step decodes one token of every decoding sequence together (one ``llama_decode``), then
reads one chunk of at most ``n_ubatch`` prompt tokens of one prefilling sequence (see ``_step``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hugind.engine.jobs import Job
from hugind.engine.stops import TextStream
from hugind.engine.types import (
    FinishReason,
    TokenEvent,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from hugind.errors import InternalError, InvalidRequestError, QueueFullError
from hugind.llama import GenerationContext, Sampler, SamplerSpec
from hugind.llama.sampler import GrammarError
from hugind.sessions import Snapshot, SnapshotStore, common_prefix

log = logging.getLogger(__name__)

_STOP = object()

# Prefill runs in chunks whose starts and lengths (all but the last) are multiples of QUANTUM,
# each holding at least ``_min_chunk`` rows when the prompt (or the part not reused) has that
# many; only whole QUANTUM cells of a prompt read that way count as reusable. llama.cpp's CPU
# kernels change with a chunk's row count (4-row GEMM or 1-row GEMV with weight repacking, a
# tiled K-quant matmul from 8 rows, flash attention's tiled kernel from 64): under these rules
# every reusable position takes the same kernels whether its prompt was read whole, resumed
# from a session or split across steps, so a resumed conversation gives exactly the output of
# a fresh one. Decoded tokens (1-row steps) are never reused for the same reason: the next turn
# re-reads the previous reply.
QUANTUM = 16


def chunk_size(pending: int, n_ubatch: int, min_chunk: int) -> int:
    """How many of ``pending`` prompt tokens the next chunk reads (see QUANTUM): all of them
    if they fit one ubatch, else whole cells, leaving at least ``min_chunk`` for later."""
    if pending <= n_ubatch:
        return pending
    size = max(QUANTUM, n_ubatch - n_ubatch % QUANTUM)  # an n_ubatch under QUANTUM: one cell
    while size > min_chunk and pending - size < min_chunk:
        size -= QUANTUM
    return size


def plan_packed(pending: list[int], cells_budget: int, tails_budget: int,
                ) -> tuple[list[int], list[int]]:
    """How many prompt tokens each of several prefilling jobs reads this step, in two calls:
    whole cells (``cells``: multiples of QUANTUM, at least one cell, ``cells_budget`` in all,
    shortest prompts first), then the rest of every prompt left with under a cell
    (``tails``, ``tails_budget`` in all). Measured in-process on Gemma 3 (CPU): prompts read
    together in whole cells give KV bit-identical to reading each alone, and a tail read
    beside others does not (it is never reused: only whole cells are)."""
    cells = [0] * len(pending)
    budget = cells_budget - cells_budget % QUANTUM
    for i in sorted(range(len(pending)), key=lambda i: pending[i]):
        take = min(pending[i] - pending[i] % QUANTUM, budget)
        if take >= QUANTUM:
            cells[i] = take
            budget -= take
    tails = [0] * len(pending)
    for i, n in enumerate(pending):
        rest = n - cells[i]
        if 0 < rest < QUANTUM and rest <= tails_budget:
            tails[i] = rest
            tails_budget -= rest
    return cells, tails


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


class ModelWorker:
    """Owns a :class:`GenerationContext` on its own thread; see the module docstring."""

    def __init__(self, name: str, factory: Callable[[], GenerationContext], *,
                 max_queue: int, store_factory: Callable[[GenerationContext], SnapshotStore | None],
                 on_state: Callable[[str, str | None], None]) -> None:
        self.name = name
        self.max_queue = max_queue
        self.counters = Counters()
        self.ctx: GenerationContext | None = None
        self._factory = factory
        self._store_factory = store_factory
        self._on_state = on_state
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._n_waiting = 0
        self._waiting: deque[Job] = deque()
        self._active: list[Job] = []
        self._slots: list[Slot] = []
        self._store: SnapshotStore | None = None
        self._resident: list[dict[str, Any]] = []
        self._min_chunk = QUANTUM  # fewest rows per prompt chunk (see QUANTUM)
        self._packs = False  # read several waiting prompts in one step (see _step)
        self._sampling_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread = threading.Thread(target=self._run, name=f"hugind-{name}", daemon=True)
        self.ready = threading.Event()

    # -- event-loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue all of ``jobs`` or none of them."""
        if len(jobs) > self.max_queue:
            raise InvalidRequestError(
                f"this request needs {len(jobs)} generations (n x prompts, or best_of) but "
                f"model '{self.name}' queues at most {self.max_queue}", param="n")
        with self._lock:
            if self._n_waiting + len(jobs) > self.max_queue:
                raise QueueFullError(self.name, self.max_queue)
            self._n_waiting += len(jobs)
        for job in jobs:
            self._inbox.put(job)

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self._inbox.put(None)  # wake the worker if it is idle

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the worker thread between two steps."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._inbox.put((fn, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        store = self._store.stats() if self._store else None
        return {
            "active_sequences": len(self._active),
            "queue_depth": self._n_waiting,
            "slots": len(self._slots),
            "resident_sessions": sum(1 for r in self._resident if r["name"]),
            "ram_sessions": store.ram_sessions if store else 0,
            "ram_bytes": store.ram_bytes if store else 0,
            "disk_sessions": store.disk_sessions if store else 0,
            "disk_bytes": store.disk_bytes if store else 0,
            "discarded_files": store.discarded_files if store else 0,
            **self.counters.__dict__,
        }

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.ctx = self._factory()
            self._store = self._store_factory(self.ctx)
            self._slots = [Slot(seq=i) for i in range(self.ctx.n_seq)]
            self._min_chunk = max(QUANTUM, self.ctx.min_chunk)
            self._packs = (self._min_chunk == QUANTUM and self.ctx.n_ubatch >= QUANTUM
                           and not self.ctx.params.batch_invariant)
            workers = min(self.ctx.n_threads, self.ctx.n_seq)
            if workers > 1:
                self._sampling_pool = concurrent.futures.ThreadPoolExecutor(
                    workers, thread_name_prefix=f"hugind-{self.name}-sample")
        except Exception as exc:  # noqa: BLE001 - any load failure marks the model failed
            log.error("model %s failed to load: %s", self.name, exc)
            self._on_state("failed", str(exc))
            self._fail_inbox(exc)
            return
        self._on_state("ready", None)
        self.ready.set()
        try:
            while self._drain(block=not self._active and not self._waiting):
                self._admit()
                if self._active:
                    self._step()
                self._publish()
        except Exception:
            log.exception("worker for %s crashed", self.name)
            self._on_state("failed", "the engine worker crashed; see the server log")
            for job in [*self._active, *self._waiting]:
                job.emit(TokenEvent("", finish_reason=FinishReason.ERROR,
                                    error=InternalError("the engine worker crashed")))
        finally:
            self._shutdown()

    def _fail_inbox(self, exc: Exception) -> None:
        while True:
            try:
                item = self._inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _STOP:
                return
            if isinstance(item, Job):
                item.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=exc))
            elif isinstance(item, tuple):
                item[1].set_exception(exc)

    def _drain(self, *, block: bool) -> bool:
        try:
            item = self._inbox.get(timeout=1.0) if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if item is _STOP:
                return False
            if isinstance(item, Job):
                self._waiting.append(item)
            elif isinstance(item, tuple):
                fn, fut = item
                try:
                    fut.set_result(fn())
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    fut.set_exception(exc)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _publish(self) -> None:
        self._resident = [
            {"tenant": s.tenant, "name": s.session, "tokens": len(s.tokens),
             "last_used": s.last_used, "busy": s.job is not None}
            for s in self._slots
        ]

    # -- admission ---------------------------------------------------------------------------

    def _dequeued(self) -> None:
        with self._lock:
            self._n_waiting -= 1

    def _admit(self) -> None:
        for job in [j for j in self._active if j.cancelled]:
            self.counters.cancelled += 1
            self._finish(job, FinishReason.CANCELLED)
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                self._dequeued()
                continue
            slot = self._pick_slot(job)
            if slot is None:
                return
            self._waiting.popleft()
            self._dequeued()
            try:
                self._bind(job, slot)
            except InvalidRequestError as exc:
                job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=exc))
                slot.job = None
            except Exception:  # one bad request must not take the model down
                log.exception("could not start a request on model %s", self.name)
                job.emit(TokenEvent("", finish_reason=FinishReason.ERROR,
                                    error=InternalError("the request could not be started")))
                slot.job = None
                self._clear_slot(slot)

    def _pick_slot(self, job: Job) -> Slot | None:
        req = job.req
        idle = [s for s in self._slots if s.job is None]
        if not idle:
            return None
        if req.session is not None:
            for s in self._slots:
                if (s.tenant, s.session) == (req.tenant, req.session):
                    if s.job is None:
                        return s
                    job.store_session = False  # same conversation already running
                    break
        else:  # the idle anonymous sequence of this caller with the most reusable tokens
            best, best_len = None, 0
            for s in idle:
                if s.tenant == req.tenant and s.session is None:
                    n = self._reusable(s, req.prompt_tokens)
                    if n > best_len:
                        best, best_len = s, n
            if best is not None:
                return best
        empty = [s for s in idle if not s.tokens]
        if empty:
            return min(empty, key=self._runs_with)
        # Prefer evicting anonymous sequences, then keeping the busy ones contiguous, then
        # the least recently used.
        return min(idle, key=lambda s: (s.session is not None, self._runs_with(s), s.last_used))

    def _runs_with(self, slot: Slot) -> int:
        """Runs of consecutive sequence ids among the busy slots if ``slot`` became busy.

        llama.cpp puts only consecutive sequence ids in one ubatch, and each ubatch reads all
        the weights once (measured: decode rows on sequences 0, 1, 3 take 47 ms a step, on
        0, 1, 2 34-38 ms)."""
        busy = sorted(s.seq for s in self._slots if s.job is not None or s is slot)
        return sum(1 for i, q in enumerate(busy) if i == 0 or q != busy[i - 1] + 1)

    def _reusable(self, slot: Slot, prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` the slot's KV can give exactly: whole cells
        of its exact prefix, leaving the rest at least one chunk (see QUANTUM)."""
        n = min(common_prefix(slot.tokens, prompt), len(prompt) - 1, slot.exact)
        n -= n % QUANTUM
        while n > 0 and len(prompt) - n < self._min_chunk:
            n -= QUANTUM
        return n

    def _evict(self, slot: Slot) -> None:
        ctx = self.ctx
        assert ctx is not None
        if slot.session is not None and self._store is not None:
            tokens = self._exact_prefix(slot)
            if tokens:
                self._store.put(Snapshot(slot.tenant or "", slot.session, tokens,
                                         ctx.state_get(slot.seq), slot.last_used))
                self.counters.snapshots += 1
        self._clear_slot(slot)

    def _clear_slot(self, slot: Slot) -> None:
        """Empty the slot's KV and forget whose it was."""
        assert self.ctx is not None
        self.ctx.seq_clear(slot.seq)
        slot.tokens, slot.exact = [], 0
        slot.tenant = slot.session = None

    def _exact_prefix(self, slot: Slot) -> list[int]:
        """Trim the slot's KV to its exactly reusable prefix (when the cache can rewind) and
        return those tokens: what a snapshot of it may keep."""
        assert self.ctx is not None
        if slot.exact < len(slot.tokens) and self.ctx.can_rewind and self.ctx.seq_rm(
                slot.seq, slot.exact, -1):
            slot.tokens = slot.tokens[:slot.exact]
        return list(slot.tokens)

    def _restore(self, slot: Slot, tenant: str, name: str) -> None:
        if self._store is None:
            return
        found = self._store.take(tenant, name)
        if found is None:
            return
        snap, tier = found
        ctx = self.ctx
        assert ctx is not None
        if ctx.state_set(slot.seq, snap.data):
            slot.tokens = list(snap.tokens)
            slot.exact = len(slot.tokens)
            if tier == "ram":
                self.counters.restored_ram += 1
            else:
                self.counters.restored_disk += 1
        else:
            log.warning("session snapshot for %s could not be restored; starting fresh", name)
            ctx.seq_clear(slot.seq)

    def _bind(self, job: Job, slot: Slot) -> None:
        ctx = self.ctx
        assert ctx is not None
        req = job.req
        named = req.session is not None and job.store_session
        owned = (slot.tenant, slot.session) == (req.tenant, req.session) and named
        if not owned and (slot.session is not None or slot.tenant != req.tenant):
            self._evict(slot)
        if named and not owned:
            assert req.session is not None
            self._restore(slot, req.tenant, req.session)
        prompt = req.prompt_tokens
        # Prompt logprobs need every prompt token's logits, so such a request reuses nothing.
        reuse = req.use_cache and req.prompt_logprobs is None
        n = self._reusable(slot, prompt) if reuse else 0
        if n < len(slot.tokens) and not (ctx.can_rewind and ctx.seq_rm(slot.seq, n, -1)):
            ctx.seq_clear(slot.seq)
            n = 0
        slot.tokens = slot.tokens[:n]
        slot.exact = n
        slot.tenant = req.tenant
        slot.session = req.session if named else None
        slot.job = job
        job.slot = slot
        job.pending = list(prompt[n:])
        job.cached_tokens = n
        if req.prompt_logprobs is not None:
            first = ctx.vocab.piece(prompt[0])
            job.prompt_lps = [TokenLogprob(first.decode("utf-8", "replace"), None, list(first),
                                           [])]
        job.text = TextStream(req.stop)
        job.sampler = self._make_sampler(job)
        self.counters.requests += 1
        if n:
            self.counters.cache_hits += 1
            self.counters.reused_tokens += n
        self._active.append(job)

    def _make_sampler(self, job: Job) -> Sampler:
        sp = job.req.sampling
        seed = sp.seed if sp.seed is not None else int(time.time_ns() & 0xFFFFFFFF)
        spec = SamplerSpec(
            temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p, min_p=sp.min_p,
            repeat_penalty=sp.repeat_penalty, frequency_penalty=sp.frequency_penalty,
            presence_penalty=sp.presence_penalty, logit_bias=dict(sp.logit_bias), seed=seed,
            grammar=sp.grammar,
        )
        assert self.ctx is not None
        try:
            return Sampler(self.ctx, spec)
        except GrammarError as exc:
            raise InvalidRequestError(f"grammar rejected by llama.cpp: {exc}",
                                      param="response_format") from None

    # -- one decode step ---------------------------------------------------------------------

    def _step(self) -> None:
        """One scheduler step: a token for every decoding sequence, then one prompt chunk.

        The two go to llama.cpp as two ``llama_decode`` calls. With one KV stream per sequence
        llama.cpp splits a mixed batch into ubatches holding an equal number of tokens per
        sequence anyway, so one call never computed them together; but it pulled the chunk's
        first token into the decode rows' ubatch, where attention took another kernel than in
        a fresh prefill (measured with ``batch_invariant``: a session resumed beside three
        decoding streams differed from a fresh solo read in 3 of 10 trials; 0 of 10 now).
        Alone, a chunk is read exactly as it would be without neighbours.

        Several prompts waiting at once (a burst of requests) are read together, in whole
        cells and then their tails (see ``plan_packed``), so their streams start on the same
        step instead of one step after another. Not with ``batch_invariant`` (a tail read
        beside others rounds differently from one read alone), nor where chunks need more
        rows than a cell (flash attention on the CPU), nor for prompt logprobs.
        """
        decoding = sorted((j for j in self._active if j.next_token is not None),
                          key=lambda j: j.slot.seq)
        if decoding:
            self._decode_rows(decoding)
        prefilling = [j for j in self._active if j.pending]
        packable = [j for j in prefilling if j.prompt_lps is None] if self._packs else []
        if len(packable) > 1:
            self._prefill_packed(packable)
        elif prefilling:
            self._prefill_chunk(prefilling[0])
        self.counters.steps += 1

    def _decode_rows(self, jobs: list[Job]) -> None:
        # Rows in ascending sequence order: llama.cpp puts only consecutive sequence ids in
        # one ubatch (measured: 4 decode rows in order [2, 0, 3, 1] take 1.4x as long).
        ctx = self.ctx
        assert ctx is not None
        tokens = [j.next_token for j in jobs]
        pos = [len(j.slot.tokens) for j in jobs]
        rc = ctx.decode(tokens, pos, [j.slot.seq for j in jobs], [True] * len(jobs))
        if rc != 0:
            self._decode_failed(rc)
            return
        sampled = self._sample_ahead(jobs)
        for row, (job, token) in enumerate(zip(jobs, tokens, strict=True)):
            job.slot.tokens.append(token)
            job.next_token = None
            self._sample(job, row, sampled.get(row))

    def _sample_ahead(self, jobs: list[Job]) -> dict[int, int]:
        """Sample the rows whose llama.cpp chains walk the whole vocabulary (~2.3 ms a row for
        Gemma 3) on the sampling pool, all at once. Each sampler runs on one thread and keeps
        its own RNG, and llama.cpp's calls release the GIL, so the tokens are those of
        sampling the rows one after another. Measured on this 2-core box: 4 rows 10.5 -> 6.2
        ms alone, but only 10.9 -> ~9.5 ms right after a decode, while ggml's OpenMP threads
        still spin; a GPU box leaves its cores free for it."""
        pool = self._sampling_pool
        rows = [(row, job) for row, job in enumerate(jobs)
                if not job.cancelled and job.req.max_tokens > 0 and job.sampler.costly]
        if pool is None or len(rows) < 2:
            return {}
        ctx = self.ctx
        assert ctx is not None
        ctx.logits(0)  # llama.cpp reorders its output rows on the first read: do it once, here
        tokens = pool.map(lambda rj: rj[1].sampler.sample(ctx, rj[0]), rows)
        return {row: token for (row, _), token in zip(rows, tokens, strict=True)}

    def _prefill_chunk(self, job: Job) -> None:
        ctx = self.ctx
        assert ctx is not None
        slot = job.slot
        size = chunk_size(len(job.pending), ctx.n_ubatch, self._min_chunk)
        chunk = job.pending[:size]
        start = len(slot.tokens)
        scoring = job.prompt_lps is not None  # row i predicts the token after chunk[i]
        logits = [scoring] * len(chunk)
        last = size == len(job.pending)
        if last:
            logits[-1] = True
        rc = ctx.decode(chunk, list(range(start, start + size)), [slot.seq] * size, logits)
        if rc != 0:
            self._decode_failed(rc)
            return
        job.pending = job.pending[size:]
        slot.tokens.extend(chunk)
        self.counters.prefilled_tokens += size
        if scoring:
            self._score_prompt(job, chunk + job.pending[:1])
        if last:
            self._prompt_read(job, size - 1)

    def _prefill_packed(self, jobs: list[Job]) -> None:
        ctx = self.ctx
        assert ctx is not None
        cells, tails = plan_packed([len(j.pending) for j in jobs], ctx.n_ubatch, ctx.n_batch)
        # Something is always read: the shortest prompt has whole cells within an n_ubatch of
        # at least a cell (see _packs), or a tail under n_batch.
        assert any(cells) or any(tails)
        self.counters.packed_reads += 1
        for sizes in (cells, tails):
            pieces = sorted(((j, n) for j, n in zip(jobs, sizes, strict=True) if n),
                            key=lambda jn: jn[0].slot.seq)  # one ubatch wants ascending ids
            if pieces and not self._read_pieces(pieces):
                return

    def _read_pieces(self, pieces: list[tuple[Job, int]]) -> bool:
        """Read the next ``n`` prompt tokens of each job in one ``llama_decode``."""
        ctx = self.ctx
        assert ctx is not None
        tokens: list[int] = []
        pos: list[int] = []
        seqs: list[int] = []
        logits: list[bool] = []
        for job, n in pieces:
            start = len(job.slot.tokens)
            tokens += job.pending[:n]
            pos += range(start, start + n)
            seqs += [job.slot.seq] * n
            logits += [False] * (n - 1) + [n == len(job.pending)]
        rc = ctx.decode(tokens, pos, seqs, logits)
        if rc != 0:
            self._decode_failed(rc)
            return False
        row = 0
        for job, n in pieces:
            job.slot.tokens.extend(job.pending[:n])
            job.pending = job.pending[n:]
            self.counters.prefilled_tokens += n
            row += n
            if not job.pending:
                self._prompt_read(job, row - 1)
        return True

    def _prompt_read(self, job: Job, row: int) -> None:
        """The last prompt token is in (its logits at batch ``row``): mark what is reusable
        and sample the first token."""
        # A read shorter than a chunk's floor took other kernels: nothing reusable.
        read = len(job.req.prompt_tokens) - job.cached_tokens
        n = len(job.slot.tokens)
        job.slot.exact = n - n % QUANTUM if read >= self._min_chunk else 0
        self._sample(job, row)

    def _score_prompt(self, job: Job, tokens: list[int]) -> None:
        """Logprobs of the prompt tokens this chunk predicts; emitted once prefill is done."""
        assert job.prompt_lps is not None
        top_n = job.req.prompt_logprobs or 0
        for i in range(len(tokens) - 1):
            job.prompt_lps.append(self._logprob(i, tokens[i + 1], top_n))
        if not job.pending and not job.cancelled:
            job.emit(TokenEvent("", prompt_logprobs=job.prompt_lps))

    def _decode_failed(self, rc: int) -> None:
        log.error("llama_decode returned %d for model %s", rc, self.name)
        err = InternalError("the model failed to evaluate this batch")
        for job in list(self._active):
            job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=err))
            self._finish(job, None)
            if job.slot is not None:  # its KV may hold part of the failed batch
                self._clear_slot(job.slot)

    def _sample(self, job: Job, row: int, token: int | None = None) -> None:
        ctx = self.ctx
        assert ctx is not None and job.text is not None
        if job.cancelled:
            return
        req = job.req
        if req.max_tokens <= 0:  # scoring only (echo with max_tokens 0): nothing to generate
            self._finish(job, FinishReason.LENGTH)
            return
        if token is None:
            token = job.sampler.sample(ctx, row)
        lps = [self._logprob(row, token, req.top_logprobs)] if req.top_logprobs is not None else []
        if ctx.vocab.is_eog(token) and not req.ignore_eos:
            self._finish(job, FinishReason.STOP, tail=job.text.flush())
            return
        job.n_generated += 1
        self.counters.generated_tokens += 1
        text = job.text.push(ctx.vocab.piece(token))
        if job.text.stopped:
            self._finish(job, FinishReason.STOP, tail=text, token=token, logprobs=lps)
        elif job.n_generated >= req.max_tokens or len(job.slot.tokens) + 1 >= ctx.n_ctx_seq:
            self._finish(job, FinishReason.LENGTH, tail=text + job.text.flush(), token=token,
                         logprobs=lps)
        else:
            job.next_token = token
            job.emit(TokenEvent(text, [token], lps))

    def _logprob(self, row: int, token: int, top_n: int) -> TokenLogprob:
        assert self.ctx is not None
        vocab = self.ctx.vocab
        logits = self.ctx.logits(row).astype(np.float64)
        mx = float(logits.max())
        lse = mx + math.log(float(np.exp(logits - mx).sum()))
        top: list[TopLogprob] = []
        if top_n > 0:
            idx = np.argpartition(-logits, top_n)[:top_n]
            idx = idx[np.argsort(-logits[idx])]
            for t in idx:
                piece = vocab.piece(int(t))
                top.append(TopLogprob(piece.decode("utf-8", "replace"),
                                      float(logits[t] - lse), list(piece)))
        piece = vocab.piece(token)
        return TokenLogprob(piece.decode("utf-8", "replace"), float(logits[token] - lse),
                            list(piece), top)

    def _finish(self, job: Job, reason: FinishReason | None, *, tail: str = "",
                token: int | None = None, logprobs: list[TokenLogprob] | None = None) -> None:
        if job.done:
            return
        job.done = True
        if job in self._active:
            self._active.remove(job)
        if job.sampler is not None:
            job.sampler.close()
        slot = job.slot
        if slot is not None:
            slot.job = None
            slot.last_used = time.time()
        if reason is not None and reason is not FinishReason.CANCELLED:
            usage = Usage(len(job.req.prompt_tokens), job.n_generated, job.cached_tokens)
            job.emit(TokenEvent(tail, [token] if token is not None else [], logprobs or [],
                                finish_reason=reason, usage=usage))

    # -- sessions (called through ``call``) --------------------------------------------------

    def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        rows = [{"name": s.session, "tokens": len(s.tokens), "tier": "kv",
                 "bytes": 0, "last_used": s.last_used}
                for s in self._slots if s.tenant == tenant and s.session is not None]
        if self.ctx is not None:
            per_token = self._kv_bytes_per_token()
            for r in rows:
                r["bytes"] = r["tokens"] * per_token
        if self._store is not None:
            seen = {r["name"] for r in rows}
            for t, name, n, tier, size, last in self._store.listing():
                if t == tenant and name not in seen:
                    rows.append({"name": name, "tokens": n, "tier": tier, "bytes": size,
                                 "last_used": last})
        return rows

    def _kv_bytes_per_token(self) -> int:
        for s in self._slots:
            if s.tokens and s.job is None and self.ctx is not None:
                return len(self.ctx.state_get(s.seq)) // max(len(s.tokens), 1)
        return 0

    def delete_session(self, tenant: str, name: str) -> bool:
        found = False
        for s in self._slots:
            if (s.tenant, s.session) == (tenant, name):
                if s.job is not None:
                    s.job.store_session = False
                    s.session = None
                else:
                    self._clear_slot(s)
                found = True
        if self._store is not None and self._store.delete(tenant, name):
            found = True
        return found

    def _shutdown(self) -> None:
        if self._sampling_pool is not None:
            self._sampling_pool.shutdown()
        if self.ctx is None:
            return
        try:
            if self._store is not None and self._store.disk is not None:
                for s in self._slots:
                    if s.session is not None and s.job is None and self._exact_prefix(s):
                        self._store.disk.save(s.tenant or "", s.session, list(s.tokens),
                                              self.ctx.state_get(s.seq), s.last_used)
                self._store.flush_to_disk()
        except OSError as exc:
            log.warning("could not persist sessions for %s: %s", self.name, exc)
        self.ctx.close()
