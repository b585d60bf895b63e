"""Log setup: JSON lines, text lines with extras, request ids stamped, uvicorn routed through."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from hugind.api.request_id import current_request_id
from hugind.logs import JsonFormatter, TextFormatter, resolve_format, setup_logging


def record(msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object,
           ) -> logging.LogRecord:
    rec = logging.LogRecord("hugind.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_line_has_the_fixed_fields_and_the_extras() -> None:
    line = JsonFormatter().format(record(request_id="req-1", status=200, model=None,
                                         color_message="\x1b[36mhello\x1b[0m"))
    out = json.loads(line)
    assert out.pop("ts").endswith("+00:00")
    assert out == {"level": "warning", "logger": "hugind.test", "msg": "hello world",
                   "request_id": "req-1", "status": 200}  # None and uvicorn's colours dropped


def test_json_line_carries_the_traceback_and_survives_odd_values() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(exc_info=sys.exc_info(), thing=object(), text="line\nbreak \"q\"")
    out = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in out["exc"]
    assert out["thing"].startswith("<object")
    assert out["text"] == "line\nbreak \"q\""
    assert "\n" not in JsonFormatter().format(rec)  # one record, one line


def test_text_line_appends_extras() -> None:
    line = TextFormatter().format(record(request_id="req-1", path="/v1/models",
                                         prompt="two words"))
    assert line.endswith('WARNING hugind.test: hello world request_id=req-1 path=/v1/models '
                         'prompt="two words"')


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    assert resolve_format("json", Tty()) == "json"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = logging.getLogger("uvicorn.error")
    saved = (list(uvicorn.handlers), uvicorn.propagate, uvicorn.level)
    hook = threading.excepthook
    yield
    root.handlers, root.level = handlers, level
    uvicorn.handlers, uvicorn.propagate, uvicorn.level = saved
    threading.excepthook = hook
    logging.captureWarnings(False)  # else the next setup keeps a stale showwarning


@pytest.mark.usefixtures("restore_root")
def test_setup_routes_uvicorn_and_stamps_request_ids() -> None:
    stream = io.StringIO()
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn's own config does
    uvicorn.propagate = False
    uvicorn.setLevel(logging.INFO)  # uvicorn.Config(log_level="info") does this
    setup_logging("info", "json", stream=stream, llama=False)
    uvicorn.info("Started server process")
    token = current_request_id.set("req-abc")
    try:
        logging.getLogger("hugind.engine").warning("inside a request")
    finally:
        current_request_id.reset(token)
    logging.getLogger("hugind.engine").debug("below the level")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(d["logger"], d["msg"]) for d in lines] == [
        ("uvicorn.error", "Started server process"), ("hugind.engine", "inside a request")]
    assert "request_id" not in lines[0]
    assert lines[1]["request_id"] == "req-abc"


@pytest.mark.usefixtures("restore_root")
def test_warnings_and_thread_deaths_become_log_lines() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream, llama=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old api", DeprecationWarning, stacklevel=1)

    def die() -> None:
        raise RuntimeError("worker broke")

    t = threading.Thread(target=die, name="doomed")
    t.start()
    t.join()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["logger"] == "py.warnings" and "old api" in lines[0]["msg"]
    assert lines[1]["msg"] == "thread doomed died" and "worker broke" in lines[1]["exc"]
