"""Continuous batching over one context: admission and the step.

Each step decodes one token of every decoding sequence together (one ``llama_decode``), then
reads one chunk of at most ``n_ubatch`` prompt tokens of one prefilling sequence, or of several
waiting prompts together (see ``step``).

Faults stay with the job that caused them: a sampler, grammar, detokenizer or logits read that
raises fails that job alone, and a ``llama_decode`` that fails fails the jobs of that batch;
the other streams go on. Grammar-constrained tokens, which can take far longer than a step
(a 20,000-way ``enum``), are drawn beside the step on a copy of their logits row, so they slow
only their own stream.

Threading contract: a ``Scheduler`` is used by its worker thread alone; the pools' threads only
run samplers on rows the worker hands them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from hugind.engine.chunking import QUANTUM, chunk_size, plan_packed
from hugind.engine.counters import Counters
from hugind.engine.jobs import Job, JobState
from hugind.engine.logprobs import token_logprob
from hugind.engine.outbox import Outbox
from hugind.engine.ports import Context
from hugind.engine.rendering import Draft
from hugind.engine.slots import SlotTable
from hugind.engine.stops import TextStream
from hugind.engine.types import FinishReason, TokenEvent, TokenLogprob, Usage
from hugind.errors import InternalError, OpenAIError, OverloadedError, RequestTimeoutError

log = logging.getLogger(__name__)

DRAW_GRACE_S = 0.010  # how long a step waits for grammar tokens drawn beside it


class Scheduler:
    def __init__(self, name: str, ctx: Context, slots: SlotTable, counters: Counters, *,
                 dequeued: Callable[[Job], None], wake: Callable[[], None],
                 queue_timeout_s: float = 0.0) -> None:
        self.name = name
        self.ctx = ctx
        self.slots = slots
        self.counters = counters
        self.waiting: deque[Job] = deque()
        self.active: list[Job] = []
        self.queue_timeout_s = queue_timeout_s
        self._dequeued = dequeued
        self._wake = wake
        self._min_chunk = max(QUANTUM, ctx.min_chunk)
        self._packs = (self._min_chunk == QUANTUM and ctx.n_ubatch >= QUANTUM
                       and not ctx.params.batch_invariant)
        workers = min(ctx.n_threads, ctx.n_seq)
        self._sampling_pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix=f"hugind-{name}-sample") if workers > 1 else None
        self._outbox = Outbox(name)
        self._draw_pool = concurrent.futures.ThreadPoolExecutor(
            max(1, min(4, ctx.n_seq)), thread_name_prefix=f"hugind-{name}-grammar")

    @property
    def runnable(self) -> bool:
        """Whether a step has work now (jobs drawing a token wake the worker when done)."""
        return any(j.state in (JobState.PREFILL, JobState.DECODE) for j in self.active)

    @property
    def admissible(self) -> bool:
        """Whether a waiting job can start now (a job holds its slot until it ends)."""
        return bool(self.waiting) and len(self.active) < self.ctx.n_seq

    @property
    def busy(self) -> bool:
        return bool(self.active or self.waiting)

    # -- admission ---------------------------------------------------------------------------

    def admit(self) -> None:
        for job in [j for j in self.active if j.cancelled]:
            self.counters.cancelled += 1
            self._finish(job, FinishReason.CANCELLED)
        if any(j.cancelled for j in self.waiting):
            for job in [j for j in self.waiting if j.cancelled]:
                self._drop_waiting(job)
        self._expire_waiting()
        while self.waiting:
            job = self.waiting[0]
            slot = self.slots.pick(job)
            if slot is None:
                return
            self.waiting.popleft()
            self._dequeued(job)
            try:
                self.slots.bind(job, slot)
                self._started(job)
            except Exception as exc:  # one bad request must not take the model down
                if not isinstance(exc, OpenAIError):
                    log.exception("could not start a request on model %s", self.name)
                self._fail(job, exc, keep_kv=False)

    def _drop_waiting(self, job: Job) -> None:
        self.waiting.remove(job)
        self._dequeued(job)
        job.state = JobState.DONE
        if job.sampler is not None:
            job.sampler.close()

    def _expire_waiting(self) -> None:
        now = time.monotonic()
        for job in [j for j in self.waiting if j.past_deadline(now)]:
            self._drop_waiting(job)
            job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=RequestTimeoutError(
                "the request waited in the queue past server.request_timeout_s")))
        # A prompt still being read when time is up ends with no output (what was read stays
        # reusable, as for a client that left); one generating ends at its next token
        # (``_take``).
        for job in [j for j in self.active if j.state is JobState.PREFILL
                    and j.past_deadline(now)]:
            self._finish(job, FinishReason.LENGTH, turn=False)
        if self.queue_timeout_s <= 0 or not self.waiting:
            return
        for job in [j for j in self.waiting if now - j.queued_at > self.queue_timeout_s]:
            self._drop_waiting(job)
            self.counters.queue_timeouts += 1
            job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=OverloadedError(
                f"the request waited over {self.queue_timeout_s:g} s for model "
                f"'{self.name}'; retry later", code="queue_timeout",
                headers={"Retry-After": "5"})))

    def _started(self, job: Job) -> None:
        req = job.req
        if req.prompt_logprobs is not None:
            first = self.ctx.vocab.piece(req.prompt_tokens[0])
            job.prompt_lps = [TokenLogprob(first.decode("utf-8", "replace"), None, list(first),
                                           [])]
        job.text = TextStream(req.stop)
        job.state = JobState.PREFILL
        job.outbox = self._outbox
        self.active.append(job)
        if job.sampler.deferred:
            job.sampler.prepare(self._draw_pool)  # the first mask, while the prompt is read

    # -- one decode step ---------------------------------------------------------------------

    def step(self) -> None:
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
        self._outbox.open()
        try:
            self._step()
        finally:
            self._outbox.flush()

    def _step(self) -> None:
        self.collect_drawn(DRAW_GRACE_S if self.runnable else 0.0)
        decoding = sorted((j for j in self.active if j.state is JobState.DECODE),
                          key=lambda j: j.slot.seq)
        if decoding:
            self._decode_rows(decoding)
        prefilling = [j for j in self.active if j.state is JobState.PREFILL]
        packable = [j for j in prefilling if j.prompt_lps is None] if self._packs else []
        if len(packable) > 1:
            self._prefill_packed(packable)
        elif prefilling:
            self._prefill_chunk(prefilling[0])
        self.counters.steps += 1

    def _decode_rows(self, jobs: list[Job]) -> None:
        # Rows in ascending sequence order: llama.cpp puts only consecutive sequence ids in
        # one ubatch (measured: 4 decode rows in order [2, 0, 3, 1] take 1.4x as long).
        tokens = [j.next_token for j in jobs]
        pos = [len(j.slot.tokens) for j in jobs]
        rc = self.ctx.decode(tokens, pos, [j.slot.seq for j in jobs], [True] * len(jobs))
        if rc != 0:
            self._decode_failed(rc, jobs)
            return
        sampled = self._sample_ahead(jobs)
        for row, (job, token) in enumerate(zip(jobs, tokens, strict=True)):
            job.slot.tokens.append(token)
            job.next_token = None
            self._guarded(job, self._sample, job, row, sampled.get(row))

    def _sample_ahead(self, jobs: list[Job]) -> dict[int, int | Exception]:
        """Sample the rows whose llama.cpp chains walk the whole vocabulary (~2.3 ms a row for
        Gemma 3) on the sampling pool, all at once. Each sampler runs on one thread and keeps
        its own RNG, and llama.cpp's calls release the GIL, so the tokens are those of
        sampling the rows one after another. Measured on this 2-core box: 4 rows 10.5 -> 6.2
        ms alone, but only 10.9 -> ~9.5 ms right after a decode, while ggml's OpenMP threads
        still spin; a GPU box leaves its cores free for it."""
        pool = self._sampling_pool
        rows = [(row, job) for row, job in enumerate(jobs)
                if not job.cancelled and job.req.max_tokens > 0 and job.sampler.costly
                and not job.sampler.deferred]
        if pool is None or len(rows) < 2:
            return {}
        ctx = self.ctx
        ctx.logits(0)  # llama.cpp reorders its output rows on the first read: do it once, here
        futures = [(row, pool.submit(job.sampler.sample, ctx, row)) for row, job in rows]
        out: dict[int, int | Exception] = {}
        for row, fut in futures:
            try:
                out[row] = fut.result()
            except Exception as exc:  # noqa: BLE001 - fails that row's job alone
                out[row] = exc
        return out

    def _prefill_chunk(self, job: Job) -> None:
        slot = job.slot
        size = chunk_size(len(job.pending), self.ctx.n_ubatch, self._min_chunk)
        chunk = job.pending[:size]
        start = len(slot.tokens)
        scoring = job.prompt_lps is not None  # row i predicts the token after chunk[i]
        logits = [scoring] * len(chunk)
        last = size == len(job.pending)
        if last:
            logits[-1] = True
        rc = self.ctx.decode(chunk, list(range(start, start + size)), [slot.seq] * size, logits)
        if rc != 0:
            self._decode_failed(rc, [job])
            return
        job.pending = job.pending[size:]
        slot.tokens.extend(chunk)
        self.counters.prefilled_tokens += size
        if not last and size >= self._min_chunk:
            self._mark_read(job)
        if scoring:
            self._guarded(job, self._score_prompt, job, chunk + job.pending[:1])
        if last and not job.done:
            self._guarded(job, self._prompt_read, job, size - 1)

    def _prefill_packed(self, jobs: list[Job]) -> None:
        cells, tails = plan_packed([len(j.pending) for j in jobs], self.ctx.n_ubatch,
                                   self.ctx.n_batch)
        # Something is always read: the shortest prompt has whole cells within an n_ubatch of
        # at least a cell (see _packs), or a tail under n_batch.
        assert any(cells) or any(tails)
        self.counters.packed_reads += 1
        for sizes in (cells, tails):
            pieces = sorted(((j, n) for j, n in zip(jobs, sizes, strict=True)
                             if n and not j.done),
                            key=lambda jn: jn[0].slot.seq)  # one ubatch wants ascending ids
            if pieces and not self._read_pieces(pieces):
                return

    def _read_pieces(self, pieces: list[tuple[Job, int]]) -> bool:
        """Read the next ``n`` prompt tokens of each job in one ``llama_decode``."""
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
        rc = self.ctx.decode(tokens, pos, seqs, logits)
        if rc != 0:
            self._decode_failed(rc, [j for j, _ in pieces])
            return False
        row = 0
        for job, n in pieces:
            job.slot.tokens.extend(job.pending[:n])
            job.pending = job.pending[n:]
            self.counters.prefilled_tokens += n
            row += n
            if not job.pending:
                self._guarded(job, self._prompt_read, job, row - 1)
            else:  # whole cells (a tail is always the last piece of a prompt)
                self._mark_read(job)
        return True

    @staticmethod
    def _mark_read(job: Job) -> None:
        """A prompt chunk other than the last is in: its whole cells are exact, so a client
        that leaves or times out now leaves them reusable for its retry (or another sequence
        of its API key)."""
        n = len(job.slot.tokens)
        job.slot.exact = n - n % QUANTUM

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
            job.prompt_lps.append(self._logprob(self.ctx.logits(i), tokens[i + 1], top_n))
        if not job.pending and not job.cancelled:
            job.emit(TokenEvent("", prompt_logprobs=job.prompt_lps))

    def _decode_failed(self, rc: int, jobs: list[Job]) -> None:
        """The batch failed (``rc`` 1: no KV room; negative: an error): its jobs fail, their
        sequences are cleared (their KV may hold part of it), every other stream goes on."""
        log.error("llama_decode returned %d for model %s (%d sequences in the batch)", rc,
                  self.name, len(jobs))
        err = InternalError("the model failed to evaluate this batch"
                            + (" (its KV cache is full)" if rc == 1 else ""))
        for job in jobs:
            self._fail(job, err, keep_kv=False)

    # -- tokens --------------------------------------------------------------------------------

    def _sample(self, job: Job, row: int, token: int | Exception | None = None) -> None:
        if job.cancelled:
            return
        req = job.req
        if req.max_tokens <= 0:  # scoring only (echo with max_tokens 0): nothing to generate
            self._finish(job, FinishReason.LENGTH)
            return
        if isinstance(token, Exception):
            raise token
        if token is None:
            sampler = job.sampler
            if sampler.deferred and not sampler.prepared:
                self._draw_later(job, row)
                return
            # A grammar whose mask was ready by the end of the decode costs what a plain
            # draw does: inline, without a thread handoff.
            token = sampler.sample(self.ctx, row)
            if sampler.deferred:
                sampler.prepare(self._draw_pool)
        lps = ([self._logprob(self.ctx.logits(row), token, req.top_logprobs)]
               if req.top_logprobs is not None else [])
        self._take(job, token, lps)

    def _draw_later(self, job: Job, row: int) -> None:
        logits = self.ctx.logits(row).copy()  # the next decode overwrites the row
        sampler, pool = job.sampler, self._draw_pool

        def draw() -> int:
            token = sampler.sample_row(logits)
            # The next token's mask, during the next decode; started before this token is
            # seen, so the next draw always finds it.
            sampler.prepare(pool)
            return token

        fut = pool.submit(draw)
        job.drawing = (fut, logits)
        job.draw_waited = False
        job.state = JobState.SAMPLING
        fut.add_done_callback(lambda _f: self._wake())

    def collect_drawn(self, wait_s: float = 0.0) -> None:
        """Take the tokens drawn beside the step; wait up to ``wait_s`` for missing ones."""
        drawing = [j for j in self.active if j.drawing is not None]
        if not drawing:
            return
        # Wait once per token, for draws begun last step: a quick grammar keeps pace with
        # the batch, and a slow one costs its neighbours one grace per token at most.
        fresh = [j.drawing[0] for j in drawing if j.drawing and not j.draw_waited]
        if wait_s > 0 and fresh:
            concurrent.futures.wait(fresh, wait_s)
        for job in drawing:
            job.draw_waited = True
        for job in drawing:
            assert job.drawing is not None
            fut, logits = job.drawing
            if not fut.done():
                continue
            job.drawing = None
            if job.cancelled or job.done:
                continue
            self._guarded(job, self._take_drawn, job, fut, logits)

    def _take_drawn(self, job: Job, fut: concurrent.futures.Future[int],
                    logits: np.ndarray) -> None:
        token = fut.result()
        top = job.req.top_logprobs
        self._take(job, token, [self._logprob(logits, token, top)] if top is not None else [])

    def _take(self, job: Job, token: int, lps: list[TokenLogprob]) -> None:
        ctx = self.ctx
        req = job.req
        stream = job.text
        assert stream is not None
        matching = stream.matching  # else the publisher makes the text (see rendering)
        if ctx.vocab.is_eog(token) and not req.ignore_eos:
            # A flush may complete a stop that a longer one kept pending.
            tail = stream.flush() if matching else ""
            self._finish(job, FinishReason.STOP, tail=tail, stop=stream.matched)
            return
        job.n_generated += 1
        self.counters.generated_tokens += 1
        text = stream.push(ctx.vocab.piece(token)) if matching else ""
        if stream.stopped:
            self._finish(job, FinishReason.STOP, tail=text, token=token, logprobs=lps,
                         stop=stream.matched)
        elif (job.n_generated >= req.max_tokens or len(job.slot.tokens) + 1 >= ctx.n_ctx_seq
              or job.past_deadline(time.monotonic())):
            tail = (text + stream.flush()) if matching else ""
            self._finish(job, FinishReason.LENGTH, tail=tail, token=token, logprobs=lps)
        else:
            job.next_token = token
            job.state = JobState.DECODE
            job.emit(TokenEvent(text, [token], lps) if matching
                     else Draft(ctx.vocab.piece(token), [token], lps))

    def _logprob(self, logits: np.ndarray, token: int, top_n: int) -> TokenLogprob:
        return token_logprob(logits, token, top_n, self.ctx.vocab.piece)

    # -- ending jobs -----------------------------------------------------------------------------

    def _guarded(self, job: Job, fn: Callable[..., None], *args: object) -> None:
        """Run one job's part of the step; if it raises, that job fails alone."""
        try:
            fn(*args)
        except Exception as exc:
            if not isinstance(exc, OpenAIError):
                log.exception("a request on model %s failed", self.name)
            self._fail(job, exc, keep_kv=False)

    def _fail(self, job: Job, exc: Exception, *, keep_kv: bool) -> None:
        if job.done:
            return
        self.counters.failed_jobs += 1
        err = exc if isinstance(exc, OpenAIError) else InternalError(
            "the engine failed on this request; other requests are unaffected")
        job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=err))
        self._finish(job, None, keep_kv=keep_kv)

    def _finish(self, job: Job, reason: FinishReason | None, *, tail: str = "",
                token: int | None = None, logprobs: list[TokenLogprob] | None = None,
                keep_kv: bool = True, stop: str | None = None, turn: bool = True) -> None:
        """End ``job``; its last event carries ``tail``, unless the publisher makes its text
        (no stop strings: it flushes the job's text itself)."""
        if job.done:
            return
        job.state = JobState.DONE
        if job in self.active:
            self.active.remove(job)
        self._close_sampler(job)
        self.slots.release(job, keep=keep_kv and reason is not None,
                           turn=turn and reason in (FinishReason.STOP, FinishReason.LENGTH))
        if reason is not None and reason is not FinishReason.CANCELLED:
            usage = Usage(len(job.req.prompt_tokens), job.n_generated, job.cached_tokens)
            tokens = [token] if token is not None else []
            if job.text is not None and not job.text.matching:  # its text: the publisher's
                piece = self.ctx.vocab.piece(token) if token is not None else None
                job.emit(Draft(piece, tokens, logprobs or [], reason, usage))
            else:
                job.emit(TokenEvent(tail, tokens, logprobs or [], finish_reason=reason,
                                    usage=usage, stop=stop))

    @staticmethod
    def _close_sampler(job: Job) -> None:
        sampler = job.sampler
        if sampler is None:
            return
        if job.drawing is not None and not job.drawing[0].done():
            job.drawing[0].add_done_callback(lambda _f: sampler.close())  # still in use
        else:
            sampler.close()
        job.drawing = None

    def fail_all(self, err: Exception) -> list[Job]:
        """Fail every job (the worker is going down); returns them."""
        jobs = [*self.active, *self.waiting]
        for job in jobs:
            if not job.done:
                job.state = JobState.DONE
                self._close_sampler(job)
                job.emit(TokenEvent("", finish_reason=FinishReason.ERROR, error=err))
        for job in self.waiting:
            self._dequeued(job)
        self.active.clear()
        self.waiting.clear()
        return jobs

    def close(self) -> None:
        for pool in (self._sampling_pool, self._draw_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._outbox.close()

