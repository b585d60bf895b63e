"""llama.cpp's log through Python logging (logger ``llama.cpp``), so it follows the server's
level and format instead of going raw to stderr.

ggml's levels (``ggml.h``): 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 cont. llama.cpp's info
is loader and context chatter, so it becomes Python DEBUG; a ``cont`` piece continues the line
before it, so text is buffered per thread until its newline.

Threading: the callback runs on whichever thread logs (engine workers, ggml's threads); the
line buffers are keyed by thread and guarded by a lock. It never raises into C.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

import llama_cpp

NONE, DEBUG, INFO, WARN, ERROR, CONT = range(6)
LEVELS = {
    NONE: logging.DEBUG,  # LLAMA_LOG without a level: banners and tables
    DEBUG: logging.DEBUG,
    INFO: logging.DEBUG,  # loader and context chatter: noise at the default level
    WARN: logging.WARNING,
    ERROR: logging.ERROR,
}
MAX_LINE_CHARS = 8192  # a line never ends (a bug upstream): flushed in pieces instead
_MAX_THREADS = 256


class LineBuffer:
    """Turns llama.cpp's pieces of text into whole lines at Python levels."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[int, str]] = {}  # thread -> (python level, text so far)

    def write(self, level: int, text: str) -> None:
        tid = threading.get_ident()
        with self._lock:
            prev_level, pending = self._pending.get(tid, (logging.DEBUG, ""))
            py_level = prev_level if level == CONT else LEVELS.get(level, logging.WARNING)
            if level != CONT and pending:  # a new message ends an unterminated one
                lines, pending = [(prev_level, pending)], ""
            else:
                lines = []
            *done, pending = (pending + text).split("\n")
            if len(pending) > MAX_LINE_CHARS:
                done, pending = [*done, pending], ""
            lines += [(py_level, line) for line in done]
            self._remember(tid, py_level, pending)
        for lvl, line in lines:
            if line.strip():
                self._logger.log(lvl, "%s", line.rstrip())

    def _remember(self, tid: int, level: int, pending: str) -> None:
        if len(self._pending) >= _MAX_THREADS and tid not in self._pending:
            # keep only threads that are mid-line; the rest restart at DEBUG
            self._pending = {t: v for t, v in self._pending.items() if v[1]}
        self._pending[tid] = (level, pending)


_callbacks: list[Any] = []  # every ctypes callback made: C may still be calling an old one


def route_llama_log(logger: logging.Logger | None = None) -> None:
    """Send llama.cpp's (and ggml's) log to ``logger`` (default ``llama.cpp``).

    Replaces the callback llama-cpp-python installs at import, which prints to stderr.
    """
    buffer = LineBuffer(logger or logging.getLogger("llama.cpp"))

    def on_log(level: int, text: bytes | None, _user_data: Any) -> None:
        try:
            buffer.write(int(level), (text or b"").decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - raising into C would print a traceback per line
            pass

    callback = llama_cpp.llama_log_callback(on_log)
    _callbacks.append(callback)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
