"""What this llama.cpp build can do (GPU offload, system info)."""

from __future__ import annotations

import logging
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
