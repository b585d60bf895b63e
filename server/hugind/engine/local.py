"""``LocalEngine``: the GGUF models named in the config, each behind its own worker thread.

Threading contract: public methods run on the event loop. Blocking work (fetching, loading,
tokenizing long text, decoding) happens on worker threads or in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hugind.aio import within
from hugind.config import Config, ModelConfig
from hugind.engine.embedding import EmbeddingWorker
from hugind.engine.handle import ModelHandle
from hugind.engine.jobs import Job
from hugind.engine.lifecycle import Lifecycle, public_reason, settle_heap
from hugind.engine.prompt import (
    compile_template,
    inline_tool_turns,
    with_tool_instructions,
)
from hugind.engine.types import FimTokens, GenerationRequest, ModelInfo, TokenEvent
from hugind.engine.worker import ModelWorker
from hugind.errors import (
    ContextLengthError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    RequestTooLargeError,
)
from hugind.llama import (
    Embedder,
    GenerationContext,
    ModelParams,
    Sampler,
    SamplerSpec,
    build_warnings,
    use_batch_invariant_kernels,
)
from hugind.llama.context import Vocab
from hugind.llama.grammar import (
    GrammarError,
    SchemaError,
    grammar_for,
    grammar_from_gbnf,
    relaxed,
)
from hugind.modelstore import resolve
from hugind.sessions import (
    DiskTier,
    SessionFileError,
    SnapshotStore,
    SnapshotWriter,
    export_bytes,
    model_fingerprint,
    read_export,
)

log = logging.getLogger(__name__)


def _params(cfg: ModelConfig, path: Path) -> ModelParams:
    return ModelParams(
        path=str(path), device=cfg.device, n_gpu_layers=cfg.n_gpu_layers, main_gpu=cfg.main_gpu,
        tensor_split=cfg.tensor_split, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch, n_ubatch=cfg.n_ubatch,
        threads=cfg.threads, threads_batch=cfg.threads_batch, flash_attn=cfg.flash_attn,
        cache_type_k=cfg.cache_type_k, cache_type_v=cfg.cache_type_v, n_seq=cfg.parallel,
        swa_full=cfg.swa_full, batch_invariant=cfg.batch_invariant,
        embedding=cfg.embedding, pooling=cfg.pooling,
    )


# Client grammars are compiled on a pool of their own, off the event loop and off every
# model's worker, within these bounds (a 20,000-value enum compiles in well under them).
MAX_SCHEMA_BYTES = 2 << 20
MAX_GRAMMAR_BYTES = 4 << 20
GRAMMAR_TIMEOUT_S = 30.0
# A job's events are awaited in slices this long; between slices the worker is checked.
HEARTBEAT_S = 5.0
T = TypeVar("T")


def _schema_grammar(schema: Any, param: str = "response_format") -> str:
    return _checked(grammar_for, schema, param)


def _relaxed_schema(schema: Any, param: str) -> tuple[Any, list[str]]:
    return _checked(relaxed, schema, param)


def _checked(convert: Callable[[Any], T], schema: Any, param: str) -> T:
    """``convert(schema)`` within the size bound, a SchemaError as a 400 naming ``param``."""
    if schema is not True and len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidRequestError(
            f"the JSON schema is over {MAX_SCHEMA_BYTES >> 20} MiB", param=param,
            code="schema_too_large")
    try:
        return convert(schema)
    except SchemaError as exc:
        raise InvalidRequestError(f"the JSON schema cannot be enforced: {exc}",
                                  param=param) from None


def _gbnf_grammar(text: str) -> str:
    try:
        return grammar_from_gbnf(text)
    except GrammarError as exc:
        raise InvalidRequestError(f"the grammar cannot be parsed: {exc}",
                                  param="grammar") from None


def _sampler(vocab: Vocab, spec: SamplerSpec, param: str) -> Sampler:
    try:
        return Sampler(vocab, spec)
    except GrammarError as exc:
        what = "JSON schema" if param == "response_format" else "grammar"
        raise InvalidRequestError(f"the {what} cannot be compiled: {exc}", param=param) from None


async def _off_loop(pool: concurrent.futures.Executor, fn: Callable[[], Any], param: str) -> Any:
    """Run grammar work on ``pool`` with a time limit (over it: a 400 naming ``param``; the
    compile then finishes on its thread, so the pool's size bounds what such requests cost)."""
    fut = asyncio.get_running_loop().run_in_executor(pool, fn)
    try:
        return await within(asyncio.shield(fut), GRAMMAR_TIMEOUT_S)
    except asyncio.CancelledError:
        fut.add_done_callback(_close_late)
        raise
    except asyncio.TimeoutError:
        fut.add_done_callback(_close_late)
        raise InvalidRequestError(
            f"the grammar took over {GRAMMAR_TIMEOUT_S:g} s to compile; simplify it",
            param=param, code="grammar_too_complex") from None


def _close_late(fut: asyncio.Future[Any]) -> None:
    """A sampler finished compiling after its request gave up: free it."""
    if not fut.cancelled() and fut.exception() is None and hasattr(fut.result(), "close"):
        fut.result().close()


class LocalEngine:
    """All local models. See the module docstring for the threading contract."""

    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.models_dir = self.base_dir / config.models_dir
        self._handles = [ModelHandle(cfg, "embed" if cfg.embedding else "generate")
                         for cfg in config.models]
        self._by_name = {n: h for h in self._handles for n in h.cfg.names}
        self._grammar_pool = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="hugind-grammar")
        server = config.server
        self.lifecycle = Lifecycle(self._handles, spawn=self._spawn, halt=self._halt,
                                   max_loaded=server.max_loaded_models,
                                   load_timeout_s=server.load_timeout_s,
                                   unload_grace_s=server.shutdown_grace_s)
        self._draining = False
        # This process's name in a shared session store's versions.
        self.replica = config.sessions.replica_id or f"{socket.gethostname()}-{os.getpid()}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for warning in build_warnings():
            log.warning("%s", warning)
        if any(h.cfg.batch_invariant for h in self._handles):
            use_batch_invariant_kernels()  # before the first model computes anything
        self.lifecycle.start()

    def close(self) -> None:
        self.lifecycle.close()
        self._grammar_pool.shutdown(wait=False, cancel_futures=True)

    def drain(self) -> None:
        self._draining = True

    def busy(self) -> int:
        return sum(h.busy() for h in self._handles)

    def wait_ready(self, timeout: float) -> bool:
        """Wait for every preloaded model to leave loading; True if all of them are ready."""
        deadline = time.monotonic() + timeout
        preloaded = [h for h in self._handles if h.cfg.preload]
        while time.monotonic() < deadline:
            if all(h.state not in ("loading", "restarting") for h in preloaded):
                return all(h.state == "ready" for h in preloaded)
            time.sleep(0.05)
        return False

    async def ensure_loaded(self, model: str) -> None:
        h = self._by_name.get(model)
        if h is not None:
            await self.lifecycle.ensure_loaded(h)

    async def load_model(self, model: str) -> ModelInfo:
        h = self._handle(model)
        await self.lifecycle.ensure_loaded(h, retry_failed=True)
        return h.info()

    async def unload_model(self, model: str) -> ModelInfo:
        h = self._handle(model)
        await asyncio.to_thread(self.lifecycle.unload, h)
        return h.info()

    def _handle(self, name: str) -> ModelHandle:
        h = self._by_name.get(name)
        if h is None:
            raise ModelNotFoundError(name)
        return h

    def _spawn(self, h: ModelHandle) -> None:
        """Start ``h``'s worker; it loads the model on its own thread."""
        on_state = self._setter(h, h.generation)
        if h.kind == "embed":
            h.embedder = EmbeddingWorker(h.cfg.id, self._embed_factory(h), on_state,
                                         max_queue=h.cfg.max_queue)
            h.embedder.start()
        else:
            h.worker = ModelWorker(
                h.cfg.id, self._gen_factory(h), max_queue=h.cfg.max_queue,
                store_factory=self._store_factory(h), on_state=on_state,
                queue_timeout_s=h.cfg.queue_timeout_s, burst_wait_s=h.cfg.burst_wait_ms / 1000)
            h.worker.start()

    def _halt(self, h: ModelHandle) -> None:
        """Stop ``h``'s worker (its sessions are saved) and drop every reference into the
        model, so its memory is freed."""
        worker, embedder = h.worker, h.embedder
        h.worker = h.embedder = None
        if worker is not None:
            worker.stop()
        if embedder is not None:
            embedder.stop()
        h.vocab = None
        h.template = None

    def _setter(self, h: ModelHandle, generation: int) -> Callable[[str, str | None], None]:
        def set_state(state: str, error: str | None) -> None:
            if h.generation != generation or h.state == "unloading":
                return  # a worker being stopped, or one from before the last reload
            if state == "failed":  # the worker has logged the full reason
                error = public_reason(Exception(error)) if error else None
            h.error = error
            h.state = state
            if state == "ready" and h.loaded_since is None:
                h.loaded_since = time.time()
                h.last_used = h.loaded_since
                h.load_seconds = round(time.monotonic() - h.load_started, 3)
                if h.path is not None:
                    h.size_bytes = h.path.stat().st_size
                log.info("model %s ready in %.1f s (%s)", h.cfg.id, h.load_seconds,
                         h.path.name if h.path else "")
                settle_heap()
        return set_state

    def _fetch(self, h: ModelHandle) -> Path:
        h.path = resolve(h.cfg, self.models_dir)
        return h.path

    def _gen_factory(self, h: ModelHandle) -> Callable[[], GenerationContext]:
        def make() -> GenerationContext:
            ctx = GenerationContext(_params(h.cfg, self._fetch(h)))
            h.vocab = ctx.vocab
            h.n_ctx = ctx.n_ctx_seq
            h.n_ctx_train = ctx.n_ctx_train
            self._setup_template(h, ctx)
            return ctx
        return make

    def _embed_factory(self, h: ModelHandle) -> Callable[[], Embedder]:
        def make() -> Embedder:
            emb = Embedder(_params(h.cfg, self._fetch(h)))
            h.vocab = emb.vocab
            h.n_ctx = emb.n_batch
            return emb
        return make

    def _store_factory(
        self, h: ModelHandle
    ) -> Callable[[GenerationContext], SnapshotStore | None]:
        sessions = self.config.sessions

        def make(ctx: GenerationContext) -> SnapshotStore | None:
            if not sessions.enabled:
                return None
            assert h.path is not None
            root = Path(sessions.dir)
            if not root.is_absolute():
                root = self.base_dir / root
            folder = root / h.cfg.id
            fingerprint = {"model": model_fingerprint(h.path, folder),
                           **ctx.fingerprint_facts()}
            disk = DiskTier(folder, fingerprint,
                            budget_bytes=sessions.disk_budget_mb * 2**20, ttl_s=sessions.ttl_s,
                            shared=sessions.shared, replica=self.replica)
            ram = sessions.ram_budget_mb * 2**20
            writer = SnapshotWriter(disk, delay_s=sessions.flush_s / 2, name=h.cfg.id,
                                    max_pending_bytes=max(ram, 256 << 20)) \
                if sessions.flush_s > 0 else None
            return SnapshotStore(ram, disk, writer)
        return make

    def _setup_template(self, h: ModelHandle, ctx: GenerationContext) -> None:
        source = h.cfg.chat_template or ctx.chat_template()
        if source is None:
            h.template_error = (f"model '{h.cfg.id}' has no chat template in its GGUF; set "
                                f"`chat_template` for it in the config")
            return
        vocab = ctx.vocab
        bos = vocab.token_text(vocab.bos) if vocab.bos >= 0 else ""
        eos = vocab.token_text(vocab.eos) if vocab.eos >= 0 else ""
        h.template = compile_template(source, bos_token=bos, eos_token=eos)

    # -- lookups -----------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [h.info() for h in self._handles]

    def resolve_model(self, name: str) -> ModelInfo | None:
        h = self._by_name.get(name)
        return h.info() if h else None

    def _ready(self, name: str, kind: str | None = None) -> ModelHandle:
        h = self._by_name.get(name)
        if h is None:
            raise ModelNotFoundError(name)
        if kind == "embed" and h.kind != "embed":
            raise InvalidRequestError(
                f"model '{name}' is not an embedding model (set `embedding: true` for it)",
                param="model", code="model_not_embedding")
        if kind == "generate" and h.kind != "generate":
            raise InvalidRequestError(
                f"model '{name}' is an embedding model and cannot generate text",
                param="model", code="model_not_generative")
        if h.state == "loading":
            raise ModelNotReadyError(f"model '{name}' is still loading",
                                     headers={"Retry-After": "5"})
        if h.state in ("unloaded", "unloading"):
            raise ModelNotReadyError(f"model '{name}' was just unloaded; retry to load it",
                                     code="model_unloaded", headers={"Retry-After": "1"})
        if h.state == "restarting":
            raise ModelNotReadyError(f"model '{name}' is restarting after an engine fault",
                                     code="model_restarting", headers={"Retry-After": "2"})
        if h.state == "failed":
            raise ModelNotReadyError(f"model '{name}' failed to load: {h.error}")
        return h

    # -- prompts -----------------------------------------------------------------------------

    async def tokenize(self, model: str, text: str, *, add_special: bool = True,
                       parse_special: bool = False) -> list[int]:
        vocab = self._ready(model).vocab
        assert vocab is not None
        if len(text) < 4096:
            return vocab.tokenize(text, add_special=add_special, parse_special=parse_special)
        return await asyncio.to_thread(vocab.tokenize, text, add_special=add_special,
                                       parse_special=parse_special)

    async def detokenize(self, model: str, tokens: list[int]) -> str:
        vocab = self._checked_vocab(model, tokens)
        return vocab.detokenize(tokens).decode("utf-8", "replace")

    async def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        vocab = self._checked_vocab(model, tokens)
        return [vocab.piece(t) for t in tokens]

    def _checked_vocab(self, model: str, tokens: list[int]) -> Vocab:
        vocab = self._ready(model).vocab
        assert vocab is not None
        for i, t in enumerate(tokens):
            if not vocab.is_valid(t):
                raise InvalidRequestError(
                    f"token id {t} is out of range for model '{model}' (vocabulary size "
                    f"{vocab.n_vocab})", param=f"tokens[{i}]")
        return vocab

    def fim_tokens(self, model: str) -> FimTokens | None:
        """The model's fill-in-the-middle tokens, or None when its vocab lacks any of them."""
        vocab = self._ready(model, "generate").vocab
        assert vocab is not None
        if min(vocab.fim_pre, vocab.fim_suf, vocab.fim_mid) < 0:
            return None
        bos = vocab.bos if vocab.add_bos and vocab.bos >= 0 else None
        return FimTokens(vocab.fim_pre, vocab.fim_suf, vocab.fim_mid, bos)

    async def chat_prompt(self, model: str, messages: list[dict[str, Any]], *,
                          tools: list[dict[str, Any]] | None = None,
                          add_generation_prompt: bool = True) -> tuple[str, list[int]]:
        h = self._ready(model, "generate")
        if h.template is None:
            raise InvalidRequestError(h.template_error or "no chat template", param="model",
                                      code="no_chat_template")
        if "tool_calls" not in h.template.source:
            messages = inline_tool_turns(messages)
        if tools and "tools" not in h.template.source:
            messages = with_tool_instructions(messages, tools)
        template = h.template
        # Rendering is client-sized work: on a thread, so a huge conversation never holds
        # the event loop (the template itself comes from the model or the config).
        text = await asyncio.to_thread(template.render, messages, tools=tools,
                                       add_generation_prompt=add_generation_prompt)
        vocab = h.vocab
        assert vocab is not None
        # Templates usually write BOS themselves; add it only when they don't.
        has_bos = vocab.bos >= 0 and text.startswith(vocab.token_text(vocab.bos))
        tokens = await self.tokenize(model, text, add_special=not has_bos, parse_special=True)
        return text, tokens

    # -- generation --------------------------------------------------------------------------

    def check_length(self, model: str, n_prompt: int, max_tokens: int | None,
                     param: str) -> int:
        """Validate the prompt against the context; return the effective max_tokens."""
        h = self._ready(model, "generate")
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param=param)
        if n_prompt >= h.n_ctx:
            raise ContextLengthError(n_prompt, h.n_ctx, param=param)
        room = h.n_ctx - n_prompt
        if max_tokens is not None and max_tokens > room:
            raise ContextLengthError(n_prompt, h.n_ctx, n_max_tokens=max_tokens, param=param)
        default = h.cfg.max_tokens or room
        return min(max_tokens if max_tokens is not None else default, room)

    async def submit(self, req: GenerationRequest) -> AsyncIterator[TokenEvent]:
        """Validate and enqueue ``req``; the returned iterator yields its events.

        Raises before anything is streamed (unknown model, full queue, bad token ids), so the
        caller can still answer with a plain error status.
        """
        return (await self.submit_many([req]))[0]

    async def submit_many(self, reqs: list[GenerationRequest],
                          ) -> list[AsyncIterator[TokenEvent]]:
        """Validate every request, then enqueue them all or none (see ``Engine``)."""
        if not reqs:
            return []
        self._check_draining()
        h = self._ready(reqs[0].model, "generate")
        assert h.worker is not None
        for req in reqs:
            self._validate(h, req)
        samplers = await self._samplers(h, reqs)
        loop = asyncio.get_running_loop()
        timeout = self.config.server.request_timeout_s
        deadline = time.monotonic() + timeout if timeout > 0 else None
        jobs = [Job(req, loop, asyncio.Queue(), sampler=s, deadline=deadline)
                for req, s in zip(reqs, samplers, strict=True)]
        await self._read_stamps(h.worker, jobs)
        try:
            h.worker.submit_many(jobs)
        except BaseException:
            for s in samplers:
                s.close()
            raise
        return [self._events(h.worker, job) for job in jobs]

    @staticmethod
    async def _read_stamps(worker: ModelWorker, jobs: list[Job]) -> None:
        """A shared store: the stored version of each named conversation, read here (a file
        header on a network volume) rather than on the worker."""
        disk = worker.shared_disk
        named = [j for j in jobs if j.req.session is not None]
        if disk is None or not named:
            return

        def read() -> None:
            for j in named:
                assert j.req.session is not None
                j.stored_stamp = disk.stamp(j.req.tenant, j.req.session)
        await asyncio.to_thread(read)

    def _validate(self, h: ModelHandle, req: GenerationRequest) -> None:
        if self._by_name.get(req.model) is not h:
            raise InvalidRequestError("one request's generations must use one model",
                                      param="model")
        assert h.vocab is not None
        for i, t in enumerate(req.prompt_tokens):
            if not h.vocab.is_valid(t):
                raise InvalidRequestError(f"token id {t} is out of range", param=f"prompt[{i}]")
        for tok in req.sampling.logit_bias:
            if not h.vocab.is_valid(tok):
                raise InvalidRequestError(f"logit_bias token id {tok} is out of range",
                                          param="logit_bias")
        grammar = req.sampling.grammar
        if grammar is not None and len(grammar) > MAX_GRAMMAR_BYTES:
            raise InvalidRequestError(f"the grammar is over {MAX_GRAMMAR_BYTES >> 20} MiB",
                                      param="grammar", code="grammar_too_large")

    async def check_schema(self, schema: Any, *, strict: bool, param: str,
                           ) -> tuple[Any, list[str]]:
        """``schema`` as the grammar engine enforces it. ``strict``: what it cannot enforce
        is a 400 naming the keyword, its place and ``param``; else it is taken out and named
        in the list returned. On the grammar pool; the compile is cached for the request."""
        if strict:
            await _off_loop(self._grammar_pool, lambda: _schema_grammar(schema, param), param)
            return schema, []
        out: tuple[Any, list[str]] = await _off_loop(
            self._grammar_pool, lambda: _relaxed_schema(schema, param), param)
        return out

    async def _samplers(self, h: ModelHandle, reqs: list[GenerationRequest]) -> list[Sampler]:
        """Each request's sampler. Grammars (a JSON schema converted once for all n choices,
        or GBNF) compile on the grammar pool: a huge schema delays only its own request."""
        vocab = h.vocab
        assert vocab is not None
        grammars: dict[int, str] = {}
        out: list[Sampler] = []
        try:
            for req in reqs:
                sp = req.sampling
                grammar, param = sp.grammar, "grammar"
                source: Any = grammar or None
                convert: Callable[[Any], str] = _gbnf_grammar
                if sp.json_schema is not None and grammar is None:
                    source, convert, param = sp.json_schema, _schema_grammar, "response_format"
                if source is not None:
                    if id(source) not in grammars:
                        grammars[id(source)] = await _off_loop(
                            self._grammar_pool, lambda s=source, f=convert: f(s), param)
                    grammar = grammars[id(source)]
                seed = sp.seed if sp.seed is not None else int(time.time_ns() & 0xFFFFFFFF)
                spec = SamplerSpec(
                    temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p,
                    min_p=sp.min_p, repeat_penalty=sp.repeat_penalty,
                    frequency_penalty=sp.frequency_penalty,
                    presence_penalty=sp.presence_penalty, logit_bias=dict(sp.logit_bias),
                    seed=seed, grammar=grammar)
                if grammar:
                    out.append(await _off_loop(
                        self._grammar_pool, lambda sp=spec, p=param: _sampler(vocab, sp, p),
                        param))
                else:
                    out.append(_sampler(vocab, spec, param))
        except BaseException:
            for s in out:
                s.close()
            raise
        return out

    async def _events(self, worker: ModelWorker, job: Job) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                try:
                    event = await within(job.events.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    if worker.alive and worker.epoch == job.epoch:
                        continue  # still queued or running
                    raise OverloadedError(
                        f"model '{worker.name}' stopped serving this request; retry",
                        code="model_restarting", headers={"Retry-After": "2"}) from None
                if event.error is not None:
                    raise event.error
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not job.done:
                worker.cancel(job)

    # -- embeddings --------------------------------------------------------------------------

    def embed_context(self, model: str) -> int:
        return self._ready(model, "embed").n_ctx

    async def embed(self, model: str, inputs: list[list[int]]) -> list[np.ndarray]:
        self._check_draining()
        await self.ensure_loaded(model)
        h = self._ready(model, "embed")
        assert h.embedder is not None
        h.inflight += 1
        try:
            return await asyncio.wrap_future(h.embedder.submit(inputs))
        finally:
            h.inflight -= 1
            h.touch()

    def _check_draining(self) -> None:
        if self._draining:
            raise OverloadedError("the server is shutting down; retry on another replica",
                                  code="shutting_down", headers={"Retry-After": "5"})

    # -- sessions ----------------------------------------------------------------------------

    async def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for h in self._handles:
            if h.worker is not None and h.state == "ready":
                found = await asyncio.wrap_future(h.worker.call(
                    lambda w=h.worker: w.list_sessions(tenant)))
                rows += [{**r, "model": h.cfg.id} for r in found]
        return rows

    async def delete_session(self, tenant: str, name: str) -> bool:
        deleted = False
        for h in self._handles:
            if h.worker is not None and h.state == "ready":
                deleted |= await asyncio.wrap_future(h.worker.call(
                    lambda w=h.worker: w.delete_session(tenant, name)))
        return deleted

    async def export_session(self, tenant: str, name: str) -> bytes | None:
        """The session's export file (``hugind.sessions.transfer``), or None."""
        for h in self._handles:
            w = h.worker
            if w is None or h.state != "ready" or w.fingerprint is None:
                continue
            found = await asyncio.wrap_future(w.call(lambda w=w: w.export_session(tenant, name)))
            if found is not None:
                tokens, data = found
                return await asyncio.to_thread(export_bytes, tokens, data, w.fingerprint,
                                               model=h.cfg.id)
        return None

    async def pin_session(self, tenant: str, name: str, *, pinned: bool) -> bool:
        """Pin (or unpin) the session against budget and TTL eviction; False: not found."""
        for h in self._handles:
            w = h.worker
            if w is not None and h.state == "ready" and await asyncio.wrap_future(
                    w.call(lambda w=w: w.pin_session(tenant, name, pinned=pinned))):
                return True
        return False

    async def import_session(self, tenant: str, name: str, blob: bytes) -> dict[str, Any]:
        """File an export under (tenant, name), replacing that session; 400 for a file that
        is damaged or was written for another model or context parameters."""
        try:
            found = await asyncio.to_thread(read_export, blob)
        except SessionFileError as exc:
            raise InvalidRequestError(f"the session file is unusable: {exc}", param="body",
                                      code="invalid_session_file") from None
        h = next((h for h in self._handles if h.worker is not None and h.state == "ready"
                  and h.worker.fingerprint == found.fingerprint), None)
        if h is None or h.worker is None:
            raise InvalidRequestError(
                f"the session file was written for another model file or context parameters "
                f"(exported from '{found.model[:64]}'); no model here matches it",
                param="body", code="session_model_mismatch")
        disk_budget = self.config.sessions.disk_budget_mb << 20
        if len(blob) > disk_budget:
            raise RequestTooLargeError(
                f"the session file is larger than sessions.disk_budget_mb ({disk_budget >> 20})")
        assert h.vocab is not None
        if len(found.tokens) >= h.n_ctx or not all(map(h.vocab.is_valid, found.tokens)):
            raise InvalidRequestError("the session file's tokens do not fit this model",
                                      param="body", code="invalid_session_file")
        w = h.worker
        if not await asyncio.wrap_future(w.call(
                lambda: w.import_session(tenant, name, found.tokens, found.data))):
            raise InvalidRequestError("the session file's KV state does not load",
                                      param="body", code="invalid_session_file")
        return {"name": name, "model": h.cfg.id, "tokens": len(found.tokens)}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for h in self._handles:
            if h.worker is not None:
                out[h.cfg.id] = h.worker.stats()
            elif h.embedder is not None:
                out[h.cfg.id] = {"requests": h.embedder.requests, "inputs": h.embedder.inputs,
                                 "queue_depth": h.embedder.queue_depth}
        return out
