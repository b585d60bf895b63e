"""A scripted Engine for HTTP-layer tests: no model, deterministic events, recorded cancels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from hugind.engine.interface import Engine
from hugind.engine.types import (
    FimTokens,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    TokenEvent,
    TokenLogprob,
    Usage,
)
from hugind.errors import ContextLengthError, InvalidRequestError, ModelNotFoundError


class FakeEngine:
    """Emits ``words`` one per event; ``delay_s`` between events lets tests disconnect."""

    def __init__(self, words: list[str] | None = None, *, delay_s: float = 0.0,
                 n_ctx: int = 64, fim: FimTokens | None = None) -> None:
        self.words = words or ["Hello", " there", ",", " friend", "."]
        self.fim = fim
        self.delay_s = delay_s
        self.n_ctx = n_ctx
        self.requests: list[GenerationRequest] = []
        self.cancelled: list[GenerationRequest] = []
        self.finished: list[GenerationRequest] = []
        self.closed = False

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("fake", ["fake-alias"], "generate", "ready", n_ctx=self.n_ctx),
                ModelInfo("fake-embed", [], "embed", "ready", n_ctx=self.n_ctx)]

    def resolve_model(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models() if name in (m.id, *m.aliases)), None)

    async def ensure_loaded(self, model: str) -> None:
        return None

    def drain(self) -> None:
        self.draining = True

    def busy(self) -> int:
        return 0

    def _known(self, model: str) -> None:
        if self.resolve_model(model) is None:
            raise ModelNotFoundError(model)

    def fim_tokens(self, model: str) -> FimTokens | None:
        self._known(model)
        return self.fim

    async def chat_prompt(self, model: str, messages: list[dict[str, Any]], *,
                          tools: list[dict[str, Any]] | None = None,
                          add_generation_prompt: bool = True) -> tuple[str, list[int]]:
        self._known(model)
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text, await self.tokenize(model, text)

    async def tokenize(self, model: str, text: str, *, add_special: bool = True,
                       parse_special: bool = False) -> list[int]:
        self._known(model)
        return [ord(c) % 1000 for c in text]

    async def detokenize(self, model: str, tokens: list[int]) -> str:
        self._known(model)
        for i, t in enumerate(tokens):
            if not 0 <= t < 1000:
                raise InvalidRequestError(f"token id {t} is out of range", param=f"tokens[{i}]")
        return "".join(chr(t) for t in tokens)

    async def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        return [chr(t).encode() for t in tokens]

    def check_length(self, model: str, n_prompt: int, max_tokens: int | None,
                     param: str) -> int:
        self._known(model)
        if n_prompt >= self.n_ctx:
            raise ContextLengthError(n_prompt, self.n_ctx, param=param)
        return max_tokens or self.n_ctx - n_prompt

    def embed_context(self, model: str) -> int:
        return self.n_ctx

    async def submit(self, req: GenerationRequest) -> AsyncIterator[TokenEvent]:
        self._known(req.model)
        self.requests.append(req)
        return self._events(req)

    async def submit_many(self, reqs: list[GenerationRequest],
                          ) -> list[AsyncIterator[TokenEvent]]:
        return [await self.submit(r) for r in reqs]

    async def _events(self, req: GenerationRequest) -> AsyncIterator[TokenEvent]:
        done = False
        try:
            words = self.words[: req.max_tokens]
            for i, w in enumerate(words):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                last = i == len(words) - 1
                reason = (FinishReason.LENGTH if req.max_tokens <= len(self.words)
                          else FinishReason.STOP) if last else None
                lps = ([TokenLogprob(w, -0.5, list(w.encode()), [])]
                       if req.top_logprobs is not None else [])
                yield TokenEvent(w, [i], lps, finish_reason=reason,
                                 usage=Usage(len(req.prompt_tokens), len(words)) if last
                                 else None)
            done = True
        finally:
            (self.finished if done else self.cancelled).append(req)

    async def check_schema(self, schema: Any, *, strict: bool, param: str,
                           ) -> tuple[Any, list[str]]:
        return schema, []

    async def embed(self, model: str, inputs: list[list[int]]) -> list[np.ndarray]:
        out = []
        for toks in inputs:
            v = np.arange(1, 9, dtype=np.float32) * (len(toks) or 1)
            out.append(v / np.linalg.norm(v))
        return out

    async def list_sessions(self, tenant: str) -> list[dict[str, Any]]:
        return []

    async def delete_session(self, tenant: str, name: str) -> bool:
        return False

    async def export_session(self, tenant: str, name: str) -> bytes | None:
        return None

    async def import_session(self, tenant: str, name: str, blob: bytes) -> dict[str, Any]:
        return {"name": name, "model": "fake", "tokens": 0}

    async def pin_session(self, tenant: str, name: str, *, pinned: bool) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        return {"fake": {"requests": len(self.requests)}}

    def close(self) -> None:
        self.closed = True


def _typecheck(engine: FakeEngine) -> Engine:
    return engine  # mypy keeps FakeEngine honest against the protocol
