"""Config values -> llama.cpp parameter structs."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

import llama_cpp

from hugind.llama.backend import build_has_amx

CACHE_TYPES = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "iq4_nl": 20, "bf16": 30,
}
POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
_keepalive: list[object] = []


@dataclass(frozen=True)
class ModelParams:
    """Everything needed to load one GGUF into a context (a plain mirror of the config)."""

    path: str
    device: str = "auto"
    n_gpu_layers: int | None = None
    main_gpu: int = 0
    tensor_split: list[float] | None = None
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int | None = None
    threads: int | None = None
    threads_batch: int | None = None
    flash_attn: bool | None = None
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_seq: int = 1
    swa_full: bool = True
    batch_invariant: bool = False
    embedding: bool = False
    pooling: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def gpu_layers(p: ModelParams) -> int:
    if p.device == "cpu":
        return 0
    if p.n_gpu_layers is not None:
        return p.n_gpu_layers
    if p.device in ("cuda", "metal"):
        return -1
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def model_params(p: ModelParams) -> llama_cpp.llama_model_params:
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = gpu_layers(p)
    mp.main_gpu = p.main_gpu
    if p.batch_invariant or build_has_amx():
        # CPU weight repacking runs 4-row GEMM kernels beside 1-row GEMV ones, so a token's
        # logits change with the number of rows in its batch. Without it every row takes
        # the same kernel: bit-identical output alone or batched, at a prefill cost. The
        # extra buffer types also hold AMX's weight layout, whose kernels crash (see
        # build_has_amx).
        mp.use_extra_bufts = False
    if p.tensor_split:
        size = max(len(p.tensor_split), llama_cpp.LLAMA_MAX_DEVICES)
        split = (ctypes.c_float * size)(*p.tensor_split)
        mp.tensor_split = ctypes.cast(split, ctypes.POINTER(ctypes.c_float))
        _keepalive.append(split)  # the struct only holds a pointer
    return mp


# ggml-cpu's flash attention reads a chunk of 64 or more query rows with a tiled kernel and a
# shorter one with another (GGML_FA_TILE_Q), which round differently.
CPU_FA_TILE_ROWS = 64


def min_exact_chunk(p: ModelParams, cp: llama_cpp.llama_context_params) -> int:
    """The fewest prompt rows a chunk must hold so that every row is read as in a chunk of
    any larger size (0: no such floor from attention)."""
    return CPU_FA_TILE_ROWS if cp.flash_attn_type == 1 and gpu_layers(p) == 0 else 0


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2))


def context_params(p: ModelParams) -> llama_cpp.llama_context_params:
    cp = llama_cpp.llama_context_default_params()
    cp.n_seq_max = p.n_seq
    # One KV stream per sequence, each with the full n_ctx. Measured on CPU (Gemma 3 270M):
    # a token's logits then do not depend on which other sequences share its batch, while a
    # unified buffer interleaves sequences' cells and changes the attention sums' rounding;
    # it is also ~20% faster at prefill.
    cp.kv_unified = False
    cp.n_ctx = p.n_ctx * p.n_seq
    cp.n_batch = p.n_batch
    cp.n_ubatch = p.n_ubatch or min(p.n_batch, 512)
    threads = p.threads or default_threads()
    cp.n_threads = threads
    cp.n_threads_batch = p.threads_batch or threads
    if p.flash_attn is None:
        # Off on the CPU: exact resume with it on needs every prompt chunk to hold 64+ rows
        # (see min_exact_chunk), so each resumed turn would re-read up to 63 cached tokens.
        cp.flash_attn_type = -1 if gpu_layers(p) != 0 else 0
    else:
        cp.flash_attn_type = int(p.flash_attn)
    cp.type_k = CACHE_TYPES[p.cache_type_k]
    cp.type_v = CACHE_TYPES[p.cache_type_v]
    cp.swa_full = p.swa_full
    cp.no_perf = True
    if p.embedding:
        cp.embeddings = True
        cp.kv_unified = True
        cp.n_ctx = p.n_ctx
        # A sequence's tokens must sit in one ubatch for pooling.
        cp.n_batch = max(p.n_batch, p.n_ctx)
        cp.n_ubatch = cp.n_batch
        cp.pooling_type = POOLING[p.pooling] if p.pooling else -1
    return cp
