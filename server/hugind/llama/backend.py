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


def build_has_amx() -> bool:
    """Whether this llama.cpp build has ggml's AMX tile kernels (thread-safe).

    They crash: ggml's AMX matmul (llama.cpp PR 26954, open) can run a tile instruction
    before the thread's tile config is loaded, a SIGILL at the first decode (seen on an Intel
    Xeon VM). ``model_params`` keeps weights out of the AMX buffer type on such a build."""
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode("utf-8", "replace")


def build_warnings() -> list[str]:
    """Known-bad features of this llama.cpp build, one sentence each (thread-safe)."""
    out = []
    if build_has_amx():
        out.append("this llama-cpp-python build has AMX tile kernels, which crash with "
                   "'Illegal instruction' (llama.cpp PR 26954), so models load without "
                   "llama.cpp's extra CPU weight layouts (AMX and repacking; slower prompt "
                   "reading); rebuild without them: CMAKE_ARGS=\"-DCMAKE_C_FLAGS=-U__AMX_INT8__ "
                   "-DCMAKE_CXX_FLAGS=-U__AMX_INT8__\" pip install --force-reinstall "
                   "--no-cache-dir --no-deps llama-cpp-python==" + llama_cpp.__version__)
    return out


def use_batch_invariant_kernels() -> None:
    """Make every CPU matmul in this process take one kernel whatever its row count.

    ggml-cpu multiplies K-quant weights with a tiled kernel from 8 rows up and a dot-product
    kernel below, and the two round differently: a decode row beside a 16-token prefill chunk
    got other logits than the same row alone (measured: 1 of 8 greedy streams changed its
    tokens). ggml reads ``GGML_CPU_TILED_MM`` once, at the first matmul of the process, so
    this runs before any model computes, and it applies to every model in the process.
    """
    os.environ["GGML_CPU_TILED_MM"] = "0"
