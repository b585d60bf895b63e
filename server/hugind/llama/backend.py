"""What this llama.cpp build can do (GPU offload, system info)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import llama_cpp

logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


@dataclass(frozen=True)
class BackendInfo:
    llama_cpp_python: str
    supports_gpu_offload: bool
    system_info: str


def backend_info() -> BackendInfo:
    """Thread-safe: reads build facts only."""
    return BackendInfo(
        llama_cpp_python=llama_cpp.__version__,
        supports_gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        system_info=llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
    )


def use_batch_invariant_kernels() -> None:
    """Make every CPU matmul in this process take one kernel whatever its row count.

    ggml-cpu multiplies K-quant weights with a tiled kernel from 8 rows up and a dot-product
    kernel below, and the two round differently: a decode row beside a 16-token prefill chunk
    got other logits than the same row alone (measured: 1 of 8 greedy streams changed its
    tokens). ggml reads ``GGML_CPU_TILED_MM`` once, at the first matmul of the process, so
    this runs before any model computes, and it applies to every model in the process.
    """
    os.environ["GGML_CPU_TILED_MM"] = "0"
