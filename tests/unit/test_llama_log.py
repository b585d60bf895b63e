"""llama.cpp's log through Python logging: whole lines, mapped levels, the callback installed."""

from __future__ import annotations

import ctypes
import logging
import threading

import llama_cpp
import pytest

from hugind.llama.log import (
    CONT,
    DEBUG,
    ERROR,
    INFO,
    MAX_LINE_CHARS,
    WARN,
    LineBuffer,
    route_llama_log,
)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def recorded() -> tuple[LineBuffer, Recorder]:
    logger = logging.getLogger("test.llama.cpp")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    rec = Recorder()
    logger.handlers = [rec]
    return LineBuffer(logger), rec


def test_levels_map_info_to_debug(recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(DEBUG, "attach_threadpool: call\n")
    buf.write(INFO, "llama_model_loader: loaded meta data\n")
    buf.write(WARN, "load: control-looking token\n")
    buf.write(ERROR, "llama_model_load: error loading model\n")
    assert rec.lines == [
        (logging.DEBUG, "attach_threadpool: call"),
        (logging.DEBUG, "llama_model_loader: loaded meta data"),
        (logging.WARNING, "load: control-looking token"),
        (logging.ERROR, "llama_model_load: error loading model"),
    ]


def test_pieces_are_joined_until_the_newline(recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(WARN, "first part, ")
    assert rec.lines == []
    buf.write(CONT, "second part")
    buf.write(CONT, ".\nnext line\n")  # a cont piece keeps the level of the line it continues
    assert rec.lines == [(logging.WARNING, "first part, second part."),
                         (logging.WARNING, "next line")]


def test_cont_after_a_finished_line_keeps_its_level(
        recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(ERROR, "loading\n")
    buf.write(CONT, "...")  # llama.cpp's progress dots
    buf.write(CONT, "done\n")
    assert rec.lines == [(logging.ERROR, "loading"), (logging.ERROR, "...done")]


def test_a_new_message_ends_an_unterminated_one(recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(WARN, "no newline")
    buf.write(ERROR, "other\n")
    assert rec.lines == [(logging.WARNING, "no newline"), (logging.ERROR, "other")]


def test_blank_lines_are_dropped_and_endless_lines_cut(
        recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(WARN, "\n\n  \n")
    assert rec.lines == []
    buf.write(WARN, "x" * (MAX_LINE_CHARS + 1))
    assert rec.lines == [(logging.WARNING, "x" * (MAX_LINE_CHARS + 1))]


def test_threads_keep_their_own_lines(recorded: tuple[LineBuffer, Recorder]) -> None:
    buf, rec = recorded
    buf.write(WARN, "main ")
    other = threading.Thread(target=lambda: buf.write(ERROR, "worker line\n"))
    other.start()
    other.join()
    buf.write(CONT, "line\n")
    assert rec.lines == [(logging.ERROR, "worker line"), (logging.WARNING, "main line")]


def test_route_llama_log_replaces_llama_cpp_pythons_callback(
        caplog: pytest.LogCaptureFixture) -> None:
    route_llama_log()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with caplog.at_level(logging.DEBUG, logger="llama.cpp"):
        model = llama_cpp.llama_model_load_from_file(b"/nonexistent/model.gguf", params)
    assert not model
    lines = [r for r in caplog.records if r.name == "llama.cpp"]
    assert any((r.levelno == logging.ERROR and "failed to open" in r.getMessage())
               or "error loading model" in r.getMessage() for r in lines), lines
    # the callback llama.cpp now holds is ours, kept alive by the module
    callback = llama_cpp.llama_log_callback()
    user_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(callback), ctypes.byref(user_data))
    from hugind.llama import log as llama_log

    assert ctypes.cast(callback, ctypes.c_void_p).value == \
        ctypes.cast(llama_log._callbacks[-1], ctypes.c_void_p).value
