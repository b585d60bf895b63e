"""The engine ceiling: the same model run in-process through llama-cpp-python, no server.

``EngineRunner`` is a runner like ``bench.client.HttpRunner``, so the decode and prefill
scenarios measure it in the same interleaved schedule as the servers, and every server figure
can be reported as a fraction of what llama.cpp does on this machine. It uses the high-level
``llama_cpp.Llama`` (``tokenize`` + ``generate``, greedy, no stop checks, no chat template), so
it is an upper bound for one stream; it cannot batch several streams and is not used by the
concurrency, sessions or embeddings scenarios.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bench.client import RequestResult, RequestSpec

__all__ = ["EngineRunner"]


class EngineRunner:
    """Runs chat/completions specs on an in-process ``llama_cpp.Llama`` (loaded on first use)."""

    def __init__(
        self,
        model_path: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        name: str = "engine",
        epoch_s: float = 0.0,
    ) -> None:
        self.name = name
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.epoch_s = epoch_s
        self._llm: Any = None

    def load(self) -> None:
        """Load the model (imports llama_cpp only now)."""
        if self._llm is not None:
            return
        from llama_cpp import Llama  # imported lazily: the HTTP harness does not need it

        self._llm = Llama(
            model_path=self.model_path,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            verbose=False,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for the report."""
        return {
            "name": self.name,
            "kind": "in-process llama_cpp.Llama",
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_batch": self.n_batch,
        }

    def close(self) -> None:
        """Free the model."""
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    async def run(self, spec: RequestSpec, timeout_s: float) -> RequestResult:
        """Run one spec in a worker thread (``timeout_s`` is not enforced: runs are bounded by
        ``max_tokens``)."""
        return await asyncio.to_thread(self.run_sync, spec)

    def run_sync(self, spec: RequestSpec) -> RequestResult:
        """Tokenize the prompt text, generate up to ``max_tokens`` tokens, time every token."""
        result = RequestResult(target=self.name, labels=dict(spec.labels))
        if spec.kind == "embeddings":
            result.error = "the engine ceiling does not measure embeddings"
            return result
        try:
            self.load()
            llm = self._llm
            tokens = llm.tokenize(spec.prompt_text().encode("utf-8"), add_bos=True)
            result.prompt_tokens = len(tokens)
            llm.reset()
            times: list[float] = []
            pieces: list[int] = []
            t0 = time.perf_counter()
            result.t_start_s = t0 - self.epoch_s
            for tok in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
                times.append(time.perf_counter())
                pieces.append(tok)
                if len(pieces) >= spec.max_tokens:
                    break
            t1 = time.perf_counter()
        except (ValueError, RuntimeError, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            return result
        result.latency_ms = (t1 - t0) * 1000.0
        result.output_tokens = len(pieces)
        result.output_tokens_source = "engine"
        result.content_chunks = len(pieces)
        result.finish_reason = "length"
        result.done_seen = True
        if times:
            result.ttft_ms = (times[0] - t0) * 1000.0
            result.itl_ms = [(b - a) * 1000.0 for a, b in itertools.pairwise(times)]
            if len(times) > 1 and times[-1] > times[0]:
                result.decode_tokens_per_s = (len(times) - 1) / (times[-1] - times[0])
        result.text = llm.detokenize(pieces).decode("utf-8", "replace")
        result.ok = bool(pieces)
        if not result.ok:
            result.error = "engine produced no tokens"
        return result
