"""The daemon's log on stderr: a line of text for people ("human"), or one
JSON object per line for machines ("json": Loki, ELK, journald's JSON).

A JSON line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``,
``logger``, ``message``, ``pid`` (the worker's process: workers share
stderr), the fields a call passed in ``extra=``, and ``exception`` (the
traceback as one string) when there is one. A value JSON cannot hold is
written as its ``str``. Python's warnings go through the log too, so in
JSON mode every line on stderr is an object.

Plain ``logging``: the formatter is the only part of its own; handlers,
levels and the loggers are the standard library's.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final, Literal

LogFormat = Literal["human", "json"]
HUMAN: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"
# what every LogRecord has: anything else on a record came from `extra=`
_STANDARD: Final = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def setup_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Log to stderr in ``log_format``, replacing any handler set before."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(log_format == "json")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per feed request otherwise
