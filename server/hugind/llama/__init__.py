"""The only package that imports ``llama_cpp``.

Everything here is called from exactly one owner thread per context (see ``hugind.engine.worker``);
nothing in this package is thread-safe unless its docstring says so.
"""

from __future__ import annotations

from hugind.llama.backend import (
    BackendInfo,
    backend_info,
    build_warnings,
    use_batch_invariant_kernels,
)
from hugind.llama.context import GenerationContext, ModelLoadError, ModelParams
from hugind.llama.embedder import Embedder
from hugind.llama.log import route_llama_log
from hugind.llama.sampler import Sampler, SamplerSpec

__all__ = [
    "BackendInfo",
    "Embedder",
    "GenerationContext",
    "ModelLoadError",
    "ModelParams",
    "Sampler",
    "SamplerSpec",
    "backend_info",
    "build_warnings",
    "route_llama_log",
    "use_batch_invariant_kernels",
]
