"""One llama.cpp model + context for generation, driven by a single owner thread.

Threading contract: ``GenerationContext`` is created, used and closed by one thread (the
engine's worker). The read-only helpers marked *thread-safe* only touch the vocabulary, which
llama.cpp never mutates after load, so the HTTP side may tokenize concurrently.
"""

from __future__ import annotations

import ctypes
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from hugind.llama.params import (
    ModelParams,
    context_params,
    gpu_layers,
    min_exact_chunk,
    model_params,
)
from hugind.llama.threadpool import attach_threadpool, free_threadpool

log = logging.getLogger(__name__)

__all__ = ["BatchEntry", "GenerationContext", "ModelLoadError", "ModelParams"]


class ModelLoadError(Exception):
    """The GGUF could not be loaded or a context could not be created."""


@dataclass(frozen=True)
class BatchEntry:
    token: int
    pos: int
    seq: int
    logits: bool


class Vocab:
    """Tokenizer side of a loaded model. Thread-safe: the vocab is immutable after load."""

    def __init__(self, model: ctypes.c_void_p) -> None:
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.bos = llama_cpp.llama_vocab_bos(self._vocab)
        self.eos = llama_cpp.llama_vocab_eos(self._vocab)
        self.eot = llama_cpp.llama_vocab_eot(self._vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.fim_pre = llama_cpp.llama_vocab_fim_pre(self._vocab)
        self.fim_suf = llama_cpp.llama_vocab_fim_suf(self._vocab)
        self.fim_mid = llama_cpp.llama_vocab_fim_mid(self._vocab)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}  # asked once per token: a ctypes call a token otherwise

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, n_max, add_special,
                                     parse_special)
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, n_max, add_special,
                                         parse_special)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        key = token if not special else -token - 1
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        out = buf.raw[:n]
        self._pieces[key] = out
        return out

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        return b"".join(self.piece(t, special=special) for t in tokens)

    def is_eog(self, token: int) -> bool:
        found = self._eog.get(token)
        if found is None:
            found = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
        return found

    @property
    def handle(self) -> ctypes.c_void_p:
        """The ``llama_vocab`` pointer (for samplers built off the owner thread)."""
        return self._vocab  # type: ignore[no-any-return]

    def is_valid(self, token: int) -> bool:
        return 0 <= token < self.n_vocab

    def token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8", "replace")


def _load_model(params: ModelParams, stack: ExitStack) -> ctypes.c_void_p:
    if not Path(params.path).is_file():
        raise ModelLoadError(f"model file not found: {params.path}")
    model = llama_cpp.llama_model_load_from_file(params.path.encode(), model_params(params))
    if not model:
        raise ModelLoadError(f"llama.cpp could not load {params.path} (not a valid GGUF?)")
    stack.callback(llama_cpp.llama_model_free, model)
    return model


def read_metadata(model: ctypes.c_void_p) -> dict[str, str]:
    out: dict[str, str] = {}
    buf = ctypes.create_string_buffer(1024 * 64)
    for i in range(llama_cpp.llama_model_meta_count(model)):
        n = llama_cpp.llama_model_meta_key_by_index(model, i, buf, len(buf))
        if n < 0:
            continue
        key = buf.value.decode("utf-8", "replace")
        n = llama_cpp.llama_model_meta_val_str_by_index(model, i, buf, len(buf))
        if n < 0:
            continue
        out[key] = buf.value.decode("utf-8", "replace")
    return out


