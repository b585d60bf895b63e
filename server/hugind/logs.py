"""Process logging: one stderr handler for Hugind, uvicorn and llama.cpp, as text or JSON lines.

``server.log_format: auto`` writes text on a terminal and JSON otherwise (a container's log
collector). A JSON line holds ``ts``, ``level``, ``logger``, ``msg`` and the record's extra
fields (``request_id`` and the access log's fields); text lines append them as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from hugind.api.request_id import current_request_id

#: Attributes every LogRecord has; anything else on a record came in through ``extra``
#: (uvicorn's ``color_message`` repeats ``msg`` with terminal colours).
_STANDARD = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime",
             "taskName", "color_message"}
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values that are not JSON are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = " ".join(f"{k}={_text(v)}" for k, v in extra_fields(record).items())
        return f"{line} {extras}" if extras else line


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    # quoted (control characters escaped) unless it is one plain word: no forged lines
    return text if text and text.isprintable() and " " not in text \
        else json.dumps(text, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Stamps records logged while serving a request with its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            rid = current_request_id.get()
            if rid is not None:
                record.request_id = rid
        return True


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("hugind").critical(
        "thread %s died", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def resolve_format(log_format: str, stream: TextIO) -> str:
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def setup_logging(level: str = "info", log_format: str = "auto", *,
                  stream: TextIO | None = None, llama: bool = True) -> logging.Handler:
    """Route every logger (uvicorn's and, with ``llama``, llama.cpp's) to one handler.

    Returns the handler (tests read it back); calling again replaces it.
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    fmt = resolve_format(log_format, stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _UVICORN:  # uvicorn's default config gives these their own handlers
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Python's own stderr writers, so a JSON log stays JSON: warnings and thread deaths.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_death
    if llama:
        from hugind.llama import route_llama_log

        route_llama_log()
    return handler
