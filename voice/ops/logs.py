"""Log lines that carry the call they belong to.

`call_scope(call_id)` sets the call id for the code running inside it and every task it
starts; `setup` makes each log line show it (`call=3f9c2a7b1d04`), as text or as one JSON
object a line. What a caller said, what the server answered, audio and tokens are never logged
at INFO or above (some DEBUG lines quote a transcript).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from typing import Literal

CALL_ID: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s call=%(call_id)s: %(message)s"


@contextlib.contextmanager
def call_scope(call_id: str) -> Iterator[None]:
    """Log lines written in this block (and by tasks started in it) name `call_id`."""
    token = CALL_ID.set(call_id)
    try:
        yield
    finally:
        CALL_ID.reset(token)


class CallIdFilter(logging.Filter):
    """Puts the current call id on every record (`record.call_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = CALL_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, call, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "call": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup(level: int, style: Literal["text", "json"] = "text") -> None:
    """Log to stderr at `level`, every line with its call id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter() if style == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
