"""A persistent ggml CPU threadpool per context, as llama-server attaches one.

Without it, ggml creates and joins a throwaway pool of worker threads on every graph compute,
i.e. on every decode step. llama-cpp-python binds neither ``ggml_threadpool_new`` nor
``llama_attach_threadpool``, so they are bound here with ctypes from the same shared libraries.

Threading contract: created, attached and freed by the context's owner thread.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import llama_cpp

log = logging.getLogger(__name__)

GGML_MAX_N_THREADS = 512  # ggml.h of the llama.cpp that llama-cpp-python 0.3.36 vendors
POLL = 50  # llama-server's default: busy-wait a little between steps before sleeping


class ThreadpoolParams(ctypes.Structure):
    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def _loaded_libraries() -> tuple[ctypes.CDLL, ctypes.CDLL, ctypes.CDLL]:
    """ggml-base, ggml-cpu and llama as llama-cpp-python loaded them.

    The wheel ships each library as copies (``libllama.so``, ``.so.0``, ``.so.0.5.0``), not
    links; opening another file of the same library maps a second copy, with its own globals
    (its log callback among them: llama.cpp lines then went raw to stderr). A symbol looked up
    through llama-cpp-python's own handle resolves in the copies its dependencies loaded.
    """
    llama: ctypes.CDLL = llama_cpp.llama_cpp._lib
    if hasattr(llama, "ggml_threadpool_new") and hasattr(llama, "ggml_threadpool_params_default"):
        return llama, llama, llama
    lib_dir = Path(llama_cpp.__file__).parent / "lib"  # a platform that looks up one library
    return (ctypes.CDLL(str(next(lib_dir.glob("libggml-base.*")))),
            ctypes.CDLL(str(next(lib_dir.glob("libggml-cpu.*")))), llama)


class _Api:
    def __init__(self) -> None:
        base, cpu, llama = _loaded_libraries()
        self.params_default = base.ggml_threadpool_params_default
        self.params_default.argtypes = [ctypes.c_int]
        self.params_default.restype = ThreadpoolParams
        self.new = cpu.ggml_threadpool_new
        self.new.argtypes = [ctypes.POINTER(ThreadpoolParams)]
        self.new.restype = ctypes.c_void_p
        self.free = cpu.ggml_threadpool_free
        self.free.argtypes = [ctypes.c_void_p]
        self.free.restype = None
        self.attach = llama.llama_attach_threadpool
        self.attach.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.attach.restype = None
        self.detach = llama.llama_detach_threadpool
        self.detach.argtypes = [ctypes.c_void_p]
        self.detach.restype = None


_api: _Api | None = None


def attach_threadpool(ctx: ctypes.c_void_p, n_threads: int) -> ctypes.c_void_p | None:
    """Create a persistent pool of ``n_threads`` and attach it to ``ctx`` (decode and batch).

    Returns the pool, to be freed with :func:`free_threadpool` after the context; ``None`` if
    the libraries lack the functions (ggml then keeps creating a pool per compute)."""
    global _api
    try:
        _api = _api or _Api()
    except (OSError, AttributeError, StopIteration) as exc:
        log.warning("no persistent threadpool (%s); ggml will create one per step", exc)
        return None
    params = _api.params_default(n_threads)
    params.poll = POLL
    pool = _api.new(ctypes.byref(params))
    if not pool:
        return None
    _api.attach(ctx, pool, None)
    return ctypes.c_void_p(pool)


def free_threadpool(ctx: ctypes.c_void_p, pool: ctypes.c_void_p) -> None:
    """Detach ``pool`` from ``ctx`` (still alive) and free it."""
    assert _api is not None
    _api.detach(ctx)
    _api.free(pool)