class GenerationContext:
    """A causal LM context with ``n_seq`` independent sequences of ``n_ctx`` tokens each."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self._stack = ExitStack()
        try:
            self._model = _load_model(params, self._stack)
            cparams = context_params(params)
            ctx = llama_cpp.llama_init_from_model(self._model, cparams)
            if not ctx:
                raise ModelLoadError("llama.cpp could not create a context (out of memory?)")
            self._stack.callback(llama_cpp.llama_free, ctx)
            if cparams.n_threads == cparams.n_threads_batch:
                pool = attach_threadpool(ctx, cparams.n_threads)
                if pool is not None:  # freed before the context (the stack unwinds LIFO)
                    self._stack.callback(free_threadpool, ctx, pool)
        except BaseException:
            self._stack.close()
            raise
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self.vocab = Vocab(self._model)
        self.metadata = read_metadata(self._model)
        self.n_seq = params.n_seq
        self.n_threads = cparams.n_threads
        self.n_ctx_seq = min(params.n_ctx, llama_cpp.llama_n_ctx(ctx))
        self.n_batch = llama_cpp.llama_n_batch(ctx)
        self.n_ubatch = llama_cpp.llama_n_ubatch(ctx)  # llama.cpp splits longer batches
        self.min_chunk = min_exact_chunk(params, cparams)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self._model)
        self.n_swa = llama_cpp.llama_model_n_swa(self._model)
        self.n_gpu_layers = gpu_layers(params)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._stack.callback(llama_cpp.llama_batch_free, self._batch)
        # Views of the batch's arrays and a logits row's type, made once: building them is
        # several microseconds a call, paid on every row of every step otherwise.
        b, n = self._batch, self.n_batch
        self._b_token = np.ctypeslib.as_array(b.token, shape=(n,))
        self._b_pos = np.ctypeslib.as_array(b.pos, shape=(n,))
        self._b_logits = np.ctypeslib.as_array(b.logits, shape=(n,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(n,))[:] = 1  # one sequence per token, always
        self._b_seq = [b.seq_id[i] for i in range(n)]
        self._row_type = ctypes.c_float * self.vocab.n_vocab
        self.can_rewind = self.n_swa == 0 or params.swa_full

    def close(self) -> None:
        self._stack.close()

    # -- decoding -------------------------------------------------------------------------

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int],
               logits: list[bool]) -> int:
        """Decode one batch (at most ``n_batch`` entries). Returns llama_decode's status."""
        n = len(tokens)
        b = self._batch
        b.n_tokens = n
        self._b_token[:n] = tokens
        self._b_pos[:n] = pos
        self._b_logits[:n] = logits
        rows = self._b_seq
        for i, s in enumerate(seqs):
            rows[i][0] = s
        return int(llama_cpp.llama_decode(self._ctx, b))

    def logits(self, idx: int) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, idx)
        if not ptr:
            raise IndexError(f"no logits for batch row {idx}")
        row = self._row_type.from_address(ctypes.addressof(ptr.contents))
        return np.frombuffer(row, dtype=np.float32)

    @property
    def raw_ctx(self) -> ctypes.c_void_p:
        return self._ctx

    # -- KV memory ------------------------------------------------------------------------

    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool:
        return bool(llama_cpp.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def seq_clear(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)

    def seq_pos_max(self, seq: int) -> int:
        return int(llama_cpp.llama_memory_seq_pos_max(self._mem, seq))

    def state_get(self, seq: int) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, seq)
        return bytes(memoryview(buf)[:n])

    def state_size(self, seq: int) -> int:
        """Bytes ``state_get`` would return, counted without copying the KV."""
        return int(llama_cpp.llama_state_seq_get_size(self._ctx, seq))

    def state_set(self, seq: int, data: bytes) -> bool:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        n = llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), seq)
        return n > 0

    # -- model facts ----------------------------------------------------------------------

    def chat_template(self) -> str | None:
        ptr = llama_cpp.llama_model_chat_template(self._model, None)
        return ptr.decode("utf-8") if ptr else None

    def fingerprint_facts(self) -> dict[str, object]:
        return {
            "n_ctx_seq": self.n_ctx_seq,
            "type_k": self.params.cache_type_k,
            "type_v": self.params.cache_type_v,
            "swa_full": self.params.swa_full,
            "batch_invariant": self.params.batch_invariant,
            "kv_layout": "per-sequence",
            "n_params": int(llama_cpp.llama_model_n_params(self._model)),
        }
